/* Tests for lib/pktinfo.c over real sockets: a server bound to a wildcard
 * address answers each peer from the address that peer reached (handshake
 * included), and the program's own IP_PKTINFO/IPV6_RECVPKTINFO stay its
 * own.  The semantics dtlssendmsg/dtlsrecvmsg share with sendmsg/recvmsg
 * are compared against plain UDP in test_differential.c.
 *
 * Every client here is one that drops a reply from any other address: a
 * connected socket, or an attached socket whose sessions are keyed by the
 * server's address.  Plain sendto() on the wildcard socket would answer
 * them from the route's source (127.0.0.1 for every 127/8 destination). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare, CLONE_NEWNET */
#endif
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "check_main.h"
#include "dtlsplex.h"
#include "loopback.h"

#define HANDSHAKE_MS 3000 /* a handshake answered from the wrong address fails in this time */
#define NAMESPACE_UNAVAILABLE 77

static test_pki pki;

static struct sockaddr *sa(void *p) { return (struct sockaddr *)p; }

static dtlsplex_config *server_config(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, HANDSHAKE_MS, 0), 0);
  return cfg;
}

static dtlsplex_config *client_config(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_ca(cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, HANDSHAKE_MS, 0), 0);
  return cfg;
}

static in_port_t port_of(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                  : ((const struct sockaddr_in6 *)ss)->sin6_port;
}

/* The raw kernel setting, past the library's view of it. */
static int kernel_flag(int fd, int level, int name) {
  int on = -1;
  socklen_t len = sizeof on;
  ck_assert_int_eq(syscall(SYS_getsockopt, fd, level, name, &on, &len), 0);
  return on;
}

static int program_flag(int fd, int level, int name) {
  int on = -1;
  socklen_t len = sizeof on;
  ck_assert_int_eq(getsockopt(fd, level, name, &on, &len), 0);
  return on;
}

/* A client on a socket bound to client_ip (the address a plain server's
 * answer would come from) sends to ip at the server's port, connected or
 * not, and must get its datagram echoed from exactly there. */
static void echo_through(dtlsplex_config *cfg, int family, const char *client_ip, const char *ip, in_port_t port,
                         int connected) {
  struct sockaddr_storage server, from, self;
  socklen_t len = ip_address(family, ip, port, &server), from_len = sizeof from, self_len;
  int fd = bound_socket_to(family, client_ip, &self, &self_len);
  if (connected)
    ck_assert_int_eq(connect(fd, sa(&server), len), 0);
  set_rcvtimeo(fd, 2 * HANDSHAKE_MS);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(dtlsplex_set_peer_name(fd, sa(&server), len, "localhost"), 0);
  char msg[64], buf[64];
  int msg_len = snprintf(msg, sizeof msg, "to %s, %s", ip, connected ? "connected" : "unconnected");
  ssize_t sent = dtlssendto(fd, msg, (size_t)msg_len, 0, connected ? NULL : sa(&server), connected ? 0 : len);
  ck_assert_msg(sent == msg_len, "%s: send: %s", msg, strerror(errno));
  ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, sa(&from), &from_len);
  ck_assert_msg(n == msg_len, "%s: no echo: %s", msg, strerror(errno));
  ck_assert_mem_eq(buf, msg, (size_t)msg_len);
  ck_assert_uint_eq(from_len, len);
  ck_assert_mem_eq(&from, &server, len);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
}

/* A server on the wildcard address wildcard answers a client on client_ip
 * through each of ips, connected and not. */
static void serve_each_address(int family, const char *wildcard, int client_family, const char *client_ip,
                               const char *const *ips, size_t n_ips) {
  dtlsplex_config *scfg = server_config(), *ccfg = client_config();
  echo_server srv;
  echo_start_on(&srv, family, wildcard, scfg);
  for (size_t i = 0; i < n_ips; i++) {
    echo_through(ccfg, client_family, client_ip, ips[i], port_of(&srv.addr), 1);
    echo_through(ccfg, client_family, client_ip, ips[i], port_of(&srv.addr), 0);
  }
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 2 * n_ips);
  ck_assert_uint_eq(st.handshakes_failed, 0);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}

START_TEST(ipv4_wildcard_answers_from_each_address) {
  static const char *const ips[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};
  serve_each_address(AF_INET, "0.0.0.0", AF_INET, "127.0.0.1", ips, 3);
}
END_TEST

/* IPv4 arrives IPv4-mapped on a dual-stack socket; its answers go out with
 * an IPv4-mapped IPV6_PKTINFO. */
START_TEST(dual_stack_wildcard_answers_ipv4_from_each_address) {
  static const char *const ips[] = {"127.0.0.2", "127.0.0.1"};
  serve_each_address(AF_INET6, "::", AF_INET, "127.0.0.1", ips, 2);
  static const char *const ip6[] = {"::1"};
  serve_each_address(AF_INET6, "::", AF_INET6, "::1", ip6, 1);
}
END_TEST

/* A server that answers as a DNS server does on a wildcard socket: it
 * enables PKTINFO, reads where each query arrived with dtlsrecvmsg, and
 * answers with dtlssendmsg (two iovecs) naming a source: the address the
 * query reached, or (interface_only) only the interface, the address left
 * unspecified.  Either way the answer must leave from the session's address. */
typedef struct pktinfo_server {
  echo_server base;
  int interface_only;
} pktinfo_server;

static void *pktinfo_echo(void *arg) {
  pktinfo_server *srv = arg;
  int fd = srv->base.fd, v6 = srv->base.addr.ss_family == AF_INET6;
  while (!atomic_load(&srv->base.stop)) {
    char buf[512];
    union {
      struct cmsghdr align;
      char bytes[256];
    } control;
    struct sockaddr_storage peer;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr m = {.msg_name = &peer, .msg_namelen = sizeof peer, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = &control, .msg_controllen = sizeof control};
    ssize_t n = dtlsrecvmsg(fd, &m, 0);
    if (n < 0) {
      ck_assert_int_eq(errno, EAGAIN); /* SO_RCVTIMEO, so that stop is seen */
      continue;
    }
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    ck_assert_ptr_nonnull(c); /* the program enabled it: delivered */
    ck_assert_int_eq(c->cmsg_level, v6 ? IPPROTO_IPV6 : IPPROTO_IP);
    if (v6) {
      struct in6_pktinfo *pi = (struct in6_pktinfo *)CMSG_DATA(c);
      if (srv->interface_only)
        memset(&pi->ipi6_addr, 0, sizeof pi->ipi6_addr);
    } else {
      struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);
      pi->ipi_spec_dst = srv->interface_only ? (struct in_addr){0} : pi->ipi_addr;
    }
    struct iovec halves[2] = {{buf, (size_t)n / 2}, {buf + n / 2, (size_t)n - (size_t)n / 2}};
    struct msghdr reply = {.msg_name = &peer, .msg_namelen = m.msg_namelen, .msg_iov = halves, .msg_iovlen = 2,
                           .msg_control = &control, .msg_controllen = m.msg_controllen};
    ck_assert_int_eq(dtlssendmsg(fd, &reply, 0), n);
  }
  return NULL;
}

static void serve_with_program_sources(int family, const char *wildcard, int interface_only) {
  dtlsplex_config *scfg = server_config(), *ccfg = client_config();
  pktinfo_server srv = {.interface_only = interface_only};
  srv.base.fd = bound_socket_to(family, wildcard, &srv.base.addr, &srv.base.addr_len);
  set_rcvtimeo(srv.base.fd, 50);
  ck_assert_int_eq(dtlsplex_attach(srv.base.fd, scfg), 0);
  int on = 1;
  ck_assert_int_eq(setsockopt(srv.base.fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
                              family == AF_INET ? IP_PKTINFO : IPV6_RECVPKTINFO, &on, sizeof on), 0);
  atomic_store(&srv.base.stop, 0);
  ck_assert_int_eq(pthread_create(&srv.base.thread, NULL, pktinfo_echo, &srv), 0);
  static const char *const ips[] = {"127.0.0.2", "127.0.0.3"};
  for (size_t i = 0; i < 2; i++) {
    echo_through(ccfg, AF_INET, "127.0.0.1", ips[i], port_of(&srv.base.addr), 1);
    echo_through(ccfg, AF_INET, "127.0.0.1", ips[i], port_of(&srv.base.addr), 0);
  }
  struct dtlsplex_stats st = echo_stop(&srv.base);
  ck_assert_uint_eq(st.handshakes_ok, 4);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}

START_TEST(program_chosen_sources_reach_the_peer) {
  serve_with_program_sources(AF_INET, "0.0.0.0", 0);
  serve_with_program_sources(AF_INET, "0.0.0.0", 1);
  serve_with_program_sources(AF_INET6, "::", 0);
}
END_TEST

/* Loopback with a second IPv6 address in a network namespace of its own. */
static int enter_namespace_with(const char *ip6) {
  if (unshare(CLONE_NEWNET) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
    return -1;
  int s = socket(AF_INET6, SOCK_DGRAM, 0);
  struct ifreq ifr = {0};
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
    return -1;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
    return -1;
  struct { /* struct in6_ifreq of <linux/ipv6.h>, which clashes with <netinet/in.h> */
    struct in6_addr addr;
    uint32_t prefixlen;
    int ifindex;
  } req = {.prefixlen = 128, .ifindex = (int)if_nametoindex("lo")};
  if (inet_pton(AF_INET6, ip6, &req.addr) != 1 || ioctl(s, SIOCSIFADDR, &req) != 0)
    return -1;
  close(s);
  return 0;
}

START_TEST(ipv6_wildcard_answers_from_each_address) {
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) { /* the namespace is this process's only */
    if (enter_namespace_with("fd00::2") != 0)
      _exit(NAMESPACE_UNAVAILABLE);
    static const char *const ips[] = {"fd00::2", "::1"};
    serve_each_address(AF_INET6, "::", AF_INET6, "::1", ips, 2);
    _exit(0);
  }
  int status = 0;
  for (int waited = 0; waited < 600 && waitpid(pid, &status, WNOHANG) == 0; waited++)
    usleep(50 * 1000);
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ck_abort_msg("the namespace test did not finish in 30 s");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == NAMESPACE_UNAVAILABLE) {
    fprintf(stderr, "ipv6_wildcard_answers_from_each_address: no network namespace here, not run\n");
    return;
  }
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "namespace test failed (status %d)", status);
}
END_TEST

/* The library turns IP_PKTINFO on for a wildcard socket; the program still
 * sees and sets its own value, and detach leaves the kernel as the program
 * set it. */
START_TEST(program_keeps_its_own_pktinfo_setting) {
  dtlsplex_config *cfg = server_config();
  struct sockaddr_storage addr;
  socklen_t len;
  int fd = bound_socket_to(AF_INET, "0.0.0.0", &addr, &len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  int on = 1, off = 0;
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on), 0);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &off, sizeof off), 0);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 1); /* still the library's */
  /* A dup is the same socket; the kernel checks the arguments. */
  int dup_fd = dup(fd);
  ck_assert_int_eq(setsockopt(dup_fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on), 0);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  errno = 0;
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_PKTINFO, NULL, sizeof on), -1);
  ck_assert_int_eq(errno, EFAULT);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &off, sizeof off), 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 0); /* as the program left it */
  /* Enabled by the program before attach: on after detach too. */
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on), 0);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  close(dup_fd);
  close(fd);

  /* IPv6: IPV6_RECVPKTINFO, and IP_PKTINFO for the IPv4 it hears. */
  fd = bound_socket_to(AF_INET6, "::", &addr, &len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO), 1);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO), 0);
  ck_assert_int_eq(program_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* One local address: nothing to choose, no control messages to pay for. */
START_TEST(specific_or_connected_socket_needs_no_pktinfo) {
  dtlsplex_config *cfg = client_config();
  struct sockaddr_storage addr, peer;
  socklen_t len;
  int fd = bound_socket_to(AF_INET, "127.0.0.1", &addr, &len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  /* Wildcard, then connected: the library's setting goes with the connect. */
  fd = bound_socket_to(AF_INET, "0.0.0.0", &addr, &len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 1);
  socklen_t peer_len = ip_address(AF_INET, "127.0.0.2", htons(9), &peer);
  ck_assert_int_eq(connect(fd, sa(&peer), peer_len), 0);
  ck_assert_int_eq(kernel_flag(fd, IPPROTO_IP, IP_PKTINFO), 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

static void setup(void) { ck_assert_int_eq(test_pki_make(&pki), 0); }
static void teardown(void) { test_pki_remove(&pki); }

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  Suite *s = suite_create("pktinfo");
  TCase *tc = tcase_create("pktinfo");
  tcase_set_timeout(tc, 60);
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_test(tc, ipv4_wildcard_answers_from_each_address);
  tcase_add_test(tc, dual_stack_wildcard_answers_ipv4_from_each_address);
  tcase_add_test(tc, ipv6_wildcard_answers_from_each_address);
  tcase_add_test(tc, program_chosen_sources_reach_the_peer);
  tcase_add_test(tc, program_keeps_its_own_pktinfo_setting);
  tcase_add_test(tc, specific_or_connected_socket_needs_no_pktinfo);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
