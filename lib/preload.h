/* The preload library (libdtlsplex-preload.so, which dtlsplex-run puts in
 * LD_PRELOAD): DTLS on the UDP sockets of a program that was never ported.
 * preload.c takes the program's socket calls, preload_wait.c its waits,
 * preload_env.c builds the one configuration from the environment that
 * dtlsplex-run sets. */
#ifndef DTLSPLEX_PRELOAD_H
#define DTLSPLEX_PRELOAD_H

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "dtlsplex.h"
#include "sys.h"

/* The environment dtlsplex-run sets (its options, one for one). */
#define DP_RUN_ENV_CERT "DTLSPLEX_RUN_CERT"
#define DP_RUN_ENV_KEY "DTLSPLEX_RUN_KEY"
#define DP_RUN_ENV_CA "DTLSPLEX_RUN_CA"
#define DP_RUN_ENV_PSK "DTLSPLEX_RUN_PSK"       /* IDENTITY:HEXKEY */
#define DP_RUN_ENV_VERIFY "DTLSPLEX_RUN_VERIFY" /* 1: require client certificates */
#define DP_RUN_ENV_INSECURE "DTLSPLEX_RUN_INSECURE"
#define DP_RUN_ENV_MTU "DTLSPLEX_RUN_MTU"
#define DP_RUN_ENV_NAME "DTLSPLEX_RUN_NAME"   /* the name servers' certificates must carry */
#define DP_RUN_ENV_PORTS "DTLSPLEX_RUN_PORTS" /* comma-separated; unset: every UDP socket */
#define DP_RUN_PORTS_MAX 64

typedef struct dp_run_settings {
  dtlsplex_config *cfg;
  const char *name;
  uint16_t ports[DP_RUN_PORTS_MAX]; /* host order */
  int n_ports;                      /* 0: every port */
} dp_run_settings;

/* Reads the environment into *out: 0, or -1 with a message in why.  The
 * configuration is the caller's. */
int dp_run_settings_from_env(dp_run_settings *out, char *why, size_t why_len);
/* Whether port (host order) is one the settings select. */
int dp_run_port_selected(const dp_run_settings *s, uint16_t port);

/* Whether calls on fd go through DTLS: 1 (attached, now if need be), 0 (not
 * a selected UDP socket: the C library's call), or -1 with errno (selected,
 * but it could not be attached: the call must fail, never go out in the
 * clear).  dest: where the call sends, if it does. */
int dp_preload_claim(int fd, const struct sockaddr *dest);

/* glibc's _FORTIFY_SOURCE entry points, which call its internal functions
 * directly: taken too (glibc's headers declare them only when fortifying). */
void __chk_fail(void) __attribute__((noreturn));
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buf_len, int flags, struct sockaddr *src,
                       socklen_t *src_len);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buf_len, int flags);
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buf_len);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t fds_len);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask, size_t fds_len);

/* Whether fd is a UDP socket not claimed (yet). */
int dp_preload_is_udp(int fd);
/* Runs the claimed fd's timers and reads its socket; 1 if decrypted data
 * now waits for the program.  errno is left alone. */
int dp_preload_readable(int fd);
/* The epoll side (preload_wait.c): forgets what it keeps for a number about
 * to be closed or replaced, and turns a socket's registrations made before
 * it was attached into registrations of its event descriptor. */
void dp_preload_wait_forget(int fd);
void dp_preload_wait_attached(int fd);

#endif
