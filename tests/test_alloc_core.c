/* Allocation failure in the sans-I/O core (issue 15): every allocation of a
 * server's handshake, of a client's, of sessions taking their buffers back
 * after the idle release, and of an endpoint freed then (its sessions take
 * them back for their close_notify), and of records.c taking a session's
 * records over, failed in turn (see alloc_fail.h).
 * The core runs on simnet's clock, so that a run in which a lost datagram
 * waits for a retransmission costs no real time, and every run makes the
 * same allocations.  Each run starts from nothing and ends with everything
 * freed; a peer already established on the endpoint under test must go on
 * working after every run. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "alloc_fail.h"
#include "alloc_fixture.h"
#include "endpoint.h"
#include "session.h"
#include "simnet.h"

#define IDLE_RELEASE_MS 2100 /* past endpoint.c's RELEASE_BUFFERS_AFTER_MS */

/* The nodes of a run, where step() finds them. */
static sim_node server, server2, client, newcomer;
static sim_node *const nodes[] = {&server, &server2, &client, &newcomer};
static dtlsplex_config *server_cfg, *client_cfg;
/* The node whose allocations are counted (NULL: every node's). */
static const sim_node *tested;

/* simnet's send function, uncounted: its checks allocate (Check's record
 * of where the test is), and only the library's allocations are tested. */
static int quiet_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  alloc_fail_pause();
  int r = sim_send(arg, to, source, data, len);
  alloc_fail_resume();
  return r;
}

static void start_node(sim_node *n, dtlsplex_config *cfg, uint16_t port) {
  n->addr = sim_addr(port);
  n->ep = dp_endpoint_new(cfg, quiet_send, n);
  ck_assert_ptr_nonnull(n->ep);
}

/* A run's nodes, made and freed within it so that it can be checked to
 * free all it allocated. */
static void start_nodes(void) {
  sim_init(NULL);
  server_cfg = alloc_config(1);
  client_cfg = alloc_config(0);
  start_node(&server, server_cfg, 5684);
  start_node(&server2, server_cfg, 5685);
  start_node(&client, client_cfg, 40000);
  start_node(&newcomer, client_cfg, 40001);
}

static void stop_nodes(void) {
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    dp_endpoint_free(nodes[i]->ep);
    nodes[i]->ep = NULL;
  }
  sim_clear();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
}

static int is_tested(const dp_addr *addr) {
  return tested == NULL || memcmp(&addr->key, &tested->addr.key, sizeof addr->key) == 0;
}

static sim_node *node_at(const dp_addr *addr) {
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++)
    if (memcmp(&addr->key, &nodes[i]->addr.key, sizeof addr->key) == 0)
      return nodes[i];
  return NULL;
}

/* Counts (and fails) only what the tested node allocates while it runs:
 * from enter to leave. */
static void enter(const sim_node *n) {
  if (is_tested(&n->addr))
    alloc_fail_resume();
}

static void leave(const sim_node *n) {
  if (is_tested(&n->addr))
    alloc_fail_pause();
}

/* Delivers what is in flight, then moves the clock on by step_ms and runs
 * every node's timers. */
static void step(uint64_t step_ms) {
  while (sim_in_flight() > 0) {
    sim_packet p = sim_take();
    sim_node *to = node_at(&p.to);
    if (to == NULL || to->ep == NULL)
      continue;
    enter(to);
    dp_endpoint_read_pkt(to->ep, &p.from, NULL, p.data, p.len, sim_now);
    leave(to);
  }
  sim_now += step_ms;
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    if (nodes[i]->ep == NULL)
      continue;
    enter(nodes[i]);
    dp_endpoint_handle_expiry(nodes[i]->ep, sim_now);
    leave(nodes[i]);
  }
}

static int state_of(const sim_node *from, const sim_node *to) {
  int err;
  return dp_endpoint_peer_state(from->ep, &to->addr, &err);
}

/* from sends text to `to`: its return, counted if from is tested. */
static ssize_t send_text(sim_node *from, const sim_node *to, const char *text) {
  enter(from);
  ssize_t r = dp_endpoint_write_pkt(from->ep, &to->addr, NULL, text, strlen(text), 1, sim_now);
  leave(from);
  return r;
}

/* What `at` received from `from`, counted if `at` is tested: 1 if it was
 * text, 0 if nothing, or the -errno. */
static int received(sim_node *at, const sim_node *from, const char *text) {
  char buf[64];
  dp_addr src;
  enter(at);
  ssize_t n = dp_endpoint_recv(at->ep, buf, sizeof buf, 0, &src);
  leave(at);
  if (n == -EAGAIN)
    return 0;
  if (n < 0)
    return (int)n;
  ck_assert_int_eq(n, (ssize_t)strlen(text));
  ck_assert_mem_eq(buf, text, strlen(text));
  ck_assert_mem_eq(&src.key, &from->addr.key, sizeof src.key);
  return 1;
}

/* Runs the network until from's handshake with `to` is over (or the
 * handshake timeout has long passed). */
static int finish_handshake(const sim_node *from, const sim_node *to) {
  for (uint64_t waited = 0; waited < 3 * ALLOC_HANDSHAKE_MS && state_of(from, to) == DTLSPLEX_STATE_HANDSHAKING;
       waited += 10)
    step(10);
  step(0);
  return state_of(from, to);
}

/* A handshake with nothing failing, and its first datagram received. */
static void connect_ok(sim_node *from, sim_node *to) {
  ck_assert_int_eq(send_text(from, to, "hello"), 5);
  ck_assert_int_eq(finish_handshake(from, to), DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_int_eq(received(to, from, "hello"), 1);
}

/* Data both ways between established a and b, nothing failing. */
static void exchange_ok(sim_node *a, sim_node *b) {
  ck_assert_int_eq(send_text(a, b, "ping"), 4);
  step(0);
  ck_assert_int_eq(received(b, a, "ping"), 1);
  ck_assert_int_eq(send_text(b, a, "pong"), 4);
  step(0);
  ck_assert_int_eq(received(a, b, "pong"), 1);
}

/* How a handshake may fail: out of memory, or as any failed handshake.
 * libssl does not always say that an allocation failed (a certificate
 * whose key it could not decode is "too small"); the other side may answer
 * a broken flight with an alert, or never. */
static int handshake_failure(ssize_t r) {
  return r == -ENOMEM || r == -EPROTO || r == -EACCES || r == -ECONNREFUSED || r == -ETIMEDOUT;
}

/* The handshake of `from` with `to` under failure: it fails, said by the
 * first send or the next, and nothing of it is left; or it completes, and
 * the datagram queued for it arrives (the first send may have failed
 * with ENOMEM to queue it, the handshake under way). */
static void handshake_under_failure(sim_node *from, sim_node *to, unsigned long nth) {
  alloc_fail_count(nth);
  alloc_fail_pause();
  ssize_t r = send_text(from, to, "first");
  int state = finish_handshake(from, to);
  int got = state == DTLSPLEX_STATE_ESTABLISHED ? received(to, from, "first") : 0;
  alloc_fail_stop();
  ck_assert_msg(r == 5 || handshake_failure(r), "allocation %lu failed: the first send returned %zd", nth, r);
  if (state == DTLSPLEX_STATE_ESTABLISHED) {
    ck_assert_msg(got == (r == 5), "allocation %lu failed: sent %zd, received %d", nth, r, got);
  } else if (state == DTLSPLEX_STATE_FAILED) {
    r = send_text(from, to, "again");
    ck_assert_msg(handshake_failure(r), "allocation %lu failed: the failed handshake reported %zd", nth, r);
  }
  if (state != DTLSPLEX_STATE_ESTABLISHED)
    ck_assert_int_eq(state_of(from, to), 0); /* reported once, then forgotten */
  /* Whatever became of it, the next handshake works. */
  if (state_of(from, to) != DTLSPLEX_STATE_ESTABLISHED) {
    step(3 * ALLOC_HANDSHAKE_MS); /* until the other side has given up on its half */
    connect_ok(from, to);
  }
}

/* A handshake under failure, and the peers of its endpoints. */
typedef struct handshake_case {
  sim_node *tested, *from, *to;
} handshake_case;

static void handshake(unsigned long nth, void *arg) {
  const handshake_case *c = arg;
  start_nodes();
  connect_ok(&client, &server);
  tested = c->tested;
  handshake_under_failure(c->from, c->to, nth);
  tested = NULL;
  exchange_ok(&client, &server);
  exchange_ok(c->from, c->to);
  stop_nodes();
}

/* A datagram each way between client and server under failure: a send
 * fails with ENOMEM, or its datagram arrives, or the receiving end said
 * ENOMEM: it lost the datagram (or, out of memory for its buffers or
 * cipher contexts, ended its session: it has told its program, and its
 * peer will find out as from any peer that lost its state).  Returns
 * whether either end said ENOMEM. */
static int exchange_under_failure(unsigned long nth, const char *text) {
  alloc_fail_count(nth);
  alloc_fail_pause();
  sim_node *ends[2] = {&client, &server};
  int told[2] = {0, 0}; /* which end has said ENOMEM */
  for (int i = 0; i < 2; i++) {
    sim_node *from = ends[i], *to = ends[1 - i];
    ssize_t r = send_text(from, to, text);
    step(0);
    int got = received(to, from, text);
    /* A server whose session ended has no client to send to. */
    ck_assert_msg(r == (ssize_t)strlen(text) || r == -ENOMEM || (told[i] && r == -ENOTCONN),
                  "allocation %lu failed: a send returned %zd", nth, r);
    told[i] |= r == -ENOMEM;
    told[1 - i] |= got == -ENOMEM;
    ck_assert_msg(r < 0 || got == 1 || told[1 - i], "allocation %lu failed: sent, received %d", nth, got);
  }
  alloc_fail_stop();
  return told[0] || told[1];
}

/* After the idle release, both ends of a session take their record
 * buffers back for the next datagrams.  Another peer of the server goes on
 * working. */
static void reload_after_release(unsigned long nth, void *arg) {
  (void)arg;
  start_nodes();
  connect_ok(&client, &server);
  connect_ok(&newcomer, &server);
  step(IDLE_RELEASE_MS);
  int told = exchange_under_failure(nth, "after idle");
  exchange_ok(&newcomer, &server);
  if (!told)
    exchange_ok(&client, &server);
  stop_nodes();
}

/* Records.c takes a session's application records over from libssl after
 * 16 (its keys derived, its cipher contexts made), and makes the contexts
 * again after the idle release (after_release). */
static void records_takeover(unsigned long nth, void *arg) {
  const int *after_release = arg;
  start_nodes();
  connect_ok(&client, &server);
  connect_ok(&newcomer, &server);
  /* 15 records at each end, with "hello": the exchange under failure
   * takes both ends over (the server as it answers, the client as it reads
   * the answer), or, after release, both have been. */
  for (int i = 0; i < 7; i++)
    exchange_ok(&client, &server);
  if (*after_release) {
    exchange_ok(&client, &server);
    ck_assert_ptr_nonnull(dp_endpoint_session(client.ep, &server.addr)->records);
    step(IDLE_RELEASE_MS);
  }
  int told = exchange_under_failure(nth, "taken over");
  exchange_ok(&newcomer, &server);
  if (!told)
    exchange_ok(&client, &server);
  stop_nodes();
}

/* An endpoint freed (the core of dtlsplex_detach) while its sessions are
 * idle: each takes its buffers back for its close_notify, or goes without
 * one.  Its peers' other sessions go on working. */
static void free_after_release(unsigned long nth, void *arg) {
  (void)arg;
  start_nodes();
  connect_ok(&client, &server);
  connect_ok(&newcomer, &server);
  connect_ok(&client, &server2);
  step(IDLE_RELEASE_MS);
  alloc_fail_count(nth);
  dp_endpoint_free(server.ep);
  server.ep = NULL;
  alloc_fail_stop();
  step(0); /* the close_notify that went out */
  int state = state_of(&newcomer, &server);
  ck_assert_msg(state == 0 || state == DTLSPLEX_STATE_ESTABLISHED, "allocation %lu failed: state %d", nth, state);
  exchange_ok(&client, &server2);
  stop_nodes();
}

START_TEST(server_handshake_allocations) {
  handshake_case server_side = {&server, &newcomer, &server};
  ck_assert_uint_gt(alloc_fail_sweep("server handshake", handshake, &server_side), 0);
}
END_TEST

START_TEST(client_handshake_allocations) {
  handshake_case client_side = {&client, &client, &server2};
  ck_assert_uint_gt(alloc_fail_sweep("client handshake", handshake, &client_side), 0);
}
END_TEST

START_TEST(reload_allocations) {
  ck_assert_uint_gt(alloc_fail_sweep("buffer reload after idle release", reload_after_release, NULL), 0);
}
END_TEST

START_TEST(takeover_allocations) {
  static const int at_once = 0, after_release = 1;
  ck_assert_uint_gt(alloc_fail_sweep("records taken over from libssl", records_takeover, (void *)&at_once), 0);
  ck_assert_uint_gt(alloc_fail_sweep("records after idle release", records_takeover, (void *)&after_release), 0);
}
END_TEST

START_TEST(free_allocations) {
  ck_assert_uint_gt(alloc_fail_sweep("detach after idle release", free_after_release, NULL), 0);
}
END_TEST

int main(void) {
  const TTest *const tests[] = {server_handshake_allocations, client_handshake_allocations, reload_allocations,
                                takeover_allocations, free_allocations};
  return alloc_tests_main("alloc_core", tests, sizeof tests / sizeof *tests);
}
