/* Waiting: in poll (with the lock released, timers kept; waking the threads
 * in poll is waiters.c's) or in the kernel's own receive. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "self_wake.h"
#include "socket.h"
#include "sys.h"

#define KERNEL_WAIT_TIMER_MARGIN_MS 1000 /* see dp_may_wait_in_kernel */

/* Ends a thread's wait in the kernel's receive with an empty datagram to the
 * socket itself; the waiter skips it.  A failed send (a full send buffer) is
 * retried by the next call that needs the waiter. */
void dp_wake_kernel_waiter(dp_socket *s) {
  if (s->kernel_woken || s->self_known <= 0)
    return;
  s->kernel_woken = dp_self_wake_send(s->fd, &s->self) == 0;
}

int dp_is_blocking(int fd, int flags) {
  if (flags & MSG_DONTWAIT)
    return 0;
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && !(fl & O_NONBLOCK);
}

/* Milliseconds until the core's next timer, capped by limit_ms (-1 = none). */
int dp_core_timeout(const dp_socket *s, uint64_t now, int limit_ms) {
  uint64_t expiry = dp_endpoint_get_expiry(s->core);
  if (expiry == UINT64_MAX)
    return limit_ms;
  uint64_t wait = expiry > now ? expiry - now : 0;
  if (wait > INT_MAX)
    wait = INT_MAX;
  return limit_ms >= 0 && (uint64_t)limit_ms < wait ? limit_ms : (int)wait;
}

/* Whether a call interrupted by a signal starts again, as recvfrom(2) and
 * sendto(2) do when the handler has SA_RESTART and the socket no timeout
 * (signal(7)).  poll(2) never starts again, and which signal came is not
 * known: the wait starts again only if every installed handler has
 * SA_RESTART. */
static int handlers_restart(void) {
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sigaction(sig, NULL, &sa) != 0) /* SIGKILL, SIGSTOP, the C library's own */
      continue;
    int caught = (sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
    if (caught && !(sa.sa_flags & SA_RESTART))
      return 0;
  }
  return 1;
}

/* Waits, with the lock released, until the socket is readable, a timer is
 * due, limit_ms passes, or the socket is detached.  Returns 1 if the socket is
 * readable, 2 if it is shut down for reading, 0 if neither (or a signal came
 * and restartable, the wait should start again), or -1 with errno (EBADF
 * when detached, EINTR, or poll's own errors). */
int dp_wait_socket(dp_socket *s, int limit_ms, int restartable) {
  dp_wake_waiters_if_needed(s);
  if (dp_endpoint_has_events(s->core)) {
    /* The callbacks run before this thread counts as a waiter (one may call
     * in and wait itself); then the caller looks again at the state. */
    dp_unlock_and_dispatch(s);
    pthread_mutex_lock(&s->lock);
    return s->detached ? dp_fail(EBADF) : 0;
  }
  uint64_t now = dp_now_ms();
  int timeout = dp_core_timeout(s, now, limit_ms);
  uint64_t wakes_at = timeout < 0 ? UINT64_MAX : now + (uint64_t)timeout;
  unsigned int round;
  if (!dp_waiter_enter(s, wakes_at, &round))
    return s->detached ? dp_fail(EBADF) : 0;
  /* While a thread waits in the kernel, the datagrams are its own: it wakes
   * the others when it is done. */
  struct pollfd fds[2] = {{.fd = s->rx_in_kernel ? -1 : s->fd, .events = POLLIN | POLLRDHUP},
                          {.fd = s->wake_fd, .events = POLLIN}};
  pthread_mutex_unlock(&s->lock);
  int r = dp_sys()->poll(fds, 2, timeout);
  int err = errno;
  pthread_mutex_lock(&s->lock);
  dp_waiter_leave(s, wakes_at, round);
  if (s->detached)
    return dp_fail(EBADF);
  if (r < 0)
    return err == EINTR && restartable && handlers_restart() ? 0 : dp_fail(err);
  if (fds[0].revents & POLLNVAL)
    return dp_fail(EBADF);
  if (fds[0].revents & POLLRDHUP)
    return 2;
  return (fds[0].revents & (POLLIN | POLLERR)) != 0;
}

/* Whether a receive may wait in the kernel's own recvmmsg (no MSG_DONTWAIT):
 * the socket's O_NONBLOCK and SO_RCVTIMEO then apply exactly as they do to
 * recvfrom(2), at the cost of one system call instead of fcntl, getsockopt,
 * poll and recvmmsg.  Only while no handshake needs its timers on time and
 * no timer is due within the margin, and only for a socket that another
 * thread can wake (detach, a handshake begun meanwhile) with a datagram to
 * itself. */
int dp_may_wait_in_kernel(dp_socket *s) {
  /* A timer due soon runs on time, between datagrams, rather than in front
   * of the next one: after many peers went idle together, releasing their
   * buffers would otherwise lengthen the next round trips. */
  if (s->rx_in_kernel || dp_endpoint_handshaking(s->core) || s->self_known <= 0)
    return 0;
  uint64_t expiry = dp_endpoint_settle_expiry(s->core);
  return expiry == UINT64_MAX || expiry >= dp_now_ms() + KERNEL_WAIT_TIMER_MARGIN_MS;
}

/* Learns, once, whether a datagram to itself reaches the socket: the address
 * must qualify (dp_self_wake_addr) and a probe sent there must come back.
 * Whatever else the socket held meanwhile goes to the core. */
void dp_learn_self(dp_socket *s) {
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
    dp_io_prepare_rx(rx, RX_BATCH);
    int n = dp_sys()->recvmmsg(s->fd, rx->msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && (dp_is_stale_icmp_error(errno) || errno == EINTR)) {
      dp_io_note_icmp(s, errno);
      continue;
    }
    if (n < 0)
      return; /* EAGAIN: the probe did not come back (a late one is skipped) */
    int back = 0;
    for (int i = 0; i < n; i++) {
      dp_addr from;
      back |= dp_addr_from_sockaddr(&from, (struct sockaddr *)&rx->from[i], rx->msgs[i].msg_hdr.msg_namelen,
                                    s->family) == 0 &&
              dp_is_self_wake(&s->self, &from, rx->msgs[i].msg_len);
    }
    dp_io_feed_rx(s, n);
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
int dp_wait_in_kernel(dp_socket *s) {
  s->rx_in_kernel = 1;
  dp_io_prepare_rx(s->rx, 1);
  pthread_mutex_unlock(&s->lock); /* events were dispatched before: see dtlsrecvfrom */
  int n = dp_sys()->recvmmsg(s->fd, s->rx->msgs, 1, 0, NULL); /* one: the rest stays visible to poll */
  int err = errno;
  pthread_mutex_lock(&s->lock);
  s->rx_in_kernel = 0;
  s->kernel_woken = 0;
  pthread_cond_broadcast(&s->left_kernel); /* a detach may wait for it */
  if (s->waiters > 0)
    dp_wake_waiters(s); /* they left the socket to this thread */
  if (s->detached)
    return dp_fail(EBADF);
  if (n < 0)
    return dp_fail(err);
  dp_io_run_timers(s);
  dp_io_feed_rx(s, n);
  return n;
}

uint64_t dp_socket_deadline(int fd, int option, uint64_t started) {
  struct timeval tv;
  socklen_t tv_len = sizeof tv;
  if (getsockopt(fd, SOL_SOCKET, option, &tv, &tv_len) != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
    return UINT64_MAX;
  return started + (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
}
