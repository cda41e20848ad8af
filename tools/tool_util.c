/* See tool_util.h. */
#include "tool_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dtlsplex.h>

const char *tool_name = "dtlsplex";

static void vdie(int status, const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(int status, const char *fmt, va_list ap) {
  fprintf(stderr, "%s: ", tool_name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(status);
}

void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(1, fmt, ap);
}

void bad_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(2, fmt, ap);
}

long parse_number(const char *s, long min, long max, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
    bad_usage("%s: '%s' is not a number from %ld to %ld", what, s, min, max);
  return v;
}

void format_addr(const struct sockaddr *sa, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    return;
  }
  const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
  int mapped = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr); /* a dual-stack socket's IPv4 peer */
  if (mapped)
    inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
  else
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  snprintf(buf, len, mapped ? "%s:%u" : "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
}

void report_event(const struct sockaddr *peer, int event, int error) {
  static const char *const names[] = {"?", "connected", "closed", "failed", "expired", "replaced"};
  char name[64];
  format_addr(peer, name, sizeof name);
  const char *what = event >= DTLSPLEX_EVENT_CONNECTED && event <= DTLSPLEX_EVENT_REPLACED ? names[event] : names[0];
  if (error != 0)
    fprintf(stderr, "%s %s: %s\n", name, what, strerror(error));
  else
    fprintf(stderr, "%s %s\n", name, what);
}

void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n-- > 0)
    *v++ = 0;
}
