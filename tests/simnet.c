#include "simnet.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

sim_counters sim_counts;

#define MAX_IN_FLIGHT 8192
#define MAX_NODES 128

static sim_packet in_flight[MAX_IN_FLIGHT];
static size_t n_in_flight;
static uint64_t next_seq;
static sim_node *nodes[MAX_NODES];
static size_t n_nodes;
static sim_faults faults;
static uint64_t rng_state;
static uint64_t outage_end; /* 0 until the outage starts */

/* splitmix64: small, seedable, good enough to choose faults. */
static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int chance(unsigned percent) { return percent != 0 && rng_next() % 100 < percent; }

void sim_init(const sim_faults *f) {
  memset(&faults, 0, sizeof faults);
  if (f != NULL)
    faults = *f;
  if (faults.delay_max_ms == 0)
    faults.delay_max_ms = 300;
  rng_state = faults.seed;
  outage_end = 0;
  n_in_flight = 0;
  n_nodes = 0;
  memset(&sim_counts, 0, sizeof sim_counts);
}

dp_addr sim_addr(uint16_t port) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET), 0);
  return a;
}

dp_addr sim_addr_of(const char *ip, uint16_t port) {
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
  dp_addr a;
  if (inet_pton(AF_INET, ip, &in.sin_addr) == 1) {
    ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET), 0);
  } else {
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in6, sizeof in6, AF_INET6), 0);
  }
  return a;
}

void sim_add_node(sim_node *n, dtlsplex_config *cfg, uint16_t port) { sim_add_node_at(n, cfg, sim_addr(port)); }

void sim_add_node_at(sim_node *n, dtlsplex_config *cfg, dp_addr addr) {
  ck_assert_uint_lt(n_nodes, MAX_NODES);
  n->addr = addr;
  n->ep = dp_endpoint_new(cfg, sim_send, n);
  ck_assert_ptr_nonnull(n->ep);
  nodes[n_nodes++] = n;
}

void sim_stop_node(sim_node *n) {
  dp_endpoint_free(n->ep);
  n->ep = NULL;
  for (size_t i = 0; i < n_nodes; i++)
    if (nodes[i] == n) {
      nodes[i] = nodes[--n_nodes];
      break;
    }
}

void sim_stop_all(void) {
  while (n_nodes > 0)
    sim_stop_node(nodes[n_nodes - 1]);
}

static void enqueue(const sim_node *from, const dp_addr *to, const uint8_t *data, size_t len, uint64_t due) {
  ck_assert_uint_lt(n_in_flight, MAX_IN_FLIGHT);
  ck_assert_uint_le(len, sizeof in_flight[0].data);
  sim_packet *p = &in_flight[n_in_flight++];
  p->from = from->addr;
  p->to = *to;
  p->due = due;
  p->seq = next_seq++;
  p->len = len;
  memcpy(p->data, data, len);
}

int sim_holds_record(const sim_packet *p, uint8_t type) {
  for (size_t at = 0; at + 13 <= p->len; at += 13 + ((size_t)p->data[at + 11] << 8 | p->data[at + 12]))
    if (p->data[at] == type)
      return 1;
  return 0;
}

/* Whether the datagram being sent (already counted) falls in the outage. */
static int in_outage(void) {
  if (faults.outage_ms == 0 || sim_counts.sent <= faults.outage_after)
    return 0;
  if (outage_end == 0)
    outage_end = sim_now + faults.outage_ms;
  return sim_now < outage_end;
}

int sim_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  const sim_node *from = arg;
  (void)source; /* one address per node */
  sim_counts.sent++;
  if (faults.path_mtu != 0 && len > faults.path_mtu) {
    sim_counts.too_big++;
    return 0; /* lost on the path, as a real router would drop it */
  }
  if (in_outage()) {
    sim_counts.dropped++;
    return 0;
  }
  int spared = len == 0 || (faults.protect & (1u << (data[0] & 31))) ||
               (faults.handshake_only && data[0] == 23);
  if (!spared && chance(faults.drop_percent)) {
    sim_counts.dropped++;
    return 0;
  }
  uint64_t due = sim_now;
  if (!spared && chance(faults.delay_percent)) {
    sim_counts.delayed++;
    due += 1 + rng_next() % faults.delay_max_ms;
  }
  enqueue(from, to, data, len, due);
  if (!spared && chance(faults.dup_percent)) {
    sim_counts.duplicated++;
    enqueue(from, to, data, len, due + rng_next() % faults.delay_max_ms);
  }
  return 0;
}

size_t sim_in_flight(void) { return n_in_flight; }

sim_packet *sim_peek(size_t i) {
  ck_assert_uint_lt(i, n_in_flight);
  return &in_flight[i];
}

static sim_packet take_at(size_t i) {
  sim_packet p = in_flight[i];
  memmove(in_flight + i, in_flight + i + 1, (--n_in_flight - i) * sizeof *in_flight);
  return p;
}

sim_packet sim_take(void) {
  ck_assert_uint_gt(n_in_flight, 0);
  return take_at(0);
}

void sim_clear(void) { n_in_flight = 0; }

void sim_deliver(const sim_packet *p) {
  for (size_t i = 0; i < n_nodes; i++) {
    sim_node *n = nodes[i];
    if (n->ep != NULL && memcmp(&n->addr.key, &p->to.key, sizeof p->to.key) == 0) {
      dp_endpoint_read_pkt(n->ep, &p->from, NULL, p->data, p->len, sim_now);
      return;
    }
  }
}

int sim_deliver_due(void) {
  int delivered = 0;
  for (;;) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n_in_flight; i++)
      if (in_flight[i].due <= sim_now &&
          (best == SIZE_MAX || in_flight[i].due < in_flight[best].due ||
           (in_flight[i].due == in_flight[best].due && in_flight[i].seq < in_flight[best].seq)))
        best = i;
    if (best == SIZE_MAX)
      return delivered;
    ck_assert_int_lt(delivered, 100000);
    sim_packet p = take_at(best);
    sim_deliver(&p);
    delivered++;
  }
}

void sim_advance(uint64_t ms) {
  sim_now += ms;
  for (size_t i = 0; i < n_nodes; i++)
    if (nodes[i]->ep != NULL)
      dp_endpoint_handle_expiry(nodes[i]->ep, sim_now);
}

int sim_run_until(uint64_t ms, int (*done)(void *arg), void *arg) {
  uint64_t end = sim_now + ms;
  for (;;) {
    sim_deliver_due();
    if (done != NULL && done(arg))
      return 1;
    if (sim_now >= end)
      return 0;
    sim_advance(10);
  }
}
