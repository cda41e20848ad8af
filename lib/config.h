/* dtlsplex_config internals and its SSL_CTX. */
#ifndef DTLSPLEX_CONFIG_H
#define DTLSPLEX_CONFIG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "dtlsplex.h"
#include "resume_cache.h"
#include "ticket.h"

#define DP_PSK_IDENTITY_MAX 128
#define DP_PSK_KEY_MAX 64

/* Fairness defaults (docs/SECURITY.md gives the reasons).  A source is one
 * IPv4 address or one IPv6 /64, the block one customer gets. */
#define DP_SOURCE_V4_PREFIX 32
#define DP_SOURCE_V6_PREFIX 64
/* 1,000 of the default 10,000 sessions, 26 of the 256 handshakes: room for
 * a carrier-grade NAT's many subscribers behind one address, and ten
 * sources are needed to fill the table. */
#define DP_SOURCE_SHARE_PERCENT 10
/* A P-256 handshake costs about 300 us of server CPU: 100 a second is 3% of
 * a core per source, and lets 1,000 clients behind one NAT reconnect in 10 s. */
#define DP_BUDGET_PER_SECOND 100
#define DP_BUDGET_BURST 100
/* A peer that speaks (or is spoken to) every 30 s is never evicted; one
 * evicted comes back with an abbreviated handshake (its ticket). */
#define DP_EVICT_AFTER_MS 30000

typedef struct dp_psk {
  struct dp_psk *next;
  char identity[DP_PSK_IDENTITY_MAX + 1];
  unsigned char key[DP_PSK_KEY_MAX];
  size_t key_len;
} dp_psk;

struct dtlsplex_config {
  atomic_uint refs;     /* the owner's, plus one per attached socket */
  pthread_mutex_t attach_lock; /* orders the first attaches' one-time work */
  int prepared;   /* the first attach's one-time work is done */
  int ca_set;
  int system_store_loaded; /* under attach_lock; see verify_chain in config.c */
  const X509_STORE *initial_store;
  SSL_CTX *ctx;
  int role;
  int verify;     /* DTLSPLEX_VERIFY_NONE, _PEER or _REQUIRE */
  int chain_only; /* DTLSPLEX_VERIFY_CHAIN_ONLY was given */
  int ciphers_set;
  unsigned int mtu;
  unsigned int handshake_ms, idle_ms;
  unsigned int rto_initial_ms, rto_max_ms;
  unsigned int max_peers, max_handshakes;
  unsigned int source_v4_prefix, source_v6_prefix, source_share_percent; /* see set_source_share */
  unsigned int budget_per_second, budget_burst; /* full handshakes per source */
  unsigned int evict_after_ms;                  /* 0: never evict */
  unsigned char cookie_secret[64];
  size_t cookie_secret_len;
  int resumption;              /* server: session tickets; client: the session cache */
  unsigned int resume_after_ms; /* client: resume before sending after this much silence (0: never) */
  dp_ticket_keys tickets;
  dp_resume_cache *resume_cache;
  dp_psk *psks;         /* first added first */
  dtlsplex_psk_lookup_fn psk_lookup;
  void *psk_lookup_arg;
  FILE *keylog;         /* NSS key log, or NULL (the default) */
  dtlsplex_event_fn event_fn;
  void *event_arg;
  dtlsplex_log_fn log_fn;
  void *log_arg;
  int log_level;
  int records_by_libssl; /* internal, for tests: libssl seals and opens every record (see records.h) */
};

/* Whether the client of this server-side SSL named a PSK identity that no
 * key was found for. */
int dp_config_psk_unknown(SSL *ssl);

/* The configuration ssl's context belongs to. */
dtlsplex_config *dp_config_of(SSL *ssl);

/* Whether a server side can complete handshakes: a certificate or a PSK. */
int dp_config_can_serve(const dtlsplex_config *cfg);

/* Attached sockets hold a reference.  The first attach also loads the system
 * trust store if needed and completes the certificate chain (see config.c). */
void dp_config_ref(dtlsplex_config *cfg);

/* Formats and passes a message to the log callback, if its level is enabled. */
void dp_log(const dtlsplex_config *cfg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
