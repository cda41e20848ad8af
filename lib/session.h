/* One peer's DTLS session (handshake, read, write, shutdown, plaintext queued
 * while handshaking) and the listener that answers ClientHellos statelessly. */
#ifndef DTLSPLEX_SESSION_H
#define DTLSPLEX_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "cookie.h"
#include "dgram_bio.h"
#include "dtlsplex.h"
#include "records.h"

/* Session states; the first three are the public DTLSPLEX_STATE_* values. */
enum {
  DP_SESSION_HANDSHAKING = DTLSPLEX_STATE_HANDSHAKING,
  DP_SESSION_ESTABLISHED = DTLSPLEX_STATE_ESTABLISHED,
  DP_SESSION_FAILED = DTLSPLEX_STATE_FAILED,
  DP_SESSION_CLOSED = 4 /* close_notify received */
};

/* What a datagram or timer did to a session (bit flags). */
enum {
  DP_IN_ESTABLISHED = 1, /* the handshake completed */
  DP_IN_FAILED = 2,      /* the session is dead; error says why */
  DP_IN_CLOSED = 4,      /* close_notify received */
  DP_IN_DATA = 8,        /* application data was delivered */
  DP_IN_LOST = 16        /* not read: no memory for the session's record buffers (it failed) */
};

/* A handshake whose flight went unanswered twice retries at this MTU (an
 * IPv4 path's 576 less the IP and UDP headers): a path that silently drops
 * large datagrams would otherwise never let a certificate flight through.
 * Loss alone also lands here; the session goes back to the configured MTU
 * once established, so application datagrams keep their size. */
#define DP_FALLBACK_MTU 548
#define DP_FALLBACK_AFTER 2

/* Most plaintext datagrams queued per peer while its handshake runs. */
#define DP_SESSION_QUEUE_MAX 16

typedef struct dp_queued {
  struct dp_queued *next;
  size_t len;
  uint8_t data[];
} dp_queued;

typedef struct dp_queue {
  dp_queued *head, *tail;
  unsigned int len;
} dp_queue;

typedef struct dp_session {
  SSL *ssl;
  dp_bio_io io;
  int is_client;
  int state;
  int error;               /* errno once FAILED */
  int buffers_released;    /* idle: libssl's record buffers given back */
  unsigned int timeouts;   /* handshake retransmissions so far */
  unsigned int configured_mtu; /* while the handshake runs at the fallback MTU, the one to go back to */
  unsigned int shortest_sealed; /* see session.c; 0 until established */
  unsigned int data_mtu;   /* see dp_session_data_mtu; set once established */
  uint64_t retransmit_at;  /* when libssl's handshake timer fires, or DP_NO_DEADLINE */
  dp_queue queue;          /* plaintext to send once established */
  /* Application-data records that came before the handshake completed:
   * whichever layer opens them (own_records) does so once it has. */
  dp_queue held;
  int own_records;         /* records.c seals and opens the application data: 1, libssl: 0, -1 until the suite is known */
  dp_records *records;     /* its state, once it has taken over from libssl */
  unsigned int libssl_records; /* application records libssl sealed or opened until then */
  dp_replay libssl_opened;     /* which of them it opened */
} dp_session;

/* Receives each decrypted record. */
typedef void (*dp_deliver_fn)(void *arg, const uint8_t *data, size_t len);

/* Installs the cookie callbacks on a context (once, when it is made): 0,
 * or -ENOMEM. */
int dp_session_install_ctx_callbacks(SSL_CTX *ctx);

/* Sessions take their BIO settings (mtu, send, send_arg, out) from io; the
 * peer, and this side's end of the path to it (see dp_local), are given
 * separately. */

/* A client session towards peer.  With verify_mode other than
 * DTLSPLEX_VERIFY_NONE, the server's certificate must be for server_name, or
 * without one (and unless chain_only) for the peer's IP address.  NULL on
 * failure. */
dp_session *dp_session_new_client(SSL_CTX *ctx, const dp_addr *peer, const dp_local *local, const char *server_name,
                                  int verify_mode, int chain_only, const dp_bio_io *io);
/* A server session from an SSL that passed DTLSv1_listen; takes ownership of
 * ssl (freed on failure).  The listener must outlive the session.  NULL on
 * failure. */
dp_session *dp_session_adopt(SSL *ssl, const dp_addr *peer, const dp_local *local, const dp_bio_io *io);
/* Sends close_notify if established (and it is not the peer who closed). */
void dp_session_shutdown(dp_session *s);
void dp_session_free(dp_session *s);

/* Drives the handshake without input (sends the ClientHello, or the server's
 * first flight after DTLSv1_listen).  Returns DP_IN_* flags. */
int dp_session_start(dp_session *s, uint64_t now);
/* Processes one datagram from the peer.  scratch (DP_RECORDS_WORK_MAX
 * bytes) receives plaintext before it is passed to deliver.  Returns DP_IN_* flags. */
int dp_session_input(dp_session *s, const uint8_t *data, size_t len, uint64_t now, uint8_t *scratch,
                     size_t scratch_len, dp_deliver_fn deliver, void *deliver_arg);
/* Runs libssl's retransmission timer.  Returns DP_IN_FAILED (ETIMEDOUT) after
 * too many retransmissions, else 0. */
int dp_session_on_timer(dp_session *s, uint64_t now);
/* Sends one record; returns len, or -EMSGSIZE above the data MTU, -EPROTO if
 * the session broke, or the -errno of the socket write. */
ssize_t dp_session_write(dp_session *s, const void *buf, size_t len);
/* Gives an idle established session's record buffers and cipher contexts
 * back (about half of its memory); every later call into libssl, and
 * records.c, takes them again first.  Returns 1 if they are all released. */
int dp_session_release_buffers(dp_session *s);
/* Whether the session holds buffers dp_session_release_buffers would give back. */
int dp_session_holds_buffers(const dp_session *s);

/* Largest application payload per datagram (0 before the handshake). */
unsigned int dp_session_data_mtu(dp_session *s);

/* Queues plaintext until the handshake completes: 0, -EAGAIN (full),
 * -EMSGSIZE (above data_mtu, the least any suite the session may choose
 * carries: see dp_suites_data_mtu), -ENOMEM. */
int dp_session_queue_push(dp_session *s, const void *buf, size_t len, unsigned int data_mtu);
/* The largest payload every suite of ctx carries in one record of an
 * mtu-byte datagram: what a datagram queued before the suite is chosen may
 * hold, so that it can always be sent. */
unsigned int dp_suites_data_mtu(SSL_CTX *ctx, unsigned int mtu);
/* Sends what was queued; returns how many datagrams could not be sent. */
unsigned int dp_session_queue_flush(dp_session *s);

void dp_session_info(dp_session *s, struct dtlsplex_peer_info *out);

/* The shared listener: runs DTLSv1_listen over one SSL per endpoint, so that
 * nothing is allocated for a client before its cookie verifies. */
typedef struct dp_listener {
  SSL_CTX *ctx;
  SSL *ssl;
  BIO_ADDR *client; /* DTLSv1_listen's out-parameter, kept to avoid an allocation per call */
  dp_bio_io io;
  dp_cookie_keys *keys;
  /* The cookie the last datagram's ClientHello carried, once verified:
   * libssl checks it again when the adopted session processes the same
   * ClientHello, and the answer is the same. */
  int verified;
  dp_addr_key verified_peer;
  uint8_t verified_cookie[DP_COOKIE_LEN];
  int cookie_sent;
} dp_listener;

int dp_listener_init(dp_listener *l, SSL_CTX *ctx, dp_cookie_keys *keys, const dp_bio_io *io);
void dp_listener_cleanup(dp_listener *l);
/* Offers a datagram from an address without a session, which arrived at
 * local.  Returns the SSL of a client whose cookie verified (the caller
 * adopts it; the listener makes a fresh SSL for the next client), or NULL:
 * the datagram was answered (from local) with a HelloVerifyRequest
 * (*cookie_sent = 1) or dropped. */
SSL *dp_listener_input(dp_listener *l, const dp_addr *from, const dp_local *local, const uint8_t *data,
                       size_t len, uint64_t now, int *cookie_sent);

#endif
