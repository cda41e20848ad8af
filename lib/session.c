#include "session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "once.h"
#include "peer_table.h" /* DP_NO_DEADLINE */

/* Application records libssl seals or opens before records.c takes over. */
#define DP_RECORDS_AFTER 16

/* The listener an SSL belongs to, for the cookie callbacks. */
static int listener_index = -1;
static dp_once listener_index_once = DP_ONCE_INIT;

static int make_listener_index(void) {
  listener_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  return listener_index < 0 ? -1 : 0;
}

/* The address a cookie is bound to: the peer of the SSL's own BIO, which is
 * the listener's for a new client and the session's once adopted (libssl
 * checks the cookie again when the adopted session processes the
 * ClientHello). */
static const dp_addr_key *cookie_peer(SSL *ssl) {
  const dp_bio_io *io = BIO_get_data(SSL_get_rbio(ssl));
  return &io->peer.key;
}

static int cookie_generate_cb(SSL *ssl, unsigned char *cookie, unsigned int *len) {
  dp_listener *l = SSL_get_ex_data(ssl, listener_index);
  if (l == NULL || dp_cookie_make(l->keys, cookie_peer(ssl), l->io.now, cookie) != 0)
    return 0;
  *len = DP_COOKIE_LEN;
  l->cookie_sent = 1;
  return 1;
}

static int cookie_verify_cb(SSL *ssl, const unsigned char *cookie, unsigned int len) {
  dp_listener *l = SSL_get_ex_data(ssl, listener_index);
  if (l == NULL)
    return 0;
  const dp_addr_key *peer = cookie_peer(ssl);
  if (l->verified && len == DP_COOKIE_LEN && memcmp(&l->verified_peer, peer, sizeof *peer) == 0 &&
      CRYPTO_memcmp(l->verified_cookie, cookie, len) == 0) {
    l->verified = 0; /* the adopted session's check of the same ClientHello */
    return 1;
  }
  if (!dp_cookie_verify(l->keys, peer, l->io.now, cookie, len))
    return 0;
  l->verified = 1;
  l->verified_peer = *peer;
  memcpy(l->verified_cookie, cookie, DP_COOKIE_LEN);
  return 1;
}

int dp_session_install_ctx_callbacks(SSL_CTX *ctx) {
  if (dp_once_run(&listener_index_once, make_listener_index) != 0)
    return -ENOMEM;
  SSL_CTX_set_cookie_generate_cb(ctx, cookie_generate_cb);
  SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify_cb);
  return 0;
}

static void update_timer(dp_session *s, uint64_t now) {
  struct timeval tv;
  if (s->state == DP_SESSION_HANDSHAKING && DTLSv1_get_timeout(s->ssl, &tv) == 1)
    s->retransmit_at = now + (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
  else
    s->retransmit_at = DP_NO_DEADLINE;
}

/* libssl's handshake retransmission timer: the configured first timeout,
 * doubling with each retransmission up to the configured most (libssl's
 * own: 1 s, up to 60 s).  timer_us is the last timeout, 0 for the first. */
static unsigned int retransmit_timer(SSL *ssl, unsigned int timer_us) {
  const dp_bio_io *io = BIO_get_data(SSL_get_rbio(ssl));
  uint64_t next = timer_us == 0 ? (uint64_t)io->rto_initial_ms * 1000 : 2 * (uint64_t)timer_us;
  uint64_t most = (uint64_t)io->rto_max_ms * 1000;
  return (unsigned int)(next < most ? next : most);
}

/* Binds a new session struct to ssl with its own BIO.  Frees ssl on failure. */
static dp_session *session_wrap(SSL *ssl, const dp_addr *peer, const dp_local *local, const dp_bio_io *io) {
  dp_session *s = calloc(1, sizeof *s);
  BIO *bio = s != NULL ? dp_bio_new(&s->io) : NULL;
  if (bio == NULL) {
    free(s);
    SSL_free(ssl);
    return NULL;
  }
  s->ssl = ssl;
  s->io = *io;
  s->io.peer = *peer;
  s->io.local = *local;
  s->state = DP_SESSION_HANDSHAKING;
  s->own_records = -1;
  s->retransmit_at = DP_NO_DEADLINE;
  SSL_set_bio(ssl, bio, bio);
  SSL_set_mtu(ssl, io->mtu);
  DTLS_set_timer_cb(ssl, retransmit_timer);
  return s;
}

/* SSL_get_error needs an empty error queue; emptying one that is already
 * empty costs as much as encrypting a small record, so look first.  Even
 * looking costs a few hundred instructions (the thread's error state, an
 * init check): the per-record calls of an established session do without
 * (see established_error). */
static void clear_errors(void) {
  if (ERR_peek_error() != 0)
    ERR_clear_error();
}

/* SSL_get_error after an established session's SSL_read, made without
 * emptying the error queue first.  An error already queued (the program's,
 * say) would read as SSL_ERROR_SSL or SSL_ERROR_SYSCALL; libssl's own fatal
 * errors take the session out of its finished state, so an error seen while
 * it is still finished is not this call's: ask again with the queue empty. */
static int established_error(SSL *ssl, int r) {
  int e = SSL_get_error(ssl, r);
  if ((e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) && SSL_is_init_finished(ssl)) {
    ERR_clear_error();
    e = SSL_get_error(ssl, r);
  }
  return e;
}

static int is_ip_literal(const char *name) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* Without a name, the server's certificate must be for the address this
 * side sends to, as curl and browsers check an IP literal: a trusted chain
 * alone would let any certificate holder answer for any address. */
static int expect_peer_ip(SSL *ssl, const dp_addr *peer) {
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *ip = peer->key.ip;
  int v4 = memcmp(ip, v4_mapped, sizeof v4_mapped) == 0;
  return X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), v4 ? ip + 12 : ip, v4 ? 4 : 16);
}

dp_session *dp_session_new_client(SSL_CTX *ctx, const dp_addr *peer, const dp_local *local, const char *server_name,
                                  int verify_mode, int chain_only, const dp_bio_io *io) {
  clear_errors();
  SSL *ssl = SSL_new(ctx);
  if (ssl == NULL)
    return NULL;
  SSL_set_connect_state(ssl);
  int verify = verify_mode != DTLSPLEX_VERIFY_NONE;
  SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  /* SSL_set1_host checks an IP literal against the certificate's IP
   * addresses; SNI carries host names only (RFC 6066). */
  int ok;
  if (server_name != NULL)
    ok = SSL_set1_host(ssl, server_name) == 1 &&
         (is_ip_literal(server_name) || SSL_set_tlsext_host_name(ssl, server_name) == 1);
  else
    ok = !verify || chain_only || expect_peer_ip(ssl, peer) == 1;
  if (!ok) {
    SSL_free(ssl);
    return NULL;
  }
  dp_session *s = session_wrap(ssl, peer, local, io);
  if (s != NULL)
    s->is_client = 1;
  return s;
}

dp_session *dp_session_adopt(SSL *ssl, const dp_addr *peer, const dp_local *local, const dp_bio_io *io) {
  return session_wrap(ssl, peer, local, io);
}

/* 0, -EAGAIN (full) or -ENOMEM. */
static int queue_push(dp_queue *q, const void *buf, size_t len) {
  if (q->len >= DP_SESSION_QUEUE_MAX)
    return -EAGAIN;
  dp_queued *e = malloc(sizeof *e + len);
  if (e == NULL)
    return -ENOMEM;
  e->next = NULL;
  e->len = len;
  memcpy(e->data, buf, len);
  if (q->tail != NULL)
    q->tail->next = e;
  else
    q->head = e;
  q->tail = e;
  q->len++;
  return 0;
}

static void queue_clear(dp_queue *q) {
  while (q->head != NULL) {
    dp_queued *e = q->head;
    q->head = e->next;
    OPENSSL_cleanse(e->data, e->len);
    free(e);
  }
  q->tail = NULL;
  q->len = 0;
}

int dp_session_holds_buffers(const dp_session *s) {
  return !s->buffers_released || (s->records != NULL && (s->records->write.ctx != NULL || s->records->read.ctx != NULL));
}

int dp_session_release_buffers(dp_session *s) {
  if (s->state != DP_SESSION_ESTABLISHED)
    return 0;
  if (s->records != NULL)
    dp_records_release(s->records);
  if (!s->buffers_released && SSL_free_buffers(s->ssl) == 1)
    s->buffers_released = 1;
  return !dp_session_holds_buffers(s);
}

static int fail(dp_session *s, int err) {
  s->state = DP_SESSION_FAILED;
  s->error = err;
  s->retransmit_at = DP_NO_DEADLINE;
  clear_errors();
  return DP_IN_FAILED;
}

/* A DTLS write after SSL_free_buffers crashes in libssl 3.0 unless the
 * buffers are allocated again first; reads would manage, but a read may
 * answer with a write.  When they cannot be, libssl has ended the session
 * (a fatal error, without an alert): it fails with ENOMEM. */
static int take_buffers(dp_session *s) {
  if (!s->buffers_released)
    return 1;
  clear_errors();
  if (SSL_alloc_buffers(s->ssl) != 1) {
    fail(s, ENOMEM);
    return 0;
  }
  s->buffers_released = 0;
  return 1;
}

void dp_session_shutdown(dp_session *s) {
  if (s->state != DP_SESSION_ESTABLISHED || !take_buffers(s))
    return;
  clear_errors();
  SSL_shutdown(s->ssl);
  dp_bio_io_flush(&s->io);
  clear_errors();
}

void dp_session_free(dp_session *s) {
  if (s == NULL)
    return;
  queue_clear(&s->queue);
  queue_clear(&s->held);
  dp_records_free(s->records);
  SSL_free(s->ssl);
  free(s);
}

/* Whether libssl ran out of memory (it may have queued other errors
 * after that one).  Empties the error queue, as fail() would. */
static int out_of_memory(void) {
  unsigned long err;
  while ((err = ERR_get_error()) != 0)
    if (ERR_GET_REASON(err) == ERR_R_MALLOC_FAILURE)
      return 1;
  return 0;
}

/* Why a handshake failed, as the errno dtlssendto reports. */
static int handshake_errno(SSL *ssl) {
  long verified = SSL_get_verify_result(ssl);
  if (verified == X509_V_ERR_OUT_OF_MEM)
    return ENOMEM;
  if (verified != X509_V_OK)
    return EACCES;
  unsigned long err = ERR_peek_last_error();
  if (out_of_memory())
    return ENOMEM;
  if (ERR_GET_LIB(err) == ERR_LIB_SSL) {
    int reason = ERR_GET_REASON(err);
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
      return EACCES;
    /* A fatal alert from the peer; reasons common to every library (an
     * internal error) carry flags that put them above these. */
    if (reason >= SSL_AD_REASON_OFFSET && reason <= SSL_AD_REASON_OFFSET + 255)
      return ECONNREFUSED;
  }
  return EPROTO;
}

/* How a suite seals a record: an AEAD adds an explicit nonce and a tag;
 * CBC an IV (one block), a MAC and padding to whole blocks. */
typedef struct suite_shape {
  int aead;
  unsigned int nonce; /* AEAD: explicit nonce; CBC: IV */
  unsigned int tag;   /* AEAD: tag; CBC: MAC */
  unsigned int block; /* CBC: block size (1 for a stream cipher) */
} suite_shape;

static int shape_of(const SSL_CIPHER *c, suite_shape *out) {
  const EVP_CIPHER *cipher = c != NULL ? EVP_get_cipherbynid(SSL_CIPHER_get_cipher_nid(c)) : NULL;
  if (cipher == NULL)
    return 0;
  int mode = EVP_CIPHER_mode(cipher);
  if ((out->aead = SSL_CIPHER_is_aead(c))) {
    out->nonce = mode == EVP_CIPH_GCM_MODE || mode == EVP_CIPH_CCM_MODE ? 8 : 0;
    /* The CCM8 suites share AES-CCM's cipher and differ in the tag alone. */
    out->tag = strstr(SSL_CIPHER_get_name(c), "CCM8") != NULL ? 8 : 16;
    out->block = 1;
    return 1;
  }
  const EVP_MD *md = EVP_get_digestbynid(SSL_CIPHER_get_digest_nid(c));
  if (md == NULL)
    return 0;
  out->tag = (unsigned int)EVP_MD_size(md);
  out->block = (unsigned int)EVP_CIPHER_block_size(cipher);
  out->nonce = out->block > 1 ? out->block : 0;
  return 1;
}

static unsigned int round_up(unsigned int n, unsigned int block) { return (n + block - 1) / block * block; }
static unsigned int min_of(unsigned int a, unsigned int b) { return a < b ? a : b; }

/* The shortest record the suite can seal.  For CBC, the shorter of
 * encrypt-then-MAC and MAC-then-encrypt: which one a session uses depends
 * on options the program may change through the SSL_CTX. */
static unsigned int shortest_sealed(const suite_shape *sh) {
  if (sh->aead || sh->block <= 1)
    return sh->nonce + sh->tag;
  return sh->nonce + min_of(round_up(sh->tag + 1, sh->block), sh->block + sh->tag);
}

/* The largest payload one record of the suite carries in an mtu-byte
 * datagram (0 if none fits). */
static unsigned int data_mtu_of(const suite_shape *sh, unsigned int mtu) {
  unsigned int room = mtu > DTLS1_RT_HEADER_LENGTH + sh->nonce ? mtu - DTLS1_RT_HEADER_LENGTH - sh->nonce : 0;
  if (sh->aead || sh->block <= 1)
    return room > sh->tag ? room - sh->tag : 0;
  unsigned int mac_then_encrypt = room / sh->block * sh->block;
  mac_then_encrypt = mac_then_encrypt > sh->tag + 1 ? mac_then_encrypt - sh->tag - 1 : 0;
  unsigned int encrypt_then_mac = room > sh->tag ? (room - sh->tag) / sh->block * sh->block : 0;
  encrypt_then_mac = encrypt_then_mac > 1 ? encrypt_then_mac - 1 : 0;
  return min_of(mac_then_encrypt, encrypt_then_mac);
}

/* The shortest record the session's suite seals, or 0 before one is chosen. */
static unsigned int shortest_sealed_record(SSL *ssl) {
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  if (c == NULL)
    c = SSL_get_pending_cipher(ssl); /* chosen, not yet in use */
  suite_shape sh;
  return shape_of(c, &sh) ? shortest_sealed(&sh) : 0;
}

unsigned int dp_suites_data_mtu(SSL_CTX *ctx, unsigned int mtu) {
  STACK_OF(SSL_CIPHER) *suites = SSL_CTX_get_ciphers(ctx);
  unsigned int smallest = SSL3_RT_MAX_PLAIN_LENGTH;
  for (int i = 0; i < sk_SSL_CIPHER_num(suites); i++) {
    suite_shape sh;
    if (shape_of(sk_SSL_CIPHER_value(suites, i), &sh))
      smallest = min_of(smallest, data_mtu_of(&sh, mtu));
  }
  return smallest;
}

/* Whether each record of an encrypted epoch in the datagram is long enough
 * to be authentic.  libssl 3.0 ends the session, and sends a fatal alert,
 * on some shorter ones (setting up the AEAD or the MAC, before any check),
 * so anyone who knows a peer's address could end its session with one
 * datagram (issue 18): such datagrams never reach libssl. */
static int sealed_records_plausible(dp_session *s, const uint8_t *d, size_t len) {
  unsigned int shortest = s->shortest_sealed;
  for (size_t at = 0; at + DTLS1_RT_HEADER_LENGTH <= len;) {
    const uint8_t *r = d + at;
    size_t record_len = (size_t)r[11] << 8 | r[12];
    if (r[3] != 0 || r[4] != 0) { /* an encrypted epoch */
      if (shortest == 0 && (shortest = shortest_sealed_record(s->ssl)) == 0)
        return 0; /* no suite yet: it cannot be decrypted */
      if (record_len < shortest || record_len > SSL3_RT_MAX_ENCRYPTED_LENGTH)
        return 0;
    }
    at += DTLS1_RT_HEADER_LENGTH + record_len;
  }
  return 1;
}

/* The largest payload one record carries in one datagram of the session's
 * MTU (a larger write would become two records), and no more than the
 * maximum fragment length the peer asked for (RFC 6066): libssl's DTLS
 * fails the write, and with it the session, above that. */
static unsigned int established_data_mtu(SSL *ssl) {
  size_t mtu = DTLS_get_data_mtu(ssl);
  SSL_SESSION *session = SSL_get_session(ssl);
  uint8_t mfl = session != NULL ? SSL_SESSION_get_max_fragment_length(session) : 0;
  if (mfl >= TLSEXT_max_fragment_length_512 && mfl <= TLSEXT_max_fragment_length_4096 &&
      mtu > (size_t)512 << (mfl - 1))
    mtu = (size_t)512 << (mfl - 1);
  return mtu < SSL3_RT_MAX_PLAIN_LENGTH ? (unsigned int)mtu : SSL3_RT_MAX_PLAIN_LENGTH;
}

static int drive_handshake(dp_session *s) {
  clear_errors();
  int r = SSL_do_handshake(s->ssl);
  if (r == 1) {
    s->state = DP_SESSION_ESTABLISHED;
    s->shortest_sealed = shortest_sealed_record(s->ssl); /* the suite is settled */
    if (s->configured_mtu != 0) { /* back from the fallback */
      SSL_set_mtu(s->ssl, s->configured_mtu);
      s->io.mtu = s->configured_mtu;
      s->configured_mtu = 0;
    }
    s->data_mtu = established_data_mtu(s->ssl);
    return DP_IN_ESTABLISHED;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  return fail(s, handshake_errno(s->ssl));
}

int dp_session_start(dp_session *s, uint64_t now) {
  s->io.now = now;
  int flags = drive_handshake(s);
  dp_bio_io_flush(&s->io);
  update_timer(s, now);
  return flags;
}

/* Reads what the datagram holds.  just_established: the handshake completed
 * on this datagram, so libssl may also hold records that arrived before it,
 * set aside for the new epoch in queues SSL_has_pending may not look at
 * (which queue depends on the OpenSSL version): read until it wants more. */
static int read_records(dp_session *s, int just_established, uint8_t *scratch, size_t scratch_len,
                        dp_deliver_fn deliver, void *deliver_arg) {
  int flags = 0;
  /* One datagram may hold several records: read until libssl wants more. */
  for (;;) {
    int n = SSL_read(s->ssl, scratch, (int)scratch_len);
    if (n > 0) {
      deliver(deliver_arg, scratch, (size_t)n);
      flags |= DP_IN_DATA;
      /* Nothing left of the datagram: another SSL_read would only find that. */
      if (!just_established && !SSL_has_pending(s->ssl))
        return flags;
      continue;
    }
    int e = established_error(s->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return flags;
    if (e == SSL_ERROR_ZERO_RETURN) {
      s->state = DP_SESSION_CLOSED;
      return flags | DP_IN_CLOSED;
    }
    return flags | fail(s, EPROTO);
  }
}

/* Whether records.c seals and opens the session's application data: for
 * the suites it knows, in DTLS 1.2 records as they are by default.  Not if
 * the program, through the SSL_CTX, allowed renegotiation (the keys would
 * change under it), nor if the peer asked for a maximum fragment length
 * (RFC 6066), which libssl enforces.  Decided when the suite is known, for
 * good (compression, known later, is checked at the takeover). */
static int own_records(dp_session *s) {
  if (s->own_records >= 0)
    return s->own_records;
  const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);
  if (c == NULL && (c = SSL_get_pending_cipher(s->ssl)) == NULL)
    return 0; /* not known yet */
  SSL_SESSION *session = SSL_get_session(s->ssl);
  s->own_records = s->io.out != NULL && !s->io.records_by_libssl && dp_records_supported(c) &&
                   SSL_version(s->ssl) == DTLS1_2_VERSION &&
                   (SSL_get_options(s->ssl) & SSL_OP_NO_RENEGOTIATION) != 0 && session != NULL &&
                   SSL_SESSION_get_max_fragment_length(session) == TLSEXT_max_fragment_length_DISABLED;
  return s->own_records;
}

/* Whether records.c has taken the established session's application data
 * over from libssl.  It does after DP_RECORDS_AFTER records: deriving the
 * keys again costs about as much as libssl spends over records.c on a
 * dozen records, which a session that carries a query and its answer
 * never makes up.  If it cannot (no memory for the keys, or the program
 * enabled compression), libssl keeps the records: nothing was handed over. */
static int records_taken(dp_session *s) {
  if (s->records != NULL)
    return 1;
  if (!own_records(s) || s->libssl_records < DP_RECORDS_AFTER)
    return 0;
  if (SSL_get_current_compression(s->ssl) != NULL || s->io.write_epoch == 0 ||
      (s->records = dp_records_new(s->ssl, s->io.write_epoch, s->io.write_seq_next, &s->libssl_opened)) == NULL) {
    s->own_records = 0;
    return 0;
  }
  s->io.records = s->records; /* from now on libssl's records are sealed again (dgram_bio.c) */
  return 1;
}

static int release_held(dp_session *s, uint8_t *scratch, size_t scratch_len, dp_deliver_fn deliver,
                        void *deliver_arg);

/* Hands libssl a run of whole records of the datagram. */
static int libssl_input(dp_session *s, const uint8_t *d, size_t len, uint8_t *scratch, size_t scratch_len,
                        dp_deliver_fn deliver, void *deliver_arg) {
  if (!take_buffers(s))
    return DP_IN_LOST | DP_IN_FAILED;
  dp_bio_io_feed(&s->io, d, len);
  int flags = 0, handshaking = s->state == DP_SESSION_HANDSHAKING;
  if (handshaking)
    flags = drive_handshake(s);
  /* The datagram that completes a handshake may carry data after Finished. */
  if (s->state == DP_SESSION_ESTABLISHED)
    flags |= read_records(s, handshaking, scratch, scratch_len, deliver, deliver_arg);
  s->io.in = NULL;
  if (handshaking && s->state == DP_SESSION_ESTABLISHED)
    flags |= release_held(s, scratch, scratch_len, deliver, deliver_arg);
  return flags;
}

/* One application-data record of an encrypted epoch: held while the
 * handshake runs (libssl would otherwise keep it out of sight, and open it
 * with others: which records it opened must be known, see records.h), then
 * opened by whichever layer has the session's records. */
static int application_record(dp_session *s, const uint8_t *rec, size_t len, uint8_t *scratch, size_t scratch_len,
                              dp_deliver_fn deliver, void *deliver_arg) {
  if (s->state == DP_SESSION_HANDSHAKING)
    return queue_push(&s->held, rec, len) == -ENOMEM ? DP_IN_LOST : 0; /* -EAGAIN: lost, as libssl's queue would */
  if (s->state != DP_SESSION_ESTABLISHED)
    return 0;
  if (!records_taken(s)) {
    /* libssl reads this record alone: data out of it means it opened it. */
    int flags = libssl_input(s, rec, len, scratch, scratch_len, deliver, deliver_arg);
    if ((flags & DP_IN_DATA) && s->own_records == 1) {
      dp_replay_mark(&s->libssl_opened, dp_record_sequence(rec));
      s->libssl_records++;
    }
    return flags;
  }
  const uint8_t *plain;
  ssize_t n = dp_records_open(s->records, rec, len, scratch, scratch_len, &plain);
  if (n == -ENOMEM) {
    fail(s, ENOMEM);
    return DP_IN_LOST | DP_IN_FAILED;
  }
  if (n <= 0)
    return 0; /* dropped, as libssl drops what is not authentic; an empty record carries nothing */
  deliver(deliver_arg, plain, (size_t)n);
  return DP_IN_DATA;
}

static int release_held(dp_session *s, uint8_t *scratch, size_t scratch_len, dp_deliver_fn deliver,
                        void *deliver_arg) {
  dp_queue held = s->held;
  s->held = (dp_queue){0};
  int flags = 0;
  for (dp_queued *e = held.head; e != NULL; e = e->next)
    flags |= application_record(s, e->data, e->len, scratch, scratch_len, deliver, deliver_arg);
  queue_clear(&held);
  return flags;
}

/* Parts a datagram: its encrypted application records go to
 * application_record, the runs of other records between them to libssl. */
static int split_input(dp_session *s, const uint8_t *d, size_t len, uint8_t *scratch, size_t scratch_len,
                       dp_deliver_fn deliver, void *deliver_arg) {
  int flags = 0;
  size_t run = 0; /* where the run of records for libssl starts */
  for (size_t at = 0; at + DTLS1_RT_HEADER_LENGTH <= len;) {
    const uint8_t *r = d + at;
    size_t record_len = DTLS1_RT_HEADER_LENGTH + ((size_t)r[11] << 8 | r[12]);
    if (at + record_len > len)
      break; /* cut short: libssl drops it with the run */
    if (r[0] == DP_RECORD_APPLICATION_DATA && (r[3] != 0 || r[4] != 0)) {
      if (at > run)
        flags |= libssl_input(s, d + run, at - run, scratch, scratch_len, deliver, deliver_arg);
      flags |= application_record(s, r, record_len, scratch, scratch_len, deliver, deliver_arg);
      run = at + record_len;
    }
    at += record_len;
  }
  if (run < len)
    flags |= libssl_input(s, d + run, len - run, scratch, scratch_len, deliver, deliver_arg);
  return flags;
}

int dp_session_input(dp_session *s, const uint8_t *data, size_t len, uint64_t now, uint8_t *scratch,
                     size_t scratch_len, dp_deliver_fn deliver, void *deliver_arg) {
  if (!sealed_records_plausible(s, data, len))
    return 0;
  s->io.now = now;
  /* An established session whose records are libssl's: libssl reads all. */
  int flags = s->state == DP_SESSION_ESTABLISHED && !own_records(s)
                  ? libssl_input(s, data, len, scratch, scratch_len, deliver, deliver_arg)
                  : split_input(s, data, len, scratch, scratch_len, deliver, deliver_arg);
  dp_bio_io_flush(&s->io);
  update_timer(s, now);
  return flags;
}

int dp_session_on_timer(dp_session *s, uint64_t now) {
  if (s->state != DP_SESSION_HANDSHAKING)
    return 0;
  clear_errors();
  s->io.now = now;
  /* libssl cuts the flight again at the MTU in force when it retransmits. */
  if (++s->timeouts == DP_FALLBACK_AFTER && s->io.mtu > DP_FALLBACK_MTU) {
    s->configured_mtu = s->io.mtu;
    s->io.mtu = DP_FALLBACK_MTU;
    SSL_set_mtu(s->ssl, DP_FALLBACK_MTU);
  }
  int r = DTLSv1_handle_timeout(s->ssl);
  dp_bio_io_flush(&s->io);
  if (r < 0)
    return fail(s, ETIMEDOUT);
  update_timer(s, now);
  return 0;
}

unsigned int dp_session_data_mtu(dp_session *s) { return s->state == DP_SESSION_ESTABLISHED ? s->data_mtu : 0; }

/* Seals into the endpoint's datagram buffer, which is empty between calls
 * into libssl, and sends. */
static ssize_t own_write(dp_session *s, const void *buf, size_t len) {
  dp_bio_io_flush(&s->io); /* nothing there, unless a caller wrote while libssl's datagram was assembled */
  dp_outbuf *out = s->io.out;
  ssize_t n = dp_records_seal(s->records, DP_RECORD_APPLICATION_DATA, buf, len, out->data, sizeof out->data);
  if (n < 0) {
    int err = n == -ENOMEM ? ENOMEM : EPROTO;
    fail(s, err);
    return -err;
  }
  dp_bio_io_send(&s->io, out->data, (size_t)n);
  return s->io.last_send_error != 0 ? s->io.last_send_error : (ssize_t)len;
}

ssize_t dp_session_write(dp_session *s, const void *buf, size_t len) {
  if (s->state != DP_SESSION_ESTABLISHED)
    return -EPROTO;
  if (len > dp_session_data_mtu(s))
    return -EMSGSIZE;
  if (len == 0)
    return 0; /* libssl sends no empty records */
  if (records_taken(s))
    return own_write(s, buf, len);
  if (!take_buffers(s))
    return -ENOMEM;
  s->io.last_send_error = 0;
  /* Any failure ends the session, whatever the error queue says: no need
   * to empty it first (fail() empties it after). */
  int n = SSL_write(s->ssl, buf, (int)len);
  dp_bio_io_flush(&s->io);
  if (n <= 0) {
    fail(s, EPROTO);
    return -EPROTO;
  }
  s->libssl_records += s->own_records == 1;
  return s->io.last_send_error != 0 ? s->io.last_send_error : n;
}

int dp_session_queue_push(dp_session *s, const void *buf, size_t len, unsigned int data_mtu) {
  if (len > data_mtu)
    return -EMSGSIZE;
  return queue_push(&s->queue, buf, len);
}

unsigned int dp_session_queue_flush(dp_session *s) {
  unsigned int unsent = 0;
  for (dp_queued *q = s->queue.head; q != NULL; q = q->next)
    if (dp_session_write(s, q->data, q->len) < 0)
      unsent++;
  queue_clear(&s->queue);
  return unsent;
}

void dp_session_info(dp_session *s, struct dtlsplex_peer_info *out) {
  memset(out, 0, sizeof *out);
  out->state = s->state == DP_SESSION_CLOSED ? DP_SESSION_FAILED : s->state;
  out->is_client = s->is_client;
  out->error = s->error;
  if (s->state != DP_SESSION_ESTABLISHED)
    return;
  snprintf(out->protocol, sizeof out->protocol, "%s", SSL_get_version(s->ssl));
  snprintf(out->cipher, sizeof out->cipher, "%s", SSL_get_cipher_name(s->ssl));
  int group = SSL_get_negotiated_group(s->ssl);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  const char *group_name = group != 0 ? SSL_group_to_name(s->ssl, group) : NULL;
#else
  const char *group_name = group != 0 ? OBJ_nid2sn(group) : NULL;
#endif
  snprintf(out->group, sizeof out->group, "%s", group_name != NULL ? group_name : "");
  out->data_mtu = dp_session_data_mtu(s);
  out->resumed = SSL_session_reused(s->ssl);
  const char *psk_identity = SSL_get_psk_identity(s->ssl);
  if (psk_identity != NULL) {
    snprintf(out->identity, sizeof out->identity, "%s", psk_identity);
    return;
  }
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  X509 *cert = SSL_get0_peer_certificate(s->ssl);
#else
  X509 *cert = SSL_get_peer_certificate(s->ssl);
#endif
  if (cert != NULL)
    X509_NAME_oneline(X509_get_subject_name(cert), out->identity, sizeof out->identity);
#if OPENSSL_VERSION_NUMBER < 0x30000000L
  X509_free(cert);
#endif
}

/* Makes the listener's SSL for the next client. */
static int listener_renew(dp_listener *l) {
  clear_errors();
  SSL *ssl = SSL_new(l->ctx);
  BIO *bio = ssl != NULL ? dp_bio_new(&l->io) : NULL;
  if (bio == NULL || SSL_set_ex_data(ssl, listener_index, l) != 1) {
    BIO_free(bio);
    SSL_free(ssl);
    l->ssl = NULL;
    return -ENOMEM;
  }
  SSL_set_bio(ssl, bio, bio);
  SSL_set_options(ssl, SSL_OP_COOKIE_EXCHANGE);
  SSL_set_accept_state(ssl);
  SSL_set_mtu(ssl, l->io.mtu);
  DTLS_set_timer_cb(ssl, retransmit_timer);
  l->ssl = ssl;
  return 0;
}

int dp_listener_init(dp_listener *l, SSL_CTX *ctx, dp_cookie_keys *keys, const dp_bio_io *io) {
  memset(l, 0, sizeof *l);
  l->ctx = ctx;
  l->keys = keys;
  l->io = *io;
  l->client = BIO_ADDR_new();
  if (l->client == NULL)
    return -ENOMEM;
  if (listener_renew(l) != 0) {
    BIO_ADDR_free(l->client);
    return -ENOMEM;
  }
  return 0;
}

void dp_listener_cleanup(dp_listener *l) {
  SSL_free(l->ssl);
  l->ssl = NULL;
  BIO_ADDR_free(l->client);
  l->client = NULL;
}

SSL *dp_listener_input(dp_listener *l, const dp_addr *from, const dp_local *local, const uint8_t *data,
                       size_t len, uint64_t now, int *cookie_sent) {
  *cookie_sent = 0;
  if (l->client == NULL) /* cleaned up: this endpoint no longer serves */
    return NULL;
  if (l->ssl == NULL && listener_renew(l) != 0)
    return NULL;
  l->verified = 0; /* a memo lasts one datagram */
  l->io.peer = *from;
  l->io.local = *local;
  l->io.now = now;
  l->cookie_sent = 0;
  dp_bio_io_feed(&l->io, data, len);
  clear_errors();
  int r = DTLSv1_listen(l->ssl, l->client);
  dp_bio_io_flush(&l->io);
  l->io.in = NULL;
  *cookie_sent = l->cookie_sent;
  clear_errors();
  if (r >= 1) {
    SSL *accepted = l->ssl;
    listener_renew(l); /* on failure, retried with the next datagram */
    return accepted;
  }
  if (r < 0) {
    /* A fatal error leaves the listener unusable: start afresh. */
    SSL_free(l->ssl);
    listener_renew(l);
  }
  return NULL;
}
