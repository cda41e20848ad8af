/* The echo server on libevent: one read event on dtlsplex_event_fd(fd),
 * which covers datagrams, data waiting in the library and the library's
 * timers, so the program registers no timer of its own.
 *
 *   echo-server-libevent PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--fleet-secret FILE]
 *                        [--exit-after N] */
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
  server srv = {.exit_after = server_arguments(&argc, argv, "")};
  srv.fd = open_server(argv[1], server_config(argc, argv), 0);

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
