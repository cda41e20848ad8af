/* See proxy_flows.h. */
#include "proxy_flows.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* An IPv4 client of a dual-stack socket and the same client on an IPv4
 * socket are one flow. */
static flow_key key_of(const struct sockaddr *sa) {
  flow_key k;
  memset(&k, 0, sizeof k); /* the key is hashed whole, padding included */
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    k.family = AF_INET;
    memcpy(k.addr, &in->sin_addr, 4);
    k.port = in->sin_port;
    return k;
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
  k.port = in6->sin6_port;
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    k.family = AF_INET;
    memcpy(k.addr, &in6->sin6_addr.s6_addr[12], 4);
  } else {
    k.family = AF_INET6;
    memcpy(k.addr, &in6->sin6_addr, 16);
  }
  return k;
}

flow *flows_find_addr(flow_table *t, const struct sockaddr *peer) {
  flow_key k = key_of(peer);
  flow *f;
  HASH_FIND(by_addr, t->by_addr, &k, sizeof k, f);
  return f;
}

flow *flows_find_fd(flow_table *t, int fd) {
  flow *f;
  HASH_FIND(by_fd, t->by_fd, &fd, sizeof fd, f);
  return f;
}

flow *flows_add(flow_table *t, const struct sockaddr *peer, socklen_t len, int fd) {
  flow *f = calloc(1, sizeof *f);
  if (f == NULL || len > sizeof f->peer) {
    free(f);
    errno = ENOMEM;
    return NULL;
  }
  f->key = key_of(peer);
  memcpy(&f->peer, peer, len);
  f->peer_len = len;
  f->fd = fd;
  HASH_ADD(by_addr, t->by_addr, key, sizeof f->key, f);
  HASH_ADD(by_fd, t->by_fd, fd, sizeof f->fd, f);
  return f;
}

void flows_retire(flow_table *t, flow *f) {
  if (f->retired)
    return;
  f->retired = 1;
  HASH_DELETE(by_addr, t->by_addr, f);
  HASH_DELETE(by_fd, t->by_fd, f);
  f->next_retired = t->retired;
  t->retired = f;
}

flow *flows_take_retired(flow_table *t) {
  flow *f = t->retired;
  if (f != NULL)
    t->retired = f->next_retired;
  return f;
}

flow *flows_first(flow_table *t) { return t->by_fd; }

flow *flows_next(const flow *f) { return f->by_fd.next; }

unsigned int flows_count(const flow_table *t) { return HASH_CNT(by_fd, t->by_fd); }
