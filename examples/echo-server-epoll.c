/* The echo server on a raw epoll loop, edge-triggered: the shape of an
 * event-driven server with many other descriptors to watch.
 *
 *   echo-server-epoll PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--fleet-secret FILE] [--exit-after N]
 *
 * The loop watches dtlsplex_event_fd(fd), not the socket: that one
 * descriptor is readable for datagrams, for decrypted data waiting in the
 * library, and for the library's timers, so the loop needs no timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <dtlsplex.h>

#include "common.h"

int main(int argc, char **argv) {
  long exit_after = server_arguments(&argc, argv, "");
  int fd = open_server(argv[1], server_config(argc, argv), SOCK_NONBLOCK);

  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = dtlsplex_event_fd(fd)};
  if (ep < 0 || ev.data.fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
    die("epoll");
  char buf[DTLSPLEX_MTU_MAX];
  while (exit_after < 0 || peers_closed < exit_after) {
    if (epoll_wait(ep, &ev, 1, -1) < 0 && errno != EINTR)
      die("epoll_wait");
    if (dtlsplex_process(fd) < 0)
      die("dtlsplex_process");
    /* Edge-triggered: take everything, until EAGAIN. */
    for (;;) {
      struct sockaddr_storage peer;
      socklen_t peer_len = sizeof peer;
      ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
      if (n < 0)
        break;
      if (dtlssendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) < 0)
        perror("dtlssendto");
    }
  }
  dtlsplex_detach(fd);
  return 0;
}
