/* Reading ClientHellos before libssl: real ones from the core's clients,
 * the ticket a returning client offers, and damaged or partial ones. */
#include <check.h>
#include <string.h>

#include "client_hello.h"
#include "config.h"
#include "certs.h"
#include "dtlsplex.h"
#include "simnet.h"
#include "ticket.h"
#include "check_main.h"

static test_pki pki;
static dtlsplex_config *server_cfg, *client_cfg;
static sim_node server, client;

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  server_cfg = dtlsplex_config_new();
  client_cfg = dtlsplex_config_new();
  ck_assert_int_eq(dtlsplex_config_set_certificate(server_cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(server_cfg, DTLSPLEX_ROLE_SERVER), 0);
  ck_assert_int_eq(dtlsplex_config_set_ca(client_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(client_cfg, DTLSPLEX_ROLE_CLIENT), 0);
  sim_init(NULL);
  sim_add_node(&server, server_cfg, 5684);
}

static void teardown(void) {
  sim_stop_all();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  test_pki_remove(&pki);
}

/* A new client's first ClientHello (the one without a cookie). */
static sim_packet first_client_hello(uint16_t port) {
  sim_clear();
  sim_add_node(&client, client_cfg, port);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  ck_assert_uint_ge(sim_in_flight(), 1);
  return sim_take();
}

static int established(void *arg) {
  (void)arg;
  int err;
  return dp_endpoint_peer_state(client.ep, &server.addr, &err) == DTLSPLEX_STATE_ESTABLISHED;
}

START_TEST(fresh_client_offers_no_ticket) {
  sim_packet p = first_client_hello(40000);
  ck_assert(dp_is_client_hello(p.data, p.len));
  ck_assert_ptr_eq(dp_client_hello_random(p.data, p.len), p.data + 13 + 12 + 2);
  const uint8_t *ticket = NULL;
  size_t len = 0;
  ck_assert(!dp_client_hello_ticket(p.data, p.len, &ticket, &len));
}
END_TEST

/* A client that completed a handshake offers its ticket next time: found,
 * and authentic to the server that sealed it, not to another, and not once
 * altered. */
START_TEST(returning_client_offers_authentic_ticket) {
  sim_packet first = first_client_hello(40000);
  sim_deliver(&first);
  ck_assert(sim_run_until(2000, established, NULL));
  sim_stop_node(&client);
  sim_packet p = first_client_hello(40001);
  const uint8_t *ticket = NULL;
  size_t len = 0;
  ck_assert(dp_client_hello_ticket(p.data, p.len, &ticket, &len));
  ck_assert(ticket >= p.data && ticket + len <= p.data + p.len);
  ck_assert(dp_ticket_authentic(&server_cfg->tickets, ticket, len, sim_now));
  dtlsplex_config *stranger = dtlsplex_config_new();
  ck_assert(!dp_ticket_authentic(&stranger->tickets, ticket, len, sim_now));
  dtlsplex_config_free(stranger);
  /* Two periods later the keys no longer open it. */
  ck_assert(!dp_ticket_authentic(&server_cfg->tickets, ticket, len, sim_now + 2 * 3600 * 1000ull + 1000));
  uint8_t altered[4096];
  memcpy(altered, ticket, len);
  altered[len / 2] ^= 1;
  ck_assert(!dp_ticket_authentic(&server_cfg->tickets, altered, len, sim_now));
  ck_assert(!dp_ticket_authentic(&server_cfg->tickets, ticket, 40, sim_now));

  /* Cut anywhere, or fragmented, the message is not read. */
  for (size_t cut = 0; cut < p.len; cut++)
    ck_assert(!dp_client_hello_ticket(p.data, cut, &ticket, &len) || ticket + len <= p.data + cut);
  sim_packet fragment = p;
  fragment.data[24] ^= 0x01; /* fragment_length no longer the message length */
  ck_assert(!dp_client_hello_ticket(fragment.data, fragment.len, &ticket, &len));
  fragment = p;
  fragment.data[21] = 1; /* a later fragment */
  ck_assert(!dp_client_hello_ticket(fragment.data, fragment.len, &ticket, &len));
  ck_assert_ptr_null(dp_client_hello_random(fragment.data, fragment.len));
}
END_TEST

/* A ClientHello whose body is too short for its random: nothing is read
 * past the datagram (ASan would see it). */
START_TEST(short_body_is_not_read_past) {
  uint8_t d[59] = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 46, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2};
  const uint8_t *ticket;
  size_t len;
  for (size_t cut = 25; cut <= sizeof d; cut++)
    ck_assert(!dp_client_hello_ticket(d, cut, &ticket, &len));
}
END_TEST

START_TEST(other_datagrams_are_not_client_hellos) {
  const uint8_t app[32] = {23, 0xfe, 0xfd, 0, 1};
  ck_assert(!dp_is_client_hello(app, sizeof app));
  const uint8_t short_one[20] = {22, 0xfe, 0xfd, 0, 0};
  ck_assert(!dp_is_client_hello(short_one, sizeof short_one));
  const uint8_t *ticket;
  size_t len;
  ck_assert(!dp_client_hello_ticket(app, sizeof app, &ticket, &len));
}
END_TEST

static Suite *client_hello_suite(void) {
  Suite *s = suite_create("client_hello");
  TCase *tc = tcase_create("client_hello");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, fresh_client_offers_no_ticket);
  tcase_add_test(tc, returning_client_offers_authentic_ticket);
  tcase_add_test(tc, other_datagrams_are_not_client_hellos);
  tcase_add_test(tc, short_body_is_not_read_past);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(client_hello_suite(), CK_FORK_GETENV); }
