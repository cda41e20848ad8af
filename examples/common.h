/* What the examples share: command-line handling and the servers' event
 * callback. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <dtlsplex.h>

/* Builds a configuration from the options after the positional arguments:
 *   --cert FILE --key FILE   certificate chain and key
 *   --ca FILE                trust anchors (instead of the system store)
 *   --name HOST              (client) name the server certificate must carry
 *   --insecure               (client) do not verify the server
 *   --psk IDENTITY:HEXKEY    pre-shared key
 * Exits with a message on a bad option.  *name is set for --name. */
dtlsplex_config *config_from_options(int argc, char **argv, const char **name);

/* The servers' event callback: one line per event (address, what, the
 * server socket and its peers), and peers_closed counts closes and
 * expiries, for --exit-after. */
extern long peers_closed;
void on_server_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg);

/* The servers' command line: PORT [options] [--exit-after N].  Exits with
 * the usage if PORT is missing; takes --exit-after N off the end and returns
 * N, or -1. */
long server_arguments(int *argc, char **argv);
/* The servers' configuration from the options after PORT: role server,
 * on_server_event as the event callback (files read now; a bad one exits). */
dtlsplex_config *server_config(int argc, char **argv);
/* A dual-stack UDP socket of the given type flags (SOCK_NONBLOCK, ...)
 * bound to PORT on every address and attached with cfg (whose reference is
 * dropped); prints the line the demo waits for.  Exits on failure. */
int open_server(const char *port, dtlsplex_config *cfg, int type_flags);

/* Exits with "what: strerror(errno)". */
void die(const char *what);

#endif
