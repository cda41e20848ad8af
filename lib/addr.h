/* Peer addresses: validation, normalisation to one key per peer, keyed hashing. */
#ifndef DTLSPLEX_ADDR_H
#define DTLSPLEX_ADDR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* The hash-table key.  IPv4 is stored IPv4-mapped so that 192.0.2.1 and
 * ::ffff:192.0.2.1 are one peer; every byte, padding included, is defined so
 * that the key can be hashed and compared as raw memory. */
typedef struct dp_addr_key {
  uint8_t ip[16];
  uint32_t scope_id;
  uint16_t port; /* network byte order */
  uint16_t zero;
} dp_addr_key;

/* A peer: its key and the sockaddr to send to, in the socket's own family. */
typedef struct dp_addr {
  dp_addr_key key;
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } u;
  socklen_t len;
} dp_addr;

/* This side's end of a datagram on a socket bound to many addresses (a
 * wildcard bind on a multi-homed host): where a datagram arrived, from
 * IP_PKTINFO or IPV6_PKTINFO, and where the answer leaves from, so that a
 * peer hears back from the address it reached.  All zero: nothing known,
 * and the kernel chooses the source. */
typedef struct dp_local {
  sa_family_t family;      /* arrival: AF_INET (also IPv4 on an IPv6 socket), AF_INET6, or 0 */
  uint8_t has_source;      /* answers leave from source (and source_ifindex) */
  uint32_t ifindex;        /* arrival interface */
  struct in6_addr dst;     /* arrival: the header's destination, IPv4-mapped for IPv4 */
  struct in6_addr source;  /* the local address (IPv4's ipi_spec_dst), IPv4-mapped for IPv4 */
  uint32_t source_ifindex; /* the answer's interface, or 0 for the route's */
} dp_local;

/* Whether l names this side's address: not unknown, not unspecified
 * (:: or IPv4's 0.0.0.0, which leave the choice to the kernel). */
static inline int dp_local_address_known(const dp_local *l) {
  static const uint8_t v4_any[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
  return l->family != 0 && !IN6_IS_ADDR_UNSPECIFIED(&l->source) && memcmp(&l->source, v4_any, 16) != 0;
}

/* Builds out from a caller's address for a socket of sock_family, converting
 * between IPv4 and IPv4-mapped IPv6 as that socket needs.  Returns 0, or
 * -EINVAL (NULL, short length) or -EAFNOSUPPORT (family unusable on the socket). */
int dp_addr_from_sockaddr(dp_addr *out, const struct sockaddr *sa, socklen_t len, int sock_family);

/* Copies the address out as recvfrom(2) does: truncated to *len, and *len set
 * to the full length. */
void dp_addr_copy_out(const dp_addr *addr, struct sockaddr *sa, socklen_t *len);

/* "192.0.2.1:4433" or "[2001:db8::1]:4433", for logs. */
void dp_addr_format(const dp_addr *addr, char *buf, size_t buf_len);

/* SipHash-2-4 of data under a 128-bit key. */
uint64_t dp_siphash24(const uint8_t key[16], const void *data, size_t len);

/* Hash of a key under this process's random key, so that remote senders
 * cannot choose addresses that collide in the peer table. */
unsigned dp_addr_hash(const void *key, size_t len);

#endif
