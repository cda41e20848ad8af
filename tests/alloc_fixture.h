/* What the allocation failure tests (test_alloc, test_alloc_core) share:
 * a PKI made for each test, their configurations, and main(). */
#ifndef TESTS_ALLOC_FIXTURE_H
#define TESTS_ALLOC_FIXTURE_H

#include <check.h>
#include <stddef.h>

#include "certs.h"
#include "dtlsplex.h"

#define ALLOC_HANDSHAKE_MS 5000

extern test_pki alloc_pki;

/* A server's configuration (its certificate, the server role) or a
 * client's (the CA), with a handshake timeout of ALLOC_HANDSHAKE_MS. */
dtlsplex_config *alloc_config(int server_side);

/* main(): installs alloc_fail, then runs the tests, each with a fresh PKI. */
int alloc_tests_main(const char *name, const TTest *const *tests, size_t n);

#endif
