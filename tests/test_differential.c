/* Differential tests: the library promises the results of sendto(2) and
 * recvfrom(2) (DESIGN.md section 2, README "The same calls, with the same
 * results").  Each scenario here is written once against small wrappers
 * (x_socket, x_sendto, x_recvfrom, an echo peer) and runs twice, each time in
 * its own forked process under a watchdog: once on plain UDP sockets with
 * sendto/recvfrom, once on attached sockets with dtlssendto/dtlsrecvfrom.
 * Each run writes a transcript, one line per observation (return value,
 * errno, bytes and source of a datagram, "returned within 1 s"), and the two
 * transcripts must be identical.
 *
 * Lines come in three kinds:
 *   plain   compared between the two runs;
 *   SPEC    a check of the library's own contract that has no UDP
 *           counterpart, recorded in the DTLS run only; each must hold;
 *   NOTE    information (results that differ by design, library events,
 *           CPU figures): printed, never compared.
 * A line never holds an ephemeral port number or a descriptor number, so
 * that the two runs can agree.
 *
 * Only loopback addresses are used (127.0.0.1, ::1 and their v4-mapped form);
 * scenario 4 runs in a fresh network namespace where even loopback is down.
 * Set DIFF_VERBOSE=1 to print both transcripts of every scenario (they are
 * printed anyway when the scenario fails) and DIFF_LOG=1 to send the
 * library's debug log to stderr. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* unshare, CLONE_NEWNET, strerrorname_np (configure defines it already) */
#endif
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"
#include "check_main.h"
#include "dtlsplex.h"

#define WATCHDOG_MS 20000      /* a run still going after this is killed, and the test fails */
#define HANDSHAKE_MS 3000      /* short, so that a handshake that cannot finish fails quickly */
#define ECHO_WAIT_MS 2000      /* how long a scenario waits for an echo */
#define TRANSCRIPT_BYTES (128 * 1024)
#define MAX_LINES 1024
#define ERRNO_SENTINEL 4242    /* no call sets this: seeing it afterwards means errno was left alone */

static test_pki pki;
static int dtls_mode; /* which run this process is: set in the child before the scenario */

/* ------------------------------------------------------------------ */
/* Transcripts                                                         */
/* ------------------------------------------------------------------ */

/* Shared with the parent (MAP_SHARED), so that whatever a run recorded
 * survives it being killed by the watchdog or crashing. */
typedef struct transcript {
  size_t len;
  int truncated;
  char text[TRANSCRIPT_BYTES];
} transcript;

static transcript *current;                                   /* the child's */
static pthread_mutex_t transcript_lock = PTHREAD_MUTEX_INITIALIZER; /* helper threads record too */

static void transcript_add(transcript *t, const char *prefix, const char *fmt, va_list ap) {
  char text[1024];
  vsnprintf(text, sizeof text, fmt, ap);
  size_t need_len = strlen(prefix) + strlen(text) + 1;
  if (t->len + need_len >= sizeof t->text) {
    t->truncated = 1;
    return;
  }
  t->len += (size_t)snprintf(t->text + t->len, sizeof t->text - t->len, "%s%s\n", prefix, text);
}

static void add_line(const char *prefix, const char *fmt, va_list ap) {
  pthread_mutex_lock(&transcript_lock);
  transcript_add(current, prefix, fmt, ap);
  pthread_mutex_unlock(&transcript_lock);
}

/* A compared line. */
__attribute__((format(printf, 1, 2))) static void line(const char *fmt, ...) {
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  add_line("", fmt, ap);
  va_end(ap);
  errno = saved;
}

/* Information only: never compared. */
__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...) {
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  add_line("NOTE ", fmt, ap);
  va_end(ap);
  errno = saved;
}

/* A check of the library's contract without a UDP counterpart: recorded in
 * the DTLS run only, and it must hold. */
__attribute__((format(printf, 2, 3))) static void spec(int ok, const char *fmt, ...) {
  if (!dtls_mode)
    return;
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  add_line(ok ? "SPEC ok: " : "SPEC VIOLATED: ", fmt, ap);
  va_end(ap);
  errno = saved;
}

/* Set-up that must work in both runs (a socket, a bind, a thread): if it
 * does not, the run records why and ends; the test then fails. */
#define need(cond)                                                                                  \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      line("SET-UP FAILED at %s:%d: %s (errno %s)", __FILE__, __LINE__, #cond, ename(errno));       \
      _exit(3);                                                                                     \
    }                                                                                               \
  } while (0)

/* errno as its symbolic name; thread-safe (a small ring of buffers). */
static const char *ename(int e) {
  const char *name = strerrorname_np(e);
  if (name != NULL)
    return name;
  static _Thread_local char bufs[4][16];
  static _Thread_local int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%d", e);
  return b;
}

/* "5" or "-1 ECONNREFUSED". */
static const char *result_text(char *buf, size_t n, ssize_t r, int err) {
  if (r < 0)
    snprintf(buf, n, "%zd %s", r, ename(err));
  else
    snprintf(buf, n, "%zd", r);
  return buf;
}

/* Records a call's result; errno is read at once, before anything changes it. */
__attribute__((format(printf, 2, 3))) static void record(ssize_t r, const char *fmt, ...) {
  int err = errno;
  char label[512], res[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(label, sizeof label, fmt, ap);
  va_end(ap);
  line("%s: %s", label, result_text(res, sizeof res, r, err));
  errno = err;
}

static const char *yes_no(int b) { return b ? "yes" : "no"; }

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ------------------------------------------------------------------ */
/* Addresses, named so that transcripts hold no ephemeral port         */
/* ------------------------------------------------------------------ */

static const struct sockaddr *sa(const void *p) { return (const struct sockaddr *)p; }

static struct {
  char name[32];
  struct sockaddr_storage addr;
} names[16];
static int n_names;

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family)
    return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && x->sin6_flowinfo == y->sin6_flowinfo &&
           x->sin6_scope_id == y->sin6_scope_id && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
  }
  return 0;
}

/* Gives addr a name for transcripts (replacing an earlier address of that name). */
static void name_addr(const char *name, const struct sockaddr_storage *addr) {
  int i = 0;
  while (i < n_names && strcmp(names[i].name, name) != 0)
    i++;
  need(i < (int)(sizeof names / sizeof names[0]));
  if (i == n_names)
    n_names++;
  snprintf(names[i].name, sizeof names[i].name, "%s", name);
  names[i].addr = *addr;
}

static const char *port_text(char *buf, size_t n, in_port_t port) {
  if (ntohs(port) < 1024)
    snprintf(buf, n, "%u", ntohs(port));
  else
    snprintf(buf, n, "(ephemeral)");
  return buf;
}

/* A source address as a transcript shows it: its name, or family, address
 * and port (ephemeral ports are not spelled out), and the length returned. */
static void addr_text(char *out, size_t n, const struct sockaddr_storage *ss, socklen_t len) {
  char host[INET6_ADDRSTRLEN], port[16];
  if (len == 0) {
    snprintf(out, n, "no address (addrlen 0)");
    return;
  }
  for (int i = 0; i < n_names; i++)
    if (same_addr(&names[i].addr, ss)) {
      snprintf(out, n, "%s (addrlen %u)", names[i].name, (unsigned)len);
      return;
    }
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)ss;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, n, "AF_INET %s port %s (addrlen %u)", host, port_text(port, sizeof port, in->sin_port),
             (unsigned)len);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(out, n, "AF_INET6 [%s] port %s flowinfo %u scope %u (addrlen %u)", host,
             port_text(port, sizeof port, in6->sin6_port), (unsigned)ntohl(in6->sin6_flowinfo),
             (unsigned)in6->sin6_scope_id, (unsigned)len);
  } else {
    snprintf(out, n, "family %d (addrlen %u)", ss->ss_family, (unsigned)len);
  }
}

/* The loopback address of family with port (network order). */
static socklen_t loopback(int family, in_port_t port, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in->sin_port = port;
    return sizeof *in;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  in6->sin6_family = AF_INET6;
  in6->sin6_addr = in6addr_loopback;
  in6->sin6_port = port;
  return sizeof *in6;
}

/* ::ffff:127.0.0.1 with port. */
static socklen_t v4mapped(in_port_t port, struct sockaddr_storage *out) {
  socklen_t len = loopback(AF_INET6, port, out);
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  memset(&in6->sin6_addr, 0, sizeof in6->sin6_addr);
  in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
  in6->sin6_addr.s6_addr[12] = 127;
  in6->sin6_addr.s6_addr[15] = 1;
  return len;
}

static in_port_t port_of(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                  : ((const struct sockaddr_in6 *)ss)->sin6_port;
}

static socklen_t local_addr(int fd, struct sockaddr_storage *out) {
  socklen_t len = sizeof *out;
  need(getsockname(fd, (struct sockaddr *)out, &len) == 0);
  return len;
}

/* ------------------------------------------------------------------ */
/* Socket options                                                      */
/* ------------------------------------------------------------------ */

static void set_timeo(int fd, int option, int ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  need(setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv) == 0);
}
static void set_rcvtimeo(int fd, int ms) { set_timeo(fd, SO_RCVTIMEO, ms); } /* 0: none */
static void set_sndtimeo(int fd, int ms) { set_timeo(fd, SO_SNDTIMEO, ms); }

static void set_nonblocking(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  need(fl >= 0);
  need(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) == 0);
}

/* ------------------------------------------------------------------ */
/* The mode switch: one scenario, two implementations                  */
/* ------------------------------------------------------------------ */

static const char *event_name(int event) {
  static const char *const n[] = {"?", "CONNECTED", "CLOSED", "FAILED", "EXPIRED", "REPLACED"};
  return event > 0 && event < 6 ? n[event] : n[0];
}

/* Events are timing-dependent (and the echo server has its own): notes only. */
static void on_event(int fd, int event, const struct sockaddr *peer, socklen_t peer_len, int error, void *arg) {
  (void)fd, (void)arg;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, peer, peer_len < sizeof ss ? peer_len : sizeof ss);
  char who[160];
  addr_text(who, sizeof who, &ss, peer_len);
  note("event %s, peer %s, error %s", event_name(event), who, error ? ename(error) : "0");
}

static void on_log(int level, const char *message, void *arg) {
  (void)arg;
  fprintf(stderr, "[dtlsplex %d] %s\n", level, message);
}

/* The client configuration (trusts the test CA) or the server's (the
 * certificate for localhost, 127.0.0.1 and ::1). */
static dtlsplex_config *mode_config(int server) {
  dtlsplex_config *cfg = dtlsplex_config_new();
  need(cfg != NULL);
  if (server) {
    need(dtlsplex_config_set_certificate(cfg, pki.server_cert, pki.server_key) == 0);
    need(dtlsplex_config_set_role(cfg, DTLSPLEX_ROLE_SERVER) == 0);
  } else {
    need(dtlsplex_config_set_ca(cfg, pki.ca, NULL) == 0);
  }
  need(dtlsplex_config_set_timeouts(cfg, HANDSHAKE_MS, 0) == 0);
  need(dtlsplex_config_set_event_callback(cfg, on_event, NULL) == 0);
  if (getenv("DIFF_LOG") != NULL)
    need(dtlsplex_config_set_log_callback(cfg, on_log, NULL, DTLSPLEX_LOG_DEBUG) == 0);
  return cfg;
}

enum {
  XS_WILDCARD = 1, /* bind to the wildcard address instead of loopback */
  XS_V6ONLY = 2,   /* IPV6_V6ONLY before binding */
  XS_SERVER = 4    /* DTLS run: attach with the server configuration */
};

/* A UDP socket bound to port 0 (on loopback unless XS_WILDCARD); in the
 * DTLS run, attached. */
static int x_socket_ex(int family, int opts) {
  int fd = socket(family, SOCK_DGRAM, 0);
  need(fd >= 0);
  if (opts & XS_V6ONLY) {
    int one = 1;
    need(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0);
  }
  struct sockaddr_storage self;
  socklen_t len = loopback(family, 0, &self);
  if (opts & XS_WILDCARD) {
    if (family == AF_INET)
      ((struct sockaddr_in *)&self)->sin_addr.s_addr = htonl(INADDR_ANY);
    else
      ((struct sockaddr_in6 *)&self)->sin6_addr = in6addr_any;
  }
  need(bind(fd, sa(&self), len) == 0);
  if (dtls_mode) {
    dtlsplex_config *cfg = mode_config(opts & XS_SERVER);
    need(dtlsplex_attach(fd, cfg) == 0);
    dtlsplex_config_free(cfg); /* the socket keeps its own reference */
  }
  return fd;
}

static int x_socket(int family) { return x_socket_ex(family, 0); }

static void x_close(int fd) {
  if (dtls_mode)
    dtlsplex_detach(fd); /* EBADF if a scenario detached it already */
  close(fd);
}

static ssize_t x_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest,
                        socklen_t dest_len) {
  return dtls_mode ? dtlssendto(fd, buf, len, flags, dest, dest_len) : sendto(fd, buf, len, flags, dest, dest_len);
}

static ssize_t x_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *src_len) {
  return dtls_mode ? dtlsrecvfrom(fd, buf, len, flags, src, src_len) : recvfrom(fd, buf, len, flags, src, src_len);
}

/* ------------------------------------------------------------------ */
/* The echo peer: a thread in the scenario's process                   */
/* ------------------------------------------------------------------ */

typedef struct peer {
  int fd;
  struct sockaddr_storage addr;
  socklen_t len;
  atomic_int stop;
  pthread_t thread;
} peer;

/* Echoes every datagram to its sender: recvfrom/sendto on plain UDP,
 * dtlsrecvfrom/dtlssendto on a server-role attached socket. */
static void *echo_loop(void *arg) {
  peer *p = arg;
  char buf[65536];
  /* SO_RCVTIMEO 50 ms: each turn is short, so stop is seen; the count bounds
   * the loop even if the receive never waits. */
  for (long turn = 0; turn < 1000000 && !atomic_load(&p->stop); turn++) {
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = x_recvfrom(p->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
    if (n >= 0)
      x_sendto(p->fd, buf, (size_t)n, 0, sa(&from), from_len); /* a client that left: ignored */
  }
  return NULL;
}

static void peer_start(peer *p, int family, const char *name) {
  p->fd = x_socket_ex(family, XS_SERVER);
  p->len = local_addr(p->fd, &p->addr);
  set_rcvtimeo(p->fd, 50);
  name_addr(name, &p->addr);
  atomic_store(&p->stop, 0);
  need(pthread_create(&p->thread, NULL, echo_loop, p) == 0);
}

static void peer_stop(peer *p) {
  atomic_store(&p->stop, 1);
  pthread_join(p->thread, NULL);
  x_close(p->fd);
}

/* A plain UDP socket on loopback that never reads nor answers (both runs). */
static int silent_socket(int family, struct sockaddr_storage *addr, socklen_t *len, const char *name) {
  int fd = socket(family, SOCK_DGRAM, 0);
  need(fd >= 0);
  *len = loopback(family, 0, addr);
  need(bind(fd, sa(addr), *len) == 0);
  *len = local_addr(fd, addr);
  name_addr(name, addr);
  return fd;
}

/* A loopback port where a socket was bound a moment ago: the kernel answers
 * datagrams to it with ICMP port unreachable. */
static socklen_t closed_port(int family, struct sockaddr_storage *addr, const char *name) {
  socklen_t len;
  close(silent_socket(family, addr, &len, name));
  return len;
}

/* ------------------------------------------------------------------ */
/* Recording sends and receives                                        */
/* ------------------------------------------------------------------ */

static void bytes_text(char *out, size_t n, const char *buf, size_t len) {
  int printable = 1;
  for (size_t i = 0; i < len; i++)
    printable &= buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '"';
  size_t shown = len < 64 ? len : 64;
  if (printable) {
    snprintf(out, n, "\"%.*s\"%s", (int)shown, buf, shown < len ? "..." : "");
    return;
  }
  size_t at = 0;
  for (size_t i = 0; i < shown && at + 3 < n; i++)
    at += (size_t)snprintf(out + at, n - at, "%02x", (unsigned char)buf[i]);
}

/* A receive: its result, and for a datagram its bytes and where it came from. */
static void record_recv(ssize_t r, int err, const char *buf, size_t buf_len, const struct sockaddr_storage *src,
                        socklen_t src_len, const char *label) {
  char res[64], bytes[160], from[192];
  if (r < 0) {
    line("%s: %s", label, result_text(res, sizeof res, r, err));
    return;
  }
  bytes_text(bytes, sizeof bytes, buf, (size_t)r < buf_len ? (size_t)r : buf_len);
  addr_text(from, sizeof from, src, src_len);
  line("%s: %zd %s from %s", label, r, bytes, from);
}

/* Reads away datagrams left over from an earlier case (one whose echo came
 * late, or a receive that failed without consuming its datagram), so that
 * each case sees its own echo.  A note, not a comparison. */
static void drain(int fd, const char *before) {
  char buf[2048];
  int n = 0;
  while (n < 16 && x_recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL) >= 0)
    n++;
  if (n > 0)
    note("%d datagram(s) left over before '%s', drained", n, before);
}

/* Sends one datagram and, if the send succeeded, receives its echo with
 * rflags, waiting up to wait_ms; records both.  The echo line is recorded in
 * any case, so that the transcripts stay aligned where one run's send fails. */
static void send_then_echo(const char *label, int fd, const void *buf, size_t len, int sflags,
                           const void *dest, socklen_t dest_len, int rflags, int wait_ms) {
  drain(fd, label);
  char what[512];
  ssize_t r = x_sendto(fd, buf, len, sflags, sa(dest), dest_len);
  record(r, "%s: send", label);
  snprintf(what, sizeof what, "%s: echo", label);
  if (r < 0) {
    line("%s: not awaited (the send failed)", what);
    return;
  }
  set_rcvtimeo(fd, wait_ms);
  char echo[2048];
  struct sockaddr_storage src;
  socklen_t src_len = sizeof src;
  ssize_t n = x_recvfrom(fd, echo, sizeof echo, rflags, (struct sockaddr *)&src, &src_len);
  record_recv(n, errno, echo, sizeof echo, &src, src_len, what);
  if (n < 0) {
    /* The echo may still be on its way: let it land and read it away now,
     * or the next case would take it for its own. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    poll(&pfd, 1, 300);
    drain(fd, what);
  }
}

/* The common case: the label is the payload. */
static void exchange(const char *label, int fd, const void *dest, socklen_t dest_len, int sflags, int rflags) {
  send_then_echo(label, fd, label, strlen(label), sflags, dest, dest_len, rflags, ECHO_WAIT_MS);
}

/* A send that should fail at once: its result, and whether it returned within 1 s. */
static ssize_t timed_send(int fd, const void *dest, socklen_t dest_len, const char *label) {
  long t0 = now_ms();
  ssize_t r = x_sendto(fd, "x", 1, 0, sa(dest), dest_len);
  int err = errno;
  long took = now_ms() - t0;
  record(r, "%s", label);
  line("%s: returned within 1 s: %s", label, yes_no(took < 1000));
  note("%s: took %ld ms", label, took);
  errno = err;
  return r;
}

/* A receive run in its own thread, so that a scenario can bound how long it
 * waits for a blocking call that may never return (no SO_RCVTIMEO).  A
 * receive still blocked when the scenario gives up is left running, with its
 * socket: the process ends soon after. */
typedef struct recv_job {
  int fd, flags;
  pthread_t thread;
  atomic_int done;
  ssize_t r;
  int err;
  long returned_at;
  char buf[256];
  struct sockaddr_storage src;
  socklen_t src_len;
} recv_job;

static void *recv_job_run(void *arg) {
  recv_job *j = arg;
  j->src_len = sizeof j->src;
  j->r = x_recvfrom(j->fd, j->buf, sizeof j->buf, j->flags, (struct sockaddr *)&j->src, &j->src_len);
  j->err = errno;
  j->returned_at = now_ms();
  atomic_store(&j->done, 1);
  return NULL;
}

static recv_job *recv_start(int fd, int flags) {
  recv_job *j = calloc(1, sizeof *j);
  need(j != NULL);
  j->fd = fd;
  j->flags = flags;
  need(pthread_create(&j->thread, NULL, recv_job_run, j) == 0);
  return j;
}

/* 1 if the receive returned within limit_ms (the thread is then joined). */
static int recv_wait(recv_job *j, int limit_ms) {
  for (long give_up = now_ms() + limit_ms; !atomic_load(&j->done) && now_ms() < give_up;)
    usleep(2000);
  if (!atomic_load(&j->done))
    return 0;
  pthread_join(j->thread, NULL);
  return 1;
}

static void record_job(const recv_job *j, const char *label) {
  record_recv(j->r, j->err, j->buf, sizeof j->buf, &j->src, j->src_len, label);
}

static long cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* ------------------------------------------------------------------ */
/* 1. errno is left alone by calls that succeed                        */
/* ------------------------------------------------------------------ */

/* Spec lines for the library's other calls: each, on success, keeps errno. */
static void spec_errno_kept(const char *call, int succeeded, int r, int err) {
  spec(succeeded && err == ERRNO_SENTINEL, "%s succeeds and leaves errno %d alone: returned %d, errno %s", call,
       ERRNO_SENTINEL, r, ename(err));
}

static void scenario_errno_preserved_on_success(void) {
  peer p;
  peer_start(&p, AF_INET, "echo4");
  int c = x_socket(AF_INET);
  set_rcvtimeo(c, 5000);
  /* Round 1 runs the handshake in the DTLS run; round 2 uses the session. */
  for (int round = 1; round <= 2; round++) {
    char msg[32], buf[64];
    int len = snprintf(msg, sizeof msg, "hello %d", round);
    errno = ERRNO_SENTINEL;
    record(x_sendto(c, msg, (size_t)len, 0, sa(&p.addr), p.len), "round %d: send", round);
    line("round %d: errno after the send: %s", round, ename(errno));
    struct sockaddr_storage src;
    socklen_t src_len = sizeof src;
    errno = ERRNO_SENTINEL;
    ssize_t n = x_recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len);
    int err = errno;
    char label[64];
    snprintf(label, sizeof label, "round %d: blocking receive of the echo", round);
    record_recv(n, err, buf, sizeof buf, &src, src_len, label);
    line("round %d: errno after the receive: %s", round, ename(err));
  }
  if (dtls_mode) {
    /* A fresh socket for attach itself. */
    struct sockaddr_storage self;
    socklen_t self_len = loopback(AF_INET, 0, &self);
    int fresh = socket(AF_INET, SOCK_DGRAM, 0);
    need(fresh >= 0 && bind(fresh, sa(&self), self_len) == 0);
    dtlsplex_config *cfg = mode_config(0);
    errno = ERRNO_SENTINEL;
    int r = dtlsplex_attach(fresh, cfg);
    spec_errno_kept("dtlsplex_attach", r >= 0, r, errno);
    dtlsplex_config_free(cfg);
    dtlsplex_detach(fresh);
    close(fresh);

    struct dtlsplex_peer_info info;
    struct dtlsplex_stats st;
    errno = ERRNO_SENTINEL;
    r = dtlsplex_process(c);
    spec_errno_kept("dtlsplex_process", r >= 0, r, errno);
    errno = ERRNO_SENTINEL;
    r = dtlsplex_timeout(c);
    spec_errno_kept("dtlsplex_timeout", r >= -1, r, errno); /* -1 is "no timer", not a failure */
    errno = ERRNO_SENTINEL;
    r = dtlsplex_pending(c);
    spec_errno_kept("dtlsplex_pending", r >= 0, r, errno);
    errno = ERRNO_SENTINEL;
    r = dtlsplex_peer_info(c, sa(&p.addr), p.len, &info);
    spec_errno_kept("dtlsplex_peer_info", r >= 0, r, errno);
    errno = ERRNO_SENTINEL;
    r = dtlsplex_stats(c, &st);
    spec_errno_kept("dtlsplex_stats", r >= 0, r, errno);
    errno = ERRNO_SENTINEL;
    r = dtlsplex_close(c, sa(&p.addr), p.len);
    spec_errno_kept("dtlsplex_close of the echo server (session established)", r >= 0, r, errno);
    errno = ERRNO_SENTINEL;
    r = dtlsplex_detach(c);
    spec_errno_kept("dtlsplex_detach", r >= 0, r, errno);
  }
  x_close(c);
  peer_stop(&p);
}

/* ------------------------------------------------------------------ */
/* 2. Argument checks                                                  */
/* ------------------------------------------------------------------ */

/* recvfrom reports EFAULT for a bad buffer only when it copies a datagram
 * into it (with nothing queued, it would block): so an echo is made to wait
 * in the socket first. */
static void null_buffer_receive(int fd, const void *dest, socklen_t dest_len) {
  const char *label = "receive into NULL, len 10, a datagram waiting";
  drain(fd, label);
  record(x_sendto(fd, "ping", 4, 0, sa(dest), dest_len), "%s: send", label);
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  line("%s: the echo is in the socket: %s", label, yes_no(poll(&pfd, 1, ECHO_WAIT_MS) == 1));
  struct sockaddr_storage src;
  socklen_t src_len = sizeof src;
  set_rcvtimeo(fd, ECHO_WAIT_MS);
  record(x_recvfrom(fd, NULL, 10, 0, (struct sockaddr *)&src, &src_len), "%s", label);
}

/* A descriptor that is not a socket (or not open): both calls. */
static void not_a_socket(const char *what, int send_fd, int recv_fd, const void *dest, socklen_t dest_len) {
  char buf[16];
  struct sockaddr_storage src;
  socklen_t src_len = sizeof src;
  record(x_sendto(send_fd, "x", 1, 0, sa(dest), dest_len), "send on %s", what);
  record(x_recvfrom(recv_fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len), "receive on %s", what);
}

static void scenario_argument_checks(void) {
  peer p4, p6;
  peer_start(&p4, AF_INET, "echo4");
  peer_start(&p6, AF_INET6, "echo6");
  int c4 = x_socket(AF_INET), c6 = x_socket(AF_INET6);
  exchange("baseline, AF_INET", c4, &p4.addr, p4.len, 0, 0);
  exchange("baseline, AF_INET6", c6, &p6.addr, p6.len, 0, 0);

  /* Buffers. */
  send_then_echo("send from NULL, len 10", c4, NULL, 10, 0, &p4.addr, p4.len, 0, ECHO_WAIT_MS);
  null_buffer_receive(c4, &p4.addr, p4.len);

  /* Destination families.  AF_UNSPEC carries the echo server's address and port. */
  struct sockaddr_storage d;
  socklen_t d_len = loopback(AF_INET, port_of(&p4.addr), &d);
  d.ss_family = AF_UNSPEC;
  send_then_echo("AF_INET socket, to AF_UNSPEC (127.0.0.1, echo port), len 16", c4, "unspec4", 7, 0, &d, d_len,
                 0, ECHO_WAIT_MS);
  d_len = loopback(AF_INET6, port_of(&p6.addr), &d);
  d.ss_family = AF_UNSPEC;
  send_then_echo("AF_INET6 socket, to AF_UNSPEC (::1, echo port), len 28", c6, "unspec6", 7, 0, &d, d_len, 0,
                 ECHO_WAIT_MS);
  d_len = v4mapped(port_of(&p4.addr), &d);
  send_then_echo("AF_INET socket, to ::ffff:127.0.0.1 (echo port)", c4, "mapped", 6, 0, &d, d_len, 0,
                 ECHO_WAIT_MS);

  /* Destination lengths: sockaddr_in6 is 28 bytes, RFC 2133's was 24;
   * above sizeof(struct sockaddr_storage) is too long.  The buffer is always
   * a sockaddr_storage, so a library must not read len bytes of it. */
  static const socklen_t v6_lengths[] = {24, 25, 26, 27, 28, 129, 200};
  for (size_t i = 0; i < sizeof v6_lengths / sizeof v6_lengths[0]; i++) {
    char label[96];
    snprintf(label, sizeof label, "AF_INET6 socket, sockaddr_in6 to ::1 (echo port), len %u", (unsigned)v6_lengths[i]);
    loopback(AF_INET6, port_of(&p6.addr), &d);
    exchange(label, c6, &d, v6_lengths[i], 0, 0);
  }
  static const socklen_t v4_lengths[] = {15, 16};
  for (size_t i = 0; i < sizeof v4_lengths / sizeof v4_lengths[0]; i++) {
    char label[96];
    snprintf(label, sizeof label, "AF_INET socket, sockaddr_in to 127.0.0.1 (echo port), len %u", (unsigned)v4_lengths[i]);
    loopback(AF_INET, port_of(&p4.addr), &d);
    exchange(label, c4, &d, v4_lengths[i], 0, 0);
  }

  /* Flags. */
  exchange("send flag MSG_DONTROUTE", c4, &p4.addr, p4.len, MSG_DONTROUTE, 0);
  /* MSG_MORE corks: nothing leaves until a send without it, which then
   * carries both payloads in one datagram. */
  send_then_echo("send flag MSG_MORE", c4, "more+", 5, MSG_MORE, &p4.addr, p4.len, 0, 300);
  exchange("send after MSG_MORE, no flags", c4, &p4.addr, p4.len, 0, 0);
  exchange("send flag MSG_EOR", c4, &p4.addr, p4.len, MSG_EOR, 0);
  exchange("receive flag MSG_WAITALL", c4, &p4.addr, p4.len, 0, MSG_WAITALL);
  exchange("receive flag MSG_CMSG_CLOEXEC", c4, &p4.addr, p4.len, 0, MSG_CMSG_CLOEXEC);

  /* Descriptors that are not sockets, and one that is not open. */
  int pipe_fds[2];
  need(pipe(pipe_fds) == 0);
  set_nonblocking(pipe_fds[0], 1); /* a library that read(2) it must not hang the run */
  not_a_socket("a pipe", pipe_fds[1], pipe_fds[0], &p4.addr, p4.len);
  char path[] = "/tmp/dtlsplex-diff-XXXXXX";
  int file = mkstemp(path);
  need(file >= 0);
  unlink(path);
  not_a_socket("a regular file", file, file, &p4.addr, p4.len);
  int gone = open("/dev/null", O_RDONLY);
  need(gone >= 0);
  close(gone);
  not_a_socket("a closed descriptor", gone, gone, &p4.addr, p4.len);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  close(file);

  /* No plaintext, ever (DESIGN.md section 2): on a UDP socket that is not
   * attached, the DTLS calls fail with EBADF and send nothing.  Plain UDP
   * has no counterpart, so these are spec lines. */
  if (dtls_mode) {
    struct sockaddr_storage quiet;
    socklen_t quiet_len;
    int silent = silent_socket(AF_INET, &quiet, &quiet_len, "silent port");
    int plain = socket(AF_INET, SOCK_DGRAM, 0);
    need(plain >= 0);
    set_rcvtimeo(plain, 200); /* a library that read it anyway must not hang the run */
    char res[64], buf[16];
    ssize_t r = dtlssendto(plain, "clear", 5, 0, sa(&quiet), quiet_len);
    int err = errno;
    struct pollfd watch = {.fd = silent, .events = POLLIN};
    int arrived = poll(&watch, 1, 200);
    spec(r == -1 && err == EBADF && arrived == 0,
         "dtlssendto on a UDP socket that is not attached: -1 EBADF, nothing sent; got %s, %s",
         result_text(res, sizeof res, r, err), arrived ? "a datagram arrived" : "nothing arrived");
    r = dtlsrecvfrom(plain, buf, sizeof buf, 0, NULL, NULL);
    err = errno;
    spec(r == -1 && err == EBADF, "dtlsrecvfrom on a UDP socket that is not attached: -1 EBADF; got %s",
         result_text(res, sizeof res, r, err));
    close(plain);
    close(silent);
  }

  drain(c4, "the end");
  x_close(c4);
  x_close(c6);
  peer_stop(&p4);
  peer_stop(&p6);
}

/* ------------------------------------------------------------------ */
/* 3. Destinations no datagram can reach                               */
/* ------------------------------------------------------------------ */

static void scenario_impossible_destinations(void) {
  peer p4;
  peer_start(&p4, AF_INET, "echo4");
  int c4 = x_socket(AF_INET), c6 = x_socket_ex(AF_INET6, XS_V6ONLY);
  struct sockaddr_storage port0, v4, mapped;
  socklen_t port0_len = loopback(AF_INET, 0, &port0);
  socklen_t v4_len = loopback(AF_INET, port_of(&p4.addr), &v4);
  socklen_t mapped_len = v4mapped(port_of(&p4.addr), &mapped);
  /* Blocking, then O_NONBLOCK: a non-blocking send must fail at once too,
   * not queue a datagram that can never go. */
  for (int nonblocking = 0; nonblocking <= 1; nonblocking++) {
    const char *how = nonblocking ? "O_NONBLOCK" : "blocking";
    char label[128];
    set_nonblocking(c4, nonblocking);
    set_nonblocking(c6, nonblocking);
    snprintf(label, sizeof label, "%s: AF_INET socket, to 127.0.0.1 port 0", how);
    timed_send(c4, &port0, port0_len, label);
    snprintf(label, sizeof label, "%s: IPV6_V6ONLY socket, to AF_INET 127.0.0.1 (echo port)", how);
    timed_send(c6, &v4, v4_len, label);
    snprintf(label, sizeof label, "%s: IPV6_V6ONLY socket, to ::ffff:127.0.0.1 (echo port)", how);
    timed_send(c6, &mapped, mapped_len, label);
  }
  x_close(c4);
  x_close(c6);
  peer_stop(&p4);
}

/* ------------------------------------------------------------------ */
/* 4. No route at all                                                  */
/* ------------------------------------------------------------------ */

static void scenario_unreachable_network(void) {
  /* A fresh network namespace has only a loopback interface, and it is
   * down: nothing can leave this process's sockets. */
  if (unshare(CLONE_NEWNET) != 0) {
    line("skipped: unshare(CLONE_NEWNET) fails with %s", ename(errno));
    return;
  }
  static const int families[] = {AF_INET, AF_INET6};
  for (int i = 0; i < 2; i++) {
    int c = x_socket_ex(families[i], XS_WILDCARD); /* loopback is down: it cannot be bound */
    struct sockaddr_storage dest;
    socklen_t dest_len = loopback(families[i], htons(9), &dest);
    timed_send(c, &dest, dest_len,
               families[i] == AF_INET ? "loopback down: send to 127.0.0.1 port 9"
                                      : "loopback down: send to ::1 port 9");
    x_close(c);
  }
}

/* ------------------------------------------------------------------ */
/* 5. ICMP port unreachable on a connected socket                      */
/* ------------------------------------------------------------------ */

static const char *revents_text(char *buf, size_t n, short ev) {
  snprintf(buf, n, "%s%s%s%s", ev & POLLIN ? "POLLIN " : "", ev & POLLOUT ? "POLLOUT " : "",
           ev & POLLERR ? "POLLERR " : "", ev & POLLHUP ? "POLLHUP " : "");
  return buf[0] != '\0' ? buf : "none";
}

static void scenario_icmp_refused_connected(void) {
  struct sockaddr_storage gone;
  socklen_t gone_len = closed_port(AF_INET, &gone, "closed port");
  int c = x_socket(AF_INET);
  need(connect(c, sa(&gone), gone_len) == 0);
  set_nonblocking(c, 1);
  record(x_sendto(c, "probe", 5, 0, NULL, 0), "non-blocking send, connected to a closed port");
  /* The ICMP error arrives a moment later. */
  struct pollfd pfd = {.fd = c, .events = POLLIN | POLLERR};
  int ready = poll(&pfd, 1, 2000);
  char ev[64];
  line("poll for POLLIN|POLLERR (up to 2 s): %d, revents %s", ready, revents_text(ev, sizeof ev, pfd.revents));
  for (int i = 1; i <= 2; i++) {
    char buf[64], label[64];
    struct sockaddr_storage src;
    socklen_t src_len = sizeof src;
    ssize_t n = x_recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len);
    snprintf(label, sizeof label, "non-blocking receive %d", i);
    record_recv(n, errno, buf, sizeof buf, &src, src_len, label);
  }
  x_close(c);

  /* Blocking: sendto returns at once (the ICMP error comes later); a DTLS
   * handshake towards the closed port must end with the ICMP error, not
   * run to its timeout. */
  gone_len = closed_port(AF_INET, &gone, "closed port");
  c = x_socket(AF_INET);
  need(connect(c, sa(&gone), gone_len) == 0);
  long t0 = now_ms();
  ssize_t r = x_sendto(c, "probe", 5, 0, NULL, 0);
  int err = errno;
  long took = now_ms() - t0;
  char res[64];
  line("blocking send, connected to a closed port: returned within 1 s: %s", yes_no(took < 1000));
  if (!dtls_mode)
    note("blocking sendto, connected to a closed port: %s after %ld ms", result_text(res, sizeof res, r, err), took);
  spec(r == -1 && err == ECONNREFUSED && took < 1000,
       "blocking dtlssendto, connected to a closed port: -1 ECONNREFUSED within 1 s; got %s after %ld ms",
       result_text(res, sizeof res, r, err), took);
  x_close(c);
}

/* ------------------------------------------------------------------ */
/* 6. shutdown(SHUT_RD) wakes a blocked receiver                       */
/* ------------------------------------------------------------------ */

static void scenario_shutdown_rd_wakes_receiver(void) {
  int c = x_socket(AF_INET);
  long cpu0 = cpu_ms();
  recv_job *first = recv_start(c, 0); /* blocking, no SO_RCVTIMEO */
  usleep(200000);
  long shut_at = now_ms();
  record(shutdown(c, SHUT_RD), "shutdown(SHUT_RD) of the unconnected socket");
  int back = recv_wait(first, 1500);
  if (back)
    record_job(first, "the blocked receive");
  else
    line("the blocked receive: still blocked 1.5 s after the shutdown");
  line("the blocked receive returned within 1 s of the shutdown: %s",
       yes_no(back && first->returned_at - shut_at < 1000));
  /* A receive that never returned keeps its job and its socket: the
   * process ends soon after. */
  int all_back = back;
  if (back) {
    free(first);
    recv_job *second = recv_start(c, 0);
    all_back = recv_wait(second, 1000);
    if (all_back) {
      record_job(second, "a receive after the shutdown");
      free(second);
    } else {
      line("a receive after the shutdown: still blocked after 1 s");
    }
  } else {
    line("a receive after the shutdown: not tried");
  }
  long cpu = cpu_ms() - cpu0;
  line("used under 0.5 s CPU: %s", yes_no(cpu < 500));
  note("CPU time over the scenario: %ld ms", cpu);
  if (all_back)
    x_close(c);
  else
    note("socket left open: a receive is still blocked in it");
}

/* ------------------------------------------------------------------ */
/* 7. A signal during a blocking receive                               */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t signals_caught;
static void on_signal(int sig) {
  (void)sig;
  signals_caught++;
}

/* One signal 200 ms into a blocking receive, and a datagram from the echo
 * server 300 ms later.  With SA_RESTART, recvfrom restarts and returns the
 * datagram; without it, recvfrom fails with EINTR and the datagram is read
 * by a later receive.  The receive runs in a thread of its own (the signal is
 * sent to that thread) so that a receive that never returns cannot hang the
 * run.  Returns 0 if the receive never returned (its socket must then be
 * left alone). */
static int signal_during_receive(const char *variant, int restart, int c, peer *p,
                                 const struct sockaddr_storage *client, socklen_t client_len) {
  char label[160];
  snprintf(label, sizeof label, "%s, %s", variant, restart ? "SA_RESTART" : "no SA_RESTART");
  struct sigaction act;
  memset(&act, 0, sizeof act);
  act.sa_handler = on_signal;
  sigemptyset(&act.sa_mask);
  act.sa_flags = restart ? SA_RESTART : 0;
  need(sigaction(SIGUSR1, &act, NULL) == 0);
  signals_caught = 0;
  set_rcvtimeo(c, 0); /* a real program's blocking socket: no timeout */

  recv_job *j = recv_start(c, 0);
  usleep(200000);
  need(pthread_kill(j->thread, SIGUSR1) == 0);
  usleep(300000);
  record(x_sendto(p->fd, "late", 4, 0, sa(client), client_len), "%s: the echo server sends to the client", label);
  int back = recv_wait(j, 700);
  if (!back) {
    line("%s: the receive is still blocked 0.7 s after the datagram; a second one follows", label);
    x_sendto(p->fd, "rescue", 6, 0, sa(client), client_len);
    back = recv_wait(j, 300);
  }
  char what[200];
  snprintf(what, sizeof what, "%s: the blocked receive", label);
  if (back)
    record_job(j, what);
  else
    line("%s: never returned", what);
  line("%s: signal handler ran %d time(s)", label, (int)signals_caught);
  if (!back)
    return 0;
  free(j);
  /* Whatever is still due (the datagram, after EINTR). */
  char buf[64];
  struct sockaddr_storage src;
  socklen_t src_len = sizeof src;
  set_rcvtimeo(c, 300);
  ssize_t n = x_recvfrom(c, buf, sizeof buf, 0, (struct sockaddr *)&src, &src_len);
  snprintf(what, sizeof what, "%s: a further receive (SO_RCVTIMEO 300 ms)", label);
  record_recv(n, errno, buf, sizeof buf, &src, src_len, what);
  return 1;
}

enum {
  SV_CONNECTED = 1,  /* connect() the client to the echo server */
  SV_HANDSHAKING = 2 /* keep a handshake in progress on the client socket */
};

/* Variants: the plain socket (the library may wait in the kernel's own
 * receive), a handshake in progress and a connect()ed socket (where it
 * waits in poll). */
static void signal_variant(const char *variant, int opts) {
  peer p;
  peer_start(&p, AF_INET, "echo4");
  int c = x_socket(AF_INET);
  struct sockaddr_storage client;
  socklen_t client_len = local_addr(c, &client);
  name_addr("client", &client);
  if (opts & SV_CONNECTED)
    need(connect(c, sa(&p.addr), p.len) == 0);
  /* The echo server can only send to the client once they have a session. */
  char label[160];
  snprintf(label, sizeof label, "%s: first exchange", variant);
  exchange(label, c, opts & SV_CONNECTED ? NULL : &p.addr, opts & SV_CONNECTED ? 0 : p.len, 0, 0);
  int silent = -1;
  struct sockaddr_storage quiet;
  socklen_t quiet_len = 0;
  if (opts & SV_HANDSHAKING)
    silent = silent_socket(AF_INET, &quiet, &quiet_len, "silent port");
  int alive = 1;
  for (int restart = 1; restart >= 0 && alive; restart--) {
    if (opts & SV_HANDSHAKING)
      record(x_sendto(c, "hs", 2, MSG_DONTWAIT, sa(&quiet), quiet_len),
             "%s: MSG_DONTWAIT send to a silent port (a handshake starts in the DTLS run)", variant);
    alive = signal_during_receive(variant, restart, c, &p, &client, client_len);
  }
  if (alive)
    x_close(c);
  else
    note("%s: socket left open: a receive is still blocked in it", variant);
  if (silent >= 0)
    close(silent);
  peer_stop(&p);
}

static void scenario_sa_restart_signal(void) {
  signal_variant("unconnected", 0);
  signal_variant("handshake in progress", SV_HANDSHAKING);
  signal_variant("connected", SV_CONNECTED);
}

/* Not compared: a program that also catches SIGINT without SA_RESTART.
 * Where dtlsrecvfrom waits in poll it cannot know which signal came, so it
 * starts again only if every caught signal's handler has SA_RESTART, and
 * gives EINTR there where recvfrom restarts: a documented difference
 * (dtlsrecvfrom(3)). */

/* ------------------------------------------------------------------ */
/* 8. SO_SNDTIMEO bounds a blocking send that has to handshake         */
/* ------------------------------------------------------------------ */

static void scenario_sndtimeo_bounds_handshake(void) {
  struct sockaddr_storage quiet;
  socklen_t quiet_len;
  int silent = silent_socket(AF_INET, &quiet, &quiet_len, "silent port");
  int c = x_socket(AF_INET);
  set_sndtimeo(c, 300);
  long t0 = now_ms();
  ssize_t r = x_sendto(c, "hello", 5, 0, sa(&quiet), quiet_len);
  int err = errno;
  long took = now_ms() - t0;
  char res[64];
  line("blocking send with SO_SNDTIMEO 300 ms to a port that never answers: returned within 1 s: %s",
       yes_no(took < 1000));
  if (!dtls_mode)
    note("sendto with SO_SNDTIMEO 300 ms to a silent port: %s after %ld ms", result_text(res, sizeof res, r, err),
         took);
  spec(r == -1 && err == EAGAIN,
       "blocking dtlssendto with SO_SNDTIMEO 300 ms to a port that never answers: -1 EAGAIN; got %s after %ld ms",
       result_text(res, sizeof res, r, err), took);
  x_close(c);
  close(silent);
}

/* ------------------------------------------------------------------ */
/* 9. sendmsg/recvmsg: iovecs, flags, IP_PKTINFO both ways             */
/* ------------------------------------------------------------------ */

static ssize_t x_sendmsg(int fd, const struct msghdr *m, int flags) {
  return dtls_mode ? dtlssendmsg(fd, m, flags) : sendmsg(fd, m, flags);
}

static ssize_t x_recvmsg(int fd, struct msghdr *m, int flags) {
  return dtls_mode ? dtlsrecvmsg(fd, m, flags) : recvmsg(fd, m, flags);
}

/* The address of family ip:port. */
static socklen_t address(int family, const char *ip, in_port_t port, struct sockaddr_storage *out) {
  socklen_t len = loopback(family, port, out);
  if (family == AF_INET)
    need(inet_pton(AF_INET, ip, &((struct sockaddr_in *)out)->sin_addr) == 1);
  else
    need(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)out)->sin6_addr) == 1);
  return len;
}

/* The program's view of an option. */
static void record_option(int fd, int level, int name, const char *what) {
  int on = -1;
  socklen_t len = sizeof on;
  int r = getsockopt(fd, level, name, &on, &len);
  line("getsockopt %s: %d, value %d, len %u", what, r, on, (unsigned)len);
}

static void set_option(int fd, int level, int name, int on, const char *what) {
  record(setsockopt(fd, level, name, &on, sizeof on), "setsockopt %s %d", what, on);
}

static void cmsg_lines(struct msghdr *m, const char *label) {
  char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], ifname[IF_NAMESIZE];
  for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      line("%s: IP_PKTINFO len %zu, interface %s, spec_dst %s, addr %s", label, (size_t)c->cmsg_len,
           if_indextoname((unsigned)pi.ipi_ifindex, ifname) ? ifname : "?",
           inet_ntop(AF_INET, &pi.ipi_spec_dst, a, sizeof a), inet_ntop(AF_INET, &pi.ipi_addr, b, sizeof b));
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      line("%s: IPV6_PKTINFO len %zu, interface %s, addr %s", label, (size_t)c->cmsg_len,
           if_indextoname(pi.ipi6_ifindex, ifname) ? ifname : "?", inet_ntop(AF_INET6, &pi.ipi6_addr, a, sizeof a));
    } else {
      line("%s: control message level %d type %d len %zu", label, c->cmsg_level, c->cmsg_type, (size_t)c->cmsg_len);
    }
  }
}

/* The server's receive, non-blocking and retried for up to ECHO_WAIT_MS:
 * in the DTLS run the client's side of the handshake is driven from here
 * (one thread, no echo peer).  Records the result, each iovec, msg_flags,
 * the source, and the control messages. */
static void server_recvmsg(int srv, int client, const size_t *iov_lens, size_t n_iov, size_t control_len,
                           int flags, const char *label) {
  char bufs[4][64];
  union {
    struct cmsghdr align;
    char bytes[256];
  } control;
  struct iovec iov[4];
  struct sockaddr_storage from;
  struct msghdr m;
  ssize_t r;
  long deadline = now_ms() + ECHO_WAIT_MS;
  for (;;) {
    memset(bufs, '.', sizeof bufs);
    for (size_t i = 0; i < n_iov; i++)
      iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = iov_lens[i]};
    m = (struct msghdr){.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov, .msg_iovlen = n_iov,
                        .msg_control = control_len > 0 ? &control : NULL, .msg_controllen = control_len,
                        .msg_flags = 0x4000000};
    r = x_recvmsg(srv, &m, flags | MSG_DONTWAIT);
    if (r >= 0 || errno != EAGAIN || now_ms() >= deadline)
      break;
    if (dtls_mode)
      dtlsplex_process(client);
    struct pollfd p[2] = {{.fd = srv, .events = POLLIN}, {.fd = client, .events = POLLIN}};
    poll(p, 2, 10);
  }
  char res[64], parts[320] = "", fromtext[192];
  if (r < 0) {
    line("%s: %s", label, result_text(res, sizeof res, r, errno));
    return;
  }
  for (size_t i = 0, at = 0; i < n_iov; i++)
    at += (size_t)snprintf(parts + at, sizeof parts - at, "%s[%.*s]", i ? " " : "", (int)iov_lens[i], bufs[i]);
  addr_text(fromtext, sizeof fromtext, &from, m.msg_namelen);
  line("%s: %zd, iovecs %s, msg_flags%s%s%s, from %s, controllen %zu", label, r, parts,
       m.msg_flags & MSG_TRUNC ? " MSG_TRUNC" : "", m.msg_flags & MSG_CTRUNC ? " MSG_CTRUNC" : "",
       m.msg_flags & ~(MSG_TRUNC | MSG_CTRUNC) ? " (others)" : "", fromtext, (size_t)m.msg_controllen);
  cmsg_lines(&m, label);
}

/* A datagram from iovecs, with one IP_PKTINFO or IPV6_PKTINFO naming the
 * source ip (NULL: none). */
static ssize_t send_parts(int fd, const struct sockaddr_storage *to, socklen_t to_len, const char *const *parts,
                          size_t n, int source_family, const char *ip, int flags) {
  struct iovec iov[4];
  for (size_t i = 0; i < n; i++)
    iov[i] = (struct iovec){.iov_base = (void *)parts[i], .iov_len = strlen(parts[i])};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(struct in6_pktinfo))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr m = {.msg_name = (void *)to, .msg_namelen = to_len, .msg_iov = iov, .msg_iovlen = n};
  if (ip != NULL) {
    m.msg_control = &control;
    struct cmsghdr *c = &control.align;
    if (source_family == AF_INET) {
      struct in_pktinfo pi = {0};
      need(inet_pton(AF_INET, ip, &pi.ipi_spec_dst) == 1);
      *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof pi), .cmsg_level = IPPROTO_IP, .cmsg_type = IP_PKTINFO};
      memcpy(CMSG_DATA(c), &pi, sizeof pi);
      m.msg_controllen = CMSG_SPACE(sizeof pi);
    } else {
      struct in6_pktinfo pi = {0};
      need(inet_pton(AF_INET6, ip, &pi.ipi6_addr) == 1);
      *c = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof pi), .cmsg_level = IPPROTO_IPV6, .cmsg_type = IPV6_PKTINFO};
      memcpy(CMSG_DATA(c), &pi, sizeof pi);
      m.msg_controllen = CMSG_SPACE(sizeof pi);
    }
  }
  return x_sendmsg(fd, &m, flags);
}

/* The client's receive of a reply: blocking, bounded by SO_RCVTIMEO. */
static void client_receive(int fd, const char *label) {
  char buf[128];
  struct sockaddr_storage from;
  socklen_t from_len = sizeof from;
  set_rcvtimeo(fd, ECHO_WAIT_MS);
  ssize_t n = x_recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
  record_recv(n, errno, buf, sizeof buf, &from, from_len, label);
}

/* Malformed calls both sides refuse alike. */
static void msg_argument_checks(int fd, const struct sockaddr_storage *to, socklen_t to_len) {
  static struct iovec many[IOV_MAX + 1];
  char byte = 'x';
  for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
    many[i] = (struct iovec){.iov_base = &byte, .iov_len = 1};
  struct msghdr m = {.msg_name = (void *)to, .msg_namelen = to_len, .msg_iov = many, .msg_iovlen = IOV_MAX + 1};
  record(x_sendmsg(fd, &m, 0), "sendmsg with IOV_MAX + 1 iovecs");
  record(x_recvmsg(fd, &m, MSG_DONTWAIT), "recvmsg with IOV_MAX + 1 iovecs");
  m.msg_iov = NULL;
  m.msg_iovlen = 1;
  record(x_sendmsg(fd, &m, 0), "sendmsg with msg_iov NULL, msg_iovlen 1");
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(struct in_pktinfo))];
  } control;
  memset(&control, 0, sizeof control);
  m.msg_iov = many;
  m.msg_control = &control;
  m.msg_controllen = sizeof control;
  control.align = (struct cmsghdr){.cmsg_len = sizeof control + 8, .cmsg_level = IPPROTO_IP, .cmsg_type = IP_PKTINFO};
  record(x_sendmsg(fd, &m, 0), "sendmsg with a control message longer than the buffer");
  control.align.cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo) - 4);
  record(x_sendmsg(fd, &m, 0), "sendmsg with a short IP_PKTINFO");
}

/* A server on the wildcard address of family; the client (IPv4, on the
 * wildcard address too) reaches it at 127.0.0.2 from 127.0.0.5, which it
 * chooses with IP_PKTINFO on every send.  (Without it, UDP would pick the
 * route's source per datagram; a session keeps the address it began with.) */
static void msg_calls(int family) {
  int srv = x_socket_ex(family, XS_WILDCARD | XS_SERVER), client = x_socket_ex(AF_INET, XS_WILDCARD);
  struct sockaddr_storage self, server_addr, client_addr, to;
  local_addr(srv, &self);
  socklen_t len = address(AF_INET, "127.0.0.2", port_of(&self), &server_addr);
  name_addr("server at 127.0.0.2", &server_addr);
  local_addr(client, &self);
  address(AF_INET, "127.0.0.5", port_of(&self), &client_addr);
  name_addr("client at 127.0.0.5", &client_addr);
  /* The server's view of the client: IPv4-mapped on the dual-stack socket. */
  socklen_t to_len = family == AF_INET ? address(AF_INET, "127.0.0.5", port_of(&self), &to)
                                       : address(AF_INET6, "::ffff:127.0.0.5", port_of(&self), &to);
  name_addr("client at ::ffff:127.0.0.5", &to);
  if (dtls_mode)
    need(dtlsplex_set_peer_name(client, sa(&server_addr), len, "localhost") == 0);
  int pkt_level = family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
  int pkt_name = family == AF_INET ? IP_PKTINFO : IPV6_RECVPKTINFO;
  const char *pkt_text = family == AF_INET ? "IP_PKTINFO" : "IPV6_RECVPKTINFO";
  record_option(srv, pkt_level, pkt_name, pkt_text);

  /* The client's source, chosen; three iovecs, one record. */
  static const char *const first[] = {"one-", "two-", "three"};
  record(send_parts(client, &server_addr, len, first, 3, AF_INET, "127.0.0.5", MSG_DONTWAIT),
         "client sendmsg, 3 iovecs, IP_PKTINFO source 127.0.0.5");
  static const size_t scatter[] = {3, 0, 4, 64};
  server_recvmsg(srv, client, scatter, 4, 256, 0, "server recvmsg, iovecs of 3, 0, 4, 64 (pktinfo off)");

  set_option(srv, pkt_level, pkt_name, 1, pkt_text);
  record_option(srv, pkt_level, pkt_name, pkt_text);
  if (family == AF_INET6) {
    set_option(srv, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
    record_option(srv, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO");
  }
  static const char *const second[] = {"abcdefghij", "klmnopqrst"};
  record(send_parts(client, &server_addr, len, second, 2, AF_INET, "127.0.0.5", 0), "client sendmsg, 20 bytes");
  static const size_t small[] = {5, 3};
  server_recvmsg(srv, client, small, 2, 256, 0, "server recvmsg into 8 bytes");
  record(send_parts(client, &server_addr, len, second, 2, AF_INET, "127.0.0.5", 0), "client sendmsg, 20 bytes again");
  server_recvmsg(srv, client, small, 2, 256, MSG_TRUNC, "server recvmsg into 8 bytes, MSG_TRUNC");
  record(send_parts(client, &server_addr, len, first, 1, AF_INET, "127.0.0.5", 0), "client sendmsg, 4 bytes");
  static const size_t roomy[] = {64};
  server_recvmsg(srv, client, roomy, 1, CMSG_LEN(0) + 4, MSG_PEEK, "server recvmsg, MSG_PEEK, control room for a header");
  server_recvmsg(srv, client, roomy, 1, 0, 0, "server recvmsg, no control buffer");

  /* The reply names the address the client reached, as a DNS server's does. */
  static const char *const reply[] = {"re", "ply"};
  record(send_parts(srv, &to, to_len, reply, 2, family, family == AF_INET ? "127.0.0.2" : "::ffff:127.0.0.2", 0),
         "server sendmsg, 2 iovecs, PKTINFO source 127.0.0.2");
  client_receive(client, "client receives the reply");

  if (dtls_mode) {
    /* No UDP counterpart: UDP would send these. */
    ssize_t r = send_parts(srv, &to, to_len, reply, 2, family, family == AF_INET ? "127.0.0.3" : "::ffff:127.0.0.3", 0);
    int err = errno;
    spec(r < 0 && err == EINVAL, "a source other than the session's address is refused (EINVAL), not sent to be "
                                 "dropped: %zd %s", r, ename(err));
    union {
      struct cmsghdr align;
      char bytes[CMSG_SPACE(sizeof(int))];
    } tos;
    memset(&tos, 0, sizeof tos);
    tos.align = (struct cmsghdr){.cmsg_len = CMSG_LEN(sizeof(int)), .cmsg_level = IPPROTO_IP, .cmsg_type = IP_TOS};
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_name = &to, .msg_namelen = to_len, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = &tos, .msg_controllen = sizeof tos};
    r = dtlssendmsg(srv, &m, 0);
    err = errno;
    spec(r < 0 && err == EOPNOTSUPP, "IP_TOS, which a record cannot carry, is refused (EOPNOTSUPP): %zd %s", r,
         ename(err));
  }

  set_option(srv, pkt_level, pkt_name, 0, pkt_text);
  record_option(srv, pkt_level, pkt_name, pkt_text);
  if (family == AF_INET6)
    set_option(srv, IPPROTO_IP, IP_PKTINFO, 0, "IP_PKTINFO");
  record(send_parts(client, &server_addr, len, first, 2, AF_INET, "127.0.0.5", 0), "client sendmsg, pktinfo off again");
  server_recvmsg(srv, client, roomy, 1, 256, 0, "server recvmsg (pktinfo off)");
  msg_argument_checks(client, &server_addr, len);
  x_close(client);
  x_close(srv);
}

static void scenario_msg_calls_ipv4(void) { msg_calls(AF_INET); }
static void scenario_msg_calls_dual_stack(void) { msg_calls(AF_INET6); }

/* ------------------------------------------------------------------ */
/* The harness: two forked runs, compared                              */
/* ------------------------------------------------------------------ */

typedef void (*scenario_fn)(void);

typedef struct run {
  transcript *t;
  int clean;       /* exited 0 */
  char status[96]; /* how it ended, if not cleanly */
  long ms;
} run;

/* Each run starts as a fresh program would: default dispositions, nothing
 * blocked.  (The Check runner's own SIGINT, SIGALRM and SIGTERM handlers
 * would otherwise be inherited, and a library that looks at the installed
 * handlers would see them.) */
static void fresh_signals(void) {
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL); /* fails for SIGKILL, SIGSTOP and the C library's own: fine */
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Runs fn in a child process in one mode, under the watchdog. */
static run run_mode(scenario_fn fn, int dtls) {
  run out = {.clean = 0};
  out.t = mmap(NULL, sizeof *out.t, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(out.t, MAP_FAILED);
  fflush(NULL); /* nothing buffered is written twice */
  long t0 = now_ms();
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    current = out.t;
    dtls_mode = dtls;
    fresh_signals();
    fn();
    _exit(0); /* never back into Check */
  }
  int status = 0;
  pid_t w;
  while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() - t0 < WATCHDOG_MS)
    usleep(5000);
  if (w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    snprintf(out.status, sizeof out.status, "killed by the watchdog after %d s", WATCHDOG_MS / 1000);
  } else if (w < 0) {
    snprintf(out.status, sizeof out.status, "waitpid failed: %s", ename(errno));
  } else if (WIFSIGNALED(status)) {
    snprintf(out.status, sizeof out.status, "died of signal %s", sigabbrev_np(WTERMSIG(status)));
  } else if (WEXITSTATUS(status) != 0) {
    snprintf(out.status, sizeof out.status, "exited with status %d", WEXITSTATUS(status));
  } else {
    out.clean = 1;
  }
  out.ms = now_ms() - t0;
  return out;
}

typedef struct lines {
  int n;
  char *v[MAX_LINES];
} lines;

static int is_kind(const char *l, const char *prefix) { return strncmp(l, prefix, strlen(prefix)) == 0; }

/* Splits a transcript (in place) into its compared lines and the others. */
static void split(transcript *t, lines *compared, lines *other) {
  compared->n = other->n = 0;
  char *save = NULL;
  t->text[t->len < sizeof t->text ? t->len : sizeof t->text - 1] = '\0';
  for (char *l = strtok_r(t->text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
    lines *to = is_kind(l, "SPEC ") || is_kind(l, "NOTE ") ? other : compared;
    if (to->n < MAX_LINES)
      to->v[to->n++] = l;
  }
}

static void print_runs(const char *name, const char *verdict, const lines *u, const lines *d, const lines *uo,
                       const lines *dO, const run *ur, const run *dr) {
  int width = 20;
  for (int i = 0; i < u->n; i++)
    if ((int)strlen(u->v[i]) > width)
      width = (int)strlen(u->v[i]);
  if (width > 90)
    width = 90;
  fprintf(stderr, "\n==== %s: %s (UDP %ld ms, DTLS %ld ms) ====\n", name, verdict, ur->ms, dr->ms);
  fprintf(stderr, "     %-*s | %s\n", width, "plain UDP: sendto/recvfrom", "attached: dtlssendto/dtlsrecvfrom");
  int n = u->n > d->n ? u->n : d->n;
  for (int i = 0; i < n; i++) {
    const char *a = i < u->n ? u->v[i] : "(none)", *b = i < d->n ? d->v[i] : "(none)";
    int same = i < u->n && i < d->n && strcmp(a, b) == 0;
    fprintf(stderr, "%s%3d %-*s | %s\n", same ? " " : "!", i + 1, width, a, same ? "=" : b);
  }
  if (!ur->clean)
    fprintf(stderr, "!    UDP run %s\n", ur->status);
  if (!dr->clean)
    fprintf(stderr, "!    DTLS run %s\n", dr->status);
  if (ur->t->truncated || dr->t->truncated)
    fprintf(stderr, "!    a transcript was truncated\n");
  for (int i = 0; i < uo->n; i++)
    fprintf(stderr, "     UDP  %s\n", uo->v[i]);
  for (int i = 0; i < dO->n; i++)
    fprintf(stderr, "%s    DTLS %s\n", is_kind(dO->v[i], "SPEC VIOLATED") ? "!" : " ", dO->v[i]);
}

/* Runs the scenario on plain UDP and on attached sockets and compares. */
static void run_both(const char *name, scenario_fn fn) {
  run u = run_mode(fn, 0), d = run_mode(fn, 1);
  static lines uc, dc, uo, dO; /* large: not on the stack */
  split(u.t, &uc, &uo);
  split(d.t, &dc, &dO);
  int differing = 0, first = -1, violated = 0;
  int n = uc.n > dc.n ? uc.n : dc.n;
  for (int i = 0; i < n; i++)
    if (i >= uc.n || i >= dc.n || strcmp(uc.v[i], dc.v[i]) != 0) {
      differing++;
      if (first < 0)
        first = i;
    }
  for (int i = 0; i < dO.n; i++)
    violated += is_kind(dO.v[i], "SPEC VIOLATED");
  int ok = differing == 0 && violated == 0 && u.clean && d.clean && !u.t->truncated && !d.t->truncated;
  if (!ok || getenv("DIFF_VERBOSE") != NULL)
    print_runs(name, ok ? "same" : "DIFFERENT", &uc, &dc, &uo, &dO, &u, &d);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %d of %d compared lines differ%s%s%s%s%s; %d spec violation(s)%s%s%s%s", name,
           differing, n, first >= 0 ? " (first: UDP '" : "", first >= 0 && first < uc.n ? uc.v[first] : "",
           first >= 0 ? "' vs DTLS '" : "", first >= 0 && first < dc.n ? dc.v[first] : "", first >= 0 ? "')" : "",
           violated, u.clean ? "" : "; UDP run ", u.status, d.clean ? "" : "; DTLS run ", d.status);
  munmap(u.t, sizeof *u.t);
  munmap(d.t, sizeof *d.t);
  ck_assert_msg(ok, "%s", msg);
}

/* One PKI for the whole case, made and removed outside the tests' own
 * processes (an unchecked fixture), so that it is removed even when tests
 * fail: a failed check ends its process before a checked teardown runs. */
static void setup(void) { ck_assert_int_eq(test_pki_make(&pki), 0); }
static void teardown(void) { test_pki_remove(&pki); }

/* One Check test per scenario, named after it. */
#define DIFFERENTIAL_TEST(name)                                                                          \
  START_TEST(name) { run_both(#name, scenario_##name); }                                                 \
  END_TEST

DIFFERENTIAL_TEST(errno_preserved_on_success)
DIFFERENTIAL_TEST(argument_checks)
DIFFERENTIAL_TEST(impossible_destinations)
DIFFERENTIAL_TEST(unreachable_network)
DIFFERENTIAL_TEST(icmp_refused_connected)
DIFFERENTIAL_TEST(shutdown_rd_wakes_receiver)
DIFFERENTIAL_TEST(sa_restart_signal)
DIFFERENTIAL_TEST(sndtimeo_bounds_handshake)
DIFFERENTIAL_TEST(msg_calls_ipv4)
DIFFERENTIAL_TEST(msg_calls_dual_stack)

int main(void) {
  Suite *s = suite_create("differential");
  TCase *tc = tcase_create("differential");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 2 * WATCHDOG_MS / 1000 + 20); /* two runs, each under the watchdog */
  tcase_add_test(tc, errno_preserved_on_success);
  tcase_add_test(tc, argument_checks);
  tcase_add_test(tc, impossible_destinations);
  tcase_add_test(tc, unreachable_network);
  tcase_add_test(tc, icmp_refused_connected);
  tcase_add_test(tc, shutdown_rd_wakes_receiver);
  tcase_add_test(tc, sa_restart_signal);
  tcase_add_test(tc, sndtimeo_bounds_handshake);
  tcase_add_test(tc, msg_calls_ipv4);
  tcase_add_test(tc, msg_calls_dual_stack);
  suite_add_tcase(s, tc);
  return run_suite(s, CK_FORK_GETENV);
}
