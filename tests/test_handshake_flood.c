/* A handshake flood from one real address over loopback, against a server
 * with the default fairness settings: the flood gets its budget of full
 * handshakes and no more, the server's CPU stays bounded, and a client from
 * another address is served meanwhile.  The control turns the budget and
 * the share off: the same flood then gets many more handshakes, which is
 * what the budget holds back. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "dtlsplex.h"
#include "loopback.h"
#include "check_main.h"

#define FLOOD_MS 3000
#define IN_FLIGHT 48
#define GIVE_UP_MS 250 /* a flooding client abandons a handshake not done by then */

static test_pki pki;

static void setup(void) { ck_assert_int_eq(test_pki_make(&pki), 0); }
static void teardown(void) { test_pki_remove(&pki); }

static dtlsplex_config *server_config(int fair) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER), 0);
  if (!fair) {
    ck_assert_int_eq(dtlsplex_config_set_handshake_budget(cfg, 0, 0), 0);
    ck_assert_int_eq(dtlsplex_config_set_source_share(cfg, 32, 64, 100), 0);
  }
  return cfg;
}

/* Flooding clients never resume: every handshake is a full one. */
static dtlsplex_config *flood_config(void) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_ca(cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT), 0);
  ck_assert_int_eq(dtlsplex_config_set_resumption(cfg, 0, 0), 0);
  return cfg;
}

static double thread_cpu_s(pthread_t thread) {
  clockid_t clock;
  struct timespec ts;
  ck_assert_int_eq(pthread_getcpuclockid(thread, &clock), 0);
  ck_assert_int_eq(clock_gettime(clock, &ts), 0);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct flood {
  int fd[IN_FLIGHT];
  long started[IN_FLIGHT];
  long attempts, completed;
} flood;

static void flood_open(flood *f, int i, dtlsplex_config *cfg, const echo_server *srv) {
  f->fd[i] = attached_socket(cfg, 0);
  f->started[i] = now_ms();
  f->attempts++;
  ck_assert_int_eq(
      dtlssendto(f->fd[i], "x", 1, MSG_DONTWAIT, (const struct sockaddr *)&srv->addr, srv->addr_len), 1);
}

static void flood_close(flood *f, int i) {
  ck_assert_int_eq(dtlsplex_detach(f->fd[i]), 0);
  close(f->fd[i]);
}

/* One pass over the flooding clients: each that completed (its echo came
 * back) or gave up is replaced by a new one. */
static void flood_step(flood *f, dtlsplex_config *cfg, const echo_server *srv) {
  for (int i = 0; i < IN_FLIGHT; i++) {
    dtlsplex_process(f->fd[i]);
    char echo[8];
    int done = dtlsrecvfrom(f->fd[i], echo, sizeof echo, MSG_DONTWAIT, NULL, NULL) == 1;
    if (done || now_ms() - f->started[i] > GIVE_UP_MS) {
      f->completed += done;
      flood_close(f, i);
      flood_open(f, i, cfg, srv);
    }
  }
}

/* A client at 127.0.0.2 connects and gets its echo during the flood. */
static long served_ms(const echo_server *srv, dtlsplex_config *cfg, flood *f, dtlsplex_config *flood_cfg) {
  struct sockaddr_storage self;
  socklen_t self_len;
  int fd = bound_socket_to(AF_INET, "127.0.0.2", &self, &self_len);
  ck_assert_int_eq(dtlsplex_attach(fd, cfg), 0);
  long start = now_ms(), served = -1;
  ck_assert_int_eq(dtlssendto(fd, "legit", 5, MSG_DONTWAIT, (const struct sockaddr *)&srv->addr, srv->addr_len), 5);
  while (served < 0 && now_ms() - start < 3000) {
    dtlsplex_process(fd);
    char echo[8];
    if (dtlsrecvfrom(fd, echo, sizeof echo, MSG_DONTWAIT, NULL, NULL) == 5)
      served = now_ms() - start;
    flood_step(f, flood_cfg, srv);
  }
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  return served;
}

typedef struct flood_result {
  struct dtlsplex_stats st;
  double server_cpu_s, seconds;
  long attempts, completed, legit_ms;
} flood_result;

static flood_result run_flood(int fair) {
  dtlsplex_config *scfg = server_config(fair), *fcfg = flood_config(), *legit_cfg = flood_config();
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  flood f = {0};
  double cpu_before = thread_cpu_s(srv.thread);
  long start = now_ms();
  for (int i = 0; i < IN_FLIGHT; i++)
    flood_open(&f, i, fcfg, &srv);
  while (now_ms() - start < FLOOD_MS / 2)
    flood_step(&f, fcfg, &srv);
  flood_result r = {.legit_ms = served_ms(&srv, legit_cfg, &f, fcfg)};
  while (now_ms() - start < FLOOD_MS)
    flood_step(&f, fcfg, &srv);
  r.seconds = (double)(now_ms() - start) / 1000;
  r.server_cpu_s = thread_cpu_s(srv.thread) - cpu_before;
  for (int i = 0; i < IN_FLIGHT; i++)
    flood_close(&f, i);
  r.st = echo_stop(&srv);
  r.attempts = f.attempts;
  r.completed = f.completed;
  fprintf(stderr,
          "%s: %ld flooding handshakes tried in %.1f s, %llu completed on the server, %llu over budget, "
          "%llu over share; server CPU %.2f s; other client served in %ld ms\n",
          fair ? "defaults" : "no budget, no share", r.attempts, r.seconds, (unsigned long long)r.st.handshakes_ok,
          (unsigned long long)r.st.dropped_handshake_budget, (unsigned long long)r.st.dropped_source_share,
          r.server_cpu_s, r.legit_ms);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(fcfg);
  dtlsplex_config_free(legit_cfg);
  return r;
}

START_TEST(flood_held_to_budget_over_loopback) {
  flood_result r = run_flood(1);
  /* The default budget: bursts of 100, then 100 a second; +1 for 127.0.0.2. */
  ck_assert_uint_le(r.st.handshakes_ok, (uint64_t)(1 + 100 + 100 * r.seconds + 1));
  ck_assert_uint_gt(r.st.dropped_handshake_budget + r.st.dropped_source_share, 0);
  ck_assert_int_ge(r.legit_ms, 0);
  /* Bounded: what the budget admits, about 300 us each, and the cookies
   * and drops of the rest; far below the core the flood could take. */
  ck_assert_double_lt(r.server_cpu_s, 0.5 * r.seconds);

  flood_result control = run_flood(0);
  ck_assert_uint_eq(control.st.dropped_handshake_budget + control.st.dropped_source_share, 0);
  /* The flood could have had more than the budget let through. */
  ck_assert_uint_gt(control.st.handshakes_ok, r.st.handshakes_ok);
}
END_TEST

static Suite *flood_suite(void) {
  Suite *s = suite_create("handshake_flood");
  TCase *tc = tcase_create("handshake_flood");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, flood_held_to_budget_over_loopback);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(flood_suite(), CK_FORK_GETENV); }
