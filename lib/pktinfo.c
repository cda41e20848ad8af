/* This side's end of each datagram (IP_PKTINFO, IPV6_PKTINFO).
 *
 * A socket bound to a wildcard address on a host with several addresses
 * receives on all of them, but the kernel picks the source of what it sends
 * by route: a peer that wrote to one address may hear back from another,
 * and a client on a connected socket drops that.  So such a socket reads
 * where each datagram arrived, and every session answers from the address
 * its ClientHello reached (the HelloVerifyRequest too).
 *
 * The same control messages are the program's, as on a plain socket: given
 * by dtlsrecvmsg when it enabled them, honoured on dtlssendmsg.  Whether
 * the program enabled them is its own setting, whatever the library turned
 * on for itself: setsockopt and getsockopt of these two options on an
 * attached socket come here (see registry.c). */
#include <string.h>

#include "socket.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void map_v4(struct in6_addr *out, struct in_addr in) {
  memcpy(out->s6_addr, v4_mapped_prefix, sizeof v4_mapped_prefix);
  memcpy(out->s6_addr + 12, &in, 4);
}

static struct in_addr unmap_v4(const struct in6_addr *in) {
  struct in_addr out;
  memcpy(&out, in->s6_addr + 12, 4);
  return out;
}

static int is_v4_mapped(const struct in6_addr *a) {
  return memcmp(a->s6_addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0;
}

int dp_pktinfo_option(int level, int name) {
  return (level == IPPROTO_IP && name == IP_PKTINFO) || (level == IPPROTO_IPV6 && name == IPV6_RECVPKTINFO);
}

/* Bound to a wildcard address, or to none yet (the first send binds one). */
static int bound_to_wildcard(const dp_socket *s) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (getsockname(s->fd, (struct sockaddr *)&a, &len) != 0)
    return 0;
  if (s->family == AF_INET)
    return ((struct sockaddr_in *)&a)->sin_addr.s_addr == htonl(INADDR_ANY);
  return IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&a)->sin6_addr);
}

static void set_flag(int fd, int level, int name, int on) {
  /* A failure leaves answers to the kernel's choice of source, as before. */
  (void)dp_real_setsockopt(fd, level, name, &on, sizeof on);
}

/* The kernel's settings: the program's, or on where the library needs them.
 * An IPv6 socket that hears IPv4 also asks for IP_PKTINFO, whose local
 * address (ipi_spec_dst) answers a broadcast from the interface's own. */
static void apply_flags(const dp_socket *s) {
  int library = s->answer_from_arrival;
  set_flag(s->fd, IPPROTO_IP, IP_PKTINFO, s->user_pktinfo || (library && !s->v6only));
  if (s->family == AF_INET6)
    set_flag(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, s->user_recvpktinfo || library);
}

static int read_flag(int fd, int level, int name) {
  int on = 0;
  socklen_t len = sizeof on;
  return dp_real_getsockopt(fd, level, name, &on, &len) == 0 && on != 0;
}

void dp_pktinfo_attach(dp_socket *s) {
  s->user_pktinfo = read_flag(s->fd, IPPROTO_IP, IP_PKTINFO);
  s->user_recvpktinfo = s->family == AF_INET6 && read_flag(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO);
}

void dp_pktinfo_update(dp_socket *s) {
  int answer = !s->connected && bound_to_wildcard(s);
  if (answer != s->answer_from_arrival) {
    s->answer_from_arrival = answer;
    apply_flags(s);
  }
}

void dp_pktinfo_detach(dp_socket *s) {
  if (s->answer_from_arrival) {
    s->answer_from_arrival = 0;
    apply_flags(s);
  }
}

/* A unicast address a datagram may leave from. */
static int usable_source(const struct in6_addr *a) {
  if (IN6_IS_ADDR_UNSPECIFIED(a))
    return 0;
  if (!is_v4_mapped(a))
    return !IN6_IS_ADDR_MULTICAST(a);
  uint8_t first = a->s6_addr[12];
  return first < 224 && unmap_v4(a).s_addr != htonl(INADDR_BROADCAST);
}

int dp_pktinfo_parse(const dp_socket *s, struct msghdr *m, dp_local *out) {
  struct in_pktinfo v4;
  struct in6_pktinfo v6;
  int have_v4 = 0, have_v6 = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof v4)) {
      memcpy(&v4, CMSG_DATA(c), sizeof v4);
      have_v4 = 1;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof v6)) {
      memcpy(&v6, CMSG_DATA(c), sizeof v6);
      have_v6 = 1;
    }
  }
  memset(out, 0, sizeof *out);
  if (have_v4) {
    out->family = AF_INET;
    out->ifindex = (uint32_t)v4.ipi_ifindex;
    map_v4(&out->dst, v4.ipi_addr);
    map_v4(&out->source, v4.ipi_spec_dst);
  } else if (have_v6) {
    out->family = is_v4_mapped(&v6.ipi6_addr) ? AF_INET : AF_INET6;
    out->ifindex = v6.ipi6_ifindex;
    out->dst = v6.ipi6_addr;
    if (usable_source(&v6.ipi6_addr)) /* else unspecified: not this side's own address */
      out->source = v6.ipi6_addr;
  } else {
    return 0;
  }
  if (s->answer_from_arrival && usable_source(&out->source)) {
    out->has_source = 1;
    /* A link-local address means something only on its own link. */
    out->source_ifindex = IN6_IS_ADDR_LINKLOCAL(&out->source) ? out->ifindex : 0;
  }
  return 1;
}

size_t dp_pktinfo_source_cmsg(const dp_socket *s, const dp_local *source, dp_source_cmsg *buf) {
  if (!source->has_source)
    return 0;
  memset(buf, 0, sizeof *buf);
  struct cmsghdr *c = &buf->header;
  if (s->family == AF_INET) {
    struct in_pktinfo pi = {.ipi_ifindex = (int)source->source_ifindex, .ipi_spec_dst = unmap_v4(&source->source)};
    *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof pi), .cmsg_level = IPPROTO_IP, .cmsg_type = IP_PKTINFO};
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    return CMSG_SPACE(sizeof pi);
  }
  /* Also for IPv4 on an IPv6 socket: the kernel takes an IPv4-mapped source. */
  struct in6_pktinfo pi = {.ipi6_addr = source->source, .ipi6_ifindex = source->source_ifindex};
  *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof pi), .cmsg_level = IPPROTO_IPV6, .cmsg_type = IPV6_PKTINFO};
  memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return CMSG_SPACE(sizeof pi);
}

int dp_pktinfo_from_program(const dp_socket *s, const struct msghdr *msg, const dp_addr *to, dp_local *out) {
  memset(out, 0, sizeof *out);
  if (msg->msg_controllen > 0 && msg->msg_control == NULL)
    return -EFAULT;
  int to_v4 = s->family == AF_INET || is_v4_mapped((const struct in6_addr *)to->key.ip);
  int have_v4 = 0, have_v6 = 0;
  struct in_pktinfo v4;
  struct in6_pktinfo v6;
  const uint8_t *end = (const uint8_t *)msg->msg_control + msg->msg_controllen;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
    /* The kernel's checks (CMSG_OK): a header, and no more than is there. */
    if (c->cmsg_len < sizeof *c || c->cmsg_len > (size_t)(end - (const uint8_t *)c))
      return -EINVAL;
    /* Which levels the kernel reads depends on the destination: IPv4 goes
     * through IPv4's send (SOL_IP, and IPV6_PKTINFO alone of SOL_IPV6 on an
     * IPv6 socket), IPv6 through IPv6's (SOL_IPV6 only).  What it reads it
     * acts on; this honours PKTINFO and refuses the rest, which a record
     * cannot carry and without which the datagram would not be what was
     * asked.  What the kernel ignores is ignored. */
    int ip = c->cmsg_level == IPPROTO_IP && to_v4;
    int ip6 = c->cmsg_level == IPPROTO_IPV6 && s->family == AF_INET6;
    if (ip && c->cmsg_type == IP_PKTINFO) {
      if (c->cmsg_len != CMSG_LEN(sizeof v4))
        return -EINVAL;
      memcpy(&v4, CMSG_DATA(c), sizeof v4);
      have_v4 = 1;
    } else if (ip6 && c->cmsg_type == IPV6_PKTINFO) {
      if (c->cmsg_len != CMSG_LEN(sizeof v6))
        return -EINVAL;
      memcpy(&v6, CMSG_DATA(c), sizeof v6);
      have_v6 = 1;
    } else if (c->cmsg_level == SOL_SOCKET || c->cmsg_level == IPPROTO_UDP || ip || (ip6 && !to_v4)) {
      return -EOPNOTSUPP;
    }
  }
  /* IPv4 takes IP_PKTINFO first; IPV6_PKTINFO for IPv4 needs a mapped address. */
  if (have_v4) {
    map_v4(&out->source, v4.ipi_spec_dst);
    out->source_ifindex = (uint32_t)v4.ipi_ifindex;
  } else if (have_v6) {
    if (to_v4 && !is_v4_mapped(&v6.ipi6_addr))
      return -EINVAL;
    out->source = v6.ipi6_addr;
    out->source_ifindex = v6.ipi6_ifindex;
  } else {
    return 0;
  }
  out->family = is_v4_mapped(&out->source) ? AF_INET : AF_INET6;
  out->has_source = 1;
  return 0;
}

/* put_cmsg(9): as much as fits, MSG_CTRUNC if not all did. */
static void put_cmsg(struct msghdr *msg, size_t *used, int level, int type, const void *data, size_t len) {
  size_t room = msg->msg_controllen - *used;
  if (room < sizeof(struct cmsghdr)) {
    msg->msg_flags |= MSG_CTRUNC;
    return;
  }
  size_t whole = CMSG_LEN(len);
  if (room < whole) {
    msg->msg_flags |= MSG_CTRUNC;
    whole = room;
  }
  struct cmsghdr header = {.cmsg_len = whole, .cmsg_level = level, .cmsg_type = type}; /* what was written */
  uint8_t *at = (uint8_t *)msg->msg_control + *used;
  memcpy(at, &header, sizeof header);
  memcpy(at + CMSG_LEN(0), data, whole - CMSG_LEN(0));
  *used += CMSG_SPACE(len) < room ? CMSG_SPACE(len) : room;
}

void dp_pktinfo_to_program(const dp_socket *s, const dp_local *arrival, struct msghdr *msg) {
  size_t used = 0;
  if (msg->msg_control == NULL)
    msg->msg_controllen = 0;
  /* In the kernel's order: IPv6's first, then IPv4's. */
  if (arrival->family != 0 && s->family == AF_INET6 && s->user_recvpktinfo) {
    struct in6_pktinfo pi = {.ipi6_addr = arrival->dst, .ipi6_ifindex = arrival->ifindex};
    put_cmsg(msg, &used, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi);
  }
  if (arrival->family == AF_INET && s->user_pktinfo) {
    struct in_pktinfo pi = {.ipi_ifindex = (int)arrival->ifindex,
                            .ipi_spec_dst = unmap_v4(&arrival->source),
                            .ipi_addr = unmap_v4(&arrival->dst)};
    put_cmsg(msg, &used, IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
  }
  msg->msg_controllen = used;
}

int dp_pktinfo_setsockopt(dp_socket *s, int fd, int level, int name, const void *value, socklen_t len) {
  /* The kernel checks the arguments and reads the value as it reads it. */
  if (dp_real_setsockopt(fd, level, name, value, len) != 0)
    return -errno;
  int on = read_flag(s->fd, level, name);
  if (level == IPPROTO_IP)
    s->user_pktinfo = on;
  else
    s->user_recvpktinfo = on;
  apply_flags(s);
  return 0;
}

int dp_pktinfo_getsockopt(dp_socket *s, int fd, int level, int name, void *value, socklen_t *len) {
  if (dp_real_getsockopt(fd, level, name, value, len) != 0)
    return -errno;
  int on = level == IPPROTO_IP ? s->user_pktinfo : s->user_recvpktinfo;
  if (*len == sizeof(int))
    memcpy(value, &on, sizeof on);
  else if (*len == 1) /* IPv4 options answer in a byte when asked for one */
    *(unsigned char *)value = (unsigned char)on;
  return 0;
}
