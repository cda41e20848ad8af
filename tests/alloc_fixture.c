#include "alloc_fixture.h"

#include "alloc_fail.h"
#include "check_main.h"

test_pki alloc_pki;

static void ignore_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)event, (void)peer, (void)len, (void)error, (void)arg;
}

dtlsplex_config *alloc_config(int server_side) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(cfg, ignore_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, ALLOC_HANDSHAKE_MS, 600000), 0);
  if (server_side) {
    ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, alloc_pki.server_cert, alloc_pki.server_key), 0);
    ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER), 0);
  } else {
    ck_assert_int_eq(dtlsplex_config_set_ca(cfg, alloc_pki.ca, NULL), 0);
  }
  return cfg;
}

static void setup(void) { ck_assert_int_eq(test_pki_make(&alloc_pki), 0); }
static void teardown(void) { test_pki_remove(&alloc_pki); }

int alloc_tests_main(const char *name, const TTest *const *tests, size_t n) {
  alloc_fail_install(); /* before anything of OpenSSL's */
  Suite *s = suite_create(name);
  TCase *tc = tcase_create(name);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 120);
  for (size_t i = 0; i < n; i++)
    tcase_add_test(tc, tests[i]);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
