/* The soak (make check-long): one echo server in a process of its own,
 * sampled every 10 s from outside, under churning clients, steady data, a
 * spoofed-ClientHello flood and garbage.  docs/RELIABILITY.md ("Soak") has
 * the design, the bounds and a 10-minute run. */
#ifndef TESTS_SOAK_H
#define TESTS_SOAK_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "dtlsplex.h"

/* The load, sized to be steady rather than heavy: two cores are shared with
 * the rest of CI. */
#define SOAK_STEADY 4              /* clients that keep one session for the whole run */
#define SOAK_STEADY_INTERVAL_MS 50 /* each sends its next message this long after an echo */
#define SOAK_CHURN_INTERVAL_MS 100 /* pause after each churn client: new, idle or reconnecting */
#define SOAK_IDLE_MS 5000          /* the server's idle timeout: abandoned clients expire */
#define SOAK_HELLOS_PER_S 2000     /* spoofed cookie-less ClientHellos */
#define SOAK_GARBAGE_PER_S 200     /* random datagrams, half shaped like DTLS records */
#define SOAK_RESEND_MS 1000        /* a message unanswered this long is sent again... */
#define SOAK_ATTEMPTS 5            /* ...up to this many times in all */

/* The first failure: printed at once, kept for the verdict, and it stops
 * the run. */
void soak_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *soak_failure(void);
extern atomic_bool soak_stop;

long soak_now_ms(void);
/* Sleeps ms, unless soak_stop is set first (checked every 100 ms). */
void soak_sleep_ms(long ms);

/* The server process: an echo loop on an attached socket at 127.0.0.1, and
 * a pipe on which it answers requests for its dtlsplex_stats. */
typedef struct soak_server {
  pid_t pid;
  struct sockaddr_in addr;
  int request_fd, reply_fd;
} soak_server;

/* Forks the server (before any thread starts).  Returns 0 or -1. */
int soak_server_start(soak_server *s, const char *cert, const char *key);
/* Its statistics, asked for over the pipe.  Returns 0, or -1 if it did not
 * answer within 5 s. */
int soak_server_stats(soak_server *s, struct dtlsplex_stats *out);
/* Asks it to detach and exit, and waits (bounded): its exit status, which
 * carries LeakSanitizer's verdict, or -1 if it had to be killed. */
int soak_server_stop(soak_server *s);

/* What the clients count, read by the sampler as they run. */
typedef struct soak_counts {
  atomic_long echoes;         /* echoes received, each checked byte for byte */
  atomic_long resent;         /* messages sent again after SOAK_RESEND_MS */
  atomic_long churn_new, churn_idle, churn_reconnect;
  atomic_long steady_echoes[SOAK_STEADY];
  atomic_long longest_gap_ms; /* between two echoes of one steady client */
  atomic_long hellos, garbage, flood_answers;
} soak_counts;

extern soak_counts soak_counts_now;

/* Steady clients and the churn, in threads of their own; ca verifies the
 * server (its certificate names 127.0.0.1).  Returns 0 or -1. */
int soak_clients_start(const struct sockaddr_in *server, const char *ca);
/* Joins them (after soak_stop) once each steady client has waited for the
 * answers to its last resends. */
void soak_clients_stop(void);

/* The flood of spoofed ClientHellos and garbage from 127/8 addresses, in a
 * thread of its own.  Returns 0 or -1. */
int soak_flood_start(const struct sockaddr_in *server);
void soak_flood_stop(void);

#endif
