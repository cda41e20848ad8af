/* The echo server on libevent: one read event on dtlsplex_event_fd(fd),
 * which covers datagrams, data waiting in the library and the library's
 * timers, so the program registers no timer of its own.
 *
 *   echo-server-libevent PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N] */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <dtlsplex.h>

#include "common.h"

typedef struct server {
  int fd;
  long exit_after;
  struct event_base *base;
} server;

static void on_readable(evutil_socket_t event_fd, short what, void *arg) {
  (void)event_fd, (void)what;
  server *srv = arg;
  if (dtlsplex_process(srv->fd) < 0)
    die("dtlsplex_process");
  char buf[DTLSPLEX_MTU_MAX];
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(srv->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&peer, &peer_len);
    if (n < 0)
      break;
    if (dtlssendto(srv->fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&peer, peer_len) < 0)
      perror("dtlssendto");
  }
  if (srv->exit_after >= 0 && peers_closed >= srv->exit_after)
    event_base_loopbreak(srv->base);
}

int main(int argc, char **argv) {
  server srv = {.exit_after = -1};
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]\n", argv[0]);
    return 2;
  }
  if (argc >= 4 && strcmp(argv[argc - 2], "--exit-after") == 0) {
    srv.exit_after = atol(argv[argc - 1]);
    argc -= 2;
  }
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 2, argv + 2, &name);
  dtlsplex_config_set_event_callback(cfg, on_server_event, NULL);
  dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER);

  srv.fd = socket(AF_INET6, SOCK_DGRAM, 0);
  int off = 0;
  setsockopt(srv.fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(argv[1]))};
  if (bind(srv.fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("bind");
  if (dtlsplex_attach(srv.fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg);
  socklen_t addr_len = sizeof addr;
  getsockname(srv.fd, (struct sockaddr *)&addr, &addr_len);
  printf("echo-server: listening on port %u, one socket (fd %d)\n", ntohs(addr.sin6_port), srv.fd);
  fflush(stdout);

  srv.base = event_base_new();
  int event_fd = dtlsplex_event_fd(srv.fd);
  struct event *readable = srv.base != NULL && event_fd >= 0
                               ? event_new(srv.base, event_fd, EV_READ | EV_PERSIST, on_readable, &srv)
                               : NULL;
  if (readable == NULL || event_add(readable, NULL) < 0)
    die("libevent");
  event_base_dispatch(srv.base);
  event_free(readable);
  event_base_free(srv.base);
  dtlsplex_detach(srv.fd);
  return 0;
}
