#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "once.h"
#include "session.h"

#define PSK_CIPHERS "ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:" \
                    "PSK-CHACHA20-POLY1305:ECDHE-PSK-AES128-CBC-SHA256"
/* OpenSSL's DEFAULT (spelled out: the keyword itself may only come first;
 * AEAD suites with forward secrecy first), then the suites RFC 7252 and
 * RFC 7925 make mandatory for CoAP, which constrained devices offer alone:
 * AES-128-CCM8, at the lowest preference.  ("-", not "!", so that they may
 * come back after COMPLEMENTOFDEFAULT.) */
#define DEFAULT_CIPHERS "ALL:-COMPLEMENTOFDEFAULT:-eNULL:ECDHE-ECDSA-AES128-CCM8:PSK-AES128-CCM8"
/* Key exchange groups, cheapest first: a client that lists P-521 first must
 * not make every handshake of the server cost several times more. */
#define DEFAULT_GROUPS "X25519:P-256:P-384:X448:P-521"

static int ctx_index = -1;
/* Marks an SSL whose client named an identity nobody knew, for the
 * statistics (dp_config_psk_unknown). */
static int psk_unknown_index = -1;
static dp_once indices_once = DP_ONCE_INIT;

static int make_indices(void) {
  if (ctx_index < 0)
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  if (psk_unknown_index < 0)
    psk_unknown_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  return ctx_index < 0 || psk_unknown_index < 0 ? -1 : 0;
}

static const dtlsplex_config *config_of(SSL *ssl) {
  return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
}

dtlsplex_config *dp_config_of(SSL *ssl) { return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index); }

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity,
                                  unsigned char *psk, unsigned int max_psk) {
  (void)hint;
  const dtlsplex_config *cfg = config_of(ssl);
  if (cfg == NULL || cfg->psks == NULL)
    return 0;
  const dp_psk *p = cfg->psks;
  size_t id_len = strlen(p->identity);
  if (id_len + 1 > max_identity || p->key_len > max_psk)
    return 0;
  memcpy(identity, p->identity, id_len + 1);
  memcpy(psk, p->key, p->key_len);
  return (unsigned int)p->key_len;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk) {
  const dtlsplex_config *cfg = config_of(ssl);
  if (cfg == NULL || identity == NULL)
    return 0;
  for (const dp_psk *p = cfg->psks; p != NULL; p = p->next) {
    if (strcmp(p->identity, identity) == 0 && p->key_len <= max_psk) {
      memcpy(psk, p->key, p->key_len);
      return (unsigned int)p->key_len;
    }
  }
  unsigned int len = cfg->psk_lookup != NULL ? cfg->psk_lookup(identity, psk, max_psk, cfg->psk_lookup_arg) : 0;
  if (len > max_psk) { /* a lookup that wrote past the buffer it was given: refuse the key */
    OPENSSL_cleanse(psk, max_psk);
    len = 0;
  }
  if (len == 0)
    SSL_set_ex_data(ssl, psk_unknown_index, ssl);
  return len;
}

int dp_config_psk_unknown(SSL *ssl) { return SSL_get_ex_data(ssl, psk_unknown_index) != NULL; }

/* The session ID context: a session resumes only where it was made under
 * the same secret and the same verification (libssl compares it), so a
 * ticket from a server that did not ask for client certificates never
 * resumes on one that requires them.  Servers of a fleet agree on it. */
static void set_session_context(dtlsplex_config *cfg) {
  uint8_t label[] = {'d', 't', 'l', 's', 'p', 'l', 'e', 'x', ' ', 's', 'i', 'd', (uint8_t)cfg->verify,
                     (uint8_t)cfg->chain_only};
  uint8_t sid[32];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), cfg->tickets.master, (int)cfg->tickets.master_len, label, sizeof label, sid, &len) != NULL)
    SSL_CTX_set_session_id_context(cfg->ctx, sid, len);
  ERR_clear_error();
}

/* Key log lines (NSS's SSLKEYLOGFILE format), one process-wide lock for
 * whole lines. */
static pthread_mutex_t keylog_lock = PTHREAD_MUTEX_INITIALIZER;

static void keylog_cb(const SSL *ssl, const char *line) {
  const dtlsplex_config *cfg = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
  if (cfg == NULL || cfg->keylog == NULL)
    return;
  pthread_mutex_lock(&keylog_lock);
  fprintf(cfg->keylog, "%s\n", line);
  fflush(cfg->keylog);
  pthread_mutex_unlock(&keylog_lock);
}

static void apply_verify(dtlsplex_config *cfg) {
  /* The role a session plays decides which half applies; session.c sets the
   * client half per SSL.  On the context: the server half. */
  int mode = SSL_VERIFY_NONE;
  if (cfg->verify == DTLSPLEX_VERIFY_REQUIRE)
    mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(cfg->ctx, mode, NULL);
  set_session_context(cfg);
}

/* Verifies a peer's chain, loading the system's trust store first if the
 * configuration has no other: loading it takes tens of milliseconds and
 * about a megabyte, which a configuration that never meets a certificate
 * (PSK, or no verification) should not pay. */
static int verify_chain(X509_STORE_CTX *store_ctx, void *arg) {
  dtlsplex_config *cfg = arg;
  pthread_mutex_lock(&cfg->attach_lock);
  /* A store replaced through dtlsplex_config_get_ssl_ctx is the user's own.
   * Once loaded, the store's lookups never change again, so threads verify
   * concurrently after this. */
  if (!cfg->system_store_loaded && !cfg->ca_set && SSL_CTX_get_cert_store(cfg->ctx) == cfg->initial_store) {
    ERR_set_mark(); /* a missing system file is no error of the handshake's */
    SSL_CTX_set_default_verify_paths(cfg->ctx);
    ERR_pop_to_mark();
  }
  cfg->system_store_loaded = 1;
  pthread_mutex_unlock(&cfg->attach_lock);
  return X509_verify_cert(store_ctx);
}

dtlsplex_config *dtlsplex_config_new(void) {
  dp_once_run(&indices_once, make_indices); /* on failure, the indices are -1: see below */
  dtlsplex_config *cfg = calloc(1, sizeof *cfg);
  if (cfg == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  atomic_init(&cfg->refs, 1);
  pthread_mutex_init(&cfg->attach_lock, NULL);
  cfg->role = DTLSPLEX_ROLE_BOTH;
  cfg->verify = DTLSPLEX_VERIFY_PEER;
  cfg->mtu = 1200;
  /* Chosen from measurements on the lossy relay (docs/PERFORMANCE.md): at
   * 30% drop, duplication and delay each way, 99.5% of handshakes complete
   * within 30 s when the retransmission timer doubles from 1 s up to 4 s;
   * with RFC 6347's 60 s cap it took 124 s, and libssl's limit of 12
   * retransmissions failed 0.2% outright. */
  cfg->handshake_ms = 45000;
  cfg->rto_initial_ms = 1000;
  cfg->rto_max_ms = 4000;
  cfg->idle_ms = 300000;
  cfg->max_peers = 10000;
  cfg->source_v4_prefix = DP_SOURCE_V4_PREFIX;
  cfg->source_v6_prefix = DP_SOURCE_V6_PREFIX;
  cfg->source_share_percent = DP_SOURCE_SHARE_PERCENT;
  cfg->budget_per_second = DP_BUDGET_PER_SECOND;
  cfg->budget_burst = DP_BUDGET_BURST;
  cfg->evict_after_ms = DP_EVICT_AFTER_MS;
  cfg->max_handshakes = 256;
  cfg->log_level = DTLSPLEX_LOG_WARNING;
  cfg->cookie_secret_len = 32;
  cfg->resumption = 1;
  ERR_clear_error();
  unsigned char ticket_master[32];
  cfg->ctx = SSL_CTX_new(DTLS_method());
  if (ctx_index < 0 || psk_unknown_index < 0 || cfg->ctx == NULL || RAND_bytes(cfg->cookie_secret, 32) != 1 ||
      RAND_bytes(ticket_master, sizeof ticket_master) != 1 ||
      !SSL_CTX_set_min_proto_version(cfg->ctx, DTLS1_2_VERSION) ||
      !SSL_CTX_set_cipher_list(cfg->ctx, DEFAULT_CIPHERS) || !SSL_CTX_set1_groups_list(cfg->ctx, DEFAULT_GROUPS) ||
      !SSL_CTX_set_ex_data(cfg->ctx, ctx_index, cfg) ||
      dp_ticket_keys_init(&cfg->tickets, ticket_master, sizeof ticket_master, DP_TICKET_PERIOD_S) != 0 ||
      (cfg->resume_cache = dp_resume_cache_new(DP_RESUME_CACHE_MAX)) == NULL ||
      dp_ticket_install(cfg->ctx, &cfg->tickets) != 0 || dp_session_install_ctx_callbacks(cfg->ctx) != 0) {
    OPENSSL_cleanse(ticket_master, sizeof ticket_master);
    dp_resume_cache_free(cfg->resume_cache);
    SSL_CTX_free(cfg->ctx);
    pthread_mutex_destroy(&cfg->attach_lock);
    free(cfg);
    errno = EPROTO;
    return NULL;
  }
  OPENSSL_cleanse(ticket_master, sizeof ticket_master);
  /* A ticket is accepted in the period it was sealed in and the next. */
  SSL_CTX_set_timeout(cfg->ctx, 2 * DP_TICKET_PERIOD_S);
  /* No encrypt-then-MAC: libssl 3.0's DTLS ends the session on a record whose
   * MAC fails under it, where it drops it under MAC-then-encrypt (as DTLS
   * must, RFC 6347 section 4.1.2.7), so with it anyone who knows a CBC peer's
   * address could end the session with one forged datagram. */
  /* The server's preference chooses suite and group: the client's order
   * would let it pick CBC over AEAD, or P-521 over X25519. */
  SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_QUERY_MTU | SSL_OP_NO_ENCRYPT_THEN_MAC |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Resumption without server state: session tickets (ticket.c) on the
   * server, and the client's own cache (resume_cache.c), which offers each
   * server its last session. */
  SSL_CTX_set_session_cache_mode(cfg->ctx, SSL_SESS_CACHE_OFF);
  cfg->initial_store = SSL_CTX_get_cert_store(cfg->ctx);
  SSL_CTX_set_cert_verify_callback(cfg->ctx, verify_chain, cfg);
  apply_verify(cfg);
  ERR_clear_error();
  return cfg;
}

/* Work done once, at the first attach, when the configuration is final. */
static void prepare(dtlsplex_config *cfg) {
  ERR_clear_error();
  /* The chain sent is the one the certificate file holds: the leaf, then
   * its intermediates.  Only a file holding the leaf alone is completed
   * from the trust store, once, instead of libssl doing it (with a CA
   * directory lookup) on every handshake.  (Building unconditionally
   * replaced a loaded chain with the part the store could verify: the leaf
   * alone, wherever the store lacks the root.) */
  if (SSL_CTX_get0_certificate(cfg->ctx) != NULL) {
    STACK_OF(X509) *chain = NULL;
    if (SSL_CTX_get0_chain_certs(cfg->ctx, &chain) == 1 && sk_X509_num(chain) == 0)
      SSL_CTX_build_cert_chain(cfg->ctx, SSL_BUILD_CHAIN_FLAG_NO_ROOT | SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR);
    SSL_CTX_set_mode(cfg->ctx, SSL_MODE_NO_AUTO_CHAIN);
  }
  ERR_clear_error();
}

void dp_config_ref(dtlsplex_config *cfg) {
  pthread_mutex_lock(&cfg->attach_lock);
  if (!cfg->prepared) {
    prepare(cfg);
    cfg->prepared = 1;
  }
  atomic_fetch_add(&cfg->refs, 1);
  pthread_mutex_unlock(&cfg->attach_lock);
}

int dp_config_can_serve(const dtlsplex_config *cfg) {
  /* Asks the context, so that a certificate set through the escape hatch counts. */
  if (cfg->psks != NULL || cfg->psk_lookup != NULL)
    return 1;
  /* libssl keeps no key that does not match the certificate (it drops the
   * one or the other as the second is set), so both present means usable.
   * SSL_CTX_check_private_key would compare them again, and allocate: out
   * of memory, the socket would be told it has no certificate (EINVAL), or
   * quietly refuse every handshake. */
  return SSL_CTX_get0_certificate(cfg->ctx) != NULL && SSL_CTX_get0_privatekey(cfg->ctx) != NULL;
}

void dtlsplex_config_free(dtlsplex_config *cfg) {
  if (cfg == NULL || atomic_fetch_sub(&cfg->refs, 1) != 1)
    return;
  SSL_CTX_free(cfg->ctx);
  for (dp_psk *p = cfg->psks, *next; p != NULL; p = next) {
    next = p->next;
    OPENSSL_cleanse(p, sizeof *p);
    free(p);
  }
  OPENSSL_cleanse(cfg->cookie_secret, sizeof cfg->cookie_secret);
  dp_ticket_keys_cleanup(&cfg->tickets);
  dp_resume_cache_free(cfg->resume_cache);
  if (cfg->keylog != NULL)
    fclose(cfg->keylog);
  pthread_mutex_destroy(&cfg->attach_lock);
  free(cfg);
}

/* Common guard of every setter: 0 if cfg may change, else -1 with errno. */
static int check_settable(dtlsplex_config *cfg) {
  if (cfg == NULL) {
    errno = EINVAL;
    return -1;
  }
  if (atomic_load(&cfg->refs) > 1) {
    errno = EBUSY;
    return -1;
  }
  /* A configuration changed after its sockets detached: the sessions its
   * clients kept were checked with what it was (CA, verify mode, ...). */
  dp_resume_cache_clear(cfg->resume_cache);
  return 0;
}

static int fail(int err) {
  errno = err;
  return -1;
}

/* errno for a file OpenSSL could not load: missing, or not parseable. */
static int load_error(const char *path) {
  ERR_clear_error();
  return fail(path != NULL && access(path, R_OK) != 0 ? ENOENT : EPROTO);
}

int dtlsplex_config_set_certificate(dtlsplex_config *cfg, const char *chain_pem_file,
                                    const char *key_pem_file) {
  if (check_settable(cfg) != 0)
    return -1;
  if (chain_pem_file == NULL || key_pem_file == NULL)
    return fail(EINVAL);
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(cfg->ctx, chain_pem_file) != 1)
    return load_error(chain_pem_file);
  if (SSL_CTX_use_PrivateKey_file(cfg->ctx, key_pem_file, SSL_FILETYPE_PEM) != 1)
    return load_error(key_pem_file);
  if (SSL_CTX_check_private_key(cfg->ctx) != 1)
    return load_error(NULL);
  return 0;
}

int dtlsplex_config_set_ca(dtlsplex_config *cfg, const char *ca_file, const char *ca_dir) {
  if (check_settable(cfg) != 0)
    return -1;
  if (ca_file == NULL && ca_dir == NULL)
    return fail(EINVAL);
  if ((ca_file != NULL && access(ca_file, R_OK) != 0) || (ca_dir != NULL && access(ca_dir, R_OK) != 0))
    return fail(ENOENT);
  X509_STORE *store = X509_STORE_new();
  if (store == NULL)
    return fail(ENOMEM);
  ERR_clear_error();
  if ((ca_file != NULL && X509_STORE_load_file(store, ca_file) != 1) ||
      (ca_dir != NULL && X509_STORE_load_path(store, ca_dir) != 1)) {
    X509_STORE_free(store);
    return load_error(NULL);
  }
  SSL_CTX_set_cert_store(cfg->ctx, store); /* instead of the system store */
  cfg->ca_set = 1;
  if (ca_file != NULL) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names != NULL)
      SSL_CTX_set_client_CA_list(cfg->ctx, names);
  }
  ERR_clear_error();
  return 0;
}

int dtlsplex_config_set_verify(dtlsplex_config *cfg, int mode) {
  if (check_settable(cfg) != 0)
    return -1;
  int chain_only = (mode & DTLSPLEX_VERIFY_CHAIN_ONLY) != 0;
  mode &= ~DTLSPLEX_VERIFY_CHAIN_ONLY;
  if ((mode != DTLSPLEX_VERIFY_PEER && mode != DTLSPLEX_VERIFY_REQUIRE && mode != DTLSPLEX_VERIFY_NONE) ||
      (mode == DTLSPLEX_VERIFY_NONE && chain_only))
    return fail(EINVAL);
  cfg->verify = mode;
  cfg->chain_only = chain_only;
  apply_verify(cfg);
  return 0;
}

/* The PSK callbacks and suites go in only with a key (client) or a way to
 * find keys (server): with a client callback set, libssl offers PSK suites,
 * and a server could pick one the client has no key for. */
static int enable_psk(dtlsplex_config *cfg, int has_client_key) {
  if (has_client_key)
    SSL_CTX_set_psk_client_callback(cfg->ctx, psk_client_cb);
  SSL_CTX_set_psk_server_callback(cfg->ctx, psk_server_cb);
  if (!cfg->ciphers_set) {
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(cfg->ctx, PSK_CIPHERS ":" DEFAULT_CIPHERS) != 1)
      return fail(EPROTO);
  }
  return 0;
}

int dtlsplex_config_set_psk_lookup(dtlsplex_config *cfg, dtlsplex_psk_lookup_fn fn, void *arg) {
  if (check_settable(cfg) != 0)
    return -1;
  if (fn == NULL)
    return fail(EINVAL);
  if (enable_psk(cfg, 0) != 0)
    return -1;
  cfg->psk_lookup = fn;
  cfg->psk_lookup_arg = arg;
  return 0;
}

int dtlsplex_config_set_psk_hint(dtlsplex_config *cfg, const char *hint) {
  if (check_settable(cfg) != 0)
    return -1;
  if (hint == NULL || strlen(hint) > DP_PSK_IDENTITY_MAX)
    return fail(EINVAL);
  ERR_clear_error();
  if (SSL_CTX_use_psk_identity_hint(cfg->ctx, hint) != 1) {
    ERR_clear_error();
    return fail(ENOMEM);
  }
  return 0;
}

int dtlsplex_config_set_keylog(dtlsplex_config *cfg, const char *path) {
  if (check_settable(cfg) != 0)
    return -1;
  FILE *f = NULL;
  if (path != NULL) {
    /* Only the owner may read the keys: not through a symbolic link, not in
     * a file someone else made, not in one others can read. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0)) {
      close(fd);
      return fail(EACCES);
    }
    if ((f = fdopen(fd, "a")) == NULL) {
      int err = errno;
      close(fd);
      return fail(err);
    }
  }
  if (cfg->keylog != NULL)
    fclose(cfg->keylog);
  cfg->keylog = f;
  SSL_CTX_set_keylog_callback(cfg->ctx, f != NULL ? keylog_cb : NULL);
  return 0;
}

int dtlsplex_config_set_psk(dtlsplex_config *cfg, const char *identity, const unsigned char *key,
                            size_t key_len) {
  if (check_settable(cfg) != 0)
    return -1;
  if (identity == NULL || key == NULL || identity[0] == '\0' ||
      strlen(identity) > DP_PSK_IDENTITY_MAX || key_len == 0 || key_len > DP_PSK_KEY_MAX)
    return fail(EINVAL);
  dp_psk **slot = &cfg->psks;
  while (*slot != NULL && strcmp((*slot)->identity, identity) != 0)
    slot = &(*slot)->next;
  if (*slot == NULL) {
    if (enable_psk(cfg, 1) != 0)
      return -1;
    *slot = calloc(1, sizeof **slot);
    if (*slot == NULL)
      return fail(ENOMEM);
  }
  strcpy((*slot)->identity, identity);
  memcpy((*slot)->key, key, key_len);
  (*slot)->key_len = key_len;
  return 0;
}

int dtlsplex_config_set_role(dtlsplex_config *cfg, int role) {
  if (check_settable(cfg) != 0)
    return -1;
  if (role != DTLSPLEX_ROLE_CLIENT && role != DTLSPLEX_ROLE_SERVER && role != DTLSPLEX_ROLE_BOTH)
    return fail(EINVAL);
  cfg->role = role;
  return 0;
}

int dtlsplex_config_set_mtu(dtlsplex_config *cfg, unsigned int udp_payload_bytes) {
  if (check_settable(cfg) != 0)
    return -1;
  /* libssl writes a large flight in pieces of up to 4 KiB, which the
   * endpoint packs back into datagrams of up to this size (dgram_bio.h). */
  if (udp_payload_bytes < 256 || udp_payload_bytes > DTLSPLEX_MTU_MAX)
    return fail(EINVAL);
  cfg->mtu = udp_payload_bytes;
  return 0;
}

int dtlsplex_config_set_ciphers(dtlsplex_config *cfg, const char *openssl_cipher_list) {
  if (check_settable(cfg) != 0)
    return -1;
  if (openssl_cipher_list == NULL)
    return fail(EINVAL);
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(cfg->ctx, openssl_cipher_list) != 1) {
    ERR_clear_error();
    return fail(EINVAL);
  }
  cfg->ciphers_set = 1;
  return 0;
}

int dtlsplex_config_set_timeouts(dtlsplex_config *cfg, unsigned int handshake_ms, unsigned int idle_ms) {
  if (check_settable(cfg) != 0)
    return -1;
  if (handshake_ms < 100)
    return fail(EINVAL);
  cfg->handshake_ms = handshake_ms;
  cfg->idle_ms = idle_ms;
  return 0;
}

int dtlsplex_config_set_retransmit(dtlsplex_config *cfg, unsigned int initial_ms, unsigned int max_ms) {
  if (check_settable(cfg) != 0)
    return -1;
  if (initial_ms < 10 || max_ms < initial_ms || max_ms > 60000)
    return fail(EINVAL);
  cfg->rto_initial_ms = initial_ms;
  cfg->rto_max_ms = max_ms;
  return 0;
}

int dtlsplex_config_set_limits(dtlsplex_config *cfg, unsigned int max_peers, unsigned int max_handshakes) {
  if (check_settable(cfg) != 0)
    return -1;
  if (max_peers == 0 || max_handshakes == 0 || max_handshakes > max_peers)
    return fail(EINVAL);
  cfg->max_peers = max_peers;
  cfg->max_handshakes = max_handshakes;
  return 0;
}

int dtlsplex_config_set_source_share(dtlsplex_config *cfg, unsigned int v4_prefix, unsigned int v6_prefix,
                                     unsigned int share_percent) {
  if (check_settable(cfg) != 0)
    return -1;
  if (v4_prefix > 32 || v6_prefix > 128 || share_percent == 0 || share_percent > 100)
    return fail(EINVAL);
  cfg->source_v4_prefix = v4_prefix;
  cfg->source_v6_prefix = v6_prefix;
  cfg->source_share_percent = share_percent;
  return 0;
}

int dtlsplex_config_set_handshake_budget(dtlsplex_config *cfg, unsigned int per_second, unsigned int burst) {
  if (check_settable(cfg) != 0)
    return -1;
  if ((per_second > 0 && burst == 0) || per_second > 1000000)
    return fail(EINVAL);
  cfg->budget_per_second = per_second;
  cfg->budget_burst = burst;
  return 0;
}

int dtlsplex_config_set_eviction(dtlsplex_config *cfg, unsigned int min_silence_ms) {
  if (check_settable(cfg) != 0)
    return -1;
  cfg->evict_after_ms = min_silence_ms;
  return 0;
}

int dtlsplex_config_set_fleet_secret(dtlsplex_config *cfg, const unsigned char *secret, size_t len) {
  if (dtlsplex_config_set_cookie_secret(cfg, secret, len) != 0)
    return -1;
  dp_ticket_keys_set(&cfg->tickets, secret, len);
  set_session_context(cfg);
  return 0;
}

int dtlsplex_config_set_resumption(dtlsplex_config *cfg, int enabled, unsigned int ticket_period_s) {
  if (check_settable(cfg) != 0)
    return -1;
  if ((enabled != 0 && enabled != 1) ||
      (ticket_period_s != 0 && (ticket_period_s < DP_TICKET_PERIOD_MIN_S || ticket_period_s > DP_TICKET_PERIOD_MAX_S)))
    return fail(EINVAL);
  cfg->resumption = enabled;
  if (enabled)
    SSL_CTX_clear_options(cfg->ctx, SSL_OP_NO_TICKET);
  else
    SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_TICKET);
  if (ticket_period_s != 0) {
    dp_ticket_keys_set_period(&cfg->tickets, ticket_period_s);
    SSL_CTX_set_timeout(cfg->ctx, 2 * (long)ticket_period_s);
  }
  return 0;
}

int dtlsplex_config_set_resume_after(dtlsplex_config *cfg, unsigned int silence_ms) {
  if (check_settable(cfg) != 0)
    return -1;
  cfg->resume_after_ms = silence_ms;
  return 0;
}

int dtlsplex_config_set_cookie_secret(dtlsplex_config *cfg, const unsigned char *secret, size_t len) {
  if (check_settable(cfg) != 0)
    return -1;
  if (secret == NULL || len < 16 || len > sizeof cfg->cookie_secret)
    return fail(EINVAL);
  memcpy(cfg->cookie_secret, secret, len);
  cfg->cookie_secret_len = len;
  return 0;
}

int dtlsplex_config_set_event_callback(dtlsplex_config *cfg, dtlsplex_event_fn fn, void *arg) {
  if (check_settable(cfg) != 0)
    return -1;
  cfg->event_fn = fn;
  cfg->event_arg = arg;
  return 0;
}

int dtlsplex_config_set_log_callback(dtlsplex_config *cfg, dtlsplex_log_fn fn, void *arg, int level) {
  if (check_settable(cfg) != 0)
    return -1;
  if (level < DTLSPLEX_LOG_ERROR || level > DTLSPLEX_LOG_DEBUG)
    return fail(EINVAL);
  cfg->log_fn = fn;
  cfg->log_arg = arg;
  cfg->log_level = level;
  return 0;
}

struct ssl_ctx_st *dtlsplex_config_get_ssl_ctx(dtlsplex_config *cfg) {
  if (cfg == NULL) {
    errno = EINVAL;
    return NULL;
  }
  return cfg->ctx;
}

void dp_log(const dtlsplex_config *cfg, int level, const char *fmt, ...) {
  if (cfg->log_fn == NULL || level > cfg->log_level)
    return;
  char message[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  cfg->log_fn(level, message, cfg->log_arg);
}

const char *dtlsplex_version(void) { return "dtlsplex " PACKAGE_VERSION; }
