/* The soak's background: SOAK_HELLOS_PER_S cookie-less ClientHellos and
 * SOAK_GARBAGE_PER_S random datagrams, from addresses all over 127/8 (all
 * local on Linux: binding any of them needs no setup).  A ClientHello is a
 * real client's first one with a fresh random field each time, so every one
 * costs the server a cookie; none may cost it a session. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "soak.h"

#define SOCKETS 16           /* senders at once */
#define SENDS_PER_ADDRESS 50 /* then the sender moves to another address */
#define TICK_MS 10
/* The ClientHello's random: after the record header (13 bytes), the
 * handshake header (12) and client_version (2). */
#define RANDOM_AT 27
#define RANDOM_LEN 32

static struct sockaddr_in server;
static unsigned char hello[DTLSPLEX_MTU_MAX];
static size_t hello_len;
static int senders[SOCKETS];
static pthread_t thread;
static int started;
static uint64_t rng;

static uint64_t next_random(void) { /* xorshift64 */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void fill_random(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)next_random();
}

/* A client's first ClientHello, caught on a plain socket in the server's
 * stead.  0, or -1 (recorded). */
static int capture_hello(void) {
  struct sockaddr_in trap_addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof trap_addr;
  int trap = socket(AF_INET, SOCK_DGRAM, 0);
  int client = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  dtlsplex_config *cfg = dtlsplex_config_new();
  int ok = trap >= 0 && client >= 0 && cfg != NULL && bind(trap, (struct sockaddr *)&trap_addr, len) == 0 &&
           getsockname(trap, (struct sockaddr *)&trap_addr, &len) == 0 && dtlsplex_attach(client, cfg) == 0;
  if (ok) {
    /* Non-blocking: the handshake starts, the call does not wait for it. */
    dtlssendto(client, "x", 1, 0, (struct sockaddr *)&trap_addr, sizeof trap_addr);
    struct pollfd p = {.fd = trap, .events = POLLIN};
    ssize_t n = poll(&p, 1, 5000) == 1 ? recv(trap, hello, sizeof hello, 0) : -1;
    ok = n > RANDOM_AT + RANDOM_LEN && hello[0] == 22 /* handshake */ && hello[13] == 1 /* ClientHello */;
    hello_len = ok ? (size_t)n : 0;
  }
  dtlsplex_config_free(cfg);
  if (client >= 0)
    close(client); /* detaches */
  if (trap >= 0)
    close(trap);
  if (!ok)
    soak_fail("flood: no ClientHello to copy");
  return ok ? 0 : -1;
}

/* Replaces sender i by one on another 127/8 address (never 127.0.0.1,
 * where the clients are). */
static int move_sender(int i) {
  if (senders[i] >= 0)
    close(senders[i]);
  uint32_t host;
  do
    host = 0x7f000000u | (uint32_t)(next_random() & 0xffffff);
  while ((host & 0xff) == 0 || (host & 0xff) == 0xff || host == INADDR_LOOPBACK);
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host)};
  senders[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (senders[i] < 0 || bind(senders[i], (struct sockaddr *)&from, sizeof from) < 0) {
    soak_fail("flood: a socket on %s: %s", inet_ntoa(from.sin_addr), strerror(errno));
    return -1;
  }
  return 0;
}

/* Random bytes; half of them begin as a DTLS 1.2 record would (handshake
 * or application data, epoch 0 or 1), to reach past the first check. */
static size_t make_garbage(unsigned char *p) {
  size_t len = 1 + next_random() % 1400;
  fill_random(p, len);
  if (len >= 13 && (p[0] & 1)) {
    p[0] = (p[1] & 1) ? 22 : 23;
    p[1] = 0xfe;
    p[2] = 0xfd;
    p[3] = 0;
    p[4] &= 1;
  }
  return len;
}

/* Sends datagram number n (of hellos and garbage together); 0 or -1. */
static int send_one(long n) {
  static unsigned char garbage[1400];
  int i = (int)(n % SOCKETS);
  if (n % (SOCKETS * SENDS_PER_ADDRESS) < SOCKETS && move_sender(i) < 0)
    return -1;
  const unsigned char *data = hello;
  size_t len = hello_len;
  atomic_long *count = &soak_counts_now.hellos;
  if (next_random() % (SOAK_HELLOS_PER_S + SOAK_GARBAGE_PER_S) < SOAK_GARBAGE_PER_S) {
    len = make_garbage(garbage);
    data = garbage;
    count = &soak_counts_now.garbage;
  } else {
    fill_random(hello + RANDOM_AT, RANDOM_LEN);
  }
  /* EAGAIN or ENOBUFS: the kernel dropped it, as a real flood's would be. */
  if (sendto(senders[i], data, len, 0, (struct sockaddr *)&server, sizeof server) == (ssize_t)len)
    atomic_fetch_add(count, 1);
  return 0;
}

/* Reads the HelloVerifyRequests that came back, counting them. */
static void read_answers(void) {
  unsigned char buf[512];
  for (int i = 0; i < SOCKETS; i++)
    while (recv(senders[i], buf, sizeof buf, MSG_DONTWAIT) >= 0)
      atomic_fetch_add(&soak_counts_now.flood_answers, 1);
}

static void *flood(void *arg) {
  (void)arg;
  const long per_s = SOAK_HELLOS_PER_S + SOAK_GARBAGE_PER_S;
  long start = soak_now_ms(), sent = 0;
  while (!atomic_load(&soak_stop)) {
    /* On schedule, but after a stall no burst of more than a tick's worth
     * or two: the rate is the point, not the total. */
    long due = (soak_now_ms() - start) * per_s / 1000;
    if (due - sent > 2 * per_s * TICK_MS / 1000)
      sent = due - 2 * per_s * TICK_MS / 1000;
    for (; sent < due; sent++)
      if (send_one(sent) < 0)
        return NULL;
    read_answers();
    usleep(TICK_MS * 1000);
  }
  return NULL;
}

int soak_flood_start(const struct sockaddr_in *to) {
  server = *to;
  rng = (uint64_t)soak_now_ms() | 1;
  for (int i = 0; i < SOCKETS; i++)
    senders[i] = -1;
  if (capture_hello() < 0)
    return -1;
  if (pthread_create(&thread, NULL, flood, NULL) != 0) {
    soak_fail("pthread_create: flood");
    return -1;
  }
  started = 1;
  return 0;
}

void soak_flood_stop(void) {
  if (started)
    pthread_join(thread, NULL);
  for (int i = 0; i < SOCKETS; i++)
    if (senders[i] >= 0)
      close(senders[i]);
}
