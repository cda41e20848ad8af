/* Unit tests for lib/resume_cache.c: the client's last session per server. */
#include <arpa/inet.h>
#include <string.h>

#include <check.h>
#include <openssl/ssl.h>

#include "check_main.h"
#include "resume_cache.h"

static dp_addr_key server(uint16_t port) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET), 0);
  return a.key;
}

/* A session with an id: resumable, as far as the cache can tell. */
static SSL_SESSION *resumable(unsigned char id) {
  SSL_SESSION *s = SSL_SESSION_new();
  unsigned char sid[8] = {id};
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(SSL_SESSION_set1_id(s, sid, sizeof sid), 1);
  return s;
}

static void expect(dp_resume_cache *c, uint16_t port, const char *name, SSL_SESSION *want) {
  dp_addr_key k = server(port);
  SSL_SESSION *got = dp_resume_cache_get(c, &k, name);
  ck_assert_ptr_eq(got, want);
  SSL_SESSION_free(got); /* the caller's reference */
}

/* By address and name: another name (or none) is another server. */
START_TEST(keyed_by_address_and_name) {
  dp_resume_cache *c = dp_resume_cache_new(10);
  SSL_SESSION *one = resumable(1), *two = resumable(2);
  dp_addr_key a = server(1);
  dp_resume_cache_put(c, &a, "a.example", one);
  dp_resume_cache_put(c, &a, NULL, two);
  expect(c, 1, "a.example", one);
  expect(c, 1, NULL, two);
  expect(c, 1, "b.example", NULL);
  expect(c, 2, "a.example", NULL);
  dp_resume_cache_put(c, &a, "a.example", two); /* the last one replaces */
  expect(c, 1, "a.example", two);
  dp_resume_cache_remove(c, &a, "a.example");
  expect(c, 1, "a.example", NULL);
  ck_assert_uint_eq(dp_resume_cache_count(c), 1);
  SSL_SESSION_free(one);
  SSL_SESSION_free(two);
  dp_resume_cache_free(c); /* drops its own references: LeakSanitizer checks */
}
END_TEST

/* Bounded: the oldest goes.  A session that cannot be resumed is not kept. */
START_TEST(bounded_and_resumable_only) {
  dp_resume_cache *c = dp_resume_cache_new(2);
  SSL_SESSION *s[3] = {resumable(1), resumable(2), resumable(3)};
  for (uint16_t i = 0; i < 3; i++) {
    dp_addr_key k = server(i + 1);
    dp_resume_cache_put(c, &k, NULL, s[i]);
  }
  ck_assert_uint_eq(dp_resume_cache_count(c), 2);
  expect(c, 1, NULL, NULL);
  expect(c, 2, NULL, s[1]);
  expect(c, 3, NULL, s[2]);
  SSL_SESSION *fresh = SSL_SESSION_new(); /* no id, no ticket */
  dp_addr_key k = server(9);
  dp_resume_cache_put(c, &k, NULL, fresh);
  expect(c, 9, NULL, NULL);
  SSL_SESSION_free(fresh);
  for (int i = 0; i < 3; i++)
    SSL_SESSION_free(s[i]);
  dp_resume_cache_free(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("resume_cache");
  TCase *tc = tcase_create("resume_cache");
  tcase_add_test(tc, keyed_by_address_and_name);
  tcase_add_test(tc, bounded_and_resumable_only);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
