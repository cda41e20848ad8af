/* The soak (make check-long): an echo server in a process of its own under
 * churning clients (new, idle and expiring, reconnecting from the same
 * port), steady data, a spoofed-ClientHello flood and garbage, for
 * DTLSPLEX_SOAK_SECONDS (default 600, divided by DTLSPLEX_LONG_SCALE when
 * that is set).  Every 10 s it samples the server's resident memory,
 * descriptors, peers and CPU into a CSV (argv[1], default soak.csv); at the
 * end it asserts that they stayed flat after the warm-up, that the steady
 * clients' echoes kept arriving, and that every echo the server sent
 * arrived intact.  docs/RELIABILITY.md ("Soak") explains the bounds. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "soak.h"
#include "soak_sample.h"

#define SAMPLE_MS 10000
#define MIN_SECONDS 60 /* the 30 s warm-up and four samples after it: two halves of two */
/* Warm-up: the first fifth of the run, at least 30 s.  Until then the
 * server's allocator and OpenSSL's caches are still growing to the size
 * the load needs. */
#define WARMUP_MIN_MS 30000

/* The flatness bounds, from runs measured (docs/RELIABILITY.md, "Soak").
 * RSS: after the warm-up it moved within 150 KiB in 10-minute runs, as idle
 * sessions (about 69 KB each, DESIGN.md) came and went; 512 KiB allows
 * three times that, and is what 70 bytes kept per handshake would add in
 * 10 minutes. */
#define RSS_SLACK_KIB 512
/* CPU: the mean of the second half of the samples after the warm-up
 * against the first half's, so that a sanitizer's slower code sets its own
 * baseline.  10-s samples of a few percent of a core vary by half when
 * other jobs share the machine; halves average that out, and the slack
 * absorbs the rest. */
#define CPU_GROWTH 1.5
#define CPU_SLACK_POINTS 1.0
/* Peers: the steady clients, the idle ones not yet expired (one idle client
 * per three churn turns, each turn at least SOAK_CHURN_INTERVAL_MS; each
 * lives SOAK_IDLE_MS and up to a second more until the expiry timer runs),
 * and the churn client of the moment. */
#define PEERS_MAX (SOAK_STEADY + (SOAK_IDLE_MS + 1000) / (3 * SOAK_CHURN_INTERVAL_MS) + 1 + 1)

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

atomic_bool soak_stop;
soak_counts soak_counts_now;
static char failure[512];
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;

void soak_fail(const char *fmt, ...) {
  pthread_mutex_lock(&failure_lock);
  if (failure[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(failure, sizeof failure, fmt, ap);
    va_end(ap);
    fprintf(stderr, "soak: %s\n", failure);
  }
  pthread_mutex_unlock(&failure_lock);
  atomic_store(&soak_stop, 1);
}

const char *soak_failure(void) { return failure[0] != '\0' ? failure : NULL; }

long soak_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void soak_sleep_ms(long ms) {
  for (long end = soak_now_ms() + ms, left = ms; left > 0 && !atomic_load(&soak_stop); left = end - soak_now_ms())
    usleep((useconds_t)(left < 100 ? left : 100) * 1000);
}

/* DTLSPLEX_SOAK_SECONDS, else 600 / DTLSPLEX_LONG_SCALE; -1 if below
 * MIN_SECONDS or not a number. */
static long soak_seconds(void) {
  const char *s = getenv("DTLSPLEX_SOAK_SECONDS"), *scale = getenv("DTLSPLEX_LONG_SCALE");
  char *end = NULL;
  long seconds = s != NULL ? strtol(s, &end, 10) : 600 / (scale != NULL && atol(scale) > 1 ? atol(scale) : 1);
  if ((s != NULL && (end == s || *end != '\0')) || seconds < MIN_SECONDS)
    return -1;
  return seconds;
}

static int failures;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("soak: %s: ", ok ? "ok" : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!ok)
    failures++;
}

/* The samples from the warm-up's end (s[first]) to the last (s[n - 1]). */
static void check_flat(const soak_sample *s, int first, int n) {
  const soak_sample *base = &s[first];
  long rss_max = base->rss_kib, fds_min = base->fds, fds_max = base->fds;
  unsigned long long peers_min = base->stats.peers, peers_max = base->stats.peers;
  double cpu_max = 0;
  int stalled_client = -1, stalled_at = 0; /* the first steady client without an echo in a sample */
  for (int i = first; i < n; i++) {
    if (s[i].rss_kib > rss_max)
      rss_max = s[i].rss_kib;
    fds_min = s[i].fds < fds_min ? s[i].fds : fds_min;
    fds_max = s[i].fds > fds_max ? s[i].fds : fds_max;
    peers_min = s[i].stats.peers < peers_min ? s[i].stats.peers : peers_min;
    peers_max = s[i].stats.peers > peers_max ? s[i].stats.peers : peers_max;
    cpu_max = s[i].cpu_percent > cpu_max ? s[i].cpu_percent : cpu_max;
    for (int c = 0; c < SOAK_STEADY && stalled_client < 0; c++)
      if (s[i].steady_echoes[c] <= s[i - 1].steady_echoes[c]) {
        stalled_client = c;
        stalled_at = i;
      }
  }
  int half = (n - first) / 2;
  double cpu_first = 0, cpu_second = 0;
  for (int i = 0; i < half; i++) {
    cpu_first += s[first + i].cpu_percent / half;
    cpu_second += s[n - half + i].cpu_percent / half;
  }
  double cpu_bound = CPU_GROWTH * cpu_first + CPU_SLACK_POINTS;
  long t0 = base->t_ms / 1000, t1 = s[n - 1].t_ms / 1000;
  if (UNDER_ASAN)
    printf("soak: skipped: resident memory (AddressSanitizer's quarantine holds freed memory; "
           "LeakSanitizer judges the server at exit): %ld -> %ld KiB\n", base->rss_kib, rss_max);
  else
    check(rss_max - base->rss_kib <= RSS_SLACK_KIB, "resident memory from %ld s to %ld s: %ld KiB, at most %ld KiB "
          "(bound: +%d KiB)", t0, t1, base->rss_kib, rss_max, RSS_SLACK_KIB);
  check(fds_min == fds_max, "descriptors from %ld s to %ld s: %ld to %ld (bound: constant)", t0, t1, fds_min, fds_max);
  check(peers_min >= SOAK_STEADY && peers_max <= PEERS_MAX, "peers from %ld s to %ld s: %llu to %llu (bounds: %d to %d)",
        t0, t1, peers_min, peers_max, SOAK_STEADY, PEERS_MAX);
  check(cpu_second <= cpu_bound,
        "server CPU from %ld s to %ld s: %.1f%% of a core in the first half, %.1f%% in the second, at most %.1f%% "
        "(bound: %.1f x %.1f + %.0f = %.1f%%)",
        t0, t1, cpu_first, cpu_second, cpu_max, CPU_GROWTH, cpu_first, CPU_SLACK_POINTS, cpu_bound);
  if (stalled_client >= 0)
    check(0, "steady client %d had no echo between %ld s and %ld s", stalled_client, s[stalled_at - 1].t_ms / 1000,
          s[stalled_at].t_ms / 1000);
  else
    check(1, "each steady client had echoes in every 10 s from %ld s to %ld s", t0, t1);
}

int main(int argc, char **argv) {
  const char *csv_path = argc > 1 ? argv[1] : "soak.csv";
  long seconds = soak_seconds();
  if (seconds < 0) {
    fprintf(stderr, "soak: DTLSPLEX_SOAK_SECONDS must be a number of seconds, at least %d\n", MIN_SECONDS);
    return 2;
  }
  int n = (int)(seconds * 1000 / SAMPLE_MS) + 1; /* and one at the start */
  soak_sample *samples = calloc((size_t)n, sizeof *samples);
  test_pki pki;
  if (samples == NULL || test_pki_make(&pki) < 0) {
    fprintf(stderr, "soak: no memory, or no certificates\n");
    return 99;
  }
  soak_server server;
  if (soak_server_start(&server, pki.server_cert, pki.server_key) < 0)
    return 99;
  FILE *csv = fopen(csv_path, "w"); /* after the fork: not one of the server's descriptors */
  if (csv == NULL) {
    perror(csv_path);
    return 99;
  }
  printf("soak: %ld s, server pid %d on 127.0.0.1:%u, samples in %s\n", seconds, (int)server.pid,
         ntohs(server.addr.sin_port), csv_path);
  soak_csv_header(csv);

  long start = soak_now_ms();
  if (soak_flood_start(&server.addr) == 0)
    soak_clients_start(&server.addr, pki.ca);
  int taken = 0;
  for (; taken < n && !atomic_load(&soak_stop); taken++) {
    soak_sleep_ms(start + (long)taken * SAMPLE_MS - soak_now_ms());
    soak_sample *s = &samples[taken];
    if (atomic_load(&soak_stop) ||
        soak_take_sample(&server, soak_now_ms() - start, taken > 0 ? s - 1 : NULL, s) < 0)
      break;
    soak_csv_row(csv, s);
    printf("soak: %3ld s: rss %ld KiB, %ld fds, %llu peers, cpu %.1f%%, %llu handshakes, %ld echoes\n", s->t_ms / 1000,
           s->rss_kib, s->fds, (unsigned long long)s->stats.peers, s->cpu_percent,
           (unsigned long long)s->stats.handshakes_ok, s->echoes);
    fflush(stdout);
  }
  atomic_store(&soak_stop, 1);
  soak_flood_stop();
  soak_clients_stop(); /* every echo on its way has been read */
  struct dtlsplex_stats end;
  int end_ok = soak_server_stats(&server, &end) == 0;
  int server_status = soak_server_stop(&server);
  fclose(csv);
  test_pki_remove(&pki);

  const soak_counts *c = &soak_counts_now;
  check(soak_failure() == NULL, "the run: %s", soak_failure() != NULL ? soak_failure() : "no failure");
  long warmup_ms = seconds * 1000 / 5 > WARMUP_MIN_MS ? seconds * 1000 / 5 : WARMUP_MIN_MS;
  int first = (int)((warmup_ms + SAMPLE_MS - 1) / SAMPLE_MS);
  if (taken == n)
    check_flat(samples, first, n);
  check(end_ok && end.app_datagrams_out == (uint64_t)atomic_load(&c->echoes),
        "echoes: the server sent %llu, the clients received %ld, each as sent (%ld messages resent)",
        end_ok ? (unsigned long long)end.app_datagrams_out : 0ULL, atomic_load(&c->echoes), atomic_load(&c->resent));
  check(end_ok && end.handshakes_failed == 0 && end.expired > 0 && atomic_load(&c->churn_reconnect) > 0,
        "churn: %ld new, %ld idle (%llu expired), %ld reconnected; %llu handshakes (%llu resumed), %llu failed",
        atomic_load(&c->churn_new), atomic_load(&c->churn_idle), (unsigned long long)end.expired,
        atomic_load(&c->churn_reconnect), (unsigned long long)end.handshakes_ok,
        (unsigned long long)end.handshakes_resumed, (unsigned long long)end.handshakes_failed);
  printf("soak: flood: %ld ClientHellos, %ld garbage datagrams; %llu cookies sent, %ld answers read, "
         "%llu bad cookies, %llu without a session; longest gap between steady echoes %ld ms\n",
         atomic_load(&c->hellos), atomic_load(&c->garbage), (unsigned long long)end.cookies_sent,
         atomic_load(&c->flood_answers), (unsigned long long)end.dropped_bad_cookie,
         (unsigned long long)end.dropped_no_session, atomic_load(&c->longest_gap_ms));
  check(server_status == 0, "the server exited with status %d%s", server_status,
        server_status < 0 ? " (killed after 10 s)" : "");
  free(samples);
  return failures == 0 ? 0 : 1;
}
