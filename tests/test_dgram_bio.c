/* Unit tests for lib/dgram_bio.c: the per-peer datagram BIO. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/bio.h>

#include "dgram_bio.h"

/* A send function that records its calls. */
typedef struct fake_send {
  int calls;
  uint8_t last[4096];
  size_t last_len;
  dp_addr last_to;
  dp_local last_source;
  void *last_arg;
  int ret; /* what to return: 0, -EMSGSIZE, -EAGAIN... */
} fake_send;

static int fake_send_fn(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len) {
  fake_send *f = arg;
  f->calls++;
  f->last_arg = arg;
  f->last_len = len;
  ck_assert_uint_le(len, sizeof f->last);
  memcpy(f->last, data, len);
  f->last_to = *to;
  f->last_source = *source;
  return f->ret;
}

typedef struct fixture {
  fake_send fs;
  dp_bio_io io;
  BIO *bio;
} fixture;

static void fixture_init_addr(fixture *fx, const struct sockaddr *sa, socklen_t len, int family,
                              unsigned int mtu) {
  memset(fx, 0, sizeof *fx);
  ck_assert_int_eq(dp_addr_from_sockaddr(&fx->io.peer, sa, len, family), 0);
  fx->io.mtu = mtu;
  fx->io.send = fake_send_fn;
  fx->io.send_arg = &fx->fs;
  fx->bio = dp_bio_new(&fx->io);
  ck_assert_ptr_nonnull(fx->bio);
}

static void fixture_init_v4(fixture *fx, unsigned int mtu) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(4433);
  ck_assert_int_eq(inet_pton(AF_INET, "192.0.2.10", &sin.sin_addr), 1);
  fixture_init_addr(fx, (struct sockaddr *)&sin, sizeof sin, AF_INET, mtu);
}

static void fixture_init_v6(fixture *fx, unsigned int mtu) {
  struct sockaddr_in6 sin6;
  memset(&sin6, 0, sizeof sin6);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(5684);
  ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::abcd", &sin6.sin6_addr), 1);
  fixture_init_addr(fx, (struct sockaddr *)&sin6, sizeof sin6, AF_INET6, mtu);
}

static void fixture_free(fixture *fx) {
  BIO_free(fx->bio);
  fx->bio = NULL;
}

/* ---- writes ----------------------------------------------------------- */

START_TEST(test_write_is_one_send) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  uint8_t data[300];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 7 + 3);
  fx.io.local = (dp_local){.family = AF_INET, .has_source = 1, .ifindex = 3, .source_ifindex = 0};
  fx.io.local.source.s6_addr[15] = 9;

  ck_assert_int_eq(BIO_write(fx.bio, data, (int)sizeof data), (int)sizeof data);
  ck_assert_mem_eq(&fx.fs.last_source, &fx.io.local, sizeof fx.io.local); /* leaves from the session's address */
  ck_assert_int_eq(fx.fs.calls, 1);
  ck_assert_uint_eq(fx.fs.last_len, sizeof data);
  ck_assert_mem_eq(fx.fs.last, data, sizeof data);
  ck_assert_ptr_eq(fx.fs.last_arg, &fx.fs);
  ck_assert_mem_eq(&fx.fs.last_to.key, &fx.io.peer.key, sizeof fx.io.peer.key);
  ck_assert_int_eq(fx.fs.last_to.len, fx.io.peer.len);
  ck_assert_mem_eq(&fx.fs.last_to.u.in4, &fx.io.peer.u.in4, sizeof fx.io.peer.u.in4);
  ck_assert_int_eq(fx.io.last_send_error, 0);
  ck_assert_int_eq(BIO_should_retry(fx.bio), 0);

  /* A second write is a second datagram, not appended to the first. */
  const uint8_t small[5] = {0xde, 0xad, 0xbe, 0xef, 0x01};
  ck_assert_int_eq(BIO_write(fx.bio, small, (int)sizeof small), (int)sizeof small);
  ck_assert_int_eq(fx.fs.calls, 2);
  ck_assert_uint_eq(fx.fs.last_len, sizeof small);
  ck_assert_mem_eq(fx.fs.last, small, sizeof small);
  /* Nothing is buffered: a flush sends nothing more. */
  ck_assert_int_eq(BIO_flush(fx.bio), 1);
  ck_assert_int_eq(fx.fs.calls, 2);
  fixture_free(&fx);
}
END_TEST

/* With an assembly buffer, writes coalesce into one datagram until the MTU
 * would be exceeded or the owner flushes (a retransmitted flight leaves as
 * few datagrams as fit). */
/* A write of several records over the MTU (libssl's buffered flight) is
 * cut between records into datagrams within the MTU, in order. */
START_TEST(test_write_over_mtu_cut_between_records) {
  fixture fx;
  fixture_init_v4(&fx, 256);
  uint8_t flight[191 + 14 + 61];
  size_t lens[3] = {191, 14, 61}, at = 0;
  for (int r = 0; r < 3; r++) {
    memset(flight + at, 'a' + r, lens[r]);
    flight[at + 11] = (uint8_t)((lens[r] - 13) >> 8);
    flight[at + 12] = (uint8_t)(lens[r] - 13);
    at += lens[r];
  }
  ck_assert_int_eq(BIO_write(fx.bio, flight, (int)sizeof flight), (int)sizeof flight);
  dp_bio_io_flush(&fx.io);
  ck_assert_int_eq(fx.fs.calls, 2);
  ck_assert_uint_eq(fx.fs.last_len, 61); /* the last record alone: 205 + 61 > 256 */
  ck_assert_mem_eq(fx.fs.last, flight + 205, 61);
  /* Not whole records: sent as written, the MTU notwithstanding. */
  fx.fs.calls = 0;
  uint8_t junk[300] = {0};
  junk[11] = 0xff;
  ck_assert_int_eq(BIO_write(fx.bio, junk, (int)sizeof junk), (int)sizeof junk);
  ck_assert_int_eq(fx.fs.calls, 1);
  ck_assert_uint_eq(fx.fs.last_len, sizeof junk);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_writes_coalesce_up_to_mtu) {
  fixture fx;
  fixture_init_v4(&fx, 500);
  static dp_outbuf out;
  out.len = 0;
  fx.io.out = &out;
  uint8_t a[200], b[250], c[100];
  memset(a, 'a', sizeof a);
  memset(b, 'b', sizeof b);
  memset(c, 'c', sizeof c);
  ck_assert_int_eq(BIO_write(fx.bio, a, (int)sizeof a), (int)sizeof a);
  ck_assert_int_eq(BIO_write(fx.bio, b, (int)sizeof b), (int)sizeof b);
  ck_assert_int_eq(fx.fs.calls, 0); /* 450 bytes fit in 500: held */
  ck_assert_int_eq(BIO_write(fx.bio, c, (int)sizeof c), (int)sizeof c);
  ck_assert_int_eq(fx.fs.calls, 1); /* 550 would not: the first two went */
  ck_assert_uint_eq(fx.fs.last_len, 450);
  ck_assert_mem_eq(fx.fs.last, a, sizeof a);
  ck_assert_mem_eq(fx.fs.last + sizeof a, b, sizeof b);
  ck_assert_int_eq(BIO_flush(fx.bio), 1); /* libssl's flush does not split flights */
  ck_assert_int_eq(fx.fs.calls, 1);
  dp_bio_io_flush(&fx.io);
  ck_assert_int_eq(fx.fs.calls, 2);
  ck_assert_uint_eq(fx.fs.last_len, sizeof c);
  dp_bio_io_flush(&fx.io); /* nothing left */
  ck_assert_int_eq(fx.fs.calls, 2);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_write_to_v6_peer) {
  fixture fx;
  fixture_init_v6(&fx, 1400);
  const uint8_t data[3] = {1, 2, 3};
  ck_assert_int_eq(BIO_write(fx.bio, data, 3), 3);
  ck_assert_int_eq(fx.fs.calls, 1);
  ck_assert_int_eq(fx.fs.last_to.u.in6.sin6_family, AF_INET6);
  ck_assert_uint_eq(fx.fs.last_to.u.in6.sin6_port, htons(5684));
  ck_assert_mem_eq(&fx.fs.last_to.u.in6.sin6_addr, &fx.io.peer.u.in6.sin6_addr, 16);
  ck_assert_int_eq(fx.fs.last_to.len, (socklen_t)sizeof(struct sockaddr_in6));
  fixture_free(&fx);
}
END_TEST

START_TEST(test_write_send_failure_still_returns_len) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  uint8_t data[100];
  memset(data, 0x42, sizeof data);

  fx.fs.ret = -EAGAIN;
  ck_assert_int_eq(BIO_write(fx.bio, data, (int)sizeof data), (int)sizeof data);
  ck_assert_int_eq(fx.fs.calls, 1);
  ck_assert_mem_eq(fx.fs.last, data, sizeof data);
  ck_assert_int_eq(fx.io.last_send_error, -EAGAIN);
  ck_assert_int_eq(BIO_should_retry(fx.bio), 0); /* lost, not retried */
  ck_assert_int_eq(BIO_ctrl(fx.bio, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);

  fx.fs.ret = -EMSGSIZE;
  ck_assert_int_eq(BIO_write(fx.bio, data, (int)sizeof data), (int)sizeof data);
  ck_assert_int_eq(fx.fs.calls, 2);
  ck_assert_int_eq(fx.io.last_send_error, -EMSGSIZE);
  ck_assert_int_eq(BIO_should_retry(fx.bio), 0);

  /* A later successful write clears the error. */
  fx.fs.ret = 0;
  ck_assert_int_eq(BIO_write(fx.bio, data, 10), 10);
  ck_assert_int_eq(fx.fs.calls, 3);
  ck_assert_uint_eq(fx.fs.last_len, 10);
  ck_assert_int_eq(fx.io.last_send_error, 0);
  fixture_free(&fx);
}
END_TEST

/* ---- ctrl ------------------------------------------------------------- */

START_TEST(test_ctrl_answers) {
  fixture fx;
  fixture_init_v4(&fx, 1234);
  BIO *b = fx.bio;
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_FLUSH, 0, NULL), 1);
  ck_assert_int_eq(BIO_flush(b), 1);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_WPENDING, 0, NULL), 0);
  ck_assert_int_eq(BIO_wpending(b), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_PENDING, 0, NULL), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_EOF, 0, NULL), 0);
  ck_assert_int_eq(BIO_eof(b), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_PUSH, 0, NULL), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_POP, 0, NULL), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_GET_KTLS_SEND, 0, NULL), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_GET_KTLS_RECV, 0, NULL), 0);

  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_QUERY_MTU, 0, NULL), 1234);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_GET_FALLBACK_MTU, 0, NULL), 1234);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_GET_MTU_OVERHEAD, 0, NULL), 0);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_SET_MTU, 1100, NULL), 1100);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_SET_MTU, 576, NULL), 576);
  /* The MTU follows the configuration, not earlier SET_MTU calls. */
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_QUERY_MTU, 0, NULL), 1234);
  fx.io.mtu = 1500;
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_QUERY_MTU, 0, NULL), 1500);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_GET_FALLBACK_MTU, 0, NULL), 1500);

  /* None of these sends anything. */
  ck_assert_int_eq(fx.fs.calls, 0);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_ctrl_mtu_exceeded_once_after_emsgsize) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  BIO *b = fx.bio;
  const uint8_t data[50] = {0};
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);
  ck_assert_int_eq(BIO_write(b, data, 50), 50);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);

  fx.fs.ret = -EMSGSIZE;
  ck_assert_int_eq(BIO_write(b, data, 50), 50);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 1);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0); /* only once */
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);

  /* Each EMSGSIZE write arms it again. */
  ck_assert_int_eq(BIO_write(b, data, 50), 50);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 1);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);

  /* Other errors do not. */
  fx.fs.ret = -EAGAIN;
  ck_assert_int_eq(BIO_write(b, data, 50), 50);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);
  fx.fs.ret = -ENOBUFS;
  ck_assert_int_eq(BIO_write(b, data, 50), 50);
  ck_assert_int_eq(BIO_ctrl(b, BIO_CTRL_DGRAM_MTU_EXCEEDED, 0, NULL), 0);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_ctrl_get_peer_v4) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  BIO_ADDR *ba = BIO_ADDR_new();
  ck_assert_ptr_nonnull(ba);
  ck_assert_int_eq(BIO_ctrl(fx.bio, BIO_CTRL_DGRAM_GET_PEER, 0, ba), 1);
  ck_assert_int_eq(BIO_ADDR_family(ba), AF_INET);
  ck_assert_uint_eq(BIO_ADDR_rawport(ba), htons(4433));
  unsigned char raw[16];
  size_t raw_len = sizeof raw;
  ck_assert_int_eq(BIO_ADDR_rawaddress(ba, raw, &raw_len), 1);
  ck_assert_uint_eq(raw_len, 4);
  static const unsigned char want[4] = {192, 0, 2, 10};
  ck_assert_mem_eq(raw, want, 4);
  /* Also through the dgram macro, as DTLSv1_listen uses it. */
  BIO_ADDR *ba2 = BIO_ADDR_new();
  ck_assert_ptr_nonnull(ba2);
  ck_assert_int_gt(BIO_dgram_get_peer(fx.bio, ba2), 0);
  ck_assert_uint_eq(BIO_ADDR_rawport(ba2), htons(4433));
  BIO_ADDR_free(ba2);
  BIO_ADDR_free(ba);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_ctrl_get_peer_v6) {
  fixture fx;
  fixture_init_v6(&fx, 1200);
  BIO_ADDR *ba = BIO_ADDR_new();
  ck_assert_ptr_nonnull(ba);
  ck_assert_int_eq(BIO_ctrl(fx.bio, BIO_CTRL_DGRAM_GET_PEER, 0, ba), 1);
  ck_assert_int_eq(BIO_ADDR_family(ba), AF_INET6);
  ck_assert_uint_eq(BIO_ADDR_rawport(ba), htons(5684));
  unsigned char raw[16];
  size_t raw_len = sizeof raw;
  ck_assert_int_eq(BIO_ADDR_rawaddress(ba, raw, &raw_len), 1);
  ck_assert_uint_eq(raw_len, 16);
  struct in6_addr want;
  ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::abcd", &want), 1);
  ck_assert_mem_eq(raw, &want, 16);
  BIO_ADDR_free(ba);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_ctrl_get_peer_v4_on_v6_socket) {
  /* An IPv4 peer on a dual-stack socket is reported as its mapped address. */
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(1111);
  ck_assert_int_eq(inet_pton(AF_INET, "198.51.100.1", &sin.sin_addr), 1);
  fixture fx;
  fixture_init_addr(&fx, (struct sockaddr *)&sin, sizeof sin, AF_INET6, 1200);
  BIO_ADDR *ba = BIO_ADDR_new();
  ck_assert_ptr_nonnull(ba);
  ck_assert_int_eq(BIO_ctrl(fx.bio, BIO_CTRL_DGRAM_GET_PEER, 0, ba), 1);
  ck_assert_int_eq(BIO_ADDR_family(ba), AF_INET6);
  ck_assert_uint_eq(BIO_ADDR_rawport(ba), htons(1111));
  unsigned char raw[16];
  size_t raw_len = sizeof raw;
  ck_assert_int_eq(BIO_ADDR_rawaddress(ba, raw, &raw_len), 1);
  ck_assert_uint_eq(raw_len, 16);
  static const unsigned char want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 1};
  ck_assert_mem_eq(raw, want, 16);
  /* A NULL BIO_ADDR is refused, not dereferenced. */
  ck_assert_int_eq(BIO_ctrl(fx.bio, BIO_CTRL_DGRAM_GET_PEER, 0, NULL), 0);
  BIO_ADDR_free(ba);
  fixture_free(&fx);
}
END_TEST

/* ---- reads ------------------------------------------------------------ */

START_TEST(test_read_nothing_in_hand_retries) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  uint8_t buf[64];
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), -1);
  ck_assert_int_ne(BIO_should_retry(fx.bio), 0);
  ck_assert_int_ne(BIO_should_read(fx.bio), 0);
  ck_assert_int_eq(BIO_should_write(fx.bio), 0);
  /* Still so on a second try. */
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), -1);
  ck_assert_int_ne(BIO_should_retry(fx.bio), 0);
  ck_assert_int_ne(BIO_should_read(fx.bio), 0);
  ck_assert_int_eq(fx.fs.calls, 0);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_read_whole_datagram_once) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  uint8_t dgram[200];
  for (size_t i = 0; i < sizeof dgram; i++)
    dgram[i] = (uint8_t)(255 - i);
  dp_bio_io_feed(&fx.io, dgram, sizeof dgram);

  uint8_t buf[1500];
  memset(buf, 0, sizeof buf);
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), (int)sizeof dgram);
  ck_assert_mem_eq(buf, dgram, sizeof dgram);
  ck_assert_int_eq(BIO_should_retry(fx.bio), 0);

  /* The datagram is consumed: the next read retries. */
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), -1);
  ck_assert_int_ne(BIO_should_retry(fx.bio), 0);
  ck_assert_int_ne(BIO_should_read(fx.bio), 0);

  /* A new datagram after that is read whole again, and clears the retry. */
  const uint8_t second[4] = {9, 8, 7, 6};
  dp_bio_io_feed(&fx.io, second, sizeof second);
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), 4);
  ck_assert_mem_eq(buf, second, 4);
  ck_assert_int_eq(BIO_should_retry(fx.bio), 0);
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), -1);
  fixture_free(&fx);
}
END_TEST

START_TEST(test_read_short_buffer_truncates_and_drops) {
  fixture fx;
  fixture_init_v4(&fx, 1200);
  uint8_t dgram[100];
  for (size_t i = 0; i < sizeof dgram; i++)
    dgram[i] = (uint8_t)i;
  dp_bio_io_feed(&fx.io, dgram, sizeof dgram);

  uint8_t buf[64];
  memset(buf, 0xee, sizeof buf);
  ck_assert_int_eq(BIO_read(fx.bio, buf, 30), 30);
  ck_assert_mem_eq(buf, dgram, 30);
  for (size_t i = 30; i < sizeof buf; i++)
    ck_assert_uint_eq(buf[i], 0xee); /* not written past the asked length */

  /* The other 70 bytes are gone, not returned by the next read. */
  ck_assert_int_eq(BIO_read(fx.bio, buf, (int)sizeof buf), -1);
  ck_assert_int_ne(BIO_should_retry(fx.bio), 0);
  ck_assert_int_ne(BIO_should_read(fx.bio), 0);
  fixture_free(&fx);
}
END_TEST

static Suite *dgram_bio_suite(void) {
  Suite *s = suite_create("dgram_bio");
  TCase *tc = tcase_create("write");
  tcase_add_test(tc, test_write_is_one_send);
  tcase_add_test(tc, test_writes_coalesce_up_to_mtu);
  tcase_add_test(tc, test_write_over_mtu_cut_between_records);
  tcase_add_test(tc, test_write_to_v6_peer);
  tcase_add_test(tc, test_write_send_failure_still_returns_len);
  suite_add_tcase(s, tc);

  tc = tcase_create("ctrl");
  tcase_add_test(tc, test_ctrl_answers);
  tcase_add_test(tc, test_ctrl_mtu_exceeded_once_after_emsgsize);
  tcase_add_test(tc, test_ctrl_get_peer_v4);
  tcase_add_test(tc, test_ctrl_get_peer_v6);
  tcase_add_test(tc, test_ctrl_get_peer_v4_on_v6_socket);
  suite_add_tcase(s, tc);

  tc = tcase_create("read");
  tcase_add_test(tc, test_read_nothing_in_hand_retries);
  tcase_add_test(tc, test_read_whole_datagram_once);
  tcase_add_test(tc, test_read_short_buffer_truncates_and_drops);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(dgram_bio_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
