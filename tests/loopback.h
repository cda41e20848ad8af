/* What the tests over real loopback sockets share: bound sockets, timeouts,
 * and an echo server on an attached socket in a thread of its own. */
#ifndef TESTS_LOOPBACK_H
#define TESTS_LOOPBACK_H

#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dtlsplex.h"

/* Milliseconds of CLOCK_MONOTONIC. */
long now_ms(void);
/* A UDP socket bound to the loopback address of family, on an ephemeral port;
 * its address in *addr. */
int bound_socket(int family, struct sockaddr_storage *addr, socklen_t *len);
/* The same on the address ip (a literal: "0.0.0.0", "::", "127.0.0.2"...). */
int bound_socket_to(int family, const char *ip, struct sockaddr_storage *addr, socklen_t *len);
/* The address ip of family with port (network order) in *addr; its length. */
socklen_t ip_address(int family, const char *ip, in_port_t port, struct sockaddr_storage *addr);
void set_rcvtimeo(int fd, int ms);
/* A blocking IPv4 loopback socket with SO_RCVTIMEO, attached with cfg. */
int attached_socket(dtlsplex_config *cfg, int rcvtimeo_ms);

/* The echo server: a plain blocking loop on one attached socket. */
typedef struct echo_server {
  int fd;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  atomic_int stop;
  pthread_t thread;
} echo_server;

void echo_start(echo_server *srv, int family, dtlsplex_config *cfg);
/* The same on the address ip (a wildcard, say). */
void echo_start_on(echo_server *srv, int family, const char *ip, dtlsplex_config *cfg);
/* Stops the thread, detaches and closes; returns the socket's last statistics. */
struct dtlsplex_stats echo_stop(echo_server *srv);

#endif
