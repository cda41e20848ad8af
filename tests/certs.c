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

/* A certificate for key named cn, signed by issuer (self-signed if NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long serial) {
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
  if (ok && issuer == NULL)
    ok = add_ext(cert, signer, NID_basic_constraints, "critical,CA:TRUE") &&
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

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return 0;
  int ok = cert ? PEM_write_X509(f, cert) == 1 : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
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

  EVP_PKEY *ca_key = make_key(), *server_key = make_key(), *client_key = make_key(), *other_key = make_key();
  X509 *ca = NULL, *server = NULL, *client = NULL, *other = NULL;
  int ok = ca_key && server_key && client_key && other_key;
  ok = ok && (ca = make_cert(ca_key, "dtlsplex test CA", NULL, NULL, 1)) != NULL;
  ok = ok && (server = make_cert(server_key, "localhost", ca, ca_key, 2)) != NULL;
  ok = ok && (client = make_cert(client_key, "test client", ca, ca_key, 3)) != NULL;
  ok = ok && (other = make_cert(other_key, "unrelated CA", NULL, NULL, 4)) != NULL;
  ok = ok && write_pem(pki->ca, ca, NULL) && write_pem(pki->server_cert, server, NULL) &&
       write_pem(pki->server_key, NULL, server_key) && write_pem(pki->client_cert, client, NULL) &&
       write_pem(pki->client_key, NULL, client_key) && write_pem(pki->other_ca, other, NULL);
  X509_free(ca);
  X509_free(server);
  X509_free(client);
  X509_free(other);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(client_key);
  EVP_PKEY_free(other_key);
  if (!ok)
    test_pki_remove(pki);
  return ok ? 0 : -1;
}

void test_pki_remove(test_pki *pki) {
  const char *files[] = {pki->ca, pki->server_cert, pki->server_key, pki->client_cert, pki->client_key,
                         pki->other_ca};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++)
    if (files[i][0] != '\0')
      unlink(files[i]);
  if (pki->dir[0] != '\0')
    rmdir(pki->dir);
}
