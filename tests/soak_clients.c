/* The soak's clients.  Steady ones keep one session each and send a
 * message every SOAK_STEADY_INTERVAL_MS for the whole run; the churn comes
 * and goes in turns: a new client that says goodbye (close_notify), an idle
 * one that vanishes without a word for the server to expire, and one that
 * loses its state and reconnects from the same port.
 *
 * Every message is made from its client's tag and its sequence number, so
 * that each echo can be checked byte for byte against what was sent, late
 * ones (after a resend) included. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "soak.h"

#define MSG_HEADER 12 /* tag (4 bytes) and sequence number (8) */
#define MSG_MAX (MSG_HEADER + 1000)

/* Bounds how long a client waits for echoes still on their way before it
 * goes: only resends leave any, and they arrive within milliseconds unless
 * the server is starved. */
#define DRAIN_MS 5000

static struct sockaddr_in server;
static dtlsplex_config *resuming_cfg, *fresh_cfg;
static atomic_uint next_tag;
static pthread_t steady_threads[SOAK_STEADY], churn_thread;
static int steady_started, churn_started;

typedef struct client {
  int fd;
  uint32_t tag;
  uint64_t seq;       /* of the message last sent */
  long sent, echoed;  /* datagrams: sent - echoed may still be on their way */
} client;

static uint64_t mix(uint64_t x) { /* splitmix64's finalizer */
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/* The message seq of client tag: 12 to 1011 bytes. */
static size_t make_message(uint32_t tag, uint64_t seq, unsigned char *out) {
  uint64_t state = mix(((uint64_t)tag << 40) ^ seq);
  size_t len = MSG_HEADER + state % (MSG_MAX - MSG_HEADER);
  memcpy(out, &tag, sizeof tag);
  memcpy(out + sizeof tag, &seq, sizeof seq);
  for (size_t i = MSG_HEADER; i < len; i++) {
    state = mix(state + i);
    out[i] = (unsigned char)state;
  }
  return len;
}

/* The sequence number of the echo in buf (n bytes), or 0 if it is not
 * exactly one of the messages c has sent. */
static uint64_t echoed_seq(const client *c, const unsigned char *buf, ssize_t n) {
  uint32_t tag;
  uint64_t seq;
  if (n < MSG_HEADER)
    return 0;
  memcpy(&tag, buf, sizeof tag);
  memcpy(&seq, buf + sizeof tag, sizeof seq);
  if (tag != c->tag || seq == 0 || seq > c->seq)
    return 0;
  unsigned char expected[MSG_MAX];
  size_t len = make_message(tag, seq, expected);
  return (size_t)n == len && memcmp(buf, expected, len) == 0 ? seq : 0;
}

/* Reads one echo for up to the socket's 100 ms timeout: its sequence
 * number, 0 if none came, -1 on a failure (recorded). */
static int64_t read_echo(client *c) {
  unsigned char buf[MSG_MAX + 1]; /* one more: a longer echo is wrong, not truncated */
  ssize_t n = dtlsrecvfrom(c->fd, buf, sizeof buf, 0, NULL, NULL);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  if (n < 0) {
    soak_fail("client %u: dtlsrecvfrom: %s", c->tag, strerror(errno));
    return -1;
  }
  uint64_t seq = echoed_seq(c, buf, n);
  if (seq == 0) {
    soak_fail("client %u: an echo of %zd bytes is none of the %llu messages it sent", c->tag, n,
              (unsigned long long)c->seq);
    return -1;
  }
  c->echoed++;
  atomic_fetch_add(&soak_counts_now.echoes, 1);
  return (int64_t)seq;
}

/* Sends the client's next message until its echo comes back, resending
 * after SOAK_RESEND_MS (a datagram the flood crowded out of the server's
 * buffer is lost, as on any UDP path).  0, or -1 (recorded). */
static int exchange(client *c) {
  unsigned char msg[MSG_MAX];
  size_t len = make_message(c->tag, ++c->seq, msg);
  for (int attempt = 1; attempt <= SOAK_ATTEMPTS; attempt++) {
    if (attempt > 1)
      atomic_fetch_add(&soak_counts_now.resent, 1);
    if (dtlssendto(c->fd, msg, len, 0, (struct sockaddr *)&server, sizeof server) != (ssize_t)len) {
      soak_fail("client %u: dtlssendto of message %llu: %s", c->tag, (unsigned long long)c->seq, strerror(errno));
      return -1;
    }
    c->sent++;
    for (long deadline = soak_now_ms() + SOAK_RESEND_MS; soak_now_ms() < deadline;) {
      int64_t seq = read_echo(c);
      if (seq < 0)
        return -1;
      if ((uint64_t)seq == c->seq)
        return 0;
    }
  }
  soak_fail("client %u: message %llu unanswered after %d sends, %d ms apart", c->tag, (unsigned long long)c->seq,
            SOAK_ATTEMPTS, SOAK_RESEND_MS);
  return -1;
}

/* A client on 127.0.0.1:port (0: any), attached with cfg.  0, or -1 (recorded). */
static int client_open(client *c, dtlsplex_config *cfg, in_port_t port) {
  *c = (client){.tag = atomic_fetch_add(&next_tag, 1) + 1};
  struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tick = {.tv_usec = 100 * 1000};
  c->fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&self, sizeof self) < 0 ||
      setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick) < 0 || dtlsplex_attach(c->fd, cfg) < 0) {
    soak_fail("client %u: socket on port %u: %s", c->tag, ntohs(port), strerror(errno));
    if (c->fd >= 0)
      close(c->fd);
    return -1;
  }
  return 0;
}

static in_port_t client_port(const client *c) {
  struct sockaddr_in self;
  socklen_t len = sizeof self;
  return getsockname(c->fd, (struct sockaddr *)&self, &len) == 0 ? self.sin_port : 0;
}

/* Waits (bounded) for the echoes of resent messages that may still come:
 * every echo the server sends must be read, or the final count would not
 * add up. */
static void drain(client *c) {
  for (long deadline = soak_now_ms() + DRAIN_MS; c->echoed < c->sent && soak_now_ms() < deadline;)
    if (read_echo(c) < 0)
      return;
}

/* Goes with close_notify (close detaches). */
static void client_close(client *c) {
  drain(c);
  close(c->fd);
}

/* Vanishes without close_notify: a socket shut down for writing refuses
 * the library's goodbye, so the server keeps an idle session to expire,
 * as when a client's process dies. */
static void client_abandon(client *c) {
  drain(c);
  shutdown(c->fd, SHUT_WR);
  dtlsplex_detach(c->fd);
  close(c->fd);
}

/* *v = max(*v, x), with other threads raising it too. */
static void raise_to(atomic_long *v, long x) {
  long seen = atomic_load(v);
  while (x > seen && !atomic_compare_exchange_weak(v, &seen, x))
    ;
}

static void *steady(void *arg) {
  atomic_long *echoes = arg;
  client c;
  if (client_open(&c, resuming_cfg, 0) < 0)
    return NULL;
  long last = -1;
  /* Not stopped mid-exchange: each message is answered before the client
   * goes, so that the server's count of echoes is the clients'. */
  while (!atomic_load(&soak_stop) && exchange(&c) == 0) {
    long now = soak_now_ms();
    if (last >= 0)
      raise_to(&soak_counts_now.longest_gap_ms, now - last);
    last = now;
    atomic_fetch_add(echoes, 1);
    soak_sleep_ms(SOAK_STEADY_INTERVAL_MS);
  }
  client_close(&c);
  return NULL;
}

/* One client on 127.0.0.1:*port (0: any; the port taken is left there),
 * attached with cfg: messages echoed, then goodbye (close_notify) or
 * vanishing without a word.  0, or -1 (recorded). */
static int visit(dtlsplex_config *cfg, in_port_t *port, int messages, int goodbye) {
  client c;
  if (client_open(&c, cfg, *port) < 0)
    return -1;
  *port = client_port(&c);
  int ok = 1;
  for (int i = 0; i < messages && ok; i++)
    ok = exchange(&c) == 0;
  if (goodbye)
    client_close(&c);
  else
    client_abandon(&c);
  return ok ? 0 : -1;
}

/* New: a few messages, then goodbye.  Its configuration resumes: after the
 * first, these are abbreviated handshakes. */
static int churn_new(void) {
  in_port_t any = 0;
  return visit(resuming_cfg, &any, 3, 1);
}

/* Idle: one message, then silence; the server expires it after SOAK_IDLE_MS. */
static int churn_idle(void) {
  in_port_t any = 0;
  return visit(fresh_cfg, &any, 1, 0);
}

/* Reconnecting: one message, the state lost, and a fresh socket on the same
 * port makes a full handshake; the server replaces the session it had for
 * that address. */
static int churn_reconnect(void) {
  in_port_t port = 0;
  return visit(fresh_cfg, &port, 1, 0) == 0 ? visit(fresh_cfg, &port, 1, 1) : -1;
}

static void *churn(void *arg) {
  (void)arg;
  int (*const kinds[])(void) = {churn_new, churn_idle, churn_reconnect};
  atomic_long *const done[] = {&soak_counts_now.churn_new, &soak_counts_now.churn_idle,
                               &soak_counts_now.churn_reconnect};
  for (unsigned long n = 0; !atomic_load(&soak_stop); n++) {
    if (kinds[n % 3]() < 0)
      break;
    atomic_fetch_add(done[n % 3], 1);
    soak_sleep_ms(SOAK_CHURN_INTERVAL_MS);
  }
  return NULL;
}

static dtlsplex_config *client_config(const char *ca, int resumption) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL || dtlsplex_config_set_ca(cfg, ca, NULL) < 0 ||
      dtlsplex_config_set_timeouts(cfg, 10000, 0) < 0 || dtlsplex_config_set_resumption(cfg, resumption, 0) < 0) {
    soak_fail("client configuration: %s", strerror(errno));
    dtlsplex_config_free(cfg);
    return NULL;
  }
  return cfg;
}

int soak_clients_start(const struct sockaddr_in *to, const char *ca) {
  server = *to;
  resuming_cfg = client_config(ca, 1);
  fresh_cfg = client_config(ca, 0);
  if (resuming_cfg == NULL || fresh_cfg == NULL)
    return -1;
  for (; steady_started < SOAK_STEADY; steady_started++)
    if (pthread_create(&steady_threads[steady_started], NULL, steady,
                       &soak_counts_now.steady_echoes[steady_started]) != 0) {
      soak_fail("pthread_create: steady client");
      return -1;
    }
  if (pthread_create(&churn_thread, NULL, churn, NULL) != 0) {
    soak_fail("pthread_create: churn");
    return -1;
  }
  churn_started = 1;
  return 0;
}

void soak_clients_stop(void) {
  for (int i = 0; i < steady_started; i++)
    pthread_join(steady_threads[i], NULL);
  if (churn_started)
    pthread_join(churn_thread, NULL);
  dtlsplex_config_free(resuming_cfg);
  dtlsplex_config_free(fresh_cfg);
}
