/* The sans-I/O core of one attached socket: datagrams in (with the time) ->
 * datagrams out (through a send function), application data, events.  It
 * never touches a socket or reads a clock, so that tests can drive it with
 * in-memory datagrams and a simulated clock. */
#ifndef DTLSPLEX_ENDPOINT_H
#define DTLSPLEX_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "addr.h"
#include "config.h"
#include "dgram_bio.h"

typedef struct dp_endpoint dp_endpoint;

typedef struct dp_event {
  int event; /* DTLSPLEX_EVENT_* */
  int error;
  dp_addr peer;
} dp_event;

/* Most decrypted datagrams held for dtlsrecvfrom; more are dropped, as a full
 * socket buffer drops them. */
#define DP_RECV_QUEUE_MAX 4096

/* Addresses given to the endpoint are already in the socket's family (see
 * dp_addr_from_sockaddr).  NULL with errno ENOMEM. */
dp_endpoint *dp_endpoint_new(dtlsplex_config *cfg, dp_send_fn send, void *send_arg);
/* New handshakes use cfg from now on (its certificate, CA, PSKs, verify
 * mode, role, limits, timeouts and callbacks); sessions already made go on
 * with what they were made with, and cookies already sent still verify.
 * The caller keeps the old configuration alive while the endpoint lives.
 * 0, or -ENOMEM (the endpoint keeps its old configuration). */
int dp_endpoint_reconfigure(dp_endpoint *ep, dtlsplex_config *cfg);
/* Sends close_notify to established peers and frees everything. */
void dp_endpoint_free(dp_endpoint *ep);

/* Times are milliseconds of wall-clock time, the clock libssl's DTLS timers
 * use, so that both agree and fleets agree on cookie periods. */

/* One datagram from the network, which arrived at local (NULL: not known).
 * A session it creates answers from there (see dp_local). */
void dp_endpoint_read_pkt(dp_endpoint *ep, const dp_addr *from, const dp_local *local, const uint8_t *data,
                          size_t len, uint64_t now);
/* Application data to a peer, from source (NULL: the session's own address;
 * a handshake this starts takes source as its own; -EINVAL if the session
 * runs from another address).  Returns len when sent (or queued, if
 * queue_if_handshaking and a handshake is under way or was started), or:
 * -EINPROGRESS: a handshake is under way (was started) and nothing was queued;
 * -EMSGSIZE, -EAGAIN (queue full or limits), -ENOTCONN (no session, server-only role),
 * -ENOMEM, -ETIMEDOUT/-ECONNREFUSED/-EPROTO/-EACCES (the handshake with that
 * peer failed; reported once), or a send error. */
ssize_t dp_endpoint_write_pkt(dp_endpoint *ep, const dp_addr *to, const dp_local *source, const void *buf,
                              size_t len, int queue_if_handshaking, uint64_t now);
/* The earliest time handle_expiry may have work, or UINT64_MAX.  It may be
 * early: data moves an established session's deadlines later without
 * updating the timer order (handle_expiry then finds nothing to do). */
uint64_t dp_endpoint_get_expiry(const dp_endpoint *ep);
/* The same, brought up to date first: for a caller that would pay for an
 * early timer (a wait that must leave the kernel for it). */
uint64_t dp_endpoint_settle_expiry(dp_endpoint *ep);
/* Whether a handshake is under way: its retransmissions and deadline need
 * handle_expiry on time.  Without one, the timers left (idle expiry, buffer
 * release, forgetting failures) are housekeeping that may run late. */
int dp_endpoint_handshaking(const dp_endpoint *ep);
void dp_endpoint_handle_expiry(dp_endpoint *ep, uint64_t now);

/* Takes (or with peek, copies) the oldest decrypted datagram: returns its full
 * length, scatters what fits over iov, and sets *from and *local (where it
 * arrived; either may be NULL).  -EAGAIN if none; -ENOMEM instead, once,
 * when a datagram from a peer was lost for want of memory since. */
ssize_t dp_endpoint_recvmsg(dp_endpoint *ep, const struct iovec *iov, size_t iovcnt, int peek, dp_addr *from,
                            dp_local *local);
/* The same into one buffer of len bytes. */
static inline ssize_t dp_endpoint_recv(dp_endpoint *ep, void *buf, size_t len, int peek, dp_addr *from) {
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  return dp_endpoint_recvmsg(ep, &iov, 1, peek, from, NULL);
}
size_t dp_endpoint_pending(const dp_endpoint *ep);
/* Takes the oldest event; 1 if there was one. */
int dp_endpoint_next_event(dp_endpoint *ep, dp_event *out);
int dp_endpoint_has_events(const dp_endpoint *ep);

/* Ends a client handshake with peer that is under way, with err (an ICMP
 * error the kernel reported for it).  Returns 1 if there was one: the
 * failure is then reported like any other (write_pkt, take_failure). */
int dp_endpoint_fail_handshake(dp_endpoint *ep, const dp_addr *peer, int err, uint64_t now);
/* The errno of a failed client handshake with peer not yet reported, which
 * this reports (the next write_pkt starts afresh), or 0. */
int dp_endpoint_take_failure(dp_endpoint *ep, const dp_addr *peer);
/* DTLSPLEX_STATE_* of the peer, or 0 if unknown; *error for FAILED. */
int dp_endpoint_peer_state(dp_endpoint *ep, const dp_addr *peer, int *error);
/* 0, or -ENOENT. */
int dp_endpoint_close(dp_endpoint *ep, const dp_addr *peer);
/* 0, or -EISCONN (a session exists), -ENOMEM, -EAGAIN (table full). */
int dp_endpoint_set_peer_name(dp_endpoint *ep, const dp_addr *peer, const char *name);
/* The peer's session, or NULL (for tests: the session's own state). */
struct dp_session *dp_endpoint_session(dp_endpoint *ep, const dp_addr *peer);
/* 0, or -ENOENT. */
int dp_endpoint_peer_info(dp_endpoint *ep, const dp_addr *peer, struct dtlsplex_peer_info *out);
void dp_endpoint_stats(const dp_endpoint *ep, struct dtlsplex_stats *out);

#endif
