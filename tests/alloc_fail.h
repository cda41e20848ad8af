/* Allocation failure on demand, for the library's own allocations and
 * OpenSSL's: counts the allocations of a stretch of a test and makes the nth
 * one fail, and keeps each run's allocations until they are freed, so
 * that a run can be checked to free everything it allocated (without a
 * leak checker: plain builds have none).
 *
 * The library's malloc, calloc, realloc, strdup and free reach it through
 * the linker (-Wl,--wrap=...: see alloc_fail.c); OpenSSL's through
 * CRYPTO_set_mem_functions, which alloc_fail_install() calls. */
#ifndef TESTS_ALLOC_FAIL_H
#define TESTS_ALLOC_FAIL_H

#include <check.h>

/* First thing in main, before OpenSSL allocates anything. */
void alloc_fail_install(void);

/* Counts allocations from now on, from 1; the nth fails (0: none does). */
void alloc_fail_count(unsigned long nth);
/* Allocations between pause and resume are neither counted nor failed:
 * the other side of a handshake, say, while one side's are under test.
 * Pauses nest: counting goes on once each has been resumed. */
void alloc_fail_pause(void);
void alloc_fail_resume(void);
void alloc_fail_stop(void);
/* ck_assert_msg, not counted: Check's assertions allocate (its record of
 * where the test has got to). */
#define alloc_fail_assert(...)      \
  do {                              \
    alloc_fail_pause();             \
    ck_assert_msg(__VA_ARGS__);     \
    alloc_fail_resume();            \
  } while (0)

/* Runs run(nth, arg) for nth = 1, 2, ... until a run ends with no failure
 * injected (every allocation of its stretch has then failed once), each
 * run tracked and checked to leave nothing allocated.  Prints and returns
 * the number of injection points: the allocations of the stretch. */
unsigned long alloc_fail_sweep(const char *name, void (*run)(unsigned long nth, void *arg), void *arg);

#endif
