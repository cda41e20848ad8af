/* The options dtlscat and dtlsproxy share (certificates, PSK, verification,
 * ciphers, key log, fleet secret, MTU, -4/-6, -v), with the same names and
 * rules in both, and the dtlsplex configuration they describe. */
#ifndef TOOL_TLS_H
#define TOOL_TLS_H

#include <getopt.h>

#include <dtlsplex.h>

typedef struct tls_options {
  int server; /* set by the tool before tls_check */
  int verify_clients, insecure, verbose;
  int family; /* AF_UNSPEC, or AF_INET/AF_INET6 for -4/-6 */
  const char *cert, *key, *ca, *psk, *ciphers, *keylog, *fleet_secret;
  unsigned int mtu;
} tls_options;

/* How a tool names its two sides in messages: dtlscat says "servers (-l)". */
typedef struct tls_roles {
  const char *servers; /* "--verify is for SERVERS and needs ..." */
  const char *clients; /* "--insecure is for CLIENTS (...)" */
  const char *a_server; /* "A_SERVER needs -c/-k or --psk" */
} tls_roles;

/* For the tool's getopt_long: these short options, and TLS_LONGOPTS among
 * its long ones; the tool's own long options are numbered from TLS_OPT_END. */
#define TLS_SHORTOPTS "c:k:C:46v"
enum { TLS_OPT_VERIFY = 256, TLS_OPT_INSECURE, TLS_OPT_PSK, TLS_OPT_MTU, TLS_OPT_CIPHERS, TLS_OPT_KEYLOG,
       TLS_OPT_FLEET_SECRET, TLS_OPT_END };
#define TLS_LONGOPTS                                                                                           \
  {"verify", no_argument, NULL, TLS_OPT_VERIFY}, {"insecure", no_argument, NULL, TLS_OPT_INSECURE},            \
      {"psk", required_argument, NULL, TLS_OPT_PSK}, {"mtu", required_argument, NULL, TLS_OPT_MTU},            \
      {"ciphers", required_argument, NULL, TLS_OPT_CIPHERS}, {"keylog", required_argument, NULL, TLS_OPT_KEYLOG}, \
      {"fleet-secret", required_argument, NULL, TLS_OPT_FLEET_SECRET}

/* The usage lines of these options. */
extern const char tls_usage[];

/* Takes getopt's c and optarg if c is one of these options: 1, else 0. */
int tls_option(tls_options *o, int c, const char *arg);

/* The rules between these options, for o->server; bad_usage if broken. */
void tls_check(const tls_options *o, const tls_roles *roles);

/* The configuration the options describe (role by o->server, the event
 * callback fn), its files read now; NULL and a message if a file cannot be
 * used.  *usage_error is set to 1 if the reason is a fleet secret of the
 * wrong size, an option that cannot work at startup (status 2). */
dtlsplex_config *tls_make_config(const tls_options *o, dtlsplex_event_fn fn, void *arg, int *usage_error);

/* SIGHUP's reload, with the configuration built afresh (NULL: it could not
 * be, and said why): the attached socket fd takes it for new handshakes
 * (fd -1: the caller uses it for new sockets); "reloaded" on stderr with
 * verbose, or "reload failed, the files in use stay".  0 if fresh is in
 * use; the caller's reference to it stays the caller's. */
int tls_reload(int fd, dtlsplex_config *fresh, int verbose);

#endif
