/* The per-source accounting: prefixes, shares, the handshake budget, and
 * how long a source holding nothing is remembered. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>

#include "sources.h"
#include "check_main.h"

static dp_addr_key key_of(const char *ip, uint16_t port) {
  dp_addr a;
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
  if (inet_pton(AF_INET, ip, &in.sin_addr) == 1) {
    ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET6), 0);
  } else {
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in6, sizeof in6, AF_INET6), 0);
  }
  return a.key;
}

static const dp_source_limits defaults = {
    .v4_prefix = 32, .v6_prefix = 64, .max_sessions = 3, .max_handshakes = 2, .per_second = 10, .burst = 4};

START_TEST(prefixes_group_addresses) {
  dp_sources t;
  dp_source_limits l = defaults;
  l.v4_prefix = 24;
  dp_sources_init(&t, &l, 100);
  dp_source *a = dp_sources_get(&t, &(dp_addr_key){0}, 0);
  ck_assert_ptr_nonnull(a);
  dp_addr_key k1 = key_of("192.0.2.1", 1), k2 = key_of("192.0.2.200", 2), k3 = key_of("192.0.3.1", 1);
  dp_addr_key k4 = key_of("2001:db8:1:2::1", 1), k5 = key_of("2001:db8:1:2:ffff::9", 7), k6 = key_of("2001:db8:1:3::1", 1);
  dp_source *s1 = dp_sources_get(&t, &k1, 0);
  ck_assert_ptr_eq(dp_sources_get(&t, &k2, 0), s1); /* same /24, any port */
  ck_assert_ptr_ne(dp_sources_get(&t, &k3, 0), s1);
  dp_source *s4 = dp_sources_get(&t, &k4, 0);
  ck_assert_ptr_eq(dp_sources_get(&t, &k5, 0), s4); /* same /64 */
  ck_assert_ptr_ne(dp_sources_get(&t, &k6, 0), s4);
  ck_assert_ptr_ne(s4, s1);
  /* An IPv4 address and an IPv6 one that shares its last bytes stay apart. */
  dp_addr_key k7 = key_of("::c000:201", 1);
  ck_assert_ptr_ne(dp_sources_get(&t, &k7, 0), s1);
  dp_sources_clear(&t);
}
END_TEST

START_TEST(odd_prefix_lengths_mask_bits) {
  dp_sources t;
  dp_source_limits l = defaults;
  l.v4_prefix = 20;
  l.v6_prefix = 57;
  dp_sources_init(&t, &l, 100);
  dp_addr_key a = key_of("10.0.0.1", 1), b = key_of("10.0.15.255", 1), c = key_of("10.0.16.0", 1);
  dp_source *sa = dp_sources_get(&t, &a, 0);
  ck_assert_ptr_eq(dp_sources_get(&t, &b, 0), sa);
  ck_assert_ptr_ne(dp_sources_get(&t, &c, 0), sa);
  dp_addr_key d = key_of("2001:db8:0:7f::1", 1), e = key_of("2001:db8:0:0::1", 1), f = key_of("2001:db8:0:80::1", 1);
  dp_source *sd = dp_sources_get(&t, &d, 0);
  ck_assert_ptr_eq(dp_sources_get(&t, &e, 0), sd);
  ck_assert_ptr_ne(dp_sources_get(&t, &f, 0), sd);
  dp_sources_clear(&t);
}
END_TEST

START_TEST(shares_bound_sessions_and_handshakes) {
  dp_sources t;
  dp_sources_init(&t, &defaults, 100);
  dp_addr_key k = key_of("192.0.2.1", 1);
  dp_source *s = dp_sources_get(&t, &k, 0);
  ck_assert(dp_sources_may_open(&t, s, 1));
  s = dp_sources_adjust(&t, s, 1, 1, 0);
  s = dp_sources_adjust(&t, s, 1, 1, 0);
  ck_assert(!dp_sources_may_open(&t, s, 1)); /* 2 handshakes in progress */
  s = dp_sources_adjust(&t, s, 0, -2, 0);
  s = dp_sources_adjust(&t, s, 1, 0, 0);
  ck_assert(!dp_sources_may_open(&t, s, 1)); /* 3 sessions */
  ck_assert(dp_sources_may_open(&t, s, 0));  /* a reconnection needs no new session */
  dp_sources_clear(&t);
}
END_TEST

START_TEST(budget_is_a_token_bucket) {
  dp_sources t;
  dp_sources_init(&t, &defaults, 100);
  dp_addr_key k = key_of("192.0.2.1", 1);
  dp_source *s = dp_sources_get(&t, &k, 1000);
  for (int i = 0; i < 4; i++)
    ck_assert(dp_sources_take_handshake(&t, s, 1000));
  ck_assert(!dp_sources_take_handshake(&t, s, 1000));
  ck_assert(!dp_sources_take_handshake(&t, s, 1099));
  ck_assert(dp_sources_take_handshake(&t, s, 1100)); /* one per 100 ms */
  ck_assert(!dp_sources_take_handshake(&t, s, 1150));
  /* After a long pause, the burst again and no more. */
  int taken = 0;
  while (dp_sources_take_handshake(&t, s, 60000))
    taken++;
  ck_assert_int_eq(taken, 4);
  /* A handshake found to be full once started is charged even when spent:
   * the debt delays the next one. */
  ck_assert(!dp_sources_budget_left(&t, s, 60000));
  dp_sources_charge_handshake(&t, s, 60000);
  ck_assert(!dp_sources_take_handshake(&t, s, 60099));
  ck_assert(!dp_sources_take_handshake(&t, s, 60199));
  ck_assert(dp_sources_budget_left(&t, s, 60200));
  ck_assert(dp_sources_take_handshake(&t, s, 60200));
  dp_source_limits off = defaults;
  off.per_second = 0;
  dp_sources_set_limits(&t, &off, 100);
  for (int i = 0; i < 1000; i++)
    ck_assert(dp_sources_take_handshake(&t, s, 60000));
  dp_sources_clear(&t);
}
END_TEST

/* A source that spent its budget and holds nothing is remembered until the
 * bucket is full again: letting its handshakes fail gives it nothing back. */
START_TEST(spent_source_remembered_until_refilled) {
  dp_sources t;
  dp_sources_init(&t, &defaults, 100);
  dp_addr_key k = key_of("192.0.2.1", 1), other = key_of("192.0.2.2", 1), third = key_of("192.0.2.3", 1);
  dp_source *s = dp_sources_get(&t, &k, 0);
  for (int i = 0; i < 4; i++)
    ck_assert(dp_sources_take_handshake(&t, s, 0)); /* full again at 400 ms */
  s = dp_sources_adjust(&t, s, 1, 1, 0);
  ck_assert_ptr_eq(dp_sources_adjust(&t, s, -1, -1, 10), s); /* holds nothing, kept */
  ck_assert_ptr_eq(dp_sources_get(&t, &k, 50), s);
  ck_assert(!dp_sources_take_handshake(&t, s, 50));
  dp_sources_get(&t, &other, 399);
  ck_assert_uint_eq(t.count, 2);
  dp_sources_get(&t, &third, 400); /* both full by now: forgotten */
  ck_assert_uint_eq(t.count, 1);
  /* A source whose bucket is full is forgotten as soon as it holds nothing. */
  s = dp_sources_adjust(&t, dp_sources_get(&t, &k, 400), 1, 0, 400);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(t.count, 1); /* third (idle, full) forgotten when k was made anew */
  ck_assert_ptr_null(dp_sources_adjust(&t, s, -1, 0, 400));
  ck_assert_uint_eq(t.count, 0);
}
END_TEST

START_TEST(idle_sources_bounded) {
  dp_sources t;
  dp_sources_init(&t, &defaults, 10);
  for (int i = 0; i < 100; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250 + 1);
    dp_addr_key k = key_of(ip, 1);
    dp_source *s = dp_sources_get(&t, &k, 0);
    ck_assert_ptr_nonnull(s);
    ck_assert(dp_sources_take_handshake(&t, s, 0)); /* not full: kept while idle */
  }
  ck_assert_uint_le(t.count, 11);
  /* Those holding sessions are never forgotten. */
  dp_addr_key held = key_of("192.0.2.9", 1);
  dp_source *h = dp_sources_adjust(&t, dp_sources_get(&t, &held, 0), 1, 0, 0);
  for (int i = 0; i < 50; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "10.1.0.%d", i + 1);
    dp_addr_key k = key_of(ip, 1);
    dp_sources_take_handshake(&t, dp_sources_get(&t, &k, 0), 0);
  }
  ck_assert_ptr_eq(dp_sources_get(&t, &held, 0), h);
  ck_assert_uint_eq(h->sessions, 1);
  dp_sources_clear(&t);
}
END_TEST

static Suite *sources_suite(void) {
  Suite *s = suite_create("sources");
  TCase *tc = tcase_create("sources");
  tcase_add_test(tc, prefixes_group_addresses);
  tcase_add_test(tc, odd_prefix_lengths_mask_bits);
  tcase_add_test(tc, shares_bound_sessions_and_handshakes);
  tcase_add_test(tc, budget_is_a_token_bucket);
  tcase_add_test(tc, spent_source_remembered_until_refilled);
  tcase_add_test(tc, idle_sources_bounded);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(sources_suite(), CK_FORK_GETENV); }
