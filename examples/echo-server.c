/* An echo server: one UDP socket, any number of DTLS clients.
 *
 *   echo-server PORT [--cert FILE --key FILE] [--psk ID:HEXKEY]
 *               [--fleet-secret FILE] [--workers N] [--exit-after N]
 *
 * It is the plain UDP echo loop with three changes: attach the socket, and
 * dtlsrecvfrom/dtlssendto in place of recvfrom/sendto.  On SIGHUP it reads
 * its certificate and key files again: new clients get the new certificate,
 * connected ones keep their sessions.  On SIGUSR1 it prints its statistics
 * (handshakes full and resumed), and again when SIGTERM or SIGINT ends it.
 *
 * --fleet-secret FILE: the servers of a fleet (behind a load balancer, or
 * the workers below) share the secret in FILE, so that a client any of them
 * served resumes its session on any other: an abbreviated handshake, no
 * certificate, no key exchange.
 *
 * --workers N: N processes, each with its own socket bound to PORT with
 * SO_REUSEPORT; the kernel spreads the clients over them by address and
 * port.  The parent passes SIGTERM, SIGINT, SIGHUP and SIGUSR1 on to the
 * workers and waits for them; a worker that dies is not replaced (the
 * kernel gives its clients to the others).  Give them --fleet-secret, or a
 * client that moves must make a full handshake. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dtlsplex.h>

#include "common.h"

#define WORKERS_MAX 64

static volatile sig_atomic_t reload_requested, stats_requested, stop_requested;

static void on_signal(int sig) {
  if (sig == SIGHUP)
    reload_requested = 1;
  else if (sig == SIGUSR1)
    stats_requested = 1;
  else
    stop_requested = 1;
}

/* No SA_RESTART: a signal ends a waiting dtlsrecvfrom with EINTR. */
static void catch_signals(void (*handler)(int)) {
  struct sigaction sa = {.sa_handler = handler};
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction(sigs[i], &sa, NULL);
}

/* The echo loop on an attached socket, until SIGTERM/SIGINT or exit_after
 * peers have closed. */
static int serve(int fd, int argc, char **argv, long exit_after) {
  /* Wake up now and then, to notice a signal that came just before the
   * wait, and the last close for --exit-after. */
  struct timeval tick = {.tv_usec = 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  char buf[4096];
  while (!stop_requested && (exit_after < 0 || peers_closed < exit_after)) {
    if (reload_requested) {
      reload_requested = 0;
      dtlsplex_config *next = server_config(argc, argv);
      if (dtlsplex_reconfigure(fd, next) < 0)
        perror("dtlsplex_reconfigure");
      dtlsplex_config_free(next); /* the socket keeps its own reference */
    }
    if (stats_requested) {
      stats_requested = 0;
      print_server_stats(fd);
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
  print_server_stats(fd);
  dtlsplex_detach(fd);
  return 0;
}

/* --workers: the parent's table of live workers (0: reaped), read by its
 * signal handler. */
static volatile pid_t workers[WORKERS_MAX];
static int worker_count;

static void forward_signal(int sig) {
  int saved = errno;
  for (int i = 0; i < worker_count; i++)
    if (workers[i] > 0)
      kill(workers[i], sig);
  errno = saved;
}

static int run_workers(int n, int argc, char **argv, long exit_after) {
  /* The first socket decides the port (PORT may be 0); the first worker
   * takes it over, the others bind their own to the same port. */
  int first = bind_server(argv[1], 0, 1);
  struct sockaddr_in6 addr;
  socklen_t addr_len = sizeof addr;
  getsockname(first, (struct sockaddr *)&addr, &addr_len);
  char port[8];
  snprintf(port, sizeof port, "%u", ntohs(addr.sin6_port));
  fflush(stdout);
  /* Signals wait until the table is complete; the workers unblock them. */
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  catch_signals(forward_signal);
  for (worker_count = 0; worker_count < n; worker_count++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      forward_signal(SIGTERM); /* the workers started so far */
      exit(1);
    }
    if (pid == 0) {
      catch_signals(on_signal);
      sigprocmask(SIG_SETMASK, &old, NULL);
      snprintf(server_prefix, sizeof server_prefix, "worker %d: ", (int)getpid());
      int fd = first;
      if (worker_count > 0) {
        close(first);
        fd = bind_server(port, 0, 1);
      }
      attach_server(fd, server_config(argc, argv));
      exit(serve(fd, argc, argv, exit_after));
    }
    workers[worker_count] = pid;
  }
  close(first);
  printf("echo-server: listening on port %s, %d workers\n", port, n);
  fflush(stdout);
  sigprocmask(SIG_SETMASK, &old, NULL);

  int status = 0, left = n;
  while (left > 0) {
    int ws;
    pid_t pid = waitpid(-1, &ws, 0);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid < 0)
      die("waitpid");
    sigprocmask(SIG_BLOCK, &all, NULL); /* the handler reads the table */
    for (int i = 0; i < worker_count; i++)
      if (workers[i] == pid) {
        workers[i] = 0;
        left--;
      }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (WIFSIGNALED(ws))
      printf("echo-server: worker %d killed by signal %d\n", (int)pid, WTERMSIG(ws));
    else
      printf("echo-server: worker %d exited with status %d\n", (int)pid, WEXITSTATUS(ws));
    fflush(stdout);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
      status = 1;
  }
  return status;
}

int main(int argc, char **argv) {
  long exit_after = server_arguments(&argc, argv, " [--workers N]");
  const char *workers_opt = take_option(&argc, argv, 2, "--workers");
  if (workers_opt != NULL) {
    dtlsplex_config_free(server_config(argc, argv)); /* the options are checked once, before any fork */
    return run_workers((int)number_option(workers_opt, 1, WORKERS_MAX, "--workers"), argc, argv, exit_after);
  }
  catch_signals(on_signal);
  int fd = open_server(argv[1], server_config(argc, argv), 0);
  return serve(fd, argc, argv, exit_after);
}
