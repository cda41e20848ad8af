#include "peer_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NOT_IN_HEAP SIZE_MAX

void dp_table_init(dp_peer_table *t) { memset(t, 0, sizeof *t); }

void dp_table_clear(dp_peer_table *t) {
  HASH_CLEAR(hh, t->by_addr);
  free(t->heap);
  dp_table_init(t);
}

/* Slots carry a copy of their entry's deadline, so that ordering the heap
 * reads only the heap array: with many peers, entries are spread over the
 * process's memory, and moving the busiest peer's deadline would otherwise
 * touch a cold entry at every level. */
static void heap_place(dp_peer_table *t, size_t i, dp_heap_slot slot) {
  t->heap[i] = slot;
  slot.entry->heap_index = i;
}

static void heap_up(dp_peer_table *t, size_t i) {
  dp_heap_slot moving = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (t->heap[parent].deadline <= moving.deadline)
      break;
    heap_place(t, i, t->heap[parent]);
    i = parent;
  }
  heap_place(t, i, moving);
}

static void heap_down(dp_peer_table *t, size_t i) {
  dp_heap_slot moving = t->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= t->heap_len)
      break;
    if (child + 1 < t->heap_len && t->heap[child + 1].deadline < t->heap[child].deadline)
      child++;
    if (moving.deadline <= t->heap[child].deadline)
      break;
    heap_place(t, i, t->heap[child]);
    i = child;
  }
  heap_place(t, i, moving);
}

static void heap_remove(dp_peer_table *t, dp_table_entry *e) {
  size_t i = e->heap_index;
  e->heap_index = NOT_IN_HEAP;
  dp_heap_slot last = t->heap[--t->heap_len];
  if (i == t->heap_len)
    return;
  heap_place(t, i, last);
  heap_up(t, i);
  heap_down(t, last.entry->heap_index);
}

static int heap_insert(dp_peer_table *t, dp_table_entry *e) {
  if (t->heap_len == t->heap_cap) {
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 16;
    dp_heap_slot *heap = realloc(t->heap, cap * sizeof *heap);
    if (heap == NULL)
      return -ENOMEM;
    t->heap = heap;
    t->heap_cap = cap;
  }
  heap_place(t, t->heap_len++, (dp_heap_slot){e->deadline, e});
  heap_up(t, e->heap_index);
  return 0;
}

int dp_table_add(dp_peer_table *t, dp_table_entry *entry) {
  int oom = 0;
#undef uthash_nonfatal_oom
#define uthash_nonfatal_oom(obj) (oom = 1)
  HASH_ADD(hh, t->by_addr, key, sizeof entry->key, entry);
  if (oom)
    return -ENOMEM;
  entry->heap_index = NOT_IN_HEAP;
  entry->deadline = DP_NO_DEADLINE;
  t->count++;
  return 0;
}

void dp_table_remove(dp_peer_table *t, dp_table_entry *entry) {
  if (t->recent == entry)
    t->recent = NULL;
  if (entry->heap_index != NOT_IN_HEAP)
    heap_remove(t, entry);
  HASH_DELETE(hh, t->by_addr, entry);
  t->count--;
}

dp_table_entry *dp_table_find(dp_peer_table *t, const dp_addr_key *key) {
  /* A server answers the peer it has just heard from, and datagrams come in
   * bursts: checking the last peer found first spares the walk along a hash
   * chain of entries that, with many idle peers, are cold. */
  if (t->recent != NULL && memcmp(&t->recent->key, key, sizeof *key) == 0)
    return t->recent;
  dp_table_entry *found = NULL;
  HASH_FIND(hh, t->by_addr, key, sizeof *key, found);
  if (found != NULL)
    t->recent = found;
  return found;
}

int dp_table_set_deadline(dp_peer_table *t, dp_table_entry *entry, uint64_t deadline) {
  if (deadline == entry->deadline)
    return 0;
  if (deadline == DP_NO_DEADLINE) {
    if (entry->heap_index != NOT_IN_HEAP)
      heap_remove(t, entry);
    entry->deadline = deadline;
    return 0;
  }
  if (entry->heap_index == NOT_IN_HEAP) {
    uint64_t old = entry->deadline;
    entry->deadline = deadline;
    if (heap_insert(t, entry) != 0) {
      entry->deadline = old;
      return -ENOMEM;
    }
    return 0;
  }
  entry->deadline = deadline;
  t->heap[entry->heap_index].deadline = deadline;
  heap_up(t, entry->heap_index);
  heap_down(t, entry->heap_index);
  return 0;
}

dp_table_entry *dp_table_earliest(const dp_peer_table *t) { return t->heap_len ? t->heap[0].entry : NULL; }

uint64_t dp_table_earliest_deadline(const dp_peer_table *t) {
  return t->heap_len ? t->heap[0].deadline : DP_NO_DEADLINE;
}

size_t dp_table_count(const dp_peer_table *t) { return t->count; }

dp_table_entry *dp_table_first(const dp_peer_table *t) { return t->by_addr; }

dp_table_entry *dp_table_next(const dp_table_entry *entry) { return entry->hh.next; }
