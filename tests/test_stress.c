/* Eight threads at once on one server socket and two client sockets, for a
 * bounded time (DTLSPLEX_STRESS_SECONDS, default 5):
 *   3 server threads   receive, record, echo; EBADF while detached is waited out
 *   4 client threads   two per client socket, each its own stream of numbered
 *                      datagrams: send one, receive echoes (anyone's on that
 *                      socket) until its own comes or 300 ms pass, and close
 *                      the peer now and then, and after a loss (the server may
 *                      have forgotten the session)
 *   1 chaos thread     closes a client peer on the server every 20 ms, and
 *                      detaches and attaches the server socket every 200 ms
 * A datagram is acknowledged when its own stream's thread, or the other on
 * that socket, receives its echo.  The server records each datagram before
 * echoing it, so an acknowledged datagram missing from that record, an echo
 * or a datagram received twice, or one that names a stream of another
 * socket or a number not yet sent, is the library's fault.  Losses are not:
 * the chaos drops sessions on purpose.  Under AddressSanitizer the run must
 * also leak nothing; under ThreadSanitizer, race nothing. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtlsplex.h"
#include "loopback.h"
#include "check_main.h"

#define CLIENT_SOCKETS 2
#define STREAMS 4 /* stream c on client socket c / 2 */
#define SERVER_THREADS 3
#define MAX_SEQ 65536
#define ECHO_WAIT_MS 300
#define CLOSE_EVERY 50 /* datagrams a stream sends between closes of its peer */
#define CHAOS_TICK_MS 20
#define DETACH_EVERY 10 /* chaos ticks */
#define DEFAULT_SECONDS 5

static const unsigned char psk_key[16] = {5, 4, 3, 2, 1, 0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};

typedef struct message {
  uint32_t stream;
  uint32_t seq;
} message;

typedef struct world {
  dtlsplex_config *scfg, *ccfg;
  int server;
  struct sockaddr_storage server_addr;
  socklen_t server_len;
  int clients[CLIENT_SOCKETS];
  struct sockaddr_storage client_addr[CLIENT_SOCKETS];
  socklen_t client_len[CLIENT_SOCKETS];
  atomic_int stop;
  atomic_uint sent[STREAMS]; /* each stream's next number */
  atomic_uchar received[STREAMS][MAX_SEQ];
  atomic_uchar acked[STREAMS][MAX_SEQ];
  atomic_uint detaches;
} world;

typedef struct client_thread {
  world *w;
  unsigned int stream;
} client_thread;

static dtlsplex_config *psk_config(int role) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_psk(cfg, "stress", psk_key, sizeof psk_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, role), 0);
  /* A handshake with a server detached meanwhile fails soon. */
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, 1000, 0), 0);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(cfg, 50, 200), 0);
  return cfg;
}

static int client_socket_of(const world *w, const struct sockaddr_storage *peer) {
  for (int i = 0; i < CLIENT_SOCKETS; i++)
    if (((const struct sockaddr_in *)peer)->sin_port == ((const struct sockaddr_in *)&w->client_addr[i])->sin_port)
      return i;
  return -1;
}

/* A datagram some stream sent, from that stream's socket: its message. */
static message check_message(world *w, const char *buf, ssize_t n, int socket_index) {
  message m;
  ck_assert_int_eq(n, sizeof m);
  memcpy(&m, buf, sizeof m);
  ck_assert_uint_lt(m.stream, STREAMS);
  ck_assert_int_eq((int)m.stream / 2, socket_index);
  ck_assert_uint_lt(m.seq, atomic_load(&w->sent[m.stream]));
  return m;
}

static void *serve(void *arg) {
  world *w = arg;
  char buf[64];
  while (!atomic_load(&w->stop)) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(w->server, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0) {
      ck_assert_msg(errno == EAGAIN || errno == EBADF, "server receive: errno %d", errno);
      if (errno == EBADF) /* detached: the chaos thread attaches it again */
        usleep(1000);
      continue;
    }
    message m = check_message(w, buf, n, client_socket_of(w, &peer));
    ck_assert_msg(atomic_exchange(&w->received[m.stream][m.seq], 1) == 0, "stream %u: %u received twice",
                  m.stream, m.seq);
    /* A failed echo is a lost acknowledgement: the peer was closed, or the
     * socket detached, meanwhile. */
    if (dtlssendto(w->server, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) < 0)
      ck_assert_msg(errno == ENOTCONN || errno == EBADF, "server echo: errno %d", errno);
  }
  return NULL;
}

/* Receives echoes on the stream's socket until the stream's own seq is
 * acknowledged or ECHO_WAIT_MS pass: 1 if it was. */
static int await_echo(world *w, unsigned int stream, uint32_t seq) {
  int socket_index = (int)stream / 2, fd = w->clients[socket_index];
  char buf[64];
  for (long give_up = now_ms() + ECHO_WAIT_MS; !atomic_load(&w->acked[stream][seq]) && now_ms() < give_up;) {
    ssize_t n = dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL);
    if (n < 0) {
      ck_assert_msg(errno == EAGAIN, "client receive: errno %d", errno);
      continue;
    }
    message m = check_message(w, buf, n, socket_index);
    ck_assert_msg(atomic_exchange(&w->acked[m.stream][m.seq], 1) == 0, "stream %u: %u echoed twice", m.stream,
                  m.seq);
  }
  return atomic_load(&w->acked[stream][seq]);
}

static void *run_stream(void *arg) {
  client_thread *c = arg;
  world *w = c->w;
  int fd = w->clients[c->stream / 2];
  while (!atomic_load(&w->stop)) {
    uint32_t seq = atomic_fetch_add(&w->sent[c->stream], 1);
    if (seq >= MAX_SEQ)
      break;
    message m = {.stream = c->stream, .seq = seq};
    /* A handshake may fail while the server is detached: the datagram is lost. */
    if (dtlssendto(fd, &m, sizeof m, 0, (struct sockaddr *)&w->server_addr, w->server_len) < 0)
      ck_assert_msg(errno == ETIMEDOUT || errno == ECONNREFUSED || errno == EAGAIN, "client send: errno %d", errno);
    else if ((!await_echo(w, c->stream, seq) || seq % CLOSE_EVERY == CLOSE_EVERY - 1) &&
             dtlsplex_close(fd, (struct sockaddr *)&w->server_addr, w->server_len) < 0)
      ck_assert_int_eq(errno, ENOENT); /* the other thread on the socket closed it first */
  }
  return NULL;
}

static void *chaos(void *arg) {
  world *w = arg;
  for (unsigned int tick = 1; !atomic_load(&w->stop); tick++) {
    usleep(CHAOS_TICK_MS * 1000);
    int victim = (int)(tick % CLIENT_SOCKETS);
    if (dtlsplex_close(w->server, (struct sockaddr *)&w->client_addr[victim], w->client_len[victim]) < 0)
      ck_assert_int_eq(errno, ENOENT); /* not connected at the moment */
    if (tick % DETACH_EVERY == 0) {
      ck_assert_int_eq(dtlsplex_detach(w->server), 0);
      usleep(CHAOS_TICK_MS * 1000);
      ck_assert_int_eq(dtlsplex_attach(w->server, w->scfg), 0);
      atomic_fetch_add(&w->detaches, 1);
    }
  }
  return NULL;
}

static int stress_seconds(void) {
  const char *env = getenv("DTLSPLEX_STRESS_SECONDS");
  int seconds = env != NULL ? atoi(env) : DEFAULT_SECONDS;
  return seconds > 0 ? seconds : DEFAULT_SECONDS;
}

START_TEST(eight_threads_lose_no_acknowledged_datagram) {
  world *w = calloc(1, sizeof *w); /* the records are too large for a stack */
  ck_assert_ptr_nonnull(w);
  w->scfg = psk_config(DTLSPLEX_ROLE_SERVER);
  w->ccfg = psk_config(DTLSPLEX_ROLE_CLIENT);
  w->server = bound_socket(AF_INET, &w->server_addr, &w->server_len);
  set_rcvtimeo(w->server, 50); /* the server threads see stop */
  ck_assert_int_eq(dtlsplex_attach(w->server, w->scfg), 0);
  for (int i = 0; i < CLIENT_SOCKETS; i++) {
    w->clients[i] = bound_socket(AF_INET, &w->client_addr[i], &w->client_len[i]);
    set_rcvtimeo(w->clients[i], 50);
    ck_assert_int_eq(dtlsplex_attach(w->clients[i], w->ccfg), 0);
  }
  pthread_t servers[SERVER_THREADS], streams[STREAMS], chaos_thread;
  client_thread cs[STREAMS];
  for (int i = 0; i < SERVER_THREADS; i++)
    ck_assert_int_eq(pthread_create(&servers[i], NULL, serve, w), 0);
  for (unsigned int i = 0; i < STREAMS; i++) {
    cs[i] = (client_thread){.w = w, .stream = i};
    ck_assert_int_eq(pthread_create(&streams[i], NULL, run_stream, &cs[i]), 0);
  }
  ck_assert_int_eq(pthread_create(&chaos_thread, NULL, chaos, w), 0);

  sleep((unsigned int)stress_seconds());
  atomic_store(&w->stop, 1);
  pthread_join(chaos_thread, NULL);
  for (int i = 0; i < STREAMS; i++)
    pthread_join(streams[i], NULL);
  for (int i = 0; i < SERVER_THREADS; i++)
    pthread_join(servers[i], NULL);

  unsigned int acked = 0;
  for (unsigned int c = 0; c < STREAMS; c++) {
    unsigned int stream_acked = 0;
    for (uint32_t seq = 0; seq < MAX_SEQ; seq++) {
      if (!atomic_load(&w->acked[c][seq]))
        continue;
      ck_assert_msg(atomic_load(&w->received[c][seq]), "stream %u: %u acknowledged, never received", c, seq);
      stream_acked++;
    }
    ck_assert_msg(stream_acked > 0, "stream %u: nothing acknowledged", c);
    acked += stream_acked;
  }
  ck_assert_uint_gt(atomic_load(&w->detaches), 0);
  fprintf(stderr, "stress: %u datagrams acknowledged, the server detached %u times\n", acked,
          atomic_load(&w->detaches));

  ck_assert_int_eq(dtlsplex_detach(w->server), 0);
  close(w->server);
  for (int i = 0; i < CLIENT_SOCKETS; i++) {
    ck_assert_int_eq(dtlsplex_detach(w->clients[i]), 0);
    close(w->clients[i]);
  }
  dtlsplex_config_free(w->scfg);
  dtlsplex_config_free(w->ccfg);
  free(w);
}
END_TEST

static Suite *stress_suite(void) {
  Suite *s = suite_create("stress");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, stress_seconds() + 60.0);
  tcase_add_test(tc, eight_threads_lose_no_acknowledged_datagram);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(stress_suite(), CK_FORK_GETENV); }
