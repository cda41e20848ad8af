/* The main() every Check program here shares: run one suite, exit with its verdict. */
#ifndef TESTS_CHECK_MAIN_H
#define TESTS_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int run_suite(Suite *s, enum fork_status fork_mode) {
  SRunner *sr = srunner_create(s);
  if (fork_mode != CK_FORK_GETENV)
    srunner_set_fork_status(sr, fork_mode);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
