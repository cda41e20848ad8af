/* The program's socket calls, taken before the C library's: on a selected
 * UDP socket they become dtlssendto, dtlsrecvfrom and their kin; on every
 * other descriptor they are the C library's own.  A socket is attached the
 * first time it is used with a selected port: bound to one, or sending to
 * one; from then on everything on it is DTLS.  Nothing on a selected socket
 * is ever sent in the clear: if it cannot be attached, the call fails. */
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "socket.h" /* dp_real_getsockopt */

#define EXPORT __attribute__((visibility("default")))

dp_libc dp_next;

/* What a descriptor number is, as far as this library knows. */
enum { FD_UNKNOWN = 0, FD_OTHER, FD_UDP, FD_ATTACHED };

static _Atomic unsigned char *fd_kind; /* by number, below fd_kind_len */
static size_t fd_kind_len;

static dp_run_settings settings;
static int settings_error; /* errno for every selected socket, if the environment was bad */
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;

#define NEXT(name) dp_next.name = (__typeof__(dp_next.name))dlsym(RTLD_NEXT, #name)

/* After fork the library forgets the child's sessions (two processes must
 * not share a key stream): the child attaches its sockets anew. */
static void forget_attachments_in_child(void) {
  for (size_t fd = 0; fd < fd_kind_len; fd++)
    if (atomic_load(&fd_kind[fd]) == FD_ATTACHED)
      atomic_store(&fd_kind[fd], FD_UDP);
}

__attribute__((constructor)) static void preload_init(void) {
  NEXT(sendto), NEXT(recvfrom), NEXT(sendmsg), NEXT(recvmsg), NEXT(send), NEXT(recv), NEXT(read), NEXT(write);
  NEXT(readv), NEXT(writev), NEXT(sendmmsg), NEXT(recvmmsg);
  NEXT(bind), NEXT(poll), NEXT(ppoll), NEXT(select), NEXT(pselect);
  NEXT(epoll_ctl), NEXT(epoll_wait), NEXT(epoll_pwait);
  struct rlimit nofile;
  fd_kind_len = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (1u << 20) ? nofile.rlim_cur : 1u << 20;
  fd_kind = calloc(fd_kind_len, 1);
  if (fd_kind == NULL)
    fd_kind_len = 0; /* every descriptor is looked at again on each call: slower, still right */
  pthread_atfork(NULL, NULL, forget_attachments_in_child);
}

/* registry.c calls this when a number is closed or replaced. */
void dp_descriptor_reused(int fd) {
  if (fd >= 0 && (size_t)fd < fd_kind_len)
    atomic_store(&fd_kind[fd], FD_UNKNOWN);
  dp_preload_wait_forget(fd);
}

static int kind_of(int fd) {
  int kind = fd >= 0 && (size_t)fd < fd_kind_len ? atomic_load(&fd_kind[fd]) : FD_UNKNOWN;
  if (kind != FD_UNKNOWN)
    return kind;
  int type = 0, family = 0;
  socklen_t len = sizeof type;
  if (dp_real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM) {
    len = sizeof family;
    if (dp_real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0)
      family = 0;
  }
  kind = type == SOCK_DGRAM && (family == AF_INET || family == AF_INET6) ? FD_UDP : FD_OTHER;
  if (fd >= 0 && (size_t)fd < fd_kind_len)
    atomic_store(&fd_kind[fd], (unsigned char)kind);
  return kind;
}

/* The configuration is made when the first socket is attached: a process
 * that never uses UDP (most of those a shell script starts) never pays for
 * it. */
static void load_settings(void) {
  char why[256];
  dp_in_library++;
  if (dp_run_settings_from_env(&settings, why, sizeof why) < 0) {
    fprintf(stderr, "libdtlsplex-preload: %s: UDP sockets will fail\n", why);
    settings_error = EINVAL;
  }
  dp_in_library--;
}

static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static int port_of(const struct sockaddr *sa) {
  if (sa == NULL)
    return 0;
  if (sa->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
  if (sa->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
  return 0;
}

/* A socket is selected by its own port, the port it sends to, or the port
 * of the peer it is connected to. */
static int selected(int fd, const struct sockaddr *dest) {
  pthread_once(&settings_once, load_settings);
  if (settings.n_ports == 0)
    return 1;
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0 && dp_run_port_selected(&settings, port_of((struct sockaddr *)&addr)))
    return 1;
  if (dest != NULL && dp_run_port_selected(&settings, port_of(dest)))
    return 1;
  len = sizeof addr;
  return getpeername(fd, (struct sockaddr *)&addr, &len) == 0 &&
         dp_run_port_selected(&settings, port_of((struct sockaddr *)&addr));
}

static int attach(int fd) {
  pthread_once(&settings_once, load_settings);
  if (settings_error != 0) {
    errno = settings_error;
    return -1;
  }
  pthread_mutex_lock(&attach_lock); /* two threads using a new socket at once attach it once */
  dp_in_library++;
  /* A dup of an attached socket is attached already: the library knows it
   * by the socket, not by the number. */
  int r = dtlsplex_pending(fd) >= 0 ? 0 : dtlsplex_attach(fd, settings.cfg);
  int err = errno;
  dp_in_library--;
  if (r == 0 && fd >= 0 && (size_t)fd < fd_kind_len)
    atomic_store(&fd_kind[fd], FD_ATTACHED);
  pthread_mutex_unlock(&attach_lock);
  errno = err;
  return r;
}

int dp_preload_claim(int fd, const struct sockaddr *dest) {
  if (dp_in_library)
    return 0;
  switch (kind_of(fd)) {
  case FD_ATTACHED:
    return 1;
  case FD_UDP:
    if (!selected(fd, dest))
      return 0;
    return attach(fd) == 0 ? 1 : -1;
  default:
    return 0;
  }
}

/* Runs a library call with the library's own system calls let through. */
#define INSIDE(expr)                                                                                                   \
  ({                                                                                                                   \
    dp_in_library++;                                                                                               \
    __typeof__(expr) inside_result = (expr);                                                                           \
    dp_in_library--;                                                                                               \
    inside_result;                                                                                                     \
  })

int dp_preload_event_fd(int fd) { return INSIDE(dtlsplex_event_fd(fd)); }

int dp_preload_readable(int fd) {
  int saved = errno;
  INSIDE(dtlsplex_process(fd));
  int pending = INSIDE(dtlsplex_pending(fd));
  errno = saved;
  return pending > 0;
}

/* With --name, a server this socket sends to must carry that name. */
static void name_destination(int fd, const struct sockaddr *dest, socklen_t dest_len) {
  struct dtlsplex_peer_info info;
  if (settings.name == NULL || dest == NULL || INSIDE(dtlsplex_peer_info(fd, dest, dest_len, &info)) == 0)
    return;
  int saved = errno;
  INSIDE(dtlsplex_set_peer_name(fd, dest, dest_len, settings.name));
  errno = saved;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest, socklen_t dest_len) {
  int claimed = dp_preload_claim(fd, dest);
  if (claimed == 0)
    return dp_next.sendto(fd, buf, len, flags, dest, dest_len);
  if (claimed < 0)
    return -1;
  name_destination(fd, dest, dest_len);
  return INSIDE(dtlssendto(fd, buf, len, flags, dest, dest_len));
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.send(fd, buf, len, flags);
  return claimed < 0 ? -1 : INSIDE(dtlssendto(fd, buf, len, flags, NULL, 0));
}

EXPORT ssize_t write(int fd, const void *buf, size_t len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.write(fd, buf, len);
  return claimed < 0 ? -1 : INSIDE(dtlssendto(fd, buf, len, 0, NULL, 0));
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  int claimed = dp_preload_claim(fd, msg != NULL ? msg->msg_name : NULL);
  if (claimed == 0)
    return dp_next.sendmsg(fd, msg, flags);
  if (claimed < 0)
    return -1;
  if (msg != NULL)
    name_destination(fd, msg->msg_name, msg->msg_namelen);
  return INSIDE(dtlssendmsg(fd, msg, flags));
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *src_len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.recvfrom(fd, buf, len, flags, src, src_len);
  return claimed < 0 ? -1 : INSIDE(dtlsrecvfrom(fd, buf, len, flags, src, src_len));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.recv(fd, buf, len, flags);
  return claimed < 0 ? -1 : INSIDE(dtlsrecvfrom(fd, buf, len, flags, NULL, NULL));
}

EXPORT ssize_t read(int fd, void *buf, size_t len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.read(fd, buf, len);
  return claimed < 0 ? -1 : INSIDE(dtlsrecvfrom(fd, buf, len, 0, NULL, NULL));
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.recvmsg(fd, msg, flags);
  return claimed < 0 ? -1 : INSIDE(dtlsrecvmsg(fd, msg, flags));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.writev(fd, iov, iovcnt);
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt < 0 ? 0 : (size_t)iovcnt};
  if (claimed < 0 || iovcnt < 0)
    return claimed < 0 ? -1 : (errno = EINVAL, -1);
  return INSIDE(dtlssendmsg(fd, &msg, 0));
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.readv(fd, iov, iovcnt);
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt < 0 ? 0 : (size_t)iovcnt};
  if (claimed < 0 || iovcnt < 0)
    return claimed < 0 ? -1 : (errno = EINVAL, -1);
  return INSIDE(dtlsrecvmsg(fd, &msg, 0));
}

/* Several datagrams in one call, as the kernel does them: each through
 * DTLS; the count of those done, or -1 if the first failed. */
EXPORT int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
  int claimed = dp_preload_claim(fd, n > 0 && msgs != NULL ? msgs[0].msg_hdr.msg_name : NULL);
  if (claimed == 0)
    return dp_next.sendmmsg(fd, msgs, n, flags);
  if (claimed < 0)
    return -1;
  unsigned int done = 0;
  for (; done < n && done < UIO_MAXIOV; done++) {
    name_destination(fd, msgs[done].msg_hdr.msg_name, msgs[done].msg_hdr.msg_namelen);
    ssize_t sent = INSIDE(dtlssendmsg(fd, &msgs[done].msg_hdr, flags));
    if (sent < 0)
      break;
    msgs[done].msg_len = (unsigned int)sent;
  }
  return done > 0 || n == 0 ? (int)done : -1;
}

/* The first datagram as the flags say (it may block), the rest only if
 * already there: MSG_WAITFORONE's behaviour, which is what programs ask
 * for.  The timeout is not applied (see dtlsplex-run(1), limits). */
EXPORT int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags, struct timespec *timeout) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_next.recvmmsg(fd, msgs, n, flags, timeout);
  if (claimed < 0)
    return -1;
  unsigned int done = 0;
  for (; done < n && done < UIO_MAXIOV; done++) {
    int these = done == 0 ? flags & ~MSG_WAITFORONE : flags | MSG_DONTWAIT;
    ssize_t got = INSIDE(dtlsrecvmsg(fd, &msgs[done].msg_hdr, these));
    if (got < 0)
      break;
    msgs[done].msg_len = (unsigned int)got;
  }
  return done > 0 || n == 0 ? (int)done : -1;
}

/* A server's socket is selected by the port it binds: attached at once, so
 * that it is ready before the program first waits on it. */
EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  int r = dp_next.bind(fd, addr, len);
  if (r != 0 || dp_in_library || kind_of(fd) != FD_UDP || !selected(fd, addr))
    return r;
  return attach(fd) == 0 ? 0 : -1;
}
