/* See proxy_header.h. */
#include "proxy_header.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
enum {
  VERSION_2_PROXY = 0x21, /* version 2, command PROXY */
  UDP_OVER_IPV4 = 0x12,
  UDP_OVER_IPV6 = 0x22
};

/* An address's family, bytes (network order) and port (network order),
 * IPv4-mapped IPv6 taken as IPv4. */
typedef struct {
  int family;
  const uint8_t *addr;
  const uint8_t *port;
} endpoint;

static endpoint endpoint_of(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (endpoint){AF_INET, (const uint8_t *)&in->sin_addr, (const uint8_t *)&in->sin_port};
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
  if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
    return (endpoint){AF_INET, in6->sin6_addr.s6_addr + 12, (const uint8_t *)&in6->sin6_port};
  return (endpoint){AF_INET6, in6->sin6_addr.s6_addr, (const uint8_t *)&in6->sin6_port};
}

size_t pp2_header(uint8_t out[PP2_MAX], const struct sockaddr *src, const struct sockaddr *dst) {
  endpoint s = endpoint_of(src), d = endpoint_of(dst);
  size_t addr_len = s.family == AF_INET ? 4 : 16;
  uint16_t body = (uint16_t)(2 * addr_len + 4); /* the addresses, then the ports */
  memcpy(out, signature, sizeof signature);
  out[12] = VERSION_2_PROXY;
  out[13] = s.family == AF_INET ? UDP_OVER_IPV4 : UDP_OVER_IPV6;
  out[14] = (uint8_t)(body >> 8);
  out[15] = (uint8_t)body;
  uint8_t *p = out + 16;
  memcpy(p, s.addr, addr_len);
  if (d.family == s.family)
    memcpy(p + addr_len, d.addr, addr_len);
  else
    memset(p + addr_len, 0, addr_len);
  memcpy(p + 2 * addr_len, s.port, 2);
  memcpy(p + 2 * addr_len + 2, d.port, 2);
  return 16 + body;
}
