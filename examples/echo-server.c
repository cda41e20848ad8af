/* An echo server: one UDP socket, any number of DTLS clients.
 *
 *   echo-server PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]
 *
 * It is the plain UDP echo loop with three changes: attach the socket, and
 * dtlsrecvfrom/dtlssendto in place of recvfrom/sendto.  On SIGHUP it reads
 * its certificate and key files again: new clients get the new certificate,
 * connected ones keep their sessions. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <dtlsplex.h>

#include "common.h"

static long exit_after = -1;
static volatile sig_atomic_t reload_requested;

static void request_reload(int sig) {
  (void)sig;
  reload_requested = 1;
}

static dtlsplex_config *server_config(int argc, char **argv);

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]\n", argv[0]);
    return 2;
  }
  if (argc >= 4 && strcmp(argv[argc - 2], "--exit-after") == 0) {
    exit_after = atol(argv[argc - 1]);
    argc -= 2;
  }
  dtlsplex_config *cfg = server_config(argc, argv);
  /* No SA_RESTART: the signal ends a waiting dtlsrecvfrom with EINTR. */
  struct sigaction on_hup = {.sa_handler = request_reload};
  sigemptyset(&on_hup.sa_mask);
  sigaction(SIGHUP, &on_hup, NULL);

  int fd = socket(AF_INET6, SOCK_DGRAM, 0); /* dual-stack: IPv4 and IPv6 clients */
  int off = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(argv[1])),
                              .sin6_addr = IN6ADDR_ANY_INIT};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("bind");
  if (exit_after >= 0) { /* wake up now and then to notice the last close */
    struct timeval tick = {.tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  }
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg);
  socklen_t addr_len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &addr_len); /* port 0: the kernel chose */
  printf("echo-server: listening on port %u, one socket (fd %d)\n", ntohs(addr.sin6_port), fd);
  fflush(stdout);

  char buf[4096];
  while (exit_after < 0 || peers_closed < exit_after) {
    if (reload_requested) {
      reload_requested = 0;
      dtlsplex_config *next = server_config(argc, argv);
      if (dtlsplex_reconfigure(fd, next) < 0)
        perror("dtlsplex_reconfigure");
      dtlsplex_config_free(next); /* the socket keeps its own reference */
    }
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0)
      die("dtlsrecvfrom");
    if (dtlssendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) < 0)
      perror("dtlssendto"); /* e.g. ENOTCONN: the client closed before its echo */
  }
  dtlsplex_detach(fd);
  return 0;
}

/* The options' files are read now (a bad one ends the program). */
static dtlsplex_config *server_config(int argc, char **argv) {
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 2, argv + 2, &name);
  dtlsplex_config_set_event_callback(cfg, on_server_event, NULL);
  dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER); /* never handshakes towards a departed client */
  return cfg;
}
