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
 *   --fleet-secret FILE      (server) the secret the servers of a fleet share
 *                            for cookies and session tickets: the file's
 *                            bytes, 16 to 64 of them
 * A client passes name (set for --name); a server passes NULL, and only a
 * server takes --fleet-secret.  Exits with a message (status 2) on a bad
 * option. */
dtlsplex_config *config_from_options(int argc, char **argv, const char **name);

/* Takes "OPTION VALUE" out of argv[first..*argc) and returns VALUE, or NULL
 * if OPTION is not there (given twice, the last counts).  Exits with a
 * message (status 2) if OPTION has no value. */
const char *take_option(int *argc, char **argv, int first, const char *option);

/* Exits with a message (status 2) unless s is a whole number from min to
 * max; what names it in the message. */
long number_option(const char *s, long min, long max, const char *what);

/* The servers' event callback: one line per event (address, what, whether
 * a handshake resumed a session, the server socket and its peers), and
 * peers_closed counts closes and expiries, for --exit-after.  Every line
 * the servers print starts with server_prefix (empty, or "worker PID: ").
 * A resumed handshake shows as "connected, resumed (...)". */
extern long peers_closed;
extern char server_prefix[32];
void on_server_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg);
/* One line of the socket's dtlsplex_stats: handshakes (full and resumed),
 * failures, peers, datagrams dropped for want of a session. */
void print_server_stats(int fd);

/* The servers' command line: PORT [options] [--exit-after N].  Exits with
 * the usage (more_usage after the common options) if PORT is missing; takes
 * --exit-after N out and returns N, or -1. */
long server_arguments(int *argc, char **argv, const char *more_usage);
/* The servers' configuration from the options after PORT: role server,
 * on_server_event as the event callback (files read now; a bad one exits). */
dtlsplex_config *server_config(int argc, char **argv);
/* A dual-stack UDP socket of the given type flags (SOCK_NONBLOCK, ...)
 * bound to PORT on every address, not attached; with reuseport, SO_REUSEPORT
 * is set first, so that other sockets of this user may bind the same port.
 * Exits on failure. */
int bind_server(const char *port, int type_flags, int reuseport);
/* bind_server without SO_REUSEPORT, attached with cfg (whose reference is
 * dropped); prints the line the demo waits for.  Exits on failure. */
int open_server(const char *port, dtlsplex_config *cfg, int type_flags);
/* Attaches a bound socket with cfg (whose reference is dropped) and prints
 * the line the demo waits for.  Exits on failure. */
void attach_server(int fd, dtlsplex_config *cfg);

/* Exits with "what: strerror(errno)". */
void die(const char *what);

#endif
