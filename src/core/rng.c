/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"). */
#include "rng.h"

#include <math.h>

#include "checksum.h"

uint64_t keel_rng_key(uint64_t seed, uint64_t step, uint32_t rank, uint32_t purpose) {
  uint64_t words[3] = {seed, step, ((uint64_t)rank << 32) | purpose};
  return keel_xxh3(words, sizeof words);
}

void keel_philox(uint64_t key, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

void keel_rng_init(keel_rng *r, uint64_t key) {
  r->key = key;
  r->counter = 0;
}

uint64_t keel_rng_u64(keel_rng *r) {
  uint32_t o[4];
  keel_philox(r->key, r->counter++, o);
  return ((uint64_t)o[0] << 32) | o[1];
}

static double u53(uint64_t x) { return (x >> 11) * 0x1.0p-53; } /* [0, 1) from the top 53 bits */

double keel_rng_uniform(keel_rng *r) { return u53(keel_rng_u64(r)); }

uint64_t keel_rng_below(keel_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
  uint64_t x;
  do x = keel_rng_u64(r);
  while (x >= limit);
  return x % n;
}

float keel_rng_normal(keel_rng *r) {
  double u1 = keel_rng_uniform(r), u2 = keel_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void keel_rng_normal2(keel_rng *r, float out[2]) {
  uint32_t o[4];
  keel_philox(r->key, r->counter++, o);
  double u1 = u53(((uint64_t)o[0] << 32) | o[1]), u2 = u53(((uint64_t)o[2] << 32) | o[3]);
  if (u1 < 1e-300) u1 = 1e-300;
  double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
  out[0] = (float)(rad * cos(th));
  out[1] = (float)(rad * sin(th));
}
