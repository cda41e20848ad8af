/* A simulated network for the sans-I/O core: endpoints exchange datagrams in
 * memory under a simulated clock, through a seeded relay that can drop,
 * duplicate, delay (and so reorder) datagrams, enforce a path MTU and go
 * dark for a while.  The same seed gives the same run.  Time is sim_clock's. */
#ifndef TESTS_SIMNET_H
#define TESTS_SIMNET_H

#include <stddef.h>
#include <stdint.h>

#include "dtlsplex.h"
#include "endpoint.h"
#include "sim_clock.h"

typedef struct sim_node {
  dp_endpoint *ep;
  dp_addr addr;
} sim_node;

typedef struct sim_faults {
  uint64_t seed;
  unsigned drop_percent, dup_percent, delay_percent; /* each datagram's chance, 0..100 */
  unsigned delay_max_ms;                    /* a delayed datagram arrives 1..this ms late */
  int handshake_only;                       /* spare datagrams that start with application data */
  size_t path_mtu;                          /* larger datagrams are lost; 0 = no limit */
  uint32_t protect;                         /* 1 << record type: never touch datagrams starting so */
  /* A burst of loss: once outage_after datagrams have been sent, the path
   * loses every datagram sent in the next outage_ms (0: none), spared or not,
   * as a link that goes down would.  Counted by datagram, not time, so that
   * it falls in a handshake however fast the seed makes it. */
  unsigned outage_after, outage_ms;
} sim_faults;

typedef struct sim_packet {
  dp_addr from, to;
  uint64_t due;
  uint64_t seq;
  size_t len;
  uint8_t data[4096];
} sim_packet;

typedef struct sim_counters {
  unsigned sent, dropped, duplicated, delayed, too_big;
} sim_counters;

extern sim_counters sim_counts;

/* Empties the network and forgets the nodes; faults may be NULL (none). */
void sim_init(const sim_faults *faults);
/* Starts an endpoint for cfg at 127.0.0.1:port, or at addr. */
void sim_add_node(sim_node *n, dtlsplex_config *cfg, uint16_t port);
void sim_add_node_at(sim_node *n, dtlsplex_config *cfg, dp_addr addr);
/* Frees the node's endpoint (close_notify to its peers goes in flight) and
 * takes it off the network. */
void sim_stop_node(sim_node *n);
/* Stops every node still running. */
void sim_stop_all(void);
dp_addr sim_addr(uint16_t port);
/* ip: IPv4 or IPv6 text. */
dp_addr sim_addr_of(const char *ip, uint16_t port);

/* The endpoints' send function (arg: the sending sim_node). */
int sim_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len);

/* Whether a datagram holds a record of type (20: ChangeCipherSpec, which
 * opens a side's final flight, after a NewSessionTicket with tickets on). */
int sim_holds_record(const sim_packet *p, uint8_t type);

size_t sim_in_flight(void);
sim_packet *sim_peek(size_t i);
/* Removes and returns the oldest datagram in flight. */
sim_packet sim_take(void);
/* Loses everything in flight. */
void sim_clear(void);
/* Hands a datagram to the node it is addressed to (if any). */
void sim_deliver(const sim_packet *p);
/* Delivers every datagram due by sim_now, including those sent meanwhile;
 * returns how many. */
int sim_deliver_due(void);
/* Moves the clock on and runs every node's timers. */
void sim_advance(uint64_t ms);
/* Alternates delivery and 10 ms clock steps for ms of simulated time, or
 * until done(arg) says so; returns 1 if done. */
int sim_run_until(uint64_t ms, int (*done)(void *arg), void *arg);

#endif
