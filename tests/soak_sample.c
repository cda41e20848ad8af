/* The soak's samples: the server process as /proc shows it (resident
 * memory, open descriptors, CPU time), its dtlsplex_stats and the load's
 * counts, one CSV row each. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "soak_sample.h"

/* VmRSS from /proc/PID/status, in KiB; -1 if unreadable. */
static long rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long kib = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  if (f != NULL)
    fclose(f);
  return kib;
}

/* Entries of /proc/PID/fd; -1 if unreadable. */
static long open_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* utime + stime from /proc/PID/stat, in clock ticks; -1 if unreadable.
 * The command name (field 2) may hold spaces: fields count from its ')'. */
static long cpu_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f != NULL)
    fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  unsigned long utime, stime;
  /* After ')': state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
   * cminflt, majflt, cmajflt, then utime (field 14) and stime (15). */
  if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
    return -1;
  return (long)(utime + stime);
}

int soak_take_sample(soak_server *server, long t_ms, const soak_sample *before, soak_sample *out) {
  *out = (soak_sample){.t_ms = t_ms,
                       .rss_kib = rss_kib(server->pid),
                       .fds = open_fds(server->pid),
                       .cpu_ticks = cpu_ticks(server->pid),
                       .echoes = atomic_load(&soak_counts_now.echoes),
                       .resent = atomic_load(&soak_counts_now.resent),
                       .hellos = atomic_load(&soak_counts_now.hellos),
                       .garbage = atomic_load(&soak_counts_now.garbage)};
  for (int i = 0; i < SOAK_STEADY; i++)
    out->steady_echoes[i] = atomic_load(&soak_counts_now.steady_echoes[i]);
  if (before != NULL && t_ms > before->t_ms)
    out->cpu_percent = 100.0 * (double)(out->cpu_ticks - before->cpu_ticks) / (double)sysconf(_SC_CLK_TCK) /
                       ((double)(t_ms - before->t_ms) / 1000.0);
  if (out->rss_kib < 0 || out->fds < 0 || out->cpu_ticks < 0) {
    soak_fail("the server (pid %d) cannot be read in /proc", (int)server->pid);
    return -1;
  }
  if (soak_server_stats(server, &out->stats) < 0) {
    soak_fail("the server did not answer a request for its statistics within 5 s");
    return -1;
  }
  return 0;
}

void soak_csv_header(FILE *csv) {
  fprintf(csv, "time_s,rss_kib,fds,peers,cpu_percent,handshakes,resumed,expired,echoes,resent,hellos,garbage,"
               "cookies_sent\n");
  fflush(csv);
}

void soak_csv_row(FILE *csv, const soak_sample *s) {
  fprintf(csv, "%ld,%ld,%ld,%llu,%.1f,%llu,%llu,%llu,%ld,%ld,%ld,%ld,%llu\n", s->t_ms / 1000, s->rss_kib, s->fds,
          (unsigned long long)s->stats.peers, s->cpu_percent, (unsigned long long)s->stats.handshakes_ok,
          (unsigned long long)s->stats.handshakes_resumed, (unsigned long long)s->stats.expired, s->echoes,
          s->resent, s->hellos, s->garbage, (unsigned long long)s->stats.cookies_sent);
  fflush(csv); /* a run cut short still leaves its rows */
}
