/* Unit tests for lib/cookie.c: stateless HelloVerifyRequest cookies. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cookie.h"

static const uint8_t master_a[32] = "dtlsplex test master secret A..";
static const uint8_t master_b[32] = "dtlsplex test master secret B..";

/* A wall-clock time well inside a period, and the start of that period. */
#define T0 UINT64_C(1700000012345)
#define PERIOD_START(t) ((t) / DP_COOKIE_PERIOD_MS * DP_COOKIE_PERIOD_MS)

/* A key state made afresh (what the previous one holds is freed). */
static void reinit(dp_cookie_keys *k, const uint8_t *master, size_t master_len) {
  dp_cookie_cleanup(k);
  dp_cookie_init(k, master, master_len);
}

static dp_addr_key v4_key(const char *ip, uint16_t port) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&sin, sizeof sin, AF_INET6), 0);
  return a.key;
}

static dp_addr_key v6_key(const char *ip, uint16_t port, uint32_t scope) {
  struct sockaddr_in6 sin6;
  memset(&sin6, 0, sizeof sin6);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_scope_id = scope;
  ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&sin6, sizeof sin6, AF_INET6), 0);
  return a.key;
}

START_TEST(test_same_address_same_time_verifies) {
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  uint8_t cookie[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&k, &c, T0, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, cookie, sizeof cookie), 1);
  /* Anywhere in the same period. */
  ck_assert_int_eq(dp_cookie_verify(&k, &c, PERIOD_START(T0), cookie, sizeof cookie), 1);
  ck_assert_int_eq(
      dp_cookie_verify(&k, &c, PERIOD_START(T0) + DP_COOKIE_PERIOD_MS - 1, cookie, sizeof cookie),
      1);
  /* Deterministic: the same input gives the same cookie. */
  uint8_t again[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&k, &c, T0 + 1000, again), 0);
  ck_assert_mem_eq(cookie, again, DP_COOKIE_LEN);
  /* Not trivially constant. */
  static const uint8_t zeros[DP_COOKIE_LEN];
  ck_assert_int_ne(memcmp(cookie, zeros, DP_COOKIE_LEN), 0);

  /* Same for an IPv6 peer. */
  dp_addr_key c6 = v6_key("2001:db8::7", 5684, 0);
  ck_assert_int_eq(dp_cookie_make(&k, &c6, T0, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c6, T0, cookie, sizeof cookie), 1);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_other_ip_or_port_rejected) {
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  dp_addr_key other_ip = v4_key("192.0.2.2", 4433);
  dp_addr_key other_port = v4_key("192.0.2.1", 4434);
  uint8_t cookie[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&k, &c, T0, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &other_ip, T0, cookie, sizeof cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &other_port, T0, cookie, sizeof cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, cookie, sizeof cookie), 1);

  /* Their own cookies differ from c's. */
  uint8_t c2[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&k, &other_ip, T0, c2), 0);
  ck_assert_int_ne(memcmp(cookie, c2, DP_COOKIE_LEN), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, c2, sizeof c2), 0);
  ck_assert_int_eq(dp_cookie_make(&k, &other_port, T0, c2), 0);
  ck_assert_int_ne(memcmp(cookie, c2, DP_COOKIE_LEN), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, c2, sizeof c2), 0);

  /* IPv6: another interface (scope id) is another peer. */
  dp_addr_key ll3 = v6_key("fe80::1", 4433, 3);
  dp_addr_key ll4 = v6_key("fe80::1", 4433, 4);
  ck_assert_int_eq(dp_cookie_make(&k, &ll3, T0, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &ll3, T0, cookie, sizeof cookie), 1);
  ck_assert_int_eq(dp_cookie_verify(&k, &ll4, T0, cookie, sizeof cookie), 0);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_wrong_length_rejected) {
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  uint8_t buf[DP_COOKIE_LEN + 1];
  ck_assert_int_eq(dp_cookie_make(&k, &c, T0, buf), 0);
  buf[DP_COOKIE_LEN] = 0;
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, DP_COOKIE_LEN), 1);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, DP_COOKIE_LEN - 1), 0); /* prefix */
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, DP_COOKIE_LEN + 1), 0); /* extra byte */
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, 16), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, 1), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, buf, 0), 0);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_flipped_bit_rejected) {
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  uint8_t cookie[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&k, &c, T0, cookie), 0);
  /* Every single bit of the cookie is checked. */
  for (size_t bit = 0; bit < DP_COOKIE_LEN * 8; bit++) {
    uint8_t bad[DP_COOKIE_LEN];
    memcpy(bad, cookie, sizeof bad);
    bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    ck_assert_msg(dp_cookie_verify(&k, &c, T0, bad, sizeof bad) == 0, "bit %zu flipped accepted",
                  bit);
  }
  ck_assert_int_eq(dp_cookie_verify(&k, &c, T0, cookie, sizeof cookie), 1);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_previous_period_accepted_older_rejected) {
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  uint8_t cookie[DP_COOKIE_LEN];
  const uint64_t p0 = PERIOD_START(T0);
  const uint64_t made = p0 + DP_COOKIE_PERIOD_MS - 1; /* last ms of period P */

  /* Fresh key state for every verify: each goes through key derivation. */
  dp_cookie_keys maker, v;
  dp_cookie_init(&maker, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_make(&maker, &c, made, cookie), 0);

  dp_cookie_init(&v, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_verify(&v, &c, p0 + DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN),
                   1); /* first ms of P+1 */
  reinit(&v, master_a, sizeof master_a);
  ck_assert_int_eq(
      dp_cookie_verify(&v, &c, p0 + 2 * DP_COOKIE_PERIOD_MS - 1, cookie, DP_COOKIE_LEN),
      1); /* last ms of P+1 */
  reinit(&v, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_verify(&v, &c, p0 + 2 * DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN),
                   0); /* first ms of P+2 */
  reinit(&v, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_verify(&v, &c, p0 + 10 * DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN),
                   0);

  /* The same with one key state carried along (the cur -> prev rotation). */
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_make(&k, &c, made, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, made, cookie, DP_COOKIE_LEN), 1);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, made + 1, cookie, DP_COOKIE_LEN), 1);
  ck_assert_int_eq(dp_cookie_verify(&k, &c, made + DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN),
                   1);
  ck_assert_int_eq(
      dp_cookie_verify(&k, &c, made + DP_COOKIE_PERIOD_MS + 1, cookie, DP_COOKIE_LEN), 0);
  /* And jumps of two and of several periods at once. */
  reinit(&k, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_make(&k, &c, made, cookie), 0);
  ck_assert_int_eq(
      dp_cookie_verify(&k, &c, made + 2 * DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN), 0);
  reinit(&k, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_make(&k, &c, made, cookie), 0);
  ck_assert_int_eq(
      dp_cookie_verify(&k, &c, made + 5 * DP_COOKIE_PERIOD_MS, cookie, DP_COOKIE_LEN), 0);

  /* A cookie made in P+1 is a different cookie, and is good in P+1 and P+2. */
  uint8_t next[DP_COOKIE_LEN];
  reinit(&k, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_make(&k, &c, made + 1, next), 0);
  ck_assert_int_ne(memcmp(cookie, next, DP_COOKIE_LEN), 0);
  ck_assert_int_eq(
      dp_cookie_verify(&k, &c, made + 1 + DP_COOKIE_PERIOD_MS, next, DP_COOKIE_LEN), 1);
  /* A cookie from the future (next period) is not accepted now. */
  reinit(&v, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_verify(&v, &c, made, next, DP_COOKIE_LEN), 0);
  dp_cookie_cleanup(&maker);
  dp_cookie_cleanup(&v);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_different_master_rejected) {
  dp_cookie_keys a, b;
  dp_cookie_init(&a, master_a, sizeof master_a);
  dp_cookie_init(&b, master_b, sizeof master_b);
  dp_addr_key c = v4_key("192.0.2.1", 4433);
  uint8_t cookie[DP_COOKIE_LEN], other[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&a, &c, T0, cookie), 0);
  ck_assert_int_eq(dp_cookie_verify(&b, &c, T0, cookie, sizeof cookie), 0);
  ck_assert_int_eq(dp_cookie_make(&b, &c, T0, other), 0);
  ck_assert_int_ne(memcmp(cookie, other, DP_COOKIE_LEN), 0);
  ck_assert_int_eq(dp_cookie_verify(&a, &c, T0, other, sizeof other), 0);
  /* Nor in the next period (the previous key is per master too). */
  ck_assert_int_eq(dp_cookie_verify(&b, &c, T0 + DP_COOKIE_PERIOD_MS, cookie, sizeof cookie), 0);

  /* A master that is a prefix of another is a different master.  (Not one
   * that differs only by trailing zero bytes: HMAC pads keys with zeros.) */
  dp_cookie_keys shorter;
  dp_cookie_init(&shorter, master_a, 16);
  ck_assert_int_eq(dp_cookie_verify(&shorter, &c, T0, cookie, sizeof cookie), 0);
  dp_cookie_cleanup(&a);
  dp_cookie_cleanup(&b);
  dp_cookie_cleanup(&shorter);
}
END_TEST

START_TEST(test_fleet_shares_cookies) {
  uint8_t copy[sizeof master_a];
  memcpy(copy, master_a, sizeof copy); /* another server's own copy of the secret */
  dp_cookie_keys s1, s2;
  dp_cookie_init(&s1, master_a, sizeof master_a);
  dp_cookie_init(&s2, copy, sizeof copy);
  memset(copy, 0, sizeof copy); /* init must have copied it */
  dp_addr_key c = v6_key("2001:db8::99", 40000, 0);
  uint8_t c1[DP_COOKIE_LEN], c2[DP_COOKIE_LEN];
  ck_assert_int_eq(dp_cookie_make(&s1, &c, T0, c1), 0);
  ck_assert_int_eq(dp_cookie_make(&s2, &c, T0 + 500, c2), 0);
  ck_assert_mem_eq(c1, c2, DP_COOKIE_LEN);
  ck_assert_int_eq(dp_cookie_verify(&s2, &c, T0, c1, sizeof c1), 1);
  ck_assert_int_eq(dp_cookie_verify(&s1, &c, T0, c2, sizeof c2), 1);
  /* Across a period boundary between servers: s1 made it, s2 sees it a
   * period later. */
  dp_cookie_keys s3;
  dp_cookie_init(&s3, master_a, sizeof master_a);
  ck_assert_int_eq(dp_cookie_verify(&s3, &c, T0 + DP_COOKIE_PERIOD_MS, c1, sizeof c1), 1);
  /* And still bound to the address. */
  dp_addr_key other = v6_key("2001:db8::99", 40001, 0);
  ck_assert_int_eq(dp_cookie_verify(&s2, &other, T0, c1, sizeof c1), 0);
  dp_cookie_cleanup(&s1);
  dp_cookie_cleanup(&s2);
  dp_cookie_cleanup(&s3);
}
END_TEST

/* DTLS 1.2 sizes (RFC 6347): record header, handshake header. */
#define DTLS_RECORD_HEADER 13
#define DTLS_HANDSHAKE_HEADER 12
/* HelloVerifyRequest body: server_version (2), cookie length (1), cookie. */
#define HVR_FIXED 3
/* Smallest ClientHello: version 2, random 32, session_id len 1 (empty),
 * cookie len 1 (empty), cipher_suites len 2 + one suite 2, compression
 * methods len 1 + null 1; no extensions. */
#define CH_BODY_MIN (2 + 32 + 1 + 1 + 2 + 2 + 1 + 1)

_Static_assert(DP_COOKIE_LEN == 32, "cookie length");
_Static_assert(DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + HVR_FIXED + DP_COOKIE_LEN == 60,
               "HelloVerifyRequest size");
_Static_assert(DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + CH_BODY_MIN == 67,
               "minimal ClientHello size");

/* The cookie is HMAC-SHA256 of the address key under the period's key,
 * whatever way it is computed: servers of a fleet running other builds
 * agree. */
START_TEST(test_cookie_is_hmac_sha256) {
  dp_cookie_keys k;
  dp_cookie_init(&k, master_a, sizeof master_a);
  dp_addr_key client = v4_key("192.0.2.7", 5683);
  uint8_t cookie[DP_COOKIE_LEN], expect[32];
  ck_assert_int_eq(dp_cookie_make(&k, &client, T0, cookie), 0);
  unsigned int len = 0;
  ck_assert_ptr_nonnull(HMAC(EVP_sha256(), k.cur, 32, (const uint8_t *)&client, sizeof client, expect, &len));
  ck_assert_mem_eq(cookie, expect, sizeof expect);
  dp_cookie_cleanup(&k);
}
END_TEST

START_TEST(test_no_amplification) {
  ck_assert_int_eq(DP_COOKIE_LEN, 32);
  int hvr = DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + HVR_FIXED + DP_COOKIE_LEN;
  int min_client_hello = DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER + CH_BODY_MIN;
  ck_assert_int_eq(hvr, 60);
  ck_assert_int_eq(min_client_hello, 67);
  ck_assert_int_lt(hvr, min_client_hello);
  /* The cookie fits the DTLS 1.2 cookie field (opaque cookie<0..2^8-1>). */
  ck_assert_int_le(DP_COOKIE_LEN, 255);
  /* The period is 60 s as documented. */
  ck_assert_int_eq(DP_COOKIE_PERIOD_MS, 60000);
}
END_TEST

static Suite *cookie_suite(void) {
  Suite *s = suite_create("cookie");
  TCase *tc = tcase_create("verify");
  tcase_add_test(tc, test_same_address_same_time_verifies);
  tcase_add_test(tc, test_other_ip_or_port_rejected);
  tcase_add_test(tc, test_wrong_length_rejected);
  tcase_add_test(tc, test_flipped_bit_rejected);
  suite_add_tcase(s, tc);

  tc = tcase_create("keys");
  tcase_add_test(tc, test_previous_period_accepted_older_rejected);
  tcase_add_test(tc, test_different_master_rejected);
  tcase_add_test(tc, test_fleet_shares_cookies);
  suite_add_tcase(s, tc);

  tc = tcase_create("size");
  tcase_add_test(tc, test_no_amplification);
  tcase_add_test(tc, test_cookie_is_hmac_sha256);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(cookie_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
