/* A throwaway PKI for tests, made in-process with OpenSSL: a CA, a server
 * certificate for "localhost" and a client certificate signed by it, and an
 * unrelated CA that trusts neither.  Beside it, three levels as every public
 * CA has: a root, an intermediate it signed, and a server and a client
 * certificate the intermediate signed, whose files hold the leaf then the
 * intermediate. */
#ifndef TESTS_CERTS_H
#define TESTS_CERTS_H

typedef struct test_pki {
  char dir[64];
  char ca[128];
  char server_cert[128], server_key[128];
  char client_cert[128], client_key[128];
  char other_ca[128];
  char root[128];
  char server_chain[128], server_chain_key[128];
  char client_chain[128], client_chain_key[128];
} test_pki;

/* Returns 0, or -1 if anything failed. */
int test_pki_make(test_pki *pki);
void test_pki_remove(test_pki *pki);

#endif
