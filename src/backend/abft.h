/* Algorithm-based fault tolerance for GEMMs: a backend wrapper that checks
 * every matmul (forward and both backward products) against checksums of its
 * inputs. For out = x w^T: the sums of each row of out over 16-column blocks
 * must equal x times the matching sums of w's rows, and the sums of each column
 * over 16-row blocks must equal the matching sums of x's rows times w^T, within
 * a tolerance scaled by the same sums taken over absolute values. A mismatch is counted;
 * the caller decides what to do (the trainer recomputes the step). */
#ifndef KEEL_BACKEND_ABFT_H
#define KEEL_BACKEND_ABFT_H

#include <stdint.h>

#include "backend.h"

typedef struct keel_abft_stats {
  long checks;      /* GEMMs checked */
  long detections;  /* GEMMs whose checksums did not match */
  double seconds;   /* time spent checking */
} keel_abft_stats;

/* A backend identical to inner whose GEMMs are checked. One wrapper per process. */
const keel_backend *keel_backend_abft(const keel_backend *inner);
keel_abft_stats *keel_abft_get_stats(void);
/* Tolerance relative to the absolute-value checksums, for a reduction of 16 terms;
 * it grows with the square root of the reduction length (default 2.5e-7). */
void keel_abft_set_tolerance(double tol);
/* The next forward GEMM gets one bit flipped in one output (chosen by seed) before it is
 * checked: fault injection. Returns nothing; *changed receives |new - old| / |old| afterwards. */
void keel_abft_arm_flip(uint64_t seed, double *changed);

#endif
