#include "self_wake.h"
#include "sys.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>

static int option_set(int fd, int level, int name) {
  int value = 1;
  socklen_t len = sizeof value;
  return getsockopt(fd, level, name, &value, &len) < 0 || value != 0; /* unknown counts as set */
}

static int bound_to_device(int fd) {
  char name[IF_NAMESIZE];
  socklen_t len = sizeof name;
  return getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &len) < 0 || len > 0;
}

int dp_self_wake_addr(int fd, int sock_family, dp_addr *out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 || errno != ENOTCONN)
    return -1;
  if (option_set(fd, SOL_SOCKET, SO_REUSEPORT) || option_set(fd, SOL_SOCKET, SO_REUSEADDR) ||
      bound_to_device(fd))
    return -1;
  len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    if (in4->sin_port == 0)
      return -1;
    if (in4->sin_addr.s_addr == htonl(INADDR_ANY))
      in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (in6->sin6_port == 0)
      return -1;
    /* A dual-stack wildcard reaches itself over IPv4 loopback, which works
     * even where IPv6 is disabled on lo; an IPv6-only one needs ::1. */
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) && !option_set(fd, IPPROTO_IPV6, IPV6_V6ONLY))
      in6->sin6_addr = (struct in6_addr){.s6_addr = {[10] = 0xff, [11] = 0xff, 127, 0, 0, 1}};
    else if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
      in6->sin6_addr = in6addr_loopback;
    else if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr32[3] == htonl(INADDR_ANY))
      in6->sin6_addr.s6_addr32[3] = htonl(INADDR_LOOPBACK);
  } else {
    return -1;
  }
  return dp_addr_from_sockaddr(out, (struct sockaddr *)&ss, len, sock_family) == 0 ? 0 : -1;
}

int dp_self_wake_send(int fd, const dp_addr *self) {
  return dp_sys()->sendto(fd, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL, &self->u.sa, self->len) < 0 ? -errno : 0;
}

int dp_is_self_wake(const dp_addr *self, const dp_addr *from, size_t len) {
  return len == 0 && self->len != 0 && memcmp(&from->key, &self->key, sizeof from->key) == 0;
}
