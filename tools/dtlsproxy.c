/* dtlsproxy: DTLS in front of a UDP service, or behind UDP clients, with no
 * change to either.
 *
 *   dtlsproxy -l [ADDR] PORT --to HOST PORT [options]           terminate DTLS
 *   dtlsproxy --client -l [ADDR] PORT --to HOST PORT [options]  originate it
 *
 * One thread, one epoll loop over the library's event descriptors, the
 * plaintext sockets and a signalfd: SIGUSR1 prints the statistics, SIGHUP
 * reloads the certificate files, SIGINT and SIGTERM end it cleanly.
 * See dtlsproxy(1). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "proxy.h"
#include "tool_net.h"
#include "tool_util.h"

#define DEFAULT_IDLE_S 60
/* The library's default: a handshake not done by then fails. */
#define HANDSHAKE_MS 45000

proxy_options popt = {.tls.family = AF_UNSPEC, .idle_s = DEFAULT_IDLE_S};
proxy_counters counters;

static void usage(int status) __attribute__((noreturn));
static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: dtlsproxy -l [ADDR] PORT --to HOST PORT [options]            DTLS in, UDP out\n"
          "       dtlsproxy --client -l [ADDR] PORT --to HOST PORT [options]   UDP in, DTLS out\n"
          "  -l [ADDR] PORT  listen here (the client side: on 127.0.0.1 without ADDR)\n"
          "  --to HOST PORT  the backend (server side) or the DTLS server (client side)\n"
          "  --client      originate DTLS: each local source gets its own session\n"
          "  --idle SECS   forget a peer after SECS without traffic (1..86400, default %d)\n"
          "  --proxy-protocol  server side: a PROXY protocol v2 header before each datagram\n"
          "                to the backend, with the client's address\n"
          "%s"
          "  -h, --help    this text\n"
          "SIGUSR1: a line of statistics on stderr; SIGHUP: read the certificate files again\n",
          DEFAULT_IDLE_S, tls_usage);
  exit(status);
}

static void parse_options(int argc, char **argv) {
  enum { OPT_TO = TLS_OPT_END, OPT_CLIENT, OPT_IDLE, OPT_PROXY_PROTOCOL };
  static const struct option longopts[] = {TLS_LONGOPTS,
                                           {"to", required_argument, NULL, OPT_TO},
                                           {"client", no_argument, NULL, OPT_CLIENT},
                                           {"idle", required_argument, NULL, OPT_IDLE},
                                           {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  int c, listen = 0, client = 0;
  while ((c = getopt_long(argc, argv, "lh" TLS_SHORTOPTS, longopts, NULL)) != -1) {
    if (tls_option(&popt.tls, c, optarg))
      continue;
    switch (c) {
    case 'l': listen = 1; break;
    case OPT_CLIENT: client = 1; break;
    case OPT_TO:
      /* Two arguments: the port is the next word, taken here (getopt then
       * treats it as part of the option). */
      if (optind >= argc)
        bad_usage("--to takes HOST PORT");
      popt.to_host = optarg;
      popt.to_port = argv[optind++];
      break;
    case OPT_IDLE: popt.idle_s = (unsigned int)parse_number(optarg, 1, 86400, "--idle"); break;
    case OPT_PROXY_PROTOCOL: popt.proxy_protocol = 1; break;
    case 'h': usage(0);
    default: usage(2);
    }
  }
  int rest = argc - optind;
  if (!listen || rest < 1 || rest > 2)
    usage(2);
  popt.listen_host = rest == 2 ? argv[optind] : NULL;
  popt.listen_port = argv[argc - 1];
  if (popt.to_host == NULL)
    bad_usage("--to HOST PORT is missing: where to pass the datagrams on to");
  popt.tls.server = !client;
  static const tls_roles roles = {"the server side (without --client)", "the client side (--client)",
                                  "the server side"};
  tls_check(&popt.tls, &roles);
  if (client && popt.proxy_protocol)
    bad_usage("--proxy-protocol is for the server side (without --client)");
  /* Plaintext stays on this machine unless an address is given. */
  if (client && popt.listen_host == NULL)
    popt.listen_host = popt.tls.family == AF_INET6 ? "::1" : "127.0.0.1";
}

static int startup_done;

dtlsplex_config *proxy_config(dtlsplex_event_fn on_event) {
  int usage_error = 0;
  dtlsplex_config *cfg = tls_make_config(&popt.tls, on_event, NULL, &usage_error);
  if (cfg == NULL && !startup_done) /* at startup: a file that cannot be used is fatal */
    exit(usage_error ? 2 : 1);
  if (cfg != NULL)
    dtlsplex_config_set_timeouts(cfg, HANDSHAKE_MS, popt.idle_s * 1000);
  return cfg;
}

int proxy_event(const struct sockaddr *peer, int event, int error) {
  if (event == DTLSPLEX_EVENT_CONNECTED)
    counters.handshakes_ok++;
  else if (event == DTLSPLEX_EVENT_FAILED)
    counters.handshakes_failed++;
  else if (event == DTLSPLEX_EVENT_EXPIRED)
    counters.expired++;
  if (popt.tls.verbose)
    report_event(peer, event, error);
  return event != DTLSPLEX_EVENT_CONNECTED;
}

/* ---- The loop ----------------------------------------------------------- */

enum { KIND_SIGNAL = 0 };
static int epoll_fd = -1;

void loop_watch(int fd, int kind, int id) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)kind << 32 | (uint32_t)id};
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
    fatal("epoll: %s", strerror(errno));
}

void loop_unwatch(int fd) { epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL); }

static void print_stats(const proxy_side *side) {
  proxy_stats s = {0, 0};
  side->stats(&s);
  fprintf(stderr,
          "%s: peers=%llu handshakes=%llu failed=%llu expired=%llu up=%llu down=%llu dropped=%llu "
          "dropped_dtls=%llu\n",
          tool_name, (unsigned long long)s.peers, (unsigned long long)counters.handshakes_ok,
          (unsigned long long)counters.handshakes_failed, (unsigned long long)counters.expired,
          (unsigned long long)counters.up, (unsigned long long)counters.down,
          (unsigned long long)counters.dropped, (unsigned long long)s.dropped_dtls);
}

/* The signals come as datagrams of a signalfd, read in the loop: nothing
 * runs in a handler.  Returns 0 once asked to stop. */
static int take_signals(int sig_fd, const proxy_side *side) {
  struct signalfd_siginfo si;
  while (read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGUSR1)
      print_stats(side);
    else if (si.ssi_signo == SIGHUP)
      side->reload();
    else
      return 0;
  }
  return 1;
}

static void run(const proxy_side *side, int sig_fd) {
  for (int running = 1; running;) {
    struct epoll_event ev[64];
    int n = epoll_wait(epoll_fd, ev, 64, -1);
    if (n < 0 && errno != EINTR)
      fatal("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      int kind = (int)(ev[i].data.u64 >> 32), id = (int)(uint32_t)ev[i].data.u64;
      if (kind == KIND_SIGNAL)
        running = take_signals(sig_fd, side);
      else
        side->ready(kind, id);
    }
    side->reap();
  }
}

/* A descriptor per peer (two or more on the client side): as many as the
 * system allows. */
static void raise_descriptor_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  tool_name = "dtlsproxy";
  signal(SIGPIPE, SIG_IGN);
  parse_options(argc, argv);
  raise_descriptor_limit();
  const proxy_side *side = popt.tls.server ? &server_side : &client_side;
  struct addrinfo *listen_at = resolve_udp(popt.listen_host, popt.listen_port, 1, popt.tls.family);
  struct addrinfo *to = resolve_udp(popt.to_host, popt.to_port, 0, popt.tls.family);
  if ((epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
    fatal("epoll: %s", strerror(errno));
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0)
    fatal("signalfd: %s", strerror(errno));
  loop_watch(sig_fd, KIND_SIGNAL, sig_fd);
  side->start(listen_at, to);
  startup_done = 1;
  run(side, sig_fd);
  side->stop();
  close(sig_fd);
  close(epoll_fd);
  freeaddrinfo(listen_at);
  freeaddrinfo(to);
  return 0;
}
