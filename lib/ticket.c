#include "ticket.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#endif

#include "dgram_bio.h"
#include "once.h"

int dp_ticket_keys_init(dp_ticket_keys *k, const uint8_t *master, size_t master_len, unsigned int period_s) {
  memset(k, 0, sizeof *k);
  if (pthread_mutex_init(&k->lock, NULL) != 0)
    return -ENOMEM;
  dp_ticket_keys_set(k, master, master_len);
  k->period_s = period_s;
  return 0;
}

void dp_ticket_keys_set(dp_ticket_keys *k, const uint8_t *master, size_t master_len) {
  if (master_len > sizeof k->master)
    master_len = sizeof k->master;
  OPENSSL_cleanse(k->master, sizeof k->master);
  OPENSSL_cleanse(k->recent, sizeof k->recent);
  memcpy(k->master, master, master_len);
  k->master_len = master_len;
}

void dp_ticket_keys_set_period(dp_ticket_keys *k, unsigned int period_s) {
  OPENSSL_cleanse(k->recent, sizeof k->recent);
  k->period_s = period_s;
}

void dp_ticket_keys_cleanup(dp_ticket_keys *k) {
  OPENSSL_cleanse(k->master, sizeof k->master);
  OPENSSL_cleanse(k->recent, sizeof k->recent);
  pthread_mutex_destroy(&k->lock);
}

/* HMAC-SHA256(master, label || period): each key of each period its own. */
static int derive(const dp_ticket_keys *k, const char *label, uint64_t period, uint8_t out[32]) {
  uint8_t msg[40];
  size_t label_len = strlen(label);
  memcpy(msg, label, label_len);
  for (int i = 0; i < 8; i++)
    msg[label_len + (size_t)i] = (uint8_t)(period >> (56 - 8 * i));
  unsigned int len = 0;
  return HMAC(EVP_sha256(), k->master, (int)k->master_len, msg, label_len + 8, out, &len) != NULL && len == 32
             ? 0
             : -EPROTO;
}

/* The key of period, from the two kept or derived (replacing the older). */
static int key_of_period(dp_ticket_keys *k, uint64_t period, dp_ticket_key *out) {
  int r = 0;
  pthread_mutex_lock(&k->lock);
  int i = 0;
  while (i < 2 && !(k->recent[i].valid && k->recent[i].period == period))
    i++;
  if (i == 2) {
    uint8_t name[32];
    dp_ticket_key fresh = {.period = period, .valid = 1};
    i = !k->recent[0].valid || k->recent[0].period < k->recent[1].period ? 0 : 1;
    if (derive(k, "dtlsplex ticket name ", period, name) == 0 && derive(k, "dtlsplex ticket aes ", period, fresh.aes) == 0 &&
        derive(k, "dtlsplex ticket mac ", period, fresh.mac) == 0) {
      memcpy(fresh.name, name, sizeof fresh.name);
      k->recent[i] = fresh;
    } else {
      r = -EPROTO;
    }
    OPENSSL_cleanse(&fresh, sizeof fresh);
  }
  if (r == 0)
    *out = k->recent[i];
  pthread_mutex_unlock(&k->lock);
  return r;
}

int dp_ticket_key_to_seal(dp_ticket_keys *k, uint64_t now_ms, dp_ticket_key *out) {
  return key_of_period(k, now_ms / 1000 / k->period_s, out);
}

int dp_ticket_key_to_open(dp_ticket_keys *k, const uint8_t name[DP_TICKET_NAME_LEN], uint64_t now_ms,
                          dp_ticket_key *out) {
  uint64_t period = now_ms / 1000 / k->period_s;
  for (int age = 0; age < 2 && age <= (int)period; age++)
    if (key_of_period(k, period - (uint64_t)age, out) == 0 && CRYPTO_memcmp(out->name, name, DP_TICKET_NAME_LEN) == 0)
      return age == 0 ? 1 : 2;
  OPENSSL_cleanse(out, sizeof *out);
  return 0;
}

/* The layout libssl seals: name, IV, ciphertext (whole AES blocks), then
 * HMAC-SHA256 over everything before it. */
int dp_ticket_authentic(dp_ticket_keys *k, const uint8_t *ticket, size_t len, uint64_t now_ms) {
  enum { IV_LEN = 16, BLOCK = 16, MAC_LEN = 32 };
  if (len < DP_TICKET_NAME_LEN + IV_LEN + BLOCK + MAC_LEN || len > INT_MAX)
    return 0;
  dp_ticket_key key;
  uint8_t mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  int ok = dp_ticket_key_to_open(k, ticket, now_ms, &key) != 0 &&
           HMAC(EVP_sha256(), key.mac, sizeof key.mac, ticket, len - MAC_LEN, mac, &mac_len) != NULL &&
           mac_len == MAC_LEN && CRYPTO_memcmp(mac, ticket + len - MAC_LEN, MAC_LEN) == 0;
  OPENSSL_cleanse(&key, sizeof key);
  return ok;
}

static int ticket_index = -1;
static dp_once ticket_index_once = DP_ONCE_INIT;

static int make_ticket_index(void) {
  ticket_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  return ticket_index < 0 ? -1 : 0;
}

/* libssl's ticket callback: chooses the key, and sets up the cipher and
 * the MAC with it.  The time is the core's (never a clock read here). */
static int choose_key(SSL *ssl, unsigned char name[DP_TICKET_NAME_LEN], unsigned char *iv, EVP_CIPHER_CTX *cipher,
                      int enc, dp_ticket_key *key) {
  dp_ticket_keys *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticket_index);
  const dp_bio_io *io = BIO_get_data(SSL_get_rbio(ssl));
  if (k == NULL || io == NULL)
    return -1;
  int r;
  if (enc) {
    if (dp_ticket_key_to_seal(k, io->now, key) != 0 || RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc())) != 1)
      return -1;
    memcpy(name, key->name, DP_TICKET_NAME_LEN);
    r = 1;
  } else if ((r = dp_ticket_key_to_open(k, name, io->now, key)) == 0) {
    return 0;
  }
  return EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes, iv, enc) == 1 ? r : -1;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac,
                     int enc) {
  dp_ticket_key key;
  int r = choose_key(ssl, name, iv, cipher, enc, &key);
  if (r > 0) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.mac, sizeof key.mac),
                           OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(mac, params) != 1)
      r = -1;
  }
  OPENSSL_cleanse(&key, sizeof key);
  return r;
}
#else
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *cipher, HMAC_CTX *mac,
                     int enc) {
  dp_ticket_key key;
  int r = choose_key(ssl, name, iv, cipher, enc, &key);
  if (r > 0 && HMAC_Init_ex(mac, key.mac, sizeof key.mac, EVP_sha256(), NULL) != 1)
    r = -1;
  OPENSSL_cleanse(&key, sizeof key);
  return r;
}
#endif

int dp_ticket_install(SSL_CTX *ctx, dp_ticket_keys *k) {
  if (dp_once_run(&ticket_index_once, make_ticket_index) != 0 || SSL_CTX_set_ex_data(ctx, ticket_index, k) != 1)
    return -ENOMEM;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
#else
  SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_cb);
#endif
  return 0;
}
