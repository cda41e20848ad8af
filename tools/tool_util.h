/* What dtlscat and dtlsproxy both need besides their options: messages
 * that end the program, numbers from the command line, addresses as text. */
#ifndef TOOL_UTIL_H
#define TOOL_UTIL_H

#include <stddef.h>
#include <sys/socket.h>

/* The program's name, for messages: "dtlscat", "dtlsproxy".  Set by main. */
extern const char *tool_name;

/* A failure at run time: "NAME: message" and exit status 1. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Options that cannot work: the same, exit status 2 (as a usage error). */
void bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* s as a number from min to max, or bad_usage naming the option `what`. */
long parse_number(const char *s, long min, long max, const char *what);

/* "1.2.3.4:80" or "[::1]:80"; an IPv4-mapped address as IPv4. */
void format_addr(const struct sockaddr *sa, char *buf, size_t len);

/* "ADDR:PORT connected" (or closed, failed: REASON, expired, replaced) on
 * stderr: a DTLSPLEX_EVENT_* as the tools report it with -v. */
void report_event(const struct sockaddr *peer, int event, int error);

/* Zeroes a secret in a way the compiler keeps. */
void wipe(void *p, size_t n);

#endif
