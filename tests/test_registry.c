/* Which descriptor is which attached socket (lib/registry.c), over real
 * loopback sockets: the shapes real programs have.  A forking server's child,
 * close without detach and a reused number, a dup per worker thread, dup2
 * onto an attached number. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "dtlsplex.h"
#include "loopback.h"
#include "check_main.h"

static test_pki pki;
static dtlsplex_config *server_cfg, *client_cfg;
static echo_server srv;

static void setup(void) {
  ck_assert_int_eq(test_pki_make(&pki), 0);
  server_cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(server_cfg);
  ck_assert_int_eq(dtlsplex_config_set_certificate(server_cfg, pki.server_cert, pki.server_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(server_cfg, DTLSPLEX_ROLE_SERVER), 0);
  client_cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(client_cfg);
  ck_assert_int_eq(dtlsplex_config_set_ca(client_cfg, pki.ca, NULL), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(client_cfg, DTLSPLEX_ROLE_CLIENT), 0);
  echo_start(&srv, AF_INET, server_cfg);
}

static void teardown(void) {
  echo_stop(&srv);
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  test_pki_remove(&pki);
}

/* Sends text to dest through fd and receives its echo. */
static void exchange_with(int fd, const struct sockaddr_storage *dest, socklen_t dest_len, const char *text) {
  size_t len = strlen(text);
  ck_assert_int_eq(dtlssendto(fd, text, len, 0, (const struct sockaddr *)dest, dest_len), (ssize_t)len);
  char buf[256];
  ck_assert_int_eq(dtlsrecvfrom(fd, buf, sizeof buf, 0, NULL, NULL), (ssize_t)len);
  ck_assert_mem_eq(buf, text, len);
}

static void exchange(int fd, const char *text) { exchange_with(fd, &srv.addr, srv.addr_len, text); }

static struct dtlsplex_stats stats_of(int fd) {
  struct dtlsplex_stats st;
  ck_assert_int_eq(dtlsplex_stats(fd, &st), 0);
  return st;
}

/* Waits (bounded) until the echo server holds n sessions; returns how many it holds. */
static uint64_t server_sessions_become(uint64_t n) {
  for (long give_up = now_ms() + 3000; stats_of(srv.fd).peers != n && now_ms() < give_up;)
    usleep(5000);
  return stats_of(srv.fd).peers;
}

/* A relay between one client and the echo server that writes down the
 * (epoch, sequence number) of every record the client sends: a key stream
 * used by two processes shows as a pair seen twice. */
typedef struct relay {
  int fd;
  struct sockaddr_storage addr, client;
  socklen_t addr_len, client_len;
  atomic_int stop;
  pthread_t thread;
  uint64_t seen[1024];
  size_t n_seen;
  int repeated;
} relay;

static void note_records(relay *r, const uint8_t *d, size_t len) {
  for (size_t at = 0; at + 13 <= len; at += 13 + ((size_t)d[at + 11] << 8 | d[at + 12])) {
    uint64_t key = 0;
    for (int i = 3; i < 11; i++) /* epoch (2 bytes) and sequence number (6) */
      key = key << 8 | d[at + i];
    for (size_t i = 0; i < r->n_seen; i++)
      r->repeated |= r->seen[i] == key;
    if (r->n_seen < sizeof r->seen / sizeof *r->seen)
      r->seen[r->n_seen++] = key;
  }
}

static void *relay_loop(void *arg) {
  relay *r = arg;
  uint8_t buf[65536];
  while (!atomic_load(&r->stop)) {
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    if (poll(&p, 1, 20) <= 0)
      continue;
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = recvfrom(r->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
    if (n < 0)
      continue;
    if (from_len == srv.addr_len && memcmp(&from, &srv.addr, from_len) == 0) {
      sendto(r->fd, buf, (size_t)n, 0, (struct sockaddr *)&r->client, r->client_len);
    } else {
      r->client = from;
      r->client_len = from_len;
      note_records(r, buf, (size_t)n);
      sendto(r->fd, buf, (size_t)n, 0, (struct sockaddr *)&srv.addr, srv.addr_len);
    }
  }
  return NULL;
}

/* A forking server's child inherits an attached socket: it must not be able
 * to send with the parent's keys and record numbers (issue 10, item 1). */
START_TEST(fork_child_has_no_attachment) {
  static relay r;
  memset(&r, 0, sizeof r);
  r.fd = bound_socket(AF_INET, &r.addr, &r.addr_len);
  ck_assert_int_eq(pthread_create(&r.thread, NULL, relay_loop, &r), 0);
  int fd = attached_socket(client_cfg, 3000);
  exchange_with(fd, &r.addr, r.addr_len, "before the fork");

  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    /* Check's asserts do not reach the parent from here: an exit code does. */
    char buf[16];
    int ok = dtlssendto(fd, "child", 5, 0, (struct sockaddr *)&r.addr, r.addr_len) == -1 && errno == EBADF;
    ok = ok && dtlsrecvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL) == -1 && errno == EBADF;
    struct dtlsplex_stats st;
    ok = ok && dtlsplex_stats(fd, &st) == -1 && errno == EBADF;
    ok = ok && dtlsplex_detach(fd) == -1 && errno == EBADF;
    /* Closing it sends nothing (a close_notify would be under the parent's keys). */
    ok = ok && close(fd) == 0;
    /* A socket of its own attaches and works. */
    int own = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in loopback = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ok = ok && own >= 0 && bind(own, (struct sockaddr *)&loopback, sizeof loopback) == 0 &&
         dtlsplex_attach(own, client_cfg) == 0 &&
         dtlssendto(own, "own", 3, 0, (struct sockaddr *)&srv.addr, srv.addr_len) == 3 &&
         dtlsrecvfrom(own, buf, sizeof buf, 0, NULL, NULL) == 3;
    _exit(ok ? 0 : 1);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status));
  ck_assert_int_eq(WEXITSTATUS(status), 0);

  for (int i = 0; i < 5; i++)
    exchange_with(fd, &r.addr, r.addr_len, "after the fork");
  atomic_store(&r.stop, 1);
  pthread_join(r.thread, NULL);
  ck_assert_uint_ge(r.n_seen, 6);
  ck_assert_msg(!r.repeated, "a record number went out twice");
  ck_assert_uint_eq(stats_of(srv.fd).dropped_bad_record, 0);
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
  close(r.fd);
}
END_TEST

/* close() without detach detaches: the peers get close_notify, and the
 * number the kernel hands out next is unattached (item 2). */
START_TEST(close_detaches_and_number_is_reused_unattached) {
  int fd = attached_socket(client_cfg, 3000);
  exchange(fd, "first socket");
  ck_assert_uint_eq(server_sessions_become(1), 1);
  ck_assert_int_eq(close(fd), 0);
  ck_assert_uint_eq(server_sessions_become(0), 0); /* close_notify arrived */

  struct sockaddr_storage self;
  socklen_t self_len;
  int fd2 = bound_socket(AF_INET, &self, &self_len);
  ck_assert_int_eq(fd2, fd);
  char buf[16];
  ck_assert_int_eq(dtlssendto(fd2, "x", 1, 0, (struct sockaddr *)&srv.addr, srv.addr_len), -1);
  ck_assert_int_eq(errno, EBADF);
  ck_assert_int_eq(dtlsrecvfrom(fd2, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), -1);
  ck_assert_int_eq(errno, EBADF);
  ck_assert_int_eq(dtlsplex_attach(fd2, client_cfg), 0);
  set_rcvtimeo(fd2, 3000);
  exchange(fd2, "second socket");
  ck_assert_uint_eq(stats_of(fd2).handshakes_ok, 1); /* its own endpoint */
  ck_assert_int_eq(dtlsplex_detach(fd2), 0);
  close(fd2);
}
END_TEST

/* dup2 onto an attached number gives that socket up as close() does. */
START_TEST(dup2_onto_attached_number_detaches) {
  int fd = attached_socket(client_cfg, 3000);
  exchange(fd, "before dup2");
  int other = socket(AF_INET, SOCK_DGRAM, 0);
  ck_assert_int_ge(other, 0);
  ck_assert_int_eq(dup2(other, fd), fd);
  ck_assert_uint_eq(server_sessions_become(0), 0);
  ck_assert_int_eq(dtlssendto(fd, "x", 1, 0, (struct sockaddr *)&srv.addr, srv.addr_len), -1);
  ck_assert_int_eq(errno, EBADF);
  close(other);
  close(fd);
}
END_TEST

typedef struct blocked_call {
  int fd;
  ssize_t result;
  int error;
  long took_ms;
} blocked_call;

static void *receive_blocked(void *arg) {
  blocked_call *c = arg;
  char buf[64];
  long start = now_ms();
  c->result = dtlsrecvfrom(c->fd, buf, sizeof buf, 0, NULL, NULL);
  c->error = errno;
  c->took_ms = now_ms() - start;
  return NULL;
}

/* A thread blocked in dtlsrecvfrom returns when another closes the socket,
 * whether it waits in the kernel's receive or, connected, in poll. */
static void close_under_blocked_receiver(int connected) {
  int fd = attached_socket(client_cfg, 0);
  exchange(fd, "set up");
  if (connected)
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&srv.addr, srv.addr_len), 0);
  blocked_call c = {.fd = fd};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, receive_blocked, &c), 0);
  usleep(200 * 1000);
  ck_assert_int_eq(close(fd), 0);
  pthread_join(t, NULL);
  ck_assert_int_eq(c.result, -1);
  ck_assert_int_eq(c.error, EBADF);
  ck_assert_int_lt(c.took_ms, 1500);
}

START_TEST(close_returns_blocked_receiver) { close_under_blocked_receiver(0); }
END_TEST

START_TEST(close_returns_blocked_receiver_connected) { close_under_blocked_receiver(1); }
END_TEST

/* A dup of an attached socket is that socket: calls on either descriptor
 * reach the one endpoint, attaching it again is EEXIST, and the socket stays
 * attached until its last descriptor is closed (item 3). */
START_TEST(dup_is_the_same_socket) {
  int fd = attached_socket(client_cfg, 3000);
  int d = dup(fd);
  ck_assert_int_ge(d, 0);
  ck_assert_int_eq(dtlsplex_attach(d, client_cfg), -1);
  ck_assert_int_eq(errno, EEXIST);
  exchange(fd, "through the original");
  exchange(d, "through the dup");
  ck_assert_uint_eq(stats_of(d).handshakes_ok, 1);
  ck_assert_uint_eq(stats_of(fd).app_datagrams_out, 2);
  ck_assert_int_eq(close(fd), 0);
  exchange(d, "after the original closed");
  ck_assert_uint_eq(server_sessions_become(1), 1);
  ck_assert_int_eq(close(d), 0);
  ck_assert_uint_eq(server_sessions_become(0), 0);
}
END_TEST

/* A dup made before its first use keeps the socket attached when the
 * original is closed: the library finds it then. */
START_TEST(unused_dup_keeps_the_socket) {
  int fd = attached_socket(client_cfg, 3000);
  exchange(fd, "before the dup");
  int d = dup(fd);
  ck_assert_int_ge(d, 0);
  ck_assert_int_eq(close(fd), 0);
  exchange(d, "through the dup only");
  ck_assert_uint_eq(stats_of(d).handshakes_ok, 1); /* the same session */
  ck_assert_int_eq(close(d), 0);
  ck_assert_uint_eq(server_sessions_become(0), 0);
}
END_TEST

/* memcached's shape: one server socket, a dup() of it per worker thread,
 * each worker reading and answering on its own descriptor. */
typedef struct worker {
  int fd;
  atomic_int *stop;
  int answered;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  char buf[256];
  while (!atomic_load(w->stop)) {
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = dtlsrecvfrom(w->fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
    if (n > 0 && dtlssendto(w->fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len) == n)
      w->answered++;
  }
  return NULL;
}

START_TEST(dup_per_worker_thread) {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  int server = bound_socket(AF_INET, &addr, &addr_len);
  set_rcvtimeo(server, 50);
  ck_assert_int_eq(dtlsplex_attach(server, server_cfg), 0);
  atomic_int stop = 0;
  worker workers[2];
  pthread_t threads[2];
  for (int i = 0; i < 2; i++) {
    workers[i] = (worker){.fd = dup(server), .stop = &stop};
    ck_assert_int_ge(workers[i].fd, 0);
    ck_assert_int_eq(pthread_create(&threads[i], NULL, work, &workers[i]), 0);
  }
  int client = attached_socket(client_cfg, 3000);
  for (int i = 0; i < 20; i++) {
    char msg[32];
    snprintf(msg, sizeof msg, "request %d", i);
    exchange_with(client, &addr, addr_len, msg);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(threads[i], NULL);
  ck_assert_int_eq(workers[0].answered + workers[1].answered, 20);
  ck_assert_uint_eq(stats_of(server).dropped_no_session, 0);
  ck_assert_int_eq(dtlsplex_detach(client), 0);
  close(client);
  for (int i = 0; i < 2; i++)
    close(workers[i].fd);
  ck_assert_int_eq(dtlsplex_detach(server), 0);
  close(server);
}
END_TEST

/* connect(AF_UNSPEC) on a socket whose port the kernel chose lets the port
 * go; the next send takes a new one, which no peer knows: the sessions are
 * dropped and the next send handshakes anew (issue 10, item 5). */
START_TEST(disconnect_that_loses_the_port_handshakes_anew) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ck_assert_int_ge(fd, 0);
  set_rcvtimeo(fd, 3000);
  ck_assert_int_eq(dtlsplex_attach(fd, client_cfg), 0);
  ck_assert_int_eq(connect(fd, (struct sockaddr *)&srv.addr, srv.addr_len), 0);
  exchange(fd, "connected");
  struct sockaddr_in before, after;
  socklen_t len = sizeof before;
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&before, &len), 0);
  struct sockaddr unspec = {.sa_family = AF_UNSPEC};
  ck_assert_int_eq(connect(fd, &unspec, sizeof unspec), 0);
  exchange(fd, "disconnected");
  len = sizeof after;
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&after, &len), 0);
  ck_assert_uint_ne(after.sin_port, before.sin_port);
  ck_assert_uint_eq(stats_of(fd).handshakes_ok, 1); /* the fresh endpoint's */
  ck_assert_int_eq(dtlsplex_detach(fd), 0);
  close(fd);
}
END_TEST

int main(void) {
  Suite *s = suite_create("registry");
  TCase *tc = tcase_create("registry");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, fork_child_has_no_attachment);
  tcase_add_test(tc, close_detaches_and_number_is_reused_unattached);
  tcase_add_test(tc, dup2_onto_attached_number_detaches);
  tcase_add_test(tc, close_returns_blocked_receiver);
  tcase_add_test(tc, close_returns_blocked_receiver_connected);
  tcase_add_test(tc, dup_is_the_same_socket);
  tcase_add_test(tc, unused_dup_keeps_the_socket);
  tcase_add_test(tc, dup_per_worker_thread);
  tcase_add_test(tc, disconnect_that_loses_the_port_handshakes_anew);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
