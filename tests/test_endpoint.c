/* The sans-I/O core, driven with in-memory datagrams and a simulated clock
 * (see simnet.h). */
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certs.h"
#include "dtlsplex.h"
#include "endpoint.h"
#include "simnet.h"
#include "check_main.h"

static void ignore_event(int fd, int event, const struct sockaddr *peer, socklen_t len, int error, void *arg) {
  (void)fd, (void)event, (void)peer, (void)len, (void)error, (void)arg;
}

/* Nodes live in static storage: the node list outlives each test's stack. */
static test_pki pki;
static dtlsplex_config *server_cfg, *client_cfg;
static sim_node server, client;

static dtlsplex_config *make_config(int server_side) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(cfg, ignore_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, 5000, 20000), 0);
  if (server_side)
    ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), 0);
  else
    ck_assert_int_eq(dtlsplex_config_set_ca(cfg, pki.ca, NULL), 0);
  return cfg;
}

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  sim_init(NULL);
  server_cfg = make_config(1);
  client_cfg = make_config(0);
  sim_add_node(&server, server_cfg, 5684);
  sim_add_node(&client, client_cfg, 40000);
}

static void teardown(void) {
  sim_stop_all();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  test_pki_remove(&pki);
}

/* Takes events until one of kind event; returns its error, or -1 if none. */
static int find_event(dp_endpoint *ep, int event) {
  dp_event ev;
  while (dp_endpoint_next_event(ep, &ev))
    if (ev.event == event)
      return ev.error;
  return -1;
}

static void expect_datagram(sim_node *at, const sim_node *from, const char *text) {
  char buf[256];
  dp_addr src;
  ssize_t n = dp_endpoint_recv(at->ep, buf, sizeof buf, 0, &src);
  ck_assert_int_eq(n, (ssize_t)strlen(text));
  ck_assert_mem_eq(buf, text, strlen(text));
  ck_assert_mem_eq(&src.key, &from->addr.key, sizeof src.key);
}

static struct dtlsplex_stats stats_of(const sim_node *n) {
  struct dtlsplex_stats st;
  dp_endpoint_stats(n->ep, &st);
  return st;
}

static void connect_client(sim_node *c) {
  ck_assert_int_eq(dp_endpoint_write_pkt(c->ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  sim_deliver_due();
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(c->ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  expect_datagram(&server, c, "hello");
}

START_TEST(full_handshake_and_data) {
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  ck_assert_uint_eq(sim_in_flight(), 1); /* the ClientHello */
  sim_deliver_due();
  expect_datagram(&server, &client, "hello");
  ck_assert_int_eq(find_event(client.ep, DTLSPLEX_EVENT_CONNECTED), 0);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_CONNECTED), 0);
  struct dtlsplex_stats st = stats_of(&server);
  ck_assert_uint_eq(st.cookies_sent, 1);
  ck_assert_uint_eq(st.handshakes_ok, 1);
  ck_assert_uint_eq(st.peers, 1);
  ck_assert_uint_eq(st.handshakes_active, 0);

  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, "world", 5, 0, sim_now), 5);
  ck_assert_uint_eq(sim_in_flight(), 1); /* one record, one datagram */
  sim_deliver_due();
  expect_datagram(&client, &server, "world");
  ck_assert_int_eq(dp_endpoint_recv(client.ep, NULL, 0, 0, NULL), -EAGAIN);

  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(client.ep, &server.addr, &info), 0);
  ck_assert_str_eq(info.protocol, "DTLSv1.2");
  ck_assert_ptr_nonnull(strstr(info.identity, "localhost"));
  ck_assert_uint_gt(info.data_mtu, 1100);
}
END_TEST

/* Data the server sends right after its final flight may overtake it: the
 * client's libssl sets those records aside until the handshake completes.
 * All of them must be readable as soon as the final flight arrives, not one
 * per later datagram. */
START_TEST(data_overtaking_the_final_flight) {
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  sim_packet final_flight = {0};
  int held = 0, err;
  for (int step = 0; step < 20 && sim_in_flight() > 0; step++) {
    sim_packet p = sim_take();
    if (memcmp(&p.from.key, &server.addr.key, sizeof p.from.key) == 0 && sim_holds_record(&p, 20)) {
      final_flight = p; /* ChangeCipherSpec + Finished: held back */
      held = 1;
    } else {
      sim_deliver(&p);
    }
  }
  ck_assert_int_eq(held, 1);
  ck_assert_int_eq(dp_endpoint_peer_state(server.ep, &client.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  /* A server that speaks first hears of its client from the event. */
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_CONNECTED), 0);
  static const char *const texts[] = {"one", "two", "three"};
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, texts[i], strlen(texts[i]), 0, sim_now),
                     (ssize_t)strlen(texts[i]));
  while (sim_in_flight() > 0) {
    sim_packet p = sim_take();
    sim_deliver(&p); /* ahead of the final flight */
  }
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_HANDSHAKING);
  sim_deliver(&final_flight);
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_uint_eq(dp_endpoint_pending(client.ep), 3);
  for (int i = 0; i < 3; i++)
    expect_datagram(&client, &server, texts[i]);
  sim_deliver_due(); /* the client's queued "hello" goes once it is connected */
  expect_datagram(&server, &client, "hello");
}
END_TEST

START_TEST(spoofed_client_hello_creates_no_peer) {
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  sim_packet hello = sim_take();
  /* From many spoofed sources: each gets a cookie, none gets state. */
  for (uint16_t port = 1; port <= 50; port++) {
    dp_addr spoofed = sim_addr(port);
    dp_endpoint_read_pkt(server.ep, &spoofed, NULL, hello.data, hello.len, sim_now);
  }
  sim_clear();
  struct dtlsplex_stats st = stats_of(&server);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.cookies_sent, 50);

  /* A cookie-bearing ClientHello replayed from another address is refused. */
  dp_endpoint_read_pkt(server.ep, &client.addr, NULL, hello.data, hello.len, sim_now);
  sim_packet verify_request = sim_take();
  dp_endpoint_read_pkt(client.ep, &verify_request.from, NULL, verify_request.data, verify_request.len, sim_now);
  sim_packet hello_with_cookie = sim_take();
  dp_addr elsewhere = sim_addr(40001);
  dp_endpoint_read_pkt(server.ep, &elsewhere, NULL, hello_with_cookie.data, hello_with_cookie.len, sim_now);
  ck_assert_uint_eq(stats_of(&server).peers, 0);

  /* Not a ClientHello at all: dropped without an answer. */
  sim_clear();
  uint8_t garbage[64];
  memset(garbage, 0x17, sizeof garbage);
  dp_endpoint_read_pkt(server.ep, &elsewhere, NULL, garbage, sizeof garbage, sim_now);
  ck_assert_uint_eq(sim_in_flight(), 0);
  ck_assert_uint_ge(stats_of(&server).dropped_no_session, 1);
  ck_assert_uint_eq(stats_of(&server).peers, 0);

  /* The genuine cookie from the genuine address is accepted. */
  dp_endpoint_read_pkt(server.ep, &client.addr, NULL, hello_with_cookie.data, hello_with_cookie.len, sim_now);
  ck_assert_uint_eq(stats_of(&server).peers, 1);
}
END_TEST

START_TEST(retransmission_after_dropped_flight) {
  uint64_t t0 = sim_now;
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  sim_take(); /* the ClientHello is lost */
  uint64_t expiry = dp_endpoint_get_expiry(client.ep);
  ck_assert_uint_ge(expiry, t0 + 900); /* libssl's first retransmission: 1 s */
  ck_assert_uint_le(expiry, t0 + 1100);
  sim_advance(500);
  ck_assert_uint_eq(sim_in_flight(), 0);
  sim_advance(expiry - sim_now);
  ck_assert_uint_eq(sim_in_flight(), 1); /* the ClientHello again */
  sim_deliver_due();
  expect_datagram(&server, &client, "hello");

  /* Lose the server's final flight instead: the client retransmits its
   * Finished, and the server answers from its retransmission buffer. */
  static sim_node second;
  dtlsplex_config *fresh = make_config(0); /* no session to resume: a full handshake */
  sim_add_node(&second, fresh, 40002);
  ck_assert_int_eq(dp_endpoint_write_pkt(second.ep, &server.addr, NULL, "again", 5, 1, sim_now), 5);
  for (int step = 0; step < 20 && sim_in_flight() > 0; step++) {
    sim_packet p = sim_take();
    int last_server_flight = memcmp(&p.from.key, &server.addr.key, sizeof p.from.key) == 0 &&
                             sim_holds_record(&p, 20); /* the server's final flight */
    if (!last_server_flight)
      sim_deliver(&p);
  }
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(second.ep, &server.addr, &err), DTLSPLEX_STATE_HANDSHAKING);
  for (int i = 0; i < 10 && dp_endpoint_peer_state(second.ep, &server.addr, &err) != DTLSPLEX_STATE_ESTABLISHED;
       i++) {
    sim_advance(dp_endpoint_get_expiry(second.ep) - sim_now);
    sim_deliver_due();
  }
  ck_assert_int_eq(dp_endpoint_peer_state(second.ep, &server.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  expect_datagram(&server, &second, "again");
  sim_stop_node(&second);
  dtlsplex_config_free(fresh);
}
END_TEST

START_TEST(handshake_timeout_frees_state) {
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  uint64_t t0 = sim_now;
  while (sim_now < t0 + 6000) {
    sim_clear(); /* total loss */
    sim_advance(250);
  }
  ck_assert_int_eq(find_event(client.ep, DTLSPLEX_EVENT_FAILED), ETIMEDOUT);
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_FAILED);
  ck_assert_int_eq(err, ETIMEDOUT);
  struct dtlsplex_stats st = stats_of(&client);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.handshakes_failed, 1);
  ck_assert_uint_eq(st.handshakes_active, 0);
  /* Reported once to the next write, then forgotten. */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), -ETIMEDOUT);
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), 0);
  ck_assert_uint_eq(dp_endpoint_get_expiry(client.ep), UINT64_MAX);

  /* A server half-open handshake (client vanished after the cookie) expires too. */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  for (int i = 0; i < 3 && sim_in_flight() > 0; i++) {
    sim_packet p = sim_take();
    sim_deliver(&p);
  }
  ck_assert_uint_eq(stats_of(&server).handshakes_active, 1);
  t0 = sim_now;
  while (sim_now < t0 + 6000) {
    sim_clear();
    sim_advance(250);
  }
  st = stats_of(&server);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_uint_eq(st.handshakes_failed, 1);
}
END_TEST

START_TEST(idle_expiry) {
  connect_client(&client);
  sim_advance(15000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "ping", 4, 0, sim_now), 4);
  sim_deliver_due();
  expect_datagram(&server, &client, "ping");
  sim_advance(15000); /* 30 s since the handshake, 15 s since the ping */
  ck_assert_uint_eq(stats_of(&server).peers, 1);
  sim_advance(6000);
  ck_assert_uint_eq(stats_of(&server).peers, 0);
  ck_assert_uint_eq(stats_of(&server).expired, 1);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_EXPIRED), 0);
  ck_assert_uint_eq(dp_endpoint_get_expiry(server.ep), UINT64_MAX);
}
END_TEST

START_TEST(reconnect_replaces_session) {
  connect_client(&client);
  /* The client process restarts on the same address and port. */
  sim_stop_node(&client);
  sim_clear();
  sim_add_node(&client, client_cfg, 40000);
  connect_client(&client);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_REPLACED), 0);
  ck_assert_uint_eq(stats_of(&server).peers, 1);
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, "new", 3, 0, sim_now), 3);
  sim_deliver_due();
  expect_datagram(&client, &server, "new");
}
END_TEST

/* Runs a client's handshake by hand and returns its cookie-bearing ClientHello. */
static sim_packet connect_capturing_hello(sim_node *c) {
  ck_assert_int_eq(dp_endpoint_write_pkt(c->ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  sim_packet hello = sim_take();
  sim_deliver(&hello);
  sim_packet verify_request = sim_take();
  sim_deliver(&verify_request);
  sim_packet hello_with_cookie = *sim_peek(0);
  sim_deliver_due();
  expect_datagram(&server, c, "hello");
  return hello_with_cookie;
}

START_TEST(duplicate_client_hello_keeps_session) {
  sim_packet hello_with_cookie = connect_capturing_hello(&client);
  /* The network delivers the cookie-bearing ClientHello again, late. */
  dp_endpoint_read_pkt(server.ep, &hello_with_cookie.from, NULL, hello_with_cookie.data, hello_with_cookie.len, sim_now);
  ck_assert_uint_eq(sim_in_flight(), 0);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_REPLACED), -1);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "still", 5, 0, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&server, &client, "still");
}
END_TEST

START_TEST(replayed_old_client_hello_keeps_session) {
  sim_packet old_hello = connect_capturing_hello(&client);
  /* The client restarts on the same address (its close_notify lost) and
   * reconnects for real. */
  sim_stop_node(&client);
  sim_clear();
  sim_add_node(&client, client_cfg, 40000);
  connect_client(&client);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_REPLACED), 0);

  /* An attacker replays the first session's ClientHello: its cookie is still
   * valid for this address, so a handshake starts beside the session... */
  sim_deliver(&old_hello);
  ck_assert_uint_eq(stats_of(&server).handshakes_active, 1);
  sim_clear(); /* (the real client ignores the server's answer) */
  /* ...but the session keeps working, during and after it. */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "during", 6, 0, sim_now), 6);
  sim_deliver_due();
  expect_datagram(&server, &client, "during");
  for (int i = 0; i < 70; i++) {
    sim_advance(100);
    sim_clear();
  }
  struct dtlsplex_stats st = stats_of(&server);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_uint_eq(st.peers, 1);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_REPLACED), -1);
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, "after", 5, 0, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&client, &server, "after");

  /* A ClientHello with a forged cookie starts nothing at all. */
  old_hello.data[13 + 12 + 2 + 32 + 1 + old_hello.data[13 + 12 + 2 + 32] + 1] ^= 0xff;
  uint64_t cookies = stats_of(&server).cookies_sent;
  sim_deliver(&old_hello);
  ck_assert_uint_eq(stats_of(&server).handshakes_active, 0);
  ck_assert_uint_eq(stats_of(&server).cookies_sent, cookies + 1); /* a fresh HelloVerifyRequest */
  sim_clear();
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "intact", 6, 0, sim_now), 6);
  sim_deliver_due();
  expect_datagram(&server, &client, "intact");
}
END_TEST

/* Issue 18: the cookie binds the address, not the ClientHello, so an
 * on-path observer can replay it with a fresh random for as long as it is
 * valid.  Towards an established client that draws one flight, never the
 * retransmissions of a whole handshake. */
START_TEST(replayed_cookie_draws_one_flight) {
  sim_packet hello = connect_capturing_hello(&client);
  hello.data[13 + 12 + 2] ^= 0xff; /* a fresh random */
  uint64_t out_before = stats_of(&server).datagrams_out;
  sim_deliver(&hello);
  ck_assert_uint_eq(stats_of(&server).handshakes_active, 1);
  uint64_t one_flight = stats_of(&server).datagrams_out - out_before;
  ck_assert_uint_ge(one_flight, 1);
  for (int i = 0; i < 160; i++) { /* 16 s; the real client ignores it all */
    sim_advance(100);
    sim_clear();
  }
  struct dtlsplex_stats st = stats_of(&server);
  ck_assert_uint_eq(st.datagrams_out - out_before, one_flight);
  ck_assert_uint_eq(st.replacements_unanswered, 1);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_REPLACED), -1);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "intact", 6, 0, sim_now), 6);
  sim_deliver_due();
  expect_datagram(&server, &client, "intact");
}
END_TEST

/* Idle sessions give libssl's record buffers back, and take them again for
 * any later read, write or shutdown. */
START_TEST(idle_sessions_release_buffers) {
  enum { N = 20 };
  static sim_node clients[N];
  for (int i = 0; i < N; i++) {
    sim_add_node(&clients[i], client_cfg, (uint16_t)(41000 + i));
    connect_client(&clients[i]);
  }
  size_t busy = mallinfo2().uordblks;
  sim_advance(2500);
  size_t idle = mallinfo2().uordblks;
#ifndef __SANITIZE_ADDRESS__ /* AddressSanitizer's allocator is not glibc's: mallinfo2 sees nothing */
  /* Both sides of each pair live in this process. */
  ck_assert_uint_gt(busy - idle, N * 2 * 16 * 1024);
#else
  (void)busy, (void)idle;
#endif
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(dp_endpoint_write_pkt(clients[i].ep, &server.addr, NULL, "again", 5, 0, sim_now), 5);
    sim_deliver_due();
    expect_datagram(&server, &clients[i], "again");
    ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &clients[i].addr, NULL, "back", 4, 0, sim_now), 4);
    sim_deliver_due();
    expect_datagram(&clients[i], &server, "back");
  }
  sim_advance(2500);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(dp_endpoint_close(clients[i].ep, &server.addr), 0); /* shutdown after release */
  sim_deliver_due();
  ck_assert_uint_eq(stats_of(&server).peers, 0);
}
END_TEST

/* A session silent for a long time (buffers released, heap trimmed, cookie
 * keys rotated many times) still carries data both ways. */
START_TEST(long_silence_keeps_session) {
  dtlsplex_config *patient = make_config(1), *never_idle = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(patient, 5000, 3600000), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(never_idle, 5000, 0), 0);
  static sim_node quiet_server, quiet_client;
  sim_add_node(&quiet_server, patient, 5690);
  sim_add_node(&quiet_client, never_idle, 40100);
  ck_assert_int_eq(dp_endpoint_write_pkt(quiet_client.ep, &quiet_server.addr, NULL, "a", 1, 1, sim_now), 1);
  sim_deliver_due();
  for (int minute = 0; minute < 10; minute++)
    sim_advance(60000);
  ck_assert_int_eq(dp_endpoint_write_pkt(quiet_client.ep, &quiet_server.addr, NULL, "b", 1, 0, sim_now), 1);
  sim_deliver_due();
  char buf[4];
  dp_addr from;
  ck_assert_int_eq(dp_endpoint_recv(quiet_server.ep, buf, sizeof buf, 0, &from), 1); /* "a" */
  ck_assert_int_eq(dp_endpoint_recv(quiet_server.ep, buf, sizeof buf, 0, &from), 1);
  ck_assert_int_eq(buf[0], 'b');
  ck_assert_int_eq(dp_endpoint_write_pkt(quiet_server.ep, &from, NULL, "c", 1, 0, sim_now), 1);
  sim_deliver_due();
  ck_assert_int_eq(dp_endpoint_recv(quiet_client.ep, buf, sizeof buf, 0, NULL), 1);
  ck_assert_int_eq(buf[0], 'c');
  sim_stop_node(&quiet_server);
  sim_stop_node(&quiet_client);
  dtlsplex_config_free(patient);
  dtlsplex_config_free(never_idle);
}
END_TEST

/* A record header claiming more bytes than the datagram holds, from an
 * established peer's address, once made libssl refuse to release buffers
 * and the release timer fire again at once, forever: a CPU spin. */
START_TEST(refused_buffer_release_does_not_spin) {
  connect_client(&client);
  static const uint8_t truncated[] = {23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0x32, 0xff, 0xff};
  dp_endpoint_read_pkt(server.ep, &client.addr, NULL, truncated, sizeof truncated, sim_now);
  for (int i = 0; i < 100; i++) {
    sim_advance(100);
    ck_assert_uint_gt(dp_endpoint_get_expiry(server.ep), sim_now); /* nothing due right away */
  }
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "ok", 2, 0, sim_now), 2);
  sim_deliver_due();
  expect_datagram(&server, &client, "ok");
}
END_TEST

/* The name set for a peer outlives the session: every later handshake,
 * after a failure, an expiry or a close, checks it again. */
START_TEST(peer_name_survives_sessions) {
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "wrong.example"), 0);
  for (int attempt = 0; attempt < 2; attempt++) {
    ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
    sim_deliver_due();
    int err;
    ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_FAILED);
    ck_assert_int_eq(err, EACCES);
    ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), -EACCES);
  }
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "localhost"), 0);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), -ENOENT); /* only the name is left */
  sim_deliver_due();
  connect_client(&client); /* the name still applies (and matches) */
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "other"), -EISCONN);
}
END_TEST

/* Issue 18: a man in the middle who can send from the server's address must
 * not receive what the program sends there.  The victim is a client with a
 * certificate of its own (for mutual authentication) in the default role, so
 * it can also accept handshakes; the attacker has no certificate. */
static dtlsplex_config *make_victim_config(void) {
  dtlsplex_config *cfg = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.client_cert, pki.client_key), 0);
  return cfg;
}

static dtlsplex_config *make_attacker_config(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(cfg, ignore_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, 5000, 20000), 0);
  ck_assert_int_eq(dtlsplex_config_set_verify(cfg, DTLSPLEX_VERIFY_NONE), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT), 0);
  return cfg;
}

/* The attacker, at the server's address, handshakes towards the victim; then
 * the victim's program sends its secret to the server's address. */
static void attack(sim_node *victim, sim_node *attacker) {
  ck_assert_int_eq(dp_endpoint_write_pkt(attacker->ep, &victim->addr, NULL, "hi", 2, 1, sim_now), 2);
  sim_run_until(3000, NULL, NULL);
  ck_assert_int_eq(dp_endpoint_write_pkt(victim->ep, &attacker->addr, NULL, "secret", 6, 1, sim_now), 6);
  sim_run_until(6000, NULL, NULL);
  ck_assert_uint_eq(dp_endpoint_pending(attacker->ep), 0);
  /* The victim's own handshake found no server there. */
  int err;
  ck_assert_int_ne(dp_endpoint_peer_state(victim->ep, &attacker->addr, &err), DTLSPLEX_STATE_ESTABLISHED);
  ck_assert_uint_ge(stats_of(victim).refused_inbound, 1);
}

/* A fresh victim (the server's name given, or not) under attack; returns
 * how many handshakes it completed. */
static uint64_t attack_fresh_victim(int name_the_server) {
  dtlsplex_config *victim_cfg = make_victim_config(), *attacker_cfg = make_attacker_config();
  sim_stop_node(&server);
  sim_stop_node(&client);
  static sim_node victim, attacker;
  sim_add_node(&victim, victim_cfg, 40001);
  sim_add_node(&attacker, attacker_cfg, 5684);
  if (name_the_server)
    ck_assert_int_eq(dp_endpoint_set_peer_name(victim.ep, &attacker.addr, "localhost"), 0);
  attack(&victim, &attacker);
  uint64_t completed = stats_of(&victim).handshakes_ok;
  sim_stop_all();
  dtlsplex_config_free(victim_cfg);
  dtlsplex_config_free(attacker_cfg);
  return completed;
}

START_TEST(named_server_address_refuses_handshakes) {
  ck_assert_uint_eq(attack_fresh_victim(1), 0); /* the attacker's was never accepted */
}
END_TEST

/* No name, and the attacker's handshake completes before the program's
 * first send: the program speaks first, so it is the client there. */
START_TEST(sending_first_makes_this_side_the_client) {
  ck_assert_uint_eq(attack_fresh_victim(0), 1); /* the attacker's, dropped unused */
}
END_TEST

/* The address stays the program's server after its session closed. */
START_TEST(former_server_address_refuses_handshakes) {
  dtlsplex_config *victim_cfg = make_victim_config(), *attacker_cfg = make_attacker_config();
  sim_stop_node(&client);
  sim_add_node(&client, victim_cfg, 40000);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  sim_stop_node(&server);
  static sim_node attacker;
  sim_add_node(&attacker, attacker_cfg, 5684);
  attack(&client, &attacker);
  ck_assert_uint_eq(stats_of(&client).handshakes_ok, 1); /* the real server's only */
  sim_stop_all();
  dtlsplex_config_free(victim_cfg);
  dtlsplex_config_free(attacker_cfg);
}
END_TEST

/* With both roles a side still answers the peers that contacted it: after
 * reading from one, it replies over the session that peer started. */
START_TEST(both_roles_reply_over_accepted_sessions) {
  dtlsplex_config *peer_cfg = make_victim_config();
  sim_stop_node(&client);
  sim_add_node(&client, peer_cfg, 40000);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &client.addr, NULL, "reply", 5, 0, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&client, &server, "reply");
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(server.ep, &client.addr, &info), 0);
  ck_assert_int_eq(info.is_client, 0);
  ck_assert_uint_eq(stats_of(&server).handshakes_ok, 1);
  ck_assert_uint_eq(stats_of(&server).refused_inbound, 0);
  sim_stop_all();
  dtlsplex_config_free(peer_cfg);
}
END_TEST

/* Issue 18: without a name, the server's certificate must be for the IP
 * address sent to, unless the program asks for the chain only. */
START_TEST(address_checked_without_a_name) {
  struct sockaddr_in other = {.sin_family = AF_INET, .sin_port = htons(5684), .sin_addr.s_addr = htonl(0x7f000002)};
  ck_assert_int_eq(dp_addr_from_sockaddr(&server.addr, (struct sockaddr *)&other, sizeof other, AF_INET), 0);
  /* The certificate names 127.0.0.1, ::1 and localhost: not 127.0.0.2. */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  sim_deliver_due();
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_FAILED);
  ck_assert_int_eq(err, EACCES);
  ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);

  dtlsplex_config *chain_cfg = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_verify(chain_cfg, DTLSPLEX_VERIFY_NONE | DTLSPLEX_VERIFY_CHAIN_ONLY), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(dtlsplex_config_set_verify(chain_cfg, DTLSPLEX_VERIFY_PEER | DTLSPLEX_VERIFY_CHAIN_ONLY), 0);
  static sim_node chain_client;
  sim_add_node(&chain_client, chain_cfg, 40001);
  connect_client(&chain_client);

  /* A name replaces the address check. */
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "localhost"), 0);
  connect_client(&client);
  sim_stop_all();
  dtlsplex_config_free(chain_cfg);
}
END_TEST

/* Issue 10, item 4: a datagram queued while the handshake runs must fit
 * whatever suite the handshake settles on, or be refused at once: it used to
 * be accepted and then dropped with a log line.  Sent once the handshake
 * completes, it counts as sent. */
static void queue_bound(const char *client_ciphers, size_t bound) {
  dtlsplex_config *cfg = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_ciphers(cfg, client_ciphers), 0);
  ck_assert_int_eq(dtlsplex_config_set_mtu(cfg, 1200), 0);
  sim_stop_node(&client);
  sim_add_node(&client, cfg, 40000);
  static char big[1200];
  memset(big, 'q', sizeof big);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, big, bound + 1, 1, sim_now), -EMSGSIZE);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, big, bound, 1, sim_now), (ssize_t)bound);
  sim_deliver_due();
  char buf[1200];
  ck_assert_int_eq(dp_endpoint_recv(server.ep, buf, sizeof buf, 0, NULL), (ssize_t)bound);
  ck_assert_uint_eq(stats_of(&client).app_datagrams_out, 1);
  sim_stop_node(&client);
  sim_clear();
  dtlsplex_config_free(cfg);
}

START_TEST(queued_datagram_fits_the_suite) {
  /* AES-256-GCM at MTU 1200: 1200 - 13 (header) - 8 (nonce) - 16 (tag). */
  queue_bound("ECDHE-ECDSA-AES256-GCM-SHA384", 1163);
  /* With a CBC suite enabled too, its worst case: 1171 bytes after header and
   * IV, 1168 in whole blocks, less a SHA-384 MAC and a padding byte. */
  queue_bound("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-SHA384", 1119);
}
END_TEST

/* Issue 11: the server chooses, safely.  A client that lists CBC before
 * AEAD, and P-521 before X25519, gets AEAD and X25519: otherwise anyone
 * could make every handshake cost the server several times more. */
static struct dtlsplex_peer_info negotiate(dtlsplex_config *server_side, dtlsplex_config *client_side) {
  sim_stop_all();
  sim_add_node(&server, server_side, 5684);
  sim_add_node(&client, client_side, 40000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hi", 2, 1, sim_now), 2);
  sim_deliver_due();
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(server.ep, &client.addr, &info), 0);
  ck_assert_int_eq(info.state, DTLSPLEX_STATE_ESTABLISHED);
  return info;
}

/* A PSK server and a client sharing identity and key; the client offers
 * client_ciphers only. */
static void psk_pair(const char *identity, const char *client_ciphers, dtlsplex_config **server_side,
                     dtlsplex_config **client_side) {
  static const unsigned char key[16] = "a shared psk key";
  *server_side = make_config(1);
  *client_side = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_psk(*server_side, identity, key, sizeof key), 0);
  ck_assert_int_eq(dtlsplex_config_set_psk(*client_side, identity, key, sizeof key), 0);
  ck_assert_int_eq(dtlsplex_config_set_ciphers(*client_side, client_ciphers), 0);
}

START_TEST(server_chooses_suite_and_group) {
  dtlsplex_config *greedy = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_ciphers(greedy, "ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"), 0);
  ck_assert_int_eq(SSL_CTX_set1_groups_list(dtlsplex_config_get_ssl_ctx(greedy), "P-521:P-256:X25519"), 1);
  struct dtlsplex_peer_info info = negotiate(server_cfg, greedy);
  ck_assert_str_eq(info.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
  ck_assert_str_eq(info.group, "x25519");

  /* PSK: AEAD over the client's CBC first. */
  dtlsplex_config *psk_server, *psk_client;
  psk_pair("node", "PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256", &psk_server, &psk_client);
  info = negotiate(psk_server, psk_client);
  ck_assert_str_eq(info.cipher, "PSK-AES128-GCM-SHA256");
  sim_stop_all();
  dtlsplex_config_free(greedy);
  dtlsplex_config_free(psk_server);
  dtlsplex_config_free(psk_client);
}
END_TEST

/* Issue 11: CoAP's mandatory suites (RFC 7252, RFC 7925), all that a
 * constrained device may offer, are accepted by default. */
START_TEST(coap_mandatory_suites_accepted) {
  dtlsplex_config *device = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_ciphers(device, "ECDHE-ECDSA-AES128-CCM8"), 0);
  struct dtlsplex_peer_info info = negotiate(server_cfg, device);
  ck_assert_str_eq(info.cipher, "ECDHE-ECDSA-AES128-CCM8");

  dtlsplex_config *psk_server, *psk_device;
  psk_pair("device", "PSK-AES128-CCM8", &psk_server, &psk_device);
  info = negotiate(psk_server, psk_device);
  ck_assert_str_eq(info.cipher, "PSK-AES128-CCM8");
  ck_assert_str_eq(info.group, "");
  sim_stop_all();
  dtlsplex_config_free(device);
  dtlsplex_config_free(psk_server);
  dtlsplex_config_free(psk_device);
}
END_TEST

/* Issue 11: a gateway keeps one key per device in a database.  The lookup
 * finds known identities; an unknown one fails that handshake alone. */
static const unsigned char device_key[16] = "device 7 key....";
static int lookups;

static unsigned int key_store(const char *identity, unsigned char *key, unsigned int key_max, void *arg) {
  ck_assert_ptr_eq(arg, &lookups);
  lookups++;
  if (strcmp(identity, "device-7") != 0 || key_max < sizeof device_key)
    return 0;
  memcpy(key, device_key, sizeof device_key);
  return sizeof device_key;
}

START_TEST(psk_from_a_key_store) {
  dtlsplex_config *gateway = dtlsplex_config_new();
  ck_assert_ptr_nonnull(gateway);
  ck_assert_int_eq(dtlsplex_config_set_event_callback(gateway, ignore_event, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_psk_lookup(gateway, key_store, &lookups), 0);
  ck_assert_int_eq(dtlsplex_config_set_psk_hint(gateway, "gateway 1"), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(gateway, DTLSPLEX_ROLE_SERVER), 0);
  dtlsplex_config *stranger = make_config(0), *device = make_config(0);
  static const unsigned char wrong[16] = "stranger key....";
  ck_assert_int_eq(dtlsplex_config_set_psk(stranger, "device-99", wrong, sizeof wrong), 0);
  ck_assert_int_eq(dtlsplex_config_set_psk(device, "device-7", device_key, sizeof device_key), 0);
  sim_stop_all();
  sim_add_node(&server, gateway, 5684);
  static sim_node device_node;
  sim_add_node(&client, stranger, 40000);
  sim_add_node(&device_node, device, 40001);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  ck_assert_int_eq(dp_endpoint_write_pkt(device_node.ep, &server.addr, NULL, "reading", 7, 1, sim_now), 7);
  int hinted = 0; /* the hint travels in the clear, in ServerKeyExchange */
  for (int step = 0; step < 100 && sim_in_flight() > 0; step++) {
    sim_packet p = sim_take();
    hinted |= memcmp(&p.from.key, &server.addr.key, sizeof p.from.key) == 0 && memmem(p.data, p.len, "gateway 1", 9) != NULL;
    sim_deliver(&p);
  }
  ck_assert(hinted);
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_FAILED);
  expect_datagram(&server, &device_node, "reading");
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(server.ep, &device_node.addr, &info), 0);
  ck_assert_str_eq(info.identity, "device-7");
  struct dtlsplex_stats st = stats_of(&server);
  ck_assert_uint_eq(st.psk_unknown, 1);
  ck_assert_uint_eq(st.handshakes_ok, 1);
  ck_assert_int_eq(lookups, 2);
  ck_assert_int_eq(dtlsplex_config_set_psk_lookup(gateway, NULL, NULL), -1);
  ck_assert_int_eq(errno, EINVAL);
  sim_stop_all();
  dtlsplex_config_free(gateway);
  dtlsplex_config_free(stranger);
  dtlsplex_config_free(device);
}
END_TEST

/* Issue 11: rotation without a restart.  A cookie sent just before the new
 * configuration still verifies, the handshake it starts uses the new
 * certificate, and the established session goes on. */
START_TEST(reconfigure_keeps_sessions_and_cookies) {
  connect_client(&client);
  static sim_node second;
  sim_add_node(&second, client_cfg, 40001);
  ck_assert_int_eq(dp_endpoint_write_pkt(second.ep, &server.addr, NULL, "after", 5, 1, sim_now), 5);
  sim_packet hello = sim_take();
  sim_deliver(&hello); /* the server answers with a cookie */
  sim_packet verify_request = sim_take();
  sim_deliver(&verify_request); /* the client sends its ClientHello with the cookie */

  dtlsplex_config *rotated = make_config(1);
  ck_assert_int_eq(dtlsplex_config_set_certificate(rotated, pki.client_cert, pki.client_key), 0);
  ck_assert_int_eq(dp_endpoint_reconfigure(server.ep, rotated), 0);
  sim_deliver_due();
  expect_datagram(&server, &second, "after");
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(second.ep, &server.addr, &info), 0);
  ck_assert_ptr_nonnull(strstr(info.identity, "CN=test client")); /* the new certificate */
  ck_assert_int_eq(dp_endpoint_peer_info(client.ep, &server.addr, &info), 0);
  ck_assert_ptr_nonnull(strstr(info.identity, "CN=localhost"));
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "still", 5, 0, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&server, &client, "still");
  ck_assert_uint_eq(stats_of(&server).handshakes_ok, 2);

  /* A configuration that no longer serves: a peer that restarts from the
   * same address is refused (it used to reach a freed listener). */
  dtlsplex_config *client_only = make_config(0);
  ck_assert_int_eq(dp_endpoint_reconfigure(server.ep, client_only), 0);
  sim_stop_node(&client);
  sim_clear();
  sim_add_node(&client, client_cfg, 40000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "again", 5, 1, sim_now), 5);
  sim_deliver_due();
  ck_assert_uint_eq(stats_of(&server).handshakes_ok, 2);
  ck_assert_uint_eq(dp_endpoint_pending(server.ep), 0);
  sim_stop_all(); /* before the configurations the endpoint used go */
  dtlsplex_config_free(rotated);
  dtlsplex_config_free(client_only);
}
END_TEST

/* Issue 11: the retransmission timer starts at the configured first wait
 * and doubles up to the configured most. */
START_TEST(retransmission_timer_configurable) {
  dtlsplex_config *fast = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(fast, 9, 800), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(fast, 300, 200), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(fast, 200, 60001), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(fast, 200, 500), 0);
  sim_stop_node(&client);
  sim_add_node(&client, fast, 40000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  sim_clear(); /* the ClientHello is lost, and so is every retransmission */
  /* Sent again after 200, 400, 500 and 500 ms: doubling, then capped. */
  uint64_t start = sim_now;
  static const unsigned at[] = {200, 600, 1100, 1600};
  for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
    sim_advance(start + at[i] - 2 - sim_now);
    ck_assert_uint_eq(sim_in_flight(), 0);
    sim_advance(3);
    ck_assert_uint_eq(sim_in_flight(), 1);
    sim_clear();
  }
  sim_stop_node(&client);
  dtlsplex_config_free(fast);
}
END_TEST

START_TEST(limits_refuse_new_handshakes_only) {
  dtlsplex_config *small = make_config(1);
  ck_assert_int_eq(dtlsplex_config_set_limits(small, 1, 1), 0);
  static sim_node limited, other;
  sim_add_node(&limited, small, 5685);
  sim_add_node(&other, client_cfg, 40003);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &limited.addr, NULL, "one", 3, 1, sim_now), 3);
  sim_deliver_due();
  expect_datagram(&limited, &client, "one");
  ck_assert_int_eq(dp_endpoint_write_pkt(other.ep, &limited.addr, NULL, "two", 3, 1, sim_now), 3);
  sim_deliver_due();
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(other.ep, &limited.addr, &err), DTLSPLEX_STATE_HANDSHAKING);
  struct dtlsplex_stats st = stats_of(&limited);
  ck_assert_uint_eq(st.peers, 1);
  ck_assert_uint_ge(st.dropped_limit, 1);
  ck_assert_uint_eq(st.cookies_sent, 1); /* refused before any cookie work */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &limited.addr, NULL, "three", 5, 0, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&limited, &client, "three");
  sim_stop_node(&limited);
  dtlsplex_config_free(small);
}
END_TEST

START_TEST(close_notify_and_emsgsize) {
  connect_client(&client);
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(client.ep, &server.addr, &info), 0);
  static uint8_t big[4096];
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, big, info.data_mtu, 0, sim_now),
                   (ssize_t)info.data_mtu);
  ck_assert_uint_eq(sim_peek(0)->len, 1200); /* exactly the configured MTU */
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, big, info.data_mtu + 1, 0, sim_now), -EMSGSIZE);
  sim_deliver_due();
  ck_assert_int_eq(dp_endpoint_recv(server.ep, big, sizeof big, 0, NULL), (ssize_t)info.data_mtu);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), -ENOENT);
  sim_deliver_due();
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_CLOSED), 0);
  ck_assert_uint_eq(stats_of(&server).peers, 0);
}
END_TEST

/* Errors the program left in the thread's OpenSSL error queue are not the
 * session's: the per-record calls read the queue only on failure, and an
 * error seen while the session is still established is asked again with
 * the queue emptied (session.c, established_error).  A bad record, data
 * and close_notify then do what they do with an empty queue. */
START_TEST(errors_queued_by_the_program_end_nothing) {
  connect_client(&client);
  for (int kind = 0; kind < 2; kind++) {
    ERR_raise(kind == 0 ? ERR_LIB_SSL : ERR_LIB_SYS, kind == 0 ? SSL_R_BAD_PACKET : EIO);
    ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "before", 6, 0, sim_now), 6);
    sim_deliver_due();
    expect_datagram(&server, &client, "before");
    ck_assert_uint_ne(ERR_peek_error(), 0); /* records that succeed leave the queue alone */
    /* A record that fails authentication: dropped, the session lives. */
    ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "forged", 6, 0, sim_now), 6);
    sim_packet forged = sim_take();
    forged.data[forged.len - 1] ^= 1;
    dp_endpoint_read_pkt(server.ep, &client.addr, NULL, forged.data, forged.len, sim_now);
    int err;
    ck_assert_int_eq(dp_endpoint_peer_state(server.ep, &client.addr, &err), DTLSPLEX_STATE_ESTABLISHED);
    ck_assert_int_eq(dp_endpoint_recv(server.ep, NULL, 0, 0, NULL), -EAGAIN);
    ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "after", 5, 0, sim_now), 5);
    sim_deliver_due();
    expect_datagram(&server, &client, "after");
    ERR_clear_error();
  }
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  ck_assert_int_eq(find_event(server.ep, DTLSPLEX_EVENT_CLOSED), 0);
  ck_assert_uint_eq(stats_of(&server).peers, 0);
  ERR_clear_error();
}
END_TEST

/* Puts the server and the client on other configurations, afresh (and
 * back on server_cfg and client_cfg before a test ends). */
static void use_configs(dtlsplex_config *server_side, dtlsplex_config *client_side) {
  sim_stop_node(&server);
  sim_stop_node(&client);
  sim_add_node(&server, server_side, 5684);
  sim_add_node(&client, client_side, 40000);
}

/* The server at the same address restarts on cfg (killed: no close_notify). */
static void restart_server(dtlsplex_config *cfg) {
  sim_stop_node(&server);
  sim_clear();
  sim_add_node(&server, cfg, 5684);
}

static const unsigned char fleet_secret[32] = "a fleet secret of 32 bytes long";

static struct dtlsplex_peer_info info_of(sim_node *n, const sim_node *peer) {
  struct dtlsplex_peer_info info;
  ck_assert_int_eq(dp_endpoint_peer_info(n->ep, &peer->addr, &info), 0);
  return info;
}

/* The client's next handshake is a full one (no session offered), and
 * its certificate check refuses the server. */
static void expect_checked_and_refused(void) {
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "hello", 5, 1, sim_now), 5);
  sim_deliver_due();
  int err;
  ck_assert_int_eq(dp_endpoint_peer_state(client.ep, &server.addr, &err), DTLSPLEX_STATE_FAILED);
  ck_assert_int_eq(err, EACCES);
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, 0);
}

/* After a close, the client offers its last session: an abbreviated
 * handshake (no certificate, no key exchange), which both sides count. */
START_TEST(resumes_after_close) {
  connect_client(&client);
  ck_assert_int_eq(info_of(&client, &server).resumed, 0);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  connect_client(&client);
  ck_assert_int_eq(info_of(&client, &server).resumed, 1);
  ck_assert_int_eq(info_of(&server, &client).resumed, 1);
  ck_assert_ptr_nonnull(strstr(info_of(&client, &server).identity, "localhost")); /* the identity checked the first time */
  ck_assert_uint_eq(stats_of(&server).handshakes_ok, 2);
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, 1);
  ck_assert_uint_eq(stats_of(&client).handshakes_resumed, 1);
}
END_TEST

/* A session checked for one name is never offered for another: the next
 * handshake is a full one, and its check fails for a name the certificate
 * does not hold. */
START_TEST(no_resumption_across_names) {
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "localhost"), 0);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  ck_assert_int_eq(dp_endpoint_set_peer_name(client.ep, &server.addr, "elsewhere.example"), 0);
  expect_checked_and_refused();
}
END_TEST

/* Servers sharing a fleet secret open each other's tickets: a client whose
 * server died resumes on the one now at its address.  Another secret: a
 * full handshake. */
static void fleet_failover(int same_secret) {
  static const unsigned char other[32] = "another secret of 32 bytes long";
  dtlsplex_config *a = make_config(1), *b = make_config(1);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(a, fleet_secret, sizeof fleet_secret), 0);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(b, same_secret ? fleet_secret : other, 32), 0);
  use_configs(a, client_cfg);
  connect_client(&client);
  restart_server(b);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0); /* the documented recovery */
  sim_clear();
  connect_client(&client);
  ck_assert_uint_eq(stats_of(&server).handshakes_ok, 1);
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, same_secret ? 1 : 0);
  ck_assert_int_eq(info_of(&client, &server).resumed, same_secret);
  use_configs(server_cfg, client_cfg);
  dtlsplex_config_free(a);
  dtlsplex_config_free(b);
}

START_TEST(fleet_resumes_across_servers) {
  fleet_failover(1);
}
END_TEST

START_TEST(other_fleet_does_not_resume) {
  fleet_failover(0);
}
END_TEST

/* resume_after: a client whose server has been silent that long resumes
 * before sending, so that a server that lost the session (here: it
 * restarted with the same secret) gets the datagram. */
START_TEST(resumes_after_silence) {
  dtlsplex_config *a = make_config(1), *b = make_config(1), *c = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(a, fleet_secret, sizeof fleet_secret), 0);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(b, fleet_secret, sizeof fleet_secret), 0);
  ck_assert_int_eq(dtlsplex_config_set_resume_after(c, 3000), 0);
  use_configs(a, c);
  connect_client(&client);
  sim_advance(1000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "soon", 4, 0, sim_now), 4); /* no resumption yet */
  sim_deliver_due();
  expect_datagram(&server, &client, "soon");
  restart_server(b);
  sim_advance(3000);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "later", 5, 1, sim_now), 5);
  sim_deliver_due();
  expect_datagram(&server, &client, "later");
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, 1);
  use_configs(server_cfg, client_cfg);
  dtlsplex_config_free(a);
  dtlsplex_config_free(b);
  dtlsplex_config_free(c);
}
END_TEST

/* With client certificates required: the session resumes (libssl would
 * refuse without a session context), and keeps the client identity the
 * full handshake checked.  A ticket from a fleet server that did not ask
 * for certificates never resumes on one that requires them: the session
 * context differs, and the client proves itself in a full handshake. */
static void mutual_pair(int first_requires) {
  dtlsplex_config *a = make_config(1), *b = make_config(1), *c = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(a, fleet_secret, sizeof fleet_secret), 0);
  ck_assert_int_eq(dtlsplex_config_set_fleet_secret(b, fleet_secret, sizeof fleet_secret), 0);
  if (first_requires) {
    ck_assert_int_eq(dtlsplex_config_set_verify(a, DTLSPLEX_VERIFY_REQUIRE), 0);
    ck_assert_int_eq(dtlsplex_config_set_ca(a, pki.ca, NULL), 0);
  }
  ck_assert_int_eq(dtlsplex_config_set_verify(b, DTLSPLEX_VERIFY_REQUIRE), 0);
  ck_assert_int_eq(dtlsplex_config_set_ca(b, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_certificate(c, pki.client_cert, pki.client_key), 0);
  use_configs(a, c);
  connect_client(&client);
  restart_server(first_requires ? a : b);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_clear();
  connect_client(&client);
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, first_requires ? 1 : 0);
  ck_assert_ptr_nonnull(strstr(info_of(&server, &client).identity, "client"));
  use_configs(server_cfg, client_cfg);
  dtlsplex_config_free(a);
  dtlsplex_config_free(b);
  dtlsplex_config_free(c);
}

START_TEST(mutual_authentication_resumes) {
  mutual_pair(1);
}
END_TEST

START_TEST(no_resumption_into_stricter_verification) {
  mutual_pair(0);
}
END_TEST

/* A configuration changed after use (its sockets detached) forgets the
 * sessions it kept: here a CA that trusts nothing of this server's must
 * not be bypassed by resuming a session checked with the old one. */
START_TEST(changed_configuration_forgets_sessions) {
  dtlsplex_config *c = make_config(0);
  use_configs(server_cfg, c);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  ck_assert_int_eq(dtlsplex_config_set_ca(c, pki.other_ca, NULL), 0);
  expect_checked_and_refused();
  use_configs(server_cfg, client_cfg);
  dtlsplex_config_free(c);
}
END_TEST

/* Off: every handshake is a full one. */
START_TEST(resumption_can_be_turned_off) {
  dtlsplex_config *c = make_config(0);
  ck_assert_int_eq(dtlsplex_config_set_resumption(c, 0, 0), 0);
  ck_assert_int_eq(dtlsplex_config_set_resumption(c, 2, 0), -1);
  ck_assert_int_eq(dtlsplex_config_set_resumption(c, 1, 30), -1);
  ck_assert_int_eq(dtlsplex_config_set_resumption(c, 0, 0), 0);
  use_configs(server_cfg, c);
  connect_client(&client);
  ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
  sim_deliver_due();
  connect_client(&client);
  ck_assert_uint_eq(stats_of(&server).handshakes_resumed, 0);
  use_configs(server_cfg, client_cfg);
  dtlsplex_config_free(c);
}
END_TEST

int main(void) {
  Suite *s = suite_create("endpoint");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, full_handshake_and_data);
  tcase_add_test(tc, errors_queued_by_the_program_end_nothing);
  tcase_add_test(tc, resumes_after_close);
  tcase_add_test(tc, no_resumption_across_names);
  tcase_add_test(tc, fleet_resumes_across_servers);
  tcase_add_test(tc, other_fleet_does_not_resume);
  tcase_add_test(tc, resumes_after_silence);
  tcase_add_test(tc, resumption_can_be_turned_off);
  tcase_add_test(tc, mutual_authentication_resumes);
  tcase_add_test(tc, changed_configuration_forgets_sessions);
  tcase_add_test(tc, no_resumption_into_stricter_verification);
  tcase_add_test(tc, data_overtaking_the_final_flight);
  tcase_add_test(tc, spoofed_client_hello_creates_no_peer);
  tcase_add_test(tc, retransmission_after_dropped_flight);
  tcase_add_test(tc, handshake_timeout_frees_state);
  tcase_add_test(tc, idle_expiry);
  tcase_add_test(tc, reconnect_replaces_session);
  tcase_add_test(tc, duplicate_client_hello_keeps_session);
  tcase_add_test(tc, replayed_old_client_hello_keeps_session);
  tcase_add_test(tc, replayed_cookie_draws_one_flight);
  tcase_add_test(tc, idle_sessions_release_buffers);
  tcase_add_test(tc, long_silence_keeps_session);
  tcase_add_test(tc, refused_buffer_release_does_not_spin);
  tcase_add_test(tc, peer_name_survives_sessions);
  tcase_add_test(tc, named_server_address_refuses_handshakes);
  tcase_add_test(tc, sending_first_makes_this_side_the_client);
  tcase_add_test(tc, former_server_address_refuses_handshakes);
  tcase_add_test(tc, both_roles_reply_over_accepted_sessions);
  tcase_add_test(tc, address_checked_without_a_name);
  tcase_add_test(tc, queued_datagram_fits_the_suite);
  tcase_add_test(tc, server_chooses_suite_and_group);
  tcase_add_test(tc, coap_mandatory_suites_accepted);
  tcase_add_test(tc, psk_from_a_key_store);
  tcase_add_test(tc, reconfigure_keeps_sessions_and_cookies);
  tcase_add_test(tc, retransmission_timer_configurable);
  tcase_add_test(tc, limits_refuse_new_handshakes_only);
  tcase_add_test(tc, close_notify_and_emsgsize);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
