#include "resume_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

typedef struct entry {
  UT_hash_handle hh;
  SSL_SESSION *session;
  size_t key_len;
  uint8_t key[]; /* the server's address key, then its name */
} entry;

struct dp_resume_cache {
  pthread_mutex_t lock; /* a configuration serves sockets in many threads */
  entry *by_key;        /* in insertion order: the oldest first */
  size_t max;
};

/* The lookup key: the address key, then the name (none: nothing). */
static size_t make_key(uint8_t *out, const dp_addr_key *server, const char *name) {
  size_t name_len = name != NULL ? strlen(name) : 0;
  memcpy(out, server, sizeof *server);
  memcpy(out + sizeof *server, name != NULL ? name : "", name_len);
  return sizeof *server + name_len;
}

#define KEY_MAX (sizeof(dp_addr_key) + 256)

dp_resume_cache *dp_resume_cache_new(size_t max) {
  dp_resume_cache *c = calloc(1, sizeof *c);
  if (c == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
    free(c);
    errno = ENOMEM;
    return NULL;
  }
  c->max = max;
  return c;
}

static void drop(dp_resume_cache *c, entry *e) {
  HASH_DEL(c->by_key, e);
  SSL_SESSION_free(e->session);
  free(e);
}

static void drop_all(dp_resume_cache *c) {
  entry *e, *tmp;
  HASH_ITER(hh, c->by_key, e, tmp) {
    drop(c, e);
  }
}

void dp_resume_cache_free(dp_resume_cache *c) {
  if (c == NULL)
    return;
  drop_all(c);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

void dp_resume_cache_clear(dp_resume_cache *c) {
  pthread_mutex_lock(&c->lock);
  drop_all(c);
  pthread_mutex_unlock(&c->lock);
}

static entry *find(dp_resume_cache *c, const dp_addr_key *server, const char *name) {
  uint8_t key[KEY_MAX];
  if (name != NULL && strlen(name) > 255)
    return NULL;
  size_t len = make_key(key, server, name);
  entry *e = NULL;
  HASH_FIND(hh, c->by_key, key, len, e);
  return e;
}

SSL_SESSION *dp_resume_cache_get(dp_resume_cache *c, const dp_addr_key *server, const char *name) {
  pthread_mutex_lock(&c->lock);
  entry *e = find(c, server, name);
  SSL_SESSION *s = e != NULL && SSL_SESSION_up_ref(e->session) == 1 ? e->session : NULL;
  pthread_mutex_unlock(&c->lock);
  return s;
}

void dp_resume_cache_put(dp_resume_cache *c, const dp_addr_key *server, const char *name, SSL_SESSION *sess) {
  if (sess == NULL || !SSL_SESSION_is_resumable(sess) || (name != NULL && strlen(name) > 255) || c->max == 0)
    return;
  uint8_t key[KEY_MAX];
  size_t len = make_key(key, server, name);
  pthread_mutex_lock(&c->lock);
  entry *old = find(c, server, name);
  if (old != NULL)
    drop(c, old);
  else if (HASH_COUNT(c->by_key) >= c->max)
    drop(c, c->by_key); /* the oldest */
  entry *e = malloc(sizeof *e + len);
  if (e != NULL && SSL_SESSION_up_ref(sess) == 1) {
    e->session = sess;
    e->key_len = len;
    memcpy(e->key, key, len);
    int oom = 0;
#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(obj) (oom = 1)
    HASH_ADD_KEYPTR(hh, c->by_key, e->key, e->key_len, e);
    if (oom) { /* not added: the session is simply not kept */
      SSL_SESSION_free(sess);
      free(e);
    }
  } else {
    free(e);
  }
  pthread_mutex_unlock(&c->lock);
}

void dp_resume_cache_remove(dp_resume_cache *c, const dp_addr_key *server, const char *name) {
  pthread_mutex_lock(&c->lock);
  entry *e = find(c, server, name);
  if (e != NULL)
    drop(c, e);
  pthread_mutex_unlock(&c->lock);
}

size_t dp_resume_cache_count(dp_resume_cache *c) {
  pthread_mutex_lock(&c->lock);
  size_t n = HASH_COUNT(c->by_key);
  pthread_mutex_unlock(&c->lock);
  return n;
}
