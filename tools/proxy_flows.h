/* dtlsproxy's flows: one per peer address (a DTLS client on the server
 * side, a local plaintext source on the client side), each with the
 * descriptor that carries it onwards, found by either.
 *
 * A flow that ends is retired: out of both indexes at once (so the next
 * datagram from that address makes a new flow), but freed only after the
 * loop's batch of events, which may still name it. */
#ifndef PROXY_FLOWS_H
#define PROXY_FLOWS_H

#include <stdint.h>
#include <sys/socket.h>
#include <uthash.h>

typedef struct flow_key {
  uint8_t addr[16]; /* IPv4 (also IPv4-mapped) in the first 4, the rest zero */
  uint16_t port;
  uint16_t family;
} flow_key;

typedef struct flow {
  flow_key key;
  struct sockaddr_storage peer; /* as the socket reported it: where replies go */
  socklen_t peer_len;
  int fd;
  int retired;
  UT_hash_handle by_addr, by_fd;
  struct flow *next_retired;
} flow;

typedef struct flow_table {
  flow *by_addr, *by_fd, *retired;
} flow_table;

flow *flows_find_addr(flow_table *t, const struct sockaddr *peer);
flow *flows_find_fd(flow_table *t, int fd);
/* NULL (errno ENOMEM) if out of memory. */
flow *flows_add(flow_table *t, const struct sockaddr *peer, socklen_t len, int fd);
void flows_retire(flow_table *t, flow *f);
/* One retired flow, off the list (the caller frees it), or NULL. */
flow *flows_take_retired(flow_table *t);
/* The live flows, in no order: the first (NULL if none), and the one after f. */
flow *flows_first(flow_table *t);
flow *flows_next(const flow *f);
unsigned int flows_count(const flow_table *t);

#endif
