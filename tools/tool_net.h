/* Sockets as dtlscat and dtlsproxy open them: names resolved the same way,
 * IPv6 sockets dual-stack unless -6, and the "listening on" line. */
#ifndef TOOL_NET_H
#define TOOL_NET_H

#include <netdb.h>

/* HOST PORT for UDP, in `family` (AF_UNSPEC, or AF_INET/AF_INET6 from -4/-6);
 * a passive lookup without HOST gives :: unless -4 (a dual-stack listener).
 * Exits (status 1) if it does not resolve. */
struct addrinfo *resolve_udp(const char *host, const char *port, int passive, int family);

/* A UDP socket of `family`; an IPv6 one is IPv6-only if `family_option`
 * (from -4/-6) is AF_INET6, else explicitly dual-stack.  Exits on failure. */
int udp_socket(int family, int family_option);

/* A UDP socket bound to `at`.  Exits on failure. */
int bound_udp_socket(const struct addrinfo *at, int family_option);

/* "listening on ADDR PORT" on stderr (an IPv6 address without brackets):
 * with PORT 0 the line is how a script learns the port. */
void announce_listening(int fd);

#endif
