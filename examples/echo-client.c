/* An echo client: sends COUNT datagrams over DTLS and checks every echo.
 *
 *   echo-client HOST PORT COUNT [--ca FILE [--name HOST] | --insecure] [--psk ID:HEXKEY]
 *               [--interval MS [--resume-after MS] [--bind ADDR]]
 *
 * Without --interval it sends a message, waits for its echo (2 s at most),
 * and so on; a missing echo is an error.
 *
 * With --interval it echoes continuously, as a client of a service that
 * must stay up: a message every MS milliseconds, COUNT of them (0: until
 * SIGTERM or SIGINT), whatever became of the previous ones.  An echo that
 * does not come back is counted, not an error.  --resume-after MS: when the
 * server has been silent that long, the next send first runs a handshake
 * that resumes the session (dtlsplex_config_set_resume_after): how a client
 * finds its way to another server of a fleet after its own went away.
 * --bind ADDR: send from this local address (127.0.0.2, ...: a load
 * balancer that hashes the client address sees different clients).
 * It prints, each on one line, with the time on the system clock in
 * milliseconds since 1970 (at=, from=, to=):
 *   echo-client: pid=P port=L handshake=N resumed=0|1 at=T server=SUBJECT
 *   echo-client: pid=P port=L gap_ms=G from=T1 to=T2
 *       (no echo for G ms, longer than 3 intervals: T1 and T2 are the
 *       echoes either side)
 *   echo-client: pid=P port=L sent=S echoed=E lost=S-E handshakes=N resumed=R longest_gap_ms=G server=SUBJECT
 *       (at the end; SUBJECT is the certificate of the first server)
 * and exits with status 0 unless an error stopped it. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <dtlsplex.h>

#include "common.h"

static long long clock_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* ---- the continuous mode ------------------------------------------------ */

static volatile sig_atomic_t stop_requested;
static void request_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* What the continuous mode counts. */
static struct {
  unsigned local_port;
  long handshakes, resumed;
  char first_server[256];
} run;

/* The client's event callback: a line for each completed handshake, full
 * or resumed, and for each failed one. */
static void on_client_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)arg;
  if (event == DTLSPLEX_EVENT_FAILED) {
    printf("echo-client: pid=%d port=%u handshake failed: %s\n", (int)getpid(), run.local_port, strerror(error));
    fflush(stdout);
  }
  struct dtlsplex_peer_info info;
  if (event != DTLSPLEX_EVENT_CONNECTED || dtlsplex_peer_info(fd, peer, len, &info) < 0)
    return;
  run.handshakes++;
  run.resumed += info.resumed != 0;
  if (run.first_server[0] == '\0')
    snprintf(run.first_server, sizeof run.first_server, "%s", info.identity);
  printf("echo-client: pid=%d port=%u handshake=%ld resumed=%d at=%lld server=%s\n", (int)getpid(), run.local_port,
         run.handshakes, info.resumed != 0, clock_ms(CLOCK_REALTIME), info.identity);
  fflush(stdout);
}

#define SEEN_MAX 65536 /* echoes of messages this far back still count */

static int continuous(int fd, const struct addrinfo *server, long count, long interval) {
  static unsigned char seen[SEEN_MAX];
  int event_fd = dtlsplex_event_fd(fd);
  if (event_fd < 0)
    die("dtlsplex_event_fd");
  long sent = 0, echoed = 0;
  long long next_send = clock_ms(CLOCK_MONOTONIC), last_echo = -1, last_echo_wall = -1, longest_gap = 0;
  long long drain_until = -1; /* once the last message is sent: wait for the echoes in flight */
  for (;;) {
    long long now = clock_ms(CLOCK_MONOTONIC);
    if (drain_until < 0 && (stop_requested || (count > 0 && sent == count)))
      drain_until = now + 2 * interval + 200;
    if (drain_until >= 0 && now >= drain_until)
      break;
    if (drain_until < 0 && now >= next_send) {
      char msg[64];
      int len = snprintf(msg, sizeof msg, "seq %ld pid %d", sent, (int)getpid());
      /* Never blocks: during a handshake the message waits in the queue. */
      if (dtlssendto(fd, msg, (size_t)len, MSG_DONTWAIT, server->ai_addr, server->ai_addrlen) < 0) {
        printf("echo-client: pid=%d port=%u send: %s\n", (int)getpid(), run.local_port, strerror(errno));
        fflush(stdout);
      }
      seen[sent % SEEN_MAX] = 0;
      sent++;
      next_send += interval;
      if (next_send <= now) /* late (a stop in a debugger, say): no burst to catch up */
        next_send = now + interval;
    }
    long long wake = drain_until >= 0 ? drain_until : next_send;
    struct pollfd pfd = {.fd = event_fd, .events = POLLIN};
    if (poll(&pfd, 1, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR)
      die("poll");
    if (dtlsplex_process(fd) < 0)
      die("dtlsplex_process");
    char echo[64];
    ssize_t n;
    while ((n = dtlsrecvfrom(fd, echo, sizeof echo - 1, MSG_DONTWAIT, NULL, NULL)) >= 0) {
      echo[n] = '\0';
      long seq;
      int pid;
      if (sscanf(echo, "seq %ld pid %d", &seq, &pid) != 2 || pid != (int)getpid() || seq < 0 || seq >= sent ||
          sent - seq > SEEN_MAX || seen[seq % SEEN_MAX])
        continue; /* not ours, too old, or a duplicate */
      seen[seq % SEEN_MAX] = 1;
      echoed++;
      long long at = clock_ms(CLOCK_MONOTONIC), wall = clock_ms(CLOCK_REALTIME);
      if (last_echo >= 0 && at - last_echo > 3 * interval) {
        printf("echo-client: pid=%d port=%u gap_ms=%lld from=%lld to=%lld\n", (int)getpid(), run.local_port,
               at - last_echo, last_echo_wall, wall);
        fflush(stdout);
      }
      if (last_echo >= 0 && at - last_echo > longest_gap)
        longest_gap = at - last_echo;
      last_echo = at;
      last_echo_wall = wall;
    }
  }
  printf("echo-client: pid=%d port=%u sent=%ld echoed=%ld lost=%ld handshakes=%ld resumed=%ld longest_gap_ms=%lld "
         "server=%s\n",
         (int)getpid(), run.local_port, sent, echoed, sent - echoed, run.handshakes, run.resumed, longest_gap,
         run.first_server);
  fflush(stdout);
  return 0;
}

/* Binds fd to ADDR (or the wildcard address) and port 0, and notes the
 * port the kernel chose. */
static void bind_local(int fd, int family, const char *addr) {
  struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE}, *local;
  if (getaddrinfo(addr, "0", &hints, &local) != 0) {
    fprintf(stderr, "--bind %s: not an address of the server's family\n", addr ? addr : "(any)");
    exit(2);
  }
  if (bind(fd, local->ai_addr, local->ai_addrlen) < 0)
    die("bind");
  freeaddrinfo(local);
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bound_len);
  run.local_port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                    : ((struct sockaddr_in6 *)&bound)->sin6_port);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr,
            "usage: %s HOST PORT COUNT [--ca FILE [--name HOST] | --insecure] [--psk ID:HEXKEY]\n"
            "       [--interval MS [--resume-after MS] [--bind ADDR]]\n",
            argv[0]);
    return 2;
  }
  const char *interval_opt = take_option(&argc, argv, 4, "--interval");
  const char *resume_opt = take_option(&argc, argv, 4, "--resume-after");
  const char *bind_opt = take_option(&argc, argv, 4, "--bind");
  if (interval_opt == NULL && (resume_opt != NULL || bind_opt != NULL)) {
    fprintf(stderr, "--resume-after and --bind go with --interval\n");
    return 2;
  }
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 4, argv + 4, &name);
  long count = number_option(argv[3], 0, 1000000000, "COUNT");

  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *server;
  if (getaddrinfo(argv[1], argv[2], &hints, &server) != 0) {
    fprintf(stderr, "%s: cannot resolve\n", argv[1]);
    return 1;
  }
  int fd = socket(server->ai_family, SOCK_DGRAM, 0);
  if (interval_opt != NULL) {
    long interval = number_option(interval_opt, 1, 60000, "--interval");
    if (resume_opt != NULL &&
        dtlsplex_config_set_resume_after(cfg, (unsigned)number_option(resume_opt, 1, 3600000, "--resume-after")) < 0)
      die("--resume-after");
    dtlsplex_config_set_event_callback(cfg, on_client_event, NULL);
    struct sigaction stop = {.sa_handler = request_stop}; /* no SA_RESTART: poll returns for it */
    sigemptyset(&stop.sa_mask);
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    bind_local(fd, server->ai_family, bind_opt);
    if (dtlsplex_attach(fd, cfg) < 0)
      die("dtlsplex_attach");
    dtlsplex_config_free(cfg);
    if (name != NULL && dtlsplex_set_peer_name(fd, server->ai_addr, server->ai_addrlen, name) < 0)
      die("dtlsplex_set_peer_name");
    int status = continuous(fd, server, count, interval);
    dtlsplex_close(fd, server->ai_addr, server->ai_addrlen);
    dtlsplex_detach(fd);
    close(fd);
    freeaddrinfo(server);
    return status;
  }

  struct timeval two_seconds = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg);
  if (name != NULL && dtlsplex_set_peer_name(fd, server->ai_addr, server->ai_addrlen, name) < 0)
    die("dtlsplex_set_peer_name");

  long ok = 0;
  for (long i = 0; i < count; i++) {
    char msg[64], echo[64];
    int len = snprintf(msg, sizeof msg, "message %ld from pid %d", i, (int)getpid());
    if (dtlssendto(fd, msg, (size_t)len, 0, server->ai_addr, server->ai_addrlen) < 0)
      die("dtlssendto");
    ssize_t n = dtlsrecvfrom(fd, echo, sizeof echo, 0, NULL, NULL);
    if (n < 0)
      die("dtlsrecvfrom");
    ok += n == len && memcmp(msg, echo, (size_t)len) == 0;
  }
  struct dtlsplex_peer_info info;
  if (dtlsplex_peer_info(fd, server->ai_addr, server->ai_addrlen, &info) == 0)
    printf("echo-client %d: %ld/%ld echoes ok over %s %s\n", (int)getpid(), ok, count, info.protocol, info.cipher);
  dtlsplex_close(fd, server->ai_addr, server->ai_addrlen);
  dtlsplex_detach(fd);
  close(fd);
  freeaddrinfo(server);
  return ok == count ? 0 : 1;
}
