#include "loopback.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

socklen_t ip_address(int family, const char *ip, in_port_t port, struct sockaddr_storage *addr) {
  memset(addr, 0, sizeof *addr);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)addr;
    in->sin_family = AF_INET;
    in->sin_port = port;
    ck_assert_int_eq(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    return sizeof *in;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = port;
  ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
  return sizeof *in6;
}

int bound_socket(int family, struct sockaddr_storage *addr, socklen_t *len) {
  return bound_socket_to(family, family == AF_INET ? "127.0.0.1" : "::1", addr, len);
}

int bound_socket_to(int family, const char *ip, struct sockaddr_storage *addr, socklen_t *len) {
  int fd = socket(family, SOCK_DGRAM, 0);
  ck_assert_int_ge(fd, 0);
  *len = ip_address(family, ip, 0, addr);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, *len), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, len), 0);
  return fd;
}

void set_rcvtimeo(int fd, int ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

int attached_socket(dtlsplex_config *cfg, int rcvtimeo_ms) {
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket(AF_INET, &self, &self_len);
  set_rcvtimeo(fd, rcvtimeo_ms);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  return fd;
}

static void *echo_loop(void *arg) {
  echo_server *srv = arg;
  static _Thread_local char buf[DTLSPLEX_MTU_MAX];
  while (!atomic_load(&srv->stop)) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(srv->fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0) {
      ck_assert_int_eq(errno, EAGAIN); /* SO_RCVTIMEO, so that stop is seen */
      continue;
    }
    /* A client may close before its echo: a server-only socket then refuses
     * at once rather than starting a handshake towards it. */
    if (dtlssendto(srv->fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) != n)
      ck_assert_int_eq(errno, ENOTCONN);
  }
  return NULL;
}

void echo_start(echo_server *srv, int family, dtlsplex_config *cfg) {
  echo_start_on(srv, family, family == AF_INET ? "127.0.0.1" : "::1", cfg);
}

void echo_start_on(echo_server *srv, int family, const char *ip, dtlsplex_config *cfg) {
  srv->fd = bound_socket_to(family, ip, &srv->addr, &srv->addr_len);
  set_rcvtimeo(srv->fd, 50);
  ck_assert_int_eq(dtlsplex_attach(srv->fd, cfg), 0);
  atomic_store(&srv->stop, 0);
  ck_assert_int_eq(pthread_create(&srv->thread, NULL, echo_loop, srv), 0);
}

struct dtlsplex_stats echo_stop(echo_server *srv) {
  atomic_store(&srv->stop, 1);
  pthread_join(srv->thread, NULL);
  struct dtlsplex_stats st;
  ck_assert_int_eq(dtlsplex_stats(srv->fd, &st), 0);
  ck_assert_int_eq(dtlsplex_detach(srv->fd), 0);
  close(srv->fd);
  return st;
}

