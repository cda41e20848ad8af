/* Integration over real loopback sockets: one server socket, many clients,
 * blocking and non-blocking, IPv4, IPv6 and dual-stack, certificates and PSK,
 * and the error paths users see. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "certs.h"
#include "dtlsplex.h"
#include "loopback.h"
#include "check_main.h"

static test_pki pki;
static const unsigned char psk_key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static atomic_int events[6];

static void count_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)peer, (void)len, (void)error, (void)arg;
  struct dtlsplex_stats st;
  /* Runs without the socket's lock: calling back into the library is fine. */
  ck_assert_int_eq(dtlsplex_stats(fd, &st), 0);
  if (event > 0 && event < 6)
    atomic_fetch_add(&events[event], 1);
}

/* Waits (bounded) until count events of kind have been seen; returns how many were. */
static int wait_for_events(int kind, int count) {
  for (long give_up = now_ms() + 3000; atomic_load(&events[kind]) < count && now_ms() < give_up;)
    usleep(5000);
  return atomic_load(&events[kind]);
}

static dtlsplex_config *server_config(int use_psk) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  if (use_psk)
    ck_assert_int_eq(dtlsplex_config_set_psk(cfg, "sensor-7", psk_key, sizeof psk_key), 0);
  else
    ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(cfg, count_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER), 0);
  return cfg;
}

static dtlsplex_config *client_config(int use_psk, const char *ca) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  if (use_psk)
    ck_assert_int_eq(dtlsplex_config_set_psk(cfg, "sensor-7", psk_key, sizeof psk_key), 0);
  else
    ck_assert_int_eq(dtlsplex_config_set_ca(cfg, ca, NULL), 0);
  return cfg;
}

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  for (int i = 0; i < 6; i++)
    atomic_store(&events[i], 0);
}

static void teardown(void) { test_pki_remove(&pki); }

/* One client: attach, exchange count messages, check each echo is its own. */
typedef struct client_job {
  int id, count, family, ok;
  dtlsplex_config *cfg;
  const echo_server *srv;
} client_job;

static void *client_run(void *arg) {
  client_job *job = arg;
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket(job->family, &self, &self_len);
  set_rcvtimeo(fd, 5000);
  ck_assert_int_eq(dtlsplex_attach(fd, job->cfg), 0);
  const struct sockaddr *dest = (const struct sockaddr *)&job->srv->addr;
  ck_assert_int_eq(dtlsplex_set_peer_name(fd, dest, job->srv->addr_len, "localhost"), 0);
  for (int i = 0; i < job->count; i++) {
    char msg[64], echo[64];
    int len = snprintf(msg, sizeof msg, "client %d message %d", job->id, i);
    ck_assert_int_eq(dtlssendto(fd, msg, (size_t)len, 0, dest, job->srv->addr_len), len);
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = dtlsrecvfrom(fd, echo, sizeof echo, 0, (struct sockaddr *)&from, &from_len);
    ck_assert_int_eq(n, len);
    ck_assert_mem_eq(echo, msg, (size_t)len);
    ck_assert_uint_eq(from_len, job->srv->addr_len);
    ck_assert_mem_eq(&from, dest, from_len);
    job->ok++;
  }
  ck_assert_int_eq(dtlsplex_close(fd, dest, job->srv->addr_len), 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  return NULL;
}

static void run_clients(const echo_server *srv, dtlsplex_config *cfg, int family, int n, int count) {
  client_job jobs[32];
  pthread_t threads[32];
  ck_assert_int_le(n, 32);
  for (int i = 0; i < n; i++) {
    jobs[i] = (client_job){.id = i, .count = count, .family = family, .cfg = cfg, .srv = srv};
    ck_assert_int_eq(pthread_create(&threads[i], NULL, client_run, &jobs[i]), 0);
  }
  for (int i = 0; i < n; i++) {
    pthread_join(threads[i], NULL);
    ck_assert_int_eq(jobs[i].ok, count);
  }
}

START_TEST(many_clients_one_server_socket) {
  dtlsplex_config *scfg = server_config(0), *ccfg = client_config(0, pki.ca);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  run_clients(&srv, ccfg, AF_INET, 32, 100);
  ck_assert_int_eq(wait_for_events(DTLSPLEX_EVENT_CLOSED, 32), 32);
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 32);
  ck_assert_uint_eq(st.app_datagrams_in, 32 * 100);
  ck_assert_uint_eq(st.app_datagrams_out, 32 * 100);
  ck_assert_uint_eq(st.cookies_sent, 32);
  ck_assert_int_eq(atomic_load(&events[DTLSPLEX_EVENT_CONNECTED]), 32);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

START_TEST(ipv6_psk_clients) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET6, scfg);
  run_clients(&srv, ccfg, AF_INET6, 4, 20);
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 4);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Issue 10, item 13: the system trust store is loaded only when a
 * certificate is verified, never for a PSK configuration (it cost 40 ms and
 * 0.9 MB per configuration at attach).  SSL_CERT_FILE stands in for the
 * system store: OpenSSL loads its default file from there. */
static int store_objects(dtlsplex_config *cfg) {
  return sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(dtlsplex_config_get_ssl_ctx(cfg))));
}

START_TEST(system_store_loaded_only_to_verify) {
  ck_assert_int_eq(setenv("SSL_CERT_FILE", pki.ca, 1), 0);
  dtlsplex_config *psk_cfg = client_config(1, NULL), *cert_cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cert_cfg);
  dtlsplex_config *psk_server = server_config(1), *cert_server = server_config(0);
  echo_server psk_srv, cert_srv;
  echo_start(&psk_srv, AF_INET, psk_server);
  echo_start(&cert_srv, AF_INET, cert_server);
  run_clients(&psk_srv, psk_cfg, AF_INET, 1, 1);
  ck_assert_int_eq(store_objects(psk_cfg), 0);

  int fd = attached_socket(cert_cfg, 3000);
  ck_assert_int_eq(store_objects(cert_cfg), 0); /* attached, nothing verified yet */
  ck_assert_int_eq(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&cert_srv.addr, cert_srv.addr_len), 1);
  ck_assert_int_ge(store_objects(cert_cfg), 1); /* and the chain verified against it */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&psk_srv);
  echo_stop(&cert_srv);
  dtlsplex_config_free(psk_cfg);
  dtlsplex_config_free(cert_cfg);
  dtlsplex_config_free(psk_server);
  dtlsplex_config_free(cert_server);
  unsetenv("SSL_CERT_FILE");
}
END_TEST

/* A non-blocking client driven by poll, as an event loop would. */
START_TEST(non_blocking_client_event_loop) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET6, scfg);
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket(AF_INET6, &self, &self_len);
  ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
  ck_assert_int_eq(dtlsplex_attach(fd, ccfg), 0);
  const struct sockaddr *dest = (struct sockaddr *)&srv.addr;
  /* Queued behind the handshake; returns at once. */
  ck_assert_int_eq(dtlssendto(fd, "first", 5, 0, dest, srv.addr_len), 5);
  ck_assert_int_eq(dtlssendto(fd, "second", 6, 0, dest, srv.addr_len), 6);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dtlsplex_peer_info(fd, dest, srv.addr_len, &info), 0);
  ck_assert_int_eq(info.state, DTLSPLEX_STATE_HANDSHAKING);
  ck_assert_int_ge(dtlsplex_timeout(fd), 0); /* a retransmission timer runs */

  const char *expect[] = {"first", "second"};
  int got = 0;
  long give_up = now_ms() + 5000;
  while (got < 2 && now_ms() < give_up) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int timeout = dtlsplex_pending(fd) > 0 ? 0 : dtlsplex_timeout(fd);
    poll(&pfd, 1, timeout < 0 || timeout > 100 ? 100 : timeout);
    ck_assert_int_ge(dtlsplex_process(fd), 0);
    char buf[64];
    ssize_t n;
    while ((n = dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL)) >= 0) {
      ck_assert_int_eq(n, (ssize_t)strlen(expect[got]));
      ck_assert_mem_eq(buf, expect[got], (size_t)n);
      got++;
    }
    ck_assert_int_eq(errno, EAGAIN);
  }
  ck_assert_int_eq(got, 2);
  ck_assert_int_eq(dtlsplex_peer_info(fd, dest, srv.addr_len, &info), 0);
  ck_assert_int_eq(info.state, DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_str_eq(info.identity, "sensor-7");
  /* No retransmission timer after the handshake (1 s): the next deadline is
   * the release of idle buffers (2 s). */
  ck_assert_int_gt(dtlsplex_timeout(fd), 1500);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* A dual-stack server: an IPv4 client is one peer whether it is addressed as
 * 127.0.0.1 or ::ffff:127.0.0.1. */
START_TEST(dual_stack_one_peer_per_address) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  int sfd = socket(AF_INET6, SOCK_DGRAM, 0);
  int off = 0;
  ck_assert_int_eq(setsockopt(sfd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off), 0);
  struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
  socklen_t any_len = sizeof any;
  ck_assert_int_eq(bind(sfd, (struct sockaddr *)&any, sizeof any), 0);
  ck_assert_int_eq(getsockname(sfd, (struct sockaddr *)&any, &any_len), 0);
  set_rcvtimeo(sfd, 3000);
  ck_assert_int_eq(dtlsplex_attach(sfd, scfg), 0);

  struct sockaddr_storage self;
  socklen_t self_len;
  int cfd = bound_socket(AF_INET, &self, &self_len);
  set_rcvtimeo(cfd, 3000);
  ck_assert_int_eq(fcntl(cfd, F_SETFL, O_NONBLOCK), 0);
  ck_assert_int_eq(dtlsplex_attach(cfd, ccfg), 0);
  struct sockaddr_in server4 = {.sin_family = AF_INET, .sin_port = any.sin6_port,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(dtlssendto(cfd, "v4", 2, 0, (struct sockaddr *)&server4, sizeof server4), 2);

  /* The server's blocking receive drives the handshake; the client's side
   * runs in a thread-free way by processing between waits. */
  struct sockaddr_storage from;
  socklen_t from_len = sizeof from;
  char buf[16];
  ssize_t n = -1;
  for (long give_up = now_ms() + 5000; n < 0 && now_ms() < give_up;) {
    dtlsplex_process(cfd);
    n = dtlsrecvfrom(sfd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &from_len);
    if (n < 0)
      usleep(1000);
  }
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(from.ss_family, AF_INET6); /* as recvfrom reports it: IPv4-mapped */
  ck_assert(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&from)->sin6_addr));

  /* Reply to the plain IPv4 form of the same address: the same peer. */
  struct sockaddr_in client4 = {.sin_family = AF_INET, .sin_port = ((struct sockaddr_in6 *)&from)->sin6_port,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ck_assert_int_eq(dtlssendto(sfd, "back", 4, 0, (struct sockaddr *)&client4, sizeof client4), 4);
  struct dtlsplex_stats st;
  ck_assert_int_eq(dtlsplex_stats(sfd, &st), 0);
  ck_assert_uint_eq(st.peers, 1);
  ck_assert_uint_eq(st.handshakes_ok, 1);
  ck_assert_int_eq(fcntl(cfd, F_SETFL, 0), 0); /* blocking again: SO_RCVTIMEO bounds it */
  ck_assert_int_eq(dtlsrecvfrom(cfd, buf, sizeof buf, 0, NULL, NULL), 4);
  ck_assert_mem_eq(buf, "back", 4);
  ck_assert_int_eq(dtlsplex_detach(cfd), 0);
  ck_assert_int_eq(dtlsplex_detach(sfd), 0);
  close(cfd);
  close(sfd);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* dtlssendto from a fresh client to srv; returns its result and errno. */
static ssize_t first_send(const echo_server *srv, dtlsplex_config *cfg, const char *name, int *err) {
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket(srv->addr.ss_family, &self, &self_len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  if (name != NULL)
    ck_assert_int_eq(dtlsplex_set_peer_name(fd, (struct sockaddr *)&srv->addr, srv->addr_len, name), 0);
  ssize_t r = dtlssendto(fd, "secret", 6, 0, (struct sockaddr *)&srv->addr, srv->addr_len);
  *err = errno;
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  return r;
}

START_TEST(untrusted_server_certificate_rejected) {
  dtlsplex_config *scfg = server_config(0);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  int err;
  dtlsplex_config *wrong_ca = client_config(0, pki.other_ca);
  ck_assert_int_eq(first_send(&srv, wrong_ca, NULL, &err), -1);
  ck_assert_int_eq(err, EACCES);
  dtlsplex_config *system_store = dtlsplex_config_new(); /* the default: the system's CAs */
  ck_assert_int_eq(first_send(&srv, system_store, "localhost", &err), -1);
  ck_assert_int_eq(err, EACCES);
  dtlsplex_config_free(system_store);
  dtlsplex_config *right_ca = client_config(0, pki.ca);
  ck_assert_int_eq(first_send(&srv, right_ca, "not-localhost.example", &err), -1);
  ck_assert_int_eq(err, EACCES);
  ck_assert_int_eq(first_send(&srv, right_ca, "localhost", &err), 6);
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 1);
  ck_assert_uint_eq(st.app_datagrams_in, 1); /* nothing reached the server unverified */
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(wrong_ca);
  dtlsplex_config_free(right_ca);
}
END_TEST

/* Mutual authentication: the server requires a client certificate from the
 * same CA and can authorise by the identity it proves. */
/* A client with ccfg sends one datagram to srv and gets its echo; the
 * server's session with it must carry identity. */
static void client_known_as(echo_server *srv, dtlsplex_config *ccfg, const char *identity) {
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket(AF_INET, &self, &self_len);
  set_rcvtimeo(fd, 3000);
  ck_assert_int_eq(dtlsplex_attach(fd, ccfg), 0);
  ck_assert_int_eq(dtlssendto(fd, "id?", 3, 0, (struct sockaddr *)&srv->addr, srv->addr_len), 3);
  char buf[8];
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), 3);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dtlsplex_peer_info(srv->fd, (struct sockaddr *)&self, self_len, &info), 0);
  ck_assert_int_eq(info.state, DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_int_eq(info.is_client, 0);
  ck_assert_ptr_nonnull(strstr(info.identity, identity));
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
}

START_TEST(mutual_authentication) {
  dtlsplex_config *scfg = server_config(0);
  ck_assert_int_eq(dtlsplex_config_set_ca(scfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_verify(scfg, DTLSPLEX_VERIFY_REQUIRE), 0);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  int err;
  dtlsplex_config *anonymous = client_config(0, pki.ca);
  ck_assert_int_eq(first_send(&srv, anonymous, "localhost", &err), -1);
  ck_assert_int_eq(err, ECONNREFUSED); /* the server's fatal alert */

  dtlsplex_config *with_cert = client_config(0, pki.ca);
  ck_assert_int_eq(dtlsplex_config_set_certificate(with_cert, pki.client_cert, pki.client_key), 0);
  client_known_as(&srv, with_cert, "CN=test client");
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 1);
  ck_assert_uint_eq(st.handshakes_failed, 1);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(anonymous);
  dtlsplex_config_free(with_cert);
}
END_TEST

/* Issue 11: a chain file "leaf, then intermediate" sends both, so peers
 * that trust only the root verify it, as with every public CA.  Both ways:
 * the server's chain, and a client's chain in mutual authentication. */
START_TEST(intermediate_certificates_are_sent) {
  dtlsplex_config *scfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(scfg);
  ck_assert_int_eq(dtlsplex_config_set_certificate(scfg, pki.server_chain, pki.server_chain_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_ca(scfg, pki.root, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_verify(scfg, DTLSPLEX_VERIFY_REQUIRE), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(scfg, DTLSPLEX_ROLE_SERVER), 0);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  dtlsplex_config *ccfg = client_config(0, pki.root);
  ck_assert_int_eq(dtlsplex_config_set_certificate(ccfg, pki.client_chain, pki.client_chain_key), 0);
  client_known_as(&srv, ccfg, "CN=chained client");
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Issue 11: rotate the certificate under traffic: no established session
 * drops, and a new client sees the new certificate. */
START_TEST(reconfigure_under_traffic) {
  dtlsplex_config *scfg = server_config(0);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  dtlsplex_config *ccfg = client_config(0, pki.ca);
  int old_client = attached_socket(ccfg, 3000);
  char buf[16];
  for (int round = 0; round < 40; round++) {
    if (round == 20) {
      dtlsplex_config *rotated = server_config(0);
      /* Any certificate the CA signed for this address: the client one. */
      ck_assert_int_eq(dtlsplex_config_set_certificate(rotated, pki.client_cert, pki.client_key), 0);
      ck_assert_int_eq(dtlsplex_reconfigure(srv.fd, rotated), 0);
      dtlsplex_config_free(rotated);
    }
    ck_assert_int_eq(dtlssendto(old_client, "tick", 4, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 4);
    ck_assert_int_eq(dtlsrecvfrom(old_client, buf, sizeof buf, 0, NULL, NULL), 4);
  }
  int new_client = attached_socket(ccfg, 3000);
  ck_assert_int_eq(dtlssendto(new_client, "new", 3, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 3);
  ck_assert_int_eq(dtlsrecvfrom(new_client, buf, sizeof buf, 0, NULL, NULL), 3);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dtlsplex_peer_info(new_client, (struct sockaddr *)&srv.addr, srv.addr_len, &info), 0);
  ck_assert_ptr_nonnull(strstr(info.identity, "CN=test client"));
  ck_assert_int_eq(dtlsplex_peer_info(old_client, (struct sockaddr *)&srv.addr, srv.addr_len, &info), 0);
  ck_assert_ptr_nonnull(strstr(info.identity, "CN=localhost"));
  ck_assert_int_eq(dtlsplex_reconfigure(srv.fd, NULL), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(dtlsplex_reconfigure(old_client + 100, ccfg), -1);
  ck_assert_int_eq(errno, EBADF);
  for (int i = 0; i < 2; i++) {
    int fd = i == 0 ? old_client : new_client;
    ck_assert_int_eq(dtlsplex_detach(fd), 0);
    close(fd);
  }
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 2); /* the old client's session never dropped */
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Issue 12: an unmodified level-triggered loop that reads one datagram per
 * wake-up (poll, select, epoll) must never wait while the library holds
 * data for it.  Eight peers send bursts; the loop must take every datagram
 * without a wait timing out, that is without needing a later datagram. */
enum { WAIT_POLL, WAIT_SELECT, WAIT_EPOLL };

/* Waits up to 2 s for fd to be readable the way a plain UDP program does;
 * returns 1 if readable. */
static int wait_readable(int kind, int fd, int epfd) {
  if (kind == WAIT_POLL) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 2000) == 1;
  }
  if (kind == WAIT_SELECT) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {.tv_sec = 2};
    return select(fd + 1, &set, NULL, NULL, &tv) == 1;
  }
  struct epoll_event ev;
  return epoll_wait(epfd, &ev, 1, 2000) == 1;
}

/* A non-blocking IPv4 loopback server socket attached with cfg, as event
 * loops have them. */
static int nonblocking_server(dtlsplex_config *cfg, struct sockaddr_storage *addr, socklen_t *addr_len) {
  int fd = bound_socket(AF_INET, addr, addr_len);
  ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  return fd;
}

START_TEST(one_read_per_wakeup_never_stalls) {
  enum { PEERS = 8, BURST = 6 };
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int server = nonblocking_server(scfg, &addr, &addr_len);
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = server};
  ck_assert_int_eq(epoll_ctl(epfd, EPOLL_CTL_ADD, server, &ev), 0);
  int clients[PEERS];
  char buf[64];
  for (int i = 0; i < PEERS; i++) { /* sessions first: the bursts are all data */
    clients[i] = attached_socket(ccfg, 3000);
    ck_assert_int_eq(dtlssendto(clients[i], "hi", 2, MSG_DONTWAIT, (struct sockaddr *)&addr, addr_len), 2);
    int got = 0; /* one thread drives both ends of the handshake */
    for (long give_up = now_ms() + 3000; !got && now_ms() < give_up; usleep(1000)) {
      dtlsplex_process(clients[i]);
      got = dtlsrecvfrom(server, buf, sizeof buf, 0, NULL, NULL) == 2;
    }
    ck_assert(got);
  }
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < PEERS; i++)
      for (int j = 0; j < BURST; j++)
        ck_assert_int_eq(dtlssendto(clients[i], "burst", 5, 0, (struct sockaddr *)&addr, addr_len), 5);
    int received = 0;
    while (received < PEERS * BURST) {
      ck_assert_msg(wait_readable(_i, server, epfd), "stalled with %d of %d read: the library held the rest",
                    received, PEERS * BURST);
      ssize_t n = dtlsrecvfrom(server, buf, sizeof buf, 0, NULL, NULL);
      if (n == 5)
        received++;
      else
        ck_assert_int_eq(errno, EAGAIN); /* spurious readiness is allowed (UDP has it too) */
    }
    ck_assert_int_eq(dtlsplex_pending(server), 0);
  }
  for (int i = 0; i < PEERS; i++) {
    ck_assert_int_eq(dtlsplex_detach(clients[i]), 0);
    close(clients[i]);
  }
  close(epfd);
  ck_assert_int_eq(dtlsplex_detach(server), 0);
  close(server);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Issue 12: one descriptor for an event loop.  A loop that waits on it
 * alone (level- or edge-triggered epoll), then calls dtlsplex_process and
 * drains dtlsrecvfrom, gets every datagram of bursts from many peers. */
typedef struct burst_client {
  dtlsplex_config *cfg;
  struct sockaddr_storage *to;
  socklen_t to_len;
  int bursts, burst;
} burst_client;

static void *send_bursts(void *arg) {
  burst_client *b = arg;
  int fd = attached_socket(b->cfg, 3000);
  for (int i = 0; i < b->bursts; i++) {
    for (int j = 0; j < b->burst; j++)
      ck_assert_int_eq(dtlssendto(fd, "data", 4, 0, (struct sockaddr *)b->to, b->to_len), 4);
    usleep(20000);
  }
  usleep(100000); /* the last datagrams reach the server before close_notify */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  return NULL;
}

START_TEST(event_fd_serves_an_event_loop) {
  enum { PEERS = 6, BURSTS = 4, BURST = 8 };
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int server = nonblocking_server(scfg, &addr, &addr_len);
  int efd = dtlsplex_event_fd(server);
  ck_assert_int_ge(efd, 0);
  ck_assert_int_eq(dtlsplex_event_fd(server), efd);
  int outer = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | (_i ? EPOLLET : 0), .data.fd = efd};
  ck_assert_int_eq(epoll_ctl(outer, EPOLL_CTL_ADD, efd, &ev), 0);
  burst_client jobs[PEERS];
  pthread_t threads[PEERS];
  for (int i = 0; i < PEERS; i++) {
    jobs[i] = (burst_client){.cfg = ccfg, .to = &addr, .to_len = addr_len, .bursts = BURSTS, .burst = BURST};
    ck_assert_int_eq(pthread_create(&threads[i], NULL, send_bursts, &jobs[i]), 0);
  }
  int received = 0;
  char buf[64];
  while (received < PEERS * BURSTS * BURST) {
    struct epoll_event got;
    ck_assert_msg(epoll_wait(outer, &got, 1, 3000) == 1, "the loop waited in vain with %d of %d read",
                  received, PEERS * BURSTS * BURST);
    ck_assert_int_ge(dtlsplex_process(server), 0);
    while (dtlsrecvfrom(server, buf, sizeof buf, 0, NULL, NULL) == 4) /* the socket is non-blocking */
      received++;
    ck_assert_int_eq(errno, EAGAIN);
  }
  for (int i = 0; i < PEERS; i++)
    pthread_join(threads[i], NULL);
  close(outer);
  ck_assert_int_eq(dtlsplex_detach(server), 0);
  close(server);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* ...and for timers: with no datagram arriving, it wakes the loop when a
 * handshake's retransmission is due, and is quiet again once it ran. */
START_TEST(event_fd_wakes_for_timers) {
  dtlsplex_config *ccfg = client_config(1, NULL);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(ccfg, 300, 4000), 0);
  struct sockaddr_storage quiet;
  socklen_t quiet_len;
  int silent = bound_socket(AF_INET, &quiet, &quiet_len); /* never answers */
  int fd = attached_socket(ccfg, 3000);
  int efd = dtlsplex_event_fd(fd);
  ck_assert_int_ge(efd, 0);
  ck_assert_int_eq(dtlssendto(fd, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&quiet, quiet_len), 1);
  struct pollfd p = {.fd = efd, .events = POLLIN};
  ck_assert_int_eq(poll(&p, 1, 100), 0); /* nothing due yet */
  long start = now_ms();
  ck_assert_int_eq(poll(&p, 1, 2000), 1);
  ck_assert_int_ge(now_ms() - start, 100); /* the retransmission, at 300 ms */
  struct dtlsplex_stats before, after;
  ck_assert_int_eq(dtlsplex_stats(fd, &before), 0);
  ck_assert_int_eq(dtlsplex_process(fd), 0);
  ck_assert_int_eq(dtlsplex_stats(fd, &after), 0);
  ck_assert_uint_gt(after.datagrams_out, before.datagrams_out);
  ck_assert_int_eq(poll(&p, 1, 100), 0); /* re-armed for 600 ms later */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  ck_assert_int_eq(dtlsplex_event_fd(fd), -1);
  ck_assert_int_eq(errno, EBADF);
  close(fd);
  close(silent);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* A connected client socket for the single-peer tests below. */
typedef struct pair {
  echo_server srv;
  int fd;
  dtlsplex_config *scfg, *ccfg;
} pair;

static void pair_open(pair *p, dtlsplex_config *scfg) {
  p->scfg = scfg;
  p->ccfg = client_config(1, NULL);
  echo_start(&p->srv, AF_INET, scfg);
  struct sockaddr_storage self;
  socklen_t self_len;
  p->fd = bound_socket(AF_INET, &self, &self_len);
  set_rcvtimeo(p->fd, 3000);
  ck_assert_int_eq(dtlsplex_attach(p->fd, p->ccfg), 0);
  ck_assert_int_eq(connect(p->fd, (struct sockaddr *)&p->srv.addr, p->srv.addr_len), 0);
}

static struct dtlsplex_stats pair_close(pair *p) {
  ck_assert_int_eq(dtlsplex_detach(p->fd), 0);
  close(p->fd);
  struct dtlsplex_stats st = echo_stop(&p->srv);
  dtlsplex_config_free(p->scfg);
  dtlsplex_config_free(p->ccfg);
  return st;
}

START_TEST(emsgsize_one_byte_above_data_mtu) {
  pair p;
  pair_open(&p, server_config(1));
  static char big[4096];
  ck_assert_int_eq(dtlssendto(p.fd, "x", 1, 0, NULL, 0), 1); /* connected socket: dest NULL */
  ck_assert_int_eq(dtlsrecvfrom(p.fd, big, sizeof big, 0, NULL, NULL), 1);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dtlsplex_peer_info(p.fd, (struct sockaddr *)&p.srv.addr, p.srv.addr_len, &info), 0);
  ck_assert_uint_gt(info.data_mtu, 1100);
  ck_assert_uint_lt(info.data_mtu, 1200);
  memset(big, 'm', sizeof big);
  ck_assert_int_eq(dtlssendto(p.fd, big, info.data_mtu, 0, NULL, 0), (ssize_t)info.data_mtu);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, big, sizeof big, 0, NULL, NULL), (ssize_t)info.data_mtu);
  errno = 0;
  ck_assert_int_eq(dtlssendto(p.fd, big, info.data_mtu + 1, 0, NULL, 0), -1);
  ck_assert_int_eq(errno, EMSGSIZE);
  pair_close(&p);
}
END_TEST

/* Issue 12: datagrams as large as one DTLS record carries, on paths that
 * take them (loopback, jumbo frames): full-size ones arrive whole, one byte
 * more is EMSGSIZE. */
START_TEST(large_mtu_carries_full_datagrams) {
  static const unsigned int mtus[] = {9000, DTLSPLEX_MTU_MAX};
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  ck_assert_int_eq(dtlsplex_config_set_mtu(scfg, mtus[_i]), 0);
  ck_assert_int_eq(dtlsplex_config_set_mtu(ccfg, mtus[_i]), 0);
  ck_assert_int_eq(dtlsplex_config_set_mtu(ccfg, DTLSPLEX_MTU_MAX + 1), -1);
  ck_assert_int_eq(errno, EINVAL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  int fd = attached_socket(ccfg, 3000);
  static char big[DTLSPLEX_MTU_MAX], back[DTLSPLEX_MTU_MAX];
  ck_assert_int_eq(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 1);
  ck_assert_int_eq(dtlsrecvfrom(fd, back, sizeof back, 0, NULL, NULL), 1);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dtlsplex_peer_info(fd, (struct sockaddr *)&srv.addr, srv.addr_len, &info), 0);
  if (mtus[_i] == DTLSPLEX_MTU_MAX)
    ck_assert_uint_eq(info.data_mtu, 16384); /* one record's most */
  else
    ck_assert_uint_gt(info.data_mtu, mtus[_i] - 64);
  /* 20 round trips: past the 16th record, lib/records.c seals and opens
   * them at both ends, the largest whole in its buffers. */
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < info.data_mtu; i++)
      big[i] = (char)(i * 7 + (size_t)round);
    ck_assert_int_eq(dtlssendto(fd, big, info.data_mtu, 0, (struct sockaddr *)&srv.addr, srv.addr_len),
                     (ssize_t)info.data_mtu);
    ck_assert_int_eq(dtlsrecvfrom(fd, back, sizeof back, 0, NULL, NULL), (ssize_t)info.data_mtu);
    ck_assert_mem_eq(back, big, info.data_mtu);
  }
  ck_assert_int_eq(dtlssendto(fd, big, info.data_mtu + 1, 0, (struct sockaddr *)&srv.addr, srv.addr_len), -1);
  ck_assert_int_eq(errno, EMSGSIZE);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

START_TEST(peek_trunc_and_truncation) {
  pair p;
  pair_open(&p, server_config(1));
  char msg[100], buf[100];
  memset(msg, 'a', sizeof msg);
  msg[0] = 'A';
  ck_assert_int_eq(dtlssendto(p.fd, msg, sizeof msg, 0, NULL, 0), 100);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, 10, MSG_PEEK, NULL, NULL), 10);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, 10, MSG_PEEK | MSG_TRUNC, NULL, NULL), 100);
  ck_assert_int_eq(dtlsplex_pending(p.fd), 1);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, 10, 0, NULL, NULL), 10); /* the rest is discarded */
  ck_assert_int_eq(buf[0], 'A');
  ck_assert_int_eq(dtlsplex_pending(p.fd), 0);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), -1);
  ck_assert_int_eq(errno, EAGAIN);
  struct sockaddr_in src;
  socklen_t src_len = 4; /* too short: truncated, real length reported */
  ck_assert_int_eq(dtlssendto(p.fd, msg, 5, 0, NULL, 0), 5);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len), 5);
  ck_assert_uint_eq(src_len, sizeof(struct sockaddr_in));
  pair_close(&p);
}
END_TEST

START_TEST(idle_peers_expire) {
  dtlsplex_config *scfg = server_config(1);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(scfg, 2000, 300), 0);
  pair p;
  pair_open(&p, scfg);
  char buf[8];
  ck_assert_int_eq(dtlssendto(p.fd, "x", 1, 0, NULL, 0), 1);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, sizeof buf, 0, NULL, NULL), 1);
  struct dtlsplex_stats st;
  for (long give_up = now_ms() + 3000; now_ms() < give_up; usleep(20000)) {
    ck_assert_int_eq(dtlsplex_stats(p.srv.fd, &st), 0);
    if (st.expired == 1)
      break;
  }
  ck_assert_uint_eq(st.expired, 1);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_int_eq(atomic_load(&events[DTLSPLEX_EVENT_EXPIRED]), 1);
  pair_close(&p);
}
END_TEST

START_TEST(close_then_reconnect) {
  pair p;
  pair_open(&p, server_config(1));
  char buf[8];
  ck_assert_int_eq(dtlssendto(p.fd, "1", 1, 0, NULL, 0), 1);
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, sizeof buf, 0, NULL, NULL), 1);
  ck_assert_int_eq(dtlsplex_close(p.fd, (struct sockaddr *)&p.srv.addr, p.srv.addr_len), 0);
  ck_assert_int_eq(wait_for_events(DTLSPLEX_EVENT_CLOSED, 1), 1);
  ck_assert_int_eq(dtlssendto(p.fd, "2", 1, 0, NULL, 0), 1); /* a new handshake */
  ck_assert_int_eq(dtlsrecvfrom(p.fd, buf, sizeof buf, 0, NULL, NULL), 1);
  ck_assert_int_eq(buf[0], '2');
  struct dtlsplex_stats st = pair_close(&p);
  ck_assert_uint_eq(st.handshakes_ok, 2);
}
END_TEST

/* A ClientHello without a cookie, from a socket that is not a DTLS client
 * (as a spoofer would send it), gets a small HelloVerifyRequest and no state. */
START_TEST(spoofed_client_hello_creates_no_peer) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  /* Capture a real ClientHello on a plain socket. */
  struct sockaddr_storage trap_addr, self;
  socklen_t trap_len, self_len;
  int trap = bound_socket(AF_INET, &trap_addr, &trap_len);
  int cfd = bound_socket(AF_INET, &self, &self_len);
  ck_assert_int_eq(fcntl(cfd, F_SETFL, O_NONBLOCK), 0);
  ck_assert_int_eq(dtlsplex_attach(cfd, ccfg), 0);
  ck_assert_int_eq(dtlssendto(cfd, "x", 1, 0, (struct sockaddr *)&trap_addr, trap_len), 1);
  uint8_t hello[2048];
  set_rcvtimeo(trap, 2000);
  ssize_t hello_len = recv(trap, hello, sizeof hello, 0);
  ck_assert_int_gt(hello_len, 60);
  /* Replay it at the server from the plain socket, many times. */
  for (int i = 0; i < 20; i++)
    ck_assert_int_eq(sendto(trap, hello, (size_t)hello_len, 0, (struct sockaddr *)&srv.addr, srv.addr_len),
                     hello_len);
  uint8_t reply[2048];
  ssize_t reply_len = recv(trap, reply, sizeof reply, 0);
  ck_assert_int_gt(reply_len, 0);
  ck_assert_int_le(reply_len, hello_len); /* no amplification */
  ck_assert_int_eq(reply[0], 22);         /* handshake record */
  ck_assert_int_eq(reply[13], 3);         /* HelloVerifyRequest */
  struct dtlsplex_stats st;
  for (long give_up = now_ms() + 2000; now_ms() < give_up; usleep(5000)) {
    ck_assert_int_eq(dtlsplex_stats(srv.fd, &st), 0);
    if (st.cookies_sent == 20)
      break;
  }
  ck_assert_uint_eq(st.cookies_sent, 20);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_int_eq(dtlsplex_detach(cfd), 0);
  close(cfd);
  close(trap);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Several threads on one socket: senders and a blocking receiver at once. */
typedef struct shared_fd {
  int fd, id;
  const echo_server *srv;
} shared_fd;

static void *shared_sender(void *arg) {
  const shared_fd *job = arg;
  for (int i = 0; i < 50; i++) {
    char msg[32];
    int len = snprintf(msg, sizeof msg, "%d:%d", job->id, i);
    ck_assert_int_eq(dtlssendto(job->fd, msg, (size_t)len, 0, (struct sockaddr *)&job->srv->addr,
                                job->srv->addr_len), len);
  }
  return NULL;
}

START_TEST(threads_share_one_socket) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  int fd = attached_socket(ccfg, 3000);
  shared_fd jobs[4];
  pthread_t senders[4];
  for (int t = 0; t < 4; t++) {
    jobs[t] = (shared_fd){.fd = fd, .id = t, .srv = &srv};
    ck_assert_int_eq(pthread_create(&senders[t], NULL, shared_sender, &jobs[t]), 0);
  }
  int seen[4][50] = {{0}};
  int received = 0;
  for (; received < 200; received++) {
    char buf[32];
    ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf - 1, 0, NULL, NULL);
    if (n < 0)
      break; /* lost on loopback under load: counted below */
    buf[n] = '\0';
    int id, i;
    ck_assert_int_eq(sscanf(buf, "%d:%d", &id, &i), 2);
    ck_assert(id >= 0 && id < 4 && i >= 0 && i < 50);
    ck_assert_int_eq(seen[id][i]++, 0); /* each echo once */
  }
  for (int t = 0; t < 4; t++)
    pthread_join(senders[t], NULL);
  ck_assert_int_eq(received, 200);
  struct dtlsplex_stats st = echo_stop(&srv);
  ck_assert_uint_eq(st.handshakes_ok, 1); /* one peer, whichever thread started it */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* ICMP port unreachable reaches the socket as ECONNREFUSED (with IP_RECVERR
 * even on an unconnected socket): it concerns one destination and must not
 * break the receive loop or the other peers. */
START_TEST(icmp_unreachable_does_not_break_other_peers) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  struct sockaddr_storage self, closed;
  socklen_t self_len, closed_len;
  int fd = bound_socket(AF_INET, &self, &self_len);
  int on = 1;
  ck_assert_int_eq(setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on), 0);
  set_rcvtimeo(fd, 3000);
  ck_assert_int_eq(dtlsplex_attach(fd, ccfg), 0);
  char buf[16];
  ck_assert_int_eq(dtlssendto(fd, "one", 3, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 3);
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), 3);
  /* A port with nobody behind it. */
  int gone = bound_socket(AF_INET, &closed, &closed_len);
  close(gone);
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(dtlssendto(fd, "lost", 4, MSG_DONTWAIT, (struct sockaddr *)&closed, closed_len), 4);
    usleep(20000);
    ck_assert_int_eq(dtlssendto(fd, "two", 3, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 3);
    ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), 3);
    ck_assert_mem_eq(buf, "two", 3);
  }
  ck_assert_int_eq(dtlsplex_process(fd), 0); /* pending errors are not the caller's */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Another thread's dtlsplex_process may read the datagram a blocked
 * dtlsrecvfrom waits for: the waiter must wake for it, not sleep on an
 * empty socket. */
typedef struct waiting_reader {
  int fd;
  ssize_t n;
  char buf[16];
  long waited_ms;
  atomic_int done; /* the main thread polls it while the reader runs */
} waiting_reader;

static void *wait_for_echo(void *arg) {
  waiting_reader *w = arg;
  long t0 = now_ms();
  w->n = dtlsrecvfrom(w->fd, w->buf, sizeof w->buf, 0, NULL, NULL);
  w->waited_ms = now_ms() - t0;
  atomic_store(&w->done, 1);
  return NULL;
}

START_TEST(waiter_wakes_for_data_another_thread_read) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  int fd = attached_socket(ccfg, 8000);
  char buf[16];
  ck_assert_int_eq(dtlssendto(fd, "hi", 2, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 2);
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), 2);
  for (int round = 0; round < 10; round++) {
    waiting_reader w = {.fd = fd};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, wait_for_echo, &w), 0);
    usleep(20000); /* the reader is in poll */
    ck_assert_int_eq(dtlssendto(fd, "echo", 4, MSG_DONTWAIT, (struct sockaddr *)&srv.addr, srv.addr_len), 4);
    for (long give_up = now_ms() + 2000; now_ms() < give_up && dtlsplex_pending(fd) == 0 && !atomic_load(&w.done);)
      dtlsplex_process(fd); /* races the reader for the echo */
    pthread_join(t, NULL);
    ck_assert_int_eq(w.n, 4);
    /* Not until some timer (buffer release: 2 s) or SO_RCVTIMEO (8 s). */
    ck_assert_int_lt(w.waited_ms, 1000);
  }
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

static void *blocked_receiver(void *arg) {
  int fd = *(int *)arg;
  char buf[8];
  ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL);
  *(int *)arg = n < 0 ? errno : 0;
  return NULL;
}

/* A group of n IPv4 loopback sockets on one port, sharing it through
 * option (SO_REUSEPORT or SO_REUSEADDR).  Which of them a datagram reaches
 * is the kernel's choice. */
static void shared_port_group(int option, int *fds, int n) {
  int on = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fds[i], 0);
    ck_assert_int_eq(setsockopt(fds[i], SOL_SOCKET, option, &on, sizeof on), 0);
    ck_assert_int_eq(bind(fds[i], (struct sockaddr *)&a, len), 0);
    ck_assert_int_eq(getsockname(fds[i], (struct sockaddr *)&a, &len), 0);
  }
}

/* A blocked receiver waits in the kernel's own receive when another thread
 * can end that wait with a datagram to the socket, and in poll otherwise (a
 * connected socket hears only its peer; on a shared port the datagram may
 * reach another socket): detach ends every kind of wait. */
START_TEST(detach_wakes_blocked_receiver) {
  dtlsplex_config *ccfg = client_config(1, NULL);
  enum { PLAIN, DUAL_STACK_WILDCARD, CONNECTED, REUSEPORT, REUSEADDR };
  for (int kind = PLAIN; kind <= REUSEADDR; kind++) {
    struct sockaddr_storage other;
    socklen_t other_len;
    int group[8], fd, others = 1;
    if (kind == REUSEPORT || kind == REUSEADDR) {
      /* With 8 sharing the port, a datagram to itself would miss often. */
      shared_port_group(kind == REUSEPORT ? SO_REUSEPORT : SO_REUSEADDR, group, 8);
      others = 8;
    } else if (kind == DUAL_STACK_WILDCARD) {
      int off = 0;
      struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
      group[0] = socket(AF_INET6, SOCK_DGRAM, 0);
      ck_assert_int_ge(group[0], 0);
      ck_assert_int_eq(setsockopt(group[0], IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off), 0);
      ck_assert_int_eq(bind(group[0], (struct sockaddr *)&any, sizeof any), 0);
      others = 1;
    } else {
      struct sockaddr_storage self;
      socklen_t self_len;
      group[0] = bound_socket(AF_INET, &self, &self_len);
      group[1] = bound_socket(AF_INET, &other, &other_len);
      others = 2;
    }
    fd = group[0];
    if (kind == CONNECTED)
      ck_assert_int_eq(connect(fd, (struct sockaddr *)&other, other_len), 0);
    set_rcvtimeo(fd, 5000); /* a missed wake-up fails below rather than hangs */
    ck_assert_int_eq(dtlsplex_attach(fd, ccfg), 0);
    int arg = fd;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, blocked_receiver, &arg), 0);
    usleep(100000);
    long t0 = now_ms();
    ck_assert_int_eq(dtlsplex_detach(fd), 0);
    pthread_join(t, NULL);
    ck_assert_msg(arg == EBADF, "kind %d: errno %d", kind, arg);
    ck_assert_msg(now_ms() - t0 < 2000, "kind %d: woke after %ld ms", kind, now_ms() - t0);
    ck_assert_int_ge(fcntl(fd, F_GETFD), 0); /* still open */
    for (int i = 0; i < others; i++)
      close(group[i]);
  }
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Counts the datagrams that reach fd within ms. */
static int count_datagrams(int fd, int ms) {
  int count = 0;
  for (long give_up = now_ms() + ms; now_ms() < give_up;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[2048];
    if (poll(&p, 1, (int)(give_up - now_ms() > 0 ? give_up - now_ms() : 0)) == 1 &&
        recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
      count++;
  }
  return count;
}

/* While one thread waits in dtlsrecvfrom with no handshake under way, it
 * waits in the kernel and runs no timers.  A handshake another thread starts
 * meanwhile must still be retransmitted on time: the waiter is woken back
 * into poll, by a datagram to the socket itself that it does not count. */
START_TEST(blocked_receiver_keeps_handshake_timers) {
  dtlsplex_config *ccfg = client_config(1, NULL);
  struct sockaddr_storage silent_addr;
  socklen_t silent_len;
  int silent = bound_socket(AF_INET, &silent_addr, &silent_len); /* never answers */
  int fd = attached_socket(ccfg, 8000);
  int arg = fd;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, blocked_receiver, &arg), 0);
  usleep(100000); /* the receiver is waiting */
  ck_assert_int_eq(dtlssendto(fd, "hi", 2, MSG_DONTWAIT, (struct sockaddr *)&silent_addr, silent_len), 2);
  /* The ClientHello at once, its retransmission after libssl's 1 s timer. */
  ck_assert_int_ge(count_datagrams(silent, 2500), 2);
  struct dtlsplex_stats st;
  ck_assert_int_eq(dtlsplex_stats(fd, &st), 0);
  ck_assert_uint_eq(st.datagrams_in, 0);
  ck_assert_uint_eq(st.dropped_bad_record, 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  pthread_join(t, NULL);
  ck_assert_int_eq(arg, EBADF);
  close(fd);
  close(silent);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* An event callback may call back into the library, even with a blocking
 * dtlssendto that must read the socket to complete a handshake: here the
 * callback reconnects a client whose session expired, from inside the
 * dtlsrecvfrom that noticed the expiry, before that call waits. */
typedef struct reconnector {
  const echo_server *srv;
  ssize_t sent;
  int err;
} reconnector;

static void reconnect_on_expiry(int fd, int event, const struct sockaddr *peer, socklen_t len, int error,
                                void *arg) {
  (void)peer, (void)len, (void)error;
  reconnector *r = arg;
  if (event != DTLSPLEX_EVENT_EXPIRED)
    return;
  r->sent = dtlssendto(fd, "again", 5, 0, (const struct sockaddr *)&r->srv->addr, r->srv->addr_len);
  r->err = r->sent < 0 ? errno : 0;
}

START_TEST(callback_reconnects_from_blocking_receive) {
  dtlsplex_config *scfg = server_config(1), *ccfg = client_config(1, NULL);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  reconnector r = {.srv = &srv, .sent = -2};
  ck_assert_int_eq(dtlsplex_config_set_timeouts(ccfg, 2000, 200), 0);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(ccfg, reconnect_on_expiry, &r), 0);
  int fd = attached_socket(ccfg, 3000);
  char buf[16];
  ck_assert_int_eq(dtlssendto(fd, "hi", 2, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 2);
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), 2);
  usleep(400000); /* the session is past its idle timeout */
  long t0 = now_ms();
  ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL);
  ck_assert_msg(r.sent == 5, "reconnect from the callback: %zd (%s)", r.sent, strerror(r.err));
  ck_assert_int_eq(n, 5); /* the echo of the reconnect's datagram */
  ck_assert_mem_eq(buf, "again", 5);
  ck_assert_int_lt(now_ms() - t0, 1500);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

/* Datagrams that are not application data do not extend a blocking call
 * beyond SO_RCVTIMEO, though each one ends a wait in the kernel. */
typedef struct junk_sender {
  int fd;
  struct sockaddr_storage to;
  socklen_t to_len;
  atomic_int stop;
} junk_sender;

static void *send_junk(void *arg) {
  junk_sender *j = arg;
  static const char junk[20] = "not a DTLS record!";
  for (int i = 0; i < 100 && !atomic_load(&j->stop); i++) {
    ck_assert_int_eq(sendto(j->fd, junk, sizeof junk, 0, (struct sockaddr *)&j->to, j->to_len), (ssize_t)sizeof junk);
    usleep(50000);
  }
  return NULL;
}

START_TEST(rcvtimeo_bounds_call_despite_junk) {
  dtlsplex_config *ccfg = client_config(1, NULL);
  junk_sender j;
  int fd = bound_socket(AF_INET, &j.to, &j.to_len);
  set_rcvtimeo(fd, 300);
  ck_assert_int_eq(dtlsplex_attach(fd, ccfg), 0);
  struct sockaddr_storage from;
  socklen_t from_len;
  j.fd = bound_socket(AF_INET, &from, &from_len);
  atomic_store(&j.stop, 0);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, send_junk, &j), 0);
  char buf[64];
  long t0 = now_ms();
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), -1);
  long waited = now_ms() - t0;
  ck_assert_int_eq(errno, EAGAIN);
  ck_assert_msg(waited >= 250 && waited < 1500, "SO_RCVTIMEO 300 ms with junk every 50 ms: %ld ms", waited);
  atomic_store(&j.stop, 1);
  pthread_join(t, NULL);
  struct dtlsplex_stats st;
  ck_assert_int_eq(dtlsplex_stats(fd, &st), 0);
  ck_assert_uint_ge(st.dropped_bad_record + st.dropped_no_session, 2); /* the junk did arrive */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  close(j.fd);
  dtlsplex_config_free(ccfg);
}
END_TEST

int main(void) {
  Suite *s = suite_create("loopback");
  TCase *tc = tcase_create("loopback");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, many_clients_one_server_socket);
  tcase_add_test(tc, ipv6_psk_clients);
  tcase_add_test(tc, non_blocking_client_event_loop);
  tcase_add_test(tc, dual_stack_one_peer_per_address);
  tcase_add_test(tc, untrusted_server_certificate_rejected);
  tcase_add_test(tc, mutual_authentication);
  tcase_add_test(tc, intermediate_certificates_are_sent);
  tcase_add_test(tc, reconfigure_under_traffic);
  tcase_add_loop_test(tc, one_read_per_wakeup_never_stalls, WAIT_POLL, WAIT_EPOLL + 1);
  tcase_add_loop_test(tc, event_fd_serves_an_event_loop, 0, 2);
  tcase_add_test(tc, event_fd_wakes_for_timers);
  tcase_add_test(tc, emsgsize_one_byte_above_data_mtu);
  tcase_add_test(tc, peek_trunc_and_truncation);
  tcase_add_loop_test(tc, large_mtu_carries_full_datagrams, 0, 2);
  tcase_add_test(tc, idle_peers_expire);
  tcase_add_test(tc, close_then_reconnect);
  tcase_add_test(tc, spoofed_client_hello_creates_no_peer);
  tcase_add_test(tc, detach_wakes_blocked_receiver);
  tcase_add_test(tc, blocked_receiver_keeps_handshake_timers);
  tcase_add_test(tc, rcvtimeo_bounds_call_despite_junk);
  tcase_add_test(tc, callback_reconnects_from_blocking_receive);
  tcase_add_test(tc, threads_share_one_socket);
  tcase_add_test(tc, system_store_loaded_only_to_verify);
  tcase_add_test(tc, icmp_unreachable_does_not_break_other_peers);
  tcase_add_test(tc, waiter_wakes_for_data_another_thread_read);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
