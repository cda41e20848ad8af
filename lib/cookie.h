/* Stateless HelloVerifyRequest cookies: HMAC-SHA256 over the client's address
 * and port, keyed by a secret derived from the master secret and the current
 * time period.  Nothing is stored per client. */
#ifndef DTLSPLEX_COOKIE_H
#define DTLSPLEX_COOKIE_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* 32 bytes keeps a HelloVerifyRequest (60 bytes) smaller than any valid
 * ClientHello (at least 67 bytes): no amplification. */
#define DP_COOKIE_LEN 32
/* Keys rotate every period; a cookie of the previous period is still valid. */
#define DP_COOKIE_PERIOD_MS 60000
#define DP_COOKIE_MASTER_MAX 64

typedef struct evp_md_ctx_st EVP_MD_CTX;

typedef struct dp_cookie_keys {
  uint8_t master[DP_COOKIE_MASTER_MAX];
  size_t master_len;
  uint64_t period;  /* period that cur belongs to */
  int have_keys;
  uint8_t cur[32], prev[32];
  /* HMAC's inner and outer pads of cur [0] and prev [1], hashed once per
   * period, and a context to finish each cookie in: a cookie then costs two
   * short hashes, where OpenSSL 3's one-shot HMAC() sets everything up anew
   * (about 20,000 instructions). */
  EVP_MD_CTX *pads[2][2];
  EVP_MD_CTX *work;
} dp_cookie_keys;

/* master_len must be 1..DP_COOKIE_MASTER_MAX. */
void dp_cookie_init(dp_cookie_keys *k, const uint8_t *master, size_t master_len);
/* Frees and wipes what init and use made. */
void dp_cookie_cleanup(dp_cookie_keys *k);
/* Writes DP_COOKIE_LEN bytes.  now_ms is wall-clock time, so that servers of a
 * fleet that share the master agree on the period.  Returns 0 or -EPROTO. */
int dp_cookie_make(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                   uint8_t cookie[DP_COOKIE_LEN]);
/* 1 if cookie was made for client in this period or the previous one, else 0. */
int dp_cookie_verify(dp_cookie_keys *k, const dp_addr_key *client, uint64_t now_ms,
                     const uint8_t *cookie, size_t len);

#endif
