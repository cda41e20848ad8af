/* The socket layer's shared state: one attached socket, its receive and send
 * batches, and what its threads wait on.  The layer is split by job:
 *   registry.c   which descriptor is which attached socket; taking one for a call
 *   dgram_io.c   datagrams between the kernel and the endpoint core
 *   wait.c       waiting for datagrams, timers and wake-ups
 *   pktinfo.c    this side's address of each datagram (IP_PKTINFO, IPV6_PKTINFO)
 *   socket.c     the public calls
 * Everything DTLS happens in the endpoint core (endpoint.c). */
#ifndef DTLSPLEX_SOCKET_H
#define DTLSPLEX_SOCKET_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "addr.h"
#include "config.h"
#include "endpoint.h"

#define READ_BURST 64 /* datagrams read per call before the caller gets a turn */
#define RX_BATCH 16   /* datagrams per recvmmsg */
#define TX_BATCH 16   /* datagrams per sendmmsg */
#define DP_DETACH_WAIT_MS 1000

/* One control message choosing a datagram's source (see pktinfo.c). */
typedef union dp_source_cmsg {
  struct cmsghdr header;
  uint8_t bytes[CMSG_SPACE(sizeof(struct in6_pktinfo))];
} dp_source_cmsg;

/* Room for where a datagram arrived (IPV6_PKTINFO and IP_PKTINFO), and for
 * a few more control messages the program may have enabled. */
#define RX_CONTROL 256

/* Receive buffers: a whole datagram of any size per slot.  Mostly untouched
 * virtual memory: the kernel writes only what arrives. */
typedef struct dp_rx {
  struct mmsghdr msgs[RX_BATCH];
  struct iovec iov[RX_BATCH];
  struct sockaddr_storage from[RX_BATCH];
  union {
    struct cmsghdr header;
    uint8_t bytes[RX_CONTROL];
  } control[RX_BATCH];
  uint8_t data[RX_BATCH][65536];
} dp_rx;

/* Datagrams the library sends of its own accord (handshake flights, cookies,
 * retransmissions, close_notify) while it works through a batch: sent
 * together with sendmmsg.  Application data goes out at once, so that
 * dtlssendto can report the kernel's answer. */
/* An application datagram the kernel had no room for: a blocking caller
 * waits (without the lock) until it can go.  Each caller gets its own (made
 * only when a send stalls): another thread's write, while this one waits,
 * cannot take its place and leave a datagram reported sent that never went. */
typedef struct dp_stalled {
  size_t len;
  dp_addr to;
  dp_local source;
  uint8_t data[DTLSPLEX_MTU_MAX];
} dp_stalled;

typedef struct dp_tx {
  dp_stalled **stash; /* where the writing caller takes its stalled datagram, while it writes */
  unsigned int n;
  struct mmsghdr msgs[TX_BATCH];
  struct iovec iov[TX_BATCH];
  dp_addr to[TX_BATCH];
  dp_source_cmsg control[TX_BATCH];
  uint8_t data[TX_BATCH][4096]; /* larger datagrams (a large MTU) are sent at once */
} dp_tx;

typedef struct dp_socket {
  /* The library's own descriptor of the socket (a dup), for all its I/O: the
   * program's descriptors may be closed, duplicated or their numbers reused,
   * and this one stays the socket's. */
  int fd;
  atomic_int user_fd; /* a descriptor of the program's, passed to the event callback */
  dev_t dev;         /* the socket's identity (its inode), shared by every dup */
  ino_t ino;
  unsigned int descriptors;  /* the program's descriptors known to be this socket; under registry_lock */
  struct dp_socket *next_live; /* the registry's list of attached sockets */
  int family;
  int v6only;        /* IPV6_V6ONLY: IPv4 destinations are unreachable */
  int connected;     /* connect()ed to peer: the only address it hears */
  dp_addr peer;
  int icmp_error;    /* an ICMP error the kernel reported on the connected socket, not yet handled */
  int mute;          /* drop the library's datagrams: the socket lost its local port */
  /* A socket bound to a wildcard address, not connected: each peer hears
   * back from the address it reached (see pktinfo.c). */
  int answer_from_arrival;
  int user_pktinfo, user_recvpktinfo; /* the program's own IP_PKTINFO and IPV6_RECVPKTINFO */
  int ev_epoll, ev_timer, ev_data; /* dtlsplex_event_fd's descriptors (see event_fd.c); -1 until asked */
  uint64_t ev_armed;                /* the deadline the timer is armed at */
  int ev_data_set;                  /* the eventfd says data is queued */
  dtlsplex_config **retired; /* configurations replaced by dtlsplex_reconfigure: sessions made */
  size_t n_retired;          /* with them may still call back into them */
  uint8_t *cork;     /* MSG_MORE: data held for the next datagram, to cork_to */
  size_t cork_len;
  dp_addr cork_to;
  dp_local cork_source;
  /* The registry's, plus one per call in progress.  Taken under
   * registry_lock (while the registry still holds its own), dropped without
   * it: only the last drop, after the registry let go, frees the socket. */
  atomic_uint refs;
  int detached;
  int wake_fd;       /* wakes threads waiting in poll: detach, data queued, an earlier timer */
  unsigned int waiters;      /* threads in poll */
  uint64_t waiters_deadline; /* the earliest time one of them wakes by itself */
  int data_untold;   /* datagrams went to the core since the waiters were last woken */
  unsigned int wake_round;  /* wake-ups written to wake_fd (see waiters.c) */
  unsigned int wake_owed;   /* waiters the latest one is owed to that have not left poll */
  pthread_cond_t wake_delivered; /* signalled when wake_owed falls to 0 */
  dtlsplex_config *cfg;
  dp_endpoint *core;
  pthread_mutex_t lock;
  dp_rx *rx;
  dp_tx *tx;
  int defer_sends;   /* gather the library's own datagrams in tx */
  int rx_in_kernel;  /* a thread waits in recvmmsg on rx, without the lock */
  pthread_cond_t left_kernel; /* signalled when it is back */
  int kernel_woken;  /* a wake-up datagram went to that thread */
  int self_known;    /* 0 not yet learnt; 1 self reaches the socket; -1 it cannot be woken so */
  dp_addr self;      /* where a datagram reaches this socket (len 0 until learnt) */
} dp_socket;


static inline int dp_fail(int err) {
  errno = err;
  return -1;
}

static inline uint64_t dp_now_ms(void) {
  /* libssl's DTLS timers run on wall-clock time; the core must agree. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* registry.c */
/* Registers s (its identity filled in) as fd's socket: 0, or -ENOMEM, or
 * -EEXIST if fd, or another descriptor of the same socket, is attached. */
int dp_registry_add(int fd, dp_socket *s);
/* Takes fd's socket, with every descriptor of it, out of the registry (the
 * caller gets the registry's reference), or NULL. */
dp_socket *dp_registry_remove(int fd);
/* Takes a reference to fd's socket and locks it, or NULL with errno EBADF
 * (not attached; in a forked child nothing is), or ENOTSOCK. */
dp_socket *dp_socket_acquire(int fd);
/* Detaches a socket the registry no longer holds: close_notify to its
 * peers, wakes its waiters (waiting up to DP_DETACH_WAIT_MS for one in the
 * kernel's receive), frees its state, and drops the registry's reference. */
void dp_socket_detach(dp_socket *s);
/* close(2), setsockopt(2) and getsockopt(2) themselves, past the library's
 * own (see registry.c): the library's calls on its own descriptor. */
int dp_real_close(int fd);
int dp_real_setsockopt(int fd, int level, int name, const void *value, socklen_t len);
int dp_real_getsockopt(int fd, int level, int name, void *value, socklen_t *len);
/* Called as close, dup2 or dup3 is about to give fd's number a new meaning;
 * a no-op unless the preload library defines it (preload.c). */
void dp_descriptor_reused(int fd);

/* event_fd.c */
/* The socket's event descriptor, made on the first call: >= 0, or -errno. */
int dp_event_fd_open(dp_socket *s);
/* Brings it up to date with the core: data queued, next deadline.  At the
 * end of every call, under the lock. */
void dp_event_fd_update(dp_socket *s);
void dp_event_fd_close(dp_socket *s);

/* socket.c */
/* Learns the socket's connected peer (if any) after attach or connect(2).
 * A socket disconnected (AF_UNSPEC) that lost its local port with it gets a
 * fresh endpoint: its peers know it by the old port. */
void dp_socket_learn_peer(dp_socket *s);
/* Ends a call: wakes waiters that need it, unlocks, dispatches events, and
 * drops the call's reference.  errno is as it was before. */
void dp_socket_finish(dp_socket *s);
void dp_socket_release(dp_socket *s);
void dp_socket_free(dp_socket *s);
/* Unlocks, then runs the event callback for what happened meanwhile. */
void dp_unlock_and_dispatch(dp_socket *s);

/* dgram_io.c */
void dp_io_init_rx(dp_rx *rx);
void dp_io_prepare_rx(dp_rx *rx, unsigned int n);
/* The endpoint's send function (arg: the dp_socket). */
int dp_io_send(void *arg, const dp_addr *to, const dp_local *source, const uint8_t *data, size_t len);
int dp_io_send_stalled(dp_socket *s, dp_stalled *stalled, int blocking);
void dp_io_feed_rx(dp_socket *s, int n);
int dp_io_read_socket(dp_socket *s, int until_data);
void dp_io_run_timers(dp_socket *s);
/* Notes an ICMP error the kernel reported (ECONNREFUSED, EHOSTUNREACH,
 * ENETUNREACH): on a connected socket it concerns the peer. */
void dp_io_note_icmp(dp_socket *s, int err);
/* Applies a noted ICMP error: it ends a handshake with the peer under way
 * (whose failure is then reported), or waits for the next call to report
 * it, once, as UDP does.  Outside any call into the core. */
void dp_io_apply_icmp(dp_socket *s);
void dp_io_defer_sends(dp_socket *s);
void dp_io_send_deferred(dp_socket *s);
int dp_is_stale_icmp_error(int err);

/* pktinfo.c */
/* Whether (level, name) is one of the options the program sees as its own. */
int dp_pktinfo_option(int level, int name);
/* Reads the program's settings, before dp_pktinfo_update. */
void dp_pktinfo_attach(dp_socket *s);
/* Turns on what the socket needs: at attach, and after connect(2) (a
 * connected socket has one local address). */
void dp_pktinfo_update(dp_socket *s);
/* Leaves the kernel's settings as the program made them. */
void dp_pktinfo_detach(dp_socket *s);
/* Where a received datagram arrived: 1 and *out, or 0 if its control
 * messages do not say. */
int dp_pktinfo_parse(const dp_socket *s, struct msghdr *m, dp_local *out);
/* The control message that sends from source into buf: its length, or 0
 * if source leaves the choice to the kernel. */
size_t dp_pktinfo_source_cmsg(const dp_socket *s, const dp_local *source, dp_source_cmsg *buf);
/* The source a dtlssendmsg to `to` asks for (has_source 0 if none): 0, or
 * -EINVAL (malformed), -EOPNOTSUPP (a control message records cannot
 * carry), -EFAULT. */
int dp_pktinfo_from_program(const dp_socket *s, const struct msghdr *msg, const dp_addr *to, dp_local *out);
/* The control messages the program enabled, for a datagram that arrived
 * at arrival, into msg (msg_controllen, MSG_CTRUNC in msg_flags). */
void dp_pktinfo_to_program(const dp_socket *s, const dp_local *arrival, struct msghdr *msg);
/* setsockopt(2)/getsockopt(2) of a dp_pktinfo_option on descriptor fd of
 * the socket: 0 or -errno. */
int dp_pktinfo_setsockopt(dp_socket *s, int fd, int level, int name, const void *value, socklen_t len);
int dp_pktinfo_getsockopt(dp_socket *s, int fd, int level, int name, void *value, socklen_t *len);

/* wait.c */
void dp_wake_kernel_waiter(dp_socket *s);
int dp_is_blocking(int fd, int flags);
int dp_core_timeout(const dp_socket *s, uint64_t now, int limit_ms);
int dp_wait_socket(dp_socket *s, int limit_ms, int restartable);
int dp_may_wait_in_kernel(dp_socket *s);
void dp_learn_self(dp_socket *s);
int dp_wait_in_kernel(dp_socket *s);
/* SO_RCVTIMEO (or SO_SNDTIMEO) as a deadline for a call that started at
 * started, or UINT64_MAX for none. */
uint64_t dp_socket_deadline(int fd, int option, uint64_t started);

/* waiters.c */
/* Wakes every thread counted a waiter; after a detach, also any thread to
 * come and any poll on wake_fd without counting. */
void dp_wake_waiters(dp_socket *s);
/* Wakes the threads in poll if they should look again: data was queued
 * that they would not see there, or a timer is due before any of them
 * wakes by itself.  Before every release of the lock that may block. */
void dp_wake_waiters_if_needed(dp_socket *s);
/* Counts the calling thread a waiter that will poll wake_fd, with the lock
 * released, until wakes_at at the latest (UINT64_MAX: no limit): 1, and
 * *round for dp_waiter_leave.  Or 0 when it waited (the lock released
 * meanwhile) for a wake-up owed to others, and must look again at the state
 * (detached too) instead of polling. */
int dp_waiter_enter(dp_socket *s, uint64_t wakes_at, unsigned int *round);
/* After the poll, with the lock taken again. */
void dp_waiter_leave(dp_socket *s, uint64_t wakes_at, unsigned int round);

#endif
