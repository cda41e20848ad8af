/* The C library's own socket and wait calls, as the library makes them.
 * Found with dlsym(RTLD_NEXT) on first use, so that the library's I/O on
 * its own descriptors never passes through an interposer of the same
 * names: the preload library's (preload.c), which would otherwise take the
 * library's internal dup of a socket for one of the program's. */
#ifndef DTLSPLEX_SYS_H
#define DTLSPLEX_SYS_H

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>

typedef struct dp_sys_fns {
  ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
  ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
  ssize_t (*sendmsg)(int, const struct msghdr *, int);
  ssize_t (*recvmsg)(int, struct msghdr *, int);
  int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
  int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
  ssize_t (*send)(int, const void *, size_t, int);
  ssize_t (*recv)(int, void *, size_t, int);
  ssize_t (*read)(int, void *, size_t);
  ssize_t (*write)(int, const void *, size_t);
  ssize_t (*readv)(int, const struct iovec *, int);
  ssize_t (*writev)(int, const struct iovec *, int);
  int (*socket)(int, int, int);
  int (*socketpair)(int, int, int, int[2]);
  int (*accept)(int, struct sockaddr *, socklen_t *);
  int (*accept4)(int, struct sockaddr *, socklen_t *, int);
  int (*dup)(int);
  int (*fcntl)(int, int, ...);
  int (*bind)(int, const struct sockaddr *, socklen_t);
  int (*poll)(struct pollfd *, nfds_t, int);
  int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
  int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
  int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
  int (*epoll_ctl)(int, int, int, struct epoll_event *);
  int (*epoll_wait)(int, struct epoll_event *, int, int);
  int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
  int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
} dp_sys_fns;

extern dp_sys_fns dp_sys_table;
extern atomic_int dp_sys_ready;
void dp_sys_resolve(void);

/* The table, resolved on the first call (any thread, any time: also before
 * the library's constructors ran, from another library's).  Inline: it is
 * on every datagram's path. */
static inline const dp_sys_fns *dp_sys(void) {
  if (!atomic_load_explicit(&dp_sys_ready, memory_order_acquire))
    dp_sys_resolve();
  return &dp_sys_table;
}

#endif
