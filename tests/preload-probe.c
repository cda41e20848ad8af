/* Run under dtlsplex-run by tests/preload.sh, with --ports naming SINK and
 * BOUND: the call shapes that once let plaintext out of a selected socket,
 * or forged plaintext in, and the semantics of the waits.  Every datagram
 * these calls send is marked "PLAINTEXT-n": the sink, a plain UDP socket
 * outside dtlsplex-run, must never see one.  Prints one "ok"/"not ok" line
 * per check; exits 1 if any failed.  Built with _FORTIFY_SOURCE, so that
 * its recvfrom is glibc's checked one. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int failed;

static void check(int ok, const char *what) {
  printf("%s - %s\n", ok ? "ok" : "not ok", what);
  failed |= !ok;
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  return a;
}

/* A datagram from outside the library (a raw system call): forged plaintext. */
static void forge(const struct sockaddr_in *to) {
  int c = (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
  syscall(SYS_sendto, c, "FORGED", 6, 0, to, sizeof *to);
  syscall(SYS_close, c);
  usleep(100000);
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4)
    return 2;
  struct sockaddr_in sink = loopback(atoi(argv[1])), other = loopback(atoi(argv[2])), bound = loopback(atoi(argv[3]));
  size_t len = (size_t)atoi("64"); /* not a constant: recvfrom below is __recvfrom_chk */

  /* A number the program used while it was not open, then a UDP socket on it. */
  int stale = open("/dev/null", O_RDONLY);
  close(stale);
  check(write(stale, "x", 1) < 0 && errno == EBADF, "write on a closed number fails with EBADF");
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  check(s == stale, "the next socket takes that number");
  check(sendto(s, "PLAINTEXT-1", 11, MSG_DONTWAIT, (struct sockaddr *)&sink, sizeof sink) == 11,
        "sendto on it is taken (queued for the handshake)");

  /* sendmmsg whose second datagram goes to a selected port. */
  int m = socket(AF_INET, SOCK_DGRAM, 0);
  fcntl(m, F_SETFL, O_NONBLOCK);
  struct iovec iov[2] = {{"PLAINTEXT-2", 11}, {"PLAINTEXT-3", 11}};
  struct mmsghdr msgs[2];
  memset(msgs, 0, sizeof msgs);
  msgs[0].msg_hdr = (struct msghdr){.msg_name = &other, .msg_namelen = sizeof other, .msg_iov = &iov[0], .msg_iovlen = 1};
  msgs[1].msg_hdr = (struct msghdr){.msg_name = &sink, .msg_namelen = sizeof sink, .msg_iov = &iov[1], .msg_iovlen = 1};
  check(sendmmsg(m, msgs, 2, 0) == 2, "sendmmsg to an unselected and a selected port: both taken");

  /* A selected socket dup'ed far above the first 1024 numbers. */
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  if (nofile.rlim_cur < 4096 && nofile.rlim_max >= 4096) {
    nofile.rlim_cur = 4096;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  int low = socket(AF_INET, SOCK_DGRAM, 0);
  int high = fcntl(low, F_DUPFD, 3000);
  close(low);
  check(high >= 3000 && sendto(high, "PLAINTEXT-4", 11, MSG_DONTWAIT, (struct sockaddr *)&sink, sizeof sink) == 11,
        "a socket at number 3000 sends through DTLS");
  struct sockaddr_in high_addr;
  socklen_t high_len = sizeof high_addr;
  getsockname(high, (struct sockaddr *)&high_addr, &high_len);
  forge(&high_addr);
  char buf[64];
  errno = 0;
  check(recv(high, buf, len, MSG_DONTWAIT) < 0 && errno == EAGAIN, "it does not hand forged plaintext to the program");

  /* A server socket on a selected port: forged plaintext never read, with
   * the checked recvfrom or after a wait that woke for it. */
  int srv = socket(AF_INET, SOCK_DGRAM, 0);
  check(bind(srv, (struct sockaddr *)&bound, sizeof bound) == 0, "bind to a selected port");
  forge(&bound);
  errno = 0;
  check(recvfrom(srv, buf, len, MSG_DONTWAIT, NULL, NULL) < 0 && errno == EAGAIN,
        "the checked recvfrom (_FORTIFY_SOURCE) drops forged plaintext");
  forge(&bound);
  struct pollfd pfd = {.fd = srv, .events = POLLIN};
  check(poll(&pfd, 1, 300) == 0, "poll does not wake for forged plaintext");

  /* epoll and poll asked for nothing on a socket with datagrams waiting: no busy loop. */
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
  check(epoll_ctl(ep, EPOLL_CTL_ADD, srv, &ev) == 0, "epoll_ctl ADD");
  ev.events = 0;
  check(epoll_ctl(ep, EPOLL_CTL_MOD, srv, &ev) == 0, "epoll_ctl MOD to no events");
  forge(&bound);
  double before = cpu_s();
  int n = epoll_wait(ep, &ev, 1, 500);
  check(n == 0 && cpu_s() - before < 0.2, "epoll_wait with no events asked for sleeps");
  pfd.events = 0;
  before = cpu_s();
  check(poll(&pfd, 1, 500) == 0 && cpu_s() - before < 0.2, "poll with no events asked for sleeps");
  check(epoll_ctl(ep, EPOLL_CTL_DEL, srv, NULL) == 0, "epoll_ctl DEL");

  /* Waits and errno as the C library's. */
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(stale + 100, &rd);
  struct timeval tv = {0, 100000};
  errno = 0;
  check(select(stale + 101, &rd, NULL, NULL, &tv) < 0 && errno == EBADF, "select on a closed descriptor: EBADF");
  int p[2];
  check(pipe(p) == 0, "pipe");
  errno = 0;
  check(write(p[1], "x", 1) == 1 && errno == 0, "a successful write to a pipe leaves errno alone");
  errno = 0;
  struct pollfd pp = {.fd = p[0], .events = POLLIN};
  check(poll(&pp, 1, 0) == 1 && errno == 0, "a successful poll of a pipe leaves errno alone");
  return failed;
}
