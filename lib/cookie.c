#include "cookie.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

void dp_cookie_init(dp_cookie_keys *k, const uint8_t *master, size_t master_len) {
  memset(k, 0, sizeof *k);
  if (master_len > sizeof k->master)
    master_len = sizeof k->master;
  memcpy(k->master, master, master_len);
  k->master_len = master_len;
}

void dp_cookie_cleanup(dp_cookie_keys *k) {
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      EVP_MD_CTX_free(k->pads[i][j]);
  EVP_MD_CTX_free(k->work);
  OPENSSL_cleanse(k, sizeof *k);
}

/* Hashes key's HMAC pad (key XOR fill, to a SHA-256 block) into ctx. */
static int hash_pad(EVP_MD_CTX *ctx, const uint8_t key[32], uint8_t fill) {
  uint8_t block[64];
  for (size_t i = 0; i < sizeof block; i++)
    block[i] = (uint8_t)((i < 32 ? key[i] : 0) ^ fill);
  int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, block, sizeof block) == 1;
  OPENSSL_cleanse(block, sizeof block);
  return ok;
}

/* The pads of cur and prev, after they changed. */
static int hash_pads(dp_cookie_keys *k) {
  if (k->work == NULL && (k->work = EVP_MD_CTX_new()) == NULL)
    return -EPROTO;
  for (int i = 0; i < 2; i++) {
    const uint8_t *key = i == 0 ? k->cur : k->prev;
    for (int j = 0; j < 2; j++)
      if ((k->pads[i][j] == NULL && (k->pads[i][j] = EVP_MD_CTX_new()) == NULL) ||
          !hash_pad(k->pads[i][j], key, j == 0 ? 0x36 : 0x5c))
        return -EPROTO;
  }
  return 0;
}

static int derive_period_key(const dp_cookie_keys *k, uint64_t period, uint8_t key[32]) {
  uint8_t label[24] = "dtlsplex cookie ";
  for (int i = 0; i < 8; i++)
    label[16 + i] = (uint8_t)(period >> (56 - 8 * i));
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), k->master, (int)k->master_len, label, sizeof label, key, &len) == NULL ||
      len != 32)
    return -EPROTO;
  return 0;
}

/* Brings cur/prev up to the period of now_ms. */
static int update_keys(dp_cookie_keys *k, uint64_t now_ms) {
  uint64_t period = now_ms / DP_COOKIE_PERIOD_MS;
  if (k->have_keys && period == k->period)
    return 0;
  if (k->have_keys && period == k->period + 1) {
    memcpy(k->prev, k->cur, sizeof k->cur);
  } else if (derive_period_key(k, period - 1, k->prev) != 0) {
    return -EPROTO;
  }
  k->have_keys = 0;
  if (derive_period_key(k, period, k->cur) != 0 || hash_pads(k) != 0)
    return -EPROTO;
  k->period = period;
  k->have_keys = 1;
  return 0;
}

/* HMAC-SHA256(key which: 0 cur, 1 prev) of the client's address key. */
static int mac(dp_cookie_keys *k, int which, const dp_addr_key *client, uint8_t out[DP_COOKIE_LEN]) {
  uint8_t inner[32];
  unsigned int len = 0;
  int ok = EVP_MD_CTX_copy_ex(k->work, k->pads[which][0]) == 1 && EVP_DigestUpdate(k->work, client, sizeof *client) == 1 &&
           EVP_DigestFinal_ex(k->work, inner, &len) == 1 && len == 32 &&
           EVP_MD_CTX_copy_ex(k->work, k->pads[which][1]) == 1 && EVP_DigestUpdate(k->work, inner, sizeof inner) == 1 &&
           EVP_DigestFinal_ex(k->work, out, &len) == 1 && len == DP_COOKIE_LEN;
  OPENSSL_cleanse(inner, sizeof inner);
  return ok ? 0 : -EPROTO;
}

int dp_cookie_make(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                   uint8_t cookie[DP_COOKIE_LEN]) {
  if (update_keys(k, now_ms) != 0)
    return -EPROTO;
  return mac(k, 0, client, cookie);
}

int dp_cookie_verify(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                     const uint8_t *cookie, size_t len) {
  uint8_t expect[DP_COOKIE_LEN];
  if (len != DP_COOKIE_LEN || update_keys(k, now_ms) != 0)
    return 0;
  if (mac(k, 0, client, expect) == 0 && CRYPTO_memcmp(expect, cookie, len) == 0)
    return 1;
  if (mac(k, 1, client, expect) == 0 && CRYPTO_memcmp(expect, cookie, len) == 0)
    return 1;
  return 0;
}
