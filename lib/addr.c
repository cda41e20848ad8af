#include "addr.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The checks are the kernel's for a UDP sendto(2), so that a call fails with
 * the errno sendto would give. */
/* IPv4 on an IPv4 socket, the case of every datagram an IPv4 server reads
 * and answers: the same result as the general path below, built directly. */
static void from_in4(dp_addr *out, const struct sockaddr *sa) {
  struct sockaddr_in in4;
  memcpy(&in4, sa, sizeof in4);
  memset(out, 0, sizeof *out);
  memcpy(out->key.ip, v4mapped_prefix, 12);
  memcpy(out->key.ip + 12, &in4.sin_addr, 4);
  out->key.port = in4.sin_port;
  out->u.in4.sin_family = AF_INET;
  out->u.in4.sin_port = in4.sin_port;
  out->u.in4.sin_addr = in4.sin_addr;
  out->len = sizeof out->u.in4;
}

int dp_addr_from_sockaddr(dp_addr *out, const struct sockaddr *sa, socklen_t len, int sock_family) {
  if (out == NULL || sa == NULL || len < (socklen_t)sizeof(sa_family_t) ||
      len > (socklen_t)sizeof(struct sockaddr_storage))
    return -EINVAL;
  if (sock_family == AF_INET && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    from_in4(out, sa);
    return 0;
  }
  memset(out, 0, sizeof *out);
  int family = sa->sa_family;
  if (sock_family == AF_INET) {
    /* Linux's AF_INET sockets read AF_UNSPEC as AF_INET (an old BSD rule),
     * and no other family, IPv4-mapped IPv6 included. */
    if (len < (socklen_t)sizeof(struct sockaddr_in))
      return -EINVAL;
    if (family != AF_INET && family != AF_UNSPEC)
      return -EAFNOSUPPORT;
    family = AF_INET;
  }
  if (family == AF_INET) {
    struct sockaddr_in in4;
    if (len < (socklen_t)sizeof in4)
      return -EINVAL;
    memcpy(&in4, sa, sizeof in4);
    memcpy(out->key.ip, v4mapped_prefix, 12);
    memcpy(out->key.ip + 12, &in4.sin_addr, 4);
    out->key.port = in4.sin_port;
  } else if (family == AF_INET6) {
    /* RFC 2133's sockaddr_in6 has no scope id: 24 bytes, which the kernel
     * accepts too. */
    struct sockaddr_in6 in6 = {0};
    if (len < 24)
      return -EINVAL;
    memcpy(&in6, sa, len < (socklen_t)sizeof in6 ? (size_t)len : sizeof in6);
    memcpy(out->key.ip, &in6.sin6_addr, 16);
    out->key.port = in6.sin6_port;
    if (memcmp(out->key.ip, v4mapped_prefix, 12) != 0)
      out->key.scope_id = in6.sin6_scope_id;
  } else {
    /* An AF_INET6 socket refuses other families with EINVAL; AF_UNSPEC,
     * which it reads as no address, is the caller's to handle. */
    return sock_family == AF_INET6 && family != AF_UNSPEC ? -EINVAL : -EAFNOSUPPORT;
  }

  if (sock_family == AF_INET) {
    out->u.in4.sin_family = AF_INET;
    out->u.in4.sin_port = out->key.port;
    memcpy(&out->u.in4.sin_addr, out->key.ip + 12, 4);
    out->len = sizeof out->u.in4;
  } else if (sock_family == AF_INET6) {
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = out->key.port;
    memcpy(&out->u.in6.sin6_addr, out->key.ip, 16);
    out->u.in6.sin6_scope_id = out->key.scope_id;
    out->len = sizeof out->u.in6;
  } else {
    return -EAFNOSUPPORT;
  }
  return 0;
}

void dp_addr_copy_out(const dp_addr *addr, struct sockaddr *sa, socklen_t *len) {
  if (sa == NULL || len == NULL)
    return;
  size_t n = *len < addr->len ? *len : addr->len;
  memcpy(sa, &addr->u, n);
  *len = addr->len;
}

void dp_addr_format(const dp_addr *addr, char *buf, size_t buf_len) {
  char host[INET6_ADDRSTRLEN];
  if (memcmp(addr->key.ip, v4mapped_prefix, 12) == 0) {
    inet_ntop(AF_INET, addr->key.ip + 12, host, sizeof host);
    snprintf(buf, buf_len, "%s:%u", host, ntohs(addr->key.port));
  } else {
    inet_ntop(AF_INET6, addr->key.ip, host, sizeof host);
    snprintf(buf, buf_len, "[%s]:%u", host, ntohs(addr->key.port));
  }
}

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

/* One load, not eight: the hash runs for every datagram in and out. */
static uint64_t load_le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return le64toh(v);
}

#define SIPROUND                                                                                   \
  do {                                                                                             \
    v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                                  \
    v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                                        \
    v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                                        \
    v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                                  \
  } while (0)

uint64_t dp_siphash24(const uint8_t key[16], const void *data, size_t len) {
  const uint8_t *in = data;
  uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = load_le64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++)
    b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static uint8_t process_hash_key[16];
static pthread_once_t process_hash_key_once = PTHREAD_ONCE_INIT;

static void init_process_hash_key(void) {
  if (RAND_bytes(process_hash_key, sizeof process_hash_key) != 1) {
    /* No entropy from OpenSSL: fall back to something per-process rather than
     * a constant, so collisions still cannot be precomputed. */
    uintptr_t a = (uintptr_t)&process_hash_key;
    uintptr_t b = (uintptr_t)&a;
    memcpy(process_hash_key, &a, sizeof a);
    memcpy(process_hash_key + 8, &b, sizeof b);
  }
}

unsigned dp_addr_hash(const void *key, size_t len) {
  pthread_once(&process_hash_key_once, init_process_hash_key);
  return (unsigned)dp_siphash24(process_hash_key, key, len);
}
