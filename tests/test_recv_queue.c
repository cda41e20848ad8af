/* Unit tests for lib/recv_queue.c: the queue behind dtlsrecvfrom. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "recv_queue.h"
#include "check_main.h"

static dp_addr addr(uint16_t port) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&in, sizeof in, AF_INET), 0);
  return a;
}

/* One buffer, as dtlsrecvfrom gives. */
static ssize_t pop(dp_recv_queue *q, void *buf, size_t len, int peek, dp_addr *from) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  return dp_recv_queue_pop(q, &iov, 1, peek, from, NULL);
}

START_TEST(fifo_with_sources) {
  dp_recv_queue q;
  dp_recv_queue_init(&q, 10, 64);
  dp_addr a = addr(1), b = addr(2), from;
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"first", 5), 0);
  ck_assert_int_eq(dp_recv_queue_push(&q, &b, NULL, (const uint8_t *)"second", 6), 0);
  ck_assert_uint_eq(q.len, 2);
  char buf[16];
  ck_assert_int_eq(pop(&q, buf, sizeof buf, 0, &from), 5);
  ck_assert_mem_eq(buf, "first", 5);
  ck_assert_mem_eq(&from.key, &a.key, sizeof a.key);
  ck_assert_int_eq(pop(&q, buf, sizeof buf, 0, &from), 6);
  ck_assert_mem_eq(&from.key, &b.key, sizeof b.key);
  ck_assert_int_eq(pop(&q, buf, sizeof buf, 0, NULL), -EAGAIN);
  dp_recv_queue_clear(&q);
}
END_TEST

START_TEST(peek_and_truncation) {
  dp_recv_queue q;
  dp_recv_queue_init(&q, 10, 64);
  dp_addr a = addr(1);
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"0123456789", 10), 0);
  char buf[4];
  ck_assert_int_eq(pop(&q, buf, sizeof buf, 1, NULL), 10); /* full length, 4 copied */
  ck_assert_mem_eq(buf, "0123", 4);
  ck_assert_uint_eq(q.len, 1);
  ck_assert_int_eq(pop(&q, NULL, 0, 0, NULL), 10); /* the rest is discarded */
  ck_assert_uint_eq(q.len, 0);
  dp_recv_queue_clear(&q);
}
END_TEST

START_TEST(full_queue_refuses) {
  dp_recv_queue q;
  dp_recv_queue_init(&q, 3, 64);
  dp_addr a = addr(1);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"x", 1), 0);
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"x", 1), -ENOBUFS);
  ck_assert_uint_eq(q.len, 3);
  dp_recv_queue_clear(&q);
  ck_assert_uint_eq(q.len, 0);
  ck_assert_ptr_null(q.head);
}
END_TEST

/* A steady flow reuses entries instead of allocating; an entry larger than a
 * slot is not kept. */
START_TEST(entries_are_recycled) {
  dp_recv_queue q;
  dp_recv_queue_init(&q, 10, 64);
  dp_addr a = addr(1);
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"one", 3), 0);
  const dp_recv_entry *first = q.head;
  ck_assert_int_eq(pop(&q, NULL, 0, 0, NULL), 3);
  ck_assert_uint_eq(q.free_len, 1);
  for (int i = 0; i < 1000; i++) {
    ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"two", 3), 0);
    ck_assert_ptr_eq(q.head, first);
    ck_assert_int_eq(pop(&q, NULL, 0, 0, NULL), 3);
  }
  static uint8_t big[200];
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, big, sizeof big), 0);
  ck_assert_uint_eq(q.head->cap, sizeof big);
  ck_assert_int_eq(pop(&q, NULL, 0, 0, NULL), (ssize_t)sizeof big);
  ck_assert_uint_eq(q.free_len, 1); /* the big one was freed, not kept */
  dp_recv_queue_clear(&q);
  ck_assert_ptr_null(q.free);
}
END_TEST

/* dtlsrecvmsg's iovecs are filled in order, empty ones skipped, and the
 * datagram's arrival address comes back with it. */
START_TEST(scatter_and_arrival) {
  dp_recv_queue q;
  dp_recv_queue_init(&q, 10, 64);
  dp_addr a = addr(1);
  dp_local at = {.family = AF_INET, .ifindex = 7, .has_source = 1};
  at.dst.s6_addr[15] = 2;
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, &at, (const uint8_t *)"0123456789", 10), 0);
  ck_assert_int_eq(dp_recv_queue_push(&q, &a, NULL, (const uint8_t *)"ab", 2), 0);
  char one[3], two[1], three[4];
  struct iovec iov[4] = {{one, sizeof one}, {NULL, 0}, {two, sizeof two}, {three, sizeof three}};
  dp_local got;
  ck_assert_int_eq(dp_recv_queue_pop(&q, iov, 4, 0, NULL, &got), 10);
  ck_assert_mem_eq(one, "012", 3);
  ck_assert_mem_eq(two, "3", 1);
  ck_assert_mem_eq(three, "4567", 4); /* 8 and 9 did not fit */
  ck_assert_mem_eq(&got, &at, sizeof at);
  memset(three, 'x', sizeof three);
  ck_assert_int_eq(dp_recv_queue_pop(&q, iov, 4, 0, NULL, &got), 2);
  ck_assert_mem_eq(one, "ab2", 3); /* only what the datagram holds is written */
  ck_assert_mem_eq(three, "xxxx", 4);
  ck_assert_int_eq(got.family, 0); /* arrival not known */
  ck_assert_int_eq(got.has_source, 0);
  dp_recv_queue_clear(&q);
}
END_TEST

int main(void) {
  Suite *s = suite_create("recv_queue");
  TCase *tc = tcase_create("recv_queue");
  tcase_add_test(tc, fifo_with_sources);
  tcase_add_test(tc, peek_and_truncation);
  tcase_add_test(tc, full_queue_refuses);
  tcase_add_test(tc, entries_are_recycled);
  tcase_add_test(tc, scatter_and_arrival);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
