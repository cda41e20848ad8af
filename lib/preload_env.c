/* The configuration dtlsplex-run describes in the environment.  Read by
 * the preload library in the program, and by dtlsplex-run before it starts
 * the program, so that a bad option fails there with a message. */
#include "preload.h"
#include "psk_arg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *why, size_t why_len, const char *what, const char *detail) {
  snprintf(why, why_len, "%s: %s", what, detail);
  return -1;
}

static int set_psk(dtlsplex_config *cfg, const char *arg, char *why, size_t why_len) {
  const char *problem;
  int r = dp_psk_arg_apply(cfg, arg, &problem);
  if (r == -1)
    snprintf(why, why_len, "%s", problem);
  else if (r == -2)
    fail(why, why_len, "--psk", strerror(errno));
  return r < 0 ? -1 : 0;
}

static int parse_ports(dp_run_settings *s, const char *list, char *why, size_t why_len) {
  for (const char *p = list; *p != '\0';) {
    char *end;
    errno = 0;
    long port = strtol(p, &end, 10);
    if (errno != 0 || end == p || port < 1 || port > 65535 || (*end != ',' && *end != '\0'))
      return fail(why, why_len, "--ports", "takes a comma-separated list of ports from 1 to 65535");
    if (s->n_ports == DP_RUN_PORTS_MAX)
      return fail(why, why_len, "--ports", "too many ports (at most 64)");
    s->ports[s->n_ports++] = (uint16_t)port;
    p = *end == ',' ? end + 1 : end;
  }
  return s->n_ports > 0 ? 0 : fail(why, why_len, "--ports", "no port given");
}

static int configure(dp_run_settings *s, char *why, size_t why_len) {
  dtlsplex_config *cfg = s->cfg;
  const char *cert = getenv(DP_RUN_ENV_CERT), *key = getenv(DP_RUN_ENV_KEY), *ca = getenv(DP_RUN_ENV_CA);
  const char *psk = getenv(DP_RUN_ENV_PSK), *mtu = getenv(DP_RUN_ENV_MTU), *ports = getenv(DP_RUN_ENV_PORTS);
  if ((cert != NULL) != (key != NULL))
    return fail(why, why_len, "-c/-k", "a certificate needs its key, and a key its certificate");
  if (cert != NULL && dtlsplex_config_set_certificate(s->cfg, cert, key) < 0)
    return fail(why, why_len, cert, strerror(errno));
  if (ca != NULL && dtlsplex_config_set_ca(cfg, ca, NULL) < 0)
    return fail(why, why_len, ca, strerror(errno));
  if (getenv(DP_RUN_ENV_INSECURE) != NULL && dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE) < 0)
    return fail(why, why_len, "--insecure", strerror(errno));
  if (getenv(DP_RUN_ENV_VERIFY) != NULL) {
    if (ca == NULL)
      return fail(why, why_len, "--verify", "needs -C CAFILE, the CA that signs client certificates");
    if (dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_REQUIRE) < 0)
      return fail(why, why_len, "--verify", strerror(errno));
  }
  if (psk != NULL && set_psk(cfg, psk, why, why_len) < 0)
    return -1;
  if (mtu != NULL) {
    char *end;
    long v = strtol(mtu, &end, 10);
    if (*mtu == '\0' || *end != '\0' || v < 256 || v > DTLSPLEX_MTU_MAX || dtlsplex_config_set_mtu(cfg, (unsigned)v) < 0)
      return fail(why, why_len, "--mtu", "takes a number of UDP payload bytes from 256 to 16896");
  }
  if (ports != NULL && parse_ports(s, ports, why, why_len) < 0)
    return -1;
  s->name = getenv(DP_RUN_ENV_NAME);
  return 0;
}

int dp_run_settings_from_env(dp_run_settings *out, char *why, size_t why_len) {
  memset(out, 0, sizeof *out);
  if ((out->cfg = dtlsplex_config_new()) == NULL)
    return fail(why, why_len, "dtlsplex", strerror(errno));
  if (configure(out, why, why_len) < 0) {
    dtlsplex_config_free(out->cfg);
    out->cfg = NULL;
    return -1;
  }
  return 0;
}

int dp_run_port_selected(const dp_run_settings *s, uint16_t port) {
  if (s->n_ports == 0)
    return 1;
  for (int i = 0; i < s->n_ports; i++)
    if (s->ports[i] == port)
      return 1;
  return 0;
}
