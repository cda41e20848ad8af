/* The public calls of the socket layer: attach, detach, dtlssendto,
 * dtlsrecvfrom and the event-loop and per-peer calls. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtlsplex.h"
#include "socket.h"

/* Runs due timers and reads the socket. */
static int pump(dp_socket *s) {
  dp_io_run_timers(s);
  int n = dp_io_read_socket(s, 0);
  if (n > 0)
    dp_io_run_timers(s);
  return n;
}

/* The socket's lock and condition variables: 0, or -1 with none made. */
static int init_sync(dp_socket *s) {
  if (pthread_mutex_init(&s->lock, NULL) != 0)
    return -1;
  if (pthread_cond_init(&s->left_kernel, NULL) == 0) {
    if (pthread_cond_init(&s->wake_delivered, NULL) == 0)
      return 0;
    pthread_cond_destroy(&s->left_kernel);
  }
  pthread_mutex_destroy(&s->lock);
  return -1;
}

int dtlsplex_attach(int fd, dtlsplex_config *cfg) {
  int saved_errno = errno;
  if (cfg == NULL)
    return dp_fail(EINVAL);
  struct stat st;
  if (fstat(fd, &st) != 0)
    return dp_fail(EBADF);
  if (!S_ISSOCK(st.st_mode))
    return dp_fail(ENOTSOCK);
  int type, family;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return -1;
  if (type != SOCK_DGRAM)
    return dp_fail(EPROTOTYPE);
  len = sizeof family;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0)
    return -1;
  if (family != AF_INET && family != AF_INET6)
    return dp_fail(EAFNOSUPPORT);
  if (cfg->role == DTLSPLEX_ROLE_SERVER && !dp_config_can_serve(cfg))
    return dp_fail(EINVAL);

  dp_socket *s = calloc(1, sizeof *s);
  if (s == NULL)
    return dp_fail(ENOMEM);
  if (init_sync(s) != 0) {
    free(s);
    return dp_fail(ENOMEM);
  }
  atomic_init(&s->user_fd, fd);
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->family = family;
  atomic_init(&s->refs, 1);
  s->ev_epoll = -1;
  s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  int setup_err = errno;
  s->wake_fd = s->fd >= 0 ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
  if (s->wake_fd < 0) {
    setup_err = s->fd >= 0 ? errno : setup_err;
  } else {
    setup_err = ENOMEM;
    s->rx = malloc(sizeof *s->rx);
    s->tx = malloc(sizeof *s->tx);
  }
  if (s->rx == NULL || s->tx == NULL) {
    dp_socket_free(s);
    return dp_fail(setup_err == EMFILE || setup_err == ENFILE ? setup_err : ENOMEM);
  }
  dp_io_init_rx(s->rx);
  s->tx->n = 0;
  s->tx->stash = NULL;
  int v6only = 0;
  socklen_t v6only_len = sizeof v6only;
  s->v6only = family == AF_INET6 && getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &v6only_len) == 0 && v6only;
  dp_config_ref(cfg);
  s->cfg = cfg;
  if ((s->core = dp_endpoint_new(cfg, dp_io_send, s)) == NULL) {
    dp_socket_free(s);
    return dp_fail(ENOMEM);
  }

  dp_pktinfo_attach(s);
  dp_socket_learn_peer(s);
  int err = -dp_registry_add(fd, s);
  if (err != 0) {
    dp_endpoint_free(s->core);
    dp_socket_free(s);
    return dp_fail(err);
  }
  errno = saved_errno;
  return 0;
}

void dp_socket_learn_peer(dp_socket *s) {
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  s->connected = getpeername(s->fd, (struct sockaddr *)&addr, &len) == 0 &&
                 dp_addr_from_sockaddr(&s->peer, (struct sockaddr *)&addr, len, s->family) == 0;
  s->icmp_error = 0;
  dp_pktinfo_update(s);
  /* A connected socket hears only its peer, not its own wake-up datagram. */
  s->self_known = s->connected ? -1 : 0;
  struct dtlsplex_stats st;
  dp_endpoint_stats(s->core, &st);
  if (s->connected || st.peers == 0)
    return;
  /* Disconnecting a socket the kernel bound (bind to port 0, or none) lets
   * the port go; the next send takes a new one, which no peer knows. */
  len = sizeof addr;
  if (getsockname(s->fd, (struct sockaddr *)&addr, &len) != 0 ||
      ((struct sockaddr_in *)&addr)->sin_port != 0) /* the port is at the same offset in both families */
    return;
  dp_endpoint *fresh = dp_endpoint_new(s->cfg, dp_io_send, s);
  if (fresh == NULL)
    return; /* out of memory: the old sessions stay, and time out */
  s->mute = 1; /* no close_notify: it would leave from the new port */
  dp_endpoint_free(s->core);
  s->mute = 0;
  s->core = fresh;
}

int dtlsplex_reconfigure(int fd, dtlsplex_config *cfg) {
  int saved_errno = errno;
  if (cfg == NULL || (cfg->role == DTLSPLEX_ROLE_SERVER && !dp_config_can_serve(cfg)))
    return dp_fail(EINVAL);
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  dtlsplex_config **retired = realloc(s->retired, (s->n_retired + 1) * sizeof *retired);
  int err = retired == NULL ? ENOMEM : 0;
  if (retired != NULL)
    s->retired = retired;
  if (err == 0) {
    dp_config_ref(cfg);
    err = -dp_endpoint_reconfigure(s->core, cfg);
    if (err == 0) {
      s->retired[s->n_retired++] = s->cfg;
      s->cfg = cfg;
    } else {
      dtlsplex_config_free(cfg);
    }
  }
  errno = err != 0 ? err : saved_errno;
  dp_socket_finish(s);
  return err != 0 ? -1 : 0;
}

int dtlsplex_detach(int fd) {
  int saved_errno = errno;
  dp_socket *s = dp_registry_remove(fd);
  if (s == NULL)
    return dp_fail(EBADF);
  dp_socket_detach(s);
  errno = saved_errno;
  return 0;
}

/* What a connected socket reports, once, about its peer, as recvfrom(2)
 * reports ICMP errors: an ICMP error, or a failed handshake.  0 if none. */
static int connected_peer_error(dp_socket *s) {
  if (!s->connected)
    return 0;
  int err = s->icmp_error != 0 ? s->icmp_error : dp_endpoint_take_failure(s->core, &s->peer);
  s->icmp_error = 0;
  return err;
}

/* The total length of an iovec array, checked as the kernel checks it:
 * >= 0, or -EMSGSIZE (too many entries), -EFAULT, -EINVAL (over SSIZE_MAX). */
static ssize_t iov_total(const struct iovec *iov, size_t iovcnt) {
  if (iovcnt > IOV_MAX)
    return -EMSGSIZE;
  if (iov == NULL && iovcnt > 0)
    return -EFAULT;
  size_t total = 0;
  for (size_t i = 0; i < iovcnt; i++) {
    if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
      return -EFAULT;
    if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
      return -EINVAL;
    total += iov[i].iov_len;
  }
  return (ssize_t)total;
}

/* dtlsrecvfrom and dtlsrecvmsg: the datagram scattered over iov; with msg,
 * also the control messages the program enabled and msg_flags. */
static ssize_t receive(int fd, const struct iovec *iov, size_t iovcnt, int flags, struct sockaddr *src,
                       socklen_t *src_len, struct msghdr *msg) {
  int saved_errno = errno; /* a successful call leaves errno as it found it */
  ssize_t room = iov_total(iov, iovcnt);
  if (room < 0)
    return dp_fail((int)-room);
  if (src != NULL && src_len == NULL)
    return dp_fail(EFAULT);
  /* MSG_WAITALL, MSG_CMSG_CLOEXEC and the like mean nothing here, as for UDP. */
  if (flags & (MSG_OOB | MSG_ERRQUEUE))
    return dp_fail(EOPNOTSUPP);
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  /* Whether to block, and until when, matters only once nothing is queued:
   * asked then, so that a ready datagram costs no extra system calls.  The
   * first wait is the kernel's own where it may be; a call that must wait
   * again (the datagrams were not application data) waits in poll, so that
   * SO_RCVTIMEO bounds the whole call. */
  int blocking = -1, readable = 1, waited = 0;
  uint64_t give_up = UINT64_MAX;
  ssize_t result;
  for (;;) {
    dp_addr from;
    dp_local arrival;
    dp_io_run_timers(s);
    ssize_t n = dp_endpoint_recvmsg(s->core, iov, iovcnt, flags & MSG_PEEK, &from, &arrival);
    if (n >= 0) {
      if (src != NULL)
        dp_addr_copy_out(&from, src, src_len);
      if (msg != NULL) {
        msg->msg_flags = n > room ? MSG_TRUNC : 0;
        dp_pktinfo_to_program(s, &arrival, msg);
      }
      result = (flags & MSG_TRUNC) || n < room ? n : room;
      break;
    }
    if (n == -ENOMEM) {
      result = dp_fail(ENOMEM);
      break;
    }
    int err = connected_peer_error(s);
    if (err != 0) {
      result = dp_fail(err);
      break;
    }
    if (!waited && !(flags & MSG_DONTWAIT) && s->self_known == 0 && !s->rx_in_kernel) {
      dp_learn_self(s); /* it may have read the socket: look at the queue again */
      continue;
    }
    if (!waited && !(flags & MSG_DONTWAIT) && dp_may_wait_in_kernel(s)) {
      if (dp_endpoint_has_events(s->core)) {
        /* Callbacks before the socket is claimed: one may call back in and
         * need to read it (a blocking dtlssendto that reconnects). */
        dp_unlock_and_dispatch(s);
        pthread_mutex_lock(&s->lock);
        if (s->detached) {
          result = dp_fail(EBADF);
          break;
        }
        continue;
      }
      waited = 1;
      int got = dp_wait_in_kernel(s);
      if (got < 0 && dp_is_stale_icmp_error(errno))
        dp_io_note_icmp(s, errno);
      dp_io_apply_icmp(s);
      if (got >= 0 || dp_is_stale_icmp_error(errno))
        continue;
      result = -1;
      break;
    }
    if (blocking < 0) {
      blocking = dp_is_blocking(fd, flags);
      if (blocking) {
        /* From here, not the call's start: a clock read fewer for every
         * call that finds its datagram, and the work before is no wait. */
        give_up = dp_socket_deadline(fd, SO_RCVTIMEO, dp_now_ms());
        readable = 0; /* poll first: it returns at once if a datagram waits */
      }
    }
    if (readable) {
      int got = dp_io_read_socket(s, 1);
      if (got == 0 && (err = connected_peer_error(s)) != 0) { /* what this read learnt */
        result = dp_fail(err);
        break;
      }
      if (got != 0 || !blocking) {
        if (got > 0)
          continue;
        result = got < 0 ? -1 : dp_fail(EAGAIN);
        break;
      }
    }
    uint64_t now = dp_now_ms();
    if (now >= give_up) {
      result = dp_fail(EAGAIN);
      break;
    }
    int limit = give_up == UINT64_MAX ? -1 : (int)(give_up - now < INT_MAX ? give_up - now : INT_MAX);
    waited = 1;
    if ((readable = dp_wait_socket(s, limit, give_up == UINT64_MAX)) < 0) {
      result = -1;
      break;
    }
    if (readable == 2) { /* shut down for reading: what is queued first, then end of file */
      int got = dp_io_read_socket(s, 1);
      if (got > 0)
        continue;
      if (src != NULL)
        *src_len = 0;
      if (msg != NULL)
        msg->msg_controllen = msg->msg_flags = 0;
      result = 0;
      break;
    }
  }
  if (result >= 0)
    errno = saved_errno;
  dp_socket_finish(s);
  return result;
}

ssize_t dtlsrecvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *src_len) {
  if (buf == NULL && len > 0)
    return dp_fail(EFAULT);
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  return receive(fd, &iov, 1, flags, src, src_len, NULL);
}

ssize_t dtlsrecvmsg(int fd, struct msghdr *msg, int flags) {
  if (msg == NULL)
    return dp_fail(EFAULT);
  return receive(fd, msg->msg_iov, msg->msg_iovlen, flags, msg->msg_name,
                 msg->msg_name != NULL ? &msg->msg_namelen : NULL, msg);
}

/* Writes a caller's datagram through the core.  If the kernel had no room
 * for it, a blocking caller waits as sendto(2) would; others get EAGAIN. */
static ssize_t write_app(dp_socket *s, const dp_addr *to, const dp_local *source, const void *buf, size_t len,
                         int flags, int queue_if_handshaking) {
  dp_stalled *stalled = NULL;
  s->tx->stash = &stalled;
  ssize_t r = dp_endpoint_write_pkt(s->core, to, source, buf, len, queue_if_handshaking, dp_now_ms());
  s->tx->stash = NULL;
  if (stalled != NULL) {
    int sent = dp_io_send_stalled(s, stalled, dp_is_blocking(s->fd, flags));
    free(stalled);
    if (r >= 0 && sent < 0)
      r = sent;
  }
  return r;
}

/* Resolves dtlssendto's destination into the socket's family, with the
 * checks sendto(2) makes: 0, or -EDESTADDRREQ, -EINVAL, -EAFNOSUPPORT,
 * -ENETUNREACH (an IPv4 address on an IPv6-only socket), -EISCONN. */
static int destination(const dp_socket *s, const struct sockaddr *dest, socklen_t dest_len, dp_addr *out) {
  /* The kernel's AF_INET6 sockets read AF_UNSPEC as no address at all. */
  if (dest != NULL && s->family == AF_INET6 && dest_len >= (socklen_t)sizeof(sa_family_t) &&
      dest->sa_family == AF_UNSPEC)
    dest = NULL;
  if (dest == NULL) {
    if (!s->connected)
      return -EDESTADDRREQ;
    *out = s->peer;
    return 0;
  }
  int r = dp_addr_from_sockaddr(out, dest, dest_len, s->family);
  if (r != 0)
    return r;
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (s->v6only && memcmp(out->key.ip, v4_mapped, sizeof v4_mapped) == 0)
    return -ENETUNREACH;
  if (out->key.port == 0)
    return -EINVAL;
  /* A connected socket hears only its peer: a handshake with anyone else
   * could never finish.  (sendto(2) would send, and drop the answer.) */
  if (s->connected && memcmp(&out->key, &s->peer.key, sizeof out->key) != 0)
    return -EISCONN;
  return 0;
}

#define CORK_MAX 16384 /* the most one record carries */

/* MSG_MORE: holds data for the datagram the next send without the flag
 * completes, to the first such call's destination and from its source, as
 * UDP corks.  Returns len, or -EMSGSIZE, -ENOMEM. */
static ssize_t cork(dp_socket *s, const dp_addr *to, const dp_local *source, const void *buf, size_t len) {
  if (s->cork == NULL && (s->cork = malloc(CORK_MAX)) == NULL)
    return -ENOMEM;
  if (len > CORK_MAX - s->cork_len)
    return -EMSGSIZE;
  if (s->cork_len == 0) {
    s->cork_to = *to;
    s->cork_source = *source;
  }
  memcpy(s->cork + s->cork_len, buf, len);
  s->cork_len += len;
  return (ssize_t)len;
}

/* Sends one datagram through the core.  A blocking caller whose peer has no
 * session yet waits for the handshake. */
static ssize_t send_datagram(dp_socket *s, int fd, const dp_addr *to, const dp_local *source, const void *buf,
                             size_t len, int flags) {
  const dp_local *chosen = source->has_source ? source : NULL; /* else the session's own */
  dp_io_run_timers(s);
  ssize_t r = write_app(s, to, chosen, buf, len, flags, 0);
  /* No session yet: a non-blocking caller's datagram waits in the queue. */
  if (r == -EINPROGRESS && !dp_is_blocking(fd, flags))
    r = write_app(s, to, chosen, buf, len, flags, 1);
  /* Blocking: wait for the handshake, bounded by the handshake timeout
   * (the core fails the handshake then; the bound here is a backstop) and
   * by SO_SNDTIMEO, which gives EAGAIN as sendto(2) does: the datagram is
   * not sent. */
  if (r != -EINPROGRESS)
    return r;
  uint64_t now = dp_now_ms(), backstop = now + 2 * (uint64_t)s->cfg->handshake_ms;
  uint64_t give_up = dp_socket_deadline(fd, SO_SNDTIMEO, now);
  while (r == -EINPROGRESS && (now = dp_now_ms()) < backstop) {
    if (now >= give_up)
      return -EAGAIN;
    int limit = give_up == UINT64_MAX ? -1 : (int)(give_up - now < INT_MAX ? give_up - now : INT_MAX);
    int waited = dp_wait_socket(s, limit, give_up == UINT64_MAX);
    if (waited < 0)
      return -errno;
    if (waited == 2) /* shut down for reading: the handshake can never finish */
      return -ESHUTDOWN;
    if (pump(s) < 0)
      return -errno;
    int err;
    if (dp_endpoint_peer_state(s->core, to, &err) != DTLSPLEX_STATE_HANDSHAKING)
      r = write_app(s, to, chosen, buf, len, flags, 0);
  }
  return r == -EINPROGRESS ? -ETIMEDOUT : r;
}

/* dtlssendto and dtlssendmsg (control: its msghdr, for the source it asks
 * for; NULL for none). */
static ssize_t send_call(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest,
                         socklen_t dest_len, const struct msghdr *control) {
  int saved_errno = errno;
  if (buf == NULL && len > 0)
    return dp_fail(EFAULT);
  if (flags & MSG_OOB) /* the other flags UDP accepts are accepted, and ignored but MSG_MORE */
    return dp_fail(EOPNOTSUPP);
  if (len > INT_MAX)
    return dp_fail(EMSGSIZE);
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  dp_addr to;
  dp_local source = {0};
  ssize_t r = destination(s, dest, dest_len, &to);
  if (r == 0 && control != NULL)
    r = dp_pktinfo_from_program(s, control, &to, &source);
  if (r == 0 && s->icmp_error != 0) { /* an earlier datagram's, reported once as sendto(2) does */
    r = -s->icmp_error;
    s->icmp_error = 0;
  } else if (r == 0 && (flags & MSG_MORE)) {
    r = cork(s, &to, &source, buf, len);
  } else if (r == 0 && s->cork_len > 0) {
    r = cork(s, &to, &source, buf, len);
    if (r >= 0) {
      uint8_t *corked = s->cork; /* its own: other threads may cork anew while this one waits */
      size_t corked_len = s->cork_len;
      dp_addr corked_to = s->cork_to;
      dp_local corked_source = s->cork_source;
      s->cork = NULL;
      s->cork_len = 0;
      r = send_datagram(s, fd, &corked_to, &corked_source, corked, corked_len, flags);
      free(corked);
      if (r >= 0)
        r = (ssize_t)len;
    }
  } else if (r == 0) {
    r = send_datagram(s, fd, &to, &source, buf, len, flags);
  }
  dp_io_apply_icmp(s);
  errno = r < 0 ? (int)-r : saved_errno;
  dp_socket_finish(s);
  return r < 0 ? -1 : r;
}

ssize_t dtlssendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest,
                   socklen_t dest_len) {
  return send_call(fd, buf, len, flags, dest, dest_len, NULL);
}

ssize_t dtlssendmsg(int fd, const struct msghdr *msg, int flags) {
  if (msg == NULL)
    return dp_fail(EFAULT);
  ssize_t total = iov_total(msg->msg_iov, msg->msg_iovlen);
  if (total < 0)
    return dp_fail((int)-total);
  if (msg->msg_iovlen <= 1)
    return send_call(fd, msg->msg_iovlen == 1 ? msg->msg_iov[0].iov_base : NULL, (size_t)total, flags,
                     msg->msg_name, msg->msg_namelen, msg);
  /* One record carries the whole datagram: gathered here.  More than any
   * record holds gets EMSGSIZE, as over the data MTU. */
  if ((size_t)total > DTLSPLEX_MTU_MAX)
    return dp_fail(EMSGSIZE);
  uint8_t gathered[DTLSPLEX_MTU_MAX];
  size_t at = 0;
  for (size_t i = 0; i < msg->msg_iovlen; i++) {
    if (msg->msg_iov[i].iov_len > 0)
      memcpy(gathered + at, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
    at += msg->msg_iov[i].iov_len;
  }
  return send_call(fd, gathered, at, flags, msg->msg_name, msg->msg_namelen, msg);
}

int dtlsplex_timeout(int fd) {
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  int t = dp_endpoint_pending(s->core) > 0 ? 0 : dp_core_timeout(s, dp_now_ms(), -1);
  dp_socket_finish(s);
  return t;
}

int dtlsplex_process(int fd) {
  int saved_errno = errno;
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  int n = pump(s);
  if (n >= 0)
    errno = saved_errno;
  dp_socket_finish(s);
  return n;
}

int dtlsplex_event_fd(int fd) {
  int saved_errno = errno;
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  int r = dp_event_fd_open(s);
  errno = r < 0 ? -r : saved_errno;
  dp_socket_finish(s);
  return r < 0 ? -1 : r;
}

int dtlsplex_pending(int fd) {
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  size_t n = dp_endpoint_pending(s->core);
  dp_socket_finish(s);
  return n > INT_MAX ? INT_MAX : (int)n;
}

/* Common path of the per-peer calls: validates, locks, resolves the address.
 * Returns the locked socket, or NULL with errno. */
static dp_socket *peer_call(int fd, const struct sockaddr *peer, socklen_t len, dp_addr *addr) {
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return NULL;
  int r = dp_addr_from_sockaddr(addr, peer, len, s->family);
  if (r != 0) {
    dp_socket_finish(s);
    errno = -r;
    return NULL;
  }
  return s;
}

/* Ends a per-peer call with the core's result (0 or -errno), errno as the
 * call found it on success. */
static int peer_call_end(dp_socket *s, int r, int saved_errno) {
  errno = r == 0 ? saved_errno : -r;
  dp_socket_finish(s);
  return r == 0 ? 0 : -1;
}

int dtlsplex_close(int fd, const struct sockaddr *peer, socklen_t len) {
  int saved_errno = errno;
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_close(s->core, &addr), saved_errno);
}

int dtlsplex_set_peer_name(int fd, const struct sockaddr *peer, socklen_t len, const char *name) {
  if (name == NULL || name[0] == '\0')
    return dp_fail(EINVAL);
  int saved_errno = errno;
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_set_peer_name(s->core, &addr, name), saved_errno);
}

int dtlsplex_peer_info(int fd, const struct sockaddr *peer, socklen_t len, struct dtlsplex_peer_info *out) {
  if (out == NULL)
    return dp_fail(EINVAL);
  int saved_errno = errno;
  dp_addr addr;
  dp_socket *s = peer_call(fd, peer, len, &addr);
  return s == NULL ? -1 : peer_call_end(s, dp_endpoint_peer_info(s->core, &addr, out), saved_errno);
}

int dtlsplex_stats(int fd, struct dtlsplex_stats *out) {
  if (out == NULL)
    return dp_fail(EINVAL);
  dp_socket *s = dp_socket_acquire(fd);
  if (s == NULL)
    return -1;
  dp_endpoint_stats(s->core, out);
  dp_socket_finish(s);
  return 0;
}
