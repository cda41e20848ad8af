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

/* The C library's definitions of what preload.c and preload_wait.c define. */
typedef struct dp_libc {
  ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
  ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
  ssize_t (*sendmsg)(int, const struct msghdr *, int);
  ssize_t (*recvmsg)(int, struct msghdr *, int);
  ssize_t (*send)(int, const void *, size_t, int);
  ssize_t (*recv)(int, void *, size_t, int);
  ssize_t (*read)(int, void *, size_t);
  ssize_t (*write)(int, const void *, size_t);
  ssize_t (*readv)(int, const struct iovec *, int);
  ssize_t (*writev)(int, const struct iovec *, int);
  int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
  int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
  int (*bind)(int, const struct sockaddr *, socklen_t);
  int (*poll)(struct pollfd *, nfds_t, int);
  int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
  int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
  int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
  int (*epoll_ctl)(int, int, int, struct epoll_event *);
  int (*epoll_wait)(int, struct epoll_event *, int, int);
  int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
} dp_libc;

extern dp_libc dp_next;

/* Whether calls on fd go through DTLS: 1 (attached, now if need be), 0 (not
 * a selected UDP socket: the C library's call), or -1 with errno (selected,
 * but it could not be attached: the call must fail, never go out in the
 * clear).  dest: where the call sends, if it does. */
int dp_preload_claim(int fd, const struct sockaddr *dest);

/* The library's event descriptor for a claimed fd (dtlsplex_event_fd). */
int dp_preload_event_fd(int fd);
/* Runs the claimed fd's timers and reads its socket; 1 if decrypted data
 * now waits for the program. */
int dp_preload_readable(int fd);
/* The epoll side: preload_wait.c forgets what it keeps for a number. */
void dp_preload_wait_forget(int fd);

#endif
