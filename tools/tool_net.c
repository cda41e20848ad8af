/* See tool_net.h. */
#include "tool_net.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "tool_util.h"

struct addrinfo *resolve_udp(const char *host, const char *port, int passive, int family) {
  if (passive && host == NULL && family == AF_UNSPEC)
    family = AF_INET6;
  struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM, .ai_flags = passive ? AI_PASSIVE : 0};
  struct addrinfo *res;
  int r = getaddrinfo(host, port, &hints, &res);
  if (r != 0)
    fatal("%s port %s: %s", host ? host : "*", port, gai_strerror(r));
  return res;
}

int udp_socket(int family, int family_option) {
  int fd = socket(family, SOCK_DGRAM, 0);
  if (fd < 0)
    fatal("socket: %s", strerror(errno));
  if (family == AF_INET6) {
    int v6only = family_option == AF_INET6;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  return fd;
}

int bound_udp_socket(const struct addrinfo *at, int family_option) {
  int fd = udp_socket(at->ai_family, family_option);
  if (bind(fd, at->ai_addr, at->ai_addrlen) < 0)
    fatal("bind: %s", strerror(errno));
  return fd;
}

void announce_listening(int fd) {
  struct sockaddr_storage bound;
  socklen_t bound_len = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bound_len);
  char name[64];
  format_addr((struct sockaddr *)&bound, name, sizeof name);
  char *colon = strrchr(name, ':');
  *colon = '\0';
  const char *addr = name;
  if (name[0] == '[') { /* no brackets */
    addr = name + 1;
    colon[-1] = '\0';
  }
  fprintf(stderr, "listening on %s %s\n", addr, colon + 1);
}
