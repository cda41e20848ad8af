#include "records.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#endif

#define TAG_LEN 16
#define DTLS1_2_VERSION_HI 0xfe
#define DTLS1_2_VERSION_LO 0xfd
#define SEQ_MAX ((UINT64_C(1) << 48) - 1)
#define PLAIN_MAX 16384 /* RFC 6347: a record's plaintext is at most 2^14 bytes */
#define REPLAY_WINDOW 64

int dp_records_supported(const SSL_CIPHER *c) {
  if (c == NULL || !SSL_CIPHER_is_aead(c))
    return 0;
  int nid = SSL_CIPHER_get_cipher_nid(c);
  return nid == NID_aes_128_gcm || nid == NID_aes_256_gcm || nid == NID_chacha20_poly1305;
}

/* HMAC (RFC 2104) from the key's inner and outer states, made once: the
 * key expansion runs four HMACs under one key.  work receives a copy. */
static int hmac(EVP_MD_CTX *work, const EVP_MD_CTX *inner, const EVP_MD_CTX *outer, const uint8_t *m1, size_t len1,
                const uint8_t *m2, size_t len2, uint8_t *out) {
  unsigned int n;
  return EVP_MD_CTX_copy_ex(work, inner) && EVP_DigestUpdate(work, m1, len1) && EVP_DigestUpdate(work, m2, len2) &&
         EVP_DigestFinal_ex(work, out, &n) && EVP_MD_CTX_copy_ex(work, outer) && EVP_DigestUpdate(work, out, n) &&
         EVP_DigestFinal_ex(work, out, &n);
}

/* A digest context fed the key XOR pad, a block long. */
static int keyed(EVP_MD_CTX *ctx, const EVP_MD *md, const uint8_t *key, size_t block, uint8_t pad) {
  uint8_t padded[EVP_MAX_MD_SIZE * 2];
  for (size_t i = 0; i < block; i++)
    padded[i] = key[i] ^ pad;
  int ok = EVP_DigestInit_ex(ctx, md, NULL) && EVP_DigestUpdate(ctx, padded, block);
  OPENSSL_cleanse(padded, sizeof padded);
  return ok;
}

/* RFC 5246 section 5, P_hash(secret, seed), for a secret no longer than
 * the digest's block (a master secret is 48 bytes).  libcrypto's TLS1-PRF
 * does the same at about five times the cost: it looks up the digest and
 * HMAC by name on every call. */
static int p_hash(const EVP_MD *md, const uint8_t *secret, size_t secret_len, const uint8_t *seed, size_t seed_len,
                  uint8_t *out, size_t out_len) {
  size_t block = (size_t)EVP_MD_block_size(md), hash_len = (size_t)EVP_MD_size(md);
  uint8_t key[EVP_MAX_MD_SIZE * 2] = {0}, a[EVP_MAX_MD_SIZE], h[EVP_MAX_MD_SIZE];
  if (secret_len > block || block > sizeof key)
    return 0;
  memcpy(key, secret, secret_len);
  EVP_MD_CTX *inner = EVP_MD_CTX_new(), *outer = EVP_MD_CTX_new(), *work = EVP_MD_CTX_new();
  int ok = inner != NULL && outer != NULL && work != NULL && keyed(inner, md, key, block, 0x36) &&
           keyed(outer, md, key, block, 0x5c) && hmac(work, inner, outer, seed, seed_len, NULL, 0, a); /* A(1) */
  for (size_t done = 0; ok && done < out_len; done += hash_len) {
    ok = hmac(work, inner, outer, a, hash_len, seed, seed_len, h);
    memcpy(out + done, h, out_len - done < hash_len ? out_len - done : hash_len);
    if (ok && done + hash_len < out_len)
      ok = hmac(work, inner, outer, a, hash_len, NULL, 0, a); /* A(i+1) */
  }
  EVP_MD_CTX_free(inner);
  EVP_MD_CTX_free(outer);
  EVP_MD_CTX_free(work);
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(h, sizeof h);
  return ok;
}

/* RFC 5246 section 6.3: key_block = PRF(master_secret, "key expansion",
 * server_random + client_random), with the suite's PRF hash. */
static int derive_key_block(SSL *ssl, const EVP_MD *md, uint8_t *out, size_t len) {
  uint8_t master[SSL_MAX_MASTER_KEY_LENGTH], seed[13 + 2 * SSL3_RANDOM_SIZE];
  size_t master_len = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof master);
  memcpy(seed, "key expansion", 13);
  int ok = master_len > 0 && SSL_get_server_random(ssl, seed + 13, SSL3_RANDOM_SIZE) == SSL3_RANDOM_SIZE &&
           SSL_get_client_random(ssl, seed + 13 + SSL3_RANDOM_SIZE, SSL3_RANDOM_SIZE) == SSL3_RANDOM_SIZE &&
           p_hash(md, master, master_len, seed, sizeof seed, out, len);
  OPENSSL_cleanse(master, sizeof master);
  return ok;
}

dp_records *dp_records_new(SSL *ssl, uint16_t epoch, uint64_t write_seq, const dp_replay *opened) {
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  const EVP_CIPHER *cipher = dp_records_supported(c) ? EVP_get_cipherbynid(SSL_CIPHER_get_cipher_nid(c)) : NULL;
  const EVP_MD *md = cipher != NULL ? SSL_CIPHER_get_handshake_digest(c) : NULL;
  if (md == NULL) {
    errno = EPROTO;
    return NULL;
  }
  dp_records *r = calloc(1, sizeof *r);
  if (r == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  r->cipher = cipher;
  r->key_len = (unsigned int)EVP_CIPHER_key_length(cipher);
  r->explicit_len = EVP_CIPHER_mode(cipher) == EVP_CIPH_GCM_MODE ? 8 : 0;
  r->iv_len = r->explicit_len != 0 ? 4 : 12; /* RFC 5288's salt; RFC 7905's IV */
  r->epoch = epoch;
  r->write_seq = write_seq;
  r->opened = *opened;
  /* The key block's AEAD part: client key, server key, client IV, server IV. */
  uint8_t block[2 * (32 + 12)];
  size_t block_len = 2 * ((size_t)r->key_len + r->iv_len);
  /* With the suite known and the session established, only running out
   * of memory can fail the derivation (libcrypto does not always say so). */
  if (r->key_len > sizeof r->write.key || !derive_key_block(ssl, md, block, block_len)) {
    errno = r->key_len > sizeof r->write.key ? EPROTO : ENOMEM;
    OPENSSL_cleanse(block, sizeof block);
    free(r);
    return NULL;
  }
  int server = SSL_is_server(ssl);
  dp_record_keys *client = server ? &r->read : &r->write, *srv = server ? &r->write : &r->read;
  memcpy(client->key, block, r->key_len);
  memcpy(srv->key, block + r->key_len, r->key_len);
  memcpy(client->iv, block + 2 * r->key_len, r->iv_len);
  memcpy(srv->iv, block + 2 * r->key_len + r->iv_len, r->iv_len);
  OPENSSL_cleanse(block, sizeof block);
  return r;
}

void dp_records_release(dp_records *r) {
  EVP_CIPHER_CTX_free(r->write.ctx);
  EVP_CIPHER_CTX_free(r->read.ctx);
  r->write.ctx = r->read.ctx = NULL;
}

void dp_records_free(dp_records *r) {
  if (r == NULL)
    return;
  dp_records_release(r);
  OPENSSL_cleanse(r, sizeof *r);
  free(r);
}

static void put_u16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_u48(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++)
    v = v << 8 | p[i];
  return v;
}

/* A context for the keys, in the TLS mode of libcrypto's AEADs that libssl
 * uses: the salt or IV is set once, and each record then takes one
 * parameter (its AAD) and one call, sealed or opened in place.  Setting a
 * nonce per record through EVP_CipherInit_ex costs twice that in
 * OpenSSL 3.0 (it asks the provider for the IV's length each time).
 * ChaCha20-Poly1305's nonce is the IV XOR the record's sequence number.
 * GCM's cipher counts the explicit nonce on by one per record from where
 * it is set: sealing, it is set to the next record's epoch and sequence
 * number (the whole IV given, length -1), so that the nonce stays the
 * sequence number whenever the context is made again (after the idle
 * release): a random start each time would repeat one, some day. */
static EVP_CIPHER_CTX *context_new(const dp_records *r, const dp_record_keys *k, int encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int gcm = r->explicit_len != 0, whole = gcm && encrypt;
  uint8_t iv[12];
  memcpy(iv, k->iv, r->iv_len);
  if (whole)
    put_u64(iv + 4, (uint64_t)r->epoch << 48 | r->write_seq);
  if (ctx == NULL || EVP_CipherInit_ex(ctx, r->cipher, NULL, k->key, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, gcm ? EVP_CTRL_GCM_SET_IV_FIXED : EVP_CTRL_AEAD_SET_IV_FIXED,
                          whole ? -1 : (int)r->iv_len, iv) <= 0) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* The direction's context, made now if released. */
static EVP_CIPHER_CTX *context(const dp_records *r, dp_record_keys *k, int encrypt) {
  if (k->ctx == NULL)
    k->ctx = context_new(r, k, encrypt);
  return k->ctx;
}

/* Seals (ctx encrypting) or opens in place the record body at body, len
 * bytes: explicit nonce, payload, tag.  aad is RFC 5246's, with the length
 * libcrypto's TLS mode expects: the explicit nonce's and the plaintext's
 * when sealing, the body's when opening. */
static int tls_aead(EVP_CIPHER_CTX *ctx, uint8_t aad[DP_RECORD_HEADER_LEN], uint8_t *body, size_t len) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  /* EVP_CTRL_AEAD_TLS1_AAD would also read the tag's length back: a second
   * round trip through the provider's parameters. */
  OSSL_PARAM params[2] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_AAD, aad, DP_RECORD_HEADER_LEN),
                          OSSL_PARAM_construct_end()};
  int ok = EVP_CIPHER_CTX_set_params(ctx, params) == 1;
#else
  int ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_TLS1_AAD, DP_RECORD_HEADER_LEN, aad) > 0;
#endif
  return ok && EVP_Cipher(ctx, body, body, (unsigned int)len) >= 0; /* 0: an empty record opened */
}

/* RFC 5246 section 6.2.3.3's additional data, from a record's header:
 * epoch and sequence number, type, version, and length. */
static void make_aad(const uint8_t *header, size_t len, uint8_t aad[DP_RECORD_HEADER_LEN]) {
  memcpy(aad, header + 3, 8);
  memcpy(aad + 8, header, 3);
  put_u16(aad + 11, len);
}

ssize_t dp_records_seal(dp_records *r, uint8_t type, const uint8_t *in, size_t len, uint8_t *out, size_t cap) {
  size_t body = r->explicit_len + len + TAG_LEN;
  if (len > PLAIN_MAX || DP_RECORD_HEADER_LEN + body > cap)
    return -EMSGSIZE;
  if (r->write_seq > SEQ_MAX)
    return -EOVERFLOW;
  EVP_CIPHER_CTX *ctx = context(r, &r->write, 1);
  if (ctx == NULL)
    return -ENOMEM;
  /* Used up before anything is sealed under it: never twice, whatever fails. */
  uint64_t seq = (uint64_t)r->epoch << 48 | r->write_seq++;
  out[0] = type;
  out[1] = DTLS1_2_VERSION_HI;
  out[2] = DTLS1_2_VERSION_LO;
  put_u64(out + 3, seq);
  put_u16(out + 11, body);
  uint8_t aad[DP_RECORD_HEADER_LEN];
  make_aad(out, r->explicit_len + len, aad);
  memmove(out + DP_RECORD_HEADER_LEN + r->explicit_len, in, len);
  if (!tls_aead(ctx, aad, out + DP_RECORD_HEADER_LEN, body)) {
    /* Keyed and sized: only an allocation can fail.  GCM's nonce counter
     * may have moved: the context is made again at the next sequence number. */
    EVP_CIPHER_CTX_free(r->write.ctx);
    r->write.ctx = NULL;
    return -ENOMEM;
  }
  return (ssize_t)(DP_RECORD_HEADER_LEN + body);
}

/* Opens a record sealed under keys into work (its body, then opened in
 * place).  Returns the plaintext's length, at work + explicit_len, or
 * -EBADMSG. */
static ssize_t open_with(const dp_records *r, EVP_CIPHER_CTX *ctx, const uint8_t *rec, size_t len, uint8_t *work,
                         size_t cap) {
  size_t body = len - DP_RECORD_HEADER_LEN;
  if (body < r->explicit_len + TAG_LEN || body > cap || body - r->explicit_len - TAG_LEN > PLAIN_MAX)
    return -EBADMSG;
  uint8_t aad[DP_RECORD_HEADER_LEN];
  make_aad(rec, body, aad);
  memcpy(work, rec + DP_RECORD_HEADER_LEN, body);
  if (!tls_aead(ctx, aad, work, body))
    return -EBADMSG;
  return (ssize_t)(body - r->explicit_len - TAG_LEN);
}

/* Whether the header is of a record in the session's epoch and version,
 * as long as the datagram's bytes say. */
static int header_matches(const dp_records *r, const uint8_t *rec, size_t len) {
  return len >= DP_RECORD_HEADER_LEN && rec[1] == DTLS1_2_VERSION_HI && rec[2] == DTLS1_2_VERSION_LO &&
         (rec[3] << 8 | rec[4]) == r->epoch && ((size_t)rec[11] << 8 | rec[12]) == len - DP_RECORD_HEADER_LEN;
}

int dp_replay_seen(const dp_replay *w, uint64_t seq) {
  if (seq > w->top)
    return 0;
  uint64_t back = w->top - seq;
  return back >= REPLAY_WINDOW || (w->window >> back & 1) != 0;
}

void dp_replay_mark(dp_replay *w, uint64_t seq) {
  if (seq > w->top) {
    uint64_t ahead = seq - w->top;
    w->window = ahead >= REPLAY_WINDOW ? 1 : w->window << ahead | 1;
    w->top = seq;
  } else if (w->top - seq < REPLAY_WINDOW) {
    w->window |= UINT64_C(1) << (w->top - seq);
  }
}

uint64_t dp_record_sequence(const uint8_t *rec) { return get_u48(rec + 5); }

ssize_t dp_records_open(dp_records *r, const uint8_t *rec, size_t len, uint8_t *work, size_t cap,
                        const uint8_t **plain) {
  if (!header_matches(r, rec, len) || rec[0] != DP_RECORD_APPLICATION_DATA)
    return -EBADMSG;
  uint64_t seq = get_u48(rec + 5);
  if (dp_replay_seen(&r->opened, seq))
    return -EBADMSG;
  EVP_CIPHER_CTX *ctx = context(r, &r->read, 0);
  if (ctx == NULL)
    return -ENOMEM;
  ssize_t n = open_with(r, ctx, rec, len, work, cap);
  if (n < 0)
    return n;
  dp_replay_mark(&r->opened, seq); /* only once authentic: a forgery moves nothing */
  *plain = work + r->explicit_len;
  return n;
}

ssize_t dp_records_reseal(dp_records *r, const uint8_t *rec, size_t len, uint8_t *out, size_t cap) {
  if (!header_matches(r, rec, len) || cap < DP_RECORD_HEADER_LEN)
    return -EBADMSG;
  /* Opening under the write keys takes a context of its own; it is rare
   * (alerts, a retransmitted Finished), so it is not kept. */
  EVP_CIPHER_CTX *ctx = context_new(r, &r->write, 0);
  if (ctx == NULL)
    return -ENOMEM;
  ssize_t n = open_with(r, ctx, rec, len, out + DP_RECORD_HEADER_LEN, cap - DP_RECORD_HEADER_LEN);
  EVP_CIPHER_CTX_free(ctx);
  if (n < 0)
    return n;
  return dp_records_seal(r, rec[0], out + DP_RECORD_HEADER_LEN + r->explicit_len, (size_t)n, out, cap);
}
