/* See tool_tls.h. */
#include "tool_tls.h"

#include "psk_arg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tool_util.h"

const char tls_usage[] =
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
    "  -4 / -6       IPv4 / IPv6 only\n"
    "  -v            verbose: peer addresses and events on stderr\n";

int tls_option(tls_options *o, int c, const char *arg) {
  switch (c) {
  case 'c': o->cert = arg; break;
  case 'k': o->key = arg; break;
  case 'C': o->ca = arg; break;
  case '4': o->family = AF_INET; break;
  case '6': o->family = AF_INET6; break;
  case 'v': o->verbose = 1; break;
  case TLS_OPT_VERIFY: o->verify_clients = 1; break;
  case TLS_OPT_INSECURE: o->insecure = 1; break;
  case TLS_OPT_PSK: o->psk = arg; break;
  case TLS_OPT_MTU: o->mtu = (unsigned int)parse_number(arg, 256, DTLSPLEX_MTU_MAX, "--mtu"); break;
  case TLS_OPT_CIPHERS: o->ciphers = arg; break;
  case TLS_OPT_KEYLOG: o->keylog = arg; break;
  case TLS_OPT_FLEET_SECRET: o->fleet_secret = arg; break;
  default: return 0;
  }
  return 1;
}

void tls_check(const tls_options *o, const tls_roles *roles) {
  if ((o->cert == NULL) != (o->key == NULL))
    bad_usage("-c and -k go together");
  if (o->server && o->cert == NULL && o->psk == NULL)
    bad_usage("%s needs -c/-k or --psk", roles->a_server);
  if (o->verify_clients && (!o->server || o->ca == NULL))
    bad_usage("--verify is for %s and needs -C CAFILE", roles->servers);
  if (o->server && o->insecure)
    bad_usage("--insecure is for %s (a server checks client certificates only with --verify)", roles->clients);
  if (o->fleet_secret != NULL && !o->server)
    bad_usage("--fleet-secret is for %s", roles->servers);
}

/* --fleet-secret FILE: the file's bytes, 16 to 64 of them (32 from
 * /dev/urandom, say), are the secret, read again on every reload.  0, or
 * -1 and a message. */
static int set_fleet_secret(dtlsplex_config *cfg, const char *path, int *usage_error) {
  unsigned char buf[65]; /* one more than allowed, to see a longer file */
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "%s: --fleet-secret %s: %s\n", tool_name, path, strerror(errno));
    return -1;
  }
  size_t len = fread(buf, 1, sizeof buf, f);
  int read_error = ferror(f);
  fclose(f);
  int r = -1;
  if (read_error) {
    fprintf(stderr, "%s: --fleet-secret %s: cannot read it\n", tool_name, path);
  } else if (len < 16 || len > 64) {
    fprintf(stderr, "%s: --fleet-secret %s: %s%zu bytes; a fleet secret is 16 to 64 bytes\n", tool_name, path,
            len > 64 ? "over " : "", len > 64 ? (size_t)64 : len);
    *usage_error = 1;
  } else if ((r = dtlsplex_config_set_fleet_secret(cfg, buf, len)) < 0) {
    fprintf(stderr, "%s: --fleet-secret: %s\n", tool_name, strerror(errno));
  }
  wipe(buf, sizeof buf);
  return r;
}

static void set_psk(dtlsplex_config *cfg, const char *arg) {
  const char *why;
  int r = dp_psk_arg_apply(cfg, arg, &why);
  if (r == -1)
    bad_usage("%s", why);
  if (r == -2)
    fatal("--psk: %s", strerror(errno));
}

dtlsplex_config *tls_make_config(const tls_options *o, dtlsplex_event_fn fn, void *arg, int *usage_error) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL)
    fatal("cannot create a configuration: %s", strerror(errno));
  dtlsplex_config_set_role(cfg, o->server ? DTLSPLEX_ROLE_SERVER : DTLSPLEX_ROLE_CLIENT);
  dtlsplex_config_set_event_callback(cfg, fn, arg);
  const char *bad_file = NULL;
  if (o->cert != NULL && dtlsplex_config_set_certificate(cfg, o->cert, o->key) < 0)
    bad_file = o->cert;
  else if (o->ca != NULL && dtlsplex_config_set_ca(cfg, o->ca, NULL) < 0)
    bad_file = o->ca;
  else if (o->keylog != NULL && dtlsplex_config_set_keylog(cfg, o->keylog) < 0)
    bad_file = o->keylog;
  if (bad_file != NULL) {
    fprintf(stderr, "%s: %s: %s\n", tool_name, bad_file, strerror(errno));
    dtlsplex_config_free(cfg);
    return NULL;
  }
  if (o->fleet_secret != NULL && set_fleet_secret(cfg, o->fleet_secret, usage_error) < 0) {
    dtlsplex_config_free(cfg);
    errno = EINVAL;
    return NULL;
  }
  if (o->insecure)
    dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE);
  if (o->verify_clients)
    dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_REQUIRE);
  if (o->psk != NULL)
    set_psk(cfg, o->psk);
  /* After --psk, whose suites it replaces. */
  if (o->ciphers != NULL && dtlsplex_config_set_ciphers(cfg, o->ciphers) < 0)
    bad_usage("--ciphers %s: no usable DTLS 1.2 cipher", o->ciphers);
  if (o->mtu != 0 && dtlsplex_config_set_mtu(cfg, o->mtu) < 0)
    fatal("--mtu: %s", strerror(errno));
  return cfg;
}

int tls_reload(int fd, dtlsplex_config *fresh, int verbose) {
  if (fresh == NULL || (fd >= 0 && dtlsplex_reconfigure(fd, fresh) < 0)) {
    fprintf(stderr, "%s: reload failed, the files in use stay: %s\n", tool_name, strerror(errno));
    return -1;
  }
  if (verbose)
    fprintf(stderr, "reloaded\n");
  return 0;
}
