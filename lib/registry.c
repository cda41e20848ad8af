/* Which descriptor is which attached socket, and taking one for a call. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "socket.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static dp_socket **registry; /* indexed by fd */
static size_t registry_cap;

void dp_socket_free(dp_socket *s) {
  dtlsplex_config_free(s->cfg); /* NULL until attached */
  free(s->rx);
  free(s->tx);
  close(s->wake_fd);
  pthread_cond_destroy(&s->left_kernel);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void dp_socket_release(dp_socket *s) {
  pthread_mutex_lock(&registry_lock);
  int last = --s->refs == 0;
  pthread_mutex_unlock(&registry_lock);
  if (last)
    dp_socket_free(s);
}

/* Takes a reference to fd's socket and locks it, or fails with EBADF. */
dp_socket *dp_socket_acquire(int fd) {
  dp_socket *s = NULL;
  pthread_mutex_lock(&registry_lock);
  if (fd >= 0 && (size_t)fd < registry_cap && registry[fd] != NULL) {
    s = registry[fd];
    s->refs++;
  }
  pthread_mutex_unlock(&registry_lock);
  if (s == NULL) {
    errno = EBADF;
    return NULL;
  }
  pthread_mutex_lock(&s->lock);
  if (s->detached) {
    pthread_mutex_unlock(&s->lock);
    dp_socket_release(s);
    errno = EBADF;
    return NULL;
  }
  return s;
}

/* Unlocks, then runs the event callback for what happened meanwhile: the
 * callback may call back into the library. */
void dp_unlock_and_dispatch(dp_socket *s) {
  dp_event batch[16];
  for (;;) {
    size_t n = 0;
    while (n < 16 && s->core != NULL && dp_endpoint_next_event(s->core, &batch[n]))
      n++;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n && s->cfg->event_fn != NULL; i++)
      s->cfg->event_fn(s->fd, batch[i].event, &batch[i].peer.u.sa, batch[i].peer.len, batch[i].error,
                       s->cfg->event_arg);
    if (n < 16)
      return;
    pthread_mutex_lock(&s->lock);
  }
}

/* A call may have armed a timer (a handshake started from another thread)
 * earlier than any waiting thread will wake: wake them to recompute. */
void dp_socket_finish(dp_socket *s) {
  /* Also wake them for data this call queued from the socket: they would not
   * see it in poll. */
  if (s->waiters > 0 && s->core != NULL &&
      (dp_endpoint_get_expiry(s->core) < s->waiters_deadline || dp_endpoint_pending(s->core) > 0))
    dp_wake_waiters(s);
  /* A thread waiting in the kernel runs no timers: a handshake begun
   * meanwhile needs it back in poll. */
  if (s->rx_in_kernel && s->core != NULL && dp_endpoint_handshaking(s->core))
    dp_wake_kernel_waiter(s);
  dp_unlock_and_dispatch(s);
  dp_socket_release(s);
}

int dp_registry_add(int fd, dp_socket *s) {
  int err = 0;
  pthread_mutex_lock(&registry_lock);
  if ((size_t)fd >= registry_cap) {
    size_t cap = registry_cap ? registry_cap : 64;
    while (cap <= (size_t)fd)
      cap *= 2;
    dp_socket **grown = realloc(registry, cap * sizeof *grown);
    if (grown == NULL) {
      err = ENOMEM;
    } else {
      memset(grown + registry_cap, 0, (cap - registry_cap) * sizeof *grown);
      registry = grown;
      registry_cap = cap;
    }
  }
  if (err == 0 && registry[fd] != NULL)
    err = EEXIST;
  if (err == 0)
    registry[fd] = s;
  pthread_mutex_unlock(&registry_lock);
  return -err;
}

dp_socket *dp_registry_remove(int fd) {
  dp_socket *s = NULL;
  pthread_mutex_lock(&registry_lock);
  if (fd >= 0 && (size_t)fd < registry_cap) {
    s = registry[fd];
    registry[fd] = NULL;
  }
  pthread_mutex_unlock(&registry_lock);
  return s;
}
