/* An echo client: sends COUNT datagrams over DTLS and checks every echo.
 *
 *   echo-client HOST PORT COUNT [--ca FILE [--name HOST] | --insecure] [--psk ID:HEXKEY]
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <dtlsplex.h>

#include "common.h"

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s HOST PORT COUNT [--ca FILE [--name HOST] | --insecure] [--psk ID:HEXKEY]\n",
            argv[0]);
    return 2;
  }
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 4, argv + 4, &name);
  int count = atoi(argv[3]);

  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *server;
  if (getaddrinfo(argv[1], argv[2], &hints, &server) != 0) {
    fprintf(stderr, "%s: cannot resolve\n", argv[1]);
    return 1;
  }
  int fd = socket(server->ai_family, SOCK_DGRAM, 0);
  struct timeval two_seconds = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg);
  if (name != NULL && dtlsplex_set_peer_name(fd, server->ai_addr, server->ai_addrlen, name) < 0)
    die("dtlsplex_set_peer_name");

  int ok = 0;
  for (int i = 0; i < count; i++) {
    char msg[64], echo[64];
    int len = snprintf(msg, sizeof msg, "message %d from pid %d", i, (int)getpid());
    if (dtlssendto(fd, msg, (size_t)len, 0, server->ai_addr, server->ai_addrlen) < 0)
      die("dtlssendto");
    ssize_t n = dtlsrecvfrom(fd, echo, sizeof echo, 0, NULL, NULL);
    if (n < 0)
      die("dtlsrecvfrom");
    ok += n == len && memcmp(msg, echo, (size_t)len) == 0;
  }
  struct dtlsplex_peer_info info;
  if (dtlsplex_peer_info(fd, server->ai_addr, server->ai_addrlen, &info) == 0)
    printf("echo-client %d: %d/%d echoes ok over %s %s\n", (int)getpid(), ok, count, info.protocol, info.cipher);
  dtlsplex_close(fd, server->ai_addr, server->ai_addrlen);
  dtlsplex_detach(fd);
  close(fd);
  freeaddrinfo(server);
  return ok == count ? 0 : 1;
}
