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
    } else if (strcmp(opt, "--name") == 0) {
      *name = val;
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
      usage_error("unknown option");
    }
  }
  if ((cert == NULL) != (key == NULL))
    usage_error("--cert and --key go together");
  if (cert != NULL && dtlsplex_config_set_certificate(cfg, cert, key) < 0)
    die(cert);
  return cfg;
}

long peers_closed;

void on_server_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)len, (void)arg;
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;
  char host[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  struct dtlsplex_stats st;
  dtlsplex_stats(fd, &st);
  const char *what[] = {"", "connected", "closed", "failed", "expired", "replaced"};
  printf("[%s]:%u %s%s%s (server socket fd %d, %llu peers)\n", host, ntohs(in6->sin6_port), what[event],
         error ? ": " : "", error ? strerror(error) : "", fd, (unsigned long long)st.peers);
  fflush(stdout);
  if (event == DTLSPLEX_EVENT_CLOSED || event == DTLSPLEX_EVENT_EXPIRED)
    peers_closed++;
}

long server_arguments(int *argc, char **argv) {
  if (*argc < 2) {
    fprintf(stderr, "usage: %s PORT [--cert FILE --key FILE] [--psk ID:HEXKEY] [--exit-after N]\n", argv[0]);
    exit(2);
  }
  if (*argc >= 4 && strcmp(argv[*argc - 2], "--exit-after") == 0) {
    *argc -= 2;
    return atol(argv[*argc + 1]);
  }
  return -1;
}

dtlsplex_config *server_config(int argc, char **argv) {
  const char *name = NULL;
  dtlsplex_config *cfg = config_from_options(argc - 2, argv + 2, &name);
  dtlsplex_config_set_event_callback(cfg, on_server_event, NULL);
  dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER); /* never handshakes towards a departed client */
  return cfg;
}

int open_server(const char *port, dtlsplex_config *cfg, int type_flags) {
  int fd = socket(AF_INET6, SOCK_DGRAM | type_flags, 0); /* dual-stack: IPv4 and IPv6 clients */
  int off = 0;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)atoi(port)),
                              .sin6_addr = IN6ADDR_ANY_INIT};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
    die("bind");
  if (dtlsplex_attach(fd, cfg) < 0)
    die("dtlsplex_attach");
  dtlsplex_config_free(cfg); /* the socket keeps its own reference */
  socklen_t addr_len = sizeof addr;
  getsockname(fd, (struct sockaddr *)&addr, &addr_len); /* port 0: the kernel chose */
  printf("echo-server: listening on port %u, one socket (fd %d)\n", ntohs(addr.sin6_port), fd);
  fflush(stdout);
  return fd;
}
