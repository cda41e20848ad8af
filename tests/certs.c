#include "certs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static EVP_PKEY *make_key(void) {
  EVP_PKEY *key = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
  if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) == 1)
    EVP_PKEY_keygen(ctx, &key);
  EVP_PKEY_CTX_free(ctx);
  return key;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
  int ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/* A certificate for key named cn, signed by issuer (self-signed if NULL); a
 * CA if self-signed or is_ca, else a leaf for localhost, 127.0.0.1 and ::1. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long serial, int is_ca) {
  X509 *cert = X509_new();
  if (cert == NULL)
    return NULL;
  X509_NAME *name = X509_get_subject_name(cert);
  int ok = X509_set_version(cert, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(cert), serial) == 1 &&
           X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL &&
           X509_gmtime_adj(X509_getm_notAfter(cert), 86400) != NULL && X509_set_pubkey(cert, key) == 1 &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
           X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) == 1;
  X509 *signer = issuer ? issuer : cert;
  if (ok && (issuer == NULL || is_ca))
    ok = add_ext(cert, signer, NID_basic_constraints, issuer ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE") &&
         add_ext(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  else if (ok)
    ok = add_ext(cert, signer, NID_basic_constraints, "CA:FALSE") &&
         add_ext(cert, signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  if (ok)
    ok = add_ext(cert, signer, NID_subject_key_identifier, "hash") &&
         X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(cert);
    return NULL;
  }
  return cert;
}

/* Writes cert (then chain_next, if any), or the key. */
static int write_pem(const char *path, X509 *cert, X509 *chain_next, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return 0;
  int ok = cert ? PEM_write_X509(f, cert) == 1 && (chain_next == NULL || PEM_write_X509(f, chain_next) == 1)
                : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
  return fclose(f) == 0 && ok;
}

int test_pki_make(test_pki *pki) {
  memset(pki, 0, sizeof *pki);
  snprintf(pki->dir, sizeof pki->dir, "/tmp/dtlsplex-pki-XXXXXX");
  if (mkdtemp(pki->dir) == NULL)
    return -1;
  snprintf(pki->ca, sizeof pki->ca, "%s/ca.pem", pki->dir);
  snprintf(pki->server_cert, sizeof pki->server_cert, "%s/server.pem", pki->dir);
  snprintf(pki->server_key, sizeof pki->server_key, "%s/server.key", pki->dir);
  snprintf(pki->client_cert, sizeof pki->client_cert, "%s/client.pem", pki->dir);
  snprintf(pki->client_key, sizeof pki->client_key, "%s/client.key", pki->dir);
  snprintf(pki->other_ca, sizeof pki->other_ca, "%s/other-ca.pem", pki->dir);
  snprintf(pki->root, sizeof pki->root, "%s/root.pem", pki->dir);
  snprintf(pki->server_chain, sizeof pki->server_chain, "%s/server-chain.pem", pki->dir);
  snprintf(pki->server_chain_key, sizeof pki->server_chain_key, "%s/server-chain.key", pki->dir);
  snprintf(pki->client_chain, sizeof pki->client_chain, "%s/client-chain.pem", pki->dir);
  snprintf(pki->client_chain_key, sizeof pki->client_chain_key, "%s/client-chain.key", pki->dir);

  enum { CA, SERVER, CLIENT, OTHER, ROOT, INTER, SERVER3, CLIENT3, N };
  EVP_PKEY *keys[N];
  X509 *certs[N] = {0};
  int ok = 1;
  for (int i = 0; i < N; i++)
    ok &= (keys[i] = make_key()) != NULL;
  ok = ok && (certs[CA] = make_cert(keys[CA], "dtlsplex test CA", NULL, NULL, 1, 1)) != NULL;
  ok = ok && (certs[SERVER] = make_cert(keys[SERVER], "localhost", certs[CA], keys[CA], 2, 0)) != NULL;
  ok = ok && (certs[CLIENT] = make_cert(keys[CLIENT], "test client", certs[CA], keys[CA], 3, 0)) != NULL;
  ok = ok && (certs[OTHER] = make_cert(keys[OTHER], "unrelated CA", NULL, NULL, 4, 1)) != NULL;
  /* The three levels every public CA has: root, intermediate, leaf. */
  ok = ok && (certs[ROOT] = make_cert(keys[ROOT], "dtlsplex test root", NULL, NULL, 5, 1)) != NULL;
  ok = ok && (certs[INTER] = make_cert(keys[INTER], "dtlsplex test intermediate", certs[ROOT], keys[ROOT], 6, 1)) != NULL;
  ok = ok && (certs[SERVER3] = make_cert(keys[SERVER3], "localhost", certs[INTER], keys[INTER], 7, 0)) != NULL;
  ok = ok && (certs[CLIENT3] = make_cert(keys[CLIENT3], "chained client", certs[INTER], keys[INTER], 8, 0)) != NULL;
  ok = ok && write_pem(pki->ca, certs[CA], NULL, NULL) && write_pem(pki->server_cert, certs[SERVER], NULL, NULL) &&
       write_pem(pki->server_key, NULL, NULL, keys[SERVER]) && write_pem(pki->client_cert, certs[CLIENT], NULL, NULL) &&
       write_pem(pki->client_key, NULL, NULL, keys[CLIENT]) && write_pem(pki->other_ca, certs[OTHER], NULL, NULL) &&
       write_pem(pki->root, certs[ROOT], NULL, NULL) &&
       write_pem(pki->server_chain, certs[SERVER3], certs[INTER], NULL) &&
       write_pem(pki->server_chain_key, NULL, NULL, keys[SERVER3]) &&
       write_pem(pki->client_chain, certs[CLIENT3], certs[INTER], NULL) &&
       write_pem(pki->client_chain_key, NULL, NULL, keys[CLIENT3]);
  for (int i = 0; i < N; i++) {
    X509_free(certs[i]);
    EVP_PKEY_free(keys[i]);
  }
  if (!ok)
    test_pki_remove(pki);
  return ok ? 0 : -1;
}

void test_pki_remove(test_pki *pki) {
  const char *files[] = {pki->ca,     pki->server_cert,  pki->server_key,       pki->client_cert,
                         pki->client_key, pki->other_ca, pki->root,             pki->server_chain,
                         pki->server_chain_key, pki->client_chain, pki->client_chain_key};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++)
    if (files[i][0] != '\0')
      unlink(files[i]);
  if (pki->dir[0] != '\0')
    rmdir(pki->dir);
}
