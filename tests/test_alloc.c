/* Allocation failure at the socket calls (issue 15): every allocation of
 * dtlsplex_attach, of data both ways, and of dtlsplex_detach, failed in
 * turn (see alloc_fail.h; handshakes and the buffers' reload after the idle
 * release are in test_alloc_core).  A call that fails says ENOMEM, a call
 * that succeeds did its work, and the other peers and sockets go on
 * working.  Each run starts from nothing and ends with everything freed.
 * One thread drives every socket, non-blocking, over loopback. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "alloc_fixture.h"
#include "loopback.h"

#define WAIT_MS 3000 /* for a datagram over loopback, handshake included */

/* One socket of a run. */
typedef struct end {
  int fd;
  struct sockaddr_storage addr;
  socklen_t len;
} end;

/* Every socket of the run, attached or not, for the I/O loop. */
static struct pollfd open_fds[8];
static nfds_t n_open;

/* A socket on loopback, attached with cfg unless it is NULL. */
static void open_end(end *e, dtlsplex_config *cfg) {
  e->fd = bound_socket(AF_INET, &e->addr, &e->len);
  if (cfg != NULL)
    ck_assert_int_eq(dtlsplex_attach(e->fd, cfg), 0);
  ck_assert_uint_lt(n_open, sizeof open_fds / sizeof *open_fds);
  open_fds[n_open++] = (struct pollfd){.fd = e->fd, .events = POLLIN};
}

/* Closing detaches (see dtlsplex_attach). */
static void close_ends(end *ends, size_t n) {
  for (size_t i = 0; i < n; i++)
    close(ends[i].fd);
  n_open = 0;
}

static ssize_t send_text(const end *from, const end *to, const char *text, int flags) {
  return dtlssendto(from->fd, text, strlen(text), flags | MSG_DONTWAIT, (const struct sockaddr *)&to->addr, to->len);
}

/* Runs every socket until `at` has a datagram for the program, or WAIT_MS
 * have passed: dtlsrecvfrom's result, its text in buf (NUL-terminated). */
static ssize_t receive_at(const end *at, char *buf, size_t len) {
  long deadline = now_ms() + WAIT_MS;
  for (;;) {
    for (nfds_t i = 0; i < n_open; i++)
      if (open_fds[i].fd != at->fd)
        dtlsplex_process(open_fds[i].fd);
    ssize_t n = dtlsrecvfrom(at->fd, buf, len - 1, MSG_DONTWAIT, NULL, NULL);
    if (n >= 0)
      buf[n] = '\0';
    if (n >= 0 || errno != EAGAIN || now_ms() >= deadline)
      return n;
    poll(open_fds, n_open, 5);
  }
}

/* from sends text to `to`, which receives it, nothing failing. */
static void deliver_ok(const end *from, const end *to, const char *text) {
  char buf[64];
  ck_assert_int_eq(send_text(from, to, text, 0), (ssize_t)strlen(text));
  ck_assert_int_eq(receive_at(to, buf, sizeof buf), (ssize_t)strlen(text));
  ck_assert_str_eq(buf, text);
}

/* A handshake (the first send starts it) and data both ways. */
static void exchange_ok(const end *client, const end *server) {
  deliver_ok(client, server, "ping");
  deliver_ok(server, client, "pong");
}

static void attach(unsigned long nth, void *arg) {
  (void)arg;
  /* A new configuration each run: the work of its first attach is counted too. */
  dtlsplex_config *server_cfg = alloc_config(1), *client_cfg = alloc_config(0);
  end ends[4], *server = &ends[0], *client = &ends[1], *other_server = &ends[2], *other_client = &ends[3];
  dtlsplex_config *other_cfg = alloc_config(1);
  open_end(other_server, other_cfg);
  open_end(other_client, client_cfg);
  exchange_ok(other_client, other_server);
  open_end(server, NULL);
  open_end(client, client_cfg);
  alloc_fail_count(nth);
  int r = dtlsplex_attach(server->fd, server_cfg), err = errno;
  alloc_fail_stop();
  if (r != 0) {
    ck_assert_msg(err == ENOMEM, "allocation %lu failed: attach said %s", nth, strerror(err));
    ck_assert_int_eq(dtlsplex_pending(server->fd), -1);
    ck_assert_int_eq(errno, EBADF);
  } else {
    exchange_ok(client, server); /* attached, it serves */
  }
  exchange_ok(other_client, other_server);
  close_ends(ends, 4);
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
  dtlsplex_config_free(other_cfg);
}

/* `at` receives the texts sent to it (n of them, each different), in any
 * order, but for one it may have lost for want of memory: it says ENOMEM
 * then.  Nothing else arrives. */
static void expect_arrivals(const end *at, const char *const *texts, int n, unsigned long nth) {
  int seen[4] = {0}, got = 0, lost = 0;
  char buf[64];
  while (got + lost < n) {
    if (receive_at(at, buf, sizeof buf) < 0) {
      alloc_fail_assert(errno == ENOMEM && !lost, "allocation %lu failed: %d of %d datagrams received, then %s",
                        nth, got, n, strerror(errno));
      lost = 1;
      continue;
    }
    int i = 0;
    while (i < n && (seen[i] || strcmp(buf, texts[i]) != 0))
      i++;
    alloc_fail_assert(i < n, "allocation %lu failed: received %s, not sent", nth, buf);
    seen[i] = 1;
    got++;
  }
}

/* from sends each text, the first ("ping") in two parts if cork_first:
 * "pi" corked (MSG_MORE), then "ng".  Every send succeeds or fails with
 * ENOMEM.  Returns how many datagrams went, their texts in sent. */
static int send_all(const end *from, const end *to, const char *const *texts, int n, int cork_first,
                    const char **sent, unsigned long nth) {
  int count = 0;
  for (int i = 0; i < n; i++) {
    const char *text = texts[i], *rest = text;
    if (i == 0 && cork_first) {
      ssize_t r = send_text(from, to, "pi", MSG_MORE);
      alloc_fail_assert(r == 2 || (r == -1 && errno == ENOMEM), "allocation %lu failed: corking returned %zd (%s)",
                        nth, r, strerror(errno));
      rest = text + 2;
      if (r < 0)
        text = rest; /* the rest goes alone */
    }
    ssize_t r = send_text(from, to, rest, 0);
    alloc_fail_assert(r == (ssize_t)strlen(rest) || (r == -1 && errno == ENOMEM),
                      "allocation %lu failed: a send returned %zd (%s)", nth, r, strerror(errno));
    if (r >= 0)
      sent[count++] = text;
  }
  return count;
}

/* Data both ways between established peers, two datagrams each way, so
 * that the receiver queues more than it keeps room for; the client corks
 * its first (MSG_MORE). */
static void data(unsigned long nth, void *arg) {
  (void)arg;
  dtlsplex_config *server_cfg = alloc_config(1), *client_cfg = alloc_config(0);
  end ends[3], *server = &ends[0], *client = &ends[1], *other_client = &ends[2];
  open_end(server, server_cfg);
  open_end(client, client_cfg);
  open_end(other_client, client_cfg);
  exchange_ok(client, server);
  exchange_ok(other_client, server);
  static const char *const up[] = {"ping", "second"}, *const down[] = {"pong", "again"};
  const char *sent_up[2], *sent_down[2];
  alloc_fail_count(nth);
  int n_up = send_all(client, server, up, 2, 1, sent_up, nth);
  int n_down = send_all(server, client, down, 2, 0, sent_down, nth);
  expect_arrivals(server, sent_up, n_up, nth);
  expect_arrivals(client, sent_down, n_down, nth);
  alloc_fail_stop();
  exchange_ok(other_client, server);
  exchange_ok(client, server);
  close_ends(ends, 3);
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
}

static void detach(unsigned long nth, void *arg) {
  (void)arg;
  dtlsplex_config *server_cfg = alloc_config(1), *client_cfg = alloc_config(0);
  end ends[4], *server = &ends[0], *client = &ends[1], *other_server = &ends[2], *other_client = &ends[3];
  open_end(server, server_cfg);
  open_end(client, client_cfg);
  open_end(other_server, server_cfg);
  open_end(other_client, client_cfg);
  exchange_ok(client, server);
  exchange_ok(other_client, other_server);
  alloc_fail_count(nth);
  int r = dtlsplex_detach(server->fd);
  alloc_fail_stop();
  ck_assert_int_eq(r, 0);
  ck_assert_int_eq(dtlsplex_pending(server->fd), -1);
  ck_assert_int_eq(errno, EBADF);
  exchange_ok(other_client, other_server);
  close_ends(ends, 4);
  dtlsplex_config_free(server_cfg);
  dtlsplex_config_free(client_cfg);
}

START_TEST(attach_allocations) { ck_assert_uint_gt(alloc_fail_sweep("attach", attach, NULL), 0); }
END_TEST

START_TEST(data_allocations) { ck_assert_uint_gt(alloc_fail_sweep("data both ways", data, NULL), 0); }
END_TEST

START_TEST(detach_allocations) { alloc_fail_sweep("detach", detach, NULL); }
END_TEST

int main(void) {
  const TTest *const tests[] = {attach_allocations, data_allocations, detach_allocations};
  return alloc_tests_main("alloc", tests, sizeof tests / sizeof *tests);
}
