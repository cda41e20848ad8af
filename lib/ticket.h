/* Session tickets (RFC 5077) for resumption: the server keeps no session
 * state; it seals the session into a ticket the client presents later.
 * The keys are derived from a master secret and the period of wall-clock
 * time, so that servers sharing the master (a fleet) seal and open each
 * other's tickets with no coordination, and a key is used for one period
 * and accepted for one more: a stolen key opens at most two periods'
 * tickets. */
#ifndef DTLSPLEX_TICKET_H
#define DTLSPLEX_TICKET_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define DP_TICKET_MASTER_MAX 64
/* Each ticket key seals for an hour and opens for two: a stolen key opens
 * two hours of sessions at most, and a client silent for up to an hour
 * (the default idle expiry is 5 minutes) still resumes. */
#define DP_TICKET_PERIOD_S 3600
#define DP_TICKET_PERIOD_MIN_S 60
#define DP_TICKET_PERIOD_MAX_S 86400
#define DP_TICKET_NAME_LEN 16

typedef struct dp_ticket_key {
  uint64_t period;
  int valid;
  uint8_t name[DP_TICKET_NAME_LEN]; /* tells the periods' tickets apart */
  uint8_t aes[32];                  /* AES-256-CBC, as RFC 5077 suggests */
  uint8_t mac[32];                  /* HMAC-SHA256 */
} dp_ticket_key;

typedef struct dp_ticket_keys {
  pthread_mutex_t lock; /* the sockets sharing a configuration seal at once */
  uint8_t master[DP_TICKET_MASTER_MAX];
  size_t master_len;
  unsigned int period_s;
  dp_ticket_key recent[2]; /* derived keys of the last periods used */
} dp_ticket_keys;

/* master_len 1..DP_TICKET_MASTER_MAX; period_s > 0.  0, or -ENOMEM. */
int dp_ticket_keys_init(dp_ticket_keys *k, const uint8_t *master, size_t master_len, unsigned int period_s);
/* A new master, or a new period (either forgets the derived keys). */
void dp_ticket_keys_set(dp_ticket_keys *k, const uint8_t *master, size_t master_len);
void dp_ticket_keys_set_period(dp_ticket_keys *k, unsigned int period_s);
void dp_ticket_keys_cleanup(dp_ticket_keys *k);
/* The key that seals tickets at now_ms: 0, or -EPROTO. */
int dp_ticket_key_to_seal(dp_ticket_keys *k, uint64_t now_ms, dp_ticket_key *out);
/* The key that opens a ticket named name at now_ms: 1 (the current
 * period's), 2 (the previous period's: the ticket should be renewed), or 0
 * (none: a full handshake). */
int dp_ticket_key_to_open(dp_ticket_keys *k, const uint8_t name[DP_TICKET_NAME_LEN], uint64_t now_ms,
                          dp_ticket_key *out);
/* Whether a ticket (as a ClientHello carries it) was sealed by one of the
 * keys that open at now_ms: its name is known and its MAC checks.  It
 * costs one HMAC; nothing is decrypted. */
int dp_ticket_authentic(dp_ticket_keys *k, const uint8_t *ticket, size_t len, uint64_t now_ms);
/* Makes ctx's server side seal and open tickets with k, which must outlive
 * it; the time is the one the session's BIO was last given (dgram_bio.h).
 * 0, or -ENOMEM. */
int dp_ticket_install(SSL_CTX *ctx, dp_ticket_keys *k);

#endif
