/*
 * dtlsplex: DTLS 1.2 as a drop-in for UDP.
 *
 * Attach a UDP socket once with dtlsplex_attach(), then call dtlssendto() and
 * dtlsrecvfrom() where the program called sendto() and recvfrom().  Behind the
 * one socket the library keeps one DTLS session per remote address.
 *
 * Every function returns 0 (or a count) on success and -1 with errno set on
 * failure.  The errno values each function can set are listed at its
 * declaration and in its man page.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef DTLSPLEX_H
#define DTLSPLEX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(DTLSPLEX_BUILDING)
#define DTLSPLEX_API __attribute__((visibility("default")))
#else
#define DTLSPLEX_API
#endif

/* Configuration shared by attached sockets; reference counted. */
typedef struct dtlsplex_config dtlsplex_config;

/* OpenSSL's SSL_CTX, forward-declared so that no OpenSSL header is needed. */
struct ssl_ctx_st;

/* dtlsplex_config_set_verify() modes. */
enum {
  /* Do not check certificates at all (testing only). */
  DTLSPLEX_VERIFY_NONE = 0,
  /* Default. A client verifies the server's certificate chain and that the
   * certificate is for the server: for the name given to
   * dtlsplex_set_peer_name(), or else for the IP address it sends to (an IP
   * subject-alternative name).  A server does not ask for a certificate. */
  DTLSPLEX_VERIFY_PEER = 1,
  /* As PEER, and a server also requires and verifies a client certificate
   * (mutual authentication). */
  DTLSPLEX_VERIFY_REQUIRE = 2,
  /* Or-ed with PEER or REQUIRE: without a name from dtlsplex_set_peer_name(),
   * a client checks the chain only, and accepts any trusted certificate
   * from any address. */
  DTLSPLEX_VERIFY_CHAIN_ONLY = 0x100
};

/* dtlsplex_config_set_role() roles. */
enum {
  DTLSPLEX_ROLE_CLIENT = 1, /* only start handshakes; ignore ClientHellos */
  DTLSPLEX_ROLE_SERVER = 2, /* only accept handshakes; sending to an unknown peer fails */
  DTLSPLEX_ROLE_BOTH = 3    /* default */
};

/* Events passed to the event callback. */
enum {
  DTLSPLEX_EVENT_CONNECTED = 1, /* handshake complete, data may flow */
  DTLSPLEX_EVENT_CLOSED = 2,    /* close_notify received, or dtlsplex_close() */
  DTLSPLEX_EVENT_FAILED = 3,    /* handshake failed or timed out, or the session broke; error says why */
  DTLSPLEX_EVENT_EXPIRED = 4,   /* established, but idle longer than the idle timeout (error 0),
                                   or silent and evicted from a full table (error ENOBUFS) */
  DTLSPLEX_EVENT_REPLACED = 5   /* the peer reconnected; old session dropped */
};

/* Peer states reported by dtlsplex_peer_info(). */
enum {
  DTLSPLEX_STATE_HANDSHAKING = 1,
  DTLSPLEX_STATE_ESTABLISHED = 2,
  DTLSPLEX_STATE_FAILED = 3 /* handshake failed; reported by the next dtlssendto */
};

/* Log levels, most severe first. */
enum {
  DTLSPLEX_LOG_ERROR = 0,
  DTLSPLEX_LOG_WARNING = 1,
  DTLSPLEX_LOG_INFO = 2,
  DTLSPLEX_LOG_DEBUG = 3
};

/*
 * Called after the library has released the socket's lock, so it may call any
 * dtlsplex function.  error is 0, or for FAILED an errno value (ETIMEDOUT,
 * ECONNREFUSED, EPROTO, EACCES).
 */
typedef void (*dtlsplex_event_fn)(int fd, int event, const struct sockaddr *peer,
                                  socklen_t peer_len, int error, void *arg);

/* Called with the socket's lock held: it must not call dtlsplex functions. */
typedef void (*dtlsplex_log_fn)(int level, const char *message, void *arg);

struct dtlsplex_peer_info {
  int state;              /* DTLSPLEX_STATE_* */
  int is_client;          /* 1 if this side started the handshake */
  int error;              /* errno of a failed handshake, else 0 */
  char protocol[16];      /* "DTLSv1.2" once established */
  char cipher[64];        /* OpenSSL cipher name once established */
  char group[32];         /* key exchange group ("x25519", "secp256r1", ...); empty for plain PSK */
  char identity[256];     /* peer certificate subject (one line) or PSK identity */
  unsigned int data_mtu;  /* largest dtlssendto payload, once established */
  int resumed;            /* 1 if the session was resumed (an abbreviated handshake) */
};

struct dtlsplex_stats {
  uint64_t peers;                /* sessions now in the table (any state) */
  uint64_t handshakes_active;    /* of those, still handshaking */
  uint64_t handshakes_ok;
  uint64_t handshakes_failed;    /* failed or timed out */
  uint64_t cookies_sent;         /* HelloVerifyRequests */
  uint64_t datagrams_in;         /* every datagram read from the socket */
  uint64_t datagrams_out;        /* every datagram written to the socket */
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t app_datagrams_in;     /* delivered to dtlsrecvfrom */
  uint64_t app_datagrams_out;    /* sent by dtlssendto */
  uint64_t dropped_no_session;   /* not a handshake, and no session for the address */
  uint64_t dropped_bad_cookie;   /* ClientHello without a valid cookie, or malformed */
  uint64_t dropped_limit;        /* refused because max_peers/max_handshakes was reached */
  uint64_t dropped_bad_record;   /* a session read nothing from it (bad MAC, replay, garbage) */
  uint64_t dropped_queue_full;   /* decrypted data dropped: receive queue full */
  uint64_t expired;              /* established peers forgotten after the idle timeout */
  uint64_t refused_inbound;      /* sessions from addresses this side is the client of: handshakes
                                    refused, or accepted ones dropped when the program sent first */
  uint64_t replacements_unanswered; /* reconnection handshakes dropped after one unanswered flight */
  uint64_t psk_unknown;          /* handshakes failed: the client's PSK identity has no key */
  uint64_t handshakes_resumed;   /* of handshakes_ok, those that resumed a session (the rest were full) */
  uint64_t dropped_source_share; /* ClientHellos (cookie valid) refused: the source held its share */
  uint64_t dropped_handshake_budget; /* ClientHellos (cookie valid) refused: the source's budget spent */
  uint64_t evicted;              /* silent established peers dropped to admit a new client (not in expired) */
  uint64_t sources;              /* sources (address prefixes) now tracked */
};

/*
 * Configuration.  Build it before attaching: every setter fails with EBUSY
 * once the configuration is attached to a socket.
 */

/* Returns NULL with errno ENOMEM (or EPROTO if OpenSSL cannot make a context). */
DTLSPLEX_API dtlsplex_config *dtlsplex_config_new(void);
/* Drops the caller's reference; attached sockets keep theirs.  NULL is a no-op. */
DTLSPLEX_API void dtlsplex_config_free(dtlsplex_config *cfg);
/* EINVAL: NULL argument; EBUSY: attached; ENOENT: file missing;
 * EPROTO: the files do not parse or the key does not match the certificate. */
DTLSPLEX_API int dtlsplex_config_set_certificate(dtlsplex_config *cfg, const char *chain_pem_file,
                                                 const char *key_pem_file);
/* Trust anchors instead of the system store.  Either may be NULL, not both.
 * EINVAL, EBUSY, ENOENT, EPROTO as above. */
DTLSPLEX_API int dtlsplex_config_set_ca(dtlsplex_config *cfg, const char *ca_file, const char *ca_dir);
/* EINVAL: NULL, unknown mode, or CHAIN_ONLY with NONE; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_verify(dtlsplex_config *cfg, int mode);
/* Adds (or replaces, for the same identity) a pre-shared key.  A client
 * presents the first identity added; a server accepts any identity added.
 * Enables the PSK cipher suites unless dtlsplex_config_set_ciphers() was used.
 * EINVAL: NULL, empty or over-long identity (> 128 bytes), key_len 0 or > 64; EBUSY; ENOMEM;
 * EPROTO: OpenSSL refused the PSK cipher list. */
DTLSPLEX_API int dtlsplex_config_set_psk(dtlsplex_config *cfg, const char *identity,
                                         const unsigned char *key, size_t key_len);
/* A server's key store: called during a handshake with the identity a
 * client names (after the keys added with dtlsplex_config_set_psk), it
 * copies the key (at most key_max bytes) to key and returns its length, or
 * returns 0 if the identity is unknown: that handshake alone fails, counted
 * in psk_unknown.  Called with the socket's lock held, so it must not call
 * dtlsplex functions, and every peer of the socket waits while it runs.
 * EINVAL: cfg or fn NULL; EBUSY; EPROTO: OpenSSL refused the PSK cipher list. */
typedef unsigned int (*dtlsplex_psk_lookup_fn)(const char *identity, unsigned char *key,
                                               unsigned int key_max, void *arg);
DTLSPLEX_API int dtlsplex_config_set_psk_lookup(dtlsplex_config *cfg, dtlsplex_psk_lookup_fn fn, void *arg);
/* The identity hint a server sends (RFC 4279): which key a client should
 * use.  EINVAL: NULL or over 128 bytes; EBUSY; ENOMEM. */
DTLSPLEX_API int dtlsplex_config_set_psk_hint(dtlsplex_config *cfg, const char *hint);
/* Opt-in key log for Wireshark: every session's secrets are appended to the
 * file at path (created with mode 0600), in NSS's SSLKEYLOGFILE format.
 * Anyone who reads it can decrypt the traffic: never on by default, and not
 * read from the environment.  NULL turns it off.  EINVAL: cfg NULL; EBUSY;
 * and the errors of open(2). */
DTLSPLEX_API int dtlsplex_config_set_keylog(dtlsplex_config *cfg, const char *path);
/* EINVAL: NULL or unknown role; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_role(dtlsplex_config *cfg, int role);
/* The largest MTU: one record of 16384 bytes of data, the most a DTLS record
 * carries, with any suite's overhead. */
#define DTLSPLEX_MTU_MAX 16896
/* UDP payload bytes per datagram, 256..DTLSPLEX_MTU_MAX (default 1200).
 * Datagrams of data are one record each, so at most 16384 bytes of data
 * however large the MTU.  EINVAL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_mtu(dtlsplex_config *cfg, unsigned int udp_payload_bytes);
/* OpenSSL cipher list for DTLS 1.2.  EINVAL: NULL or no usable cipher; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_ciphers(dtlsplex_config *cfg, const char *openssl_cipher_list);
/* handshake_ms (default 45000, minimum 100): a handshake not complete by then
 * fails with ETIMEDOUT.  idle_ms (default 300000; 0 = never): an established
 * peer silent in both directions that long is forgotten.  EINVAL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_timeouts(dtlsplex_config *cfg, unsigned int handshake_ms,
                                              unsigned int idle_ms);
/* The handshake's retransmission timer: a flight not answered within
 * initial_ms is sent again, the wait doubling each time up to max_ms
 * (defaults 1000 and 4000: RFC 6347's 60 s cap makes a lossy link's
 * handshakes take minutes; see dtlsplex_config_set_timeouts for the budget
 * of a whole handshake).  Real-time programs want a shorter
 * first wait; constrained networks a longer one.  EINVAL: initial_ms below
 * 10, max_ms below initial_ms or above 60000; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_retransmit(dtlsplex_config *cfg, unsigned int initial_ms,
                                                unsigned int max_ms);
/* max_peers (default 10000) bounds the table; max_handshakes (default 256)
 * bounds sessions still handshaking.  When either is reached new handshakes
 * are refused (statelessly for servers, EAGAIN for clients); established peers
 * are unaffected.  EINVAL: 0, or max_handshakes > max_peers; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_limits(dtlsplex_config *cfg, unsigned int max_peers,
                                            unsigned int max_handshakes);
/* Server side: fair shares of those limits.  A source is a client's address
 * cut to v4_prefix bits (IPv4, default 32) or v6_prefix bits (IPv6, default
 * 64).  No source holds more than share_percent (default 10) of max_peers
 * sessions nor of max_handshakes handshakes in progress (rounded up, at
 * least 1); 100 lets one source take everything.  Refused ClientHellos are
 * dropped, after their cookie, and counted in dropped_source_share.
 * EINVAL: v4_prefix > 32, v6_prefix > 128, share_percent 0 or > 100; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_source_share(dtlsplex_config *cfg, unsigned int v4_prefix,
                                                  unsigned int v6_prefix, unsigned int share_percent);
/* Server side: each source's budget of full handshakes, a token bucket of
 * burst handshakes refilled at per_second (defaults 100 and 100).  Over the
 * budget, a ClientHello whose cookie is valid is dropped before any
 * public-key work and counted in dropped_handshake_budget.  One that offers
 * a ticket this server sealed (a resumption, which costs no public-key
 * work) is not counted.  per_second 0: no budget (burst ignored).
 * EINVAL: per_second > 0 and burst 0, or per_second > 1000000; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_handshake_budget(dtlsplex_config *cfg, unsigned int per_second,
                                                      unsigned int burst);
/* Server side: when the table holds max_peers sessions, a client whose
 * cookie is valid takes the place of the least recently active established
 * peer it accepted, if that peer has been silent (neither sent nor been
 * sent to) for min_silence_ms (default 30000).  The evicted peer is sent a
 * close_notify, reported as DTLSPLEX_EVENT_EXPIRED with error ENOBUFS and
 * counted in evicted.  0: never evict.  EINVAL (cfg NULL); EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_eviction(dtlsplex_config *cfg, unsigned int min_silence_ms);
/* Master secret for cookies, so that every server of a fleet accepts the
 * others' cookies (default: random per configuration).  16..64 bytes.
 * EINVAL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_cookie_secret(dtlsplex_config *cfg, const unsigned char *secret,
                                                   size_t len);
/* One secret for a fleet of servers (16..64 bytes): cookies and session
 * tickets are derived from it (separate derivations), so that any server
 * of the fleet accepts a client's cookie and resumes its session.  It
 * replaces the cookie secret.  EINVAL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_fleet_secret(dtlsplex_config *cfg, const unsigned char *secret,
                                                  size_t len);
/* Session resumption, on (1, the default) or off (0).  A server seals
 * sessions into tickets (RFC 5077) with keys that rotate every
 * ticket_period_s seconds (0 keeps the current period, default 3600;
 * 60..86400); a ticket is accepted in its period and the next.  A client
 * keeps its last session with each server (address and name) and offers it
 * on the next handshake with that server.  EINVAL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_resumption(dtlsplex_config *cfg, int enabled, unsigned int ticket_period_s);
/* Client: before sending to a server not heard from for silence_ms, start
 * an abbreviated handshake (resuming) instead of sending over a session the
 * server may have lost (restart, failover, a NAT binding gone).  0 (the
 * default): never.  EINVAL: cfg NULL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_resume_after(dtlsplex_config *cfg, unsigned int silence_ms);
/* fn may be NULL to remove.  EINVAL: cfg NULL; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_event_callback(dtlsplex_config *cfg, dtlsplex_event_fn fn,
                                                    void *arg);
/* Messages at level <= level go to fn (NULL removes).  EINVAL: cfg NULL or bad level; EBUSY. */
DTLSPLEX_API int dtlsplex_config_set_log_callback(dtlsplex_config *cfg, dtlsplex_log_fn fn, void *arg,
                                                  int level);
/* The SSL_CTX behind the configuration, for settings this API lacks.  Change it
 * only before attaching.  NULL with EINVAL if cfg is NULL. */
DTLSPLEX_API struct ssl_ctx_st *dtlsplex_config_get_ssl_ctx(dtlsplex_config *cfg);

/*
 * Binding a socket.  fd must be an AF_INET or AF_INET6 SOCK_DGRAM socket.
 * The attachment belongs to the socket: a dup() of it is the same socket,
 * close() of its last descriptor detaches it (the library's close(), dup2(),
 * dup3() and connect() come before the C library's; so do its setsockopt()
 * and getsockopt(), for IP_PKTINFO and IPV6_RECVPKTINFO only: see
 * dtlsrecvmsg), and a forked child has no attachment at all.
 * attach: EBADF: not an open descriptor; ENOTSOCK; EPROTOTYPE: not a datagram
 * socket; EAFNOSUPPORT: neither AF_INET nor AF_INET6; EINVAL: cfg NULL, or
 * role DTLSPLEX_ROLE_SERVER without certificate or PSK (with ROLE_BOTH and
 * neither, the socket only acts as a client); EEXIST: already attached, or a
 * dup of an attached socket; ENOMEM; EMFILE/ENFILE: no descriptor for the
 * library's own dup of the socket or its wake-up eventfd.
 * detach: sends close_notify to every established peer and frees all state;
 * the descriptor stays open.  EBADF: not attached.
 * Every function here leaves errno as it found it when it succeeds.
 */
DTLSPLEX_API int dtlsplex_attach(int fd, dtlsplex_config *cfg);
DTLSPLEX_API int dtlsplex_detach(int fd);
/*
 * Gives an attached socket a new configuration without a restart: new
 * handshakes use its certificate, CA, PSKs, verify mode, role, limits and
 * callbacks; established sessions go on undisturbed, and cookies sent just
 * before still verify (the socket keeps its cookie keys).  The socket takes
 * a reference to cfg and keeps the old configuration until detach.
 * EBADF: not attached; EINVAL: cfg NULL, or role DTLSPLEX_ROLE_SERVER without
 * certificate or PSK; ENOMEM (the socket keeps its old configuration).
 */
DTLSPLEX_API int dtlsplex_reconfigure(int fd, dtlsplex_config *cfg);

/*
 * dtlssendto: as sendto(2).  Sends len bytes as one DTLS record in one
 * datagram and returns len.  dest may be NULL on a connected socket.  The
 * flags UDP accepts are accepted (MSG_MORE corks as for UDP).  On a socket
 * bound to a wildcard address, each peer's datagrams leave from the local
 * address its handshake reached.
 * EBADF: fd not attached; ENOTSOCK; EFAULT: buf NULL with len > 0; EINVAL:
 * bad address length, or port 0; EAFNOSUPPORT: address family does not suit
 * the socket; ENETUNREACH: IPv4 destination on an IPv6-only socket, or no
 * route; EISCONN: connected, and dest is not the peer; EDESTADDRREQ: no
 * destination; EMSGSIZE: len above the session's data MTU (before the
 * handshake: above the smallest data MTU of the enabled suites); EAGAIN:
 * would block (non-blocking), handshake queue full, handshake limit
 * reached, or SO_SNDTIMEO expired during the handshake; EOPNOTSUPP: MSG_OOB;
 * ENOTCONN: no session with dest and the role is DTLSPLEX_ROLE_SERVER (which
 * never starts handshakes, so a reply to a peer that has gone fails at once);
 * ESHUTDOWN: a handshake to wait for on a socket shut down for reading;
 * EINTR; ETIMEDOUT, ECONNREFUSED, EPROTO,
 * EACCES: the handshake with dest failed (blocking sockets; on non-blocking
 * sockets the next call to that peer reports it); ENOMEM: nothing was sent,
 * or the handshake or session with dest failed for want of memory; plus the
 * errors of sendto(2).
 */
DTLSPLEX_API ssize_t dtlssendto(int fd, const void *buf, size_t len, int flags,
                                const struct sockaddr *dest, socklen_t dest_len);
/*
 * dtlsrecvfrom: as recvfrom(2), returning decrypted application data only.
 * Flags MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC; the others UDP accepts are
 * ignored.  A blocking call keeps DTLS timers running while it waits and
 * honours SO_RCVTIMEO; it returns 0 once the socket is shut down for reading.
 * EBADF: fd not attached (or detached or closed while waiting); ENOTSOCK;
 * EFAULT: NULL buffer with len > 0, or src_len NULL with src set; EOPNOTSUPP:
 * MSG_OOB or MSG_ERRQUEUE; EAGAIN: nothing queued (non-blocking) or
 * SO_RCVTIMEO expired; EINTR (see dtlsrecvfrom(3) for SA_RESTART); on a
 * connected socket, once, ECONNREFUSED/EHOSTUNREACH/ENETUNREACH (an ICMP
 * error) or ETIMEDOUT/ECONNREFUSED/EPROTO/EACCES (the handshake with the peer
 * failed); ENOMEM, once: a datagram from a peer was lost for want of memory;
 * plus the errors of recvfrom(2) and poll(2).
 */
DTLSPLEX_API ssize_t dtlsrecvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src,
                                  socklen_t *src_len);

/*
 * dtlssendmsg: as sendmsg(2).  The iovecs are gathered into one record.
 * Control messages: IP_PKTINFO and IPV6_PKTINFO choose the datagram's
 * source address and interface, as for UDP (the session's own datagrams,
 * and those queued during its handshake, leave from the session's address:
 * the one its handshake used).  Others are refused (EOPNOTSUPP) rather than
 * dropped.  Errors: those of dtlssendto, and EFAULT: msg NULL, or an iovec
 * or the control buffer NULL with a length; EMSGSIZE: more than IOV_MAX
 * iovecs, or more than one record holds; EINVAL: a malformed control
 * message, an iovec total over SSIZE_MAX, for an IPv4 destination an
 * IPV6_PKTINFO address that is not IPv4-mapped, or a source address other
 * than the session's (the peer would drop the record); EOPNOTSUPP: another
 * control message the kernel would act on.
 */
DTLSPLEX_API ssize_t dtlssendmsg(int fd, const struct msghdr *msg, int flags);
/*
 * dtlsrecvmsg: as recvmsg(2).  The datagram is scattered over the iovecs;
 * msg_flags gets MSG_TRUNC when it did not fit and MSG_CTRUNC when the
 * control messages did not.  With IP_PKTINFO or IPV6_RECVPKTINFO enabled on
 * the socket (setsockopt(2), before or after attach), the datagram's
 * IP_PKTINFO/IPV6_PKTINFO is delivered as the kernel delivers it; no other
 * control message is.  Errors: those of dtlsrecvfrom, and EFAULT: msg NULL,
 * or an iovec NULL with a length; EMSGSIZE: more than IOV_MAX iovecs;
 * EINVAL: an iovec total over SSIZE_MAX.
 */
DTLSPLEX_API ssize_t dtlsrecvmsg(int fd, struct msghdr *msg, int flags);

/*
 * Event loops.  dtlsplex_timeout: milliseconds until dtlsplex_process() is due
 * (0 if data is already queued), -1 if no timer runs.  dtlsplex_process: runs
 * due timers and reads every datagram the socket holds, without blocking;
 * returns the number of datagrams read.  dtlsplex_pending: decrypted
 * datagrams queued for dtlsrecvfrom, which poll(2) cannot see.
 * All three: EBADF: fd not attached.  process also: errors of recvfrom(2)
 * other than EAGAIN.
 */
DTLSPLEX_API int dtlsplex_timeout(int fd);
DTLSPLEX_API int dtlsplex_process(int fd);
DTLSPLEX_API int dtlsplex_pending(int fd);
/*
 * One descriptor for an event loop: it polls readable whenever the program
 * should call dtlsplex_process() and then dtlsrecvfrom() until EAGAIN: a
 * datagram arrived, decrypted data is queued, or a timer (retransmission,
 * handshake timeout, idle expiry, buffer release) is due.  Register it for
 * reading in poll, epoll (level- or edge-triggered), libevent, libuv, ...,
 * and no timer is needed.  The library owns it (never read it or close it);
 * it is the same on every call, and closed by detach.
 * EBADF: fd not attached; EMFILE, ENFILE, ENOMEM: no descriptor for it.
 */
DTLSPLEX_API int dtlsplex_event_fd(int fd);

/*
 * Peers.  Each takes the peer's address as dtlsrecvfrom reports it (or as
 * given to dtlssendto).  Common errors: EBADF: fd not attached; EINVAL: NULL
 * or short address; EAFNOSUPPORT: family does not suit the socket; ENOENT: no
 * such peer.
 * close: close_notify (if established) and forget the peer.
 * set_peer_name: the host name the server's certificate must carry (also sent
 *   as SNI); applies to every handshake this side starts with that address,
 *   until detach.  Never ENOENT.
 *   EISCONN: a session with that peer exists; EINVAL also for a NULL/empty
 *   name; ENOMEM; EAGAIN: 2 x max_peers addresses already known.
 * peer_info: fills out.  EINVAL also for out NULL.
 * stats: fills out.  EBADF, EINVAL.
 */
DTLSPLEX_API int dtlsplex_close(int fd, const struct sockaddr *peer, socklen_t len);
DTLSPLEX_API int dtlsplex_set_peer_name(int fd, const struct sockaddr *peer, socklen_t len,
                                        const char *name);
DTLSPLEX_API int dtlsplex_peer_info(int fd, const struct sockaddr *peer, socklen_t len,
                                    struct dtlsplex_peer_info *out);
DTLSPLEX_API int dtlsplex_stats(int fd, struct dtlsplex_stats *out);

/* "dtlsplex X.Y.Z". */
DTLSPLEX_API const char *dtlsplex_version(void);

#ifdef __cplusplus
}
#endif
#endif /* DTLSPLEX_H */
