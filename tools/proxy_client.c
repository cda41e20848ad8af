/* dtlsproxy's client side: unmodified programs send plaintext datagrams to
 * one local UDP socket; each local source gets a DTLS socket of its own
 * towards the server (its own session, its own port), and what comes back
 * on that session goes back to that source.  The library ends a session
 * idle for --idle seconds; the event closes its socket, and the source's
 * next datagram opens a new one (resuming the session, which the shared
 * configuration keeps). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"
#include "proxy_flows.h"
#include "tool_net.h"
#include "tool_util.h"

/* Datagrams taken from one socket per turn (the loop comes back). */
#define BURST 64

static int plain_fd = -1;
static const struct addrinfo *server;
static dtlsplex_config *cfg; /* for new sessions; replaced on reload */
static flow_table flows;
/* The library's drops on sockets already closed. */
static uint64_t dropped_closed;

static uint64_t library_drops(int fd) {
  struct dtlsplex_stats s;
  if (dtlsplex_stats(fd, &s) < 0)
    return 0;
  return s.dropped_no_session + s.dropped_bad_record + s.dropped_queue_full;
}

/* Called from inside a call on the flow's own socket: the socket is only
 * unwatched here, and detached and closed once the batch is over (reap). */
static void end_flow(flow *f) {
  int event_fd = dtlsplex_event_fd(f->fd);
  if (event_fd >= 0)
    loop_unwatch(event_fd);
  flows_retire(&flows, f);
}

/* Reported (-v) with the local source's address: the server's is the
 * same for every session. */
static void on_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)len, (void)arg;
  flow *f = flows_find_fd(&flows, fd);
  if (proxy_event(f != NULL ? (struct sockaddr *)&f->peer : peer, event, error) && f != NULL)
    end_flow(f);
}

static flow *open_flow(const struct sockaddr *source, socklen_t len) {
  int fd = udp_socket(server->ai_family, popt.tls.family);
  flow *f = NULL;
  int event_fd = -1;
  if (dtlsplex_attach(fd, cfg) == 0 &&
      (popt.tls.insecure || dtlsplex_set_peer_name(fd, server->ai_addr, server->ai_addrlen, popt.to_host) == 0) &&
      (event_fd = dtlsplex_event_fd(fd)) >= 0 && (f = flows_add(&flows, source, len, fd)) != NULL) {
    loop_watch(event_fd, KIND_FLOW, fd);
    return f;
  }
  int err = errno;
  close(fd); /* detaches */
  errno = err;
  return NULL;
}

static void from_sources(void) {
  for (int i = 0; i < BURST; i++) {
    char buf[DTLSPLEX_MTU_MAX];
    struct sockaddr_storage source;
    socklen_t len = sizeof source;
    ssize_t n = recvfrom(plain_fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&source, &len);
    if (n < 0 && errno == EAGAIN)
      return;
    if (n < 0)
      continue;
    flow *f = flows_find_addr(&flows, (struct sockaddr *)&source);
    if (f == NULL && (f = open_flow((struct sockaddr *)&source, len)) == NULL) {
      if (popt.tls.verbose)
        fprintf(stderr, "%s: no DTLS socket: %s\n", tool_name, strerror(errno));
      counters.dropped++;
      continue;
    }
    /* Before the handshake is done the library queues the datagram (up to
     * 16; beyond, EAGAIN: lost, as a full UDP buffer loses it). */
    if (dtlssendto(f->fd, buf, (size_t)n, MSG_DONTWAIT, server->ai_addr, server->ai_addrlen) < 0)
      counters.dropped++;
    else
      counters.up++;
  }
}

static void from_server(int fd) {
  flow *f = flows_find_fd(&flows, fd);
  if (f == NULL)
    return;
  dtlsplex_process(fd);
  for (int i = 0; !f->retired && i < BURST; i++) {
    char buf[DTLSPLEX_MTU_MAX];
    ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL);
    if (n < 0)
      return;
    if (sendto(plain_fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&f->peer, f->peer_len) < 0)
      counters.dropped++;
    else
      counters.down++;
  }
}

static void start(const struct addrinfo *listen_at, const struct addrinfo *to) {
  server = to;
  cfg = proxy_config(on_event);
  plain_fd = bound_udp_socket(listen_at, popt.tls.family);
  loop_watch(plain_fd, KIND_LISTEN, plain_fd);
  announce_listening(plain_fd);
}

static void ready(int kind, int id) {
  if (kind == KIND_LISTEN)
    from_sources();
  else
    from_server(id);
}

static void reap(void) {
  flow *f;
  while ((f = flows_take_retired(&flows)) != NULL) {
    dropped_closed += library_drops(f->fd);
    dtlsplex_detach(f->fd); /* close_notify, if the session is still up */
    close(f->fd);
    free(f);
  }
}

static void reload(void) {
  dtlsplex_config *fresh = proxy_config(on_event);
  if (tls_reload(-1, fresh, popt.tls.verbose) < 0)
    return;
  dtlsplex_config_free(cfg); /* the sockets made with it keep their references */
  cfg = fresh;
}

static void stats(proxy_stats *out) {
  out->peers = flows_count(&flows);
  out->dropped_dtls = dropped_closed;
  for (flow *f = flows_first(&flows); f != NULL; f = flows_next(f))
    out->dropped_dtls += library_drops(f->fd);
}

static void stop(void) {
  flow *f;
  while ((f = flows_first(&flows)) != NULL)
    end_flow(f);
  reap();
  close(plain_fd);
  dtlsplex_config_free(cfg);
}

const proxy_side client_side = {start, ready, reap, reload, stats, stop};
