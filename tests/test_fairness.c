/* Hostile clients with real addresses (they answer cookies): fair shares of
 * the table and of handshakes per source, eviction of silent peers when the
 * table is full, and the per-source budget of full handshakes.  Over the
 * sans-I/O core and simnet, which gives every client the address it asks
 * for: many ports of one host, many hosts of one IPv6 /64. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "dtlsplex.h"
#include "endpoint.h"
#include "simnet.h"
#include "check_main.h"

#define MAX_CLIENTS 64
#define ATTACKER_IP "198.51.100.7"

static test_pki pki;
static dtlsplex_config *server_cfg, *client_cfg;
static sim_node server, clients[MAX_CLIENTS];
static int n_clients;

static void queue_events(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)event, (void)peer, (void)len, (void)error, (void)arg;
}

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  server_cfg = dtlsplex_config_new();
  client_cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(server_cfg);
  ck_assert_ptr_nonnull(client_cfg);
  ck_assert_int_eq(dtlsplex_config_set_certificate(server_cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(server_cfg, DTLSPLEX_ROLE_SERVER), 0);
  /* The core queues events only for a program that asked for them. */
  ck_assert_int_eq(dtlsplex_config_set_event_callback(server_cfg, queue_events, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_ca(client_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(client_cfg, DTLSPLEX_ROLE_CLIENT), 0);
  ck_assert_int_eq(dtlsplex_config_set_resumption(client_cfg, 0, 0), 0);
  sim_init(NULL);
  n_clients = 0;
}

static void teardown(void) {
  sim_stop_all();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  test_pki_remove(&pki);
}

/* At 127.0.0.1: the address the test certificate names. */
static void start_server(void) { sim_add_node(&server, server_cfg, 5684); }

/* A client at ip:port that sends its first datagram (queued until its
 * handshake completes).  Returns its index. */
static int start_client_with(dtlsplex_config *cfg, const char *ip, uint16_t port) {
  ck_assert_int_lt(n_clients, MAX_CLIENTS);
  sim_node *c = &clients[n_clients];
  sim_add_node_at(c, cfg, sim_addr_of(ip, port));
  ck_assert_int_eq(dp_endpoint_write_pkt(c->ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  return n_clients++;
}

/* Clients with client_cfg never resume: each handshake is a full one. */
static int start_client(const char *ip, uint16_t port) { return start_client_with(client_cfg, ip, port); }

static int client_established(int i) {
  int err;
  return clients[i].ep != NULL &&
         dp_endpoint_peer_state(clients[i].ep, &server.addr, &err) == DTLSPLEX_STATE_ESTABLISHED;
}

static int count_established(int from, int to) {
  int n = 0;
  for (int i = from; i < to; i++)
    n += client_established(i);
  return n;
}

static struct dtlsplex_stats server_stats(void) {
  struct dtlsplex_stats st;
  dp_endpoint_stats(server.ep, &st);
  return st;
}

static void run_ms(uint64_t ms) { sim_run_until(ms, NULL, NULL); }

/* The established clients among [from, to) send a datagram: they are active. */
static void speak(int from, int to) {
  for (int i = from; i < to; i++)
    if (client_established(i))
      ck_assert_int_eq(dp_endpoint_write_pkt(clients[i].ep, &server.addr, NULL, "tick", 4, 0, sim_now), 4);
}

static int established_soon(void *arg) { return client_established(*(int *)arg); }

/* Whether client i completes its handshake within ms. */
static int served_within(int i, uint64_t ms) { return sim_run_until(ms, established_soon, &i); }

/* One host opens sessions from many ports and keeps them busy.  It gets its
 * share and no more; a client from another address is served at once.
 * Without the share (100%) the same host fills the table and locks the
 * other client out: what the share prevents. */
static void one_host_many_ports(unsigned int share_percent, int expect_attacker, int expect_served) {
  ck_assert_int_eq(dtlsplex_config_set_limits(server_cfg, 40, 40), 0);
  ck_assert_int_eq(dtlsplex_config_set_source_share(server_cfg, 32, 64, share_percent), 0);
  start_server();
  for (int i = 0; i < 40; i++)
    start_client(ATTACKER_IP, (uint16_t)(20000 + i));
  for (int t = 0; t < 5; t++) {
    run_ms(1000);
    speak(0, 40);
  }
  ck_assert_int_eq(count_established(0, 40), expect_attacker);
  struct dtlsplex_stats st = server_stats();
  ck_assert_uint_eq(st.peers, (uint64_t)expect_attacker);
  int victim = start_client("203.0.113.9", 4433);
  ck_assert_int_eq(served_within(victim, 500), expect_served);
  if (share_percent < 100)
    ck_assert_uint_ge(server_stats().dropped_source_share, 40 - expect_attacker);
}

START_TEST(one_host_held_to_its_share) {
  one_host_many_ports(10, 4, 1); /* 10% of 40 */
}
END_TEST

START_TEST(without_a_share_one_host_locks_others_out) {
  one_host_many_ports(100, 40, 0);
  ck_assert_uint_gt(server_stats().dropped_limit, 0);
}
END_TEST

/* The same with many addresses of one IPv6 /64 (one customer's network):
 * the /64 is one source.  Counted per address (/128), the same hosts would
 * take the whole table. */
static void one_prefix_many_hosts(unsigned int v6_prefix, int expect_attacker) {
  ck_assert_int_eq(dtlsplex_config_set_limits(server_cfg, 40, 40), 0);
  ck_assert_int_eq(dtlsplex_config_set_source_share(server_cfg, 32, v6_prefix, 10), 0);
  start_server();
  for (int i = 0; i < 30; i++) {
    char ip[64];
    snprintf(ip, sizeof ip, "2001:db8:1:2:%x::%x", (i * 7919) & 0xffff, i + 1);
    start_client(ip, 5000);
  }
  for (int t = 0; t < 5; t++) {
    run_ms(1000);
    speak(0, 30);
  }
  ck_assert_int_eq(count_established(0, 30), expect_attacker);
  int other_prefix = start_client("2001:db8:1:3::1", 5000);
  ck_assert(served_within(other_prefix, 500));
}

START_TEST(ipv6_prefix_held_to_its_share) {
  one_prefix_many_hosts(64, 4);
  ck_assert_uint_ge(server_stats().dropped_source_share, 26);
}
END_TEST

START_TEST(ipv6_hosts_counted_alone_with_prefix_128) {
  one_prefix_many_hosts(128, 30);
}
END_TEST

static int next_event_of(int wanted, dp_event *out) {
  while (dp_endpoint_next_event(server.ep, out))
    if (out->event == wanted)
      return 1;
  return 0;
}

/* A host fills the table and falls silent; once the silence passes the
 * minimum, clients from elsewhere take the silent peers' places, least
 * recently active first.  A peer that kept talking is never evicted, and
 * before the minimum nobody is. */
START_TEST(silent_peers_evicted_when_full) {
  ck_assert_int_eq(dtlsplex_config_set_limits(server_cfg, 10, 10), 0);
  ck_assert_int_eq(dtlsplex_config_set_source_share(server_cfg, 32, 64, 100), 0);
  ck_assert_int_eq(dtlsplex_config_set_eviction(server_cfg, 30000), 0);
  start_server();
  for (int i = 0; i < 10; i++)
    start_client(ATTACKER_IP, (uint16_t)(20000 + i));
  run_ms(2000);
  ck_assert_int_eq(count_established(0, 10), 10);
  /* Client 0 keeps talking; the others are silent from now on, client 1 the longest. */
  speak(1, 2);
  run_ms(1000);
  speak(2, 10);
  int early = start_client("203.0.113.9", 4433);
  ck_assert(!served_within(early, 3000)); /* silent for less than 30 s: nobody evicted */
  ck_assert_uint_eq(server_stats().evicted, 0);
  for (int t = 0; t < 35; t++) {
    speak(0, 1);
    run_ms(1000);
  }
  /* The early client retransmits its ClientHello and is served in turn. */
  for (int i = 0; i < 3; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "203.0.113.%d", 20 + i);
    int fresh = start_client(ip, 4433);
    ck_assert(served_within(fresh, 500));
  }
  run_ms(8000);
  ck_assert(client_established(early));
  struct dtlsplex_stats st = server_stats();
  ck_assert_uint_eq(st.evicted, 4);
  ck_assert_uint_eq(st.peers, 10);
  ck_assert_uint_eq(st.expired, 0);
  ck_assert(client_established(0));
  /* The first evicted was the least recently active; each was told. */
  ck_assert(!client_established(1));
  int err;
  ck_assert_int_ne(dp_endpoint_peer_state(clients[1].ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  dp_event ev;
  ck_assert(next_event_of(DTLSPLEX_EVENT_EXPIRED, &ev));
  ck_assert_int_eq(ev.error, ENOBUFS);
  ck_assert_mem_eq(&ev.peer.key, &clients[1].addr.key, sizeof ev.peer.key);
}
END_TEST

START_TEST(no_eviction_when_turned_off) {
  ck_assert_int_eq(dtlsplex_config_set_limits(server_cfg, 4, 4), 0);
  ck_assert_int_eq(dtlsplex_config_set_source_share(server_cfg, 32, 64, 100), 0);
  ck_assert_int_eq(dtlsplex_config_set_eviction(server_cfg, 0), 0);
  start_server();
  for (int i = 0; i < 4; i++)
    start_client(ATTACKER_IP, (uint16_t)(20000 + i));
  run_ms(100000);
  int late = start_client("203.0.113.9", 4433);
  ck_assert(!served_within(late, 2000));
  ck_assert_uint_eq(server_stats().evicted, 0);
  ck_assert_uint_gt(server_stats().dropped_limit, 0);
}
END_TEST

/* One host starts handshakes as fast as it can: it completes its burst and
 * then one per refill interval; the rest are dropped before any public-key
 * work.  Another host is served meanwhile, and a resumption (a ticket this
 * server sealed) costs the flooding host nothing from its budget. */
START_TEST(handshake_flood_held_to_budget) {
  ck_assert_int_eq(dtlsplex_config_set_limits(server_cfg, 100, 100), 0);
  ck_assert_int_eq(dtlsplex_config_set_source_share(server_cfg, 32, 64, 100), 0);
  ck_assert_int_eq(dtlsplex_config_set_handshake_budget(server_cfg, 10, 5), 0);
  start_server();
  for (int i = 0; i < 40; i++)
    start_client(ATTACKER_IP, (uint16_t)(20000 + i));
  run_ms(300);
  struct dtlsplex_stats st = server_stats();
  ck_assert_uint_le(st.handshakes_ok + st.handshakes_active, 5 + 3); /* burst, plus 300 ms at 10/s */
  ck_assert_uint_ge(st.dropped_handshake_budget, 30);
  int other = start_client("203.0.113.9", 4433);
  ck_assert(served_within(other, 200));
  /* Over 5 s of retransmitted ClientHellos, no more than the budget. */
  run_ms(5000);
  st = server_stats();
  ck_assert_uint_le(st.handshakes_ok + st.handshakes_active + st.handshakes_failed, 1 + 5 + 10 * 6);
  ck_assert_uint_gt(st.handshakes_ok, 1 + 5); /* refilled tokens served retransmissions */

  /* A client of that host that resumes costs it nothing from the budget. */
  dtlsplex_config *returning_cfg = dtlsplex_config_new();
  ck_assert_int_eq(dtlsplex_config_set_ca(returning_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(returning_cfg, DTLSPLEX_ROLE_CLIENT), 0);
  run_ms(1000);
  int first = start_client_with(returning_cfg, ATTACKER_IP, 23000);
  ck_assert(served_within(first, 200));
  sim_stop_node(&clients[first]); /* its session stays in returning_cfg's cache */
  sim_clear();
  uint64_t refused = server_stats().dropped_handshake_budget;
  for (int i = 0; i < 10; i++)
    start_client(ATTACKER_IP, (uint16_t)(21000 + i));
  run_ms(50);
  ck_assert_uint_gt(server_stats().dropped_handshake_budget, refused);
  refused = server_stats().dropped_handshake_budget;
  uint64_t resumed = server_stats().handshakes_resumed;
  int again = start_client_with(returning_cfg, ATTACKER_IP, 22000);
  ck_assert(served_within(again, 100));
  ck_assert_uint_eq(server_stats().handshakes_resumed, resumed + 1);
  ck_assert_uint_eq(server_stats().dropped_handshake_budget, refused);
  sim_stop_all();
  dtlsplex_config_free(returning_cfg);
}
END_TEST

/* A ticket the server cannot open (another server's keys) makes a full
 * handshake: let through while the budget lasts, and charged. */
START_TEST(ticket_that_does_not_resume_is_charged) {
  dtlsplex_config *returning_cfg = dtlsplex_config_new();
  ck_assert_int_eq(dtlsplex_config_set_ca(returning_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(returning_cfg, DTLSPLEX_ROLE_CLIENT), 0);
  start_server();
  int first = start_client_with(returning_cfg, ATTACKER_IP, 23000);
  ck_assert(served_within(first, 200));
  sim_stop_node(&clients[first]);
  sim_stop_node(&server);
  sim_clear();
  /* A new server at the same address: new ticket keys, a budget of 2. */
  dtlsplex_config_free(server_cfg);
  server_cfg = dtlsplex_config_new();
  ck_assert_int_eq(dtlsplex_config_set_certificate(server_cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(server_cfg, DTLSPLEX_ROLE_SERVER), 0);
  ck_assert_int_eq(dtlsplex_config_set_handshake_budget(server_cfg, 1, 2), 0);
  start_server();
  int stale = start_client_with(returning_cfg, ATTACKER_IP, 23001);
  ck_assert(served_within(stale, 200));
  ck_assert_uint_eq(server_stats().handshakes_resumed, 0);
  int fresh = start_client(ATTACKER_IP, 23002);
  ck_assert(served_within(fresh, 200));
  int over = start_client(ATTACKER_IP, 23003);
  ck_assert(!served_within(over, 200));
  ck_assert_uint_eq(server_stats().dropped_handshake_budget, 1);
  sim_stop_all();
  dtlsplex_config_free(returning_cfg);
}
END_TEST

static Suite *fairness_suite(void) {
  Suite *s = suite_create("fairness");
  TCase *tc = tcase_create("fairness");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, one_host_held_to_its_share);
  tcase_add_test(tc, without_a_share_one_host_locks_others_out);
  tcase_add_test(tc, ipv6_prefix_held_to_its_share);
  tcase_add_test(tc, ipv6_hosts_counted_alone_with_prefix_128);
  tcase_add_test(tc, silent_peers_evicted_when_full);
  tcase_add_test(tc, no_eviction_when_turned_off);
  tcase_add_test(tc, handshake_flood_held_to_budget);
  tcase_add_test(tc, ticket_that_does_not_resume_is_charged);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(fairness_suite(), CK_FORK_GETENV); }
