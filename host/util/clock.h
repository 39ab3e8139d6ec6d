/*
** util/clock.h: the monotonic wall clock, in seconds (for durations: timeouts, progress rates, the
** profiler's CPU timings, speedrun.clock). Not the scoring clock: the harness keeps its own.
*/
#ifndef SR_CLOCK_H
#define SR_CLOCK_H

#include <time.h>  /* defines: clock_gettime, CLOCK_MONOTONIC */

static inline double sr_monotonic_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
