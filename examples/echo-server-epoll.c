/* The echo server on a raw epoll loop, edge-triggered: the shape of an
 * event-driven server with many other descriptors to watch.
 *
 *   echo-server-epoll PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]
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
  long exit_after = -1;
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]\n", argv[0]);
    return 2;
  }
  if (argc >= 4 && strcmp(argv[argc - 2], "--exit-after") == 0) {
    exit_after = atol(argv[argc - 1]);
    argc -= 2;
  }
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 2, argv + 2, &name);
  dtlsplex_config_set_event_callback(cfg, on_server_event, NULL);
  dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER);

  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int off = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(argv[1]))};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("bind");
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg);
  socklen_t addr_len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &addr_len);
  printf("echo-server: listening on port %u, one socket (fd %d)\n", ntohs(addr.sin6_port), fd);
  fflush(stdout);

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
