#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage_error(const char *msg) {
  fprintf(stderr, "%s\n", msg);
  exit(2);
}

static size_t parse_hex(const char *hex, unsigned char *out, size_t max) {
  size_t n = strlen(hex);
  if (n == 0 || n % 2 != 0 || n / 2 > max)
    usage_error("--psk: key must be 1 to 64 bytes of hex");
  for (size_t i = 0; i < n / 2; i++) {
    unsigned int byte;
    if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
      usage_error("--psk: key is not hex");
    out[i] = (unsigned char)byte;
  }
  return n / 2;
}

/* --fleet-secret FILE: the file's bytes are the secret, 16 to 64 of them
 * (32 from /dev/urandom, say); anything else exits with status 2. */
static void set_fleet_secret(dtlsplex_config *cfg, const char *path) {
  unsigned char secret[65]; /* one more than allowed, to see a longer file */
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "--fleet-secret %s: %s\n", path, strerror(errno));
    exit(2);
  }
  size_t len = fread(secret, 1, sizeof secret, f);
  int read_error = ferror(f);
  fclose(f);
  if (read_error) {
    fprintf(stderr, "--fleet-secret %s: cannot read it\n", path);
    exit(2);
  }
  if (len < 16 || len > 64) {
    fprintf(stderr, "--fleet-secret %s: %s%zu bytes; a fleet secret is 16 to 64 bytes\n", path,
            len > 64 ? "over " : "", len > 64 ? (size_t)64 : len);
    exit(2);
  }
  if (dtlsplex_config_set_fleet_secret(cfg, secret, len) < 0)
    die("--fleet-secret");
  for (volatile unsigned char *p = secret; p < secret + sizeof secret; p++) /* kept by the compiler */
    *p = 0;
}

dtlsplex_config *config_from_options(int argc, char **argv, const char **name) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL)
    die("dtlsplex_config_new");
  const char *cert = NULL, *key = NULL;
  for (int i = 0; i < argc; i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(opt, "--insecure") == 0) {
      if (dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE) < 0)
        die("--insecure");
      continue;
    }
    if (val == NULL)
      usage_error("option needs a value");
    i++;
    if (strcmp(opt, "--cert") == 0) {
      cert = val;
    } else if (strcmp(opt, "--key") == 0) {
      key = val;
    } else if (strcmp(opt, "--ca") == 0) {
      if (dtlsplex_config_set_ca(cfg, val, NULL) < 0)
        die(val);
    } else if (strcmp(opt, "--name") == 0 && name != NULL) {
      *name = val;
    } else if (strcmp(opt, "--fleet-secret") == 0 && name == NULL) {
      set_fleet_secret(cfg, val);
    } else if (strcmp(opt, "--psk") == 0) {
      char identity[129];
      unsigned char psk[64];
      const char *colon = strchr(val, ':');
      if (colon == NULL || colon == val || (size_t)(colon - val) >= sizeof identity)
        usage_error("--psk takes IDENTITY:HEXKEY");
      memcpy(identity, val, (size_t)(colon - val));
      identity[colon - val] = '\0';
      size_t psk_len = parse_hex(colon + 1, psk, sizeof psk);
      if (dtlsplex_config_set_psk(cfg, identity, psk, psk_len) < 0)
        die("--psk");
    } else {
      fprintf(stderr, "unknown option %s\n", opt);
      exit(2);
    }
  }
  if ((cert == NULL) != (key == NULL))
    usage_error("--cert and --key go together");
  if (cert != NULL && dtlsplex_config_set_certificate(cfg, cert, key) < 0)
    die(cert);
  return cfg;
}

const char *take_option(int *argc, char **argv, int first, const char *option) {
  const char *value = NULL;
  for (int i = first; i < *argc;) {
    if (strcmp(argv[i], option) != 0) {
      i++;
      continue;
    }
    if (i + 1 >= *argc) {
      fprintf(stderr, "%s needs a value\n", option);
      exit(2);
    }
    value = argv[i + 1];
    memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof *argv);
    *argc -= 2;
    argv[*argc] = NULL;
  }
  return value;
}

long number_option(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "%s: '%s' is not a number from %ld to %ld\n", what, s, min, max);
    exit(2);
  }
  return v;
}

long peers_closed;
char server_prefix[32];

void on_server_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)arg;
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
  char host[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  struct dtlsplex_stats st;
  dtlsplex_stats(fd, &st);
  /* A resumed session (a client back from another server of the fleet, or
   * reconnecting) skipped the certificate and the key exchange. */
  struct dtlsplex_peer_info info;
  int resumed = event == DTLSPLEX_EVENT_CONNECTED && dtlsplex_peer_info(fd, peer, len, &info) == 0 && info.resumed;
  const char *what[] = {"", "connected", "closed", "failed", "expired", "replaced"};
  printf("%s[%s]:%u %s%s%s%s (server socket fd %d, %llu peers)\n", server_prefix, host, ntohs(in6->sin6_port),
         what[event], resumed ? ", resumed" : "", error ? ": " : "", error ? strerror(error) : "", fd,
         (unsigned long long)st.peers);
  fflush(stdout);
  if (event == DTLSPLEX_EVENT_CLOSED || event == DTLSPLEX_EVENT_EXPIRED)
    peers_closed++;
}

void print_server_stats(int fd) {
  struct dtlsplex_stats st;
  if (dtlsplex_stats(fd, &st) < 0)
    return;
  printf("%secho-server: stats: handshakes_ok=%llu handshakes_resumed=%llu handshakes_failed=%llu peers=%llu "
         "cookies_sent=%llu dropped_no_session=%llu\n",
         server_prefix, (unsigned long long)st.handshakes_ok, (unsigned long long)st.handshakes_resumed,
         (unsigned long long)st.handshakes_failed, (unsigned long long)st.peers,
         (unsigned long long)st.cookies_sent, (unsigned long long)st.dropped_no_session);
  fflush(stdout);
}

long server_arguments(int *argc, char **argv, const char *more_usage) {
  if (*argc < 2 || argv[1][0] == '-') {
    fprintf(stderr,
            "usage: %s PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--fleet-secret FILE] [--exit-after N]%s\n",
            argv[0], more_usage);
    exit(2);
  }
  const char *exit_after = take_option(argc, argv, 2, "--exit-after");
  return exit_after != NULL ? number_option(exit_after, 0, 1000000000, "--exit-after") : -1;
}

dtlsplex_config *server_config(int argc, char **argv) {
  dtlsplex_config *cfg = config_from_options(argc - 2, argv + 2, NULL);
  dtlsplex_config_set_event_callback(cfg, on_server_event, NULL);
  dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER); /* never handshakes towards a departed client */
  return cfg;
}

int bind_server(const char *port, int type_flags, int reuseport) {
  int fd = socket(AF_INET6, SOCK_DGRAM | type_flags, 0); /* dual-stack: IPv4 and IPv6 clients */
  if (fd < 0)
    die("socket");
  int off = 0, on = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  /* Before bind: every socket of the group must set it. */
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
    die("SO_REUSEPORT");
  struct sockaddr_in6 addr = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)number_option(port, 0, 65535, "PORT")),
                              .sin6_addr = IN6ADDR_ANY_INIT};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("bind");
  return fd;
}

void attach_server(int fd, dtlsplex_config *cfg) {
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg); /* the socket keeps its own reference */
  struct sockaddr_in6 addr;
  socklen_t addr_len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &addr_len); /* port 0: the kernel chose */
  printf("%secho-server: listening on port %u, one socket (fd %d)\n", server_prefix, ntohs(addr.sin6_port), fd);
  fflush(stdout);
}

int open_server(const char *port, dtlsplex_config *cfg, int type_flags) {
  int fd = bind_server(port, type_flags, 0);
  attach_server(fd, cfg);
  return fd;
}
