/* dtlsproxy's server side: DTLS terminated on one attached socket for all
 * peers; each peer's plaintext goes to the backend from a UDP socket of its
 * own, connected to the backend, so that the backend sees one source port
 * per peer and its answers find their way back into that peer's session.
 * A peer's backend socket lives as long as its session: the library ends
 * idle sessions (the idle timeout is --idle), and the event closes it. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proxy.h"
#include "proxy_flows.h"
#include "proxy_header.h"
#include "tool_net.h"
#include "tool_util.h"

/* Datagrams taken from one backend socket per turn, so that one busy peer
 * does not hold the others up (the loop comes back: level-triggered). */
#define BACKEND_BURST 64

static int dtls_fd = -1;
static const struct addrinfo *backend;
static struct sockaddr_storage bound; /* the proxy's own address, for PROXY headers */
static flow_table flows;

/* A peer's session ended: its backend socket goes (closed now: only this
 * side holds it; the loop forgets a closed descriptor by itself). */
static void end_flow(flow *f) {
  close(f->fd);
  flows_retire(&flows, f);
}

static void on_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)len, (void)arg;
  flow *f;
  if (proxy_event(peer, event, error) && (f = flows_find_addr(&flows, peer)) != NULL)
    end_flow(f);
}

static flow *open_flow(const struct sockaddr *peer, socklen_t len) {
  int fd = socket(backend->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return NULL;
  flow *f = NULL;
  if (connect(fd, backend->ai_addr, backend->ai_addrlen) == 0 && (f = flows_add(&flows, peer, len, fd)) != NULL) {
    loop_watch(fd, KIND_FLOW, fd);
    return f;
  }
  int err = errno;
  close(fd);
  errno = err;
  return NULL;
}

/* The proxy's address a datagram reached: IP_PKTINFO's, or else the
 * address the socket is bound to. */
static void arrival_address(const struct msghdr *msg, struct sockaddr_storage *out) {
  *out = bound;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && bound.ss_family == AF_INET) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      ((struct sockaddr_in *)out)->sin_addr = pi.ipi_addr;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && bound.ss_family == AF_INET6) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      ((struct sockaddr_in6 *)out)->sin6_addr = pi.ipi6_addr;
    }
  }
}

static void to_backend(const struct sockaddr *peer, socklen_t peer_len, const struct msghdr *msg, const void *data,
                       size_t len) {
  flow *f = flows_find_addr(&flows, peer);
  if (f == NULL && (f = open_flow(peer, peer_len)) == NULL) {
    if (popt.tls.verbose)
      fprintf(stderr, "%s: no backend socket: %s\n", tool_name, strerror(errno));
    counters.dropped++;
    return;
  }
  uint8_t header[PP2_MAX];
  struct iovec iov[2] = {{header, 0}, {(void *)data, len}};
  if (popt.proxy_protocol) {
    struct sockaddr_storage dst;
    arrival_address(msg, &dst);
    iov[0].iov_len = pp2_header(header, peer, (struct sockaddr *)&dst);
  }
  /* Refused (the ICMP error of an earlier datagram, which is then counted
   * here rather than in from_backend) or a full buffer: lost, as UDP loses
   * it; the next datagram tries again. */
  if (writev(f->fd, iov, 2) < 0)
    counters.dropped++;
  else
    counters.up++;
}

static void from_peers(void) {
  if (dtlsplex_process(dtls_fd) < 0 && errno != EINTR)
    fatal("receive: %s", strerror(errno));
  for (;;) {
    char buf[DTLSPLEX_MTU_MAX];
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
    } control;
    struct sockaddr_storage peer;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.space, .msg_controllen = sizeof control.space};
    ssize_t n = dtlsrecvmsg(dtls_fd, &msg, MSG_DONTWAIT);
    if (n < 0)
      return;
    to_backend((struct sockaddr *)&peer, msg.msg_namelen, &msg, buf, (size_t)n);
  }
}

static void from_backend(int fd) {
  flow *f = flows_find_fd(&flows, fd);
  for (int i = 0; f != NULL && !f->retired && i < BACKEND_BURST; i++) {
    char buf[DTLSPLEX_MTU_MAX];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
      return;
    if (n < 0) { /* an ICMP error: a datagram towards the backend was lost */
      counters.dropped++;
      continue;
    }
    /* A reply larger than the session's data MTU cannot go (EMSGSIZE), nor
     * one to a peer that has just gone. */
    if (dtlssendto(dtls_fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&f->peer, f->peer_len) < 0)
      counters.dropped++;
    else
      counters.down++;
  }
}

static void start(const struct addrinfo *listen_at, const struct addrinfo *to) {
  backend = to;
  dtlsplex_config *cfg = proxy_config(on_event);
  dtls_fd = bound_udp_socket(listen_at, popt.tls.family);
  socklen_t len = sizeof bound;
  getsockname(dtls_fd, (struct sockaddr *)&bound, &len);
  if (popt.proxy_protocol) { /* where each datagram arrived, for the header's destination */
    int on = 1;
    if (bound.ss_family == AF_INET6)
      setsockopt(dtls_fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
    else
      setsockopt(dtls_fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  }
  if (dtlsplex_attach(dtls_fd, cfg) < 0)
    fatal("attach: %s", strerror(errno));
  dtlsplex_config_free(cfg);
  int event_fd = dtlsplex_event_fd(dtls_fd);
  if (event_fd < 0)
    fatal("event descriptor: %s", strerror(errno));
  loop_watch(event_fd, KIND_LISTEN, dtls_fd);
  announce_listening(dtls_fd);
}

static void ready(int kind, int id) {
  if (kind == KIND_LISTEN)
    from_peers();
  else
    from_backend(id);
}

static void reap(void) {
  flow *f;
  while ((f = flows_take_retired(&flows)) != NULL)
    free(f);
}

static void reload(void) {
  dtlsplex_config *cfg = proxy_config(on_event);
  tls_reload(dtls_fd, cfg, popt.tls.verbose);
  dtlsplex_config_free(cfg);
}

static void stats(proxy_stats *out) {
  struct dtlsplex_stats s;
  if (dtlsplex_stats(dtls_fd, &s) < 0)
    return;
  out->peers = s.peers;
  out->dropped_dtls = s.dropped_no_session + s.dropped_bad_cookie + s.dropped_limit + s.dropped_bad_record +
                      s.dropped_queue_full + s.dropped_source_share + s.dropped_handshake_budget;
}

static void stop(void) {
  dtlsplex_detach(dtls_fd); /* close_notify to every peer; the events it sends end the flows */
  close(dtls_fd);
  flow *f;
  while ((f = flows_first(&flows)) != NULL)
    end_flow(f);
  reap();
}

const proxy_side server_side = {start, ready, reap, reload, stats, stop};
