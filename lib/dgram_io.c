/* Datagrams between the kernel and the endpoint core: the receive batch
 * (recvmmsg), the library's own datagrams gathered for sendmmsg, and an
 * application datagram the kernel had no room for. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "self_wake.h"
#include "socket.h"
#include "sys.h"

/* An ICMP error for an earlier datagram (to any peer) is reported by the
 * socket's next call, whatever its destination. */
int dp_is_stale_icmp_error(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* Sends the gathered datagrams.  One that the kernel refuses is lost, as any
 * datagram may be; the rest still go. */
static void flush_sends(dp_socket *s) {
  dp_tx *tx = s->tx;
  unsigned int sent = 0;
  for (int tries = 0; sent < tx->n && tries < 2 * TX_BATCH; tries++) {
    int n = dp_sys()->sendmmsg(s->fd, tx->msgs + sent, tx->n - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += (unsigned int)n;
    } else if (n < 0) {
      dp_io_note_icmp(s, errno);
      if (!dp_is_stale_icmp_error(errno) && errno != EINTR)
        sent++; /* skip the datagram the kernel refused */
    }
  }
  tx->n = 0;
}

static void gather_send(dp_socket *s, const dp_addr *to, const dp_local *source, const uint8_t *data,
                        size_t len) {
  dp_tx *tx = s->tx;
  if (tx->n == TX_BATCH)
    flush_sends(s);
  unsigned int i = tx->n++;
  tx->to[i] = *to;
  memcpy(tx->data[i], data, len);
  tx->iov[i] = (struct iovec){.iov_base = tx->data[i], .iov_len = len};
  size_t control_len = dp_pktinfo_source_cmsg(s, source, &tx->control[i]);
  tx->msgs[i].msg_hdr = (struct msghdr){.msg_name = &tx->to[i].u, .msg_namelen = tx->to[i].len,
                                        .msg_iov = &tx->iov[i], .msg_iovlen = 1,
                                        .msg_control = control_len > 0 ? &tx->control[i] : NULL,
                                        .msg_controllen = control_len};
}

/* One datagram now, from source if it names one. */
static ssize_t send_now(dp_socket *s, const dp_addr *to, const dp_local *source, const uint8_t *data,
                        size_t len) {
  dp_source_cmsg control;
  size_t control_len = dp_pktinfo_source_cmsg(s, source, &control);
  if (control_len == 0)
    return dp_sys()->sendto(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, &to->u.sa, to->len);
  struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
  struct msghdr m = {.msg_name = (void *)&to->u, .msg_namelen = to->len, .msg_iov = &iov, .msg_iovlen = 1,
                     .msg_control = &control, .msg_controllen = control_len};
  return dp_sys()->sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Starts and ends a stretch in which the library's own datagrams are gathered. */
void dp_io_defer_sends(dp_socket *s) { s->defer_sends = 1; }
void dp_io_send_deferred(dp_socket *s) {
  s->defer_sends = 0;
  if (s->tx->n > 0)
    flush_sends(s);
}

void dp_io_note_icmp(dp_socket *s, int err) {
  if (s->connected && dp_is_stale_icmp_error(err))
    s->icmp_error = err;
}

void dp_io_apply_icmp(dp_socket *s) {
  if (s->icmp_error != 0 && s->core != NULL &&
      dp_endpoint_fail_handshake(s->core, &s->peer, s->icmp_error, dp_now_ms()))
    s->icmp_error = 0;
}

int dp_io_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  dp_socket *s = arg;
  if (s->mute)
    return 0;
  if (s->defer_sends && len <= sizeof s->tx->data[0]) {
    gather_send(s, to, source, data, len);
    return 0;
  }
  if (s->defer_sends && s->tx->n > 0)
    flush_sends(s); /* those gathered before go first */
  /* Never blocks with the lock held.  Reporting an ICMP error clears it, so
   * the retry sends this datagram; the bound covers a new error meanwhile. */
  for (int tries = 0; tries < 3; tries++) {
    if (send_now(s, to, source, data, len) >= 0)
      return 0;
    dp_io_note_icmp(s, errno);
    if (!dp_is_stale_icmp_error(errno) && errno != EINTR)
      break;
  }
  dp_stalled **stash = s->tx->stash;
  if ((errno == EAGAIN || errno == EWOULDBLOCK) && stash != NULL && *stash == NULL && len <= sizeof (*stash)->data) {
    if ((*stash = malloc(sizeof **stash)) == NULL)
      return -ENOMEM;
    (*stash)->to = *to;
    (*stash)->source = *source;
    (*stash)->len = len;
    memcpy((*stash)->data, data, len);
    return 0;
  }
  return -errno;
}

/* Sends a stalled application datagram: a blocking caller waits for room
 * with the lock released, as sendto(2) would block; otherwise EAGAIN.
 * Returns 0 or -errno. */
int dp_io_send_stalled(dp_socket *s, dp_stalled *stalled, int blocking) {
  int r = 0;
  while (stalled->len > 0) {
    if (!blocking) {
      r = -EAGAIN;
      break;
    }
    struct pollfd fds[2] = {{.fd = s->fd, .events = POLLOUT}, {.fd = s->wake_fd, .events = POLLIN}};
    dp_wake_waiters_if_needed(s);
    dp_unlock_and_dispatch(s);
    int n = dp_sys()->poll(fds, 2, -1);
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
    if (send_now(s, &stalled->to, &stalled->source, stalled->data, stalled->len) >= 0)
      break;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && !dp_is_stale_icmp_error(errno)) {
      r = -errno;
      break;
    }
  }
  stalled->len = 0;
  return r;
}

void dp_io_init_rx(dp_rx *rx) {
  for (int i = 0; i < RX_BATCH; i++) {
    rx->iov[i] = (struct iovec){.iov_base = rx->data[i], .iov_len = sizeof rx->data[i]};
    rx->msgs[i].msg_hdr = (struct msghdr){.msg_name = &rx->from[i], .msg_namelen = sizeof rx->from[i],
                                          .msg_iov = &rx->iov[i], .msg_iovlen = 1,
                                          .msg_control = &rx->control[i], .msg_controllen = sizeof rx->control[i]};
  }
}

/* recvmmsg writes back only the address and control lengths (and lengths
 * and flags): the first n slots are made ready for the next call. */
void dp_io_prepare_rx(dp_rx *rx, unsigned int n) {
  for (unsigned int i = 0; i < n; i++) {
    rx->msgs[i].msg_hdr.msg_namelen = sizeof rx->from[i];
    rx->msgs[i].msg_hdr.msg_controllen = sizeof rx->control[i];
  }
}

/* Gives the core the n datagrams recvmmsg put in rx. */
void dp_io_feed_rx(dp_socket *s, int n) {
  dp_rx *rx = s->rx;
  uint64_t now = dp_now_ms();
  dp_io_defer_sends(s);
  s->data_untold = 1;
  for (int i = 0; i < n; i++) {
    dp_addr addr;
    dp_local local;
    struct msghdr *m = &rx->msgs[i].msg_hdr;
    if (dp_addr_from_sockaddr(&addr, (struct sockaddr *)&rx->from[i], m->msg_namelen, s->family) == 0 &&
        !dp_is_self_wake(&s->self, &addr, rx->msgs[i].msg_len))
      dp_endpoint_read_pkt(s->core, &addr, m->msg_controllen > 0 && dp_pktinfo_parse(s, m, &local) ? &local : NULL,
                           rx->data[i], rx->msgs[i].msg_len, now);
  }
  dp_io_send_deferred(s);
}

/* Feeds the core the datagrams the socket holds, a batch per system call, up
 * to a burst, or (for a caller waiting for data) one datagram per call until
 * application data is queued.  Reading no further than that keeps the rest
 * in the kernel, where poll(2) sees it: a loop that polls and reads one
 * datagram per wake-up never waits while the library holds data for it.  A
 * batch that comes back short means the socket is empty: no further call is
 * made to find EAGAIN.  Returns the number read, or -1 with errno. */
int dp_io_read_socket(dp_socket *s, int until_data) {
  int count = 0;
  /* A thread waiting in the kernel owns rx, and reads what arrives. */
  if (s->rx_in_kernel)
    return 0;
  /* Bounded even if errors keep coming. */
  unsigned int batch = until_data ? 1 : RX_BATCH;
  for (int calls = 0; count < READ_BURST && calls < READ_BURST; calls++) {
    dp_io_prepare_rx(s->rx, batch);
    int n = dp_sys()->recvmmsg(s->fd, s->rx->msgs, batch, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      /* ICMP errors reported on the socket concern one peer, never the loop. */
      if (dp_is_stale_icmp_error(errno) || errno == EINTR) {
        dp_io_note_icmp(s, errno);
        continue;
      }
      return -1;
    }
    dp_io_feed_rx(s, n);
    count += n;
    if ((unsigned int)n < batch || (until_data && dp_endpoint_pending(s->core) > 0))
      break;
  }
  dp_io_apply_icmp(s);
  return count;
}

/* Runs the core's due timers, their retransmissions sent together.  Most
 * calls find none due: they cost a clock read. */
void dp_io_run_timers(dp_socket *s) {
  uint64_t now = dp_now_ms();
  if (dp_endpoint_get_expiry(s->core) > now)
    return;
  dp_io_defer_sends(s);
  dp_endpoint_handle_expiry(s->core, now);
  dp_io_send_deferred(s);
}

