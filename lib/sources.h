/* Fairness between the sources a server hears from.  A source is a remote
 * address cut to a prefix (an IPv4 /32 and an IPv6 /64 by default: one
 * host, one customer's network).  For each the table counts the sessions it
 * holds and the handshakes it has in progress, so that no source takes more
 * than its share, and meters its full handshakes with a token bucket (as a
 * generic cell rate algorithm: one timestamp per source), so that no source
 * takes the server's handshake CPU.
 *
 * Entries exist only for sources proven by a cookie.  One that holds
 * nothing stays while its bucket refills (a source must not get a fresh
 * bucket by letting its handshakes fail), among at most max_idle such
 * entries, the oldest forgotten first.  No clock is read here: time is the
 * caller's, in milliseconds. */
#ifndef DTLSPLEX_SOURCES_H
#define DTLSPLEX_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "peer_table.h" /* uthash, with the keyed hash */

typedef struct dp_source {
  dp_addr_key prefix; /* the address cut to the prefix; port and scope zero */
  unsigned int sessions, handshakes;
  uint64_t budget_tat_us; /* the bucket: when it is next full (theoretical arrival time) */
  struct dp_source *idle_prev, *idle_next; /* holding nothing: on the idle list */
  UT_hash_handle hh;
} dp_source;

typedef struct dp_source_limits {
  unsigned int v4_prefix, v6_prefix; /* bits */
  unsigned int max_sessions, max_handshakes; /* per source */
  unsigned int per_second, burst; /* full handshakes; per_second 0: no budget */
} dp_source_limits;

typedef struct dp_sources {
  dp_source *by_prefix;
  dp_source *idle; /* sources holding nothing, oldest first */
  size_t count, idle_count, max_idle;
  dp_source_limits limits;
} dp_sources;

void dp_sources_init(dp_sources *t, const dp_source_limits *limits, size_t max_idle);
void dp_sources_set_limits(dp_sources *t, const dp_source_limits *limits, size_t max_idle);
/* Frees every entry: callers must hold none. */
void dp_sources_clear(dp_sources *t);
/* The source of addr (created holding nothing), or NULL: out of memory.
 * Sources holding nothing are forgotten here, and only here: a pointer to
 * one stays valid until the next call. */
dp_source *dp_sources_get(dp_sources *t, const dp_addr_key *addr, uint64_t now_ms);
/* Whether the source may start one more session (a new peer) or one more
 * handshake (a reconnecting peer, which already holds its session). */
int dp_sources_may_open(const dp_sources *t, const dp_source *s, int new_session);
/* Takes one full handshake from the source's budget: 1, or 0 if it is spent. */
int dp_sources_take_handshake(const dp_sources *t, dp_source *s, uint64_t now_ms);
/* Whether the budget has a handshake left, taking nothing. */
int dp_sources_budget_left(const dp_sources *t, const dp_source *s, uint64_t now_ms);
/* Takes one even from a spent budget (into debt, repaid by waiting): for a
 * handshake found to be full only once it had started. */
void dp_sources_charge_handshake(const dp_sources *t, dp_source *s, uint64_t now_ms);
/* Moves the source's counts by the deltas; a source left holding nothing
 * goes to the idle list, or is freed at once if its bucket is full.
 * Returns s, or NULL if it was freed. */
dp_source *dp_sources_adjust(dp_sources *t, dp_source *s, int sessions, int handshakes, uint64_t now_ms);

#endif
