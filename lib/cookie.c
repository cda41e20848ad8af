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
  if (derive_period_key(k, period, k->cur) != 0)
    return -EPROTO;
  k->period = period;
  k->have_keys = 1;
  return 0;
}

static int mac(const uint8_t key[32], const dp_addr_key *client, uint8_t out[DP_COOKIE_LEN]) {
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key, 32, (const uint8_t *)client, sizeof *client, out, &len) == NULL ||
      len != DP_COOKIE_LEN)
    return -EPROTO;
  return 0;
}

int dp_cookie_make(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                   uint8_t cookie[DP_COOKIE_LEN]) {
  if (update_keys(k, now_ms) != 0)
    return -EPROTO;
  return mac(k->cur, client, cookie);
}

int dp_cookie_verify(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                     const uint8_t *cookie, size_t len) {
  uint8_t expect[DP_COOKIE_LEN];
  if (len != DP_COOKIE_LEN || update_keys(k, now_ms) != 0)
    return 0;
  if (mac(k->cur, client, expect) == 0 && CRYPTO_memcmp(expect, cookie, len) == 0)
    return 1;
  if (mac(k->prev, client, expect) == 0 && CRYPTO_memcmp(expect, cookie, len) == 0)
    return 1;
  return 0;
}
