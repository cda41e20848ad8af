/* Threads waiting on one socket must each get the wake-ups meant for them.
 *
 * A blocking dtlssendto waiting for its handshake reads the socket for
 * everyone: the application data it finds is queued in the library, where
 * the threads blocked in dtlsrecvfrom cannot see it from poll.  It must tell
 * them before it waits again, and every one of them must get that wake-up,
 * including one caught between releasing the lock and entering poll while
 * another waiter takes the wake-up for itself. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dtlsplex.h"
#include "loopback.h"
#include "check_main.h"

#define RECEIVERS 2
#define ROUNDS 2000
#define ROUNDS_SECONDS 5        /* fewer rounds on a slow machine */
#define ECHO_WITHIN_MS 1000     /* a missed wake-up waits for a timer: 2 s and more */
#define HANDSHAKE_TIMEOUT_MS 60000
#define RETRANSMIT_MS 20000     /* no retransmission timer wakes anyone meanwhile */

static const unsigned char psk_key[16] = {7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static dtlsplex_config *psk_config(int role) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  ck_assert_ptr_nonnull(cfg);
  ck_assert_int_eq(dtlsplex_config_set_psk(cfg, "waiter", psk_key, sizeof psk_key), 0);
  ck_assert_int_eq(dtlsplex_config_set_role(cfg, role), 0);
  ck_assert_int_eq(dtlsplex_config_set_timeouts(cfg, HANDSHAKE_TIMEOUT_MS, 0), 0);
  ck_assert_int_eq(dtlsplex_config_set_retransmit(cfg, RETRANSMIT_MS, RETRANSMIT_MS), 0);
  return cfg;
}

typedef struct shared {
  int fd;
  atomic_int received; /* echoes the receivers got */
} shared;

typedef struct handshaker {
  int fd;
  struct sockaddr_storage to;
  socklen_t to_len;
  int err;
} handshaker;

static void *receive_echoes(void *arg) {
  shared *sh = arg;
  char buf[64];
  while (dtlsrecvfrom(sh->fd, buf, sizeof buf, 0, NULL, NULL) >= 0)
    atomic_fetch_add(&sh->received, 1);
  ck_assert_int_eq(errno, EBADF); /* the detach at the end */
  return NULL;
}

/* A handshake with a peer that never answers: the call waits, reading the
 * socket, until the detach at the end. */
static void *handshake_forever(void *arg) {
  handshaker *h = arg;
  ck_assert_int_eq(dtlssendto(h->fd, "x", 1, 0, (struct sockaddr *)&h->to, h->to_len), -1);
  h->err = errno;
  return NULL;
}

static int peer_state(int fd, const struct sockaddr_storage *peer, socklen_t len) {
  struct dtlsplex_peer_info info;
  return dtlsplex_peer_info(fd, (const struct sockaddr *)peer, len, &info) == 0 ? info.state : -1;
}

START_TEST(receivers_wake_for_data_a_handshaking_sender_read) {
  dtlsplex_config *scfg = psk_config(DTLSPLEX_ROLE_SERVER), *ccfg = psk_config(DTLSPLEX_ROLE_CLIENT);
  echo_server srv;
  echo_start(&srv, AF_INET, scfg);
  shared sh = {.fd = attached_socket(ccfg, 0)}; /* no SO_RCVTIMEO: a lost wake-up is not papered over */
  char buf[64];
  ck_assert_int_eq(dtlssendto(sh.fd, "hi", 2, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 2);
  ck_assert_int_eq(dtlsrecvfrom(sh.fd, buf, sizeof buf, 0, NULL, NULL), 2);

  handshaker h = {.fd = sh.fd};
  int silent = bound_socket(AF_INET, &h.to, &h.to_len);
  pthread_t sender, receivers[RECEIVERS];
  ck_assert_int_eq(pthread_create(&sender, NULL, handshake_forever, &h), 0);
  for (long give_up = now_ms() + 2000; peer_state(sh.fd, &h.to, h.to_len) != DTLSPLEX_STATE_HANDSHAKING;) {
    ck_assert_msg(now_ms() < give_up, "the handshake did not start");
    usleep(1000);
  }
  for (int i = 0; i < RECEIVERS; i++)
    ck_assert_int_eq(pthread_create(&receivers[i], NULL, receive_echoes, &sh), 0);

  /* One echo for each receiver per round. */
  int sent = 0;
  long stop_at = now_ms() + ROUNDS_SECONDS * 1000L;
  for (int round = 0; round < ROUNDS && now_ms() < stop_at; round++) {
    for (int i = 0; i < RECEIVERS; i++, sent++)
      ck_assert_int_eq(dtlssendto(sh.fd, "ping", 4, 0, (struct sockaddr *)&srv.addr, srv.addr_len), 4);
    long give_up = now_ms() + ECHO_WITHIN_MS;
    while (atomic_load(&sh.received) < sent && now_ms() < give_up)
      usleep(200);
    ck_assert_msg(atomic_load(&sh.received) == sent, "round %d: %d of %d echoes received within %d ms", round,
                  atomic_load(&sh.received), sent, ECHO_WITHIN_MS);
  }

  ck_assert_int_eq(dtlsplex_detach(sh.fd), 0);
  pthread_join(sender, NULL);
  ck_assert_int_eq(h.err, EBADF);
  for (int i = 0; i < RECEIVERS; i++)
    pthread_join(receivers[i], NULL);
  close(sh.fd);
  close(silent);
  echo_stop(&srv);
  dtlsplex_config_free(scfg);
  dtlsplex_config_free(ccfg);
}
END_TEST

static Suite *waiters_suite(void) {
  Suite *s = suite_create("waiters");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, receivers_wake_for_data_a_handshaking_sender_read);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return run_suite(waiters_suite(), CK_FORK_GETENV); }
