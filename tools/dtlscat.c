/* dtlscat: netcat for DTLS, over one UDP socket.
 *
 *   dtlscat [options] HOST PORT          client: stdin lines -> datagrams -> stdout
 *   dtlscat -l [options] [HOST] PORT     server: any number of peers on one socket
 *
 * See dtlscat(1). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <dtlsplex.h>

typedef struct options {
  int listen, echo, verify_clients, insecure, verbose, family;
  const char *cert, *key, *ca, *psk, *ciphers, *keylog, *fleet_secret, *src_addr, *src_port, *host, *port;
  unsigned int mtu;
  long idle_secs;   /* -w: exit after this long without traffic; -1 = never */
  long exit_after;  /* -n: server exits after this many peers closed; -1 = never */
} options;

static options opt = {.idle_secs = -1, .exit_after = -1, .family = AF_UNSPEC};
static long peers_closed;

static void vdie(int status, const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(int status, const char *fmt, va_list ap) {
  fputs("dtlscat: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(status);
}

/* A failure at run time (exit 1). */
static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(1, fmt, ap);
}

/* Options that cannot work (exit 2, like a usage error). */
static void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void bad_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(2, fmt, ap);
}

static void usage(int status) __attribute__((noreturn));
static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: dtlscat [options] HOST PORT\n"
          "       dtlscat -l [options] [HOST] PORT\n"
          "  -l            listen (server); -e echo datagrams back (server)\n"
          "  -c CERT -k KEY  certificate chain and key (PEM)\n"
          "  -C CAFILE     trust these CAs instead of the system store\n"
          "  --verify      server: require a client certificate signed by -C\n"
          "  --insecure    client: do not verify the server\n"
          "  --psk IDENTITY:HEXKEY  pre-shared key\n"
          "  --ciphers LIST  OpenSSL cipher list (e.g. PSK-AES128-CCM8 for CoAP devices)\n"
          "  --keylog FILE   append the session secrets to FILE, for Wireshark (SSLKEYLOGFILE format)\n"
          "  --fleet-secret FILE  server: the secret (16..64 bytes) a fleet of servers shares for cookies\n"
          "                and session tickets\n"
          "  --mtu N       UDP payload bytes per datagram (256..16896)\n"
          "  -s SRCADDR -p SRCPORT  local address and port\n"
          "  -4 / -6       IPv4 / IPv6 only\n"
          "  -w SECS       exit after SECS without traffic (client: after end of input; default 1)\n"
          "  -n N          server: exit after N peers have closed\n"
          "  -v            verbose: peer addresses and events on stderr\n"
          "  -h, --help    this text\n");
  exit(status);
}

static long parse_number(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    bad_usage("%s: '%s' is not a number from %ld to %ld", what, s, min, max);
  return v;
}

static void parse_options(int argc, char **argv) {
  enum { OPT_VERIFY = 256, OPT_INSECURE, OPT_PSK, OPT_MTU, OPT_CIPHERS, OPT_KEYLOG, OPT_FLEET_SECRET };
  static const struct option longopts[] = {
      {"verify", no_argument, NULL, OPT_VERIFY},    {"insecure", no_argument, NULL, OPT_INSECURE},
      {"psk", required_argument, NULL, OPT_PSK},    {"mtu", required_argument, NULL, OPT_MTU},
      {"ciphers", required_argument, NULL, OPT_CIPHERS}, {"keylog", required_argument, NULL, OPT_KEYLOG},
      {"fleet-secret", required_argument, NULL, OPT_FLEET_SECRET},
      {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "lec:k:C:s:p:46w:n:vh", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': opt.listen = 1; break;
    case 'e': opt.echo = 1; break;
    case 'c': opt.cert = optarg; break;
    case 'k': opt.key = optarg; break;
    case 'C': opt.ca = optarg; break;
    case 's': opt.src_addr = optarg; break;
    case 'p': opt.src_port = optarg; break;
    case '4': opt.family = AF_INET; break;
    case '6': opt.family = AF_INET6; break;
    case 'w': opt.idle_secs = parse_number(optarg, 1, 86400, "-w"); break;
    case 'n': opt.exit_after = parse_number(optarg, 1, 1000000000, "-n"); break;
    case 'v': opt.verbose = 1; break;
    case OPT_VERIFY: opt.verify_clients = 1; break;
    case OPT_INSECURE: opt.insecure = 1; break;
    case OPT_PSK: opt.psk = optarg; break;
    case OPT_MTU: opt.mtu = (unsigned int)parse_number(optarg, 256, DTLSPLEX_MTU_MAX, "--mtu"); break;
    case OPT_CIPHERS: opt.ciphers = optarg; break;
    case OPT_KEYLOG: opt.keylog = optarg; break;
    case OPT_FLEET_SECRET: opt.fleet_secret = optarg; break;
    case 'h': usage(0);
    default: usage(2);
    }
  }
  int rest = argc - optind;
  if (opt.listen && (rest == 1 || rest == 2)) {
    opt.host = rest == 2 ? argv[optind] : NULL;
    opt.port = argv[argc - 1];
  } else if (!opt.listen && rest == 2) {
    opt.host = argv[optind];
    opt.port = argv[optind + 1];
  } else {
    usage(2);
  }
  if ((opt.cert == NULL) != (opt.key == NULL))
    bad_usage("-c and -k go together");
  if (opt.listen && opt.cert == NULL && opt.psk == NULL)
    bad_usage("a server needs -c/-k or --psk");
  if (opt.echo && !opt.listen)
    bad_usage("-e is for servers (-l)");
  if (opt.verify_clients && (!opt.listen || opt.ca == NULL))
    bad_usage("--verify is for servers (-l) and needs -C CAFILE");
  if (!opt.listen && opt.idle_secs < 0)
    opt.idle_secs = 1; /* replies to the last lines still have time to come */
  if (opt.exit_after >= 0 && !opt.listen)
    bad_usage("-n is for servers (-l)");
  if (opt.listen && (opt.src_addr != NULL || opt.src_port != NULL))
    bad_usage("-s and -p are for clients; a server binds [HOST] PORT");
  if (opt.listen && opt.insecure)
    bad_usage("--insecure is for clients (a server checks client certificates only with --verify)");
  if (opt.fleet_secret != NULL && !opt.listen)
    bad_usage("--fleet-secret is for servers (-l)");
}

/* Zeroes a secret in a way the compiler keeps. */
static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n-- > 0)
    *v++ = 0;
}

/* Set when make_config failed on a fleet secret of the wrong size: at
 * startup that is an option that cannot work (status 2). */
static int config_usage_error;

/* --fleet-secret FILE: the file's bytes, 16 to 64 of them (32 from
 * /dev/urandom, say), are the secret, read again on every SIGHUP.  0, or
 * -1 and a message. */
static int set_fleet_secret(dtlsplex_config *cfg) {
  unsigned char buf[65]; /* one more than allowed, to see a longer file */
  FILE *f = fopen(opt.fleet_secret, "rb");
  if (f == NULL) {
    fprintf(stderr, "dtlscat: --fleet-secret %s: %s\n", opt.fleet_secret, strerror(errno));
    return -1;
  }
  size_t len = fread(buf, 1, sizeof buf, f);
  int read_error = ferror(f);
  fclose(f);
  int r = -1;
  if (read_error) {
    fprintf(stderr, "dtlscat: --fleet-secret %s: cannot read it\n", opt.fleet_secret);
  } else if (len < 16 || len > 64) {
    fprintf(stderr, "dtlscat: --fleet-secret %s: %s%zu bytes; a fleet secret is 16 to 64 bytes\n",
            opt.fleet_secret, len > 64 ? "over " : "", len > 64 ? (size_t)64 : len);
    config_usage_error = 1;
  } else if ((r = dtlsplex_config_set_fleet_secret(cfg, buf, len)) < 0) {
    fprintf(stderr, "dtlscat: --fleet-secret: %s\n", strerror(errno));
  }
  wipe(buf, sizeof buf);
  return r;
}

static void set_psk(dtlsplex_config *cfg, const char *arg) {
  const char *colon = strchr(arg, ':');
  if (colon == NULL || colon == arg)
    bad_usage("--psk takes IDENTITY:HEXKEY");
  char identity[129];
  unsigned char key[64];
  size_t id_len = (size_t)(colon - arg), hex_len = strlen(colon + 1);
  if (id_len >= sizeof identity)
    bad_usage("--psk: identity longer than 128 bytes");
  if (hex_len == 0 || hex_len % 2 != 0 || hex_len / 2 > sizeof key)
    bad_usage("--psk: key must be 1 to 64 bytes in hex");
  memcpy(identity, arg, id_len);
  identity[id_len] = '\0';
  for (size_t i = 0; i < hex_len; i++)
    if (!isxdigit((unsigned char)colon[1 + i]))
      bad_usage("--psk: key is not hex");
  for (size_t i = 0; i < hex_len / 2; i++) {
    char byte[3] = {colon[1 + 2 * i], colon[2 + 2 * i], '\0'};
    key[i] = (unsigned char)strtoul(byte, NULL, 16);
  }
  if (dtlsplex_config_set_psk(cfg, identity, key, hex_len / 2) < 0)
    fatal("--psk: %s", strerror(errno));
}

static const char *event_names[] = {"?", "connected", "closed", "failed", "expired", "replaced"};

static void format_addr(const struct sockaddr *sa, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    snprintf(buf, len, "%s:%u", host, port);
    return;
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) /* a dual-stack socket's IPv4 peer */
    inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
  else
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  snprintf(buf, len, IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) ? "%s:%u" : "[%s]:%u", host, port);
}

static void on_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)len, (void)arg;
  if (event == DTLSPLEX_EVENT_CLOSED || event == DTLSPLEX_EVENT_EXPIRED)
    peers_closed++;
  if (!opt.verbose || !opt.listen) /* a client reports its one peer itself */
    return;
  char name[64];
  format_addr(peer, name, sizeof name);
  if (error != 0)
    fprintf(stderr, "%s %s: %s\n", name, event_names[event], strerror(error));
  else
    fprintf(stderr, "%s %s\n", name, event_names[event]);
}

/* The configuration the options describe, its files read now; NULL (and a
 * message) if a file cannot be used. */
static dtlsplex_config *make_config(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL)
    fatal("cannot create a configuration: %s", strerror(errno));
  dtlsplex_config_set_role(cfg, opt.listen ? DTLSPLEX_ROLE_SERVER : DTLSPLEX_ROLE_CLIENT);
  dtlsplex_config_set_event_callback(cfg, on_event, NULL);
  const char *bad_file = NULL;
  if (opt.cert != NULL && dtlsplex_config_set_certificate(cfg, opt.cert, opt.key) < 0)
    bad_file = opt.cert;
  else if (opt.ca != NULL && dtlsplex_config_set_ca(cfg, opt.ca, NULL) < 0)
    bad_file = opt.ca;
  else if (opt.keylog != NULL && dtlsplex_config_set_keylog(cfg, opt.keylog) < 0)
    bad_file = opt.keylog;
  if (bad_file != NULL) {
    fprintf(stderr, "dtlscat: %s: %s\n", bad_file, strerror(errno));
    dtlsplex_config_free(cfg);
    return NULL;
  }
  if (opt.fleet_secret != NULL && set_fleet_secret(cfg) < 0) {
    dtlsplex_config_free(cfg);
    errno = EINVAL;
    return NULL;
  }
  if (opt.insecure)
    dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE);
  if (opt.verify_clients)
    dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_REQUIRE);
  if (opt.psk != NULL)
    set_psk(cfg, opt.psk);
  /* After --psk, whose suites it replaces. */
  if (opt.ciphers != NULL && dtlsplex_config_set_ciphers(cfg, opt.ciphers) < 0)
    bad_usage("--ciphers %s: no usable DTLS 1.2 cipher", opt.ciphers);
  if (opt.mtu != 0 && dtlsplex_config_set_mtu(cfg, opt.mtu) < 0)
    fatal("--mtu: %s", strerror(errno));
  if (!opt.listen) /* an interactive session may stay quiet for long */
    dtlsplex_config_set_timeouts(cfg, 15000, 0);
  return cfg;
}

static struct addrinfo *resolve(const char *host, const char *port, int passive) {
  /* A server given no HOST listens on :: for IPv6 and IPv4 alike (dual stack). */
  int family = passive && host == NULL && opt.family == AF_UNSPEC ? AF_INET6 : opt.family;
  struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM,
                           .ai_flags = passive ? AI_PASSIVE : 0}, *res;
  int r = getaddrinfo(host, port, &hints, &res);
  if (r != 0)
    fatal("%s port %s: %s", host ? host : "*", port, gai_strerror(r));
  return res;
}

/* A UDP socket: bound to HOST PORT for a server, to -s/-p for a client. */
static int open_socket(const struct addrinfo *target) {
  int family = target->ai_family;
  int fd = socket(family, SOCK_DGRAM, 0);
  if (fd < 0)
    fatal("socket: %s", strerror(errno));
  if (family == AF_INET6) {
    int v6only = opt.family == AF_INET6; /* -6: IPv6 only; else dual-stack */
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  const struct addrinfo *local = opt.listen ? target : NULL;
  struct addrinfo *own = NULL;
  if (!opt.listen && (opt.src_addr != NULL || opt.src_port != NULL)) {
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE};
    int r = getaddrinfo(opt.src_addr, opt.src_port ? opt.src_port : "0", &hints, &own);
    if (r != 0)
      fatal("source %s: %s", opt.src_addr ? opt.src_addr : "*", gai_strerror(r));
    local = own;
  }
  if (local != NULL && bind(fd, local->ai_addr, local->ai_addrlen) < 0)
    fatal("bind: %s", strerror(errno));
  if (own != NULL)
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
  if (cfg == NULL || dtlsplex_reconfigure(fd, cfg) < 0)
    fprintf(stderr, "dtlscat: reload failed, the files in use stay: %s\n", strerror(errno));
  else if (opt.verbose)
    fprintf(stderr, "reloaded\n");
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
        if (dtlssendto(fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&peer, peer_len) < 0 && opt.verbose)
          fprintf(stderr, "echo: %s\n", strerror(errno));
        continue;
      }
      if (opt.verbose) {
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
  if (opt.verbose)
    fprintf(stderr, "connected to %s port %s: %s %s, peer %s%s\n", opt.host, opt.port, info.protocol,
            info.cipher, info.identity[0] ? info.identity : "(no identity)",
            opt.insecure ? " (not verified: --insecure)" : "");
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
      if (opt.verbose)
        fprintf(stderr, "the server closed the session\n");
      return 0;
    }
  }
  dtlsplex_close(fd, server->ai_addr, server->ai_addrlen);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  parse_options(argc, argv);
  dtlsplex_config *cfg = make_config();
  if (cfg == NULL)
    exit(config_usage_error ? 2 : 1);
  struct addrinfo *target = resolve(opt.host, opt.port, opt.listen);
  int fd = open_socket(target);
  if (dtlsplex_attach(fd, cfg) < 0)
    fatal("attach: %s", strerror(errno));
  dtlsplex_config_free(cfg);
  int status;
  if (opt.listen) {
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    char name[64];
    format_addr((struct sockaddr *)&bound, name, sizeof name);
    char *colon = strrchr(name, ':');
    *colon = '\0';
    if (name[0] == '[') { /* "listening on ADDR PORT": no brackets */
      memmove(name, name + 1, strlen(name));
      name[strlen(name) - 1] = '\0';
    }
    fprintf(stderr, "listening on %s %s\n", name, colon + 1);
    status = run_server(fd);
  } else {
    /* Also with --psk: a server may still choose a certificate suite. */
    if (!opt.insecure && dtlsplex_set_peer_name(fd, target->ai_addr, target->ai_addrlen, opt.host) < 0)
      fatal("%s: %s", opt.host, strerror(errno));
    status = run_client(fd, target);
  }
  dtlsplex_detach(fd);
  close(fd);
  freeaddrinfo(target);
  return status;
}
