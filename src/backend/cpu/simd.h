/* What the fast CPU kernels share: a 16-float vector type, the run-time
 * dispatch of each kernel to AVX-512, AVX2+FMA or portable code, and e^x on
 * 16 floats. */
#ifndef KEEL_BACKEND_CPU_SIMD_H
#define KEEL_BACKEND_CPU_SIMD_H

#include "../../core/cpu.h"

typedef float v16 __attribute__((vector_size(64), aligned(4)));
#ifdef __clang__ /* clang contracts a*b+c into FMA by default */
#define KEEL_CONTRACT
#else
#define KEEL_CONTRACT optimize("fp-contract=fast")
#endif
/* Compiled three times, the copy chosen at run time by the CPU: for kernels with few live
 * vectors, which 16-float vectors serve on every ISA. */
#define KERNEL __attribute__((KEEL_CLONES)) __attribute__((KEEL_CONTRACT))
/* One ISA each, for kernels written per vector width and chosen by keel_cpu_isa(): those
 * whose many accumulators fit AVX-512's 32 registers as 16-float vectors but would spill
 * from AVX2's 16 (a GEMM tile compiled for AVX2 from 16-float code ran at 3 GFLOP/s). */
#define KERNEL512 __attribute__((target("avx512f"), KEEL_CONTRACT))
#define KERNEL256 __attribute__((target("avx2,fma"), KEEL_CONTRACT))
#define KERNEL128 __attribute__((KEEL_CONTRACT))

typedef float v8 __attribute__((vector_size(32), aligned(4)));

/* The sum of an AVX2 register's 8 lanes, for the AVX2 kernels (inlined into them). */
#include <immintrin.h>
static inline __attribute__((target("avx2"))) float keel_hsum8(__m256 v) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

typedef int vi16 __attribute__((vector_size(64), aligned(4)));
/* Per-lane selects, written lane by lane: GCC vectorises these loops on every ISA, where a
 * comparison of two 16-float vectors (a > b, a mask) became scalar compares and moves in the
 * AVX2 and portable copies (2 x 8 or 4 x 4 lanes). Inlined into each KERNEL clone. */
static inline __attribute__((always_inline)) void keel_max16(v16 *m, const v16 *v) { /* m = max(m, v) */
  for (int k = 0; k < 16; k++) (*m)[k] = (*v)[k] > (*m)[k] ? (*v)[k] : (*m)[k];
}
static inline __attribute__((always_inline)) void keel_keep16(v16 *x, int n, float other) { /* lanes >= n = other */
  for (int k = 0; k < 16; k++) (*x)[k] = k < n ? (*x)[k] : other;
}

/* The sum of 16 lanes by halving (lane i + lane i+8, then +4, +2, +1): four shuffles and
 * adds, not a chain of 16 dependent adds. Inlined into each KERNEL clone. */
static inline float keel_hsum16(const v16 *v) {
  v16 t = *v + __builtin_shufflevector(*v, *v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  t += __builtin_shufflevector(t, t, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  t += __builtin_shufflevector(t, t, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  t += __builtin_shufflevector(t, t, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return t[0];
}

/* *x = e^*x on 16 floats within 2 ulp (Cephes' polynomial on x - n ln 2,
 * |.| <= ln 2 / 2, times 2^n). x is clamped to [-87.3, 88.3], so the result
 * never overflows to inf nor flushes to 0 (e^-87.3 ~ 1e-38); NaN stays NaN.
 * Inlined into each KERNEL clone (hence a pointer, not a vector argument). */
static inline __attribute__((always_inline)) void keel_exp16(v16 *px) {
  v16 x = *px;
  for (int k = 0; k < 16; k++) /* lane by lane, as keel_max16 */
    x[k] = x[k] < -87.3f ? -87.3f : x[k] > 88.3f ? 88.3f : x[k];
  v16 t = x * 1.44269504088896341f + 0x1.8p23f; /* round(x / ln 2) in the low mantissa bits */
  v16 n = t - 0x1.8p23f;
  v16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  v16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  vi16 e = ((vi16)t - 0x4B400000 + 127) << 23; /* 2^n from n's bits */
  *px = p * (v16)e;
}

#endif
