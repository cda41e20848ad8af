/* The application-data records of an established DTLS 1.2 session with an
 * AEAD suite (AES-GCM, ChaCha20-Poly1305), sealed and opened here instead
 * of by libssl.  libssl 3.0 spends about 3,800 instructions on each small
 * record it reads or writes, most of them outside the cipher (an OSSL_PARAM
 * round trip per record, buffer management); these functions spend about a
 * third of that (docs/PERFORMANCE.md).  libssl keeps everything else: the
 * handshake, alerts, retransmissions, and the records of epoch 0.
 *
 * Two rules keep this sound next to libssl (session.c applies them):
 * - every application record libssl opened is in the replay window this
 *   module starts with, and libssl opens none after that;
 * - every record libssl seals with the session's write keys after this
 *   module started sealing is opened and sealed again under the next
 *   sequence number here (dp_records_reseal), so that no sequence number,
 *   and so no AEAD nonce, is ever used twice under one key.
 *
 * Sans-I/O: no socket, no clock. */
#ifndef DTLSPLEX_RECORDS_H
#define DTLSPLEX_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#define DP_RECORD_HEADER_LEN 13
#define DP_RECORD_APPLICATION_DATA 23
/* The room an opened record needs: its body (explicit nonce, up to 2^14
 * bytes of plaintext, tag) is opened in place. */
#define DP_RECORDS_WORK_MAX (16384 + 8 + 16)

/* One direction's keys, and its cipher context (made on first use, and
 * given back while the session is idle). */
typedef struct dp_record_keys {
  EVP_CIPHER_CTX *ctx;
  uint8_t key[32];
  uint8_t iv[12]; /* GCM: the 4-byte salt; ChaCha20-Poly1305: XORed with the sequence number */
} dp_record_keys;

/* Which sequence numbers of an epoch were opened: RFC 6347 section
 * 4.1.2.6's sliding window, 64 records wide. */
typedef struct dp_replay {
  uint64_t top;    /* the highest sequence number opened */
  uint64_t window; /* bit i: top - i was opened */
} dp_replay;

/* The sequence number (without the epoch) in a record's header. */
uint64_t dp_record_sequence(const uint8_t *rec);
/* Whether seq was opened, or is too old to tell. */
int dp_replay_seen(const dp_replay *w, uint64_t seq);
void dp_replay_mark(dp_replay *w, uint64_t seq);

typedef struct dp_records {
  const EVP_CIPHER *cipher;
  unsigned int key_len, iv_len;
  unsigned int explicit_len; /* GCM's explicit nonce in each record: 8; ChaCha20-Poly1305: 0 */
  uint16_t epoch;
  uint64_t write_seq; /* the next record's sequence number */
  dp_replay opened;
  dp_record_keys write, read;
} dp_records;

/* Whether the suite's records can be this module's. */
int dp_records_supported(const SSL_CIPHER *c);

/* The records of ssl's established session (its suite supported), in
 * epoch, taking over from libssl: sealing from write_seq on, the first
 * sequence number libssl has not used in that epoch, and opening none of
 * the records libssl opened.  NULL with errno ENOMEM, or EPROTO if the keys
 * cannot be derived. */
dp_records *dp_records_new(SSL *ssl, uint16_t epoch, uint64_t write_seq, const dp_replay *opened);
/* Wipes the keys and frees. */
void dp_records_free(dp_records *r);
/* Frees the cipher contexts (about 2 KiB) of an idle session; the next
 * seal or open makes them again. */
void dp_records_release(dp_records *r);

/* Seals len bytes of type into one record at out (cap bytes).  in is
 * either apart from out or exactly the record's payload place in it (out +
 * DP_RECORD_HEADER_LEN + explicit_len): sealed in place.  Returns the record's length, or -EMSGSIZE (too long for
 * a record or for cap), -ENOMEM, -EOVERFLOW (sequence numbers used up). */
ssize_t dp_records_seal(dp_records *r, uint8_t type, const uint8_t *in, size_t len, uint8_t *out, size_t cap);
/* Opens one application-data record of the session's epoch (exactly len
 * bytes, header included), in work (cap bytes): *plain is then its
 * plaintext, inside work.  Returns the plaintext's length, -EBADMSG
 * (malformed, not authentic, replayed, or too old for the replay window:
 * the record is to be dropped) or -ENOMEM. */
ssize_t dp_records_open(dp_records *r, const uint8_t *rec, size_t len, uint8_t *work, size_t cap,
                        const uint8_t **plain);
/* Opens a record libssl sealed with the session's write keys and seals it
 * again, under the next sequence number, into out.  Returns the new
 * record's length, -EBADMSG (not sealed with these keys), -EMSGSIZE,
 * -ENOMEM, -EOVERFLOW. */
ssize_t dp_records_reseal(dp_records *r, const uint8_t *rec, size_t len, uint8_t *out, size_t cap);

#endif
