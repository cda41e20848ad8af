/* The socket layer: the fd registry, and dtlssendto/dtlsrecvfrom/process over
 * real sockets.  It owns the clock, the locks and the waiting; everything DTLS
 * happens in the endpoint core. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "config.h"
#include "dtlsplex.h"
#include "endpoint.h"
#include "self_wake.h"

#define READ_BURST 64 /* datagrams read per call before the caller gets a turn */
#define RX_BATCH 16   /* datagrams per recvmmsg */

#define TX_BATCH 16   /* datagrams per sendmmsg */
#define KERNEL_WAITER_RECHECK_MS 50 /* see wait_socket */
#define KERNEL_WAIT_TIMER_MARGIN_MS 1000 /* see may_wait_in_kernel */
#define DETACH_WAIT_MS 1000         /* for a thread in the kernel's receive to leave */

/* Receive buffers: a whole datagram of any size per slot.  Mostly untouched
 * virtual memory: the kernel writes only what arrives. */
typedef struct dp_rx {
  struct mmsghdr msgs[RX_BATCH];
  struct iovec iov[RX_BATCH];
  struct sockaddr_storage from[RX_BATCH];
  uint8_t data[RX_BATCH][65536];
} dp_rx;

/* Datagrams the library sends of its own accord (handshake flights, cookies,
 * retransmissions, close_notify) while it works through a batch: sent
 * together with sendmmsg.  Application data goes out at once, so that
 * dtlssendto can report the kernel's answer. */
typedef struct dp_tx {
  /* An application datagram the kernel had no room for: a blocking caller
   * waits (without the lock) until it can go. */
  size_t stalled_len;
  dp_addr stalled_to;
  uint8_t stalled[4096];
  unsigned int n;
  struct mmsghdr msgs[TX_BATCH];
  struct iovec iov[TX_BATCH];
  dp_addr to[TX_BATCH];
  uint8_t data[TX_BATCH][4096];
} dp_tx;

typedef struct dp_socket {
  int fd;
  int family;
  unsigned int refs; /* the registry's, plus one per call in progress; under registry_lock */
  int detached;
  int wake_fd;       /* wakes threads waiting in poll: detach, or an earlier timer */
  unsigned int waiters;      /* threads in poll */
  uint64_t waiters_deadline; /* the earliest time one of them wakes by itself */
  int app_write;     /* a caller's application datagram is being written */
  dtlsplex_config *cfg;
  dp_endpoint *core;
  pthread_mutex_t lock;
  dp_rx *rx;
  dp_tx *tx;
  int defer_sends;   /* gather the library's own datagrams in tx */
  int rx_in_kernel;  /* a thread waits in recvmmsg on rx, without the lock */
  pthread_cond_t left_kernel; /* signalled when it is back */
  int kernel_woken;  /* a wake-up datagram went to that thread */
  int self_known;    /* 0 not yet learnt; 1 self reaches the socket; -1 it cannot be woken so */
  dp_addr self;      /* where a datagram reaches this socket (len 0 until learnt) */
} dp_socket;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static dp_socket **registry; /* indexed by fd */
static size_t registry_cap;

static int fail(int err) {
  errno = err;
  return -1;
}

static uint64_t now_ms(void) {
  /* libssl's DTLS timers run on wall-clock time; the core must agree. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void socket_free(dp_socket *s) {
  dtlsplex_config_free(s->cfg); /* NULL until attached */
  free(s->rx);
  free(s->tx);
  close(s->wake_fd);
  pthread_cond_destroy(&s->left_kernel);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static void release(dp_socket *s) {
  pthread_mutex_lock(&registry_lock);
  int last = --s->refs == 0;
  pthread_mutex_unlock(&registry_lock);
  if (last)
    socket_free(s);
}

/* Takes a reference to fd's socket and locks it, or fails with EBADF. */
static dp_socket *acquire_locked(int fd) {
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
    release(s);
    errno = EBADF;
    return NULL;
  }
  return s;
}

/* Unlocks, then runs the event callback for what happened meanwhile: the
 * callback may call back into the library. */
static void unlock_and_dispatch(dp_socket *s) {
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

/* Ends a thread's wait in the kernel's receive with an empty datagram to the
 * socket itself; the waiter skips it.  A failed send (a full send buffer) is
 * retried by the next call that needs the waiter. */
static void wake_kernel_waiter(dp_socket *s) {
  if (s->kernel_woken || s->self_known <= 0)
    return;
  s->kernel_woken = dp_self_wake_send(s->fd, &s->self) == 0;
}

static void wake_waiters(dp_socket *s) {
  uint64_t one = 1;
  if (write(s->wake_fd, &one, sizeof one) < 0) {
    /* EAGAIN: the counter is already non-zero, so waiters wake anyway. */
  }
}

/* A call may have armed a timer (a handshake started from another thread)
 * earlier than any waiting thread will wake: wake them to recompute. */
static void finish(dp_socket *s) {
  /* Also wake them for data this call queued from the socket: they would not
   * see it in poll. */
  if (s->waiters > 0 && s->core != NULL &&
      (dp_endpoint_get_expiry(s->core) < s->waiters_deadline || dp_endpoint_pending(s->core) > 0))
    wake_waiters(s);
  /* A thread waiting in the kernel runs no timers: a handshake begun
   * meanwhile needs it back in poll. */
  if (s->rx_in_kernel && s->core != NULL && dp_endpoint_handshaking(s->core))
    wake_kernel_waiter(s);
  unlock_and_dispatch(s);
  release(s);
}

/* An ICMP error for an earlier datagram (to any peer) is reported by the
 * socket's next call, whatever its destination. */
static int is_stale_icmp_error(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* Sends the gathered datagrams.  One that the kernel refuses is lost, as any
 * datagram may be; the rest still go. */
static void flush_sends(dp_socket *s) {
  dp_tx *tx = s->tx;
  unsigned int sent = 0;
  for (int tries = 0; sent < tx->n && tries < 2 * TX_BATCH; tries++) {
    int n = sendmmsg(s->fd, tx->msgs + sent, tx->n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
      sent += (unsigned int)n;
    else if (n < 0 && !is_stale_icmp_error(errno) && errno != EINTR)
      sent++; /* skip the datagram the kernel refused */
  }
  tx->n = 0;
}

static void gather_send(dp_socket *s, const dp_addr *to, const uint8_t *data, size_t len) {
  dp_tx *tx = s->tx;
  if (tx->n == TX_BATCH)
    flush_sends(s);
  unsigned int i = tx->n++;
  tx->to[i] = *to;
  memcpy(tx->data[i], data, len);
  tx->iov[i] = (struct iovec){.iov_base = tx->data[i], .iov_len = len};
  tx->msgs[i].msg_hdr = (struct msghdr){.msg_name = &tx->to[i].u, .msg_namelen = tx->to[i].len,
                                        .msg_iov = &tx->iov[i], .msg_iovlen = 1};
}

/* Starts and ends a stretch in which the library's own datagrams are gathered. */
static void defer_sends(dp_socket *s) { s->defer_sends = 1; }
static void send_deferred(dp_socket *s) {
  s->defer_sends = 0;
  if (s->tx->n > 0)
    flush_sends(s);
}

static int socket_send(void *arg, const dp_addr *to, const uint8_t *data, size_t len) {
  dp_socket *s = arg;
  if (s->defer_sends && len <= sizeof s->tx->data[0]) {
    gather_send(s, to, data, len);
    return 0;
  }
  /* Never blocks with the lock held.  Reporting an ICMP error clears it, so
   * the retry sends this datagram; the bound covers a new error meanwhile. */
  for (int tries = 0; tries < 3; tries++) {
    if (sendto(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, &to->u.sa, to->len) >= 0)
      return 0;
    if (!is_stale_icmp_error(errno) && errno != EINTR)
      break;
  }
  if ((errno == EAGAIN || errno == EWOULDBLOCK) && s->app_write && len <= sizeof s->tx->stalled) {
    s->tx->stalled_to = *to;
    s->tx->stalled_len = len;
    memcpy(s->tx->stalled, data, len);
    return 0;
  }
  return -errno;
}

/* Sends a stalled application datagram: a blocking caller waits for room
 * with the lock released, as sendto(2) would block; otherwise EAGAIN.
 * Returns 0 or -errno. */
static int send_stalled(dp_socket *s, int blocking) {
  dp_tx *tx = s->tx;
  int r = 0;
  while (tx->stalled_len > 0) {
    if (!blocking) {
      r = -EAGAIN;
      break;
    }
    struct pollfd fds[2] = {{.fd = s->fd, .events = POLLOUT}, {.fd = s->wake_fd, .events = POLLIN}};
    unlock_and_dispatch(s);
    int n = poll(fds, 2, -1);
    int err = errno;
    pthread_mutex_lock(&s->lock);
    if (s->detached) {
      r = -EBADF;
      break;
    }
    if (n < 0) {
      r = -err;
      break;
    }
    if (sendto(s->fd, tx->stalled, tx->stalled_len, MSG_DONTWAIT | MSG_NOSIGNAL, &tx->stalled_to.u.sa,
               tx->stalled_to.len) >= 0)
      break;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && !is_stale_icmp_error(errno)) {
      r = -errno;
      break;
    }
  }
  tx->stalled_len = 0;
  return r;
}

/* Feeds the core the datagrams the socket holds, a batch per system call, up
 * to a burst, or (for a caller waiting for data) until application data is
 * queued.  A batch that comes back short means the socket is empty: no
 * further call is made to find EAGAIN.  Returns the number read, or -1 with
 * errno. */
static void init_rx(dp_rx *rx) {
  for (int i = 0; i < RX_BATCH; i++) {
    rx->iov[i] = (struct iovec){.iov_base = rx->data[i], .iov_len = sizeof rx->data[i]};
    rx->msgs[i].msg_hdr = (struct msghdr){.msg_name = &rx->from[i], .msg_namelen = sizeof rx->from[i],
                                          .msg_iov = &rx->iov[i], .msg_iovlen = 1};
  }
}

/* recvmmsg writes back only the address lengths (and lengths and flags). */
static void prepare_rx(dp_rx *rx) {
  for (int i = 0; i < RX_BATCH; i++)
    rx->msgs[i].msg_hdr.msg_namelen = sizeof rx->from[i];
}

/* Gives the core the n datagrams recvmmsg put in rx. */
static void feed_rx(dp_socket *s, int n) {
  dp_rx *rx = s->rx;
  uint64_t now = now_ms();
  defer_sends(s);
  for (int i = 0; i < n; i++) {
    dp_addr addr;
    if (dp_addr_from_sockaddr(&addr, (struct sockaddr *)&rx->from[i], rx->msgs[i].msg_hdr.msg_namelen,
                              s->family) == 0 &&
        !dp_is_self_wake(&s->self, &addr, rx->msgs[i].msg_len))
      dp_endpoint_read_pkt(s->core, &addr, rx->data[i], rx->msgs[i].msg_len, now);
  }
  send_deferred(s);
}

static int read_socket(dp_socket *s, int until_data) {
  int count = 0;
  /* A thread waiting in the kernel owns rx, and reads what arrives. */
  if (s->rx_in_kernel)
    return 0;
  /* Bounded even if errors keep coming. */
  for (int calls = 0; count < READ_BURST && calls < READ_BURST; calls++) {
    prepare_rx(s->rx);
    int n = recvmmsg(s->fd, s->rx->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return count;
      /* ICMP errors reported on the socket concern one peer, never the loop. */
      if (is_stale_icmp_error(errno) || errno == EINTR)
        continue;
      return -1;
    }
    feed_rx(s, n);
    count += n;
    if (n < RX_BATCH || (until_data && dp_endpoint_pending(s->core) > 0))
      break;
  }
  return count;
}

/* Runs the core's due timers, their retransmissions sent together. */
static void run_timers(dp_socket *s) {
  defer_sends(s);
  dp_endpoint_handle_expiry(s->core, now_ms());
  send_deferred(s);
}

static int is_blocking(int fd, int flags) {
  if (flags & MSG_DONTWAIT)
    return 0;
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & O_NONBLOCK);
}

/* Milliseconds until the core's next timer, capped by limit_ms (-1 = none). */
static int core_timeout(const dp_socket *s, uint64_t now, int limit_ms) {
  uint64_t expiry = dp_endpoint_get_expiry(s->core);
  if (expiry == UINT64_MAX)
    return limit_ms;
  uint64_t wait = expiry > now ? expiry - now : 0;
  if (wait > INT_MAX)
    wait = INT_MAX;
  return limit_ms >= 0 && (uint64_t)limit_ms < wait ? limit_ms : (int)wait;
}

/* Waits, with the lock released, until the socket is readable, a timer is
 * due, limit_ms passes, or the socket is detached.  Returns 1 if the socket is
 * readable, 0 if not, or -1 with errno (EBADF when detached, EINTR, or poll's
 * own errors). */
static int wait_socket(dp_socket *s, int limit_ms) {
  /* While a thread waits in the kernel, the datagrams are its own: it wakes
   * the others when it is done. */
  struct pollfd fds[2] = {{.fd = s->rx_in_kernel ? -1 : s->fd, .events = POLLIN},
                          {.fd = s->wake_fd, .events = POLLIN}};
  uint64_t now = now_ms();
  int timeout = core_timeout(s, now, limit_ms);
  /* The wake-up that thread sends may be drained by another waiter first:
   * look at the socket again soon in any case. */
  if (s->rx_in_kernel && (timeout < 0 || timeout > KERNEL_WAITER_RECHECK_MS))
    timeout = KERNEL_WAITER_RECHECK_MS;
  uint64_t wakes_at = timeout < 0 ? UINT64_MAX : now + (uint64_t)timeout;
  if (s->waiters++ == 0 || wakes_at < s->waiters_deadline)
    s->waiters_deadline = wakes_at;
  unlock_and_dispatch(s);
  int r = poll(fds, 2, timeout);
  int err = errno;
  pthread_mutex_lock(&s->lock);
  if (--s->waiters == 0)
    s->waiters_deadline = UINT64_MAX;
  if (s->detached)
    return fail(EBADF);
  uint64_t drained;
  if (fds[1].revents & POLLIN && read(s->wake_fd, &drained, sizeof drained) < 0) {
    /* Another waiter drained it first. */
  }
  if (r < 0)
    return fail(err);
  if (fds[0].revents & POLLNVAL)
    return fail(EBADF);
  return (fds[0].revents & (POLLIN | POLLERR)) != 0;
}

/* Whether a receive may wait in the kernel's own recvmmsg (no MSG_DONTWAIT):
 * the socket's O_NONBLOCK and SO_RCVTIMEO then apply exactly as they do to
 * recvfrom(2), at the cost of one system call instead of fcntl, getsockopt,
 * poll and recvmmsg.  Only while no handshake needs its timers on time and
 * no timer is due within the margin, and only for a socket that another
 * thread can wake (detach, a handshake begun meanwhile) with a datagram to
 * itself. */
static int may_wait_in_kernel(dp_socket *s) {
  /* A timer due soon runs on time, between datagrams, rather than in front
   * of the next one: after many peers went idle together, releasing their
   * buffers would otherwise lengthen the next round trips. */
  uint64_t expiry = dp_endpoint_get_expiry(s->core);
  return !s->rx_in_kernel && !dp_endpoint_handshaking(s->core) && s->self_known > 0 &&
         (expiry == UINT64_MAX || expiry >= now_ms() + KERNEL_WAIT_TIMER_MARGIN_MS);
}

/* Learns, once, whether a datagram to itself reaches the socket: the address
 * must qualify (dp_self_wake_addr) and a probe sent there must come back.
 * Whatever else the socket held meanwhile goes to the core. */
static void learn_self(dp_socket *s) {
  s->self_known = -1;
  if (dp_self_wake_addr(s->fd, s->family, &s->self) != 0) {
    s->self.len = 0;
    return;
  }
  if (dp_self_wake_send(s->fd, &s->self) != 0)
    return;
  dp_rx *rx = s->rx;
  /* Bounded: a socket flooded past this keeps waiting in poll. */
  for (int calls = 0; calls < READ_BURST; calls++) {
    prepare_rx(rx);
    int n = recvmmsg(s->fd, rx->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && (is_stale_icmp_error(errno) || errno == EINTR))
      continue;
    if (n < 0)
      return; /* EAGAIN: the probe did not come back (a late one is skipped) */
    int back = 0;
    for (int i = 0; i < n; i++) {
      dp_addr from;
      back |= dp_addr_from_sockaddr(&from, (struct sockaddr *)&rx->from[i], rx->msgs[i].msg_hdr.msg_namelen,
                                    s->family) == 0 &&
              dp_is_self_wake(&s->self, &from, rx->msgs[i].msg_len);
    }
    feed_rx(s, n);
    if (back) {
      s->self_known = 1;
      return;
    }
  }
}

/* Receives at least one datagram, or fails as recvfrom(2) would on this
 * socket (EAGAIN when non-blocking or at SO_RCVTIMEO, EINTR, ...), with the
 * lock released meanwhile.  Housekeeping timers that fell due run first, then
 * the core gets the datagrams.  Returns the number received, or -1 with errno
 * (EBADF if detached meanwhile). */
static int wait_in_kernel(dp_socket *s) {
  s->rx_in_kernel = 1;
  prepare_rx(s->rx);
  pthread_mutex_unlock(&s->lock); /* events were dispatched before: see dtlsrecvfrom */
  int n = recvmmsg(s->fd, s->rx->msgs, RX_BATCH, MSG_WAITFORONE, NULL);
  int err = errno;
  pthread_mutex_lock(&s->lock);
  s->rx_in_kernel = 0;
  s->kernel_woken = 0;
  pthread_cond_broadcast(&s->left_kernel); /* a detach may wait for it */
  if (s->waiters > 0)
    wake_waiters(s); /* they left the socket to this thread */
  if (s->detached)
    return fail(EBADF);
  if (n < 0)
    return fail(err);
  run_timers(s);
  feed_rx(s, n);
  return n;
}

/* Runs due timers and reads the socket. */
static int pump(dp_socket *s) {
  run_timers(s);
  int n = read_socket(s, 0);
  if (n > 0)
    run_timers(s);
  return n;
}

int dtlsplex_attach(int fd, dtlsplex_config *cfg) {
  if (cfg == NULL)
    return fail(EINVAL);
  if (fcntl(fd, F_GETFD) < 0)
    return fail(EBADF);
  int type, family;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return -1; /* ENOTSOCK */
  if (type != SOCK_DGRAM)
    return fail(EPROTOTYPE);
  len = sizeof family;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0)
    return -1;
  if (family != AF_INET && family != AF_INET6)
    return fail(EAFNOSUPPORT);
  if (cfg->role == DTLSPLEX_ROLE_SERVER && !dp_config_can_serve(cfg))
    return fail(EINVAL);

  dp_socket *s = calloc(1, sizeof *s);
  if (s == NULL)
    return fail(ENOMEM);
  s->fd = fd;
  s->family = family;
  s->refs = 1;
  s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s->rx = malloc(sizeof *s->rx);
  s->tx = malloc(sizeof *s->tx);
  int setup_err = s->wake_fd < 0 ? errno : ENOMEM;
  int locked = pthread_mutex_init(&s->lock, NULL) == 0;
  int signalled = locked && pthread_cond_init(&s->left_kernel, NULL) == 0;
  if (s->wake_fd < 0 || s->rx == NULL || s->tx == NULL || !signalled) {
    if (locked)
      pthread_mutex_destroy(&s->lock);
    if (s->wake_fd >= 0)
      close(s->wake_fd);
    free(s->rx);
    free(s->tx);
    free(s);
    return fail(setup_err == EMFILE || setup_err == ENFILE ? setup_err : ENOMEM);
  }
  init_rx(s->rx);
  s->tx->n = 0;
  s->tx->stalled_len = 0;
  dp_config_ref(cfg);
  s->cfg = cfg;
  if ((s->core = dp_endpoint_new(cfg, socket_send, s)) == NULL) {
    socket_free(s);
    return fail(ENOMEM);
  }

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
  if (err != 0) {
    dp_endpoint_free(s->core);
    socket_free(s);
    return fail(err);
  }
  return 0;
}

int dtlsplex_detach(int fd) {
  dp_socket *s = NULL;
  pthread_mutex_lock(&registry_lock);
  if (fd >= 0 && (size_t)fd < registry_cap) {
    s = registry[fd];
    registry[fd] = NULL;
  }
  pthread_mutex_unlock(&registry_lock);
  if (s == NULL)
    return fail(EBADF);
  pthread_mutex_lock(&s->lock);
  s->detached = 1;
  defer_sends(s);
  dp_endpoint_free(s->core); /* close_notify to every established peer */
  send_deferred(s);
  s->core = NULL;
  wake_waiters(s);
  /* A thread still in the kernel's receive would read whatever socket gets
   * fd's number once the caller closes it: wait until it is back, waking it
   * again every 100 ms in case a wake-up was lost. */
  for (int waited_ms = 0; s->rx_in_kernel && waited_ms < DETACH_WAIT_MS; waited_ms += 100) {
    s->kernel_woken = 0;
    wake_kernel_waiter(s);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->left_kernel, &s->lock, &until);
  }
  pthread_mutex_unlock(&s->lock);
  release(s); /* the registry's reference */
  return 0;
}

/* SO_RCVTIMEO as a deadline for a call that started at `started`, or
 * UINT64_MAX for none. */
static uint64_t receive_deadline(int fd, uint64_t started) {
  struct timeval tv;
  socklen_t tv_len = sizeof tv;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &tv_len) != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
    return UINT64_MAX;
  return started + (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
}

ssize_t dtlsrecvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *src_len) {
  if ((buf == NULL && len > 0) || (src != NULL && src_len == NULL))
    return fail(EINVAL);
  if (flags & ~(MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC))
    return fail(EOPNOTSUPP);
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  /* Whether to block, and until when, matters only once nothing is queued:
   * asked then, so that a ready datagram costs no extra system calls.  The
   * first wait is the kernel's own where it may be; a call that must wait
   * again (the datagrams were not application data) waits in poll, so that
   * SO_RCVTIMEO bounds the whole call. */
  int blocking = -1, readable = 1, waited = 0;
  uint64_t started = now_ms(), give_up = UINT64_MAX;
  ssize_t result;
  for (;;) {
    dp_addr from;
    run_timers(s);
    ssize_t n = dp_endpoint_recv(s->core, buf, len, flags & MSG_PEEK, &from);
    if (n >= 0) {
      if (src != NULL)
        dp_addr_copy_out(&from, src, src_len);
      result = (flags & MSG_TRUNC) || (size_t)n < len ? n : (ssize_t)len;
      break;
    }
    if (!waited && !(flags & MSG_DONTWAIT) && s->self_known == 0 && !s->rx_in_kernel) {
      learn_self(s); /* it may have read the socket: look at the queue again */
      continue;
    }
    if (!waited && !(flags & MSG_DONTWAIT) && may_wait_in_kernel(s)) {
      if (dp_endpoint_has_events(s->core)) {
        /* Callbacks before the socket is claimed: one may call back in and
         * need to read it (a blocking dtlssendto that reconnects). */
        unlock_and_dispatch(s);
        pthread_mutex_lock(&s->lock);
        if (s->detached) {
          result = fail(EBADF);
          break;
        }
        continue;
      }
      waited = 1;
      if (wait_in_kernel(s) >= 0 || is_stale_icmp_error(errno))
        continue;
      result = -1;
      break;
    }
    if (blocking < 0) {
      blocking = is_blocking(fd, flags);
      if (blocking) {
        give_up = receive_deadline(fd, started);
        readable = 0; /* poll first: it returns at once if a datagram waits */
      }
    }
    if (readable) {
      int got = read_socket(s, 1);
      if (got != 0 || !blocking) {
        if (got > 0)
          continue;
        result = got < 0 ? -1 : fail(EAGAIN);
        break;
      }
    }
    uint64_t now = now_ms();
    if (now >= give_up) {
      result = fail(EAGAIN);
      break;
    }
    int limit = give_up == UINT64_MAX ? -1 : (int)(give_up - now < INT_MAX ? give_up - now : INT_MAX);
    waited = 1;
    if ((readable = wait_socket(s, limit)) < 0) {
      result = -1;
      break;
    }
  }
  int err = errno;
  finish(s);
  errno = err;
  return result;
}

/* Writes a caller's datagram through the core.  If the kernel had no room
 * for it, a blocking caller waits as sendto(2) would; others get EAGAIN. */
static ssize_t write_app(dp_socket *s, const dp_addr *to, const void *buf, size_t len, int flags,
                         int queue_if_handshaking) {
  s->app_write = 1;
  ssize_t r = dp_endpoint_write_pkt(s->core, to, buf, len, queue_if_handshaking, now_ms());
  s->app_write = 0;
  if (s->tx->stalled_len > 0) {
    int sent = send_stalled(s, is_blocking(s->fd, flags));
    if (r >= 0 && sent < 0)
      r = sent;
  }
  return r;
}

/* Resolves dtlssendto's destination into the socket's family. */
static int destination(int fd, int family, const struct sockaddr *dest, socklen_t dest_len, dp_addr *out) {
  struct sockaddr_storage connected;
  if (dest == NULL) {
    socklen_t len = sizeof connected;
    if (getpeername(fd, (struct sockaddr *)&connected, &len) < 0)
      return -EDESTADDRREQ;
    dest = (struct sockaddr *)&connected;
    dest_len = len;
  }
  return dp_addr_from_sockaddr(out, dest, dest_len, family);
}

ssize_t dtlssendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest,
                   socklen_t dest_len) {
  if (buf == NULL && len > 0)
    return fail(EINVAL);
  if (flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL | MSG_CONFIRM))
    return fail(EOPNOTSUPP);
  if (len > INT_MAX)
    return fail(EMSGSIZE);
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  dp_addr to;
  ssize_t r = destination(fd, s->family, dest, dest_len, &to);
  if (dest == NULL && r == 0)
    s->self_known = -1; /* connected: it no longer hears itself */
  if (r == 0) {
    run_timers(s);
    r = write_app(s, &to, buf, len, flags, 0);
    /* No session yet: a non-blocking caller's datagram waits in the queue. */
    if (r == -EINPROGRESS && !is_blocking(fd, flags))
      r = write_app(s, &to, buf, len, flags, 1);
    /* Blocking: wait for the handshake, bounded by the handshake timeout
     * (the core fails the handshake then; the bound here is a backstop). */
    uint64_t backstop = now_ms() + 2 * (uint64_t)s->cfg->handshake_ms;
    while (r == -EINPROGRESS && now_ms() < backstop) {
      if (wait_socket(s, -1) < 0) {
        r = -errno;
        break;
      }
      if (pump(s) < 0) {
        r = -errno;
        break;
      }
      int err;
      if (dp_endpoint_peer_state(s->core, &to, &err) != DTLSPLEX_STATE_HANDSHAKING)
        r = write_app(s, &to, buf, len, flags, 0);
    }
    if (r == -EINPROGRESS)
      r = -ETIMEDOUT;
  }
  int err = r < 0 ? (int)-r : 0;
  finish(s);
  if (err != 0)
    return fail(err);
  return r;
}

int dtlsplex_timeout(int fd) {
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  int t = dp_endpoint_pending(s->core) > 0 ? 0 : core_timeout(s, now_ms(), -1);
  finish(s);
  return t;
}

int dtlsplex_process(int fd) {
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  int n = pump(s);
  int err = errno;
  finish(s);
  errno = err;
  return n;
}

int dtlsplex_pending(int fd) {
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  size_t n = dp_endpoint_pending(s->core);
  finish(s);
  return n > INT_MAX ? INT_MAX : (int)n;
}

/* Common path of the per-peer calls: validates, locks, resolves the address.
 * Returns the locked socket, or NULL with errno. */
static dp_socket *peer_call(int fd, const struct sockaddr *peer, socklen_t len, dp_addr *addr) {
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return NULL;
  int r = dp_addr_from_sockaddr(addr, peer, len, s->family);
  if (r != 0) {
    finish(s);
    errno = -r;
    return NULL;
  }
  return s;
}

/* Ends a per-peer call with the core's result (0 or -errno). */
static int peer_call_end(dp_socket *s, int r) {
  finish(s);
  return r == 0 ? 0 : fail(-r);
}

int dtlsplex_close(int fd, const struct sockaddr *peer, socklen_t len) {
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_close(s->core, &addr));
}

int dtlsplex_set_peer_name(int fd, const struct sockaddr *peer, socklen_t len, const char *name) {
  if (name == NULL || name[0] == '\0')
    return fail(EINVAL);
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_set_peer_name(s->core, &addr, name));
}

int dtlsplex_peer_info(int fd, const struct sockaddr *peer, socklen_t len, struct dtlsplex_peer_info *out) {
  if (out == NULL)
    return fail(EINVAL);
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_peer_info(s->core, &addr, out));
}

int dtlsplex_stats(int fd, struct dtlsplex_stats *out) {
  if (out == NULL)
    return fail(EINVAL);
  dp_socket *s = acquire_locked(fd);
  if (s == NULL)
    return -1;
  dp_endpoint_stats(s->core, out);
  finish(s);
  return 0;
}
