/* dtlsproxy's parts: the options, the counters behind the SIGUSR1 line, the
 * event loop each side registers its descriptors with, and the two sides
 * (proxy_server.c terminates DTLS, proxy_client.c originates it). */
#ifndef PROXY_H
#define PROXY_H

#include <netdb.h>
#include <stdint.h>

#include <dtlsplex.h>

#include "tool_tls.h"

typedef struct proxy_options {
  tls_options tls;              /* tls.server: without --client */
  const char *listen_host, *listen_port; /* -l [ADDR] PORT */
  const char *to_host, *to_port;         /* --to HOST PORT */
  unsigned int idle_s;          /* --idle */
  int proxy_protocol;           /* --proxy-protocol (server side) */
} proxy_options;

extern proxy_options popt;

/* What the proxy itself counted; the library's own drops are added by the
 * side's stats function. */
typedef struct proxy_counters {
  uint64_t handshakes_ok, handshakes_failed;
  uint64_t up;      /* datagrams passed from the client towards the backend (or server) */
  uint64_t down;    /* datagrams passed back */
  uint64_t dropped; /* datagrams the proxy could not pass on (no socket, refused, too large) */
  uint64_t expired; /* peers forgotten for being idle */
} proxy_counters;

extern proxy_counters counters;

typedef struct proxy_stats {
  uint64_t peers;
  uint64_t dropped_dtls; /* the library's drops (bad records, cookies, limits, full queues) */
} proxy_stats;

/* The loop (dtlsproxy.c).  loop_watch: tell the side `ready(kind, id)`
 * whenever fd is readable (level-triggered); loop_unwatch before closing
 * a descriptor someone else may still hold. */
enum { KIND_LISTEN = 1, KIND_FLOW = 2 };
void loop_watch(int fd, int kind, int id);
void loop_unwatch(int fd);

/* The configuration of the options, with the proxy's event callback and
 * timeouts; NULL (and a message) if a file cannot be used. */
dtlsplex_config *proxy_config(dtlsplex_event_fn on_event);

/* Counts and reports (-v) an event of the library; 1 if it ends the peer's
 * session (closed, failed, expired, replaced). */
int proxy_event(const struct sockaddr *peer, int event, int error);

typedef struct proxy_side {
  void (*start)(const struct addrinfo *listen_at, const struct addrinfo *to);
  void (*ready)(int kind, int id);
  void (*reap)(void);   /* after each batch of events: free what they retired */
  void (*reload)(void); /* SIGHUP */
  void (*stats)(proxy_stats *out);
  void (*stop)(void);   /* close_notify to every peer, everything closed */
} proxy_side;

extern const proxy_side server_side, client_side;

#endif
