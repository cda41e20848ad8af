/* Public API contract: every function, given bad arguments, returns -1 (or
 * NULL) with the errno its declaration in dtlsplex.h documents, and does not
 * crash.  Uses only the public header (plus OpenSSL for the SSL_CTX escape
 * hatch and the test PKI), loopback addresses only, and releases every fd and
 * configuration it makes so that the suite is clean under AddressSanitizer. */
#include <dtlsplex.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <openssl/ssl.h>

#include "certs.h"

/* expr must fail: return -1 with errno err, errno read right after the call. */
#define EXPECT_ERR(expr, err)                                                                           \
  do {                                                                                                   \
    errno = 0;                                                                                           \
    long ret_ = (long)(expr);                                                                            \
    int errno_ = errno;                                                                                  \
    ck_assert_msg(ret_ == -1 && errno_ == (err), "%s: returned %ld, errno %d (%s); expected -1, %s (%d)", \
                  #expr, ret_, errno_, strerror(errno_), #err, (err));                                   \
  } while (0)

/* expr must return 0. */
#define EXPECT_OK(expr)                                                                                  \
  do {                                                                                                   \
    errno = 0;                                                                                           \
    long ret_ = (long)(expr);                                                                            \
    int errno_ = errno;                                                                                  \
    ck_assert_msg(ret_ == 0, "%s: returned %ld, errno %d (%s); expected 0", #expr, ret_, errno_,         \
                  strerror(errno_));                                                                     \
  } while (0)

/* ---------------------------------------------------------------- helpers */

static struct sockaddr_in lo4(uint16_t port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static struct sockaddr_in6 lo6(uint16_t port) {
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  a.sin6_addr = in6addr_loopback;
  return a;
}

static struct sockaddr_un unix_addr(void) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "/tmp/dtlsplex-test-api-nonexistent");
  return a;
}

/* A plain UDP socket bound to 127.0.0.1 on an ephemeral port. */
static int udp4(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
  struct sockaddr_in a = lo4(0);
  ck_assert_msg(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
  return fd;
}

static struct sockaddr_in local4(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  ck_assert_msg(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname: %s", strerror(errno));
  ck_assert_int_eq(a.sin_family, AF_INET);
  return a;
}

/* Asserts that no datagram reaches fd (waits 100 ms to be sure). */
static void assert_nothing_arrives(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  ck_assert_msg(poll(&p, 1, 100) == 0, "a datagram arrived where none was expected");
  char buf[2048];
  errno = 0;
  ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL);
  int err = errno;
  ck_assert_msg(n == -1 && (err == EAGAIN || err == EWOULDBLOCK), "recvfrom returned %zd (errno %d)", n,
                err);
}

static dtlsplex_config *new_cfg(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_msg(cfg != NULL, "dtlsplex_config_new: %s", strerror(errno));
  return cfg;
}

static const unsigned char psk_key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static dtlsplex_config *psk_cfg(int role) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_OK(dtlsplex_config_set_psk(cfg, "client1", psk_key, sizeof psk_key));
  EXPECT_OK(dtlsplex_config_set_role(cfg, role));
  return cfg;
}

/* A UDP socket on 127.0.0.1, attached with cfg. */
static int attached4(dtlsplex_config *cfg) {
  int fd = udp4();
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  return fd;
}

static long elapsed_ms(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void assert_stats_zero(int fd) {
  struct dtlsplex_stats st, zero;
  memset(&st, 0xff, sizeof st);
  memset(&zero, 0, sizeof zero);
  EXPECT_OK(dtlsplex_stats(fd, &st));
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_uint_eq(st.datagrams_out, 0);
  ck_assert_uint_eq(st.datagrams_in, 0);
  ck_assert_msg(memcmp(&st, &zero, sizeof st) == 0, "stats of an idle socket are not all zero");
}

/* ------------------------------------------------- files for the config tests
 * Made once per test case in the parent (unchecked fixture): a mkdtemp
 * directory holding garbage files and the name of a missing one, and a test
 * PKI for the positive controls. */

static char tmp_dir[64];
static char missing_path[128];   /* never created */
static char garbage_path[128];   /* not PEM at all */
static char bad_pem_path[128];   /* PEM armour around garbage */
static test_pki pki;
static int have_pki;

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
  ck_assert(fputs(text, f) >= 0);
  ck_assert(fclose(f) == 0);
}

static void files_setup(void) {
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/dtlsplex-api-XXXXXX");
  ck_assert_msg(mkdtemp(tmp_dir) != NULL, "mkdtemp: %s", strerror(errno));
  snprintf(missing_path, sizeof missing_path, "%s/missing.pem", tmp_dir);
  snprintf(garbage_path, sizeof garbage_path, "%s/garbage.pem", tmp_dir);
  snprintf(bad_pem_path, sizeof bad_pem_path, "%s/bad.pem", tmp_dir);
  write_file(garbage_path, "this is not a certificate\n\x01\x02\x03 nor a key\n");
  write_file(bad_pem_path, "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n"
                           "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  have_pki = test_pki_make(&pki) == 0;
  ck_assert_msg(have_pki, "test_pki_make failed");
}

static void files_teardown(void) {
  unlink(garbage_path);
  unlink(bad_pem_path);
  if (tmp_dir[0] != '\0')
    rmdir(tmp_dir);
  if (have_pki)
    test_pki_remove(&pki);
  have_pki = 0;
}

/* ----------------------------------------------------------------- config */

static void event_cb(int fd, int event, const struct sockaddr *peer, socklen_t peer_len, int error, void *arg) {
  (void)fd;
  (void)event;
  (void)peer;
  (void)peer_len;
  (void)error;
  (void)arg;
}

static void log_cb(int level, const char *message, void *arg) {
  (void)level;
  (void)message;
  (void)arg;
}

START_TEST(test_config_new_and_free) {
  dtlsplex_config_free(NULL); /* no-op, no crash */
  dtlsplex_config *cfg = new_cfg();
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_config_null_cfg) {
  unsigned char secret[32] = {0};
  EXPECT_ERR(dtlsplex_config_set_certificate(NULL, "a.pem", "a.key"), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_ca(NULL, "ca.pem", NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_verify(NULL, DTLSPLEX_VERIFY_PEER), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(NULL, "id", psk_key, sizeof psk_key), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_role(NULL, DTLSPLEX_ROLE_CLIENT), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_mtu(NULL, 1200), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_ciphers(NULL, "DEFAULT"), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_timeouts(NULL, 1000, 1000), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_limits(NULL, 10, 10), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(NULL, secret, sizeof secret), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_event_callback(NULL, event_cb, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_event_callback(NULL, NULL, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_log_callback(NULL, log_cb, NULL, DTLSPLEX_LOG_DEBUG), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_log_callback(NULL, NULL, NULL, DTLSPLEX_LOG_ERROR), EINVAL);
  errno = 0;
  struct ssl_ctx_st *ctx = dtlsplex_config_get_ssl_ctx(NULL);
  int err = errno;
  ck_assert_ptr_null(ctx);
  ck_assert_int_eq(err, EINVAL);
}
END_TEST

START_TEST(test_set_certificate) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, NULL, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, NULL, pki.server_key), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, pki.server_cert, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, missing_path, missing_path), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, missing_path, pki.server_key), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, pki.server_cert, missing_path), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, garbage_path, garbage_path), EPROTO);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, bad_pem_path, bad_pem_path), EPROTO);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, garbage_path, pki.server_key), EPROTO);
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, pki.server_cert, garbage_path), EPROTO);
  /* The key does not match the certificate. */
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.client_key), EPROTO);
  EXPECT_OK(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_ca) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, NULL, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, missing_path, NULL), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, NULL, missing_path), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, pki.ca, missing_path), ENOENT);
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, garbage_path, NULL), EPROTO);
  EXPECT_OK(dtlsplex_config_set_ca(cfg, pki.ca, NULL));
  EXPECT_OK(dtlsplex_config_set_ca(cfg, NULL, tmp_dir));
  EXPECT_OK(dtlsplex_config_set_ca(cfg, pki.ca, tmp_dir));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_verify) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_verify(cfg, 99), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_verify(cfg, -1), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_verify(cfg, 3), EINVAL);
  EXPECT_OK(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE));
  EXPECT_OK(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_PEER));
  EXPECT_OK(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_REQUIRE));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_psk) {
  dtlsplex_config *cfg = new_cfg();
  unsigned char key[65];
  memset(key, 0x5a, sizeof key);
  char id128[129], id129[130];
  memset(id128, 'i', 128);
  id128[128] = '\0';
  memset(id129, 'i', 129);
  id129[129] = '\0';

  EXPECT_ERR(dtlsplex_config_set_psk(cfg, NULL, key, 16), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "id", NULL, 16), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "", key, 16), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, id129, key, 16), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "id", key, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "id", key, 65), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "id", key, (size_t)-1), EINVAL);
  EXPECT_OK(dtlsplex_config_set_psk(cfg, id128, key, 64));
  EXPECT_OK(dtlsplex_config_set_psk(cfg, "id", key, 1));
  EXPECT_OK(dtlsplex_config_set_psk(cfg, "id", key, 32)); /* replaces */
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_role) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_role(cfg, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_role(cfg, 4), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_role(cfg, -1), EINVAL);
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT));
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER));
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_BOTH));
  dtlsplex_config_free(cfg);
}
END_TEST

/* The key log is for the owner's eyes only: a symbolic link is refused, and
 * an existing file others could read is made 0600 before any key goes in. */
START_TEST(test_set_keylog) {
  dtlsplex_config *cfg = new_cfg();
  char dir[] = "/tmp/dtlsplex-keylog-XXXXXX", file[64], link_path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(file, sizeof file, "%s/keys", dir);
  snprintf(link_path, sizeof link_path, "%s/link", dir);
  int fd = open(file, O_CREAT | O_WRONLY, 0644);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(fchmod(fd, 0644), 0); /* whatever the umask */
  close(fd);
  ck_assert_int_eq(symlink(file, link_path), 0);
  EXPECT_ERR(dtlsplex_config_set_keylog(cfg, link_path), ELOOP);
  EXPECT_ERR(dtlsplex_config_set_keylog(NULL, file), EINVAL);
  EXPECT_OK(dtlsplex_config_set_keylog(cfg, file));
  struct stat st;
  ck_assert_int_eq(stat(file, &st), 0);
  ck_assert_uint_eq(st.st_mode & 0777, 0600);
  EXPECT_OK(dtlsplex_config_set_keylog(cfg, NULL));
  dtlsplex_config_free(cfg);
  unlink(link_path);
  unlink(file);
  rmdir(dir);
}
END_TEST

START_TEST(test_set_mtu) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_mtu(cfg, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_mtu(cfg, 255), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_mtu(cfg, DTLSPLEX_MTU_MAX + 1), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_mtu(cfg, UINT_MAX), EINVAL);
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 256));
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, DTLSPLEX_MTU_MAX));
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1200));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_ciphers) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_ciphers(cfg, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_ciphers(cfg, "NOT-A-CIPHER"), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_ciphers(cfg, ""), EINVAL);
  EXPECT_OK(dtlsplex_config_set_ciphers(cfg, "ECDHE-ECDSA-AES128-GCM-SHA256"));
  EXPECT_OK(dtlsplex_config_set_ciphers(cfg, "DEFAULT"));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_timeouts) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_timeouts(cfg, 99, 1000), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_timeouts(cfg, 99, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_timeouts(cfg, 0, 0), EINVAL);
  EXPECT_OK(dtlsplex_config_set_timeouts(cfg, 100, 0));
  EXPECT_OK(dtlsplex_config_set_timeouts(cfg, 15000, 300000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_limits) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_limits(cfg, 0, 1), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_limits(cfg, 0, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_limits(cfg, 10, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_limits(cfg, 10, 11), EINVAL);
  EXPECT_OK(dtlsplex_config_set_limits(cfg, 10, 10));
  EXPECT_OK(dtlsplex_config_set_limits(cfg, 1, 1));
  EXPECT_OK(dtlsplex_config_set_limits(cfg, 10000, 256));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_fairness) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_config_set_source_share(NULL, 32, 64, 10), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_source_share(cfg, 33, 64, 10), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_source_share(cfg, 32, 129, 10), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_source_share(cfg, 32, 64, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_source_share(cfg, 32, 64, 101), EINVAL);
  EXPECT_OK(dtlsplex_config_set_source_share(cfg, 0, 0, 100));
  EXPECT_OK(dtlsplex_config_set_source_share(cfg, 24, 48, 1));
  EXPECT_ERR(dtlsplex_config_set_handshake_budget(NULL, 10, 10), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_handshake_budget(cfg, 10, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_handshake_budget(cfg, 1000001, 10), EINVAL);
  EXPECT_OK(dtlsplex_config_set_handshake_budget(cfg, 0, 0));
  EXPECT_OK(dtlsplex_config_set_handshake_budget(cfg, 1000000, 1));
  EXPECT_ERR(dtlsplex_config_set_eviction(NULL, 1000), EINVAL);
  EXPECT_OK(dtlsplex_config_set_eviction(cfg, 0));
  EXPECT_OK(dtlsplex_config_set_eviction(cfg, 60000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_cookie_secret) {
  dtlsplex_config *cfg = new_cfg();
  unsigned char secret[65];
  memset(secret, 0x42, sizeof secret);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(cfg, secret, 0), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(cfg, secret, 15), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(cfg, secret, 65), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(cfg, NULL, 32), EINVAL);
  EXPECT_OK(dtlsplex_config_set_cookie_secret(cfg, secret, 16));
  EXPECT_OK(dtlsplex_config_set_cookie_secret(cfg, secret, 64));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_set_callbacks) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_OK(dtlsplex_config_set_event_callback(cfg, event_cb, cfg));
  EXPECT_OK(dtlsplex_config_set_event_callback(cfg, NULL, NULL));
  EXPECT_ERR(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, -1), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, 4), EINVAL);
  EXPECT_ERR(dtlsplex_config_set_log_callback(cfg, NULL, NULL, 4), EINVAL);
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_ERROR));
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_WARNING));
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_INFO));
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_DEBUG));
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, NULL, NULL, DTLSPLEX_LOG_DEBUG));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_get_ssl_ctx) {
  dtlsplex_config *cfg = new_cfg();
  SSL_CTX *ctx = dtlsplex_config_get_ssl_ctx(cfg);
  ck_assert_ptr_nonnull(ctx);
  ck_assert_ptr_eq(dtlsplex_config_get_ssl_ctx(cfg), ctx);
  SSL *ssl = SSL_new(ctx); /* a usable context */
  ck_assert_ptr_nonnull(ssl);
  SSL_free(ssl);
  dtlsplex_config_free(cfg);
}
END_TEST

/* Every setter with valid arguments fails with EBUSY. */
static void assert_setters_busy(dtlsplex_config *cfg) {
  unsigned char secret[32] = {7};
  EXPECT_ERR(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_ca(cfg, pki.ca, NULL), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_psk(cfg, "other", psk_key, sizeof psk_key), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_mtu(cfg, 1000), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_ciphers(cfg, "DEFAULT"), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_timeouts(cfg, 1000, 1000), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_limits(cfg, 10, 10), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_source_share(cfg, 32, 64, 50), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_handshake_budget(cfg, 10, 10), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_eviction(cfg, 1000), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_cookie_secret(cfg, secret, sizeof secret), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_event_callback(cfg, event_cb, NULL), EBUSY);
  EXPECT_ERR(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_INFO), EBUSY);
}

static void assert_setters_work(dtlsplex_config *cfg) {
  unsigned char secret[32] = {7};
  EXPECT_OK(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key));
  EXPECT_OK(dtlsplex_config_set_ca(cfg, pki.ca, NULL));
  EXPECT_OK(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE));
  EXPECT_OK(dtlsplex_config_set_psk(cfg, "other", psk_key, sizeof psk_key));
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT));
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000));
  EXPECT_OK(dtlsplex_config_set_ciphers(cfg, "DEFAULT"));
  EXPECT_OK(dtlsplex_config_set_timeouts(cfg, 1000, 1000));
  EXPECT_OK(dtlsplex_config_set_limits(cfg, 10, 10));
  EXPECT_OK(dtlsplex_config_set_cookie_secret(cfg, secret, sizeof secret));
  EXPECT_OK(dtlsplex_config_set_event_callback(cfg, event_cb, NULL));
  EXPECT_OK(dtlsplex_config_set_log_callback(cfg, log_cb, NULL, DTLSPLEX_LOG_INFO));
}

START_TEST(test_setters_busy_while_attached) {
  dtlsplex_config *cfg = new_cfg();
  int a = attached4(cfg);
  assert_setters_busy(cfg);
  ck_assert_ptr_nonnull(dtlsplex_config_get_ssl_ctx(cfg)); /* still readable */

  /* Shared by two sockets: busy until both are detached. */
  int b = attached4(cfg);
  EXPECT_OK(dtlsplex_detach(a));
  assert_setters_busy(cfg);
  EXPECT_OK(dtlsplex_detach(b));
  assert_setters_work(cfg);

  close(a);
  close(b);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_config_free_while_attached) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  dtlsplex_config_free(cfg); /* the socket keeps its reference */
  assert_stats_zero(fd);
  ck_assert_int_eq(dtlsplex_timeout(fd), -1);
  EXPECT_OK(dtlsplex_detach(fd)); /* frees the configuration */
  close(fd);
}
END_TEST

/* ----------------------------------------------------------------- attach */

START_TEST(test_attach_null_cfg) {
  int fd = udp4();
  EXPECT_ERR(dtlsplex_attach(fd, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_detach(fd), EBADF); /* nothing was attached */
  close(fd);
}
END_TEST

START_TEST(test_attach_bad_fd) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_ERR(dtlsplex_attach(-1, cfg), EBADF);
  EXPECT_ERR(dtlsplex_attach(INT_MAX, cfg), EBADF);
  int fd = udp4();
  close(fd);
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EBADF);
  /* The failures took no reference: the configuration is still settable. */
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_attach_not_a_socket) {
  dtlsplex_config *cfg = new_cfg();
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  EXPECT_ERR(dtlsplex_attach(p[0], cfg), ENOTSOCK);
  EXPECT_ERR(dtlsplex_attach(p[1], cfg), ENOTSOCK);
  close(p[0]);
  close(p[1]);
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_attach_tcp) {
  dtlsplex_config *cfg = new_cfg();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(fd, 0);
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EPROTOTYPE);
  close(fd);
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_attach_unix_dgram) {
  dtlsplex_config *cfg = new_cfg();
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  ck_assert_int_ge(fd, 0);
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EAFNOSUPPORT);
  close(fd);
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000));
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_attach_twice) {
  dtlsplex_config *cfg = new_cfg(), *other = new_cfg();
  int fd = attached4(cfg);
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EEXIST);
  EXPECT_ERR(dtlsplex_attach(fd, other), EEXIST);
  /* The failed attach took no reference on other, and fd is still attached. */
  EXPECT_OK(dtlsplex_config_set_mtu(other, 1000));
  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  EXPECT_OK(dtlsplex_config_set_mtu(cfg, 1000)); /* and no extra one on cfg */
  close(fd);
  dtlsplex_config_free(cfg);
  dtlsplex_config_free(other);
}
END_TEST

START_TEST(test_attach_server_needs_credentials) {
  dtlsplex_config *cfg = new_cfg();
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER));
  int fd = udp4();
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EINVAL);
  /* A PSK makes it servable. */
  EXPECT_OK(dtlsplex_config_set_psk(cfg, "client1", psk_key, sizeof psk_key));
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  dtlsplex_config_free(cfg);

  /* So does a certificate. */
  cfg = new_cfg();
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER));
  EXPECT_ERR(dtlsplex_attach(fd, cfg), EINVAL);
  EXPECT_OK(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key));
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  dtlsplex_config_free(cfg);

  /* Client and both roles need neither. */
  cfg = new_cfg();
  EXPECT_OK(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT));
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  dtlsplex_config_free(cfg);
  cfg = new_cfg();
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  dtlsplex_config_free(cfg);
  close(fd);
}
END_TEST

START_TEST(test_attach_ipv6) {
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0)
    return; /* no IPv6 here: nothing to check */
  dtlsplex_config *cfg = new_cfg();
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_detach) {
  EXPECT_ERR(dtlsplex_detach(-1), EBADF);
  EXPECT_ERR(dtlsplex_detach(INT_MAX), EBADF);
  int fd = udp4();
  EXPECT_ERR(dtlsplex_detach(fd), EBADF);

  dtlsplex_config *cfg = new_cfg();
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  ck_assert_msg(fcntl(fd, F_GETFD) >= 0, "detach closed the descriptor: %s", strerror(errno));
  EXPECT_ERR(dtlsplex_detach(fd), EBADF);

  /* The socket still works as plain UDP, and may be attached again. */
  int rx = udp4();
  struct sockaddr_in to = local4(rx);
  ck_assert_int_eq(sendto(fd, "x", 1, 0, (struct sockaddr *)&to, sizeof to), 1);
  char c;
  ck_assert_int_eq(recv(rx, &c, 1, 0), 1);
  EXPECT_OK(dtlsplex_attach(fd, cfg));
  EXPECT_OK(dtlsplex_detach(fd));
  ck_assert_int_ge(fcntl(fd, F_GETFD), 0);

  close(rx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* After detach, every per-fd call fails with EBADF and nothing goes out. */
START_TEST(test_calls_after_detach) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  EXPECT_OK(dtlsplex_detach(fd));
  int rx = udp4();
  struct sockaddr_in to = local4(rx);
  struct dtlsplex_stats st;
  struct dtlsplex_peer_info info;
  char buf[16];
  EXPECT_ERR(dtlssendto(fd, "hello", 5, 0, (struct sockaddr *)&to, sizeof to), EBADF);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), EBADF);
  EXPECT_ERR(dtlsplex_timeout(fd), EBADF);
  EXPECT_ERR(dtlsplex_process(fd), EBADF);
  EXPECT_ERR(dtlsplex_pending(fd), EBADF);
  EXPECT_ERR(dtlsplex_stats(fd, &st), EBADF);
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&to, sizeof to), EBADF);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&to, sizeof to, "localhost"), EBADF);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&to, sizeof to, &info), EBADF);
  assert_nothing_arrives(rx);
  close(rx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* ------------------------------------------------------------- dtlssendto */

START_TEST(test_sendto_unattached) {
  int rx = udp4();
  int tx = udp4();
  struct sockaddr_in to = local4(rx);
  EXPECT_ERR(dtlssendto(tx, "hello", 5, 0, (struct sockaddr *)&to, sizeof to), EBADF);
  EXPECT_ERR(dtlssendto(tx, "hello", 5, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to), EBADF);
  EXPECT_ERR(dtlssendto(tx, "", 0, 0, (struct sockaddr *)&to, sizeof to), EBADF);
  /* Connected: dest NULL must not fall back to send(2) either. */
  ck_assert_int_eq(connect(tx, (struct sockaddr *)&to, sizeof to), 0);
  EXPECT_ERR(dtlssendto(tx, "hello", 5, 0, NULL, 0), EBADF);
  EXPECT_ERR(dtlssendto(-1, "hello", 5, 0, (struct sockaddr *)&to, sizeof to), EBADF);
  EXPECT_ERR(dtlssendto(INT_MAX, "hello", 5, 0, (struct sockaddr *)&to, sizeof to), EBADF);
  assert_nothing_arrives(rx);
  close(tx);
  close(rx);
}
END_TEST

START_TEST(test_sendto_bad_buffer) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  int rx = udp4();
  struct sockaddr_in to = local4(rx);
  EXPECT_ERR(dtlssendto(fd, NULL, 5, 0, (struct sockaddr *)&to, sizeof to), EFAULT);
  EXPECT_ERR(dtlssendto(fd, NULL, 1, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to), EFAULT);
  assert_nothing_arrives(rx);
  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  close(rx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_sendto_bad_address) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  struct sockaddr_in to = lo4(9);
  struct sockaddr_in6 to6 = lo6(9);
  struct sockaddr_un un = unix_addr();

  /* Address lengths too short for the family. */
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&to, sizeof to - 1), EINVAL);
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&to, 1), EINVAL);
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&to, 0), EINVAL);
  /* Families the AF_INET socket cannot use (at least a sockaddr_in long). */
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&to6, sizeof to6 - 1), EAFNOSUPPORT);
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&to6, sizeof to6), EAFNOSUPPORT);
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&un, sizeof un), EAFNOSUPPORT);
  EXPECT_ERR(dtlssendto(fd, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&un, sizeof un), EAFNOSUPPORT);
  /* No destination at all on an unconnected socket. */
  EXPECT_ERR(dtlssendto(fd, "x", 1, 0, NULL, 0), EDESTADDRREQ);
  EXPECT_ERR(dtlssendto(fd, "x", 1, MSG_DONTWAIT, NULL, 0), EDESTADDRREQ);

  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_sendto_bad_flags) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  int rx = udp4();
  struct sockaddr_in to = local4(rx);
  EXPECT_ERR(dtlssendto(fd, "x", 1, MSG_OOB, (struct sockaddr *)&to, sizeof to), EOPNOTSUPP);
  EXPECT_ERR(dtlssendto(fd, "x", 1, MSG_OOB | MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to), EOPNOTSUPP);
  /* The flags UDP accepts are accepted: see test_differential. */
  assert_nothing_arrives(rx);
  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  close(rx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_sendto_server_unknown_peer) {
  /* A server-only socket never starts a handshake: an unknown peer is ENOTCONN. */
  dtlsplex_config *cfg = psk_cfg(DTLSPLEX_ROLE_SERVER);
  int fd = attached4(cfg);
  int rx = udp4();
  struct sockaddr_in to = local4(rx);
  EXPECT_ERR(dtlssendto(fd, "hello", 5, 0, (struct sockaddr *)&to, sizeof to), ENOTCONN);
  EXPECT_ERR(dtlssendto(fd, "hello", 5, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to), ENOTCONN);
  /* Connected: the destination comes from getpeername. */
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
  EXPECT_ERR(dtlssendto(fd, "hello", 5, 0, NULL, 0), ENOTCONN);
  assert_nothing_arrives(rx);
  assert_stats_zero(fd);
  ck_assert_int_eq(dtlsplex_timeout(fd), -1);
  EXPECT_OK(dtlsplex_detach(fd));
  close(rx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* ----------------------------------------------------------- dtlsrecvfrom */

START_TEST(test_recvfrom_unattached) {
  int fd = udp4(); /* blocking, no SO_RCVTIMEO: must not wait */
  int tx = udp4();
  struct sockaddr_in to = local4(fd);
  /* Even with plaintext waiting, nothing is returned. */
  ck_assert_int_eq(sendto(tx, "plain", 5, 0, (struct sockaddr *)&to, sizeof to), 5);
  char buf[64];
  struct sockaddr_in src;
  socklen_t src_len = sizeof src;
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len), EBADF);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), EBADF);
  EXPECT_ERR(dtlsrecvfrom(-1, buf, sizeof buf, 0, NULL, NULL), EBADF);
  EXPECT_ERR(dtlsrecvfrom(-1, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), EBADF);
  EXPECT_ERR(dtlsrecvfrom(INT_MAX, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), EBADF);
  /* The datagram is still there for recvfrom(2): dtlsrecvfrom did not consume it. */
  ck_assert_int_eq(recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), 5);
  close(tx);
  close(fd);
}
END_TEST

START_TEST(test_recvfrom_bad_arguments) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  char buf[64];
  struct sockaddr_in src;
  socklen_t src_len = sizeof src;
  EXPECT_ERR(dtlsrecvfrom(fd, NULL, 10, MSG_DONTWAIT, NULL, NULL), EFAULT);
  EXPECT_ERR(dtlsrecvfrom(fd, NULL, 1, 0, NULL, NULL), EFAULT);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, NULL), EFAULT);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, NULL), EFAULT);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_OOB, (struct sockaddr *)&src, &src_len), EOPNOTSUPP);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_OOB | MSG_DONTWAIT, NULL, NULL), EOPNOTSUPP);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_ERRQUEUE, NULL, NULL), EOPNOTSUPP);
  /* Valid but empty arguments: simply nothing queued. */
  EXPECT_ERR(dtlsrecvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL), EAGAIN);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC, NULL, NULL), EAGAIN);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_recvfrom_dontwait_empty) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  char buf[64];
  struct sockaddr_in src;
  socklen_t src_len = sizeof src;
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&src, &src_len), EAGAIN);

  /* Plaintext from a peer without a session is never delivered. */
  int tx = udp4();
  struct sockaddr_in to = local4(fd);
  ck_assert_int_eq(sendto(tx, "plain", 5, 0, (struct sockaddr *)&to, sizeof to), 5);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  ck_assert_int_eq(poll(&p, 1, 1000), 1);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), EAGAIN);
  ck_assert_int_eq(dtlsplex_pending(fd), 0);

  EXPECT_OK(dtlsplex_detach(fd));
  close(tx);
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_recvfrom_rcvtimeo) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
  ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  char buf[64];
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), EAGAIN);
  long ms = elapsed_ms(&start);
  ck_assert_msg(ms >= 150 && ms < 5000, "SO_RCVTIMEO 200 ms: returned after %ld ms", ms);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_recvfrom_nonblocking) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  int fl = fcntl(fd, F_GETFL);
  ck_assert_int_ge(fl, 0);
  ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
  char buf[64];
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  EXPECT_ERR(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), EAGAIN);
  long ms = elapsed_ms(&start);
  ck_assert_msg(ms < 5000, "a non-blocking dtlsrecvfrom took %ld ms", ms);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* ------------------------------------------- timeout, process, pending, stats */

START_TEST(test_loop_unattached) {
  int fd = udp4();
  struct dtlsplex_stats st;
  EXPECT_ERR(dtlsplex_timeout(fd), EBADF);
  EXPECT_ERR(dtlsplex_process(fd), EBADF);
  EXPECT_ERR(dtlsplex_pending(fd), EBADF);
  EXPECT_ERR(dtlsplex_stats(fd, &st), EBADF);
  EXPECT_ERR(dtlsplex_timeout(-1), EBADF);
  EXPECT_ERR(dtlsplex_process(-1), EBADF);
  EXPECT_ERR(dtlsplex_pending(-1), EBADF);
  EXPECT_ERR(dtlsplex_stats(-1, &st), EBADF);
  EXPECT_ERR(dtlsplex_timeout(INT_MAX), EBADF);
  EXPECT_ERR(dtlsplex_process(INT_MAX), EBADF);
  EXPECT_ERR(dtlsplex_pending(INT_MAX), EBADF);
  EXPECT_ERR(dtlsplex_stats(INT_MAX, &st), EBADF);
  close(fd);
}
END_TEST

START_TEST(test_loop_idle) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  errno = 0;
  ck_assert_int_eq(dtlsplex_timeout(fd), -1); /* no timer runs */
  ck_assert_int_eq(dtlsplex_process(fd), 0);
  ck_assert_int_eq(dtlsplex_pending(fd), 0);
  assert_stats_zero(fd);
  EXPECT_ERR(dtlsplex_stats(fd, NULL), EINVAL);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* ------------------------------------------------------------------ peers */

START_TEST(test_peers_unattached) {
  int fd = udp4();
  struct sockaddr_in peer = lo4(4433);
  struct dtlsplex_peer_info info;
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer, sizeof peer), EBADF);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&peer, sizeof peer, "localhost"), EBADF);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer, sizeof peer, &info), EBADF);
  EXPECT_ERR(dtlsplex_close(-1, (struct sockaddr *)&peer, sizeof peer), EBADF);
  EXPECT_ERR(dtlsplex_set_peer_name(-1, (struct sockaddr *)&peer, sizeof peer, "localhost"), EBADF);
  EXPECT_ERR(dtlsplex_peer_info(-1, (struct sockaddr *)&peer, sizeof peer, &info), EBADF);
  close(fd);
}
END_TEST

START_TEST(test_peers_bad_address) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  struct sockaddr_in peer = lo4(4433);
  struct sockaddr_in6 peer6 = lo6(4433);
  struct sockaddr_un un = unix_addr();
  struct dtlsplex_peer_info info;

  /* NULL address. */
  EXPECT_ERR(dtlsplex_close(fd, NULL, sizeof peer), EINVAL);
  EXPECT_ERR(dtlsplex_close(fd, NULL, 0), EINVAL);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, NULL, sizeof peer, "localhost"), EINVAL);
  EXPECT_ERR(dtlsplex_peer_info(fd, NULL, sizeof peer, &info), EINVAL);
  /* Short length. */
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer, sizeof peer - 1), EINVAL);
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer, 0), EINVAL);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&peer, sizeof peer - 1, "localhost"), EINVAL);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer, sizeof peer - 1, &info), EINVAL);
  /* Family the AF_INET socket cannot use. */
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer6, sizeof peer6 - 1, &info), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer6, sizeof peer6), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&peer6, sizeof peer6, "localhost"), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer6, sizeof peer6, &info), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&un, sizeof un), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&un, sizeof un, "localhost"), EAFNOSUPPORT);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&un, sizeof un, &info), EAFNOSUPPORT);

  assert_stats_zero(fd);
  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

START_TEST(test_peers_unknown) {
  dtlsplex_config *cfg = new_cfg();
  int fd = attached4(cfg);
  struct sockaddr_in peer = lo4(4433), named = lo4(4434);
  struct dtlsplex_peer_info info;

  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer, sizeof peer), ENOENT);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer, sizeof peer, &info), ENOENT);
  EXPECT_ERR(dtlsplex_peer_info(fd, (struct sockaddr *)&peer, sizeof peer, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&peer, sizeof peer, NULL), EINVAL);
  EXPECT_ERR(dtlsplex_set_peer_name(fd, (struct sockaddr *)&peer, sizeof peer, ""), EINVAL);

  /* Naming a peer before the first handshake is what set_peer_name is for;
   * it starts nothing. */
  EXPECT_OK(dtlsplex_set_peer_name(fd, (struct sockaddr *)&named, sizeof named, "localhost"));
  EXPECT_OK(dtlsplex_set_peer_name(fd, (struct sockaddr *)&named, sizeof named, "example.test"));
  struct dtlsplex_stats st;
  EXPECT_OK(dtlsplex_stats(fd, &st));
  ck_assert_uint_eq(st.datagrams_out, 0);
  ck_assert_uint_eq(st.handshakes_active, 0);
  /* The unnamed peer is still unknown. */
  EXPECT_ERR(dtlsplex_close(fd, (struct sockaddr *)&peer, sizeof peer), ENOENT);

  EXPECT_OK(dtlsplex_detach(fd));
  close(fd);
  dtlsplex_config_free(cfg);
}
END_TEST

/* ---------------------------------------------------------------- version */

START_TEST(test_version) {
  const char *v = dtlsplex_version();
  ck_assert_ptr_nonnull(v);
  ck_assert_msg(strncmp(v, "dtlsplex ", 9) == 0, "version \"%s\"", v);
  ck_assert_msg(strlen(v) > 9, "version \"%s\" has no number", v);
}
END_TEST

/* ------------------------------------------------------------------- main */

static TCase *new_tcase(const char *name) {
  TCase *tc = tcase_create(name);
  tcase_set_timeout(tc, 30);
  return tc;
}

static Suite *api_suite(void) {
  Suite *s = suite_create("api");

  TCase *tc = new_tcase("config");
  tcase_add_unchecked_fixture(tc, files_setup, files_teardown);
  tcase_add_test(tc, test_config_new_and_free);
  tcase_add_test(tc, test_config_null_cfg);
  tcase_add_test(tc, test_set_certificate);
  tcase_add_test(tc, test_set_ca);
  tcase_add_test(tc, test_set_verify);
  tcase_add_test(tc, test_set_psk);
  tcase_add_test(tc, test_set_role);
  tcase_add_test(tc, test_set_mtu);
  tcase_add_test(tc, test_set_keylog);
  tcase_add_test(tc, test_set_ciphers);
  tcase_add_test(tc, test_set_timeouts);
  tcase_add_test(tc, test_set_limits);
  tcase_add_test(tc, test_set_fairness);
  tcase_add_test(tc, test_set_cookie_secret);
  tcase_add_test(tc, test_set_callbacks);
  tcase_add_test(tc, test_get_ssl_ctx);
  tcase_add_test(tc, test_setters_busy_while_attached);
  tcase_add_test(tc, test_config_free_while_attached);
  suite_add_tcase(s, tc);

  tc = new_tcase("attach");
  tcase_add_unchecked_fixture(tc, files_setup, files_teardown);
  tcase_add_test(tc, test_attach_null_cfg);
  tcase_add_test(tc, test_attach_bad_fd);
  tcase_add_test(tc, test_attach_not_a_socket);
  tcase_add_test(tc, test_attach_tcp);
  tcase_add_test(tc, test_attach_unix_dgram);
  tcase_add_test(tc, test_attach_twice);
  tcase_add_test(tc, test_attach_server_needs_credentials);
  tcase_add_test(tc, test_attach_ipv6);
  tcase_add_test(tc, test_detach);
  tcase_add_test(tc, test_calls_after_detach);
  suite_add_tcase(s, tc);

  tc = new_tcase("sendto");
  tcase_add_test(tc, test_sendto_unattached);
  tcase_add_test(tc, test_sendto_bad_buffer);
  tcase_add_test(tc, test_sendto_bad_address);
  tcase_add_test(tc, test_sendto_bad_flags);
  tcase_add_test(tc, test_sendto_server_unknown_peer);
  suite_add_tcase(s, tc);

  tc = new_tcase("recvfrom");
  tcase_add_test(tc, test_recvfrom_unattached);
  tcase_add_test(tc, test_recvfrom_bad_arguments);
  tcase_add_test(tc, test_recvfrom_dontwait_empty);
  tcase_add_test(tc, test_recvfrom_rcvtimeo);
  tcase_add_test(tc, test_recvfrom_nonblocking);
  suite_add_tcase(s, tc);

  tc = new_tcase("loop");
  tcase_add_test(tc, test_loop_unattached);
  tcase_add_test(tc, test_loop_idle);
  suite_add_tcase(s, tc);

  tc = new_tcase("peers");
  tcase_add_test(tc, test_peers_unattached);
  tcase_add_test(tc, test_peers_bad_address);
  tcase_add_test(tc, test_peers_unknown);
  suite_add_tcase(s, tc);

  tc = new_tcase("version");
  tcase_add_test(tc, test_version);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(api_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
