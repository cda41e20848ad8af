/* Unit tests for lib/addr.c: address validation and normalisation, copy-out,
 * formatting, SipHash-2-4 and the per-process address hash. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <check.h>

#include "addr.h"

/* ---- helpers ---------------------------------------------------------- */

static struct sockaddr_in make_v4(const char *ip, uint16_t port) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
  return sin;
}

static struct sockaddr_in6 make_v6(const char *ip, uint16_t port, uint32_t scope_id) {
  struct sockaddr_in6 sin6;
  memset(&sin6, 0, sizeof sin6);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_scope_id = scope_id;
  ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
  return sin6;
}

/* Little-endian serialisation, to compare with the reference byte vectors. */
static void store_le64(uint8_t out[8], uint64_t v) {
  for (int i = 0; i < 8; i++)
    out[i] = (uint8_t)(v >> (8 * i));
}

/* ---- dp_addr_from_sockaddr -------------------------------------------- */

START_TEST(test_v4_and_mapped_same_key_on_v6_socket) {
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  struct sockaddr_in6 mapped = make_v6("::ffff:192.0.2.1", 4433, 0);
  dp_addr a, b;
  /* Different garbage in each so that undefined padding could not match by luck. */
  memset(&a, 0x11, sizeof a);
  memset(&b, 0xee, sizeof b);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET6), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&mapped, sizeof mapped, AF_INET6),
                   0);
  ck_assert_mem_eq(&a.key, &b.key, sizeof a.key);

  /* The key is the mapped form, port in network order, no scope, zero tail. */
  static const uint8_t want_ip[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  ck_assert_mem_eq(a.key.ip, want_ip, 16);
  ck_assert_uint_eq(a.key.port, htons(4433));
  ck_assert_uint_eq(a.key.scope_id, 0);
  ck_assert_uint_eq(a.key.zero, 0);

  /* On an AF_INET6 socket both become a sockaddr_in6 with the mapped address. */
  ck_assert_int_eq(a.len, (socklen_t)sizeof(struct sockaddr_in6));
  ck_assert_int_eq(b.len, (socklen_t)sizeof(struct sockaddr_in6));
  ck_assert_int_eq(a.u.in6.sin6_family, AF_INET6);
  ck_assert_int_eq(b.u.in6.sin6_family, AF_INET6);
  ck_assert_uint_eq(a.u.in6.sin6_port, htons(4433));
  ck_assert_mem_eq(&a.u.in6.sin6_addr, want_ip, 16);
  ck_assert_mem_eq(&b.u.in6.sin6_addr, want_ip, 16);
}
END_TEST

START_TEST(test_mapped_scope_and_flowinfo_ignored) {
  /* A mapped address carrying a scope id and flow label is still the same
   * peer as the plain IPv4 address. */
  struct sockaddr_in v4 = make_v4("198.51.100.7", 5684);
  struct sockaddr_in6 mapped = make_v6("::ffff:198.51.100.7", 5684, 7);
  mapped.sin6_flowinfo = htonl(0x12345);
  dp_addr a, b;
  memset(&a, 0x5a, sizeof a);
  memset(&b, 0xa5, sizeof b);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET6), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&mapped, sizeof mapped, AF_INET6),
                   0);
  ck_assert_mem_eq(&a.key, &b.key, sizeof a.key);
  ck_assert_uint_eq(b.key.scope_id, 0);
}
END_TEST

/* As sendto(2) on an AF_INET socket: an IPv6 address, even IPv4-mapped, is
 * EAFNOSUPPORT; AF_UNSPEC is read as AF_INET. */
START_TEST(test_v4_socket_family_rules) {
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  struct sockaddr_in6 mapped = make_v6("::ffff:192.0.2.1", 4433, 0);
  dp_addr a, b;
  memset(&a, 0x33, sizeof a);
  memset(&b, 0xcc, sizeof b);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&mapped, sizeof mapped, AF_INET),
                   -EAFNOSUPPORT);
  ck_assert_int_eq(a.len, (socklen_t)sizeof(struct sockaddr_in));
  ck_assert_int_eq(a.u.in4.sin_family, AF_INET);
  ck_assert_uint_eq(a.u.in4.sin_port, htons(4433));
  ck_assert_uint_eq(a.u.in4.sin_addr.s_addr, v4.sin_addr.s_addr);

  struct sockaddr_in unspec = v4;
  unspec.sin_family = AF_UNSPEC;
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&unspec, sizeof unspec, AF_INET), 0);
  ck_assert_mem_eq(&a.key, &b.key, sizeof a.key);
  ck_assert_int_eq(b.u.in4.sin_family, AF_INET);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&unspec, sizeof unspec, AF_INET6),
                   -EAFNOSUPPORT);
}
END_TEST

START_TEST(test_real_v6_on_v4_socket_rejected) {
  struct sockaddr_in6 v6 = make_v6("2001:db8::1", 4433, 0);
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, sizeof v6, AF_INET),
                   -EAFNOSUPPORT);
  /* Also the unspecified and loopback addresses, which are not mapped. */
  struct sockaddr_in6 lo = make_v6("::1", 4433, 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&lo, sizeof lo, AF_INET),
                   -EAFNOSUPPORT);
  /* An address that merely starts like a mapped one is not mapped. */
  struct sockaddr_in6 near = make_v6("::fffe:192.0.2.1", 4433, 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&near, sizeof near, AF_INET),
                   -EAFNOSUPPORT);
  /* The same real IPv6 address is fine on an AF_INET6 socket. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, sizeof v6, AF_INET6), 0);
}
END_TEST

START_TEST(test_unix_family_rejected) {
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  strcpy(un.sun_path, "/tmp/dtlsplex-test");
  dp_addr a;
  /* As sendto(2): an AF_INET6 socket says EINVAL, an AF_INET one EAFNOSUPPORT. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&un, sizeof un, AF_INET6), -EINVAL);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&un, sizeof un, AF_INET),
                   -EAFNOSUPPORT);
  /* A good address on a socket of an unusable family is rejected too. */
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_UNIX),
                   -EAFNOSUPPORT);
}
END_TEST

START_TEST(test_null_and_short_lengths) {
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  struct sockaddr_in6 v6 = make_v6("2001:db8::1", 4433, 0);
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(NULL, (struct sockaddr *)&v4, sizeof v4, AF_INET),
                   -EINVAL);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, NULL, sizeof v4, AF_INET), -EINVAL);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, 0, AF_INET), -EINVAL);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, 1, AF_INET), -EINVAL);
  ck_assert_int_eq(
      dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4 - 1, AF_INET), -EINVAL);
  ck_assert_int_eq(
      dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4 - 1, AF_INET6), -EINVAL);
  /* RFC 2133's 24-byte sockaddr_in6 (no scope id) and up are accepted, as
   * the kernel accepts them; 23 is short, and more than a sockaddr_storage
   * too long. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, 23, AF_INET6), -EINVAL);
  for (socklen_t len = 24; len < (socklen_t)sizeof v6; len++) {
    ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, len, AF_INET6), 0);
    ck_assert_uint_eq(a.key.scope_id, 0);
    ck_assert_uint_eq(a.u.in6.sin6_port, htons(4433));
  }
  struct sockaddr_storage big[2];
  memset(big, 0, sizeof big);
  memcpy(big, &v6, sizeof v6);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)big, sizeof big[0] + 1, AF_INET6), -EINVAL);
  /* A sockaddr_in's worth of an AF_INET6 address is too short. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6,
                                         (socklen_t)sizeof(struct sockaddr_in), AF_INET6),
                   -EINVAL);
  /* Exact lengths are accepted, and so are longer ones (sockaddr_storage). */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, sizeof v6, AF_INET6), 0);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, &v4, sizeof v4);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&ss, sizeof ss, AF_INET), 0);
  ck_assert_uint_eq(a.u.in4.sin_addr.s_addr, v4.sin_addr.s_addr);
}
END_TEST

START_TEST(test_garbage_before_call_gives_defined_key) {
  struct sockaddr_in v4 = make_v4("203.0.113.9", 1234);
  struct sockaddr_in6 v6 = make_v6("2001:db8:1:2::42", 9999, 0);
  struct sockaddr_in6 ll = make_v6("fe80::1", 5555, 3);
  const struct {
    const struct sockaddr *sa;
    socklen_t len;
    int fam;
  } cases[] = {
      {(struct sockaddr *)&v4, sizeof v4, AF_INET},
      {(struct sockaddr *)&v4, sizeof v4, AF_INET6},
      {(struct sockaddr *)&v6, sizeof v6, AF_INET6},
      {(struct sockaddr *)&ll, sizeof ll, AF_INET6},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dp_addr clean, dirty;
    memset(&clean, 0, sizeof clean);
    memset(&dirty, 0xff, sizeof dirty);
    ck_assert_int_eq(dp_addr_from_sockaddr(&clean, cases[i].sa, cases[i].len, cases[i].fam), 0);
    ck_assert_int_eq(dp_addr_from_sockaddr(&dirty, cases[i].sa, cases[i].len, cases[i].fam), 0);
    ck_assert_mem_eq(&clean.key, &dirty.key, sizeof clean.key);
    ck_assert_uint_eq(dirty.key.zero, 0);
    /* The sockaddr to send to is fully defined too. */
    ck_assert_int_eq(clean.len, dirty.len);
    ck_assert_mem_eq(&clean.u, &dirty.u, sizeof clean.u);
  }
}
END_TEST

START_TEST(test_link_local_scope_kept) {
  struct sockaddr_in6 ll3 = make_v6("fe80::1", 4433, 3);
  struct sockaddr_in6 ll4 = make_v6("fe80::1", 4433, 4);
  dp_addr a, b;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&ll3, sizeof ll3, AF_INET6), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&ll4, sizeof ll4, AF_INET6), 0);
  ck_assert_uint_eq(a.key.scope_id, 3);
  ck_assert_uint_eq(a.u.in6.sin6_scope_id, 3);
  ck_assert_uint_eq(b.key.scope_id, 4);
  ck_assert_uint_eq(b.u.in6.sin6_scope_id, 4);
  /* Same address on two interfaces: two different peers. */
  ck_assert_int_ne(memcmp(&a.key, &b.key, sizeof a.key), 0);
  ck_assert_mem_eq(&a.u.in6.sin6_addr, &ll3.sin6_addr, 16);
  ck_assert_uint_eq(a.u.in6.sin6_port, htons(4433));
  /* And a link-local address cannot be used on an AF_INET socket. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&ll3, sizeof ll3, AF_INET),
                   -EAFNOSUPPORT);
}
END_TEST

START_TEST(test_ports_and_addresses_distinguish_keys) {
  struct sockaddr_in p1 = make_v4("192.0.2.1", 4433);
  struct sockaddr_in p2 = make_v4("192.0.2.1", 4434);
  struct sockaddr_in p3 = make_v4("192.0.2.2", 4433);
  dp_addr a, b, c;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&p1, sizeof p1, AF_INET), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&p2, sizeof p2, AF_INET), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&c, (struct sockaddr *)&p3, sizeof p3, AF_INET), 0);
  ck_assert_int_ne(memcmp(&a.key, &b.key, sizeof a.key), 0);
  ck_assert_int_ne(memcmp(&a.key, &c.key, sizeof a.key), 0);
  ck_assert_int_ne(memcmp(&b.key, &c.key, sizeof a.key), 0);
}
END_TEST

/* ---- dp_addr_copy_out ------------------------------------------------- */

START_TEST(test_copy_out_full_and_truncated) {
  struct sockaddr_in6 v6 = make_v6("2001:db8::1", 4433, 0);
  dp_addr a;
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, sizeof v6, AF_INET6), 0);

  /* Enough room: whole address, *len the full length. */
  struct sockaddr_storage ss;
  memset(&ss, 0xee, sizeof ss);
  socklen_t len = sizeof ss;
  dp_addr_copy_out(&a, (struct sockaddr *)&ss, &len);
  ck_assert_int_eq(len, (socklen_t)sizeof(struct sockaddr_in6));
  ck_assert_mem_eq(&ss, &a.u.in6, sizeof(struct sockaddr_in6));
  /* Nothing written past the address. */
  const uint8_t *p = (const uint8_t *)&ss;
  for (size_t i = sizeof(struct sockaddr_in6); i < sizeof ss; i++)
    ck_assert_uint_eq(p[i], 0xee);

  /* Too little room: truncated to *len, *len set to the full length. */
  uint8_t buf[32];
  memset(buf, 0xee, sizeof buf);
  len = 6;
  dp_addr_copy_out(&a, (struct sockaddr *)buf, &len);
  ck_assert_int_eq(len, (socklen_t)sizeof(struct sockaddr_in6));
  ck_assert_mem_eq(buf, &a.u.in6, 6);
  for (size_t i = 6; i < sizeof buf; i++)
    ck_assert_uint_eq(buf[i], 0xee);

  /* Zero room: nothing written, length still reported. */
  memset(buf, 0xee, sizeof buf);
  len = 0;
  dp_addr_copy_out(&a, (struct sockaddr *)buf, &len);
  ck_assert_int_eq(len, (socklen_t)sizeof(struct sockaddr_in6));
  for (size_t i = 0; i < sizeof buf; i++)
    ck_assert_uint_eq(buf[i], 0xee);

  /* An IPv4 peer on an AF_INET socket reports a sockaddr_in's length. */
  struct sockaddr_in v4 = make_v4("192.0.2.1", 53);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET), 0);
  memset(&ss, 0xee, sizeof ss);
  len = sizeof ss;
  dp_addr_copy_out(&a, (struct sockaddr *)&ss, &len);
  ck_assert_int_eq(len, (socklen_t)sizeof(struct sockaddr_in));
  ck_assert_mem_eq(&ss, &v4, sizeof v4);

  /* NULL sockaddr or length (recvfrom with no address wanted) is harmless. */
  len = 5;
  dp_addr_copy_out(&a, NULL, &len);
  ck_assert_int_eq(len, 5);
  dp_addr_copy_out(&a, (struct sockaddr *)&ss, NULL);
}
END_TEST

/* ---- dp_addr_format --------------------------------------------------- */

START_TEST(test_format) {
  char buf[128];
  dp_addr a;
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET), 0);
  dp_addr_format(&a, buf, sizeof buf);
  ck_assert_str_eq(buf, "192.0.2.1:4433");

  /* IPv4 on an AF_INET6 socket still prints as IPv4. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET6), 0);
  dp_addr_format(&a, buf, sizeof buf);
  ck_assert_str_eq(buf, "192.0.2.1:4433");
  struct sockaddr_in6 mapped = make_v6("::ffff:10.1.2.3", 65535, 0);
  ck_assert_int_eq(
      dp_addr_from_sockaddr(&a, (struct sockaddr *)&mapped, sizeof mapped, AF_INET6), 0);
  dp_addr_format(&a, buf, sizeof buf);
  ck_assert_str_eq(buf, "10.1.2.3:65535");

  struct sockaddr_in6 v6 = make_v6("2001:db8::1", 4433, 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v6, sizeof v6, AF_INET6), 0);
  dp_addr_format(&a, buf, sizeof buf);
  ck_assert_str_eq(buf, "[2001:db8::1]:4433");

  struct sockaddr_in6 lo = make_v6("::1", 1, 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&lo, sizeof lo, AF_INET6), 0);
  dp_addr_format(&a, buf, sizeof buf);
  ck_assert_str_eq(buf, "[::1]:1");

  /* A short buffer is truncated and terminated. */
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET), 0);
  memset(buf, 'x', sizeof buf);
  dp_addr_format(&a, buf, 6);
  ck_assert_str_eq(buf, "192.0");
}
END_TEST

/* ---- SipHash ---------------------------------------------------------- */

/* From the SipHash reference implementation (github.com/veorq/SipHash,
 * vectors.h, vectors_sip64): key 00 01 .. 0f, message i bytes 00 01 .. i-1,
 * output as little-endian bytes. */
static const uint8_t ref_key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const struct {
  size_t len;
  uint8_t out[8];
} ref_vectors[] = {
    {0, {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72}},
    {7, {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab}},
    {8, {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93}},
    {15, {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1}},
};

START_TEST(test_siphash_reference_vectors) {
  uint8_t msg[64];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (uint8_t)i;
  for (size_t i = 0; i < sizeof ref_vectors / sizeof ref_vectors[0]; i++) {
    uint8_t got[8];
    store_le64(got, dp_siphash24(ref_key, msg, ref_vectors[i].len));
    ck_assert_mem_eq(got, ref_vectors[i].out, 8);
  }
  /* The same two as 64-bit values. */
  ck_assert_uint_eq(dp_siphash24(ref_key, msg, 0), UINT64_C(0x726fdb47dd0e0e31));
  ck_assert_uint_eq(dp_siphash24(ref_key, msg, 15), UINT64_C(0xa129ca6149be45e5));
  /* An empty message needs no readable data pointer beyond its length. */
  ck_assert_uint_eq(dp_siphash24(ref_key, msg + 63, 0), UINT64_C(0x726fdb47dd0e0e31));
}
END_TEST

START_TEST(test_siphash_key_matters) {
  uint8_t msg[15];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (uint8_t)i;
  uint8_t other[16];
  memcpy(other, ref_key, sizeof other);
  other[15] ^= 0x01;
  uint64_t h_ref = dp_siphash24(ref_key, msg, sizeof msg);
  uint64_t h_other = dp_siphash24(other, msg, sizeof msg);
  ck_assert_uint_ne(h_ref, h_other);
  other[15] ^= 0x01;
  other[0] ^= 0x80;
  ck_assert_uint_ne(dp_siphash24(other, msg, sizeof msg), h_ref);
  /* The length is part of the input: a trailing zero byte changes the hash. */
  uint8_t zpad[16] = {0};
  ck_assert_uint_ne(dp_siphash24(ref_key, zpad, 15), dp_siphash24(ref_key, zpad, 16));
}
END_TEST

/* ---- dp_addr_hash ----------------------------------------------------- */

START_TEST(test_addr_hash_deterministic) {
  struct sockaddr_in v4 = make_v4("192.0.2.1", 4433);
  struct sockaddr_in6 mapped = make_v6("::ffff:192.0.2.1", 4433, 0);
  dp_addr a, b;
  memset(&a, 0x77, sizeof a);
  memset(&b, 0x88, sizeof b);
  ck_assert_int_eq(dp_addr_from_sockaddr(&a, (struct sockaddr *)&v4, sizeof v4, AF_INET6), 0);
  ck_assert_int_eq(dp_addr_from_sockaddr(&b, (struct sockaddr *)&mapped, sizeof mapped, AF_INET6),
                   0);
  unsigned h1 = dp_addr_hash(&a.key, sizeof a.key);
  unsigned h2 = dp_addr_hash(&a.key, sizeof a.key);
  unsigned h3 = dp_addr_hash(&b.key, sizeof b.key);
  ck_assert_uint_eq(h1, h2);
  ck_assert_uint_eq(h1, h3); /* one peer, one hash bucket */

  /* Different keys spread: 64 ports must not all hash alike (a constant or
   * key-ignoring hash would). */
  unsigned first = 0;
  int distinct = 0;
  for (uint16_t port = 1; port <= 64; port++) {
    struct sockaddr_in p = make_v4("192.0.2.1", port);
    dp_addr c;
    ck_assert_int_eq(dp_addr_from_sockaddr(&c, (struct sockaddr *)&p, sizeof p, AF_INET), 0);
    unsigned h = dp_addr_hash(&c.key, sizeof c.key);
    ck_assert_uint_eq(h, dp_addr_hash(&c.key, sizeof c.key));
    if (port == 1)
      first = h;
    else if (h != first)
      distinct = 1;
  }
  ck_assert_int_eq(distinct, 1);

  /* The process key is secret: the hash is not SipHash under an all-zero key
   * nor under the public test key (both would be predictable). */
  static const uint8_t zero_key[16] = {0};
  int differs = 0;
  for (uint16_t port = 1; port <= 8; port++) {
    struct sockaddr_in p = make_v4("192.0.2.1", port);
    dp_addr c;
    ck_assert_int_eq(dp_addr_from_sockaddr(&c, (struct sockaddr *)&p, sizeof p, AF_INET), 0);
    unsigned h = dp_addr_hash(&c.key, sizeof c.key);
    if (h != (unsigned)dp_siphash24(zero_key, &c.key, sizeof c.key) &&
        h != (unsigned)dp_siphash24(ref_key, &c.key, sizeof c.key))
      differs = 1;
  }
  ck_assert_int_eq(differs, 1);
}
END_TEST

static Suite *addr_suite(void) {
  Suite *s = suite_create("addr");
  TCase *tc = tcase_create("from_sockaddr");
  tcase_add_test(tc, test_v4_and_mapped_same_key_on_v6_socket);
  tcase_add_test(tc, test_mapped_scope_and_flowinfo_ignored);
  tcase_add_test(tc, test_v4_socket_family_rules);
  tcase_add_test(tc, test_real_v6_on_v4_socket_rejected);
  tcase_add_test(tc, test_unix_family_rejected);
  tcase_add_test(tc, test_null_and_short_lengths);
  tcase_add_test(tc, test_garbage_before_call_gives_defined_key);
  tcase_add_test(tc, test_link_local_scope_kept);
  tcase_add_test(tc, test_ports_and_addresses_distinguish_keys);
  suite_add_tcase(s, tc);

  tc = tcase_create("copy_out_format");
  tcase_add_test(tc, test_copy_out_full_and_truncated);
  tcase_add_test(tc, test_format);
  suite_add_tcase(s, tc);

  tc = tcase_create("hash");
  tcase_add_test(tc, test_siphash_reference_vectors);
  tcase_add_test(tc, test_siphash_key_matters);
  tcase_add_test(tc, test_addr_hash_deterministic);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(addr_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
