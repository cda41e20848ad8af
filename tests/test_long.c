/* The long scenarios (make check-long): a spoofed ClientHello flood and
 * handshake churn, over the sans-I/O core and simnet.  Counts can be scaled
 * down with DTLSPLEX_LONG_SCALE (a divisor) for a quick look. */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "certs.h"
#include "dtlsplex.h"
#include "endpoint.h"
#include "simnet.h"
#include "check_main.h"

static test_pki pki;
static dtlsplex_config *server_cfg, *client_cfg;
static sim_node server;

static long scaled(long n) {
  const char *s = getenv("DTLSPLEX_LONG_SCALE");
  long div = s != NULL ? atol(s) : 1;
  return div > 1 ? n / div : n;
}

static size_t heap_in_use(void) { return mallinfo2().uordblks; }

static long rss_kib(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  server_cfg = dtlsplex_config_new();
  client_cfg = dtlsplex_config_new();
  ck_assert_int_eq(dtlsplex_config_set_certificate(server_cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(server_cfg, DTLSPLEX_ROLE_SERVER), 0);
  ck_assert_int_eq(dtlsplex_config_set_ca(client_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(server_cfg, 2000, 5000), 0);
  sim_init(NULL);
  sim_add_node(&server, server_cfg, 5684);
}

static void teardown(void) {
  sim_stop_all();
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  test_pki_remove(&pki);
}

/* A client at port connects, sends, is answered, and optionally closes. */
static void one_session(uint16_t port, int close_it) {
  static sim_node client;
  sim_add_node(&client, client_cfg, port);
  ck_assert_int_eq(dp_endpoint_write_pkt(client.ep, &server.addr, NULL, "ping", 4, 1, sim_now), 4);
  sim_deliver_due();
  char buf[8];
  dp_addr from;
  ck_assert_int_eq(dp_endpoint_recv(server.ep, buf, sizeof buf, 0, &from), 4);
  ck_assert_int_eq(dp_endpoint_write_pkt(server.ep, &from, NULL, "pong", 4, 0, sim_now), 4);
  sim_deliver_due();
  ck_assert_int_eq(dp_endpoint_recv(client.ep, buf, sizeof buf, 0, NULL), 4);
  if (close_it) {
    ck_assert_int_eq(dp_endpoint_close(client.ep, &server.addr), 0);
    sim_deliver_due();
  }
  sim_stop_node(&client); /* without close: the client just vanishes */
  sim_clear();
}

/* 1,000,000 cookie-less ClientHellos from distinct 127/8 addresses and ports:
 * no peer, bounded heap, no amplification, and real clients still connect. */
START_TEST(spoofed_client_hello_flood) {
  static sim_node capture;
  sim_add_node(&capture, client_cfg, 40000);
  ck_assert_int_eq(dp_endpoint_write_pkt(capture.ep, &server.addr, NULL, "x", 1, 1, sim_now), 1);
  sim_packet hello = sim_take();
  sim_stop_node(&capture);
  sim_clear();

  long total = scaled(1000000);
  size_t heap_before = 0;
  size_t largest_answer = 0;
  for (long i = 0; i < total; i++) {
    if (i == 1000) /* after warm-up: buffers and key schedules exist */
      heap_before = heap_in_use();
    struct sockaddr_in spoofed = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)(1024 + i % 60000)),
                                  .sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(1 + i / 60000))};
    dp_addr from;
    ck_assert_int_eq(dp_addr_from_sockaddr(&from, (struct sockaddr *)&spoofed, sizeof spoofed, AF_INET), 0);
    dp_endpoint_read_pkt(server.ep, &from, NULL, hello.data, hello.len, sim_now);
    ck_assert_uint_eq(sim_in_flight(), 1); /* one HelloVerifyRequest */
    if (sim_peek(0)->len > largest_answer)
      largest_answer = sim_peek(0)->len;
    sim_clear();
    if (i % 100000 == 99999) {
      one_session((uint16_t)(50000 + i / 100000), 1); /* a real client meanwhile */
      sim_advance(1000);
    }
  }
  size_t heap_after = heap_in_use();
  struct dtlsplex_stats st;
  dp_endpoint_stats(server.ep, &st);
  fprintf(stderr, "flood: %ld ClientHellos of %zu bytes, answers <= %zu bytes, heap %+ld bytes, %llu cookies\n",
          total, hello.len, largest_answer, (long)heap_after - (long)heap_before,
          (unsigned long long)st.cookies_sent);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_uint_eq(st.handshakes_active, 0);
  ck_assert_uint_ge(st.cookies_sent, (uint64_t)total);
  ck_assert_uint_eq(st.handshakes_ok, (uint64_t)(total / 100000));
  ck_assert_uint_le(largest_answer, hello.len);
  ck_assert_int_lt((long)heap_after - (long)heap_before, 256 * 1024);
}
END_TEST

/* Runs cycles sessions (closed, or vanishing and expiring) and checks that
 * memory is as flat at the end as after the first tenth: what a steady state
 * has grown to (up to 1,000 idle peers awaiting expiry) may stay mapped, but
 * nothing may accumulate. */
static void churn(long cycles, int close_it) {
  long rss_early = 0, heap_early = 0;
  for (long i = 0; i < cycles; i++) {
    one_session((uint16_t)(10000 + i % 50000), close_it);
    if (!close_it && i % 1000 == 999)
      sim_advance(6000); /* the idle timeout: vanished clients expire */
    /* Sample at a steady point: for vanishing clients, right after a batch expired. */
    if (rss_early == 0 && i >= cycles / 10 && (close_it || i % 1000 == 999)) {
      rss_early = rss_kib();
      heap_early = (long)heap_in_use();
    }
  }
  sim_advance(6000);
  long rss_late = rss_kib(), heap_late = (long)heap_in_use();
  struct dtlsplex_stats st;
  dp_endpoint_stats(server.ep, &st);
  fprintf(stderr, "churn: %ld %s sessions; from 10%% to the end RSS %ld -> %ld KiB, heap %ld -> %ld bytes\n",
          cycles, close_it ? "closed" : "vanished", rss_early, rss_late, heap_early, heap_late);
  ck_assert_uint_eq(st.peers, 0);
  ck_assert_int_lt(heap_late - heap_early, 1024 * 1024);
  ck_assert_int_lt(rss_late - rss_early, 8 * 1024);
}

/* 100,000 handshake + close cycles, then as many clients that vanish and
 * expire.  LeakSanitizer checks the rest in sanitizer builds. */
START_TEST(handshake_churn) {
  long cycles = scaled(100000);
  churn(cycles, 1);
  struct dtlsplex_stats st;
  dp_endpoint_stats(server.ep, &st);
  ck_assert_uint_eq(st.handshakes_ok, (uint64_t)cycles);
  churn(cycles, 0);
  dp_endpoint_stats(server.ep, &st);
  ck_assert_uint_eq(st.expired, (uint64_t)cycles);
  ck_assert_uint_eq(st.handshakes_ok, 2 * (uint64_t)cycles);
}
END_TEST

int main(void) {
  Suite *s = suite_create("long");
  TCase *tc = tcase_create("long");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 3600);
  tcase_add_test(tc, spoofed_client_hello_flood);
  tcase_add_test(tc, handshake_churn);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_NOFORK /* measure this process's memory */);
}
