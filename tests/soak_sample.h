/* One sample of the soak's server and load, and its CSV row. */
#ifndef TESTS_SOAK_SAMPLE_H
#define TESTS_SOAK_SAMPLE_H

#include <stdio.h>

#include "soak.h"

typedef struct soak_sample {
  long t_ms;          /* since the load started */
  long rss_kib, fds;
  long cpu_ticks;     /* utime + stime so far */
  double cpu_percent; /* of one core, since the sample before (0 for the first) */
  struct dtlsplex_stats stats;
  long echoes, resent, hellos, garbage;
  long steady_echoes[SOAK_STEADY];
} soak_sample;

/* Samples the server; before (NULL for the first) gives the CPU interval.
 * 0, or -1 (recorded) if the server cannot be read or does not answer. */
int soak_take_sample(soak_server *server, long t_ms, const soak_sample *before, soak_sample *out);

void soak_csv_header(FILE *csv);
void soak_csv_row(FILE *csv, const soak_sample *s);

#endif
