/* dtlscat: netcat for DTLS, over one UDP socket.
 *
 *   dtlscat [options] HOST PORT          client: stdin lines -> datagrams -> stdout
 *   dtlscat -l [options] [HOST] PORT     server: any number of peers on one socket
 *
 * See dtlscat(1). */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <dtlsplex.h>

#include "tool_net.h"
#include "tool_tls.h"
#include "tool_util.h"

typedef struct options {
  tls_options tls; /* tls.server: -l */
  int echo;
  const char *src_addr, *src_port, *host, *port;
  long idle_secs;   /* -w: exit after this long without traffic; -1 = never */
  long exit_after;  /* -n: server exits after this many peers closed; -1 = never */
} options;

static options opt = {.tls.family = AF_UNSPEC, .idle_secs = -1, .exit_after = -1};
static long peers_closed;

static void usage(int status) __attribute__((noreturn));
static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: dtlscat [options] HOST PORT\n"
          "       dtlscat -l [options] [HOST] PORT\n"
          "  -l            listen (server); -e echo datagrams back (server)\n"
          "  -s SRCADDR -p SRCPORT  local address and port\n"
          "  -w SECS       exit after SECS without traffic (client: after end of input; default 1)\n"
          "  -n N          server: exit after N peers have closed\n"
          "%s"
          "  -h, --help    this text\n",
          tls_usage);
  exit(status);
}

static void parse_options(int argc, char **argv) {
  static const struct option longopts[] = {TLS_LONGOPTS, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "les:p:w:n:h" TLS_SHORTOPTS, longopts, NULL)) != -1) {
    if (tls_option(&opt.tls, c, optarg))
      continue;
    switch (c) {
    case 'l': opt.tls.server = 1; break;
    case 'e': opt.echo = 1; break;
    case 's': opt.src_addr = optarg; break;
    case 'p': opt.src_port = optarg; break;
    case 'w': opt.idle_secs = parse_number(optarg, 1, 86400, "-w"); break;
    case 'n': opt.exit_after = parse_number(optarg, 1, 1000000000, "-n"); break;
    case 'h': usage(0);
    default: usage(2);
    }
  }
  int listen = opt.tls.server, rest = argc - optind;
  if (listen && (rest == 1 || rest == 2)) {
    opt.host = rest == 2 ? argv[optind] : NULL;
    opt.port = argv[argc - 1];
  } else if (!listen && rest == 2) {
    opt.host = argv[optind];
    opt.port = argv[optind + 1];
  } else {
    usage(2);
  }
  static const tls_roles roles = {"servers (-l)", "clients", "a server"};
  tls_check(&opt.tls, &roles);
  if (opt.echo && !listen)
    bad_usage("-e is for servers (-l)");
  if (!listen && opt.idle_secs < 0)
    opt.idle_secs = 1; /* replies to the last lines still have time to come */
  if (opt.exit_after >= 0 && !listen)
    bad_usage("-n is for servers (-l)");
  if (listen && (opt.src_addr != NULL || opt.src_port != NULL))
    bad_usage("-s and -p are for clients; a server binds [HOST] PORT");
}

/* Set when make_config failed on a fleet secret of the wrong size: at
 * startup that is an option that cannot work (status 2). */
static int config_usage_error;

static void on_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)len, (void)arg;
  if (event == DTLSPLEX_EVENT_CLOSED || event == DTLSPLEX_EVENT_EXPIRED)
    peers_closed++;
  if (opt.tls.verbose && opt.tls.server) /* a client reports its one peer itself */
    report_event(peer, event, error);
}

/* The configuration the options describe, its files read now; NULL (and a
 * message) if a file cannot be used. */
static dtlsplex_config *make_config(void) {
  dtlsplex_config *cfg = tls_make_config(&opt.tls, on_event, NULL, &config_usage_error);
  if (cfg != NULL && !opt.tls.server) /* an interactive session may stay quiet for long */
    dtlsplex_config_set_timeouts(cfg, 15000, 0);
  return cfg;
}

/* A UDP socket: bound to HOST PORT for a server, to -s/-p for a client. */
static int open_socket(const struct addrinfo *target) {
  if (opt.tls.server)
    return bound_udp_socket(target, opt.tls.family);
  if (opt.src_addr == NULL && opt.src_port == NULL)
    return udp_socket(target->ai_family, opt.tls.family);
  struct addrinfo hints = {.ai_family = target->ai_family, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *own;
  int r = getaddrinfo(opt.src_addr, opt.src_port ? opt.src_port : "0", &hints, &own);
  if (r != 0)
    fatal("source %s: %s", opt.src_addr ? opt.src_addr : "*", gai_strerror(r));
  int fd = bound_udp_socket(own, opt.tls.family);
  freeaddrinfo(own);
  return fd;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Waits for the socket (and stdin if wanted) for at most the library's next
 * timer and the idle limit.  Returns poll's revents for stdin. */
static short wait_for_input(int fd, int want_stdin, long long idle_deadline) {
  struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
  int timeout = dtlsplex_pending(fd) > 0 ? 0 : dtlsplex_timeout(fd);
  if (idle_deadline >= 0) {
    long long left = idle_deadline - now_ms();
    if (left < 0)
      left = 0;
    if (timeout < 0 || left < timeout)
      timeout = (int)left;
  }
  if (poll(fds, want_stdin ? 2 : 1, timeout) < 0 && errno != EINTR)
    fatal("poll: %s", strerror(errno));
  return want_stdin ? fds[1].revents : 0;
}

static void write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      fatal("write: %s", strerror(errno));
    buf += n;
    len -= (size_t)n;
  }
}

/* SIGHUP: read the certificate, key, CA and PSK files again, for new
 * handshakes; established sessions go on (certificates expire every 90 days
 * with some CAs, and a restart would drop every peer). */
static volatile sig_atomic_t reload_requested;

static void request_reload(int sig) {
  (void)sig;
  reload_requested = 1;
}

static void reload(int fd) {
  reload_requested = 0;
  dtlsplex_config *cfg = make_config();
  tls_reload(fd, cfg, opt.tls.verbose);
  dtlsplex_config_free(cfg);
}

static int run_server(int fd) {
  char buf[DTLSPLEX_MTU_MAX];
  long long idle_deadline = opt.idle_secs >= 0 ? now_ms() + opt.idle_secs * 1000 : -1;
  struct sigaction on_hup = {.sa_handler = request_reload}; /* no SA_RESTART: poll returns for it */
  sigemptyset(&on_hup.sa_mask);
  sigaction(SIGHUP, &on_hup, NULL);
  while (opt.exit_after < 0 || peers_closed < opt.exit_after) {
    if (idle_deadline >= 0 && now_ms() >= idle_deadline)
      return 0;
    if (reload_requested)
      reload(fd);
    wait_for_input(fd, 0, idle_deadline);
    if (dtlsplex_process(fd) < 0)
      fatal("receive: %s", strerror(errno));
    for (;;) {
      struct sockaddr_storage peer;
      socklen_t peer_len = sizeof peer;
      ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&peer, &peer_len);
      if (n < 0)
        break;
      if (idle_deadline >= 0)
        idle_deadline = now_ms() + opt.idle_secs * 1000;
      if (opt.echo) {
        if (dtlssendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&peer, peer_len) < 0 && opt.tls.verbose)
          fprintf(stderr, "echo: %s\n", strerror(errno));
        continue;
      }
      if (opt.tls.verbose) {
        char name[64];
        format_addr((struct sockaddr *)&peer, name, sizeof name);
        char prefix[80];
        int plen = snprintf(prefix, sizeof prefix, "%s: ", name);
        write_all(STDOUT_FILENO, prefix, (size_t)plen);
      }
      write_all(STDOUT_FILENO, buf, (size_t)n);
    }
  }
  return 0;
}

static int run_client(int fd, const struct addrinfo *server) {
  /* Connect first, so that a handshake or verification failure is reported
   * before any input is read: a zero-length send runs the handshake only. */
  if (dtlssendto(fd, "", 0, 0, server->ai_addr, server->ai_addrlen) < 0)
    fatal("handshake with %s port %s failed: %s", opt.host, opt.port, strerror(errno));
  struct dtlsplex_peer_info info;
  dtlsplex_peer_info(fd, server->ai_addr, server->ai_addrlen, &info);
  if (opt.tls.verbose)
    fprintf(stderr, "connected to %s port %s: %s %s, peer %s%s\n", opt.host, opt.port, info.protocol,
            info.cipher, info.identity[0] ? info.identity : "(no identity)",
            opt.tls.insecure ? " (not verified: --insecure)" : "");
  size_t chunk = info.data_mtu;
  char line[DTLSPLEX_MTU_MAX], buf[DTLSPLEX_MTU_MAX];
  size_t have = 0;
  int stdin_open = 1;
  long long idle_deadline = -1;
  for (;;) {
    if (!stdin_open && now_ms() >= idle_deadline)
      break;
    short in = wait_for_input(fd, stdin_open, stdin_open ? -1 : idle_deadline);
    if (in & (POLLIN | POLLHUP)) {
      ssize_t n = read(STDIN_FILENO, line + have, sizeof line - have);
      if (n <= 0) {
        stdin_open = 0;
        idle_deadline = now_ms() + opt.idle_secs * 1000;
      } else {
        have += (size_t)n;
      }
      /* Each line is a datagram; a line longer than a datagram goes in pieces,
       * and what is left at end of input goes as it is. */
      size_t start = 0;
      for (size_t i = 0; i < have; i++) {
        if (line[i] == '\n' || i + 1 - start == chunk || (!stdin_open && i + 1 == have)) {
          if (dtlssendto(fd, line + start, i + 1 - start, 0, server->ai_addr, server->ai_addrlen) < 0)
            fatal("send: %s", strerror(errno));
          start = i + 1;
        }
      }
      memmove(line, line + start, have - start);
      have -= start;
      if (have == sizeof line) /* cannot happen with chunk < sizeof line; keep the bound explicit */
        have = 0;
    }
    if (dtlsplex_process(fd) < 0)
      fatal("receive: %s", strerror(errno));
    ssize_t n;
    while ((n = dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL)) >= 0) {
      write_all(STDOUT_FILENO, buf, (size_t)n);
      if (!stdin_open)
        idle_deadline = now_ms() + opt.idle_secs * 1000;
    }
    struct dtlsplex_peer_info state;
    if (dtlsplex_peer_info(fd, server->ai_addr, server->ai_addrlen, &state) < 0) {
      if (opt.tls.verbose)
        fprintf(stderr, "the server closed the session\n");
      return 0;
    }
  }
  dtlsplex_close(fd, server->ai_addr, server->ai_addrlen);
  return 0;
}

int main(int argc, char **argv) {
  tool_name = "dtlscat";
  signal(SIGPIPE, SIG_IGN);
  parse_options(argc, argv);
  dtlsplex_config *cfg = make_config();
  if (cfg == NULL)
    exit(config_usage_error ? 2 : 1);
  struct addrinfo *target = resolve_udp(opt.host, opt.port, opt.tls.server, opt.tls.family);
  int fd = open_socket(target);
  if (dtlsplex_attach(fd, cfg) < 0)
    fatal("attach: %s", strerror(errno));
  dtlsplex_config_free(cfg);
  int status;
  if (opt.tls.server) {
    announce_listening(fd);
    status = run_server(fd);
  } else {
    /* Also with --psk: a server may still choose a certificate suite. */
    if (!opt.tls.insecure && dtlsplex_set_peer_name(fd, target->ai_addr, target->ai_addrlen, opt.host) < 0)
      fatal("%s: %s", opt.host, strerror(errno));
    status = run_client(fd, target);
  }
  dtlsplex_detach(fd);
  close(fd);
  freeaddrinfo(target);
  return status;
}
