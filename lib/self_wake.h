/* Waking a thread blocked in the kernel's receive on a UDP socket: an empty
 * datagram from the socket to itself.  Only some sockets can be woken so. */
#ifndef DTLSPLEX_SELF_WAKE_H
#define DTLSPLEX_SELF_WAKE_H

#include "addr.h"

/* The address at which fd (of sock_family) receives a datagram it sends to
 * itself: its bound address, loopback for a wildcard.  Returns 0, or -1 for
 * a socket that cannot be woken so: connected (it hears only its peer),
 * unbound (no port), bound to a device (loopback is not that device), or
 * sharing its port (SO_REUSEPORT, SO_REUSEADDR: the datagram may reach
 * another socket). */
int dp_self_wake_addr(int fd, int sock_family, dp_addr *out);

/* Sends the empty datagram without blocking.  Returns 0, or -errno. */
int dp_self_wake_send(int fd, const dp_addr *self);

/* Whether a received datagram is such a wake-up. */
int dp_is_self_wake(const dp_addr *self, const dp_addr *from, size_t len);

#endif
