/* Which descriptor is which attached socket, and taking one for a call.
 *
 * The state belongs to the socket, not to a descriptor number:
 * - The library does its I/O on a descriptor of its own (a dup made at
 *   attach), so nothing the program does to its numbers redirects it.
 * - A socket is known by its inode.  A dup of an attached socket is the same
 *   socket: the first call on it finds it by inode.
 * - The library's close(), dup2() and dup3() see the program give up an
 *   attached descriptor: when the last one goes, the socket is detached
 *   (close_notify to its peers), so a number the kernel hands out again is
 *   unattached.  attach also notices a number whose socket changed behind
 *   its back (a close the library did not see).
 * - After fork() the child has no attachment.  Its copy of the sessions'
 *   keys and record numbers must never send: two processes would encrypt
 *   under the same AEAD nonces.  The child's registry starts empty. */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "socket.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static dp_socket **registry; /* indexed by the program's descriptor numbers */
static size_t registry_cap;
static dp_socket *live;         /* every attached socket */
static atomic_uint descriptors; /* entries in registry: close() looks only while there are any */
/* One bit per descriptor number below ATTACHED_BITS that has an entry, so
 * that close() of any other descriptor takes no lock, not even in a signal
 * handler that interrupted a call holding registry_lock. */
#define ATTACHED_BITS 65536
static atomic_uchar attached[ATTACHED_BITS / 8];

static int maybe_attached(int fd) {
  return fd >= ATTACHED_BITS || (atomic_load(&attached[fd / 8]) & (1u << (fd % 8))) != 0;
}

/* A page the kernel zeroes in a child (MADV_WIPEONFORK), so that a call
 * notices a fork without a system call, even one made without the atfork
 * handlers (_Fork, a raw clone). */
static volatile unsigned char *fork_canary;
/* What a child inherited, kept reachable and never used: its locks may be
 * held by threads that do not exist in the child. */
static dp_socket **inherited_registry;
static dp_socket *inherited_live;

static int (*next_close)(int);
static int (*next_dup2)(int, int);
static int (*next_dup3)(int, int, int);
static int (*next_connect)(int, const struct sockaddr *, socklen_t);
static int (*next_setsockopt)(int, int, int, const void *, socklen_t);
static int (*next_getsockopt)(int, int, int, void *, socklen_t *);

static void forget_inherited(void) {
  /* The library's own descriptors go (close is async-signal-safe): the
   * socket must not stay bound through them once both processes have
   * closed theirs. */
  for (dp_socket *s = live; s != NULL; s = s->next_live) {
    dp_real_close(s->fd);
    dp_real_close(s->wake_fd);
    dp_event_fd_close(s);
  }
  inherited_registry = registry;
  inherited_live = live;
  registry = NULL;
  registry_cap = 0;
  live = NULL;
  atomic_store(&descriptors, 0);
  for (size_t i = 0; i < sizeof attached; i++)
    atomic_store(&attached[i], 0);
  if (fork_canary != NULL)
    *fork_canary = 1;
}

static int in_forked_child(void) { return fork_canary != NULL && *fork_canary == 0; }

/* A fork that ran no atfork handlers: registry_lock may be held by a thread
 * the child does not have, so it starts afresh. */
static void check_fork(void) {
  if (in_forked_child()) {
    forget_inherited();
    pthread_mutex_init(&registry_lock, NULL);
  }
}

static void before_fork(void) { pthread_mutex_lock(&registry_lock); }
static void after_fork_in_parent(void) { pthread_mutex_unlock(&registry_lock); }
/* The child's one thread is the one that took the lock in before_fork: it
 * releases it (initialising a locked mutex again is undefined, and
 * ThreadSanitizer would go on seeing it held). */
static void after_fork_in_child(void) {
  pthread_mutex_unlock(&registry_lock);
  forget_inherited();
}

__attribute__((constructor)) static void registry_init(void) {
  next_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
  next_dup2 = (int (*)(int, int))dlsym(RTLD_NEXT, "dup2");
  next_dup3 = (int (*)(int, int, int))dlsym(RTLD_NEXT, "dup3");
  next_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
  next_setsockopt = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
  next_getsockopt = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
  long page_size = sysconf(_SC_PAGESIZE);
  void *page = mmap(NULL, (size_t)page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page != MAP_FAILED && madvise(page, (size_t)page_size, MADV_WIPEONFORK) == 0) {
    fork_canary = page;
    *fork_canary = 1;
  } else if (page != MAP_FAILED) {
    munmap(page, (size_t)page_size); /* before Linux 4.14: the atfork handler alone */
  }
  pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

int dp_real_close(int fd) { return next_close != NULL ? next_close(fd) : (int)syscall(SYS_close, fd); }

int dp_real_setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
  return next_setsockopt != NULL ? next_setsockopt(fd, level, name, value, len)
                                 : (int)syscall(SYS_setsockopt, fd, level, name, value, len);
}

int dp_real_getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
  return next_getsockopt != NULL ? next_getsockopt(fd, level, name, value, len)
                                 : (int)syscall(SYS_getsockopt, fd, level, name, value, len);
}

/* The socket's identity: 0, or -EBADF, -ENOTSOCK. */
static int identify(int fd, dev_t *dev, ino_t *ino) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0)
    return -EBADF;
  if (!S_ISSOCK(st.st_mode))
    return -ENOTSOCK;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return 0;
}

/* The helpers below run under registry_lock. */

static int reserve_slot(int fd) {
  if ((size_t)fd < registry_cap)
    return 0;
  size_t cap = registry_cap ? registry_cap : 64;
  while (cap <= (size_t)fd)
    cap *= 2;
  dp_socket **grown = realloc(registry, cap * sizeof *grown);
  if (grown == NULL)
    return -ENOMEM;
  memset(grown + registry_cap, 0, (cap - registry_cap) * sizeof *grown);
  registry = grown;
  registry_cap = cap;
  return 0;
}

static void set_slot(int fd, dp_socket *s) {
  registry[fd] = s;
  s->descriptors++;
  atomic_fetch_add(&descriptors, 1);
  if (fd < ATTACHED_BITS)
    atomic_fetch_or(&attached[fd / 8], (unsigned char)(1u << (fd % 8)));
}

static dp_socket *clear_slot(int fd) {
  dp_socket *s = registry[fd];
  registry[fd] = NULL;
  if (fd < ATTACHED_BITS)
    atomic_fetch_and(&attached[fd / 8], (unsigned char)~(1u << (fd % 8)));
  s->descriptors--;
  atomic_fetch_sub(&descriptors, 1);
  return s;
}

static dp_socket *find_live(dev_t dev, ino_t ino) {
  for (dp_socket *s = live; s != NULL; s = s->next_live)
    if (s->dev == dev && s->ino == ino)
      return s;
  return NULL;
}

static void remove_live(dp_socket *s) {
  for (dp_socket **p = &live; *p != NULL; p = &(*p)->next_live) {
    if (*p == s) {
      *p = s->next_live;
      return;
    }
  }
}

/* A descriptor of the program's, other than closing, that names s's socket
 * although no call has shown it to the library yet (a dup made before its
 * first use), or -1.  Without /proc (a chroot) there is no way to tell. */
static int unseen_descriptor(const dp_socket *s, int closing) {
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL)
    return -1;
  int found = -1;
  struct dirent *e;
  while (found < 0 && (e = readdir(dir)) != NULL) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    struct stat st;
    if (*end != '\0' || end == e->d_name || fd == closing || fd == s->fd || fd == dirfd(dir) ||
        fd > INT_MAX)
      continue;
    if (fstat((int)fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev && st.st_ino == s->ino)
      found = (int)fd;
  }
  closedir(dir);
  return found;
}

/* fd no longer names s: if it was the last descriptor, s leaves the live
 * list and is returned for the caller to detach (outside the lock). */
static dp_socket *drop_descriptor(int fd) {
  dp_socket *s = clear_slot(fd);
  int other = s->descriptors == 0 ? unseen_descriptor(s, fd) : -1;
  if (other >= 0 && reserve_slot(other) == 0) /* the socket lives on through it */
    set_slot(other, s);
  if (s->descriptors == 0) {
    remove_live(s);
    return s;
  }
  if (atomic_load(&s->user_fd) == fd) /* the event callback gets a descriptor still open */
    for (size_t i = 0; i < registry_cap; i++)
      if (registry[i] == s)
        atomic_store(&s->user_fd, (int)i);
  return NULL;
}

int dp_registry_add(int fd, dp_socket *s) {
  check_fork();
  dp_socket *stale = NULL;
  pthread_mutex_lock(&registry_lock);
  int err = reserve_slot(fd);
  if (err == 0 && registry[fd] != NULL) {
    if (registry[fd]->dev == s->dev && registry[fd]->ino == s->ino)
      err = -EEXIST;
    else /* closed behind the library's back, and the number reused */
      stale = drop_descriptor(fd);
  }
  dp_socket *same = err == 0 ? find_live(s->dev, s->ino) : NULL;
  if (same != NULL) { /* a dup of an attached socket: it is that socket */
    if (registry[fd] == NULL)
      set_slot(fd, same);
    err = -EEXIST;
  }
  if (err == 0) {
    set_slot(fd, s);
    s->next_live = live;
    live = s;
  }
  pthread_mutex_unlock(&registry_lock);
  if (stale != NULL)
    dp_socket_detach(stale);
  return err;
}

dp_socket *dp_registry_remove(int fd) {
  check_fork();
  dp_socket *s = NULL;
  pthread_mutex_lock(&registry_lock);
  if (fd >= 0 && (size_t)fd < registry_cap && registry[fd] != NULL) {
    s = registry[fd];
    for (size_t i = 0; i < registry_cap; i++)
      if (registry[i] == s)
        clear_slot((int)i);
    remove_live(s);
  }
  pthread_mutex_unlock(&registry_lock);
  return s;
}

void dp_socket_free(dp_socket *s) {
  dtlsplex_config_free(s->cfg); /* NULL until attached */
  for (size_t i = 0; i < s->n_retired; i++)
    dtlsplex_config_free(s->retired[i]);
  free(s->retired);
  free(s->rx);
  free(s->tx);
  free(s->cork);
  dp_event_fd_close(s);
  if (s->fd >= 0)
    dp_real_close(s->fd);
  if (s->wake_fd >= 0)
    dp_real_close(s->wake_fd);
  pthread_cond_destroy(&s->left_kernel);
  pthread_cond_destroy(&s->wake_delivered);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void dp_socket_release(dp_socket *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1)
    dp_socket_free(s);
}

/* fd's socket with a reference taken, or NULL with errno. */
static dp_socket *lookup(int fd) {
  dp_socket *s = NULL;
  pthread_mutex_lock(&registry_lock);
  if (fd >= 0 && (size_t)fd < registry_cap && registry[fd] != NULL) {
    s = registry[fd];
    atomic_fetch_add(&s->refs, 1);
  }
  pthread_mutex_unlock(&registry_lock);
  if (s != NULL)
    return s;
  /* A descriptor not seen before may be a dup of an attached socket. */
  dev_t dev;
  ino_t ino;
  int err = identify(fd, &dev, &ino);
  if (err != 0) {
    errno = -err;
    return NULL;
  }
  pthread_mutex_lock(&registry_lock);
  s = find_live(dev, ino);
  if (s != NULL) {
    atomic_fetch_add(&s->refs, 1);
    if (reserve_slot(fd) == 0 && registry[fd] == NULL)
      set_slot(fd, s);
  }
  pthread_mutex_unlock(&registry_lock);
  if (s == NULL)
    errno = EBADF;
  return s;
}

dp_socket *dp_socket_acquire(int fd) {
  check_fork();
  dp_socket *s = lookup(fd);
  if (s == NULL)
    return NULL;
  pthread_mutex_lock(&s->lock);
  if (s->detached) {
    pthread_mutex_unlock(&s->lock);
    dp_socket_release(s);
    errno = EBADF;
    return NULL;
  }
  return s;
}

void dp_socket_detach(dp_socket *s) {
  pthread_mutex_lock(&s->lock);
  s->detached = 1;
  dp_pktinfo_detach(s);
  dp_io_defer_sends(s);
  dp_endpoint_free(s->core); /* close_notify to every established peer */
  dp_io_send_deferred(s);
  s->core = NULL;
  dp_wake_waiters(s);
  /* Wait until a thread in the kernel's receive is back (it would otherwise
   * go on reading the socket), waking it again every 100 ms in case a
   * wake-up was lost. */
  for (int waited_ms = 0; s->rx_in_kernel && waited_ms < DP_DETACH_WAIT_MS; waited_ms += 100) {
    s->kernel_woken = 0;
    dp_wake_kernel_waiter(s);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->left_kernel, &s->lock, &until);
  }
  pthread_mutex_unlock(&s->lock);
  dp_socket_release(s); /* the registry's reference */
}

/* The program gives up descriptor fd (close, or dup2/dup3 onto it). */
static void forget_descriptor(int fd) {
  if (fd < 0 || atomic_load_explicit(&descriptors, memory_order_relaxed) == 0 || in_forked_child() ||
      !maybe_attached(fd))
    return;
  dp_socket *last = NULL;
  pthread_mutex_lock(&registry_lock);
  if ((size_t)fd < registry_cap && registry[fd] != NULL)
    last = drop_descriptor(fd);
  pthread_mutex_unlock(&registry_lock);
  if (last != NULL)
    dp_socket_detach(last);
}

/* The program's close(2), dup2(2), dup3(2) and connect(2) come here first
 * (the shared library's definitions come before the C library's), so that
 * closing an attached socket detaches it.  Only a program with attached
 * descriptors takes the lock. */
/* What else keeps state by descriptor number learns here that a number is
 * about to stand for something else: the preload library (preload.c). */
__attribute__((weak)) void dp_descriptor_reused(int fd) { (void)fd; }

__attribute__((visibility("default"))) int close(int fd) {
  dp_descriptor_reused(fd);
  forget_descriptor(fd);
  return dp_real_close(fd);
}

/* Whether dup2/dup3 will replace newfd: only when oldfd is open. */
static void before_dup_onto(int oldfd, int newfd) {
  if (oldfd != newfd)
    dp_descriptor_reused(newfd);
  if (oldfd != newfd && atomic_load_explicit(&descriptors, memory_order_relaxed) != 0 &&
      fcntl(oldfd, F_GETFD) >= 0)
    forget_descriptor(newfd);
}

__attribute__((visibility("default"))) int dup2(int oldfd, int newfd) {
  before_dup_onto(oldfd, newfd);
  if (next_dup2 != NULL)
    return next_dup2(oldfd, newfd);
  if (oldfd == newfd)
    return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;
  return (int)syscall(SYS_dup3, oldfd, newfd, 0);
}

__attribute__((visibility("default"))) int dup3(int oldfd, int newfd, int flags) {
  before_dup_onto(oldfd, newfd);
  return next_dup3 != NULL ? next_dup3(oldfd, newfd, flags) : (int)syscall(SYS_dup3, oldfd, newfd, flags);
}

/* A connected socket hears only its peer, so a thread in the kernel's
 * receive can no longer be woken by a datagram from the socket itself: it is
 * woken now, while it still can, and later waits happen in poll.  After a
 * disconnect (AF_UNSPEC) the next blocking receive finds out again. */
__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  dp_socket *s = NULL;
  if (atomic_load_explicit(&descriptors, memory_order_relaxed) != 0 && !in_forked_child()) {
    int saved = errno;
    if ((s = dp_socket_acquire(fd)) != NULL) {
      dp_wake_kernel_waiter(s);
      s->self_known = -1;
      pthread_mutex_unlock(&s->lock);
    }
    errno = saved;
  }
  int r = next_connect != NULL ? next_connect(fd, addr, len) : (int)syscall(SYS_connect, fd, addr, len);
  if (s != NULL) {
    int err = errno;
    pthread_mutex_lock(&s->lock);
    if (!s->detached)
      dp_socket_learn_peer(s);
    dp_socket_finish(s);
    errno = err;
  }
  return r;
}

/* The socket of an attached descriptor, locked, for a call on one of the
 * options the program sees as its own; NULL (errno unchanged) otherwise. */
static dp_socket *acquire_for_option(int fd, int level, int name) {
  if (!dp_pktinfo_option(level, name) || atomic_load_explicit(&descriptors, memory_order_relaxed) == 0 ||
      in_forked_child())
    return NULL;
  int saved = errno;
  dp_socket *s = dp_socket_acquire(fd);
  errno = saved;
  return s;
}

/* Ends an option call with its result (0 or -errno). */
static int finish_option(dp_socket *s, int r) {
  dp_socket_finish(s);
  return r == 0 ? 0 : dp_fail(-r);
}

/* IP_PKTINFO and IPV6_RECVPKTINFO read and set the program's own setting:
 * the library may have turned them on for itself (see pktinfo.c). */
__attribute__((visibility("default"))) int setsockopt(int fd, int level, int name, const void *value,
                                                      socklen_t len) {
  dp_socket *s = acquire_for_option(fd, level, name);
  return s == NULL ? dp_real_setsockopt(fd, level, name, value, len)
                   : finish_option(s, dp_pktinfo_setsockopt(s, fd, level, name, value, len));
}

__attribute__((visibility("default"))) int getsockopt(int fd, int level, int name, void *value, socklen_t *len) {
  dp_socket *s = acquire_for_option(fd, level, name);
  return s == NULL ? dp_real_getsockopt(fd, level, name, value, len)
                   : finish_option(s, dp_pktinfo_getsockopt(s, fd, level, name, value, len));
}

/* Unlocks, then runs the event callback for what happened meanwhile: the
 * callback may call back into the library. */
void dp_unlock_and_dispatch(dp_socket *s) {
  if (s->core == NULL || !dp_endpoint_has_events(s->core)) { /* most calls */
    pthread_mutex_unlock(&s->lock);
    return;
  }
  dp_event batch[16];
  for (;;) {
    size_t n = 0;
    while (n < 16 && s->core != NULL && dp_endpoint_next_event(s->core, &batch[n]))
      n++;
    const dtlsplex_config *cfg = s->cfg; /* dtlsplex_reconfigure may replace it once unlocked */
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n && cfg->event_fn != NULL; i++)
      cfg->event_fn(atomic_load(&s->user_fd), batch[i].event, &batch[i].peer.u.sa, batch[i].peer.len,
                    batch[i].error, cfg->event_arg);
    if (n < 16)
      return;
    pthread_mutex_lock(&s->lock);
  }
}

void dp_socket_finish(dp_socket *s) {
  int err = errno; /* the call's own result, whatever the wake-ups and callbacks do */
  dp_wake_waiters_if_needed(s);
  /* A thread waiting in the kernel runs no timers: a handshake begun
   * meanwhile needs it back in poll. */
  if (s->rx_in_kernel && s->core != NULL && dp_endpoint_handshaking(s->core))
    dp_wake_kernel_waiter(s);
  dp_event_fd_update(s);
  dp_unlock_and_dispatch(s);
  dp_socket_release(s);
  errno = err;
}
