/* Unit tests for lib/peer_table.c: the hash by address and the deadline heap. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "peer_table.h"

/* The owner's peer struct, with the table entry embedded not first, as in
 * the library. */
typedef struct test_peer {
  int id;
  int visits;
  dp_table_entry entry;
  int removed;
} test_peer;

#define PEER_OF(e) ((test_peer *)((char *)(e)-offsetof(test_peer, entry)))

/* Distinct key per n: 2001:db8::<n> port 1000 + n%50000, built by hand so
 * that this test depends on the table only. */
static void make_key(dp_addr_key *k, uint32_t n) {
  memset(k, 0, sizeof *k);
  k->ip[0] = 0x20;
  k->ip[1] = 0x01;
  k->ip[2] = 0x0d;
  k->ip[3] = 0xb8;
  k->ip[12] = (uint8_t)(n >> 24);
  k->ip[13] = (uint8_t)(n >> 16);
  k->ip[14] = (uint8_t)(n >> 8);
  k->ip[15] = (uint8_t)n;
  k->port = htons((uint16_t)(1000 + n % 50000));
}

static test_peer *make_peers(size_t n) {
  test_peer *p = calloc(n, sizeof *p);
  ck_assert_ptr_nonnull(p);
  for (size_t i = 0; i < n; i++) {
    p[i].id = (int)i;
    make_key(&p[i].entry.key, (uint32_t)i);
  }
  return p;
}

/* A fresh table holding n new peers, every add checked. */
static test_peer *table_with_peers(dp_peer_table *t, size_t n) {
  dp_table_init(t);
  test_peer *p = make_peers(n);
  for (size_t i = 0; i < n; i++)
    ck_assert_int_eq(dp_table_add(t, &p[i].entry), 0);
  return p;
}

/* Fixed-seed xorshift64*, so that a failure reproduces. */
static uint64_t rng_state;

static uint64_t rng_next(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C(2685821657736338717);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* White-box check of the heap: parent <= child, and each entry knows its slot. */
/* The heap's invariants, the slots' copies of the deadlines included. */
static void check_heap(const dp_peer_table *t) {
  for (size_t i = 0; i < t->heap_len; i++) {
    ck_assert_uint_eq(t->heap[i].entry->heap_index, i);
    ck_assert_uint_eq(t->heap[i].deadline, t->heap[i].entry->deadline);
    ck_assert_uint_ne(t->heap[i].deadline, DP_NO_DEADLINE);
    if (i > 0)
      ck_assert_uint_le(t->heap[(i - 1) / 2].deadline, t->heap[i].deadline);
  }
  ck_assert_uint_eq(dp_table_earliest_deadline(t), t->heap_len ? t->heap[0].deadline : DP_NO_DEADLINE);
}

/* ---- hash part -------------------------------------------------------- */

START_TEST(test_add_find_remove) {
  dp_peer_table t;
  dp_table_init(&t);
  ck_assert_uint_eq(dp_table_count(&t), 0);
  ck_assert_ptr_null(dp_table_first(&t));
  ck_assert_ptr_null(dp_table_earliest(&t));

  test_peer *p = make_peers(3);
  dp_addr_key k;
  make_key(&k, 0);
  ck_assert_ptr_null(dp_table_find(&t, &k));

  for (int i = 0; i < 3; i++) {
    /* Garbage in the table's fields must not matter. */
    p[i].entry.deadline = 12345;
    p[i].entry.heap_index = 7;
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
    ck_assert_uint_eq(dp_table_count(&t), (size_t)i + 1);
  }
  /* A new entry has no deadline and is not in the order. */
  ck_assert_uint_eq(p[0].entry.deadline, DP_NO_DEADLINE);
  ck_assert_ptr_null(dp_table_earliest(&t));

  for (int i = 0; i < 3; i++) {
    dp_addr_key probe;
    make_key(&probe, (uint32_t)i); /* a copy, not the entry's own key memory */
    dp_table_entry *e = dp_table_find(&t, &probe);
    ck_assert_ptr_eq(e, &p[i].entry);
    ck_assert_int_eq(PEER_OF(e)->id, i);
  }

  /* Missing keys: another index, and a key differing only in port, scope or
   * the padding word. */
  make_key(&k, 3);
  ck_assert_ptr_null(dp_table_find(&t, &k));
  make_key(&k, 1);
  k.port = htons(9);
  ck_assert_ptr_null(dp_table_find(&t, &k));
  make_key(&k, 1);
  k.scope_id = 1;
  ck_assert_ptr_null(dp_table_find(&t, &k));
  make_key(&k, 1);
  k.zero = 1;
  ck_assert_ptr_null(dp_table_find(&t, &k));

  dp_table_remove(&t, &p[1].entry);
  ck_assert_uint_eq(dp_table_count(&t), 2);
  make_key(&k, 1);
  ck_assert_ptr_null(dp_table_find(&t, &k));
  make_key(&k, 0);
  ck_assert_ptr_eq(dp_table_find(&t, &k), &p[0].entry);
  make_key(&k, 2);
  ck_assert_ptr_eq(dp_table_find(&t, &k), &p[2].entry);

  /* A removed entry can be added again. */
  ck_assert_int_eq(dp_table_add(&t, &p[1].entry), 0);
  ck_assert_uint_eq(dp_table_count(&t), 3);
  make_key(&k, 1);
  ck_assert_ptr_eq(dp_table_find(&t, &k), &p[1].entry);

  dp_table_remove(&t, &p[0].entry);
  dp_table_remove(&t, &p[1].entry);
  dp_table_remove(&t, &p[2].entry);
  ck_assert_uint_eq(dp_table_count(&t), 0);
  ck_assert_ptr_null(dp_table_first(&t));
  make_key(&k, 2);
  ck_assert_ptr_null(dp_table_find(&t, &k));

  dp_table_clear(&t);
  free(p);
}
END_TEST

/* The last entry found is checked first: a removed one must not be found
 * through it, even when its memory still holds the key, and a changed
 * recent entry must not shadow the others. */
START_TEST(test_recent_entry_never_outlives_removal) {
  dp_peer_table t;
  test_peer *p = table_with_peers(&t, 3);
  dp_addr_key k1, k2;
  make_key(&k1, 1);
  make_key(&k2, 2);
  ck_assert_ptr_eq(dp_table_find(&t, &k1), &p[1].entry);
  ck_assert_ptr_eq(dp_table_find(&t, &k1), &p[1].entry); /* again, as the recent one */
  ck_assert_ptr_eq(dp_table_find(&t, &k2), &p[2].entry);
  ck_assert_ptr_eq(dp_table_find(&t, &k1), &p[1].entry);

  dp_table_remove(&t, &p[1].entry);
  ck_assert_ptr_null(dp_table_find(&t, &k1));
  /* The owner reuses the entry for another address. */
  make_key(&p[1].entry.key, 7);
  ck_assert_int_eq(dp_table_add(&t, &p[1].entry), 0);
  ck_assert_ptr_null(dp_table_find(&t, &k1));
  dp_addr_key k7;
  make_key(&k7, 7);
  ck_assert_ptr_eq(dp_table_find(&t, &k7), &p[1].entry);
  ck_assert_ptr_eq(dp_table_find(&t, &k2), &p[2].entry);

  /* A failed lookup leaves the recent entry valid. */
  ck_assert_ptr_null(dp_table_find(&t, &k1));
  ck_assert_ptr_eq(dp_table_find(&t, &k2), &p[2].entry);
  dp_table_clear(&t);
  ck_assert_ptr_null(dp_table_find(&t, &k2));
  free(p);
}
END_TEST

START_TEST(test_many_entries_find_and_count) {
  enum { N = 5000 };
  dp_peer_table t;
  test_peer *p = table_with_peers(&t, N);
  ck_assert_uint_eq(dp_table_count(&t), N);
  for (size_t i = 0; i < N; i++) {
    dp_addr_key k;
    make_key(&k, (uint32_t)i);
    ck_assert_ptr_eq(dp_table_find(&t, &k), &p[i].entry);
  }
  for (size_t i = 0; i < N; i += 2)
    dp_table_remove(&t, &p[i].entry);
  ck_assert_uint_eq(dp_table_count(&t), N / 2);
  for (size_t i = 0; i < N; i++) {
    dp_addr_key k;
    make_key(&k, (uint32_t)i);
    if (i % 2 == 0)
      ck_assert_ptr_null(dp_table_find(&t, &k));
    else
      ck_assert_ptr_eq(dp_table_find(&t, &k), &p[i].entry);
  }
  dp_table_clear(&t);
  ck_assert_uint_eq(dp_table_count(&t), 0);
  ck_assert_ptr_null(dp_table_first(&t));
  free(p);
}
END_TEST

START_TEST(test_iteration_visits_each_once) {
  enum { N = 777 };
  dp_peer_table t;
  dp_table_init(&t);
  test_peer *p = make_peers(N);
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
    if (i % 3 == 0) /* some with deadlines: iteration must not care */
      ck_assert_int_eq(dp_table_set_deadline(&t, &p[i].entry, 1000 + i), 0);
  }

  size_t seen = 0;
  for (dp_table_entry *e = dp_table_first(&t); e != NULL; e = dp_table_next(e)) {
    PEER_OF(e)->visits++;
    seen++;
    ck_assert_uint_le(seen, N); /* no cycle */
  }
  ck_assert_uint_eq(seen, N);
  for (size_t i = 0; i < N; i++)
    ck_assert_int_eq(p[i].visits, 1);

  /* Removing the entry being visited (the allowed case) during iteration. */
  seen = 0;
  for (dp_table_entry *e = dp_table_first(&t), *next; e != NULL; e = next) {
    next = dp_table_next(e);
    test_peer *tp = PEER_OF(e);
    tp->visits++;
    seen++;
    if (tp->id % 2 == 1) {
      dp_table_remove(&t, e);
      tp->removed = 1;
    }
  }
  ck_assert_uint_eq(seen, N);
  ck_assert_uint_eq(dp_table_count(&t), N - N / 2);

  /* Now only the even ones remain, each visited once. */
  seen = 0;
  for (dp_table_entry *e = dp_table_first(&t); e != NULL; e = dp_table_next(e)) {
    test_peer *tp = PEER_OF(e);
    ck_assert_int_eq(tp->removed, 0);
    ck_assert_int_eq(tp->id % 2, 0);
    tp->visits++;
    seen++;
  }
  ck_assert_uint_eq(seen, N - N / 2);
  for (size_t i = 0; i < N; i++)
    ck_assert_int_eq(p[i].visits, i % 2 == 0 ? 3 : 2);
  check_heap(&t);

  dp_table_clear(&t);
  free(p);
}
END_TEST

/* ---- heap part -------------------------------------------------------- */

START_TEST(test_heap_10000_random_deadlines) {
  enum { N = 10000 };
  dp_peer_table t;
  dp_table_init(&t);
  test_peer *p = make_peers(N);
  uint64_t *sorted = malloc(N * sizeof *sorted);
  ck_assert_ptr_nonnull(sorted);

  rng_state = UINT64_C(0x9e3779b97f4a7c15);
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
    /* Small range so that there are many ties. */
    uint64_t d = 1 + rng_next() % 5000;
    ck_assert_int_eq(dp_table_set_deadline(&t, &p[i].entry, d), 0);
    ck_assert_uint_eq(p[i].entry.deadline, d);
    sorted[i] = d;
  }
  check_heap(&t);
  qsort(sorted, N, sizeof *sorted, cmp_u64);

  /* Take the earliest N times: deadlines come out exactly in sorted order.
   * Even-numbered takes remove the entry, odd ones clear its deadline. */
  uint64_t prev = 0;
  for (size_t i = 0; i < N; i++) {
    dp_table_entry *e = dp_table_earliest(&t);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_ge(e->deadline, prev);
    ck_assert_uint_eq(e->deadline, sorted[i]);
    prev = e->deadline;
    test_peer *tp = PEER_OF(e);
    ck_assert_int_eq(tp->removed, 0);
    tp->removed = 1;
    if (i % 2 == 0) {
      dp_table_remove(&t, e);
    } else {
      ck_assert_int_eq(dp_table_set_deadline(&t, e, DP_NO_DEADLINE), 0);
      ck_assert_uint_eq(e->deadline, DP_NO_DEADLINE);
    }
    if (i % 997 == 0)
      check_heap(&t);
  }
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_uint_eq(dp_table_count(&t), N / 2);
  for (size_t i = 0; i < N; i++)
    ck_assert_int_eq(p[i].removed, 1);

  dp_table_clear(&t);
  free(sorted);
  free(p);
}
END_TEST

START_TEST(test_deadline_changes_reorder) {
  dp_peer_table t;
  test_peer *p = table_with_peers(&t, 4);
  dp_table_entry *a = &p[0].entry, *b = &p[1].entry, *c = &p[2].entry, *d = &p[3].entry;
  ck_assert_int_eq(dp_table_set_deadline(&t, a, 10), 0);
  ck_assert_int_eq(dp_table_set_deadline(&t, b, 20), 0);
  ck_assert_int_eq(dp_table_set_deadline(&t, c, 30), 0);
  ck_assert_int_eq(dp_table_set_deadline(&t, d, 40), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), a);

  /* Earliest moves later: the next one takes its place. */
  ck_assert_int_eq(dp_table_set_deadline(&t, a, 35), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), b);
  check_heap(&t);
  /* A later one moves earliest. */
  ck_assert_int_eq(dp_table_set_deadline(&t, d, 5), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), d);
  check_heap(&t);
  /* Setting the same deadline again changes nothing. */
  ck_assert_int_eq(dp_table_set_deadline(&t, d, 5), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), d);
  /* Moving an entry in the middle down and up. */
  ck_assert_int_eq(dp_table_set_deadline(&t, c, 1), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), c);
  ck_assert_int_eq(dp_table_set_deadline(&t, c, 100), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), d);
  check_heap(&t);

  /* Order now: d 5, b 20, a 35, c 100. */
  dp_table_entry *want[] = {d, b, a, c};
  for (int i = 0; i < 4; i++) {
    ck_assert_ptr_eq(dp_table_earliest(&t), want[i]);
    ck_assert_int_eq(dp_table_set_deadline(&t, want[i], DP_NO_DEADLINE), 0);
  }
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_uint_eq(dp_table_count(&t), 4);

  dp_table_clear(&t);
  free(p);
}
END_TEST

START_TEST(test_random_deadline_updates) {
  enum { N = 2000, ROUNDS = 20000 };
  dp_peer_table t;
  test_peer *p = table_with_peers(&t, N);
  rng_state = UINT64_C(0x0123456789abcdef);
  for (size_t r = 0; r < ROUNDS; r++) {
    size_t i = (size_t)(rng_next() % N);
    uint64_t v = rng_next();
    uint64_t d = v % 8 == 0 ? DP_NO_DEADLINE : (v >> 8) % 100000;
    ck_assert_int_eq(dp_table_set_deadline(&t, &p[i].entry, d), 0);
    ck_assert_uint_eq(p[i].entry.deadline, d);
    if (r % 1000 == 0)
      check_heap(&t);
  }
  check_heap(&t);
  /* The earliest is the true minimum over all entries with a deadline. */
  uint64_t min = DP_NO_DEADLINE;
  size_t with = 0;
  for (size_t i = 0; i < N; i++) {
    if (p[i].entry.deadline != DP_NO_DEADLINE) {
      with++;
      if (p[i].entry.deadline < min)
        min = p[i].entry.deadline;
    }
  }
  ck_assert_uint_eq(t.heap_len, with);
  ck_assert_ptr_nonnull(dp_table_earliest(&t));
  ck_assert_uint_eq(dp_table_earliest(&t)->deadline, min);
  ck_assert_uint_eq(dp_table_earliest_deadline(&t), min);
  dp_table_clear(&t);
  free(p);
}
END_TEST

START_TEST(test_no_deadline_leaves_order) {
  dp_peer_table t;
  test_peer *p = table_with_peers(&t, 3);
  dp_table_entry *a = &p[0].entry, *b = &p[1].entry, *c = &p[2].entry;

  /* No deadline on a fresh entry: clearing it is a no-op. */
  ck_assert_int_eq(dp_table_set_deadline(&t, c, DP_NO_DEADLINE), 0);
  ck_assert_ptr_null(dp_table_earliest(&t));

  ck_assert_int_eq(dp_table_set_deadline(&t, a, 10), 0);
  ck_assert_int_eq(dp_table_set_deadline(&t, b, 20), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), a);
  ck_assert_int_eq(dp_table_set_deadline(&t, a, DP_NO_DEADLINE), 0);
  ck_assert_uint_eq(a->deadline, DP_NO_DEADLINE);
  ck_assert_ptr_eq(dp_table_earliest(&t), b);
  ck_assert_uint_eq(t.heap_len, 1);
  /* Clearing twice is harmless. */
  ck_assert_int_eq(dp_table_set_deadline(&t, a, DP_NO_DEADLINE), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), b);
  ck_assert_int_eq(dp_table_set_deadline(&t, b, DP_NO_DEADLINE), 0);
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_uint_eq(t.heap_len, 0);

  /* Still in the table, and can be given a deadline again. */
  dp_addr_key k;
  make_key(&k, 0);
  ck_assert_ptr_eq(dp_table_find(&t, &k), a);
  ck_assert_uint_eq(dp_table_count(&t), 3);
  ck_assert_int_eq(dp_table_set_deadline(&t, b, 7), 0);
  ck_assert_int_eq(dp_table_set_deadline(&t, a, 3), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), a);
  check_heap(&t);

  /* Removing an entry without a deadline leaves the order alone. */
  dp_table_remove(&t, c);
  ck_assert_ptr_eq(dp_table_earliest(&t), a);
  ck_assert_uint_eq(t.heap_len, 2);
  check_heap(&t);

  dp_table_clear(&t);
  free(p);
}
END_TEST

START_TEST(test_remove_in_heap_keeps_order) {
  enum { N = 1000 };
  dp_peer_table t;
  dp_table_init(&t);
  test_peer *p = make_peers(N);
  rng_state = UINT64_C(42);
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
    ck_assert_int_eq(dp_table_set_deadline(&t, &p[i].entry, 1 + rng_next() % 100000), 0);
  }

  /* Remove the current earliest, then every third entry wherever it sits in
   * the heap (leaves, inner nodes, the last slot). */
  dp_table_entry *first = dp_table_earliest(&t);
  PEER_OF(first)->removed = 1;
  dp_table_remove(&t, first);
  check_heap(&t);
  dp_table_entry *last = t.heap[t.heap_len - 1].entry;
  PEER_OF(last)->removed = 1;
  dp_table_remove(&t, last);
  check_heap(&t);
  for (size_t i = 0; i < N; i += 3) {
    if (p[i].removed)
      continue;
    p[i].removed = 1;
    dp_table_remove(&t, &p[i].entry);
    check_heap(&t);
  }

  size_t left = 0;
  uint64_t *want = malloc(N * sizeof *want);
  ck_assert_ptr_nonnull(want);
  for (size_t i = 0; i < N; i++)
    if (!p[i].removed)
      want[left++] = p[i].entry.deadline;
  qsort(want, left, sizeof *want, cmp_u64);
  ck_assert_uint_eq(dp_table_count(&t), left);
  ck_assert_uint_eq(t.heap_len, left);

  for (size_t i = 0; i < left; i++) {
    dp_table_entry *e = dp_table_earliest(&t);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(PEER_OF(e)->removed, 0);
    ck_assert_uint_eq(e->deadline, want[i]);
    PEER_OF(e)->removed = 1;
    dp_table_remove(&t, e);
  }
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_uint_eq(dp_table_count(&t), 0);

  dp_table_clear(&t);
  free(want);
  free(p);
}
END_TEST

START_TEST(test_clear_then_reuse) {
  dp_peer_table t;
  dp_table_init(&t);
  test_peer *p = make_peers(40);
  for (int i = 0; i < 40; i++) {
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
    ck_assert_int_eq(dp_table_set_deadline(&t, &p[i].entry, (uint64_t)(100 - i)), 0);
  }
  dp_table_clear(&t);
  ck_assert_uint_eq(dp_table_count(&t), 0);
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_ptr_null(dp_table_first(&t));
  dp_addr_key k;
  make_key(&k, 5);
  ck_assert_ptr_null(dp_table_find(&t, &k));

  /* The cleared table works again with the same entries. */
  for (int i = 0; i < 40; i++)
    ck_assert_int_eq(dp_table_add(&t, &p[i].entry), 0);
  ck_assert_ptr_null(dp_table_earliest(&t));
  ck_assert_int_eq(dp_table_set_deadline(&t, &p[5].entry, 9), 0);
  ck_assert_ptr_eq(dp_table_earliest(&t), &p[5].entry);
  ck_assert_ptr_eq(dp_table_find(&t, &k), &p[5].entry);
  dp_table_clear(&t);
  free(p);
}
END_TEST

/* Hash flooding: addresses an attacker picked to share one bucket under a
 * hash key it knows land in ~as many buckets as random addresses would under
 * the table's per-process key, and 100,000 peers keep short chains. */
static dp_addr_key flood_key(uint32_t n) {
  dp_addr_key k;
  memset(&k, 0, sizeof k);
  k.ip[10] = k.ip[11] = 0xff;
  k.ip[12] = 127;
  k.ip[13] = (uint8_t)(n >> 24);
  k.ip[14] = (uint8_t)(n >> 16);
  k.ip[15] = (uint8_t)(n >> 8);
  k.port = (uint16_t)n;
  return k;
}

START_TEST(test_precomputed_collisions_do_not_transfer) {
  enum { N = 1000, BUCKET_MASK = 4095 };
  static dp_addr_key chosen[N];
  static const uint8_t attacker_key[16] = {0};
  int found = 0;
  for (uint32_t n = 0; found < N; n++) {
    dp_addr_key k = flood_key(n);
    if ((dp_siphash24(attacker_key, &k, sizeof k) & BUCKET_MASK) == 0)
      chosen[found++] = k;
  }
  /* Under the attacker's key they all share one bucket of 4096... */
  static uint8_t used[BUCKET_MASK + 1];
  memset(used, 0, sizeof used);
  int distinct = 0;
  for (int i = 0; i < N; i++) {
    unsigned b = dp_addr_hash(&chosen[i], sizeof chosen[i]) & BUCKET_MASK;
    distinct += !used[b];
    used[b] = 1;
  }
  /* ...under the table's key they spread (random: ~884 distinct). */
  ck_assert_int_gt(distinct, 800);

  /* 100,000 peers, the chosen ones among them: uthash never finds its
   * buckets ineffective and chains stay short. */
  enum { PEERS = 100000 };
  dp_table_entry *entries = calloc(PEERS, sizeof *entries);
  ck_assert_ptr_nonnull(entries);
  dp_peer_table t;
  dp_table_init(&t);
  for (int i = 0; i < PEERS; i++) {
    entries[i].key = i < N ? chosen[i] : flood_key(0x40000000u + (uint32_t)i);
    ck_assert_int_eq(dp_table_add(&t, &entries[i]), 0);
  }
  UT_hash_table *tbl = t.by_addr->hh.tbl;
  unsigned longest = 0;
  for (unsigned b = 0; b < tbl->num_buckets; b++)
    if (tbl->buckets[b].count > longest)
      longest = tbl->buckets[b].count;
  ck_assert_uint_eq(tbl->ineff_expands, 0);
  ck_assert_uint_eq(tbl->noexpand, 0);
  ck_assert_uint_le(longest, 16);
  for (int i = 0; i < PEERS; i++)
    ck_assert_ptr_eq(dp_table_find(&t, &entries[i].key), &entries[i]);
  dp_table_clear(&t);
  free(entries);
}
END_TEST

static Suite *peer_table_suite(void) {
  Suite *s = suite_create("peer_table");
  TCase *tc = tcase_create("hash");
  tcase_add_test(tc, test_add_find_remove);
  tcase_add_test(tc, test_recent_entry_never_outlives_removal);
  tcase_add_test(tc, test_many_entries_find_and_count);
  tcase_add_test(tc, test_iteration_visits_each_once);
  tcase_add_test(tc, test_clear_then_reuse);
  tcase_add_test(tc, test_precomputed_collisions_do_not_transfer);
  suite_add_tcase(s, tc);

  tc = tcase_create("heap");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_heap_10000_random_deadlines);
  tcase_add_test(tc, test_deadline_changes_reorder);
  tcase_add_test(tc, test_random_deadline_updates);
  tcase_add_test(tc, test_no_deadline_leaves_order);
  tcase_add_test(tc, test_remove_in_heap_keeps_order);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(peer_table_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
