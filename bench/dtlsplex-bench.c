/*
 * dtlsplex-bench: DTLS (dtlsplex) figures next to plain UDP, measured in the
 * same run, on loopback, with the same sizes and the same socket setup.
 *
 *   dtlsplex-bench [--quick] [--seconds N] [--peers N] [--only LIST]
 *   dtlsplex-bench --instructions [--quick] [--keep]
 *
 * The server side of every measurement is a forked process with its own
 * socket (so that its CPU time, RSS and heap are its own); the clients run in
 * the main thread.  Every socket that blocks has SO_RCVTIMEO and every loop
 * is bounded by time, so nothing can hang.  Progress goes to stderr; stdout
 * gets one table, notes on what each figure is, and the targets.
 *
 * --instructions counts instead of timing: the server runs under valgrind's
 * callgrind (see "Instruction counts" below), so that its figures do not move
 * with the machine's noise.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <dtlsplex.h>

#ifdef HAVE_VALGRIND_CALLGRIND_H
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND 1
#else
/* Without the header --instructions refuses to run (exit 2): never reached. */
#define HAVE_CALLGRIND 0
#define CALLGRIND_TOGGLE_COLLECT ((void)0)
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

/* ---- Settings ----------------------------------------------------------- */

#define CIPHER "ECDHE-ECDSA-AES128-GCM-SHA256"
#define GROUP "P-256"  /* ECDHE group, pinned so the key-exchange baseline matches */
#define DTLS_MTU 1300  /* UDP payload bytes; gives a data MTU >= 1200 with AES-GCM */
#define JUMBO_MTU 9100 /* the same for JUMBO: a data MTU >= 9000 */
#define BIG 1200       /* payload sizes, identical for UDP and DTLS */
#define SMALL 64
#define JUMBO 9000
/* The largest datagram sent: the size of every buffer that holds one. */
#define DGRAM_MAX JUMBO
#define WINDOW 32   /* one-way: datagrams in flight */
#define ACK_EVERY 8 /* one-way: the receiver acks every N datagrams */
#define CLIENT_RCVTIMEO_MS 500
#define SERVER_RCVTIMEO_MS 200
/* A server with no datagram for this long exits (a backstop: PR_SET_PDEATHSIG
 * already ends it with the benchmark).  Longer than any idle-peer build-up,
 * during which the one-peer reference server hears nothing. */
#define SERVER_IDLE_EXIT_S 900
#define CALL_TRIES 4          /* request/reply attempts for control messages */
#define HS_SLOTS_MAX 4
#define HS_STUCK_S 5.0        /* a client handshake older than this counts as failed */
#define IDLE_PEER_MS 3600000u /* idle timeout for the peer-scaling server: nothing expires */
/* dtlsplex releases an idle session's buffers after 2 s of silence: from
 * then on a peer is idle in every sense.  The scaling rates are measured
 * once the newest idle peer is this old (and, at the largest count, also at
 * once, while the youngest peers are still being released). */
#define SETTLED_S 2.5
/* Server work per resumed handshake, at most this share of a full one's
 * (CPU in the timed rows, instructions in --instructions). */
#define RESUMED_TARGET_PCT 15

/* First byte of every benchmark datagram (same protocol for UDP and DTLS). */
enum {
  MSG_ECHO = 'E',    /* echoed back whole */
  MSG_DATA = 'D',    /* one-way data: counted; every ACK_EVERY-th is acked */
  MSG_ACK = 'A',     /* server -> client: cumulative count of MSG_DATA */
  MSG_REPORT = 'R',  /* server replies with a struct server_report */
  MSG_QUIT = 'Q',    /* server replies, then exits */
  MSG_NOOP = 'N',    /* ignored (first datagram of a handshake-only client) */
  MSG_BALLAST = 'B', /* server holds (allocated, touched) the 8-byte count of bytes that follows */
  /* --instructions only: */
  MSG_MARK = 'M', /* ends a phase: callgrind writes the server's count, labelled by the
                     LABEL_MAX bytes that follow, to a file of its own */
  MSG_PK = 'K'    /* server runs the public-key baseline: 8-byte count, then LABEL_MAX
                     bytes naming the key-exchange group */
};
#define HDR 9        /* type byte + 8-byte sequence number */
#define LABEL_MAX 48 /* NUL-terminated, padded: every mark is the same size */

/* Groups of measurements, for --only. */
enum { M_HANDSHAKE = 1, M_PINGPONG = 2, M_ONEWAY = 4, M_PEERS = 8, M_PROXY = 16, M_ALL = 31 };

typedef struct {
  double seconds; /* per measurement */
  long peers_cap; /* largest idle-peer count to build */
  int quick;
  int only;         /* M_* bits */
  int instructions; /* --instructions: count instead of timing */
  int keep;         /* --keep: leave callgrind's files for callgrind_annotate */
} options;

/* What a server reports about itself (same host, same binary: sent raw). */
typedef struct {
  double cpu_s;         /* getrusage(RUSAGE_SELF) user + system of the server process,
                           less what answering reports took (mallinfo2 walks the heap) */
  uint64_t rss_kib;     /* /proc/self/statm resident */
  uint64_t heap_bytes;  /* mallinfo2: uordblks + hblkhd */
  uint64_t data_count;  /* MSG_DATA received so far */
  uint64_t echo_count;  /* MSG_ECHO answered so far */
  uint64_t peers;       /* dtlsplex_stats: sessions (0 for UDP) */
  uint64_t handshaking; /* of those, still handshaking */
  uint64_t handshakes_ok;
  uint64_t resumed;     /* dtlsplex_stats: of handshakes_ok, those that resumed a session */
} server_report;

static options opt = {.seconds = 2.5, .peers_cap = 10000, .only = M_ALL};
static char tmpdir[64], ca_pem[128], chain_pem[128], key_pem[128];
static char cg_dir[64]; /* --instructions: callgrind's files */
/* The clients' configurations, made by use_setup.  The library keeps a
 * client's last session with each server in its configuration and offers it
 * on the next handshake with that server, from any socket: the clients of
 * full handshakes therefore have one with resumption off. */
static dtlsplex_config *client_cfg; /* shared by every other DTLS client socket: it resumes */
static dtlsplex_config *full_cfg;   /* resumption off: every handshake it starts is full */

/* ---- Small helpers ------------------------------------------------------ */

static void die(const char *what) {
  fprintf(stderr, "dtlsplex-bench: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void progress(const char *what) { fprintf(stderr, "dtlsplex-bench: %s\n", what); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Resident memory of a process, from its statm file ("/proc/self/statm"). */
static uint64_t statm_rss_kib(const char *statm) {
  unsigned long size = 0, resident = 0;
  FILE *f = fopen(statm, "r");
  if (f != NULL) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

static uint64_t heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* The one timing loop: calls step until `seconds` pass or `max_ops` (if > 0)
 * operations are done.  step returns the operations it completed, or -1 to
 * abort.  Returns operations per second (NAN if aborted); *ops gets the total. */
typedef long (*step_fn)(void *arg);

static double run_for(double seconds, long max_ops, step_fn step, void *arg, long *ops) {
  long done = 0;
  double start = now_s(), end = start + seconds;
  int aborted = 0;
  while (now_s() < end && (max_ops <= 0 || done < max_ops)) {
    long n = step(arg);
    if (n < 0) {
      aborted = 1;
      break;
    }
    done += n;
  }
  double elapsed = now_s() - start;
  if (ops != NULL)
    *ops = done;
  return aborted || elapsed <= 0 ? NAN : (double)done / elapsed;
}

/* The larger of two figures, NAN if either is (no libm: the build does not link it). */
static double worse_of(double a, double b) {
  if (isnan(a) || isnan(b))
    return NAN;
  return a > b ? a : b;
}

static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, sizeof v); }

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static struct sockaddr_in loopback(uint32_t host_order_ip, uint16_t port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(host_order_ip);
  return a;
}

/* Every socket of the benchmark, UDP or DTLS, client or server, is made here:
 * AF_INET, bound to a loopback address (or, for one measurement's servers, to
 * 0.0.0.0), default buffers; blocking sockets get SO_RCVTIMEO. */
static int open_udp(uint32_t ip, int rcvtimeo_ms, int nonblocking) {
  int fd = socket(AF_INET, SOCK_DGRAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a = loopback(ip, 0);
  struct timeval tv = {.tv_sec = rcvtimeo_ms / 1000, .tv_usec = (rcvtimeo_ms % 1000) * 1000};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      (!nonblocking && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

/* ---- Certificates (ECDSA P-256, made in-process) ----------------------- */

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
  int ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

/* A certificate for key, signed by issuer (NULL: self-signed CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key) {
  X509 *x = X509_new();
  if (x == NULL)
    return NULL;
  int is_ca = issuer == NULL;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), is_ca ? 1 : 2);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
  X509_set_issuer_name(x, is_ca ? name : X509_get_subject_name(issuer));
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, is_ca ? x : issuer, x, NULL, NULL, 0);
  int ok = add_ext(x, &v3, NID_subject_key_identifier, "hash");
  if (is_ca) {
    ok = ok && add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") &&
         add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    ok = ok && add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") &&
         add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") &&
         add_ext(x, &v3, NID_ext_key_usage, "serverAuth") &&
         add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") &&
         add_ext(x, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  }
  if (!ok || X509_sign(x, is_ca ? key : issuer_key, EVP_sha256()) <= 0) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return 0;
  int ok = cert != NULL ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok == 1;
}

static void remove_pems(void) {
  if (tmpdir[0] == '\0')
    return;
  unlink(ca_pem);
  unlink(chain_pem);
  unlink(key_pem);
  rmdir(tmpdir);
}

/* The files' names in dir (also in the counted server of --instructions,
 * which is told the directory). */
static void name_pems(const char *dir) {
  snprintf(tmpdir, sizeof tmpdir, "%s", dir);
  snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", tmpdir);
  snprintf(chain_pem, sizeof chain_pem, "%s/server.pem", tmpdir);
  snprintf(key_pem, sizeof key_pem, "%s/server.key", tmpdir);
}

static void make_pems(void) {
  char dir[] = "/tmp/dtlsplex-bench.XXXXXX";
  if (mkdtemp(dir) == NULL)
    die("mkdtemp");
  name_pems(dir);
  EVP_PKEY *ca_key = EVP_EC_gen(GROUP), *key = EVP_EC_gen(GROUP);
  X509 *ca = ca_key != NULL ? make_cert(ca_key, "dtlsplex-bench CA", NULL, NULL) : NULL;
  X509 *leaf = ca != NULL && key != NULL ? make_cert(key, "localhost", ca, ca_key) : NULL;
  int ok = leaf != NULL && write_pem(ca_pem, ca, NULL) && write_pem(chain_pem, leaf, NULL) &&
           write_pem(key_pem, NULL, key);
  X509_free(leaf);
  X509_free(ca);
  EVP_PKEY_free(key);
  EVP_PKEY_free(ca_key);
  if (!ok) {
    errno = EPROTO;
    die("making the certificates");
  }
}

/* ---- dtlsplex configurations ------------------------------------------- */

/* How servers and DTLS clients are made.  Most measurements run with the
 * default setup; the few that need another switch to it with use_setup and
 * back.  A server takes the setup in force when it is started (its socket in
 * server_start, its configuration in make_config, in the forked process);
 * DTLS clients take it through client_cfg and full_cfg, which use_setup
 * makes anew. */
typedef struct {
  const char *server_groups, *client_groups; /* key exchange groups; NULL: the library's own */
  unsigned int mtu;                          /* both DTLS sides */
  uint32_t server_ip;                        /* what the server socket is bound to */
} setup;

static const setup default_setup = {
    .server_groups = GROUP, .client_groups = GROUP, .mtu = DTLS_MTU, .server_ip = INADDR_LOOPBACK};
/* A client that lists P-521 first, against a server with the library's
 * default groups. */
static const setup p521_setup = {
    .server_groups = NULL, .client_groups = "P-521:P-256:X25519", .mtu = DTLS_MTU, .server_ip = INADDR_LOOPBACK};
/* A client that offers X25519, then P-256, against a server with the
 * library's default groups (X25519 first): an X25519 handshake. */
static const setup x25519_setup = {
    .server_groups = NULL, .client_groups = "X25519:P-256", .mtu = DTLS_MTU, .server_ip = INADDR_LOOPBACK};
/* Datagrams of JUMBO bytes: one record each, so both sides need the MTU. */
static const setup jumbo_setup = {
    .server_groups = GROUP, .client_groups = GROUP, .mtu = JUMBO_MTU, .server_ip = INADDR_LOOPBACK};
/* A server socket bound to the wildcard address: dtlsplex then reads
 * IP_PKTINFO on every datagram and answers with it (from the address each
 * peer reached).  Clients still send to 127.0.0.1. */
static const setup wildcard_setup = {
    .server_groups = GROUP, .client_groups = GROUP, .mtu = DTLS_MTU, .server_ip = INADDR_ANY};

static setup setup_in_use;

/* The same settings for both sides: cipher, group, MTU. */
static dtlsplex_config *make_config(int server, unsigned int max_peers) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  if (cfg == NULL)
    return NULL;
  SSL_CTX *ctx = dtlsplex_config_get_ssl_ctx(cfg);
  const char *groups = server ? setup_in_use.server_groups : setup_in_use.client_groups;
  int ok = dtlsplex_config_set_ciphers(cfg, CIPHER) == 0 && dtlsplex_config_set_mtu(cfg, setup_in_use.mtu) == 0 &&
           (groups == NULL || SSL_CTX_set1_groups_list(ctx, groups) == 1);
  if (server)
    ok = ok && dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER) == 0 &&
         dtlsplex_config_set_certificate(cfg, chain_pem, key_pem) == 0 &&
         dtlsplex_config_set_limits(cfg, max_peers, max_peers < 256 ? max_peers : 256) == 0 &&
         dtlsplex_config_set_timeouts(cfg, 15000, IDLE_PEER_MS) == 0;
  else
    ok = ok && dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_CLIENT) == 0 &&
         dtlsplex_config_set_ca(cfg, ca_pem, NULL) == 0 && dtlsplex_config_set_timeouts(cfg, 5000, 0) == 0;
  if (!ok) {
    dtlsplex_config_free(cfg);
    return NULL;
  }
  return cfg;
}

static void free_client_configs(void) {
  dtlsplex_config_free(client_cfg);
  dtlsplex_config_free(full_cfg);
  client_cfg = full_cfg = NULL;
}

/* Puts s in force for the servers and clients made from now on.  Sockets
 * already attached keep their configuration (it is reference-counted). */
static int use_setup(const setup *s) {
  setup_in_use = *s;
  free_client_configs();
  client_cfg = make_config(0, 0);
  full_cfg = make_config(0, 0);
  return client_cfg != NULL && full_cfg != NULL && dtlsplex_config_set_resumption(full_cfg, 0, 0) == 0 ? 0 : -1;
}

/* Every measurement expects the default setup unless it asks for another. */
static void use_default_setup(void) {
  if (use_setup(&default_setup) < 0)
    die("client configuration");
}

/* ---- Transports: plain UDP and DTLS, behind the same calls -------------- */

typedef struct {
  const char *name;
  int (*attach_server)(int fd, unsigned int max_peers); /* in the server process */
  int (*attach_client)(int fd, const struct sockaddr_in *server);
  void (*detach)(int fd);
  void (*stats)(int fd, server_report *out);
  ssize_t (*send)(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
                  socklen_t to_len);
  ssize_t (*recv)(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *from_len);
} transport;

static int udp_attach_server(int fd, unsigned int max_peers) {
  (void)fd, (void)max_peers;
  return 0;
}

static int udp_attach_client(int fd, const struct sockaddr_in *server) {
  (void)fd, (void)server;
  return 0;
}

static void udp_detach(int fd) { (void)fd; }

static void udp_stats(int fd, server_report *out) { (void)fd, (void)out; }

static ssize_t udp_send(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
                        socklen_t to_len) {
  return sendto(fd, buf, len, flags, to, to_len);
}

static ssize_t udp_recv(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                        socklen_t *from_len) {
  return recvfrom(fd, buf, len, flags, from, from_len);
}

/* The socket keeps its own reference to the configuration. */
static int dtls_attach_server(int fd, unsigned int max_peers) {
  dtlsplex_config *cfg = make_config(1, max_peers);
  int r = cfg != NULL ? dtlsplex_attach(fd, cfg) : -1;
  dtlsplex_config_free(cfg);
  return r;
}

static int attach_client_with(int fd, dtlsplex_config *cfg, const struct sockaddr_in *server) {
  if (dtlsplex_attach(fd, cfg) < 0)
    return -1;
  return dtlsplex_set_peer_name(fd, (const struct sockaddr *)server, sizeof *server, "localhost");
}

static int dtls_attach_client(int fd, const struct sockaddr_in *server) {
  return attach_client_with(fd, client_cfg, server);
}

static void dtls_detach(int fd) { dtlsplex_detach(fd); }

static void dtls_stats(int fd, server_report *out) {
  struct dtlsplex_stats st;
  if (dtlsplex_stats(fd, &st) == 0) {
    out->peers = st.peers;
    out->handshaking = st.handshakes_active;
    out->handshakes_ok = st.handshakes_ok;
    out->resumed = st.handshakes_resumed;
  }
}

static const transport udp_transport = {
    .name = "UDP",
    .attach_server = udp_attach_server,
    .attach_client = udp_attach_client,
    .detach = udp_detach,
    .stats = udp_stats,
    .send = udp_send,
    .recv = udp_recv,
};
static const transport dtls_transport = {
    .name = "DTLS",
    .attach_server = dtls_attach_server,
    .attach_client = dtls_attach_client,
    .detach = dtls_detach,
    .stats = dtls_stats,
    .send = dtlssendto,
    .recv = dtlsrecvfrom,
};
enum { T_UDP, T_DTLS };
static const transport *const transports[2] = {&udp_transport, &dtls_transport};

/* ---- Public-key operations alone --------------------------------------- */

typedef struct {
  const char *group; /* of the key exchange: an EC curve, or X25519 */
  EVP_PKEY *sign_key, *peer_key;
} pk_keys;

/* A key in the key-exchange group (EVP_EC_gen makes EC curves only). */
static EVP_PKEY *pk_gen(const char *group) {
  return strcmp(group, "X25519") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "X25519") : EVP_EC_gen(group);
}

/* The signing key is the certificate's kind whatever the group: ECDSA P-256. */
static int pk_open(pk_keys *k, const char *group) {
  *k = (pk_keys){group, EVP_EC_gen(GROUP), pk_gen(group)};
  return k->sign_key != NULL && k->peer_key != NULL ? 0 : -1;
}

static void pk_close(pk_keys *k) {
  EVP_PKEY_free(k->sign_key);
  EVP_PKEY_free(k->peer_key);
}

/* One server handshake's public-key work: ECDSA P-256 sign (of a
 * ServerKeyExchange-sized message, SHA-256), a key generation in the
 * key-exchange group, and the shared-secret derivation (set_peer checks the
 * peer's key, as it does in libssl's derivation). */
static long pk_step(void *arg) {
  pk_keys *k = arg;
  unsigned char msg[130] = {1}, sig[128], secret[64];
  size_t sig_len = sizeof sig, secret_len = sizeof secret;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->sign_key) == 1 &&
           EVP_DigestSign(md, sig, &sig_len, msg, sizeof msg) == 1;
  EVP_MD_CTX_free(md);
  EVP_PKEY *eph = ok ? pk_gen(k->group) : NULL;
  EVP_PKEY_CTX *dc = eph != NULL ? EVP_PKEY_CTX_new(eph, NULL) : NULL;
  ok = dc != NULL && EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, k->peer_key) == 1 &&
       EVP_PKEY_derive(dc, secret, &secret_len) == 1;
  EVP_PKEY_CTX_free(dc);
  EVP_PKEY_free(eph);
  return ok ? 1 : -1;
}

/* CPU microseconds per set of public-key operations, in this process. */
static double measure_pk_baseline(void) {
  progress("public-key baseline (P-256 sign + keygen + derive)");
  pk_keys k;
  double us = NAN;
  if (pk_open(&k, GROUP) == 0) {
    long ops = 0;
    double cpu0 = cpu_s();
    double rate = run_for(opt.seconds, 0, pk_step, &k, &ops);
    if (!isnan(rate) && ops > 0)
      us = (cpu_s() - cpu0) * 1e6 / (double)ops;
  }
  pk_close(&k);
  return us;
}

/* MSG_PK: `count` sets in a row, for --instructions, which counts them in the
 * server process as it counts that process's handshakes.  A plain loop: no
 * clock reading per set to count with it. */
static int pk_run(const char *group, uint64_t count) {
  pk_keys k;
  int ok = pk_open(&k, group) == 0;
  for (uint64_t i = 0; ok && i < count; i++)
    ok = pk_step(&k) == 1;
  pk_close(&k);
  return ok ? 0 : -1;
}

/* ---- The server process ------------------------------------------------- */

static void server_reply(int fd, const transport *t, uint8_t *buf, size_t len, const struct sockaddr *to,
                         socklen_t to_len) {
  if (t->send(fd, buf, len, 0, to, to_len) < 0) {
    /* Lost like any datagram; the client retries or counts it. */
  }
}

/* Memory the server holds for nothing, in pieces of an idle peer's size,
 * every page touched: the control for what holding that much costs a plain
 * UDP server.  Kept until the process exits.  `bytes` is the total to hold,
 * so that a request the client repeated while waiting adds nothing. */
#define BALLAST_PIECE (36 * 1024)
#define BALLAST_TRIES 120 /* at CLIENT_RCVTIMEO_MS each: gigabytes take seconds to touch */

static int hold_ballast(uint64_t bytes) {
  static void *pieces; /* each piece starts with the pointer to the previous one */
  static uint64_t held;
  for (; held < bytes; held += BALLAST_PIECE) {
    void **piece = malloc(BALLAST_PIECE);
    if (piece == NULL)
      return -1;
    memset(piece, 1, BALLAST_PIECE);
    *piece = pieces;
    pieces = piece;
  }
  return 0;
}

static void serve(int fd, const transport *t) {
  uint8_t buf[DGRAM_MAX];
  uint64_t data_count = 0, echo_count = 0;
  double reporting_s = 0;
  for (int idle_ticks = 0; idle_ticks * SERVER_RCVTIMEO_MS < SERVER_IDLE_EXIT_S * 1000;) {
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = t->recv(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR)
        return;
      idle_ticks++;
      continue;
    }
    idle_ticks = 0;
    const struct sockaddr *to = (const struct sockaddr *)&from;
    switch (buf[0]) {
    case MSG_ECHO:
      server_reply(fd, t, buf, (size_t)n, to, from_len);
      echo_count++;
      break;
    case MSG_DATA:
      if (++data_count % ACK_EVERY == 0) {
        buf[0] = MSG_ACK;
        put_u64(buf + 1, data_count);
        server_reply(fd, t, buf, HDR, to, from_len);
      }
      break;
    case MSG_REPORT: {
      double started = cpu_s();
      server_report r = {.cpu_s = started - reporting_s, .data_count = data_count, .echo_count = echo_count};
      r.rss_kib = statm_rss_kib("/proc/self/statm");
      r.heap_bytes = heap_bytes();
      t->stats(fd, &r);
      memcpy(buf + HDR, &r, sizeof r);
      server_reply(fd, t, buf, HDR + sizeof r, to, from_len);
      reporting_s += cpu_s() - started;
      break;
    }
    case MSG_BALLAST:
      if (n >= HDR + 8 && hold_ballast(get_u64(buf + HDR)) == 0)
        server_reply(fd, t, buf, HDR, to, from_len);
      break;
    case MSG_MARK: /* the counted server of --instructions: see count_per_op */
      if (n == HDR + LABEL_MAX) {
        buf[n - 1] = '\0';
        CALLGRIND_DUMP_STATS_AT((const char *)buf + HDR);
        server_reply(fd, t, buf, HDR, to, from_len);
      }
      break;
    case MSG_PK: /* --instructions: the baseline, in the process that does the handshakes */
      if (n == HDR + 8 + LABEL_MAX) {
        buf[n - 1] = '\0';
        if (pk_run((const char *)buf + HDR + 8, get_u64(buf + HDR)) == 0)
          server_reply(fd, t, buf, HDR, to, from_len);
      }
      break;
    case MSG_QUIT:
      server_reply(fd, t, buf, (size_t)n, to, from_len);
      return;
    default:
      break;
    }
  }
}

typedef struct {
  pid_t pid;
  struct sockaddr_in addr;
} server_proc;

/* What a forked server process runs on its socket; it does not return. */
typedef void (*server_main_fn)(int fd, const void *arg);

/* Forks a server process that runs `run` on a socket bound as the setup in
 * use says. */
static int server_spawn(server_main_fn run, const void *arg, server_proc *out) {
  int fd = open_udp(setup_in_use.server_ip, SERVER_RCVTIMEO_MS, 0);
  socklen_t len = sizeof out->addr;
  if (fd < 0)
    return -1;
  if (getsockname(fd, (struct sockaddr *)&out->addr, &len) < 0) {
    close(fd);
    return -1;
  }
  /* Clients send to 127.0.0.1 whatever the bind (a wildcard socket's name
   * is 0.0.0.0); the certificate names 127.0.0.1 too. */
  out->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  pid_t parent = getpid();
  out->pid = fork();
  if (out->pid < 0) {
    close(fd);
    return -1;
  }
  if (out->pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the server never outlives the benchmark (nor an exec) */
    if (getppid() == parent)
      run(fd, arg);
    _exit(1);
  }
  close(fd);
  return 0;
}

typedef struct {
  const transport *t;
  unsigned int max_peers;
} server_args;

static void serve_forked(int fd, const void *arg) {
  const server_args *a = arg;
  if (a->t->attach_server(fd, a->max_peers) < 0)
    _exit(1);
  serve(fd, a->t);
  _exit(0); /* no detach: close_notify to every idle peer is not part of any figure */
}

static int server_start(const transport *t, unsigned int max_peers, server_proc *out) {
  const server_args a = {t, max_peers};
  return server_spawn(serve_forked, &a, out);
}

/* Waits (bounded) for the server to exit, then makes sure it has. */
static void server_reap(server_proc *s) {
  for (double give_up = now_s() + 3.0; now_s() < give_up;) {
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
      return;
    usleep(10000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
}

/* ---- The client side of one connection ---------------------------------- */

typedef struct {
  int fd;
  const transport *t;
  struct sockaddr_in server;
  uint64_t seq;
  uint8_t out[DGRAM_MAX]; /* the datagram being sent; zero beyond its header */
} conn;

static int conn_open(conn *c, const transport *t, const server_proc *s) {
  c->t = t;
  c->server = s->addr;
  c->seq = 0;
  memset(c->out, 0, sizeof c->out);
  c->fd = open_udp(INADDR_LOOPBACK, CLIENT_RCVTIMEO_MS, 0);
  if (c->fd < 0)
    return -1;
  if (t->attach_client(c->fd, &c->server) < 0) {
    close(c->fd);
    return -1;
  }
  return 0;
}

static void conn_close(conn *c) {
  c->t->detach(c->fd);
  close(c->fd);
}

static ssize_t conn_send(conn *c, const void *buf, size_t len) {
  return c->t->send(c->fd, buf, len, 0, (const struct sockaddr *)&c->server, sizeof c->server);
}

static ssize_t conn_recv(conn *c, void *buf, size_t len) {
  return c->t->recv(c->fd, buf, len, 0, NULL, NULL);
}

/* The largest payload of the connection's session, as the library reports
 * it once established (0 for UDP). */
static unsigned int conn_data_mtu(const conn *c) {
  struct dtlsplex_peer_info info;
  if (c->t != &dtls_transport ||
      dtlsplex_peer_info(c->fd, (const struct sockaddr *)&c->server, sizeof c->server, &info) < 0)
    return 0;
  return info.data_mtu;
}

/* Sends a `size`-byte datagram of `type` and waits for the server's reply of
 * the same type and sequence number, up to `tries` times.  Returns the reply
 * length, or -1 (errno EAGAIN: no reply in time). */
static ssize_t conn_call(conn *c, uint8_t type, size_t size, uint8_t *reply, size_t cap, int tries) {
  c->out[0] = type;
  put_u64(c->out + 1, ++c->seq);
  for (int i = 0; i < tries; i++) {
    if (conn_send(c, c->out, size < HDR ? HDR : size) < 0)
      return -1;
    ssize_t n;
    while ((n = conn_recv(c, reply, cap)) >= 0)
      if (n >= HDR && reply[0] == type && get_u64(reply + 1) == c->seq)
        return n;
    if (errno != EAGAIN && errno != EINTR)
      return -1;
  }
  errno = EAGAIN;
  return -1;
}

/* conn_call with `len` bytes of payload after the header; c->out is left
 * zero beyond its header again. */
static ssize_t conn_call_with(conn *c, uint8_t type, const void *payload, size_t len, uint8_t *reply, size_t cap,
                              int tries) {
  memcpy(c->out + HDR, payload, len);
  ssize_t n = conn_call(c, type, HDR + len, reply, cap, tries);
  memset(c->out + HDR, 0, len);
  return n;
}

static int conn_report(conn *c, server_report *r) {
  uint8_t reply[HDR + sizeof *r];
  if (conn_call(c, MSG_REPORT, HDR, reply, sizeof reply, CALL_TRIES) != (ssize_t)sizeof reply)
    return -1;
  memcpy(r, reply + HDR, sizeof *r);
  return 0;
}

/* Stops the server this connection talks to, and closes the connection. */
static void conn_quit(conn *c, server_proc *s) {
  uint8_t reply[HDR];
  conn_call(c, MSG_QUIT, HDR, reply, sizeof reply, CALL_TRIES);
  server_reap(s);
  conn_close(c);
}

/* A server process of one transport and one client connected to it. */
typedef struct {
  server_proc srv;
  conn c;
} session;

static void session_close(session *x) { conn_quit(&x->c, &x->srv); }

/* Connects a client to the server x->srv, which has been started; stops the
 * server if that fails. */
static int session_connect(session *x, const transport *t) {
  if (conn_open(&x->c, t, &x->srv) < 0) {
    kill(x->srv.pid, SIGKILL);
    server_reap(&x->srv);
    return -1;
  }
  server_report warm; /* the first exchange; the handshake, for DTLS */
  if (conn_report(&x->c, &warm) < 0) {
    session_close(x);
    return -1;
  }
  return 0;
}

static int session_open(session *x, const transport *t, unsigned int max_peers) {
  if (server_start(t, max_peers, &x->srv) < 0)
    return -1;
  return session_connect(x, t);
}

static double median(double *v, int n) {
  for (int i = 1; i < n; i++) /* insertion sort; NAN (a failed round) poisons the result */
    for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
      double tmp = v[j];
      v[j] = v[j - 1];
      v[j - 1] = tmp;
    }
  for (int i = 0; i < n; i++)
    if (isnan(v[i]))
      return NAN;
  return v[n / 2];
}

/* A figure and its reference (NAN: none); for paired measurements also the
 * lowest and highest ratio figure / reference seen in a single round. */
typedef struct {
  double value, ref;
  double lo, hi;
} paired;

static paired unpaired(double value, double ref) { return (paired){value, ref, NAN, NAN}; }

/* Compares two setups fairly: ROUNDS alternating rounds of step on value_arg
 * and on ref_arg, seconds / ROUNDS each; each rate is the median of its
 * rounds.  Drift in the machine (frequency, scheduling) then hits both sides
 * alike, and the spread of the per-round ratios shows what is left of it. */
#define ROUNDS 5

static paired run_paired(double seconds, step_fn step, void *value_arg, void *ref_arg) {
  double v[ROUNDS], r[ROUNDS];
  paired p = {.lo = INFINITY, .hi = -INFINITY};
  for (int i = 0; i < ROUNDS; i++) {
    v[i] = run_for(seconds / ROUNDS, 0, step, value_arg, NULL);
    r[i] = run_for(seconds / ROUNDS, 0, step, ref_arg, NULL);
    double ratio = v[i] / r[i];
    p.lo = ratio < p.lo ? ratio : p.lo;
    p.hi = ratio > p.hi ? ratio : p.hi;
  }
  p.value = median(v, ROUNDS);
  p.ref = median(r, ROUNDS);
  if (isnan(p.value) || isnan(p.ref))
    p.lo = p.hi = NAN;
  return p;
}

/* Opens a UDP and a DTLS session, lets init prepare each side's state for
 * step, and runs them paired: DTLS is the value, UDP the reference. */
typedef int (*side_init_fn)(conn *c, void *state);

static paired measure_udp_vs_dtls(step_fn step, side_init_fn init, void *states[2]) {
  session x[2];
  int opened = 0;
  paired result = unpaired(NAN, NAN);
  while (opened < 2 && session_open(&x[opened], transports[opened], 16) == 0)
    opened++;
  if (opened == 2 && init(&x[T_UDP].c, states[T_UDP]) == 0 && init(&x[T_DTLS].c, states[T_DTLS]) == 0)
    result = run_paired(opt.seconds, step, states[T_DTLS], states[T_UDP]);
  while (opened > 0)
    session_close(&x[--opened]);
  return result;
}

/* ---- Measurement: ping-pong round trips --------------------------------- */

typedef struct {
  conn *c;
  size_t size;
  long lost;
  unsigned int data_mtu; /* DTLS only */
} pingpong;

static long pingpong_step(void *arg) {
  pingpong *p = arg;
  uint8_t reply[DGRAM_MAX];
  if (conn_call(p->c, MSG_ECHO, p->size, reply, sizeof reply, 1) >= 0)
    return 1;
  if (errno != EAGAIN)
    return -1;
  p->lost++;
  return 0;
}

static int pingpong_init(conn *c, void *state) {
  pingpong *p = state;
  p->c = c;
  p->data_mtu = conn_data_mtu(c);
  return 0;
}

static paired measure_pingpong(size_t size, unsigned int *data_mtu) {
  pingpong p[2] = {{.size = size}, {.size = size}};
  void *states[2] = {&p[T_UDP], &p[T_DTLS]};
  char what[96];
  snprintf(what, sizeof what, "ping-pong, %zu bytes, UDP and DTLS", size);
  progress(what);
  paired result = measure_udp_vs_dtls(pingpong_step, pingpong_init, states);
  if (p[T_DTLS].data_mtu != 0)
    *data_mtu = p[T_DTLS].data_mtu;
  if (p[T_UDP].lost + p[T_DTLS].lost > 0)
    fprintf(stderr, "  (round trips timed out: UDP %ld, DTLS %ld)\n", p[T_UDP].lost, p[T_DTLS].lost);
  return result;
}

/* ---- Measurement: CPU per round trip, both ends in one thread ----------- */

/* The same round trip with both sockets in this thread: each receive finds
 * its datagram already there, so the time is the CPU work of the two sends
 * and two receives (system calls included), without waiting or waking.  The
 * difference between DTLS and UDP is what encryption and the library add to
 * each round trip; with the ping-pong's UDP round-trip time it bounds the
 * ping-pong ratio any implementation on this machine could reach. */
typedef struct {
  const transport *t;
  int client, server;
  struct sockaddr_in server_addr;
  size_t size;
} local_pair;

static long local_step(void *arg) {
  local_pair *lp = arg;
  uint8_t buf[2048] = {MSG_ECHO};
  struct sockaddr_storage from;
  socklen_t from_len = sizeof from;
  ssize_t n = (ssize_t)lp->size;
  if (lp->t->send(lp->client, buf, lp->size, 0, (struct sockaddr *)&lp->server_addr, sizeof lp->server_addr) != n ||
      lp->t->recv(lp->server, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len) != n ||
      lp->t->send(lp->server, buf, lp->size, 0, (struct sockaddr *)&from, from_len) != n ||
      lp->t->recv(lp->client, buf, sizeof buf, 0, NULL, NULL) != n)
    return -1;
  return 1;
}

/* Opens both ends; for DTLS, runs the handshake by hand (one thread cannot
 * block in it).  Returns 0 or -1. */
static int local_open(local_pair *lp, const transport *t, dtlsplex_config *server_config, size_t size) {
  *lp = (local_pair){.t = t, .size = size, .client = open_udp(INADDR_LOOPBACK, CLIENT_RCVTIMEO_MS, 0),
                     .server = open_udp(INADDR_LOOPBACK, CLIENT_RCVTIMEO_MS, 0)};
  socklen_t len = sizeof lp->server_addr;
  if (lp->client < 0 || lp->server < 0 || getsockname(lp->server, (struct sockaddr *)&lp->server_addr, &len) < 0)
    return -1;
  if (t == &udp_transport)
    return 0;
  const struct sockaddr *to = (const struct sockaddr *)&lp->server_addr;
  if (dtlsplex_attach(lp->server, server_config) < 0 || dtlsplex_attach(lp->client, client_cfg) < 0 ||
      dtlsplex_set_peer_name(lp->client, to, sizeof lp->server_addr, "localhost") < 0 ||
      dtlssendto(lp->client, "N", 1, MSG_DONTWAIT, to, sizeof lp->server_addr) != 1)
    return -1;
  for (double give_up = now_s() + HS_STUCK_S; dtlsplex_pending(lp->server) <= 0 && now_s() < give_up;) {
    dtlsplex_process(lp->server);
    dtlsplex_process(lp->client);
  }
  char first[8];
  return dtlsrecvfrom(lp->server, first, sizeof first, MSG_DONTWAIT, NULL, NULL) == 1 ? 0 : -1;
}

static void local_close(local_pair *lp) {
  for (int i = 0; i < 2; i++) {
    int fd = i == 0 ? lp->client : lp->server;
    if (fd >= 0) {
      lp->t->detach(fd);
      close(fd);
    }
  }
}

/* Microseconds of CPU per round trip: DTLS (value) and UDP (ref). */
static paired measure_local_round_trip(size_t size) {
  char what[96];
  snprintf(what, sizeof what, "CPU per round trip in one thread, %zu bytes, UDP and DTLS", size);
  progress(what);
  dtlsplex_config *cfg = make_config(1, 16);
  local_pair lp[2];
  paired result = unpaired(NAN, NAN);
  int ok = cfg != NULL;
  for (int i = 0; i < 2; i++)
    ok = local_open(&lp[i], transports[i], cfg, size) == 0 && ok;
  if (ok) {
    paired rate = run_paired(opt.seconds, local_step, &lp[T_DTLS], &lp[T_UDP]);
    /* Rates become times: the ratio range turns over with them. */
    result = (paired){1e6 / rate.value, 1e6 / rate.ref, 1.0 / rate.hi, 1.0 / rate.lo};
  }
  for (int i = 0; i < 2; i++)
    local_close(&lp[i]);
  dtlsplex_config_free(cfg);
  return result;
}

/* ---- Measurement: one-way and ping-pong with a window ------------------ */

/* The sender keeps at most WINDOW datagrams outstanding.  One-way: the
 * receiver acknowledges every ACK_EVERY with its cumulative count.  Echoed:
 * every datagram comes back, and each echo that arrives counts. */
typedef struct {
  conn *c;
  size_t size;
  int echoed;    /* 1: ping-pong with a window; 0: one-way */
  uint64_t base; /* one-way: the server's MSG_DATA count before we started */
  uint64_t sent, acked, lost;
  long timeouts;
  unsigned int data_mtu; /* DTLS only */
} window;

/* How many datagrams the reply in buf (n bytes) acknowledges: 0 for none. */
static uint64_t window_acked(window *w, const uint8_t *reply, ssize_t n) {
  if (w->echoed)
    return n == (ssize_t)w->size && reply[0] == MSG_ECHO && get_u64(reply + 1) < w->sent ? 1 : 0;
  if (n < HDR || reply[0] != MSG_ACK || get_u64(reply + 1) - w->base <= w->acked)
    return 0;
  return get_u64(reply + 1) - w->base - w->acked;
}

static long window_step(void *arg) {
  window *w = arg;
  if (w->sent - w->acked - w->lost < WINDOW) {
    uint8_t *msg = w->c->out;
    msg[0] = w->echoed ? MSG_ECHO : MSG_DATA;
    put_u64(msg + 1, w->sent);
    if (conn_send(w->c, msg, w->size) < 0)
      return errno == EAGAIN || errno == ENOBUFS ? 0 : -1;
    w->sent++;
    return 0;
  }
  uint8_t reply[DGRAM_MAX];
  ssize_t n = conn_recv(w->c, reply, w->echoed ? sizeof reply : 64);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    w->timeouts++; /* give up on what is outstanding */
    w->lost = w->sent - w->acked;
    return 0;
  }
  if (n < 0)
    return -1;
  uint64_t delta = window_acked(w, reply, n);
  w->acked += delta;
  if (w->acked + w->lost > w->sent) /* "lost" ones arrived after all */
    w->lost = w->sent - w->acked;
  return (long)delta;
}

static int window_init(conn *c, void *state) {
  window *w = state;
  server_report r;
  if (conn_report(c, &r) < 0)
    return -1;
  w->c = c;
  w->base = r.data_count;
  w->data_mtu = conn_data_mtu(c);
  return 0;
}

static paired measure_window(size_t size, int echoed, unsigned int *data_mtu) {
  window w[2] = {{.size = size, .echoed = echoed}, {.size = size, .echoed = echoed}};
  void *states[2] = {&w[T_UDP], &w[T_DTLS]};
  char what[96];
  snprintf(what, sizeof what, "%s, %zu bytes, %d in flight, UDP and DTLS%s", echoed ? "ping-pong" : "one-way", size,
           WINDOW, setup_in_use.server_ip == INADDR_ANY ? ", server on 0.0.0.0" : "");
  progress(what);
  paired result = measure_udp_vs_dtls(window_step, window_init, states);
  if (w[T_DTLS].data_mtu != 0)
    *data_mtu = w[T_DTLS].data_mtu;
  if (w[T_UDP].timeouts + w[T_DTLS].timeouts > 0)
    fprintf(stderr, "  (%s timeouts: UDP %ld, DTLS %ld)\n", echoed ? "echo" : "ack", w[T_UDP].timeouts,
            w[T_DTLS].timeouts);
  return result;
}

/* ---- Measurement: handshakes (and the client driver for idle peers) ----- */

/* Up to HS_SLOTS_MAX non-blocking DTLS clients, each running one handshake. */
typedef struct {
  const struct sockaddr_in *server;
  int slots;
  int resume;        /* 1: the clients have client_cfg, which offers the server the session it
                        keeps for it (the control connection's): resumed handshakes; 0: full_cfg,
                        full ones, as from distinct clients (idle peers are) */
  int abandon;       /* leave each established session on the server (idle peer) */
  uint32_t next_src; /* 0: every client at 127.0.0.1; else distinct source addresses from here */
  long remaining;    /* handshakes still to start (-1: no limit) */
  int fd[HS_SLOTS_MAX];
  double started[HS_SLOTS_MAX];
  long failed;
} hs_driver;

static uint32_t next_source(hs_driver *d) {
  if (d->next_src == 0)
    return INADDR_LOOPBACK;
  while ((d->next_src & 0xff) == 0 || (d->next_src & 0xff) == 0xff)
    d->next_src++;
  return d->next_src++;
}

/* Starts a handshake in slot i: the first datagram to the server starts it. */
static int hs_begin(hs_driver *d, int i) {
  d->fd[i] = -1;
  if (d->remaining == 0)
    return 0;
  int fd = open_udp(next_source(d), 0, 1);
  if (fd < 0)
    return -1;
  uint8_t noop[HDR] = {MSG_NOOP};
  if (attach_client_with(fd, d->resume ? client_cfg : full_cfg, d->server) < 0 ||
      dtlssendto(fd, noop, sizeof noop, 0, (const struct sockaddr *)d->server, sizeof *d->server) < 0) {
    int err = errno;
    dtlsplex_detach(fd);
    close(fd);
    errno = err;
    return -1;
  }
  d->fd[i] = fd;
  d->started[i] = now_s();
  if (d->remaining > 0)
    d->remaining--;
  return 0;
}

/* Ends slot i's client.  An abandoned established session gets no
 * close_notify: the socket is shut down for writing first (a UDP socket
 * then refuses every send, EPIPE), so the server keeps the peer as an idle
 * established session.  (Closing or replacing the descriptor would not do:
 * the library detaches then, sending close_notify as a closing program's
 * socket should.) */
static void hs_end(hs_driver *d, int i, int established) {
  int fd = d->fd[i];
  if (fd < 0)
    return;
  if (established && d->abandon)
    shutdown(fd, SHUT_WR); /* ENOTCONN on an unconnected socket, but in force */
  dtlsplex_detach(fd);
  close(fd);
  d->fd[i] = -1;
}

/* 1 if slot i's handshake is done, -1 if it failed, 0 if still running. */
static int hs_check(hs_driver *d, int i, int readable) {
  int fd = d->fd[i];
  if (readable || dtlsplex_timeout(fd) == 0)
    dtlsplex_process(fd);
  struct dtlsplex_peer_info info;
  if (dtlsplex_peer_info(fd, (const struct sockaddr *)d->server, sizeof *d->server, &info) < 0)
    return -1;
  if (info.state == DTLSPLEX_STATE_ESTABLISHED)
    return 1;
  if (info.state == DTLSPLEX_STATE_FAILED || now_s() - d->started[i] > HS_STUCK_S)
    return -1;
  return 0;
}

static long hs_step(void *arg) {
  hs_driver *d = arg;
  struct pollfd pfd[HS_SLOTS_MAX];
  int timeout = 50, active = 0;
  for (int i = 0; i < d->slots; i++) {
    pfd[i] = (struct pollfd){.fd = d->fd[i], .events = POLLIN}; /* fd -1 is ignored by poll */
    if (d->fd[i] < 0)
      continue;
    active++;
    int t = dtlsplex_timeout(d->fd[i]);
    if (t >= 0 && t < timeout)
      timeout = t;
  }
  if (active == 0)
    return d->remaining == 0 ? 0 : -1;
  if (poll(pfd, (nfds_t)d->slots, timeout) < 0 && errno != EINTR)
    return -1;
  long done = 0;
  for (int i = 0; i < d->slots; i++) {
    if (d->fd[i] < 0)
      continue;
    int r = hs_check(d, i, pfd[i].revents != 0);
    if (r == 0)
      continue;
    done += r > 0;
    if (r < 0) {
      d->failed++;
      if (d->remaining >= 0)
        d->remaining++; /* a failed handshake is retried */
    }
    hs_end(d, i, r > 0);
    if (hs_begin(d, i) < 0)
      return -1;
  }
  return done;
}

/* Runs handshakes for up to `seconds` or until `count` (if > 0) complete.
 * Returns handshakes per second. */
static double hs_run(hs_driver *d, double seconds, long count, long *done) {
  d->remaining = count > 0 ? count : -1;
  d->failed = 0;
  for (int i = 0; i < d->slots; i++)
    d->fd[i] = -1;
  double rate = NAN;
  int i = 0;
  while (i < d->slots && hs_begin(d, i) == 0)
    i++;
  if (i == d->slots)
    rate = run_for(seconds, count, hs_step, d, done);
  else
    perror("dtlsplex-bench: starting a client handshake");
  for (i = 0; i < d->slots; i++)
    hs_end(d, i, 0);
  return rate;
}

/* The two kinds of handshake, as hs_driver.resume says. */
enum { HS_FULL, HS_RESUMED, HS_KINDS };
static const char *const hs_kind_names[HS_KINDS] = {"full", "resumed"};

typedef struct {
  int clients;
  int resume;  /* HS_FULL or HS_RESUMED (hs_driver.resume) */
  double rate; /* client-side completed handshakes per second */
  long done, failed;
  uint64_t server_done; /* handshakes the server completed meanwhile */
  uint64_t resumed;     /* of those, the ones that resumed a session */
  double cpu_us;        /* server CPU per server-completed handshake */
  double client_cpu_us; /* this process's CPU per client-completed handshake */
} hs_result;

static int handshake_run(conn *c, hs_result *h) {
  server_report before, after;
  if (conn_report(c, &before) < 0)
    return -1;
  hs_driver d = {.server = &c->server, .slots = h->clients, .resume = h->resume};
  double cpu0 = cpu_s();
  h->rate = hs_run(&d, opt.seconds, 0, &h->done);
  h->client_cpu_us = h->done > 0 ? (cpu_s() - cpu0) * 1e6 / (double)h->done : NAN;
  h->failed = d.failed;
  if (conn_report(c, &after) < 0)
    return -1;
  h->server_done = after.handshakes_ok - before.handshakes_ok;
  h->resumed = after.resumed - before.resumed;
  h->cpu_us = h->server_done > 0 ? (after.cpu_s - before.cpu_s) * 1e6 / (double)h->server_done : NAN;
  return 0;
}

/* A run's figures are of the kind it names only if the server says so:
 * none resumed, or all (a resumed client that fails starts afresh). */
static int hs_kind_checked(const hs_result *h) {
  return h->resumed == (h->resume == HS_RESUMED ? h->server_done : 0);
}

/* Runs h[0..n) one after the other against one server: the resumed runs
 * resume the session of the server's control connection, which client_cfg
 * keeps.  A run that fails, or whose handshakes were not all of its kind,
 * shows as n/a. */
static void measure_handshakes(hs_result *h, int n) {
  for (int i = 0; i < n; i++)
    h[i].rate = h[i].cpu_us = h[i].client_cpu_us = NAN;
  session x;
  if (session_open(&x, &dtls_transport, 1024) < 0)
    return;
  for (int i = 0; i < n; i++) {
    char what[96];
    snprintf(what, sizeof what, "DTLS %s handshakes, %d concurrent client%s", hs_kind_names[h[i].resume],
             h[i].clients, h[i].clients > 1 ? "s" : "");
    progress(what);
    if (handshake_run(&x.c, &h[i]) < 0)
      h[i].rate = h[i].cpu_us = NAN;
    if (h[i].failed > 0)
      fprintf(stderr, "  (%ld handshakes failed or timed out)\n", h[i].failed);
    if (!isnan(h[i].rate) && !hs_kind_checked(&h[i])) {
      fprintf(stderr, "dtlsplex-bench: warning: of the server's %llu handshakes %llu resumed; %s expected: "
                      "the row shows n/a\n",
              (unsigned long long)h[i].server_done, (unsigned long long)h[i].resumed,
              h[i].resume == HS_RESUMED ? "all" : "none");
      h[i].rate = h[i].cpu_us = NAN;
    }
  }
  session_close(&x);
}

/* ---- Measurement: many idle peers on one server socket ------------------ */

#define MAX_LEVELS 4

typedef struct {
  double rss_kib, heap_kib; /* per idle peer */
  double idle_s;            /* the newest idle peer had been idle this long */
} per_peer_memory;

/* One count of peers against the one-peer server, over the same rounds. */
typedef struct {
  paired rate;   /* 64-byte round trips/s on the active peer */
  paired cpu_us; /* server CPU (user + system) per round trip */
} scaling_fig;

static const scaling_fig no_fig = {{NAN, NAN, NAN, NAN}, {NAN, NAN, NAN, NAN}};

typedef struct {
  int n;
  long level[MAX_LEVELS];     /* peers wanted on the server socket (the active one included) */
  uint64_t peers[MAX_LEVELS]; /* established peers the server reported */
  scaling_fig fig[MAX_LEVELS]; /* the server with idle peers (value) and a second server with
                                  only its one peer (reference); measured once the newest idle
                                  peer has been silent SETTLED_S */
  scaling_fig fresh;           /* the same at the largest count, as soon as the peers are made */
  scaling_fig ballast;         /* plain UDP: a server holding as much memory as the server with
                                  the most peers had grown by (value), one holding nothing (ref) */
  double grown_kib;            /* that growth: RSS with the most peers minus with one */
  long mem_peers;             /* idle peers the memory figures divide by */
  per_peer_memory mem[2];     /* just after the last peer was made; after the last ping-pong */
} scaling;

static void choose_levels(scaling *s) {
  static const long wanted[] = {1000, 10000, 100000};
  s->n = 0;
  for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
    if (wanted[i] <= opt.peers_cap)
      s->level[s->n++] = wanted[i];
  if (opt.peers_cap > 1 && (s->n == 0 || s->level[s->n - 1] != opt.peers_cap))
    s->level[s->n++] = opt.peers_cap;
  for (int i = 0; i < s->n; i++)
    s->fig[i] = no_fig;
  s->fresh = s->ballast = no_fig;
  s->grown_kib = NAN;
  s->mem[0] = s->mem[1] = (per_peer_memory){NAN, NAN, NAN};
}

static uint64_t established(const server_report *r) { return r->peers - r->handshaking; }

/* Adds idle peers until the server holds `level` established ones. */
static int grow_to(conn *c, hs_driver *d, long level, server_report *r) {
  long missing = level - (long)established(r);
  if (missing <= 0)
    return 0;
  double budget = 10.0 + (double)missing / 200.0;
  char what[96];
  snprintf(what, sizeof what, "establishing %ld idle peers (at most %.0f s)", missing, budget);
  progress(what);
  long done = 0;
  hs_run(d, budget, missing, &done);
  return conn_report(c, r);
}

/* Server memory per idle peer: the growth from `base` divided by the peers added. */
static per_peer_memory memory_growth(const server_report *base, const server_report *now, double idle_s) {
  double peers = (double)(established(now) - established(base));
  per_peer_memory m = {NAN, NAN, idle_s};
  if (peers > 0) {
    m.rss_kib = ((double)now->rss_kib - (double)base->rss_kib) / peers;
    m.heap_kib = ((double)now->heap_bytes - (double)base->heap_bytes) / 1024.0 / peers;
  }
  return m;
}

static double cpu_per_round_trip(const server_report *before, const server_report *after) {
  uint64_t n = after->echo_count - before->echo_count;
  return n > 0 ? (after->cpu_s - before->cpu_s) * 1e6 / (double)n : NAN;
}

/* A server's CPU over the paired rounds covers its idle time during the other
 * server's rounds too: work it does in the background counts against it. */
static scaling_fig scaling_measure(pingpong *p_many, pingpong *p_one) {
  scaling_fig f = no_fig;
  server_report many0, one0, many1, one1;
  if (conn_report(p_many->c, &many0) < 0 || conn_report(p_one->c, &one0) < 0)
    return f;
  f.rate = run_paired(opt.seconds, pingpong_step, p_many, p_one);
  if (conn_report(p_many->c, &many1) == 0 && conn_report(p_one->c, &one1) == 0)
    f.cpu_us = unpaired(cpu_per_round_trip(&many0, &many1), cpu_per_round_trip(&one0, &one1));
  return f;
}

/* one: a server with one peer; many: the server that gets the idle peers. */
static int scaling_run(scaling *s, conn *one, conn *many) {
  hs_driver d = {.server = &many->server, .slots = HS_SLOTS_MAX, .abandon = 1, .next_src = 0x7f010001};
  pingpong p_one = {.c = one, .size = SMALL}, p_many = {.c = many, .size = SMALL};
  server_report base, r;
  /* Memory baseline: the growing server with its one active peer, warmed up. */
  if (isnan(run_for(1.0, 200, pingpong_step, &p_many, NULL)) || conn_report(many, &base) < 0)
    return -1;
  r = base;
  double grown_at = now_s();
  for (int i = 0; i < s->n; i++) {
    if (grow_to(many, &d, s->level[i], &r) < 0)
      return -1;
    grown_at = now_s();
    s->peers[i] = established(&r);
    char what[96];
    if (i == s->n - 1) {
      snprintf(what, sizeof what, "DTLS ping-pong, %d bytes, %llu peers just made vs 1 peer", SMALL,
               (unsigned long long)s->peers[i]);
      progress(what);
      s->fresh = scaling_measure(&p_many, &p_one);
    }
    double settle = grown_at + SETTLED_S - now_s();
    if (settle > 0)
      usleep((useconds_t)(settle * 1e6));
    snprintf(what, sizeof what, "DTLS ping-pong, %d bytes, %llu idle peers vs 1 peer", SMALL,
             (unsigned long long)s->peers[i]);
    progress(what);
    s->fig[i] = scaling_measure(&p_many, &p_one);
  }
  /* Memory at the largest count, twice: as the last peer was made, and after
   * the ping-pong, when every idle peer has been idle for that long at least. */
  server_report idle;
  if (s->n == 0 || conn_report(many, &idle) < 0)
    return -1;
  s->mem_peers = (long)(established(&r) - established(&base));
  s->grown_kib = (double)idle.rss_kib - (double)base.rss_kib;
  s->mem[0] = memory_growth(&base, &r, 0);
  s->mem[1] = memory_growth(&base, &idle, now_s() - grown_at);
  return 0;
}

/* The control: what holding that much memory costs a plain UDP server. */
static void measure_ballast(scaling *s) {
  session held, bare;
  if (!(s->grown_kib > 0) || session_open(&held, &udp_transport, 16) < 0)
    return;
  if (session_open(&bare, &udp_transport, 16) == 0) {
    char what[96];
    snprintf(what, sizeof what, "UDP ping-pong, %d bytes, server holding %.0f MiB vs holding nothing", SMALL,
             s->grown_kib / 1024.0);
    progress(what);
    uint8_t bytes[8], reply[HDR];
    put_u64(bytes, (uint64_t)(s->grown_kib * 1024.0));
    pingpong p_held = {.c = &held.c, .size = SMALL}, p_bare = {.c = &bare.c, .size = SMALL};
    ssize_t done = conn_call_with(&held.c, MSG_BALLAST, bytes, sizeof bytes, reply, sizeof reply, BALLAST_TRIES);
    if (done == HDR)
      s->ballast = scaling_measure(&p_held, &p_bare);
    else
      progress("UDP server holding memory: failed");
    session_close(&bare);
  }
  session_close(&held);
}

static void measure_scaling(scaling *s) {
  choose_levels(s);
  if (s->n == 0)
    return;
  session one, many;
  if (session_open(&one, &dtls_transport, 16) < 0)
    return;
  if (session_open(&many, &dtls_transport, (unsigned int)opt.peers_cap + 16) == 0) {
    if (scaling_run(s, &one.c, &many.c) < 0)
      progress("peer scaling: failed");
    session_close(&many);
  }
  session_close(&one);
  measure_ballast(s);
}

/* ---- Measurement: through dtlsproxy ------------------------------------ */

/* The termination proxy between a DTLS client and a plain UDP echo server
 * (the same serve() loop), against a plain UDP client talking to a plain
 * UDP server directly: what putting DTLS in front of an unchanged UDP
 * service costs a round trip.  Then the proxy's memory per peer it holds
 * (a session, and a socket towards the backend). */

#ifndef DTLSPROXY_PATH
#define DTLSPROXY_PATH "dtlsproxy"
#endif
#define PROXY_PEERS 1000   /* peers held for the memory figure (at most --peers) */
#define PROXY_WAIT_S 10.0  /* for a line from the proxy */

typedef struct {
  pid_t pid;
  int err;              /* read end of its stderr */
  server_proc view;     /* its pid and address, as a server for conn_open */
  char statm[64], stat[64];
} proxy_proc;

typedef struct {
  paired pp[2];     /* BIG, SMALL: through the proxy (value), direct UDP (ref) */
  double cpu_us[2]; /* the proxy's CPU (user + system) per round trip */
  long peers;       /* peers the proxy reported holding */
  double rss_kib;   /* its RSS per held peer */
} proxy_result;

/* One line of the proxy's stderr into buf (without the newline); -1 if none
 * within PROXY_WAIT_S.  Byte by byte: the few lines it writes are short. */
static int proxy_line(proxy_proc *p, char *buf, size_t cap) {
  size_t n = 0;
  for (double give_up = now_s() + PROXY_WAIT_S; now_s() < give_up;) {
    struct pollfd pfd = {.fd = p->err, .events = POLLIN};
    if (poll(&pfd, 1, 100) <= 0)
      continue;
    char c;
    if (read(p->err, &c, 1) != 1)
      return -1;
    if (c == '\n') {
      buf[n] = '\0';
      return 0;
    }
    if (n + 1 < cap)
      buf[n++] = c;
  }
  return -1;
}

/* Starts dtlsproxy on 127.0.0.1 in front of the UDP server `backend`. */
static int proxy_start(const server_proc *backend, proxy_proc *p) {
  const char *path = getenv("DTLSPROXY") != NULL ? getenv("DTLSPROXY") : DTLSPROXY_PATH;
  char port[8], mtu[8], line[128];
  snprintf(port, sizeof port, "%u", (unsigned)ntohs(backend->addr.sin_port));
  snprintf(mtu, sizeof mtu, "%d", DTLS_MTU);
  int pipe_fd[2];
  if (pipe(pipe_fd) < 0)
    return -1;
  pid_t parent = getpid();
  p->pid = fork();
  if (p->pid == 0) {
    dup2(pipe_fd[1], STDERR_FILENO);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == parent) /* nothing idles past a held peer's measurement */
      execl(path, "dtlsproxy", "-l", "127.0.0.1", "0", "--to", "127.0.0.1", port, "-c", chain_pem, "-k",
            key_pem, "--mtu", mtu, "--idle", "3600", (char *)NULL);
    _exit(127);
  }
  close(pipe_fd[1]);
  p->err = pipe_fd[0];
  unsigned listening = 0;
  if (p->pid < 0 || proxy_line(p, line, sizeof line) < 0 ||
      sscanf(line, "listening on 127.0.0.1 %u", &listening) != 1) {
    fprintf(stderr, "dtlsplex-bench: %s did not start (DTLSPROXY names another)\n", path);
    close(p->err);
    if (p->pid > 0) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, NULL, 0);
    }
    return -1;
  }
  p->view = (server_proc){p->pid, loopback(INADDR_LOOPBACK, (uint16_t)listening)};
  snprintf(p->statm, sizeof p->statm, "/proc/%d/statm", (int)p->pid);
  snprintf(p->stat, sizeof p->stat, "/proc/%d/stat", (int)p->pid);
  return 0;
}

static void proxy_stop(proxy_proc *p) {
  kill(p->pid, SIGTERM);
  server_reap(&p->view);
  close(p->err);
}

/* The proxy's CPU time so far: utime and stime, after the command name. */
static double proxy_cpu_s(const proxy_proc *p) {
  char buf[1024];
  FILE *f = fopen(p->stat, "r");
  size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f != NULL)
    fclose(f);
  buf[n] = '\0';
  const char *after = strrchr(buf, ')');
  unsigned long utime, stime;
  if (after == NULL || sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                              &stime) != 2)
    return NAN;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The peers the proxy holds, from its SIGUSR1 line; -1 if it did not say. */
static long proxy_peers(proxy_proc *p) {
  char line[256];
  const char *at;
  kill(p->pid, SIGUSR1);
  while (proxy_line(p, line, sizeof line) == 0)
    if ((at = strstr(line, " peers=")) != NULL)
      return atol(at + 7);
  return -1;
}

/* Round trips through the proxy against direct UDP, and the proxy's CPU
 * per round trip through it (its echo count from the backend). */
static void proxy_pingpong(proxy_proc *p, conn *through, conn *direct, proxy_result *r) {
  static const size_t sizes[2] = {BIG, SMALL};
  for (int s = 0; s < 2; s++) {
    char what[96];
    snprintf(what, sizeof what, "ping-pong, %zu bytes, through dtlsproxy and direct UDP", sizes[s]);
    progress(what);
    pingpong value = {.c = through, .size = sizes[s]}, ref = {.c = direct, .size = sizes[s]};
    server_report before, after;
    double cpu0 = proxy_cpu_s(p);
    if (conn_report(through, &before) < 0)
      return;
    r->pp[s] = run_paired(opt.seconds, pingpong_step, &value, &ref);
    if (conn_report(through, &after) == 0 && after.echo_count > before.echo_count)
      r->cpu_us[s] = (proxy_cpu_s(p) - cpu0) * 1e6 / (double)(after.echo_count - before.echo_count);
  }
}

/* Fills the proxy with idle peers (handshaken, one datagram each, then
 * dropped without close_notify) and divides its RSS growth by them. */
static void proxy_hold_peers(proxy_proc *p, proxy_result *r) {
  long want = opt.peers_cap < PROXY_PEERS ? opt.peers_cap : PROXY_PEERS;
  char what[96];
  snprintf(what, sizeof what, "dtlsproxy holding %ld idle peers", want);
  progress(what);
  hs_driver d = {.server = &p->view.addr, .slots = HS_SLOTS_MAX, .abandon = 1, .next_src = 0x7f010001};
  long before = proxy_peers(p);
  uint64_t rss0 = statm_rss_kib(p->statm);
  long done = 0;
  hs_run(&d, 10.0 + (double)want / 200.0, want, &done);
  usleep((useconds_t)(SETTLED_S * 1e6)); /* the idle sessions' buffers released */
  r->peers = proxy_peers(p);
  if (before >= 0 && r->peers > before)
    r->rss_kib = ((double)statm_rss_kib(p->statm) - (double)rss0) / (double)(r->peers - before);
}

static void measure_proxy(proxy_result *r) {
  *r = (proxy_result){{unpaired(NAN, NAN), unpaired(NAN, NAN)}, {NAN, NAN}, -1, NAN};
  session direct;
  server_proc backend;
  proxy_proc p;
  if (session_open(&direct, &udp_transport, 16) < 0)
    return;
  if (server_start(&udp_transport, 16, &backend) == 0) {
    if (proxy_start(&backend, &p) == 0) {
      conn through;
      server_report warm; /* the handshake with the proxy, and the path to the backend */
      if (conn_open(&through, &dtls_transport, &p.view) == 0) {
        if (conn_report(&through, &warm) == 0) {
          proxy_pingpong(&p, &through, &direct.c, r);
          proxy_hold_peers(&p, r);
        }
        conn_close(&through);
      }
      proxy_stop(&p);
    }
    kill(backend.pid, SIGKILL);
    server_reap(&backend);
  }
  session_close(&direct);
}

/* ---- The table ----------------------------------------------------------- */

#define LABEL_WIDTH 60
/* What build_rows can add: handshakes 9 (rates 4, CPU 5), ping-pong 3 + 2
 * in one thread, one-way 3; then peer_rows: 2 per level, 4 at the largest,
 * 1 when 100000 is not measured, 4 of memory; the proxy's 5. */
#define MAX_ROWS (17 + 2 * MAX_LEVELS + 9 + 5)

typedef struct {
  char label[128]; /* cut to LABEL_WIDTH by add_row */
  paired fig; /* value = DTLS; NAN: n/a */
  const char *unit;
  int decimals;
} row;

static void add_row(row *rows, int *n, paired fig, const char *unit, int decimals, const char *label) {
  row *r = &rows[(*n)++];
  snprintf(r->label, sizeof r->label, "%s", label);
  r->fig = fig;
  r->unit = unit;
  r->decimals = decimals;
}

static void format_value(char *out, size_t cap, double v, int decimals) {
  if (isnan(v))
    snprintf(out, cap, "n/a");
  else
    snprintf(out, cap, "%.*f", decimals, v);
}

static void print_table(const row *rows, int n, const char *ref_heading) {
  printf("%-*s %10s %15s %6s %11s  %s\n", LABEL_WIDTH, "measurement", "DTLS", ref_heading, "ratio",
         "round range", "unit");
  for (int i = 0; i < LABEL_WIDTH + 64; i++)
    putchar('-');
  putchar('\n');
  for (int i = 0; i < n; i++) {
    const paired *f = &rows[i].fig;
    char d[32], u[32], ratio[32], lo[16], hi[16], range[40] = "";
    format_value(d, sizeof d, f->value, rows[i].decimals);
    format_value(u, sizeof u, f->ref, rows[i].decimals);
    format_value(ratio, sizeof ratio, f->value / f->ref, 3);
    if (!isnan(f->lo)) {
      format_value(lo, sizeof lo, f->lo, 2);
      format_value(hi, sizeof hi, f->hi, 2);
      snprintf(range, sizeof range, "%s-%s", lo, hi);
    }
    printf("%-*s %10s %15s %6s %11s  %s\n", LABEL_WIDTH, rows[i].label, d, u, ratio, range, rows[i].unit);
  }
}

/* The first line: what ran, on what, how long it took. */
static void print_heading(double start) {
  const char *mode = opt.instructions ? (opt.quick ? " (--instructions --quick)" : " (--instructions)")
                     : opt.quick      ? " (--quick)"
                                      : "";
  printf("%s, %s, %ld CPUs online, run took %.0f s%s\n\n", dtlsplex_version(), OpenSSL_version(OPENSSL_VERSION),
         sysconf(_SC_NPROCESSORS_ONLN), now_s() - start, mode);
}

/* ---- Targets ------------------------------------------------------------- */

static void target(const char *what, double measured, double limit, int at_least, const char *shown) {
  int met = at_least ? measured >= limit : measured <= limit;
  const char *verdict = isnan(measured) ? "not measured" : met ? "met" : "missed";
  printf("  %-52s %-44s %s\n", what, isnan(measured) ? "n/a" : shown, verdict);
}

static void target_ratio(const char *what, paired fig, double limit_pct) {
  char shown[64];
  /* A reference that measured nothing makes no ratio. */
  double pct = fig.ref > 0 ? 100.0 * fig.value / fig.ref : NAN;
  snprintf(shown, sizeof shown, "%.1f%% (rounds %.1f-%.1f%%)", pct, 100.0 * fig.lo, 100.0 * fig.hi);
  target(what, pct, limit_pct, 1, shown);
}

/* ---- Instruction counts (--instructions) -------------------------------- */

/* The server of each count runs under valgrind's callgrind: its forked
 * process execs valgrind on this program (counted_server_main), so that only
 * the server is slowed and counted; the clients run natively here, as in the
 * timed rows.  Callgrind counts the server's instructions in user space, not
 * the kernel's work in its system calls.  Marks (MSG_MARK, on the control
 * connection) cut the server's life into phases: at each mark callgrind
 * writes what the server did since the previous one to a file of its own.  A
 * figure is the count of a phase of N operations less that of a phase of
 * none, divided by N: each phase also holds one mark's reply and the next
 * mark's receipt, and those cancel (see count_per_op). */

#define COUNTED_SERVER_ARG "--counted-server" /* argv[1] of the exec'd server */
#define COUNTED_START_S 60 /* for valgrind to start the server */
#define COUNTED_CALL_S 60  /* a control call: N sets of public-key work take seconds under callgrind */
/* The clients' retransmission timer: a flight sent again would be counted as
 * the server's work.  Below the clients' 5 s handshake timeout. */
#define COUNTED_RTO_MS 4000
#define COUNTED_HS_TARGET 1.25 /* handshake <= this x the public-key work of its group */
static const size_t counted_sizes[2] = {SMALL, BIG}; /* of the echoed messages */
/* Instructions per echoed message of counted_sizes for a design with one
 * connected socket per peer on OpenSSL's own datagram BIO, as the issue
 * (Performance II) measured them: references quoted, not measured here. */
static const double issue_echo[2] = {7900, 13600};

/* One counted server per handshake group; the P-256 one also counts
 * resumed handshakes and the echoes, in the timed rows' setup. */
enum { PLAN_P256, PLAN_X25519, PLANS };

typedef struct {
  const char *group; /* the group the handshakes negotiate, and the baseline's */
  const setup *s;
} counted_plan;

static const counted_plan counted_plans[PLANS] = {{GROUP, &default_setup}, {"X25519", &x25519_setup}};

typedef struct {
  session x; /* the server process and the control connection */
  int marks; /* sent so far: callgrind numbers its files by them */
} counted_server;

typedef struct {
  double hs[HS_KINDS]; /* instructions per full handshake, per resumed one (PLAN_P256 only) */
  double pk;           /* per set of public-key operations */
  double echo[2];      /* per echoed message of counted_sizes[i] (PLAN_P256 only) */
  server_report end;   /* the server's handshakes, and how many were resumed */
} counted;

/* The counted server: this program, exec'd by valgrind (counted_exec).
 * argv: the bound socket, the ready pipe's write end, the PEM directory, the
 * plan. */
static int counted_server_main(char **argv) {
  int fd = atoi(argv[0]), ready = atoi(argv[1]), plan = atoi(argv[3]);
  if (plan < 0 || plan >= PLANS)
    return 2;
  name_pems(argv[2]);
  setup_in_use = *counted_plans[plan].s;
  if (dtls_attach_server(fd, 1024) < 0)
    return 1;
  CALLGRIND_TOGGLE_COLLECT; /* loading and configuring are no phase */
  if (write(ready, "", 1) != 1)
    return 1;
  close(ready);
  serve(fd, &dtls_transport);
  _exit(0); /* as serve_forked */
}

typedef struct {
  int plan;
  int ready[2]; /* the server writes a byte to ready[1] once it serves */
} counted_args;

/* In the forked server process: becomes valgrind running this program as
 * the counted server.  Exit status 127: no valgrind (as for a shell). */
static void counted_exec(int fd, const void *arg) {
  const counted_args *a = arg;
  char exe[PATH_MAX], out_file[128], fd_arg[16], ready_arg[16], plan_arg[16];
  /* Resolved here: under valgrind, /proc/self/exe names valgrind's tool. */
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0)
    _exit(1);
  exe[len] = '\0';
  close(a->ready[0]);
  snprintf(out_file, sizeof out_file, "--callgrind-out-file=%s/cg.%%p", cg_dir);
  snprintf(fd_arg, sizeof fd_arg, "%d", fd);
  snprintf(ready_arg, sizeof ready_arg, "%d", a->ready[1]);
  snprintf(plan_arg, sizeof plan_arg, "%d", a->plan);
  execlp("valgrind", "valgrind", "-q", "--tool=callgrind", "--collect-atstart=no", out_file, exe,
         COUNTED_SERVER_ARG, fd_arg, ready_arg, tmpdir, plan_arg, (char *)NULL);
  _exit(errno == ENOENT ? 127 : 126);
}

/* Starts plan's counted server and waits (bounded) until it serves.  Exits
 * with status 2 if there is no valgrind. */
static int counted_start(counted_server *cs, int plan) {
  counted_args a = {.plan = plan};
  if (pipe(a.ready) < 0)
    return -1;
  cs->marks = 0;
  int started = server_spawn(counted_exec, &a, &cs->x.srv) == 0;
  close(a.ready[1]);
  struct pollfd pfd = {.fd = a.ready[0], .events = POLLIN};
  char byte;
  int ready = started && poll(&pfd, 1, COUNTED_START_S * 1000) == 1 && read(a.ready[0], &byte, 1) == 1;
  close(a.ready[0]);
  if (ready)
    return 0;
  if (!started)
    return -1;
  int status = 0;
  kill(cs->x.srv.pid, SIGKILL);
  waitpid(cs->x.srv.pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    fprintf(stderr, "dtlsplex-bench: --instructions runs the server under valgrind, which was not found: "
                    "install valgrind (Debian: apt-get install valgrind)\n");
    exit(2);
  }
  return -1;
}

/* The count in one of callgrind's files, which must be the dump at label. */
static int read_count(const char *path, const char *label, uint64_t *ir) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char line[256], trigger[LABEL_MAX + 64];
  snprintf(trigger, sizeof trigger, "desc: Trigger: Client Request: %s\n", label);
  unsigned long long n = 0;
  int labelled = 0, totals = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    labelled |= strcmp(line, trigger) == 0;
    totals |= sscanf(line, "totals: %llu", &n) == 1;
  }
  fclose(f);
  *ir = n;
  return labelled && totals ? 0 : -1;
}

/* Ends the server's current phase; *ir gets what the server counted in it. */
static int mark(counted_server *cs, const char *label, uint64_t *ir) {
  char padded[LABEL_MAX] = {0}, path[128];
  uint8_t reply[HDR];
  snprintf(padded, sizeof padded, "%s", label);
  if (conn_call_with(&cs->x.c, MSG_MARK, padded, sizeof padded, reply, sizeof reply, 1) != HDR)
    return -1;
  snprintf(path, sizeof path, "%s/cg.%ld.%d", cg_dir, (long)cs->x.srv.pid, ++cs->marks);
  return read_count(path, padded, ir);
}

/* What a phase does: n operations of one kind (the client side, here). */
typedef int (*counted_op_fn)(counted_server *cs, const void *arg, long n);

/* One client at a time, each a new socket: cookie exchange, handshake of
 * the kind arg points to (HS_FULL, HS_RESUMED) and close_notify, as in the
 * timed rows. */
static int count_handshakes(counted_server *cs, const void *arg, long n) {
  if (n == 0)
    return 0; /* hs_run would take 0 for no limit */
  hs_driver d = {.server = &cs->x.c.server, .slots = 1, .resume = *(const int *)arg};
  long done = 0;
  hs_run(&d, COUNTED_CALL_S, n, &done);
  return done == n && d.failed == 0 ? 0 : -1;
}

/* The timed ping-pong's step on the control connection. */
static int count_echoes(counted_server *cs, const void *arg, long n) {
  pingpong p = {.c = &cs->x.c, .size = *(const size_t *)arg};
  for (long i = 0; i < n; i++)
    if (pingpong_step(&p) != 1)
      return -1;
  return 0;
}

/* n sets of public-key work in the group arg, in the server (pk_run). */
static int count_pk(counted_server *cs, const void *arg, long n) {
  uint8_t payload[8 + LABEL_MAX] = {0}, reply[HDR];
  put_u64(payload, (uint64_t)n);
  snprintf((char *)payload + 8, LABEL_MAX, "%s", (const char *)arg);
  return conn_call_with(&cs->x.c, MSG_PK, payload, sizeof payload, reply, sizeof reply, 1) == HDR ? 0 : -1;
}

/* Instructions per operation: a phase of n operations less a phase of none,
 * divided by n.  The phase of none holds what the other holds besides the
 * operations: the marks' handling, and the operation's own set-up (the keys
 * of the public-key work).  It follows one operation that warms up what is
 * done only once (OpenSSL fetches and caches an algorithm at its first use),
 * which would count against n alone.  The n operations are one phase, so the
 * figure is their average, whatever the library did differently among them
 * (how it waits for a datagram depends on how soon a timer is due, in wall
 * time); phases of n and 2n would not bound it so. */
static double count_per_op(counted_server *cs, const char *what, counted_op_fn op, const void *arg, long n) {
  const long ops[3] = {1, 0, n}; /* warm-up, none, n */
  char label[LABEL_MAX], doing[128];
  uint64_t ir[3];
  snprintf(doing, sizeof doing, "counting %s: 1, 0 and %ld", what, n);
  progress(doing);
  for (int i = 0; i < 3; i++) {
    snprintf(label, sizeof label, "%s x%ld%s", what, ops[i], i == 0 ? " (warm-up)" : "");
    if (op(cs, arg, ops[i]) < 0 || mark(cs, label, &ir[i]) < 0)
      return NAN;
  }
  return ((double)ir[2] - (double)ir[1]) / (double)n;
}

/* The kinds of handshake a plan counts: full, and for P-256 resumed too. */
static int plan_kinds(int plan) { return plan == PLAN_P256 ? HS_KINDS : 1; }

/* The server's resumed handshakes: each counted kind's warm-up and n. */
static uint64_t resumed_expected(int plan, long n_hs) {
  return plan_kinds(plan) == HS_KINDS ? 1 + (uint64_t)n_hs : 0;
}

/* And all of them: the control connection's (full), then the full ones'. */
static uint64_t handshakes_expected(int plan, long n_hs) { return 2 + (uint64_t)n_hs + resumed_expected(plan, n_hs); }

/* The figures of one counted server.  0, or -1 if one could not be counted. */
static int count_plan(int plan, long n_hs, long n_echo, counted *out) {
  const counted_plan *p = &counted_plans[plan];
  *out = (counted){.hs = {NAN, NAN}, .pk = NAN, .echo = {NAN, NAN}};
  counted_server cs;
  if (use_setup(p->s) < 0 || dtlsplex_config_set_retransmit(client_cfg, COUNTED_RTO_MS, COUNTED_RTO_MS) < 0 ||
      dtlsplex_config_set_retransmit(full_cfg, COUNTED_RTO_MS, COUNTED_RTO_MS) < 0 || counted_start(&cs, plan) < 0 ||
      session_connect(&cs.x, &dtls_transport) < 0) {
    use_default_setup();
    return -1;
  }
  struct timeval tv = {.tv_sec = COUNTED_CALL_S};
  char what[LABEL_MAX];
  if (setsockopt(cs.x.c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0) {
    for (int k = 0; k < plan_kinds(plan); k++) {
      snprintf(what, sizeof what, "%s %s handshakes", p->group, hs_kind_names[k]);
      out->hs[k] = count_per_op(&cs, what, count_handshakes, &k, n_hs);
    }
    snprintf(what, sizeof what, "%s public-key work", p->group);
    out->pk = count_per_op(&cs, what, count_pk, p->group, n_hs);
    for (int i = 0; i < 2 && plan == PLAN_P256; i++) {
      snprintf(what, sizeof what, "%zu-byte echoes", counted_sizes[i]);
      out->echo[i] = count_per_op(&cs, what, count_echoes, &counted_sizes[i], n_echo);
    }
  }
  /* Each handshake once and of its phase's kind (the full ones' clients
   * cannot resume): else a figure counts other work. */
  uint64_t all = handshakes_expected(plan, n_hs), resumed = resumed_expected(plan, n_hs);
  if (conn_report(&cs.x.c, &out->end) < 0 || out->end.handshakes_ok != all || out->end.resumed != resumed) {
    fprintf(stderr, "dtlsplex-bench: the %s server completed %llu handshakes, %llu resumed (%llu, %llu expected)\n",
            p->group, (unsigned long long)out->end.handshakes_ok, (unsigned long long)out->end.resumed,
            (unsigned long long)all, (unsigned long long)resumed);
    out->hs[HS_FULL] = out->hs[HS_RESUMED] = NAN;
  }
  session_close(&cs.x);
  use_default_setup();
  int p256_ok = plan != PLAN_P256 || (!isnan(out->hs[HS_RESUMED]) && !isnan(out->echo[0]) && !isnan(out->echo[1]));
  return !isnan(out->hs[HS_FULL]) && !isnan(out->pk) && p256_ok ? 0 : -1;
}

static void print_counted_table(const counted c[PLANS]) {
  static const char *const unit = "instructions";
  row rows[2 * PLANS + 3];
  int n = 0;
  char label[128];
  for (int i = 0; i < PLANS; i++) {
    snprintf(label, sizeof label, "full handshake, %s (ref: %s public-key work)", counted_plans[i].group,
             counted_plans[i].group);
    add_row(rows, &n, unpaired(c[i].hs[HS_FULL], c[i].pk), unit, 0, label);
  }
  snprintf(label, sizeof label, "resumed handshake, %s (ref: full %s handshake)", GROUP, GROUP);
  add_row(rows, &n, unpaired(c[PLAN_P256].hs[HS_RESUMED], c[PLAN_P256].hs[HS_FULL]), unit, 0, label);
  for (int i = 0; i < PLANS; i++) {
    snprintf(label, sizeof label, "public-key work, %s: sign, %s keygen, derive", counted_plans[i].group,
             counted_plans[i].group);
    add_row(rows, &n, unpaired(c[i].pk, NAN), unit, 0, label);
  }
  for (int i = 0; i < 2; i++) {
    snprintf(label, sizeof label, "echoed %zu-byte message (ref: the issue's OpenSSL design)", counted_sizes[i]);
    add_row(rows, &n, unpaired(c[PLAN_P256].echo[i], issue_echo[i]), unit, 0, label);
  }
  print_table(rows, n, "reference");
}

static void print_counted_notes(const counted c[PLANS], long n_hs, long n_echo) {
  printf("\nWhat the figures are (instructions counted by valgrind's callgrind, not time):\n"
         "- The server process's instructions in user space only (its system calls' kernel work is not\n"
         "  counted); the clients run natively in this process.  The server is the timed rows' serve()\n"
         "  loop on one socket, DTLS 1.2, %s, ECDSA P-256 certificate, MTU %d.\n"
         "- Each figure is (count of a phase of N operations - count of a phase of none) / N, a phase\n"
         "  being what the server did between two marks (control messages on an established\n"
         "  session): the marks' handling and an operation's set-up cancel.  One operation before the\n"
         "  phases warms up what is done once.  N = %ld handshakes, %ld sets of public-key work, %ld\n"
         "  echoes.  The counts do not move with the machine's load, only where the library acts on\n"
         "  wall time (how it waits for a datagram can depend on how soon a timer is due): a figure is\n"
         "  the average over its phase.\n",
         CIPHER, DTLS_MTU, n_hs, n_hs, n_echo);
  printf("- full handshake: one client at a time, each a new socket: cookie exchange, full handshake,\n"
         "  close_notify; the clients' retransmission timer at %d ms, so that no flight is counted\n"
         "  twice; their configuration has resumption off, as in the timed rows.  P-256: both sides\n"
         "  pinned to %s, as in the timed rows.  X25519: the client offers X25519 then P-256, the\n"
         "  server has the library's default groups.\n"
         "- resumed handshake (P-256 server): the same, the clients sharing the configuration of the\n"
         "  control connection, which offers that connection's session (its ticket): cookie exchange,\n"
         "  abbreviated handshake, close_notify.  ratio = resumed / full.\n"
         "- The servers completed %llu and %llu handshakes (their control connection's and a warm-up\n"
         "  per kind included), of them resumed %llu and %llu: all of the resumed phases', none else.\n",
         COUNTED_RTO_MS, GROUP, (unsigned long long)c[PLAN_P256].end.handshakes_ok,
         (unsigned long long)c[PLAN_X25519].end.handshakes_ok, (unsigned long long)c[PLAN_P256].end.resumed,
         (unsigned long long)c[PLAN_X25519].end.resumed);
  printf("- public-key work: the timed rows' baseline code run N times in a row by the same server\n"
         "  process, on one control message: one ECDSA P-256 signature (130 bytes, SHA-256), one key\n"
         "  generation and one validated derive in the handshake's group.  ratio = handshake / this.\n"
         "- echoed message: one client, ping-pong on one established session (serve(): one\n"
         "  dtlsrecvfrom and one dtlssendto per message).  ref: %.0f and %.0f instructions per echoed\n"
         "  64- and 1200-byte message for a design with one connected socket per peer on OpenSSL's\n"
         "  datagram BIO, as measured in the issue (Performance II): quoted, not measured here.\n",
         issue_echo[0], issue_echo[1]);
}

static void print_counted_targets(const counted c[PLANS]) {
  char what[64], shown[64];
  printf("\nTargets:\n");
  for (int i = 0; i < PLANS; i++) {
    double ratio = c[i].hs[HS_FULL] / c[i].pk;
    snprintf(what, sizeof what, "handshake, %s <= %.2fx its public-key work", counted_plans[i].group,
             COUNTED_HS_TARGET);
    snprintf(shown, sizeof shown, "%.2fx", ratio);
    target(what, ratio, COUNTED_HS_TARGET, 0, shown);
  }
  double pct = 100.0 * c[PLAN_P256].hs[HS_RESUMED] / c[PLAN_P256].hs[HS_FULL];
  snprintf(what, sizeof what, "resumed handshake, %s <= %d%% of a full one", GROUP, RESUMED_TARGET_PCT);
  snprintf(shown, sizeof shown, "%.1f%%", pct);
  target(what, pct, RESUMED_TARGET_PCT, 0, shown);
  for (int i = 0; i < 2; i++) {
    snprintf(what, sizeof what, "echo %zu B <= %.0f (the issue's OpenSSL design)", counted_sizes[i], issue_echo[i]);
    snprintf(shown, sizeof shown, "%.0f instructions", c[PLAN_P256].echo[i]);
    target(what, c[PLAN_P256].echo[i], issue_echo[i], 0, shown);
  }
}

/* callgrind's files go when the benchmark does, unless --keep. */
static void remove_dumps(void) {
  DIR *d = cg_dir[0] != '\0' && !opt.keep ? opendir(cg_dir) : NULL;
  if (d == NULL)
    return;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    unlinkat(dirfd(d), e->d_name, 0); /* "." and ".." fail, harmlessly */
  closedir(d);
  rmdir(cg_dir);
}

/* --instructions.  Returns 0, or 1 if a figure could not be counted. */
static int run_instructions(double start) {
  long n_hs = opt.quick ? 5 : 20, n_echo = opt.quick ? 500 : 2000;
  snprintf(cg_dir, sizeof cg_dir, "/tmp/dtlsplex-bench-cg.XXXXXX");
  if (mkdtemp(cg_dir) == NULL)
    die("mkdtemp");
  atexit(remove_dumps);
  counted c[PLANS];
  int failed = 0;
  for (int i = 0; i < PLANS; i++)
    failed |= count_plan(i, n_hs, n_echo, &c[i]) < 0;
  print_heading(start);
  print_counted_table(c);
  print_counted_notes(c, n_hs, n_echo);
  print_counted_targets(c);
  if (opt.keep)
    printf("\ncallgrind's files, one per phase (cg.PID.MARK), kept for callgrind_annotate: %s\n", cg_dir);
  return failed;
}

/* ---- Main ---------------------------------------------------------------- */

typedef struct {
  hs_result hs[2][HS_KINDS]; /* 1 client at a time, HS_SLOTS_MAX concurrent; full, resumed */
  hs_result p521; /* a client that lists P-521 first, the server with its default groups */
  double pk_us;
  paired pp[2];    /* BIG, SMALL */
  paired pp_window; /* BIG, WINDOW echoes in flight */
  paired local[2]; /* CPU per round trip in one thread, BIG, SMALL */
  unsigned int data_mtu;
  paired oneway;                 /* BIG */
  paired oneway_wildcard;        /* the same, the servers bound to 0.0.0.0 */
  paired jumbo_pp, jumbo_oneway; /* JUMBO, with JUMBO_MTU */
  unsigned int jumbo_data_mtu;
  scaling sc;
  proxy_result proxy;
} results;

/* What --only leaves out shows as n/a and "not measured". */
static void measure_all(results *r) {
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < HS_KINDS; k++)
      r->hs[i][k] = (hs_result){.clients = i == 0 ? 1 : HS_SLOTS_MAX, .resume = k, .rate = NAN, .cpu_us = NAN};
    if (opt.only & M_HANDSHAKE)
      measure_handshakes(r->hs[i], HS_KINDS);
  }
  r->p521 = (hs_result){.clients = 1, .resume = HS_FULL, .rate = NAN, .cpu_us = NAN};
  if (opt.only & M_HANDSHAKE) {
    if (use_setup(&p521_setup) == 0)
      measure_handshakes(&r->p521, 1);
    use_default_setup();
  }
  r->pk_us = opt.only & M_HANDSHAKE ? measure_pk_baseline() : NAN;
  r->pp[0] = r->pp[1] = r->pp_window = r->local[0] = r->local[1] = unpaired(NAN, NAN);
  r->oneway = r->oneway_wildcard = r->jumbo_pp = r->jumbo_oneway = unpaired(NAN, NAN);
  if (opt.only & M_PINGPONG) {
    r->pp[0] = measure_pingpong(BIG, &r->data_mtu);
    r->pp[1] = measure_pingpong(SMALL, &r->data_mtu);
    r->pp_window = measure_window(BIG, 1, &r->data_mtu);
    r->local[0] = measure_local_round_trip(BIG);
    r->local[1] = measure_local_round_trip(SMALL);
    if (use_setup(&jumbo_setup) == 0)
      r->jumbo_pp = measure_pingpong(JUMBO, &r->jumbo_data_mtu);
    use_default_setup();
  }
  if (opt.only & M_ONEWAY) {
    r->oneway = measure_window(BIG, 0, &r->data_mtu);
    if (use_setup(&wildcard_setup) == 0)
      r->oneway_wildcard = measure_window(BIG, 0, &r->data_mtu);
    if (use_setup(&jumbo_setup) == 0)
      r->jumbo_oneway = measure_window(JUMBO, 0, &r->jumbo_data_mtu);
    use_default_setup();
  }
  if (opt.only & M_PEERS)
    measure_scaling(&r->sc);
  else
    r->sc.mem[0] = r->sc.mem[1] = (per_peer_memory){NAN, NAN, NAN};
  if (opt.only & M_PROXY)
    measure_proxy(&r->proxy);
}

static int peer_rows(const scaling *sc, row *rows) {
  int n = 0;
  char label[128];
  for (int i = 0; i < sc->n; i++) {
    snprintf(label, sizeof label, "ping-pong %d B, %llu idle peers (ref: DTLS, 1 peer)", SMALL,
             (unsigned long long)sc->peers[i]);
    add_row(rows, &n, sc->fig[i].rate, "round trips/s", 0, label);
    snprintf(label, sizeof label, "  server CPU per round trip, %llu idle peers", (unsigned long long)sc->peers[i]);
    add_row(rows, &n, sc->fig[i].cpu_us, "us", 2, label);
  }
  if (sc->n > 0) {
    unsigned long long most = (unsigned long long)sc->peers[sc->n - 1];
    snprintf(label, sizeof label, "ping-pong %d B, %llu peers just made (ref: 1 peer)", SMALL, most);
    add_row(rows, &n, sc->fresh.rate, "round trips/s", 0, label);
    snprintf(label, sizeof label, "  server CPU per round trip, %llu peers just made", most);
    add_row(rows, &n, sc->fresh.cpu_us, "us", 2, label);
    snprintf(label, sizeof label, "ping-pong %d B UDP, server holding %.0f MiB (ref: UDP)", SMALL,
             sc->grown_kib / 1024.0);
    add_row(rows, &n, sc->ballast.rate, "round trips/s", 0, label);
    snprintf(label, sizeof label, "  server CPU per round trip, UDP holding %.0f MiB", sc->grown_kib / 1024.0);
    add_row(rows, &n, sc->ballast.cpu_us, "us", 2, label);
  }
  if (sc->n == 0 || sc->level[sc->n - 1] < 100000) {
    snprintf(label, sizeof label, "ping-pong %d B, 100000 peers: not measured (--peers %ld)", SMALL,
             opt.peers_cap);
    add_row(rows, &n, unpaired(NAN, NAN), "round trips/s", 0, label);
  }
  for (int i = 0; i < 2; i++) {
    char when[32];
    if (i == 0)
      snprintf(when, sizeof when, "just made");
    else
      snprintf(when, sizeof when, "idle >= %.1f s", sc->mem[i].idle_s);
    snprintf(label, sizeof label, "server RSS per idle peer, %s (%ld peers)", when, sc->mem_peers);
    add_row(rows, &n, unpaired(sc->mem[i].rss_kib, NAN), "KiB/peer", 2, label);
    snprintf(label, sizeof label, "server heap per idle peer, %s (%ld peers)", when, sc->mem_peers);
    add_row(rows, &n, unpaired(sc->mem[i].heap_kib, NAN), "KiB/peer", 2, label);
  }
  return n;
}

static int proxy_rows(const proxy_result *p, row *rows) {
  int n = 0;
  char label[128];
  static const int sizes[2] = {BIG, SMALL};
  for (int s = 0; s < 2; s++) {
    snprintf(label, sizeof label, "ping-pong %d B through dtlsproxy (ref: direct UDP)", sizes[s]);
    add_row(rows, &n, p->pp[s], "round trips/s", 0, label);
  }
  for (int s = 0; s < 2; s++) {
    snprintf(label, sizeof label, "  dtlsproxy CPU per %d B round trip", sizes[s]);
    add_row(rows, &n, unpaired(p->cpu_us[s], NAN), "us", 2, label);
  }
  snprintf(label, sizeof label, "dtlsproxy RSS per idle peer held (%ld peers)", p->peers);
  add_row(rows, &n, unpaired(p->rss_kib, NAN), "KiB/peer", 2, label);
  return n;
}

/* Resumed figures against the same clients' full ones, from the same server. */
static int handshake_rows(const results *r, row *rows) {
  int n = 0;
  char label[128];
  for (int k = 0; k < HS_KINDS; k++)
    for (int i = 0; i < 2; i++) {
      const hs_result *h = &r->hs[i][k], *full = &r->hs[i][HS_FULL];
      char clients[32];
      if (h->clients > 1)
        snprintf(clients, sizeof clients, "%d concurrent clients", h->clients);
      else
        snprintf(clients, sizeof clients, "1 client at a time");
      snprintf(label, sizeof label, "%s handshakes/s, %s%s", hs_kind_names[k], clients,
               k == HS_RESUMED ? " (ref: full)" : "");
      add_row(rows, &n, unpaired(h->rate, k == HS_RESUMED ? full->rate : NAN), "handshakes/s", 0, label);
    }
  for (int i = 0; i < 2; i++) {
    const hs_result *full = &r->hs[i][HS_FULL];
    snprintf(label, sizeof label, "server CPU/handshake, %d client%s (ref: P-256 pk ops)", full->clients,
             full->clients > 1 ? "s" : "");
    add_row(rows, &n, unpaired(full->cpu_us, r->pk_us), "us CPU", 1, label);
  }
  add_row(rows, &n, unpaired(r->p521.cpu_us, r->pk_us), "us CPU", 1,
          "server CPU/handshake, P-521-first client (ref: P-256 pk ops)");
  for (int i = 0; i < 2; i++) {
    const hs_result *h = r->hs[i];
    snprintf(label, sizeof label, "server CPU/resumed handshake, %d client%s (ref: full)", h[HS_RESUMED].clients,
             h[HS_RESUMED].clients > 1 ? "s" : "");
    add_row(rows, &n, unpaired(h[HS_RESUMED].cpu_us, h[HS_FULL].cpu_us), "us CPU", 1, label);
  }
  return n;
}

static int build_rows(const results *r, row *rows) {
  int n = 0;
  char label[128]; /* cut to LABEL_WIDTH by add_row */
  if (opt.only & M_HANDSHAKE)
    n += handshake_rows(r, rows);
  static const int sizes[2] = {BIG, SMALL};
  for (int s = 0; s < 2 && (opt.only & M_PINGPONG); s++) {
    snprintf(label, sizeof label, "ping-pong %d B, 1 client (DTLS MTU %d, data MTU %u)", sizes[s], DTLS_MTU,
             r->data_mtu);
    add_row(rows, &n, r->pp[s], "round trips/s", 0, label);
  }
  if (opt.only & M_PINGPONG) {
    snprintf(label, sizeof label, "ping-pong %d B, %d in flight", BIG, WINDOW);
    add_row(rows, &n, r->pp_window, "echoes/s", 0, label);
    snprintf(label, sizeof label, "ping-pong %d B, 1 client (DTLS MTU %d, data MTU %u)", JUMBO, JUMBO_MTU,
             r->jumbo_data_mtu);
    add_row(rows, &n, r->jumbo_pp, "round trips/s", 0, label);
  }
  for (int s = 0; s < 2 && (opt.only & M_PINGPONG); s++) {
    snprintf(label, sizeof label, "CPU per %d B round trip, both ends in one thread", sizes[s]);
    add_row(rows, &n, r->local[s], "us", 2, label);
  }
  if (opt.only & M_ONEWAY) {
    snprintf(label, sizeof label, "one-way %d B, %d in flight, ack every %d", BIG, WINDOW, ACK_EVERY);
    add_row(rows, &n, r->oneway, "datagrams/s", 0, label);
    snprintf(label, sizeof label, "one-way %d B, %d in flight, server on 0.0.0.0", BIG, WINDOW);
    add_row(rows, &n, r->oneway_wildcard, "datagrams/s", 0, label);
    snprintf(label, sizeof label, "one-way %d B, %d in flight (DTLS MTU %d, data MTU %u)", JUMBO, WINDOW,
             JUMBO_MTU, r->jumbo_data_mtu);
    add_row(rows, &n, r->jumbo_oneway, "datagrams/s", 0, label);
  }
  if (opt.only & M_PEERS)
    n += peer_rows(&r->sc, rows + n);
  if (opt.only & M_PROXY)
    n += proxy_rows(&r->proxy, rows + n);
  return n;
}

/* What each handshake run did, as its clients and its server counted it. */
static void print_handshake_runs(const results *r) {
  printf("- handshakes/s: client handshakes completed per wall second (cookie exchange included), each\n"
         "  client a new non-blocking socket that detaches (close_notify) when done.  Full: the clients'\n"
         "  configuration has resumption off (so the server seals them no ticket).  Resumed: the clients\n"
         "  share the configuration of the server's control connection, which keeps that connection's\n"
         "  session and offers it (its ticket) on every handshake with that server: an abbreviated\n"
         "  handshake after the same cookie exchange.  One server per client count, the full run\n"
         "  first; a run any of whose handshakes the server counted as of the other kind shows n/a.\n"
         "  Per run: done, failed (clients); completed, of them resumed (server); client CPU per\n"
         "  handshake (this process):\n");
  for (int k = 0; k < HS_KINDS; k++)
    for (int i = 0; i < 2; i++) {
      const hs_result *h = &r->hs[i][k];
      printf("    %-7s %d client%s  %6ld, %ld; %6llu, %6llu; %4.0f us\n", hs_kind_names[k], h->clients,
             h->clients > 1 ? "s" : " ", h->done, h->failed, (unsigned long long)h->server_done,
             (unsigned long long)h->resumed, h->client_cpu_us);
    }
}

static void print_notes(const results *r) {
  printf("\nWhat the figures are (%.2f s per measurement and per side):\n", opt.seconds);
  printf("- Paired figures (UDP vs DTLS, N peers vs 1 peer) run in %d alternating rounds; each figure is\n"
         "  the median of its rounds, ratio = DTLS / reference, and \"round range\" the lowest and highest\n"
         "  ratio within one round: how much of the difference is noise of the machine.\n",
         ROUNDS);
  printf("- Loopback only (127.0.0.1).  The server is a forked process with one socket; clients run in\n"
         "  the main thread.  UDP and DTLS use the same socket setup, sizes and message protocol.\n"
         "- DTLS: dtlsplex, DTLS 1.2, %s, ECDHE group %s, ECDSA P-256 server\n"
         "  certificate from an in-process CA; the client verifies chain and name; MTU %d both sides\n"
         "  (%d for the %d-byte rows, whose datagrams are one record each).\n",
         CIPHER, GROUP, DTLS_MTU, JUMBO_MTU, JUMBO);
  if (opt.only & M_HANDSHAKE)
    print_handshake_runs(r);
  printf("- server CPU/handshake: getrusage(RUSAGE_SELF) user+system of the server process over the run,\n"
         "  divided by the handshakes it completed (cookie exchange and close_notify included).\n"
         "  ref: CPU time, in this process with the same OpenSSL, of one ECDSA P-256 sign (130-byte\n"
         "  message, SHA-256) + one P-256 ECDH key generation + one ECDH derive.  Per resumed\n"
         "  handshake: the same over the resumed run; ref: the full run's, same clients, same server.\n"
         "  It includes the kernel's work in system calls, of which a resumed handshake keeps most of\n"
         "  a full one's: more than its share of user-space instructions (--instructions).\n");
  printf("- ping-pong: a blocking client sends and waits for the echo (a reply not back within %d ms\n"
         "  counts as lost, not as a round trip).  \"%d in flight\": the sender keeps up to %d echoes\n"
         "  outstanding and counts the echoes per second that came back (a window timing out is lost).\n"
         "- N peers: the same 64-byte ping-pong against a server socket that also holds N-1 idle\n"
         "  established peers (clients bound to distinct 127.1.x.y addresses, handshaken, then dropped\n"
         "  without close_notify).  ref: a second server with only its one peer, in alternating rounds.\n"
         "  Measured once the newest idle peer has been silent %.1f s (dtlsplex releases an idle\n"
         "  session's buffers after 2 s); at the largest count also at once (\"just made\"), while the\n"
         "  server still releases the youngest peers' buffers.  Server CPU per round trip: getrusage\n"
         "  of each server over the same rounds, divided by the round trips it answered.\n"
         "- UDP server holding M MiB: the control for the largest count: a plain UDP server holding as\n"
         "  much memory as the server with the most peers grew by (36 KiB pieces, every page touched)\n"
         "  against one holding nothing: what that much memory costs without dtlsplex.\n",
         CLIENT_RCVTIMEO_MS, WINDOW, WINDOW, SETTLED_S);
  printf("- CPU per round trip in one thread: the same ping-pong with both sockets in this thread, so\n"
         "  every receive finds its datagram waiting: the CPU cost of two sends and two receives with\n"
         "  their system calls, without the waiting and waking that dominates the ping-pong itself.\n");
  printf("- one-way: datagrams per second the receiver acknowledged; the sender keeps at most %d\n"
         "  unacknowledged; the receiver acks every %d with its cumulative count.  \"server on 0.0.0.0\":\n"
         "  the same with both servers (UDP and DTLS) bound to the wildcard address, the client still\n"
         "  sending to 127.0.0.1; dtlsplex then reads IP_PKTINFO with every datagram and sends every\n"
         "  reply with it (each peer hears back from the address it reached), which a socket bound to\n"
         "  127.0.0.1, as in every other row, does not.\n",
         WINDOW, ACK_EVERY);
  if (opt.only & M_PROXY)
    printf("- through dtlsproxy: the DTLS client's ping-pong through tools/dtlsproxy (termination side,\n"
           "  MTU %d) to a plain UDP echo server (the same serve() loop), against a plain UDP client\n"
           "  and server talking directly, in alternating rounds.  The proxy's CPU: /proc/PID/stat\n"
           "  utime + stime over the paired run, divided by the round trips through it.  Its RSS per\n"
           "  idle peer: /proc/PID/statm after up to %d handshaken peers (distinct 127.1.x.y\n"
           "  addresses, one datagram each, so each also holds a socket towards the backend, whose\n"
           "  kernel buffers RSS does not show), minus before, divided by the peers its SIGUSR1 line\n"
           "  counts, once %.1f s idle.\n",
           DTLS_MTU, PROXY_PEERS, SETTLED_S);
  printf("- memory: server RSS (/proc/self/statm) and heap (mallinfo2 uordblks + hblkhd) with all the\n"
         "  idle peers, minus the same with 1 peer, divided by the idle peers added; taken as the last\n"
         "  peer was made, and again after the ping-pong at that count (every idle peer then silent for\n"
         "  at least the time shown).  The target line uses the second.\n");
}

static void print_targets(const results *r) {
  char shown[64], what[96];
  printf("\nTargets:\n");
  target_ratio("ping-pong 1200 B >= 82% of UDP", r->pp[0], 82);
  target_ratio("ping-pong 64 B >= 90% of UDP", r->pp[1], 90);
  static const int sizes[2] = {BIG, SMALL};
  for (int s = 0; s < 2 && (opt.only & M_PINGPONG); s++) {
    /* What the ratio has to absorb: the CPU DTLS adds, against the round trip. */
    double udp_rt = 1e6 / r->pp[s].ref, extra = r->local[s].value - r->local[s].ref;
    printf("    %4d B: DTLS adds %.2f us of CPU per round trip (one thread); a UDP ping-pong round trip\n"
           "            takes %.2f us; %.0f%% needs the added time within %.2f us\n",
           sizes[s], extra, udp_rt, s == 0 ? 82.0 : 90.0, udp_rt * (s == 0 ? 100.0 / 82 - 1 : 100.0 / 90 - 1));
  }
  target_ratio("one-way 1200 B, 32 in flight >= 80% of UDP", r->oneway, 80);
  double worst = worse_of(r->hs[0][HS_FULL].cpu_us, r->hs[1][HS_FULL].cpu_us) / r->pk_us;
  snprintf(shown, sizeof shown, "%.2fx (the worse of 1 and 4 clients)", worst);
  target("server CPU per handshake <= 1.5x public-key ops", worst, 1.5, 0, shown);
  double resumed_pct[2];
  for (int i = 0; i < 2; i++)
    resumed_pct[i] = 100.0 * r->hs[i][HS_RESUMED].cpu_us / r->hs[i][HS_FULL].cpu_us;
  worst = worse_of(resumed_pct[0], resumed_pct[1]);
  snprintf(shown, sizeof shown, "%.1f%% (the worse of 1 and 4 clients)", worst);
  snprintf(what, sizeof what, "server CPU/resumed handshake <= %d%% of a full one", RESUMED_TARGET_PCT);
  target(what, worst, RESUMED_TARGET_PCT, 0, shown);
  const scaling *sc = &r->sc;
  int last = sc->n - 1;
  snprintf(what, sizeof what, "rate with %llu peers >= 95%% of rate with 1 peer",
           last >= 0 ? (unsigned long long)sc->peers[last] : 0ULL);
  target_ratio(what, last >= 0 ? sc->fig[last].rate : unpaired(NAN, NAN), 95);
  const per_peer_memory *m = &sc->mem[1];
  double mem = worse_of(m->rss_kib, m->heap_kib);
  snprintf(shown, sizeof shown, "%.1f KiB (larger of RSS, heap; idle %.1f s)", mem, m->idle_s);
  target("memory <= 40 KiB per idle established peer", mem, 40, 0, shown);
}

/* Servers die with us (PR_SET_PDEATHSIG); the PEM files need removing. */
static void on_signal(int sig) {
  remove_pems();
  remove_dumps();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--quick] [--seconds N] [--peers N] [--only LIST]\n"
          "       %s --instructions [--quick] [--keep]\n"
          "  --quick      0.5 s per measurement, at most 1,000 peers (about 10 s in all);\n"
          "               with --instructions, a quarter of the operations\n"
          "  --seconds N  seconds per measurement (and per side of a paired one; default 2.5)\n"
          "  --peers N    largest number of established peers to build, 1..100000 (default 10000)\n"
          "  --only LIST  comma-separated: handshake, pingpong, oneway, peers, proxy (default all)\n"
          "  --instructions  the server's instructions (valgrind's callgrind) per handshake, per\n"
          "               echoed message and per set of public-key operations, instead of timing\n"
          "  --keep       with --instructions: keep callgrind's files, for callgrind_annotate\n",
          argv0, argv0);
  exit(2);
}

/* "pingpong,oneway" -> M_PINGPONG | M_ONEWAY; 0 for an unknown name. */
static int parse_only(const char *list) {
  static const struct {
    const char *name;
    int bit;
  } groups[] = {{"handshake", M_HANDSHAKE}, {"pingpong", M_PINGPONG}, {"oneway", M_ONEWAY}, {"peers", M_PEERS},
                {"proxy", M_PROXY}};
  int bits = 0;
  while (*list != '\0') {
    size_t len = strcspn(list, ",");
    int bit = 0;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
      if (strlen(groups[g].name) == len && strncmp(list, groups[g].name, len) == 0)
        bit = groups[g].bit;
    if (bit == 0)
      return 0;
    bits |= bit;
    list += len + (list[len] == ',');
  }
  return bits;
}

static void parse_options(int argc, char **argv) {
  double seconds = 0;
  long peers = 0;
  for (int i = 1; i < argc; i++) {
    char *end = NULL;
    if (strcmp(argv[i], "--quick") == 0) {
      opt.quick = 1;
    } else if (strcmp(argv[i], "--instructions") == 0) {
      opt.instructions = 1;
    } else if (strcmp(argv[i], "--keep") == 0) {
      opt.keep = 1;
    } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = strtod(argv[++i], &end);
      if (*end != '\0' || !(seconds > 0 && seconds <= 600))
        usage(argv[0]);
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      if ((opt.only = parse_only(argv[++i])) == 0)
        usage(argv[0]);
    } else if (strcmp(argv[i], "--peers") == 0 && i + 1 < argc) {
      peers = strtol(argv[++i], &end, 10);
      if (*end != '\0' || peers < 1 || peers > 100000)
        usage(argv[0]);
    } else {
      usage(argv[0]);
    }
  }
  /* --keep goes with --instructions, which takes no timing option. */
  if ((opt.keep && !opt.instructions) || (opt.instructions && (seconds > 0 || peers > 0 || opt.only != M_ALL)))
    usage(argv[0]);
  if (opt.instructions && !HAVE_CALLGRIND) {
    fprintf(stderr, "dtlsplex-bench: --instructions: built without <valgrind/callgrind.h>; install valgrind "
                    "(Debian: apt-get install valgrind), then run configure and make again\n");
    exit(2);
  }
  if (opt.quick) {
    opt.seconds = 0.5;
    opt.peers_cap = 1000;
  }
  if (seconds > 0)
    opt.seconds = seconds;
  if (peers > 0)
    opt.peers_cap = peers;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], COUNTED_SERVER_ARG) == 0)
    return counted_server_main(argv + 2);
  parse_options(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  make_pems();
  atexit(remove_pems);
  use_default_setup();
  double start = now_s();
  if (opt.instructions) {
    int failed = run_instructions(start);
    free_client_configs();
    return failed;
  }

  results r;
  memset(&r, 0, sizeof r);
  measure_all(&r);

  row rows[MAX_ROWS];
  int n = build_rows(&r, rows);
  print_heading(start);
  print_table(rows, n, "UDP / reference");
  print_notes(&r);
  print_targets(&r);
  free_client_configs();
  return 0;
}
