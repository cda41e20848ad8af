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

static volatile sig_atomic_t reload_requested;

static void request_reload(int sig) {
  (void)sig;
  reload_requested = 1;
}

int main(int argc, char **argv) {
  long exit_after = server_arguments(&argc, argv);
  /* No SA_RESTART: the signal ends a waiting dtlsrecvfrom with EINTR. */
  struct sigaction on_hup = {.sa_handler = request_reload};
  sigemptyset(&on_hup.sa_mask);
  sigaction(SIGHUP, &on_hup, NULL);
  int fd = open_server(argv[1], server_config(argc, argv), 0);
  if (exit_after >= 0) { /* wake up now and then to notice the last close */
    struct timeval tick = {.tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  }

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
