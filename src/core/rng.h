/* Counter-based random numbers (Philox-4x32-10). Every draw is a pure function
 * of (key, counter), so a resumed run replays exactly: derive the key from
 * (seed, step, rank, purpose) with keel_rng_key and index draws by counter. */
#ifndef KEEL_CORE_RNG_H
#define KEEL_CORE_RNG_H

#include <stdint.h>

typedef struct keel_rng {
  uint64_t key;     /* fixed for a stream */
  uint64_t counter; /* advanced by every draw */
} keel_rng;

/* Purposes keep streams of one seed apart. */
enum keel_rng_purpose {
  KEEL_RNG_INIT = 1,
  KEEL_RNG_DATA = 2,
  KEEL_RNG_DROPOUT = 3,
  KEEL_RNG_SAMPLE = 4,
  KEEL_RNG_SPLIT = 5,
};

uint64_t keel_rng_key(uint64_t seed, uint64_t step, uint32_t rank, uint32_t purpose);
/* The four 32-bit Philox outputs for (key, counter). */
void keel_philox(uint64_t key, uint64_t counter, uint32_t out[4]);

void keel_rng_init(keel_rng *r, uint64_t key);
uint64_t keel_rng_u64(keel_rng *r);
double keel_rng_uniform(keel_rng *r); /* [0, 1) with 53 bits */
uint64_t keel_rng_below(keel_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
float keel_rng_normal(keel_rng *r);                /* standard normal */
/* Two independent standard normals from one draw (Box-Muller, both branches): a quarter of
 * keel_rng_normal's Philox rounds and half its logarithms per value. */
void keel_rng_normal2(keel_rng *r, float out[2]);

#endif
