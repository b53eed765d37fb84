/* A monotonic clock in seconds, for timing steps, saves and benchmarks. */
#ifndef KEEL_CORE_CLOCK_H
#define KEEL_CORE_CLOCK_H

double keel_now(void);

#endif
