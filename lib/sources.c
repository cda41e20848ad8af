#include "sources.h"

#include <stdlib.h>
#include <string.h>

#include <utlist.h>

void dp_sources_init(dp_sources *t, const dp_source_limits *limits, size_t max_idle) {
  memset(t, 0, sizeof *t);
  dp_sources_set_limits(t, limits, max_idle);
}

void dp_sources_set_limits(dp_sources *t, const dp_source_limits *limits, size_t max_idle) {
  t->limits = *limits;
  t->max_idle = max_idle;
}

/* The idle list, oldest first (utlist: the head's prev is the newest). */
static void idle_unlink(dp_sources *t, dp_source *s) {
  DL_DELETE2(t->idle, s, idle_prev, idle_next);
  t->idle_count--;
}

static void idle_append(dp_sources *t, dp_source *s) {
  DL_APPEND2(t->idle, s, idle_prev, idle_next);
  t->idle_count++;
}

static void forget(dp_sources *t, dp_source *s) {
  idle_unlink(t, s);
  HASH_DEL(t->by_prefix, s);
  t->count--;
  free(s);
}

void dp_sources_clear(dp_sources *t) {
  dp_source *s, *tmp;
  HASH_ITER(hh, t->by_prefix, s, tmp) {
    HASH_DEL(t->by_prefix, s);
    free(s);
  }
  t->by_prefix = t->idle = NULL;
  t->count = t->idle_count = 0;
}

static int bucket_full(const dp_source *s, uint64_t now_ms) { return s->budget_tat_us <= now_ms * 1000; }

/* Sources holding nothing whose buckets are full tell nothing a new entry
 * would not; the list also stays within max_idle, oldest first (such a
 * source only gets its bucket back early). */
static void reap_idle(dp_sources *t, uint64_t now_ms) {
  while (t->idle != NULL && (bucket_full(t->idle, now_ms) || t->idle_count > t->max_idle))
    forget(t, t->idle);
}

static void cut_to_prefix(const dp_source_limits *l, const dp_addr_key *addr, dp_addr_key *out) {
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  memset(out, 0, sizeof *out);
  int v4 = memcmp(addr->ip, v4_mapped, sizeof v4_mapped) == 0;
  unsigned int keep = v4 ? 96 + l->v4_prefix : l->v6_prefix; /* bits, the mapped prefix included */
  memcpy(out->ip, addr->ip, keep / 8);
  if (keep % 8 != 0)
    out->ip[keep / 8] = (uint8_t)(addr->ip[keep / 8] & (0xff00u >> (keep % 8)));
}

dp_source *dp_sources_get(dp_sources *t, const dp_addr_key *addr, uint64_t now_ms) {
  dp_addr_key prefix;
  cut_to_prefix(&t->limits, addr, &prefix);
  dp_source *s;
  HASH_FIND(hh, t->by_prefix, &prefix, sizeof prefix, s);
  if (s != NULL)
    return s;
  reap_idle(t, now_ms);
  if ((s = calloc(1, sizeof *s)) == NULL)
    return NULL;
  s->prefix = prefix;
  HASH_ADD(hh, t->by_prefix, prefix, sizeof s->prefix, s);
  if (s->hh.tbl == NULL) { /* uthash out of memory (HASH_NONFATAL_OOM) */
    free(s);
    return NULL;
  }
  t->count++;
  idle_append(t, s);
  return s;
}

/* A share of a table bounded by 0 means none at all. */
int dp_sources_may_open(const dp_sources *t, const dp_source *s, int new_session) {
  return s->handshakes < t->limits.max_handshakes && (!new_session || s->sessions < t->limits.max_sessions);
}

static uint64_t interval_us(const dp_source_limits *l) { return 1000000 / l->per_second; }

/* The bucket's theoretical arrival time, never behind now. */
static uint64_t tat_now(const dp_source *s, uint64_t now_ms) {
  return s->budget_tat_us > now_ms * 1000 ? s->budget_tat_us : now_ms * 1000;
}

/* burst handshakes may start at once; then one per interval */
int dp_sources_budget_left(const dp_sources *t, const dp_source *s, uint64_t now_ms) {
  const dp_source_limits *l = &t->limits;
  return l->per_second == 0 || tat_now(s, now_ms) - now_ms * 1000 <= (uint64_t)(l->burst - 1) * interval_us(l);
}

void dp_sources_charge_handshake(const dp_sources *t, dp_source *s, uint64_t now_ms) {
  if (t->limits.per_second != 0)
    s->budget_tat_us = tat_now(s, now_ms) + interval_us(&t->limits);
}

int dp_sources_take_handshake(const dp_sources *t, dp_source *s, uint64_t now_ms) {
  if (!dp_sources_budget_left(t, s, now_ms))
    return 0;
  dp_sources_charge_handshake(t, s, now_ms);
  return 1;
}

dp_source *dp_sources_adjust(dp_sources *t, dp_source *s, int sessions, int handshakes, uint64_t now_ms) {
  int held_before = s->sessions + s->handshakes > 0;
  s->sessions = (unsigned int)((int)s->sessions + sessions);
  s->handshakes = (unsigned int)((int)s->handshakes + handshakes);
  int holds = s->sessions + s->handshakes > 0;
  if (holds && !held_before) {
    idle_unlink(t, s);
  } else if (!holds && held_before) {
    idle_append(t, s);
    if (bucket_full(s, now_ms)) {
      forget(t, s);
      return NULL;
    }
  }
  return s;
}
