/* The simulated clock: libssl reads its DTLS timers from gettimeofday(), and
 * sim_clock.c defines gettimeofday for the program that links it, so that
 * libssl and the core both run on sim_now. */
#ifndef TESTS_SIM_CLOCK_H
#define TESTS_SIM_CLOCK_H

#include <stdint.h>

extern uint64_t sim_now; /* ms, wall-clock-like */

#endif
