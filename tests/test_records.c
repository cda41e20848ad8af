/* records.c: application records sealed and opened by the library instead
 * of libssl, over the sans-I/O core and simnet.  Each check that the two
 * layers agree runs one side with libssl's records (config's
 * records_by_libssl), so that a consistent mistake on both ends (a wrong
 * key, nonce or additional data) cannot pass. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "config.h"
#include "dtlsplex.h"
#include "endpoint.h"
#include "records.h"
#include "session.h"
#include "simnet.h"
#include "check_main.h"

#define TYPE_CCS 20
#define TYPE_APP 23

static test_pki pki;
static sim_node server, client;
static dtlsplex_config *server_cfg, *client_cfg;

static const char *const aead_suites[] = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                          "ECDHE-ECDSA-CHACHA20-POLY1305"};

static void ignore_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)event, (void)peer, (void)len, (void)error, (void)arg;
}

static dtlsplex_config *make_config(int server_side, const char *suite, int by_libssl) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(cfg, ignore_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, 60000, 600000), 0);
  if (server_side) {
    ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), 0);
    ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER), 0);
    ck_assert_int_eq(dtlsplex_config_set_ciphers(cfg, suite), 0);
  } else {
    ck_assert_int_eq(dtlsplex_config_set_ca(cfg, pki.ca, NULL), 0);
  }
  cfg->records_by_libssl = by_libssl;
  return cfg;
}

static void start_pair(const char *suite, int server_by_libssl, int client_by_libssl) {
  server_cfg = make_config(1, suite, server_by_libssl);
  client_cfg = make_config(0, suite, client_by_libssl);
  sim_init(NULL);
  sim_add_node(&server, server_cfg, 5684);
  sim_add_node(&client, client_cfg, 40000);
}

static void connect_pair(const char *suite, int server_by_libssl, int client_by_libssl) {
  start_pair(suite, server_by_libssl, client_by_libssl);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "first", 5, 1, sim_now), 5);
  sim_deliver_due();
  char buf[16];
  ck_assert_int_eq(dp_endpoint_recv(server.ep, buf, sizeof buf, 0, NULL), 5);
}

static void free_pair(void) {
  sim_stop_all();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
}

static dp_session *session_of(sim_node *n, const sim_node *peer) {
  dp_session *s = dp_endpoint_session(n->ep, &peer->addr);
  ck_assert_ptr_nonnull(s);
  return s;
}

static int message(char *buf, size_t cap, const char *tag, int i) {
  return snprintf(buf, cap, "%s-%d-%s", tag, i, i % 3 == 0 ? "a longer message, so that lengths vary" : "");
}

static void send_message(sim_node *from, const sim_node *to, const char *tag, int i) {
  char msg[128];
  int len = message(msg, sizeof msg, tag, i);
  ck_assert_int_eq(dp_endpoint_write_pkt(from->ep, &to->addr, NULL, msg, (size_t)len, 0, sim_now), len);
}

static void expect_message(sim_node *at, const char *tag, int i) {
  char expect[128], buf[256];
  int len = message(expect, sizeof expect, tag, i);
  ck_assert_int_eq(dp_endpoint_recv(at->ep, buf, sizeof buf, 0, NULL), len);
  ck_assert_mem_eq(buf, expect, (size_t)len);
}

/* count messages each way, delivered and read in order. */
static void exchange(int count, const char *tag) {
  for (int i = 0; i < count; i++) {
    send_message(&client, &server, tag, i);
    send_message(&server, &client, tag, i);
    sim_deliver_due();
    expect_message(&server, tag, i);
    expect_message(&client, tag, i);
  }
  ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);
  ck_assert_uint_eq(dp_endpoint_pending(client.ep), 0);
}

static void setup(void) { ck_assert_int_eq(test_pki_make(&pki), 0); }
static void teardown(void) {
  sim_stop_all();
  test_pki_remove(&pki);
}

START_TEST(replay_window) {
  dp_replay w = {0};
  ck_assert(!dp_replay_seen(&w, 0));
  dp_replay_mark(&w, 0);
  dp_replay_mark(&w, 2);
  ck_assert(dp_replay_seen(&w, 0));
  ck_assert(!dp_replay_seen(&w, 1));
  ck_assert(dp_replay_seen(&w, 2));
  ck_assert(!dp_replay_seen(&w, 3));
  dp_replay_mark(&w, 65); /* 0 and 1 fall out of the window: too old to tell */
  ck_assert(dp_replay_seen(&w, 1));
  ck_assert(dp_replay_seen(&w, 2));
  ck_assert(!dp_replay_seen(&w, 3));
  ck_assert(!dp_replay_seen(&w, 64));
  dp_replay_mark(&w, 64);
  ck_assert(dp_replay_seen(&w, 64));
  dp_replay_mark(&w, 1000); /* far ahead: only it is known */
  ck_assert(dp_replay_seen(&w, 936));
  ck_assert(!dp_replay_seen(&w, 937));
  ck_assert(!dp_replay_seen(&w, 999));
  ck_assert(!dp_replay_seen(&w, 1001));
}
END_TEST

/* Each AEAD suite, with this library's records on both sides and against
 * libssl's on either: 40 messages each way, past the takeover, then idle
 * (the cipher contexts given back) and 5 more. */
START_TEST(layers_agree_on_every_aead_suite) {
  const char *suite = aead_suites[_i / 3];
  int server_by_libssl = _i % 3 == 1, client_by_libssl = _i % 3 == 2;
  connect_pair(suite, server_by_libssl, client_by_libssl);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(client.ep, &server.addr, &info), 0);
  ck_assert_str_eq(info.cipher, suite);
  exchange(40, "before");
  dp_session *s = session_of(&server, &client), *c = session_of(&client, &server);
  ck_assert_int_eq(s->records != NULL, !server_by_libssl);
  ck_assert_int_eq(c->records != NULL, !client_by_libssl);
  sim_advance(5000);
  ck_assert(!dp_session_holds_buffers(s));
  ck_assert(!dp_session_holds_buffers(c));
  exchange(5, "after idle");
  free_pair();
}
END_TEST

/* A suite records.c does not take (AES-CCM8, in the defaults for
 * constrained peers) stays libssl's. */
START_TEST(other_suites_stay_with_libssl) {
  connect_pair("ECDHE-ECDSA-AES128-CCM8", 0, 0);
  exchange(40, "ccm");
  ck_assert_int_eq(session_of(&server, &client)->own_records, 0);
  ck_assert_ptr_null(session_of(&server, &client)->records);
  free_pair();
}
END_TEST

/* A peer that asked for a maximum fragment length (RFC 6066, here 512
 * bytes) gets no longer record: a longer write is EMSGSIZE and leaves the
 * session up.  Its records stay libssl's, which enforces the length. */
START_TEST(max_fragment_length_respected) {
  start_pair(aead_suites[0], 0, 0);
  SSL_CTX *ctx = dtlsplex_config_get_ssl_ctx(client_cfg);
  ck_assert_int_eq(SSL_CTX_set_tlsext_max_fragment_length(ctx, TLSEXT_max_fragment_length_512), 1);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "first", 5, 1, sim_now), 5);
  sim_deliver_due();
  char buf[1024];
  ck_assert_int_eq(dp_endpoint_recv(server.ep, buf, sizeof buf, 0, NULL), 5);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(server.ep, &client.addr, &info), 0);
  ck_assert_uint_eq(info.data_mtu, 512);
  static const uint8_t big[700];
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, big, 513, 0, sim_now), -EMSGSIZE);
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, big, 512, 0, sim_now), 512);
  sim_deliver_due();
  ck_assert_int_eq(dp_endpoint_recv(client.ep, buf, sizeof buf, 0, NULL), 512);
  exchange(40, "mfl");
  ck_assert_int_eq(session_of(&server, &client)->own_records, 0);
  free_pair();
}
END_TEST

/* Delivers the next datagram in flight, returning a copy of it. */
static sim_packet pass_one(void) {
  ck_assert_uint_gt(sim_in_flight(), 0);
  sim_packet p = sim_take();
  sim_deliver(&p);
  return p;
}

/* The datagram of one message from the client, not yet delivered. */
static sim_packet client_datagram(const char *tag, int i) {
  send_message(&client, &server, tag, i);
  ck_assert_uint_eq(sim_in_flight(), 1);
  return sim_take();
}

START_TEST(forged_and_replayed_records_dropped) {
  connect_pair(aead_suites[_i], 0, 0);
  exchange(20, "warm");
  dp_session *s = session_of(&server, &client);
  ck_assert_ptr_nonnull(s->records);
  for (int variant = 0; variant < 5; variant++) {
    sim_packet p = client_datagram("x", variant), forged = p;
    switch (variant) {
    case 0: forged.data[forged.len - 1] ^= 1; break;                 /* the tag */
    case 1: forged.data[forged.len - 20] ^= 0x80; break;             /* the ciphertext */
    case 2: forged.data[10] ^= 1; break;                             /* the sequence number */
    case 3: memset(forged.data + 5, 0xff, 6); break;                 /* the highest sequence number */
    case 4: forged.data[2] = 0xff; break;                            /* the version */
    }
    sim_deliver(&forged);
    ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);
    sim_deliver(&p); /* a forgery used up nothing */
    sim_deliver(&p); /* the replay is dropped */
    expect_message(&server, "x", variant);
    ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);
  }
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(server.ep, &client.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  exchange(3, "still");
  free_pair();
}
END_TEST

/* The replay window records.c starts with is the one libssl left: what
 * libssl opened is never opened again, what it never saw still is. */
START_TEST(replay_window_carried_over_from_libssl) {
  connect_pair(aead_suites[0], 0, 0);
  enum { N = 30, LATE = 10 };
  sim_packet sent[N];
  for (int i = 0; i < N; i++)
    sent[i] = client_datagram("m", i);
  for (int i = 0; i < N; i++)
    if (i != LATE)
      sim_deliver(&sent[i]);
  dp_session *s = session_of(&server, &client);
  ck_assert_ptr_nonnull(s->records); /* taken over, with the late one's place open */
  sim_deliver(&sent[LATE]);
  for (int i = 0; i < N; i++) /* replays of libssl's and of records.c's */
    sim_deliver(&sent[i]);
  for (int i = 0; i < N; i++)
    if (i != LATE)
      expect_message(&server, "m", i);
  expect_message(&server, "m", LATE);
  ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);
  free_pair();
}
END_TEST

/* The epoch-1 sequence numbers in a datagram from the server, appended to
 * seqs; for GCM also the explicit nonces. */
static void collect_sequence_numbers(const sim_packet *p, uint64_t *seqs, size_t *n, size_t cap) {
  for (size_t at = 0; at + 13 <= p->len; at += 13 + ((size_t)p->data[at + 11] << 8 | p->data[at + 12])) {
    const uint8_t *r = p->data + at;
    if (r[3] == 0 && r[4] == 1) {
      ck_assert_uint_lt(*n, cap);
      seqs[(*n)++] = dp_record_sequence(r);
    }
  }
}

static void assert_unique(const uint64_t *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      ck_assert_msg(v[i] != v[j], "sequence number %llu used twice", (unsigned long long)v[i]);
}

/* For GCM, a record records.c sealed carries its epoch and sequence number
 * as its explicit nonce. */
static void assert_nonce_is_sequence(const sim_packet *p) {
  for (size_t at = 0; at + 13 <= p->len; at += 13 + ((size_t)p->data[at + 11] << 8 | p->data[at + 12]))
    if (p->data[at + 3] == 0 && p->data[at + 4] == 1)
      ck_assert_mem_eq(p->data + at + 13, p->data + at + 3, 8);
}

/* After records.c took over, what libssl writes in the epoch (here its
 * close_notify) goes out under records.c's next sequence number: never one
 * used before, so never a nonce twice, and the peer's libssl takes it.
 * GCM's explicit nonce stays the sequence number, also once the cipher
 * context was made again after the idle release. */
START_TEST(libssl_records_after_takeover_resealed) {
  connect_pair(aead_suites[_i], 0, 1);
  int gcm = _i < 2;
  uint64_t seqs[256];
  size_t n = 0;
  dp_session *s = session_of(&server, &client);
  for (int i = 0; i < 45; i++) {
    if (i == 40) {
      sim_advance(5000);
      ck_assert(!dp_session_holds_buffers(s));
    }
    send_message(&server, &client, "m", i);
    sim_packet p = pass_one();
    collect_sequence_numbers(&p, seqs, &n, 256);
    if (gcm && s->records != NULL)
      assert_nonce_is_sequence(&p);
    expect_message(&client, "m", i);
  }
  ck_assert_ptr_nonnull(s->records);
  ck_assert_int_eq(dp_endpoint_close(server.ep, &client.addr), 0);
  sim_packet p = pass_one();
  ck_assert_uint_eq(p.data[0], 21); /* the alert */
  collect_sequence_numbers(&p, seqs, &n, 256);
  if (gcm)
    assert_nonce_is_sequence(&p);
  ck_assert_uint_eq(n, 46);
  assert_unique(seqs, n);
  ck_assert_uint_gt(seqs[45], seqs[44]);
  int err;
  ck_assert_int_ne(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  free_pair();
}
END_TEST

/* Delivers what is in flight for ms of simulated time, collecting the
 * server's epoch-1 sequence numbers. */
static void run_collecting(uint64_t ms, uint64_t *seqs, size_t *n, size_t cap) {
  for (uint64_t t = 0; t <= ms; t += 10) {
    while (sim_in_flight() > 0) {
      sim_packet p = sim_take();
      if (memcmp(&p.from.key, &server.addr.key, sizeof p.from.key) == 0)
        collect_sequence_numbers(&p, seqs, n, cap);
      sim_deliver(&p);
    }
    sim_advance(10);
  }
}

/* The server's final flight is lost and it sends 20 datagrams, the last
 * ones sealed by records.c.  The client holds what it can (16) until its
 * retransmitted Finished brings the server's again, sealed anew, and
 * then delivers them. */
START_TEST(finished_retransmitted_after_takeover) {
  int client_by_libssl = _i;
  start_pair(aead_suites[0], 0, client_by_libssl);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hi", 2, 1, sim_now), 2);
  int lost = 0;
  for (int step = 0; step < 20 && !lost; step++) {
    sim_packet p = sim_take();
    if (memcmp(&p.from.key, &server.addr.key, sizeof p.from.key) == 0 && sim_holds_record(&p, TYPE_CCS))
      lost = 1; /* the server's CCS and Finished */
    else
      sim_deliver(&p);
  }
  ck_assert(lost);
  for (int i = 0; i < 20; i++)
    send_message(&server, &client, "early", i);
  ck_assert_ptr_nonnull(session_of(&server, &client)->records);
  uint64_t seqs[64];
  size_t n = 0;
  run_collecting(0, seqs, &n, 64);
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_HANDSHAKING);
  run_collecting(5000, seqs, &n, 64); /* the client's timer, the server's answer */
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_uint_ge(n, 21); /* the 20, then the Finished at least once */
  assert_unique(seqs, n);
  for (int i = 0; i < DP_SESSION_QUEUE_MAX; i++)
    expect_message(&client, "early", i);
  ck_assert_uint_eq(dp_endpoint_pending(client.ep), 0); /* the rest was lost, as with libssl's queue */
  char buf[8];
  ck_assert_int_eq(dp_endpoint_recv(server.ep, buf, sizeof buf, 0, NULL), 2);
  exchange(20, "after");
  free_pair();
}
END_TEST

static Suite *records_suite(void) {
  Suite *s = suite_create("records");
  TCase *unit = tcase_create("unit");
  tcase_add_test(unit, replay_window);
  suite_add_tcase(s, unit);
  TCase *tc = tcase_create("records");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, layers_agree_on_every_aead_suite, 0, 9);
  tcase_add_test(tc, other_suites_stay_with_libssl);
  tcase_add_test(tc, max_fragment_length_respected);
  tcase_add_loop_test(tc, forged_and_replayed_records_dropped, 0, 3);
  tcase_add_test(tc, replay_window_carried_over_from_libssl);
  tcase_add_loop_test(tc, libssl_records_after_takeover_resealed, 0, 3);
  tcase_add_loop_test(tc, finished_retransmitted_after_takeover, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(records_suite(), CK_FORK_GETENV); }
