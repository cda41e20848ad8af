/* The program's waits, taken before the C library's.  A claimed socket is
 * readable to the program only when decrypted data waits for it: a
 * datagram that was a handshake record, a retransmission or garbage makes
 * the socket readable to the kernel but leaves nothing to read.  So each
 * claimed socket is waited for through the library's event descriptor
 * (readable when a datagram arrived, a DTLS timer is due or data is
 * queued), its datagrams processed, and the wait goes on until data is
 * there or the program's timeout ends.  Timers run meanwhile.  A claimed
 * socket asked for POLLOUT is reported writable: UDP sockets are, unless
 * the send buffer is full. */
#include "preload.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left of a wait that ends at deadline (-1: none). */
static int left_ms(long long deadline) {
  if (deadline < 0)
    return -1;
  long long left = deadline - mono_ms();
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* A timespec timeout in milliseconds, rounded up: -1 for none, -2 (EINVAL)
 * for one the kernel refuses. */
static int timespec_ms(const struct timespec *ts) {
  if (ts == NULL)
    return -1;
  if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
    return -2;
  long long ms = (long long)ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int invalid(void) {
  errno = EINVAL;
  return -1;
}

/* One C library wait over fds: poll, or ppoll with a signal mask. */
static int wait_once(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask, int with_mask) {
  if (!with_mask)
    return dp_sys()->poll(fds, n, timeout_ms);
  struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
  return dp_sys()->ppoll(fds, n, timeout_ms < 0 ? NULL : &ts, mask);
}

/* poll(2) over fds, of which those with claimed[i] are DTLS sockets. */
static int wait_claimed(struct pollfd *fds, nfds_t n, const unsigned char *claimed, int timeout_ms,
                        const sigset_t *mask, int with_mask) {
  struct pollfd *sub = malloc(n * sizeof *sub);
  if (sub == NULL) {
    errno = ENOMEM;
    return -1;
  }
  long long deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
  for (;;) {
    int now_ready = 0;
    for (nfds_t i = 0; i < n; i++) {
      sub[i] = fds[i];
      if (!claimed[i])
        continue;
      /* Only a socket the program reads is waited for: one asked for
       * nothing, or only POLLOUT, would wake this loop for nothing. */
      sub[i].fd = -1;
      if (fds[i].events & POLLIN) {
        if ((sub[i].fd = dtlsplex_event_fd(fds[i].fd)) < 0) {
          free(sub);
          return -1;
        }
        sub[i].events = POLLIN;
      }
      now_ready |= (fds[i].events & POLLOUT) != 0;
    }
    int r = wait_once(sub, n, now_ready ? 0 : left_ms(deadline), mask, with_mask);
    if (r < 0) {
      free(sub);
      return -1;
    }
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
      fds[i].revents = sub[i].revents;
      if (claimed[i]) {
        fds[i].revents = (short)(fds[i].events & POLLOUT);
        if ((sub[i].revents & POLLIN) && dp_preload_readable(fds[i].fd))
          fds[i].revents |= POLLIN;
      }
      ready += fds[i].revents != 0;
    }
    if (ready > 0 || left_ms(deadline) == 0) {
      free(sub);
      return ready;
    }
  }
}

/* Marks the claimed entries; -1 if a selected socket cannot be attached
 * (errno set), else how many were claimed. */
static int claim_all(const struct pollfd *fds, nfds_t n, unsigned char *claimed) {
  int count = 0;
  for (nfds_t i = 0; i < n; i++) {
    int c = fds[i].fd >= 0 ? dp_preload_claim(fds[i].fd, NULL) : 0;
    if (c < 0)
      return -1;
    claimed[i] = (unsigned char)c;
    count += c;
  }
  return count;
}

static int poll_with(struct pollfd *fds, nfds_t n, int timeout_ms, const sigset_t *mask, int with_mask) {
  unsigned char *claimed = n > 0 ? calloc(n, 1) : NULL;
  if (n > 0 && claimed == NULL) {
    errno = ENOMEM;
    return -1;
  }
  int count = claim_all(fds, n, claimed);
  int r = count < 0   ? -1
          : count > 0 ? wait_claimed(fds, n, claimed, timeout_ms, mask, with_mask)
                      : wait_once(fds, n, timeout_ms, mask, with_mask);
  free(claimed);
  return r;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout_ms) { return poll_with(fds, n, timeout_ms, NULL, 0); }

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask) {
  int ms = timespec_ms(timeout);
  return ms == -2 ? invalid() : poll_with(fds, n, ms, mask, 1);
}

/* _FORTIFY_SOURCE's checked entry points. */

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fds_len) {
  if (fds_len / sizeof *fds < n)
    __chk_fail();
  return poll(fds, n, timeout_ms);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask,
                       size_t fds_len) {
  if (fds_len / sizeof *fds < n)
    __chk_fail();
  return ppoll(fds, n, timeout, mask);
}

/* select and pselect: the same wait over the descriptors in the sets. */
static int select_with(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int timeout_ms, const sigset_t *mask,
                       int with_mask) {
  if (nfds < 0 || timeout_ms == -2)
    return invalid();
  if (nfds > FD_SETSIZE) /* as the kernel: no descriptor is above it in the sets */
    nfds = FD_SETSIZE;
  struct pollfd *fds = malloc((size_t)(nfds > 0 ? nfds : 1) * sizeof *fds);
  if (fds == NULL) {
    errno = ENOMEM;
    return -1;
  }
  nfds_t n = 0;
  for (int fd = 0; fd < nfds; fd++) {
    short events = (short)((rd != NULL && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr != NULL && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                           (ex != NULL && FD_ISSET(fd, ex) ? POLLPRI : 0));
    if (events != 0)
      fds[n++] = (struct pollfd){.fd = fd, .events = events};
  }
  int r = poll_with(fds, n, timeout_ms, mask, with_mask);
  for (nfds_t i = 0; r >= 0 && i < n; i++)
    if (fds[i].revents & POLLNVAL) { /* select fails for a descriptor that is not open */
      errno = EBADF;
      r = -1;
    }
  if (r >= 0) {
    r = 0;
    if (rd != NULL)
      FD_ZERO(rd);
    if (wr != NULL)
      FD_ZERO(wr);
    if (ex != NULL)
      FD_ZERO(ex);
    for (nfds_t i = 0; i < n; i++) {
      short got = fds[i].revents;
      /* As select reports them: an error or a hang-up reads as readable. */
      if (rd != NULL && (fds[i].events & POLLIN) && (got & (POLLIN | POLLERR | POLLHUP)) && ++r)
        FD_SET(fds[i].fd, rd);
      if (wr != NULL && (fds[i].events & POLLOUT) && (got & (POLLOUT | POLLERR)) && ++r)
        FD_SET(fds[i].fd, wr);
      if (ex != NULL && (fds[i].events & POLLPRI) && (got & POLLPRI) && ++r)
        FD_SET(fds[i].fd, ex);
    }
  }
  free(fds);
  return r;
}

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout) {
  int ms = -1;
  if (timeout != NULL) {
    if (timeout->tv_sec < 0 || timeout->tv_usec < 0 || timeout->tv_usec >= 1000000)
      return invalid();
    long long total = (long long)timeout->tv_sec * 1000 + (timeout->tv_usec + 999) / 1000;
    ms = total > INT_MAX ? INT_MAX : (int)total;
  }
  return select_with(nfds, rd, wr, ex, ms, NULL, 0);
}

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
                   const sigset_t *mask) {
  return select_with(nfds, rd, wr, ex, timespec_ms(timeout), mask, 1);
}

/* ---- epoll --------------------------------------------------------------
 * A claimed socket added to an epoll instance is replaced there by its
 * event descriptor, tagged with a record of ours; epoll_wait turns the
 * record's events back into the program's, once its data is ready.  A UDP
 * socket not yet claimed is added as itself, and recorded (evfd -1), so
 * that it can be replaced when it is attached later. */

typedef struct watched {
  int epfd, fd, evfd;          /* evfd -1: the socket itself is in the set */
  struct epoll_event program;  /* what the program asked for, its data included */
  struct watched *next;
} watched;

static watched *watches;
static atomic_int n_watches; /* close() looks here first: no lock unless there are some */
static pthread_mutex_t watches_lock = PTHREAD_MUTEX_INITIALIZER;

static watched **find_watch(int epfd, int fd) {
  watched **w = &watches;
  while (*w != NULL && ((*w)->epfd != epfd || (*w)->fd != fd))
    w = &(*w)->next;
  return w;
}

static int is_watch(const void *ptr) {
  for (watched *w = watches; w != NULL; w = w->next)
    if (w == ptr)
      return 1;
  return 0;
}

static int has_watches(int epfd) {
  for (watched *w = watches; w != NULL; w = w->next)
    if (w->epfd == epfd && w->evfd >= 0)
      return 1;
  return 0;
}

static void unlink_watch(watched **slot) {
  watched *gone = *slot;
  *slot = gone->next;
  free(gone);
  atomic_fetch_sub(&n_watches, 1);
}

/* What the event descriptor is watched for: only what the program reads. */
static uint32_t evfd_events(const struct epoll_event *program) { return program->events & EPOLLIN ? EPOLLIN : 0; }

/* The socket itself stays in the set for EPOLLOUT, with the program's data. */
static int watch_writable(int epfd, int op, int fd, const struct epoll_event *program) {
  struct epoll_event out = *program;
  out.events &= ~(uint32_t)EPOLLIN;
  return dp_sys()->epoll_ctl(epfd, op, fd, &out);
}

/* Puts the event descriptor of fd in epfd in place of what w recorded. */
static int watch_event_fd(watched *w, int evfd) {
  struct epoll_event tagged = {.events = evfd_events(&w->program), .data.ptr = w};
  int r = dp_sys()->epoll_ctl(w->epfd, EPOLL_CTL_ADD, evfd, &tagged);
  if (r == 0 && (w->program.events & EPOLLOUT) && (r = watch_writable(w->epfd, EPOLL_CTL_ADD, w->fd, &w->program)) != 0)
    dp_sys()->epoll_ctl(w->epfd, EPOLL_CTL_DEL, evfd, NULL);
  if (r == 0)
    w->evfd = evfd;
  return r;
}

void dp_preload_wait_forget(int fd) {
  if (atomic_load(&n_watches) == 0)
    return;
  pthread_mutex_lock(&watches_lock);
  for (watched **w = &watches; *w != NULL;) {
    if ((*w)->fd == fd || (*w)->epfd == fd) {
      /* The event descriptor outlives this number while a dup keeps the
       * socket: its events must not reach the program as ours. */
      if ((*w)->evfd >= 0 && (*w)->epfd != fd)
        dp_sys()->epoll_ctl((*w)->epfd, EPOLL_CTL_DEL, (*w)->evfd, NULL);
      unlink_watch(w);
    } else {
      w = &(*w)->next;
    }
  }
  pthread_mutex_unlock(&watches_lock);
}

void dp_preload_wait_attached(int fd) {
  if (atomic_load(&n_watches) == 0)
    return;
  int saved = errno;
  pthread_mutex_lock(&watches_lock);
  for (watched *w = watches; w != NULL; w = w->next) {
    if (w->fd != fd || w->evfd >= 0)
      continue;
    int evfd = dtlsplex_event_fd(fd);
    if (evfd >= 0 && dp_sys()->epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) == 0)
      watch_event_fd(w, evfd);
  }
  pthread_mutex_unlock(&watches_lock);
  errno = saved;
}

static int ctl_recorded(int epfd, int op, int fd, struct epoll_event *event, int claimed) {
  pthread_mutex_lock(&watches_lock);
  watched **slot = find_watch(epfd, fd), *w = *slot;
  int r = -1;
  if (op != EPOLL_CTL_DEL && event == NULL) {
    errno = EFAULT;
  } else if (op == EPOLL_CTL_ADD && w != NULL) {
    errno = EEXIST;
  } else if (op == EPOLL_CTL_ADD) {
    int evfd = claimed ? dtlsplex_event_fd(fd) : -1;
    w = !claimed || evfd >= 0 ? calloc(1, sizeof *w) : NULL;
    if (w == NULL) {
      errno = claimed && evfd < 0 ? errno : ENOMEM;
    } else {
      *w = (watched){.epfd = epfd, .fd = fd, .evfd = -1, .program = *event};
      r = claimed ? watch_event_fd(w, evfd) : dp_sys()->epoll_ctl(epfd, op, fd, event);
      if (r == 0) {
        w->next = watches;
        watches = w;
        atomic_fetch_add(&n_watches, 1);
      } else {
        free(w);
      }
    }
  } else if (w == NULL || w->evfd < 0) { /* as the kernel knows it */
    r = dp_sys()->epoll_ctl(epfd, op, fd, event);
    if (r == 0 && w != NULL && op == EPOLL_CTL_MOD)
      w->program = *event;
    else if (r == 0 && w != NULL)
      unlink_watch(slot);
  } else if (op == EPOLL_CTL_DEL) {
    r = dp_sys()->epoll_ctl(epfd, EPOLL_CTL_DEL, w->evfd, NULL);
    if (w->program.events & EPOLLOUT)
      dp_sys()->epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    unlink_watch(slot);
  } else { /* EPOLL_CTL_MOD */
    struct epoll_event tagged = {.events = evfd_events(event), .data.ptr = w};
    int was_out = (w->program.events & EPOLLOUT) != 0, out = (event->events & EPOLLOUT) != 0;
    r = dp_sys()->epoll_ctl(epfd, EPOLL_CTL_MOD, w->evfd, &tagged);
    if (r == 0 && out)
      r = watch_writable(epfd, was_out ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, event);
    else if (r == 0 && was_out)
      dp_sys()->epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    if (r == 0)
      w->program = *event;
  }
  pthread_mutex_unlock(&watches_lock);
  return r;
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed < 0)
    return -1;
  /* A UDP socket not claimed yet is recorded too: it may be later. */
  if (claimed || dp_preload_is_udp(fd))
    return ctl_recorded(epfd, op, fd, event, claimed);
  return dp_sys()->epoll_ctl(epfd, op, fd, event);
}

/* Turns our records' events into the program's: kept if data waits, else
 * dropped.  Returns how many events remain. */
static int translate(struct epoll_event *events, int n) {
  int kept = 0;
  for (int i = 0; i < n; i++) {
    pthread_mutex_lock(&watches_lock);
    watched *w = is_watch(events[i].data.ptr) ? events[i].data.ptr : NULL;
    int fd = w != NULL ? w->fd : -1;
    struct epoll_event program = w != NULL ? w->program : events[i];
    pthread_mutex_unlock(&watches_lock);
    if (w == NULL) {
      events[kept++] = events[i];
    } else if ((program.events & EPOLLIN) && dp_preload_readable(fd)) {
      events[kept].events = EPOLLIN;
      events[kept++].data = program.data;
    }
  }
  return kept;
}

static int epoll_wait_with(int epfd, struct epoll_event *events, int max, int timeout_ms, const sigset_t *mask,
                           int with_mask) {
  pthread_mutex_lock(&watches_lock);
  int ours = has_watches(epfd);
  pthread_mutex_unlock(&watches_lock);
  if (!ours)
    return with_mask ? dp_sys()->epoll_pwait(epfd, events, max, timeout_ms, mask)
                     : dp_sys()->epoll_wait(epfd, events, max, timeout_ms);
  long long deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
  for (;;) {
    int left = left_ms(deadline);
    int n = with_mask ? dp_sys()->epoll_pwait(epfd, events, max, left, mask)
                      : dp_sys()->epoll_wait(epfd, events, max, left);
    if (n < 0)
      return n;
    n = translate(events, n);
    if (n > 0 || left_ms(deadline) == 0)
      return n;
  }
}

EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout_ms) {
  return epoll_wait_with(epfd, events, max, timeout_ms, NULL, 0);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout_ms, const sigset_t *mask) {
  return epoll_wait_with(epfd, events, max, timeout_ms, mask, 1);
}

/* The nanosecond timeout is kept to the millisecond, rounded up. */
EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max, const struct timespec *timeout,
                        const sigset_t *mask) {
  int ms = timespec_ms(timeout);
  return ms == -2 ? invalid() : epoll_wait_with(epfd, events, max, ms, mask, 1);
}
