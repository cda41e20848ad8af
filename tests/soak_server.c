/* The soak's server: a process of its own, so that its memory, descriptors
 * and CPU time can be read from /proc without the load's counting too.  It
 * is an echo server as a program would write one around dtlsplex_event_fd,
 * with a short idle timeout so that abandoned clients expire. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "soak.h"

enum { REQUEST_STATS = 's', REQUEST_STOP = 'q' };

/* The library drops what a full socket buffer cannot take; the flood makes
 * bursts, so the server asks for 1 MiB as an operator expecting one would
 * (the kernel caps it at net.core.rmem_max). */
#define SERVER_RCVBUF (1 << 20)

static dtlsplex_config *server_config(const char *cert, const char *key) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL || dtlsplex_config_set_certificate(cfg, cert, key) < 0 ||
      dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER) < 0 ||
      dtlsplex_config_set_timeouts(cfg, 10000, SOAK_IDLE_MS) < 0) {
    perror("soak server: configuration");
    exit(1);
  }
  return cfg;
}

/* Echoes every datagram queued.  A refused echo is the server's to report:
 * every client waits for its echoes before it closes. */
static void echo_all(int fd) {
  static char buf[DTLSPLEX_MTU_MAX];
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&peer, &peer_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n < 0) {
      perror("soak server: dtlsrecvfrom");
      exit(1);
    }
    if (dtlssendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) != n)
      perror("soak server: dtlssendto");
  }
}

/* Serves until asked to stop, or until the driver's end of the pipe
 * closes (it died: no orphan server). */
static int serve(int fd, int requests, int replies) {
  int event_fd = dtlsplex_event_fd(fd);
  if (event_fd < 0) {
    perror("soak server: dtlsplex_event_fd");
    return 1;
  }
  struct pollfd p[2] = {{.fd = event_fd, .events = POLLIN}, {.fd = requests, .events = POLLIN}};
  for (;;) {
    if (poll(p, 2, -1) < 0 && errno != EINTR) {
      perror("soak server: poll");
      return 1;
    }
    if (p[1].revents != 0) {
      char request;
      if (read(requests, &request, 1) != 1 || request == REQUEST_STOP)
        break;
      struct dtlsplex_stats st;
      if (dtlsplex_stats(fd, &st) < 0 || write(replies, &st, sizeof st) != (ssize_t)sizeof st) {
        perror("soak server: stats");
        return 1;
      }
    }
    if (dtlsplex_process(fd) < 0) {
      perror("soak server: dtlsplex_process");
      return 1;
    }
    echo_all(fd);
  }
  /* Detached and closed: what LeakSanitizer then finds at exit is a leak. */
  dtlsplex_detach(fd);
  close(fd);
  return 0;
}

int soak_server_start(soak_server *s, const char *cert, const char *key) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  s->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof s->addr;
  int rcvbuf = SERVER_RCVBUF;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0 ||
      bind(fd, (struct sockaddr *)&s->addr, sizeof s->addr) < 0 ||
      getsockname(fd, (struct sockaddr *)&s->addr, &len) < 0) {
    perror("soak: server socket");
    return -1;
  }
  int to_server[2], from_server[2];
  if (pipe(to_server) < 0 || pipe(from_server) < 0) {
    perror("soak: pipe");
    return -1;
  }
  fflush(NULL); /* nothing buffered is printed twice */
  s->pid = fork();
  if (s->pid < 0) {
    perror("soak: fork");
    return -1;
  }
  if (s->pid == 0) {
    close(to_server[1]);
    close(from_server[0]);
    dtlsplex_config *cfg = server_config(cert, key);
    if (dtlsplex_attach(fd, cfg) < 0) {
      perror("soak server: dtlsplex_attach");
      exit(1);
    }
    dtlsplex_config_free(cfg); /* the socket keeps its reference */
    int status = serve(fd, to_server[0], from_server[1]);
    close(to_server[0]);
    close(from_server[1]);
    exit(status);
  }
  close(fd);
  close(to_server[0]);
  close(from_server[1]);
  s->request_fd = to_server[1];
  s->reply_fd = from_server[0];
  return 0;
}

int soak_server_stats(soak_server *s, struct dtlsplex_stats *out) {
  char request = REQUEST_STATS;
  if (write(s->request_fd, &request, 1) != 1)
    return -1;
  /* A pipe write this small is atomic, but the read may still come in
   * parts: gather them, each within the 5 s. */
  size_t got = 0;
  while (got < sizeof *out) {
    struct pollfd p = {.fd = s->reply_fd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0)
      return -1;
    ssize_t n = read(s->reply_fd, (char *)out + got, sizeof *out - got);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  return 0;
}

int soak_server_stop(soak_server *s) {
  char request = REQUEST_STOP;
  if (write(s->request_fd, &request, 1) != 1)
    perror("soak: stopping the server");
  close(s->request_fd);
  close(s->reply_fd);
  /* Detach sends close_notify to a few dozen peers: a second is plenty,
   * ten allow for a sanitizer on a loaded machine. */
  for (int waited_ms = 0; waited_ms < 10000; waited_ms += 50) {
    int status;
    pid_t pid = waitpid(s->pid, &status, WNOHANG);
    if (pid == s->pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    usleep(50 * 1000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  return -1;
}
