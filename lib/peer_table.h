/* Peers by address (uthash, keyed hash) and in deadline order (binary heap). */
#ifndef DTLSPLEX_PEER_TABLE_H
#define DTLSPLEX_PEER_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define HASH_NONFATAL_OOM 1
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = dp_addr_hash((keyptr), (keylen)))
#include <uthash.h>

#define DP_NO_DEADLINE UINT64_MAX

/* Embedded in the owner's peer struct; the table never allocates entries. */
typedef struct dp_table_entry {
  dp_addr_key key;
  uint64_t deadline; /* DP_NO_DEADLINE when no timer is due */
  size_t heap_index;
  UT_hash_handle hh;
} dp_table_entry;

typedef struct {
  uint64_t deadline; /* the entry's, copied */
  dp_table_entry *entry;
} dp_heap_slot;

typedef struct dp_peer_table {
  dp_table_entry *by_addr;
  dp_table_entry *recent; /* the last entry found, or NULL */
  dp_heap_slot *heap;     /* entries with a deadline, earliest first */
  size_t heap_len, heap_cap;
  size_t count;
} dp_peer_table;

void dp_table_init(dp_peer_table *t);
/* Frees the table's own memory, not the entries. */
void dp_table_clear(dp_peer_table *t);
/* entry->key must be set.  Returns 0, or -ENOMEM (entry not added). */
int dp_table_add(dp_peer_table *t, dp_table_entry *entry);
void dp_table_remove(dp_peer_table *t, dp_table_entry *entry);
/* Not const: it remembers the entry found, to check it first next time. */
dp_table_entry *dp_table_find(dp_peer_table *t, const dp_addr_key *key);
/* Returns 0, or -ENOMEM (deadline unchanged). */
int dp_table_set_deadline(dp_peer_table *t, dp_table_entry *entry, uint64_t deadline);
/* The entry with the earliest deadline, or NULL. */
dp_table_entry *dp_table_earliest(const dp_peer_table *t);
/* Its deadline, or DP_NO_DEADLINE; reads no entry. */
uint64_t dp_table_earliest_deadline(const dp_peer_table *t);
size_t dp_table_count(const dp_peer_table *t);
/* Iteration in no particular order; do not remove other entries meanwhile. */
dp_table_entry *dp_table_first(const dp_peer_table *t);
dp_table_entry *dp_table_next(const dp_table_entry *entry);

#endif
