/* The program's socket calls, taken before the C library's: on a selected
 * UDP socket they become dtlssendto, dtlsrecvfrom and their kin; on every
 * other descriptor they are the C library's own.  A socket is attached the
 * first time it is used with a selected port: bound to one, or sending to
 * one; from then on everything on it is DTLS, also in a forked child.
 * Nothing on a selected socket is ever sent in the clear: if it cannot be
 * attached, the call fails.  The library's own system calls go straight to
 * the C library (sys.h), so they never come here. */
#include "preload.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "socket.h" /* dp_real_getsockopt, dp_descriptor_reused */

#define EXPORT __attribute__((visibility("default")))

/* What a descriptor number is, as far as this library knows.  SELECTED: a
 * UDP socket once attached, which stays DTLS even where the library has
 * forgotten it (a forked child). */
enum { FD_UNKNOWN = 0, FD_OTHER, FD_UDP, FD_SELECTED, FD_ATTACHED };

static _Atomic unsigned char *fd_kind; /* by number, below fd_kind_len */
static size_t fd_kind_len;

static dp_run_settings settings;
static int settings_error; /* errno for every selected socket, if the environment was bad */
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;

/* After fork the library forgets the child's sessions (two processes must
 * not share a key stream): the child attaches its selected sockets anew. */
static void forget_attachments_in_child(void) {
  for (size_t fd = 0; fd < fd_kind_len; fd++)
    if (atomic_load(&fd_kind[fd]) == FD_ATTACHED)
      atomic_store(&fd_kind[fd], FD_SELECTED);
}

/* The table covers every number the process may ever use (its hard limit):
 * a descriptor above it would be looked at afresh on each call, and could
 * not stay selected across fork.  Pages are only touched where used. */
#define FD_KIND_MAX (1u << 22)

__attribute__((constructor)) static void preload_init(void) {
  struct rlimit nofile;
  fd_kind_len = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_max < FD_KIND_MAX ? nofile.rlim_max : FD_KIND_MAX;
  fd_kind = calloc(fd_kind_len, 1);
  if (fd_kind == NULL)
    fd_kind_len = 0; /* every descriptor is looked at again on each call: slower, still right */
  pthread_atfork(NULL, NULL, forget_attachments_in_child);
}

static void set_kind(int fd, int kind) {
  if (fd >= 0 && (size_t)fd < fd_kind_len)
    atomic_store(&fd_kind[fd], (unsigned char)kind);
}

/* registry.c calls this when a number is closed or replaced. */
void dp_descriptor_reused(int fd) {
  set_kind(fd, FD_UNKNOWN);
  dp_preload_wait_forget(fd);
}

/* The configuration is made when the first socket is attached: a process
 * that never uses UDP (most of those a shell script starts) never pays for
 * it. */
static void load_settings(void) {
  char why[256];
  if (dp_run_settings_from_env(&settings, why, sizeof why) < 0) {
    fprintf(stderr, "libdtlsplex-preload: %s: UDP sockets will fail\n", why);
    settings_error = EINVAL;
  }
}

static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

/* Whether fd is an IPv4 or IPv6 datagram socket, remembered by number.  A
 * number that is not open is not remembered: it may be a socket next. */
static int kind_of(int fd) {
  int kind = fd >= 0 && (size_t)fd < fd_kind_len ? atomic_load(&fd_kind[fd]) : FD_UNKNOWN;
  if (kind != FD_UNKNOWN)
    return kind;
  int saved = errno, type = 0, family = 0;
  socklen_t len = sizeof type;
  int r = dp_real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  int not_open = r != 0 && errno == EBADF;
  if (r == 0 && type == SOCK_DGRAM) {
    len = sizeof family;
    if (dp_real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) != 0)
      family = 0;
  }
  errno = saved;
  kind = type == SOCK_DGRAM && (family == AF_INET || family == AF_INET6) ? FD_UDP : FD_OTHER;
  if (!not_open)
    set_kind(fd, kind);
  return kind;
}

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
  if (settings.n_ports == 0 || (dest != NULL && dp_run_port_selected(&settings, port_of(dest))))
    return 1;
  int saved = errno, chosen = 0;
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0 && dp_run_port_selected(&settings, port_of((struct sockaddr *)&addr)))
    chosen = 1;
  len = sizeof addr;
  if (!chosen && getpeername(fd, (struct sockaddr *)&addr, &len) == 0 &&
      dp_run_port_selected(&settings, port_of((struct sockaddr *)&addr)))
    chosen = 1;
  errno = saved;
  return chosen;
}

/* Whether the library holds fd already: a dup of an attached socket, or
 * one attached under a number this table does not cover. */
static int library_has(int fd) {
  int saved = errno, has = dtlsplex_pending(fd) >= 0;
  errno = saved;
  return has;
}

static int attach(int fd) {
  pthread_once(&settings_once, load_settings);
  if (settings_error != 0) {
    errno = settings_error;
    return -1;
  }
  pthread_mutex_lock(&attach_lock); /* two threads using a new socket at once attach it once */
  int saved = errno, r = library_has(fd) ? 0 : dtlsplex_attach(fd, settings.cfg), err = errno;
  if (r == 0)
    set_kind(fd, FD_ATTACHED);
  pthread_mutex_unlock(&attach_lock);
  if (r == 0)
    dp_preload_wait_attached(fd);
  errno = r == 0 ? saved : err;
  return r;
}

int dp_preload_claim(int fd, const struct sockaddr *dest) {
  switch (kind_of(fd)) {
  case FD_ATTACHED:
    return 1;
  case FD_SELECTED:
    return attach(fd) == 0 ? 1 : -1;
  case FD_UDP:
    if (!library_has(fd) && !selected(fd, dest))
      return 0;
    return attach(fd) == 0 ? 1 : -1;
  default:
    return 0;
  }
}

int dp_preload_is_udp(int fd) {
  int kind = kind_of(fd);
  return kind == FD_UDP || kind == FD_SELECTED;
}

int dp_preload_readable(int fd) {
  int saved = errno;
  dtlsplex_process(fd);
  int pending = dtlsplex_pending(fd);
  errno = saved;
  return pending > 0;
}

/* With --name, a server this socket sends to must carry that name. */
static void name_destination(int fd, const struct sockaddr *dest, socklen_t dest_len) {
  struct dtlsplex_peer_info info;
  int saved = errno;
  if (settings.name != NULL && dest != NULL && dtlsplex_peer_info(fd, dest, dest_len, &info) != 0)
    dtlsplex_set_peer_name(fd, dest, dest_len, settings.name);
  errno = saved;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest, socklen_t dest_len) {
  int claimed = dp_preload_claim(fd, dest);
  if (claimed == 0)
    return dp_sys()->sendto(fd, buf, len, flags, dest, dest_len);
  if (claimed < 0)
    return -1;
  name_destination(fd, dest, dest_len);
  return dtlssendto(fd, buf, len, flags, dest, dest_len);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->send(fd, buf, len, flags);
  return claimed < 0 ? -1 : dtlssendto(fd, buf, len, flags, NULL, 0);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->write(fd, buf, len);
  return claimed < 0 ? -1 : dtlssendto(fd, buf, len, 0, NULL, 0);
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  int claimed = dp_preload_claim(fd, msg != NULL ? msg->msg_name : NULL);
  if (claimed == 0)
    return dp_sys()->sendmsg(fd, msg, flags);
  if (claimed < 0)
    return -1;
  if (msg != NULL)
    name_destination(fd, msg->msg_name, msg->msg_namelen);
  return dtlssendmsg(fd, msg, flags);
}

/* As the kernel does them: the iovecs are one datagram. */
static ssize_t vector_call(int fd, const struct iovec *iov, int iovcnt, int sending) {
  if (iovcnt < 0) {
    errno = EINVAL;
    return -1;
  }
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
  return sending ? dtlssendmsg(fd, &msg, 0) : dtlsrecvmsg(fd, &msg, 0);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->writev(fd, iov, iovcnt);
  return claimed < 0 ? -1 : vector_call(fd, iov, iovcnt, 1);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->readv(fd, iov, iovcnt);
  return claimed < 0 ? -1 : vector_call(fd, iov, iovcnt, 0);
}

/* Several datagrams in one call: the socket is selected if any of them
 * goes to a selected port; each goes through DTLS.  The count of those
 * done, or -1 if the first failed. */
EXPORT int sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
  int claimed = 0;
  for (unsigned int i = 0; i < n && msgs != NULL && claimed == 0; i++)
    claimed = dp_preload_claim(fd, msgs[i].msg_hdr.msg_name);
  if (n == 0 || msgs == NULL)
    claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->sendmmsg(fd, msgs, n, flags);
  if (claimed < 0)
    return -1;
  unsigned int done = 0;
  int saved = errno;
  for (; done < n && done < UIO_MAXIOV; done++) {
    name_destination(fd, msgs[done].msg_hdr.msg_name, msgs[done].msg_hdr.msg_namelen);
    ssize_t sent = dtlssendmsg(fd, &msgs[done].msg_hdr, flags);
    if (sent < 0)
      break;
    msgs[done].msg_len = (unsigned int)sent;
  }
  if (done > 0)
    errno = saved; /* the failure of a later one is for the next call */
  return done > 0 || n == 0 ? (int)done : -1;
}

/* The first datagram as the flags say (it may block), the rest only if
 * already there: MSG_WAITFORONE's behaviour, which is what programs ask
 * for.  The timeout is not applied (see dtlsplex-run(1), limits). */
EXPORT int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags, struct timespec *timeout) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->recvmmsg(fd, msgs, n, flags, timeout);
  if (claimed < 0)
    return -1;
  unsigned int done = 0;
  int saved = errno;
  for (; done < n && done < UIO_MAXIOV; done++) {
    int these = done == 0 ? flags & ~MSG_WAITFORONE : flags | MSG_DONTWAIT;
    ssize_t got = dtlsrecvmsg(fd, &msgs[done].msg_hdr, these);
    if (got < 0)
      break;
    msgs[done].msg_len = (unsigned int)got;
  }
  if (done > 0)
    errno = saved;
  return done > 0 || n == 0 ? (int)done : -1;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *src_len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->recvfrom(fd, buf, len, flags, src, src_len);
  return claimed < 0 ? -1 : dtlsrecvfrom(fd, buf, len, flags, src, src_len);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->recv(fd, buf, len, flags);
  return claimed < 0 ? -1 : dtlsrecvfrom(fd, buf, len, flags, NULL, NULL);
}

EXPORT ssize_t read(int fd, void *buf, size_t len) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->read(fd, buf, len);
  return claimed < 0 ? -1 : dtlsrecvfrom(fd, buf, len, 0, NULL, NULL);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  int claimed = dp_preload_claim(fd, NULL);
  if (claimed == 0)
    return dp_sys()->recvmsg(fd, msg, flags);
  return claimed < 0 ? -1 : dtlsrecvmsg(fd, msg, flags);
}

/* _FORTIFY_SOURCE's checked entry points: glibc's own go to its internal
 * calls, past everything above. */

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buf_len, int flags, struct sockaddr *src,
                              socklen_t *src_len) {
  if (len > buf_len)
    __chk_fail();
  return recvfrom(fd, buf, len, flags, src, src_len);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buf_len, int flags) {
  if (len > buf_len)
    __chk_fail();
  return recv(fd, buf, len, flags);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buf_len) {
  if (len > buf_len)
    __chk_fail();
  return read(fd, buf, len);
}

/* A server's socket is selected by the port it binds: attached at once, so
 * that it is ready before the program first waits on it. */
EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  int r = dp_sys()->bind(fd, addr, len);
  if (r != 0 || kind_of(fd) != FD_UDP || !selected(fd, addr))
    return r;
  return attach(fd) == 0 ? 0 : -1;
}

/* New descriptors: whatever their number stood for before (a close this
 * library did not see, a socket's number reused) is forgotten. */
static int fresh(int fd) {
  if (fd >= 0)
    dp_descriptor_reused(fd);
  return fd;
}

EXPORT int socket(int domain, int type, int protocol) { return fresh(dp_sys()->socket(domain, type, protocol)); }

EXPORT int socketpair(int domain, int type, int protocol, int sv[2]) {
  int r = dp_sys()->socketpair(domain, type, protocol, sv);
  if (r == 0)
    fresh(sv[0]), fresh(sv[1]);
  return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len) { return fresh(dp_sys()->accept(fd, addr, len)); }

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  return fresh(dp_sys()->accept4(fd, addr, len, flags));
}

EXPORT int dup(int fd) { return fresh(dp_sys()->dup(fd)); }

/* fcntl's third argument is an int or a pointer: passed on as a pointer,
 * which carries either in the same register. */
EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  int r = dp_sys()->fcntl(fd, cmd, arg);
  return cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC ? fresh(r) : r;
}
