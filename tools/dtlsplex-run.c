/* dtlsplex-run: runs an unmodified program with DTLS on its UDP sockets.
 * It checks the options, hands them to the preload library through the
 * environment, puts the library in LD_PRELOAD and becomes the program. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"

#ifndef DTLSPLEX_PRELOAD_PATH
#define DTLSPLEX_PRELOAD_PATH "libdtlsplex-preload.so"
#endif

static void usage(int status) __attribute__((noreturn));
static void usage(int status) {
  fprintf(status ? stderr : stdout,
          "usage: dtlsplex-run [options] -- PROGRAM [ARGS...]\n"
          "  -c CERT -k KEY  certificate chain and key (PEM): the program's sockets can serve\n"
          "  -C CAFILE     trust these CAs instead of the system store\n"
          "  --verify      require client certificates signed by -C\n"
          "  --insecure    do not verify servers\n"
          "  --psk IDENTITY:HEXKEY  pre-shared key\n"
          "  --mtu N       UDP payload bytes per datagram (256..16896)\n"
          "  --name NAME   the name servers' certificates must carry (default: their IP address)\n"
          "  --ports LIST  only sockets bound to, sending to or connected to these ports\n"
          "                (comma-separated; default: every UDP socket)\n"
          "  -h, --help    this text\n"
          "The preload library is %s (DTLSPLEX_PRELOAD overrides it).\n",
          DTLSPLEX_PRELOAD_PATH);
  exit(status);
}

static void set(const char *name, const char *value) {
  if (setenv(name, value, 1) != 0) {
    fprintf(stderr, "dtlsplex-run: %s: %s\n", name, strerror(errno));
    exit(1);
  }
}

/* The options become the environment the preload library reads; any left
 * from an outer dtlsplex-run go first. */
static void parse_options(int argc, char **argv) {
  enum { OPT_VERIFY = 256, OPT_INSECURE, OPT_PSK, OPT_MTU, OPT_NAME, OPT_PORTS };
  static const struct option longopts[] = {
      {"verify", no_argument, NULL, OPT_VERIFY}, {"insecure", no_argument, NULL, OPT_INSECURE},
      {"psk", required_argument, NULL, OPT_PSK},  {"mtu", required_argument, NULL, OPT_MTU},
      {"name", required_argument, NULL, OPT_NAME}, {"ports", required_argument, NULL, OPT_PORTS},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  static const char *const all[] = {DP_RUN_ENV_CERT, DP_RUN_ENV_KEY,  DP_RUN_ENV_CA,   DP_RUN_ENV_PSK,  DP_RUN_ENV_VERIFY,
                                    DP_RUN_ENV_INSECURE, DP_RUN_ENV_MTU, DP_RUN_ENV_NAME, DP_RUN_ENV_PORTS};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    unsetenv(all[i]);
  int c;
  while ((c = getopt_long(argc, argv, "+c:k:C:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'c': set(DP_RUN_ENV_CERT, optarg); break;
    case 'k': set(DP_RUN_ENV_KEY, optarg); break;
    case 'C': set(DP_RUN_ENV_CA, optarg); break;
    case OPT_VERIFY: set(DP_RUN_ENV_VERIFY, "1"); break;
    case OPT_INSECURE: set(DP_RUN_ENV_INSECURE, "1"); break;
    case OPT_PSK: set(DP_RUN_ENV_PSK, optarg); break;
    case OPT_MTU: set(DP_RUN_ENV_MTU, optarg); break;
    case OPT_NAME: set(DP_RUN_ENV_NAME, optarg); break;
    case OPT_PORTS: set(DP_RUN_ENV_PORTS, optarg); break;
    case 'h': usage(0);
    default: usage(2);
    }
  }
  if (optind >= argc)
    usage(2);
}

int main(int argc, char **argv) {
  parse_options(argc, argv);
  char why[256];
  dp_run_settings settings;
  if (dp_run_settings_from_env(&settings, why, sizeof why) < 0) {
    fprintf(stderr, "dtlsplex-run: %s\n", why);
    return 2;
  }
  dtlsplex_config_free(settings.cfg);
  const char *preload = getenv("DTLSPLEX_PRELOAD");
  if (preload == NULL || *preload == '\0')
    preload = DTLSPLEX_PRELOAD_PATH;
  if (access(preload, R_OK) != 0) {
    fprintf(stderr, "dtlsplex-run: %s: %s\n", preload, strerror(errno));
    return 1;
  }
  const char *outer = getenv("LD_PRELOAD");
  size_t len = strlen(preload) + (outer != NULL ? strlen(outer) + 1 : 0) + 1;
  char *joined = malloc(len);
  if (joined == NULL) {
    fprintf(stderr, "dtlsplex-run: %s\n", strerror(ENOMEM));
    return 1;
  }
  /* After what is there already: a sanitizer's runtime must come first. */
  snprintf(joined, len, "%s%s%s", outer != NULL ? outer : "", outer != NULL ? ":" : "", preload);
  set("LD_PRELOAD", joined);
  free(joined);
  execvp(argv[optind], argv + optind);
  fprintf(stderr, "dtlsplex-run: %s: %s\n", argv[optind], strerror(errno));
  return 127;
}
