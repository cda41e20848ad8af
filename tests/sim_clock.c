#include "sim_clock.h"

#include <sys/time.h>

uint64_t sim_now = 1800000000000ULL;

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  (void)tz;
  tv->tv_sec = (time_t)(sim_now / 1000);
  tv->tv_usec = (suseconds_t)(sim_now % 1000) * 1000;
  return 0;
}
