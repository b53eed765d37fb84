/* Typed weights on the fast CPU backend: each weight type has a dequantiser
 * per ISA (AVX-512, AVX2 with F16C, and the x86-64 baseline's SSE2 for the
 * portable kernels), and the kernels built on them are chosen by
 * keel_cpu_isa(); decoding (few rows) reads every weight once and multiplies
 * on the fly, many rows go through the packed GEMM, which dequantises while
 * packing. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cpu.h"
#include "../../core/error.h"

#include "gemm.h"
#include "simd.h"

typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

static inline void deq_f32(v16 *o, const void *p) { *o = *(const v16 *)p; }

/* The narrow integers widened to 32-bit lanes with SSE2's unpacks (x86-64's baseline: the
 * portable kernels' target): GCC 12 turns __builtin_convertvector on these into one lane at a
 * time, which ran portable int8 decoding at a tenth of the memory bandwidth. */
static inline void widen_u8(u32x16 *o, const void *p) {
  __m128i b = _mm_loadu_si128(p), z = _mm_setzero_si128();
  __m128i lo = _mm_unpacklo_epi8(b, z), hi = _mm_unpackhi_epi8(b, z);
  __m128i q[4] = {_mm_unpacklo_epi16(lo, z), _mm_unpackhi_epi16(lo, z), _mm_unpacklo_epi16(hi, z),
                  _mm_unpackhi_epi16(hi, z)};
  memcpy(o, q, sizeof q);
}

/* 16 values into four 4-float vectors (the portable rows kernels' form), or into one 16-float
 * vector. */
typedef float f4 __attribute__((vector_size(16), aligned(4)));
static inline void deq4_bf16(f4 v[4], const void *p) { /* each u16 into the high half of its lane */
  __m128i z = _mm_setzero_si128(), a = _mm_loadu_si128(p), b = _mm_loadu_si128((const __m128i *)p + 1);
  v[0] = (f4)_mm_unpacklo_epi16(z, a), v[1] = (f4)_mm_unpackhi_epi16(z, a);
  v[2] = (f4)_mm_unpacklo_epi16(z, b), v[3] = (f4)_mm_unpackhi_epi16(z, b);
}
static inline void deq4_int8(f4 v[4], const void *p) { /* each byte twice: >> 24 sign-extends */
  __m128i b = _mm_loadu_si128(p), lo = _mm_unpacklo_epi8(b, b), hi = _mm_unpackhi_epi8(b, b);
  v[0] = (f4)_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(lo, lo), 24));
  v[1] = (f4)_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpackhi_epi16(lo, lo), 24));
  v[2] = (f4)_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(hi, hi), 24));
  v[3] = (f4)_mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpackhi_epi16(hi, hi), 24));
}
static inline void deq_bf16(v16 *o, const void *p) {
  f4 v[4];
  deq4_bf16(v, p);
  memcpy(o, v, sizeof v);
}
static inline void deq_int8(v16 *o, const void *p) {
  f4 v[4];
  deq4_int8(v, p);
  memcpy(o, v, sizeof v);
}

/* e4m3fn without a table, as the value / 256 (FP8_UNIT, folded into the block scale, as the
 * AVX-512 form below gets it for free): normal codes become float bits directly; codes with a
 * zero exponent are multiples of 2^-17. */
#define FP8_UNIT 256.0f
static inline void deq_fp8(v16 *o, const void *p) {
  u32x16 b;
  widen_u8(&b, p);
  u32x16 e = (b >> 3) & 15, man = b & 7, sign = (b >> 7) << 31;
  u32x16 normal = sign | (e + 112) << 23 | man << 20;
  v16 sub = __builtin_convertvector((i32x16)man, v16) * 0x1p-17f;
  u32x16 subbits = (u32x16)sub | sign;
  u32x16 isz = (u32x16)(((i32x16)e - 1) >> 31); /* all ones where e is 0; GCC made e == 0 a compare per lane */
  *o = (v16)((isz & subbits) | (~isz & normal));
}

/* The same with AVX-512 intrinsics, 16 lanes in one register; fp8 goes through
 * f16: the e4m3 bits shifted into an f16 are the value times 2^-8, FP8_UNIT's
 * 1 / 256. */
#define A512 KERNEL512
#define A256 __attribute__((target("avx2,fma,f16c"), KEEL_CONTRACT))
#define PORTABLE KERNEL128
static inline A512 void deq512_f32(v16 *o, const void *p) { *o = (v16)_mm512_loadu_ps(p); }
static inline A512 void deq512_bf16(v16 *o, const void *p) {
  *o = (v16)_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p)), 16));
}
static inline A512 void deq512_int8(v16 *o, const void *p) {
  *o = (v16)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p)));
}
/* b << 7 puts exponent and mantissa in place and the sign at bit 14; adding bit 14 to itself
 * carries it into bit 15. */
static inline A512 void deq512_fp8(v16 *o, const void *p) {
  __m256i u = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(p)), 7);
  *o = (v16)_mm512_cvtph_ps(_mm256_add_epi16(u, _mm256_and_si256(u, _mm256_set1_epi16(0x4000))));
}


/* fp8 sixteen at a time as two 8-float halves, the 16 codes widened and shifted in one 256-bit
 * register: also for the one-row and columns kernels of AVX2 (two 8-code passes took a third
 * more instructions, and one-row fp8 decoding ran short of the bandwidth on instructions). */
static inline A256 void deq16_fp8(__m256 *lo, __m256 *hi, const void *p) {
  __m256i u = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(p)), 7);
  u = _mm256_add_epi16(u, _mm256_and_si256(u, _mm256_set1_epi16(0x4000)));
  *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(u)), *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(u, 1));
}
/* Eight at a time, for AVX2's own kernels (whose accumulators are 8-float vectors) and its
 * row dequantiser. */
static inline A256 __m256 deq8_f32(const void *p) { return _mm256_loadu_ps(p); }
static inline A256 __m256 deq8_bf16(const void *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
}
static inline A256 __m256 deq8_int8(const void *p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p)));
}
static inline A256 __m256 deq8_fp8(const void *p) {
  __m128i u = _mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64(p)), 7);
  return _mm256_cvtph_ps(_mm_add_epi16(u, _mm_and_si128(u, _mm_set1_epi16(0x4000))));
}

#define PF_AHEAD 8192 /* bytes */
/* The weights stream by once: fetched PF_AHEAD ahead into L2 (prefetcht2), not into L1, whose
 * few outstanding misses had capped the stream (one-row decoding of 12 weights of 4096 x 1536
 * from memory: int8 one thread 11.2 -> 22.6 GB/s, two 18.2 -> 29.8; bf16 17 -> 25 and 23 -> 30;
 * fp8, bound by its dequantising, the same) */
#define FETCH(p) __builtin_prefetch((p), 0, 1)

/* Row m's FP8 block scales, one per 128 columns (applied times FP8_UNIT). */
static inline const float *fp8_scales(const keel_wmat *w, long m) {
  return w->scale + ((m + w->row0) / 128) * ((w->K + 127) / 128);
}

/* What the rows kernels leave after their vectors: columns [k, K) of weight row m added to the
 * four rows' sums s (int8 without its row scale), then the sums stored, scaled by it. */
static void rows_tail(float *out, const float *const xr[4], const keel_wmat *w, int n0, int rows, long m, int k,
                      float s[4]) {
  for (; k < w->K; k++) {
    float v = keel_wmat_get(w, m, k);
    if (w->type == KEEL_W_INT8) v /= w->scale[m]; /* the row scale is applied below */
    for (int r = 0; r < 4; r++) s[r] += xr[r][k] * v;
  }
  float rs = w->type == KEEL_W_INT8 ? w->scale[m] : 1.0f;
  for (int r = 0; r < rows; r++) out[(long)(n0 + r) * w->M + m] = s[r] * rs;
}

/* What the columns kernels leave after their passes: out[k] for the columns [k0, K). */
static void cols_tail(float *out, const float *x, const keel_wmat *w, int k0) {
  for (int k = k0; k < w->K; k++) {
    float s = 0;
    for (int m = 0; m < w->M; m++) s += x[m] * keel_wmat_get(w, m, k);
    out[k] = s;
  }
}

/* How far ahead the columns kernels fetch: whole rows, PF_AHEAD bytes' worth (at least one). */
static long cols_ahead(const keel_wmat *w, int esz) {
  long row = (long)w->K * esz;
  return PF_AHEAD / row > 0 ? PF_AHEAD / row * row : row;
}

/* One kernel per type: out[n][m] for rows n0..n0+rows (rows <= 4), weight rows m0..m1.
 * One row (decoding) runs four accumulators over k, or for FP8 sums each 64 columns (which
 * share a block scale) and scales the sum once; more rows share each dequantised vector. */
#define ROWS_KERNEL(NAME, DEQ, ESZ, TYPE, ATTR, HSUM)                                                                \
  ATTR static void NAME(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1) {   \
    int K = w->K, K16 = K & ~15, K64 = K & ~63;                                                             \
    const float *xr[4];                                                                                      \
    for (int r = 0; r < 4; r++) xr[r] = x + (long)(n0 + (r < rows ? r : 0)) * K;                             \
    const uint8_t *base = w->data;                                                                           \
    for (int m = m0; m < m1; m++) {                                                                          \
      const uint8_t *wr = base + (long)m * K * (ESZ);                                                        \
      const float *sr = TYPE == KEEL_W_FP8 ? fp8_scales(w, m) : NULL;                                        \
      v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, wv, wu;                                                    \
      int k = 0;                                                                                             \
      if (rows == 1) {                                                                                       \
        for (; k < K64; k += 64) {                                                                           \
          v16 w2, w3;                                                                                        \
          for (int pf = 0; pf < 64 * (ESZ); pf += 64) /* the stream runs ahead of the hardware's prefetch */ \
            FETCH(wr + (long)k * (ESZ) + PF_AHEAD + pf);                                                     \
          DEQ(&wv, wr + (long)k * (ESZ));                                                                    \
          DEQ(&wu, wr + (long)(k + 16) * (ESZ));                                                             \
          DEQ(&w2, wr + (long)(k + 32) * (ESZ));                                                             \
          DEQ(&w3, wr + (long)(k + 48) * (ESZ));                                                             \
          if (TYPE == KEEL_W_FP8) { /* 64 columns lie in one 128-block */                                   \
            v16 t = *(const v16 *)(xr[0] + k) * wv;                                                          \
            t += *(const v16 *)(xr[0] + k + 16) * wu;                                                        \
            t += *(const v16 *)(xr[0] + k + 32) * w2;                                                        \
            t += *(const v16 *)(xr[0] + k + 48) * w3;                                                        \
            a0 += t * (sr[k >> 7] * FP8_UNIT);                                                               \
            continue;                                                                                        \
          }                                                                                                  \
          a0 += *(const v16 *)(xr[0] + k) * wv;                                                              \
          a1 += *(const v16 *)(xr[0] + k + 16) * wu;                                                         \
          a2 += *(const v16 *)(xr[0] + k + 32) * w2;                                                         \
          a3 += *(const v16 *)(xr[0] + k + 48) * w3;                                                         \
        }                                                                                                    \
        a0 += a1 + a2 + a3;                                                                                  \
        a1 = a2 = a3 = (v16){0};                                                                             \
      }                                                                                                      \
      for (; k < K16; k += 16) {                                                                             \
        DEQ(&wv, wr + (long)k * (ESZ));                                                                      \
        if (TYPE == KEEL_W_FP8) wv *= sr[k >> 7] * FP8_UNIT;                                                \
        a0 += *(const v16 *)(xr[0] + k) * wv;                                                                \
        a1 += *(const v16 *)(xr[1] + k) * wv;                                                                \
        a2 += *(const v16 *)(xr[2] + k) * wv;                                                                \
        a3 += *(const v16 *)(xr[3] + k) * wv;                                                                \
      }                                                                                                      \
      float s[4] = {0, 0, 0, 0};                                                                             \
      s[0] = HSUM(&a0);                                                                                       \
      for (int i = 0; rows > 1 && i < 16; i++) s[1] += a1[i], s[2] += a2[i], s[3] += a3[i];                  \
      rows_tail(out, xr, w, n0, rows, m, k, s);                                                              \
    }                                                                                                        \
  }

/* Horizontal sums per weight row: keel_hsum16's halving tree, or AVX-512's reduction. */
static inline A512 float hsum512(const v16 *a) { return _mm512_reduce_add_ps((__m512)*a); }

/* The portable rows kernels on SSE2's 16 registers: 16 columns dequantised into four 4-float
 * vectors, 4-float accumulators (the 16-float kernel above, compiled for SSE2, kept its
 * accumulators and dequantised vectors on the stack: one-row int8 decoding ran at a quarter of
 * the memory bandwidth). The same products, summed in 16 lanes for one row and in 4 for more. */
static inline f4 ld4(const float *p) {
  f4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline f4 dot16(const float *x, const f4 v[4]) { /* x[0..16) times v, in 4 lanes */
  return ld4(x) * v[0] + ld4(x + 4) * v[1] + ld4(x + 8) * v[2] + ld4(x + 12) * v[3];
}
#define ROWS4_KERNEL(NAME, DEQ4, ESZ)                                                                           \
  PORTABLE static void NAME(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1) { \
    int K = w->K, K16 = K & ~15;                                                                               \
    const float *xr[4];                                                                                        \
    for (int r = 0; r < 4; r++) xr[r] = x + (long)(n0 + (r < rows ? r : 0)) * K;                               \
    const uint8_t *base = w->data;                                                                             \
    for (int m = m0; m < m1; m++) {                                                                            \
      const uint8_t *wr = base + (long)m * K * (ESZ);                                                          \
      f4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v[4];                                                         \
      int k = 0;                                                                                               \
      for (; k < K16; k += 16) {                                                                               \
        if (((long)k * (ESZ) & 63) == 0) FETCH(wr + (long)k * (ESZ) + PF_AHEAD);                               \
        DEQ4(v, wr + (long)k * (ESZ));                                                                         \
        if (rows == 1) { /* four accumulators over k */                                                        \
          const float *x0 = xr[0] + k;                                                                         \
          a0 += ld4(x0) * v[0], a1 += ld4(x0 + 4) * v[1], a2 += ld4(x0 + 8) * v[2], a3 += ld4(x0 + 12) * v[3]; \
          continue;                                                                                            \
        }                                                                                                      \
        a0 += dot16(xr[0] + k, v);                                                                             \
        a1 += dot16(xr[1] + k, v);                                                                             \
        a2 += dot16(xr[2] + k, v);                                                                             \
        a3 += dot16(xr[3] + k, v);                                                                             \
      }                                                                                                        \
      if (rows == 1) a0 += a1 + a2 + a3, a1 = a2 = a3 = (f4){0};                                               \
      float s[4] = {a0[0] + a0[1] + a0[2] + a0[3], a1[0] + a1[1] + a1[2] + a1[3], a2[0] + a2[1] + a2[2] + a2[3], \
                    a3[0] + a3[1] + a3[2] + a3[3]};                                                            \
      rows_tail(out, xr, w, n0, rows, m, k, s);                                                                \
    }                                                                                                          \
  }
ROWS4_KERNEL(rows_bf16, deq4_bf16, 2)
ROWS4_KERNEL(rows_int8, deq4_int8, 1)
#undef ROWS4_KERNEL
/* f32 (nothing to dequantise) and fp8 (whose bit work in 4-float vectors spilled too) ran no faster so */
ROWS_KERNEL(rows_f32, deq_f32, 4, KEEL_W_F32, PORTABLE, keel_hsum16)
ROWS_KERNEL(rows_fp8, deq_fp8, 1, KEEL_W_FP8, PORTABLE, keel_hsum16)
ROWS_KERNEL(rows512_f32, deq512_f32, 4, KEEL_W_F32, A512, hsum512)
ROWS_KERNEL(rows512_bf16, deq512_bf16, 2, KEEL_W_BF16, A512, hsum512)
ROWS_KERNEL(rows512_int8, deq512_int8, 1, KEEL_W_INT8, A512, hsum512)
ROWS_KERNEL(rows512_fp8, deq512_fp8, 1, KEEL_W_FP8, A512, hsum512)

/* The rows kernels for AVX2, on its 16 registers: 8-float accumulators (the 16-float ones
 * above, compiled for AVX2, spilled to the stack and ran decoding at a quarter of the memory
 * bandwidth). The same sums as ROWS_KERNEL, in 8 lanes. */
#define ROWS8_KERNEL(NAME, DEQ8, ESZ, TYPE)                                                                      \
  A256 static void NAME(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1) {     \
    int K = w->K, K8 = K & ~7, K32 = K & ~31;                                                                  \
    const float *xr[4];                                                                                        \
    for (int r = 0; r < 4; r++) xr[r] = x + (long)(n0 + (r < rows ? r : 0)) * K;                               \
    const uint8_t *base = w->data;                                                                             \
    for (int m = m0; m < m1; m++) {                                                                            \
      const uint8_t *wr = base + (long)m * K * (ESZ);                                                          \
      const float *sr = TYPE == KEEL_W_FP8 ? fp8_scales(w, m) : NULL;                                          \
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                              \
      int k = 0;                                                                                               \
      if (rows == 1) {                                                                                         \
        const float *x0 = xr[0];                                                                               \
        for (; k < K32; k += 32) {                                                                             \
          for (int pf = 0; pf < 32 * (ESZ); pf += 64) FETCH(wr + (long)k * (ESZ) + PF_AHEAD + pf);             \
          __m256 w0, w1, w2, w3;                                                                               \
          if (TYPE == KEEL_W_FP8) {                                                                            \
            deq16_fp8(&w0, &w1, wr + k), deq16_fp8(&w2, &w3, wr + k + 16);                                     \
          } else {                                                                                             \
            w0 = DEQ8(wr + (long)k * (ESZ)), w1 = DEQ8(wr + (long)(k + 8) * (ESZ));                            \
            w2 = DEQ8(wr + (long)(k + 16) * (ESZ)), w3 = DEQ8(wr + (long)(k + 24) * (ESZ));                    \
          }                                                                                                    \
          __m256 y0 = _mm256_loadu_ps(x0 + k), y1 = _mm256_loadu_ps(x0 + k + 8);                               \
          __m256 y2 = _mm256_loadu_ps(x0 + k + 16), y3 = _mm256_loadu_ps(x0 + k + 24);                         \
          if (TYPE == KEEL_W_FP8) { /* 32 columns lie in one 128-block */                                     \
            __m256 t = _mm256_fmadd_ps(y1, w1, _mm256_mul_ps(y0, w0));                                         \
            t = _mm256_fmadd_ps(y3, w3, _mm256_fmadd_ps(y2, w2, t));                                           \
            a0 = _mm256_fmadd_ps(t, _mm256_set1_ps(sr[k >> 7] * FP8_UNIT), a0);                                \
            continue;                                                                                          \
          }                                                                                                    \
          a0 = _mm256_fmadd_ps(y0, w0, a0), a1 = _mm256_fmadd_ps(y1, w1, a1);                                  \
          a2 = _mm256_fmadd_ps(y2, w2, a2), a3 = _mm256_fmadd_ps(y3, w3, a3);                                  \
        }                                                                                                      \
        a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));                                      \
        a1 = a2 = a3 = _mm256_setzero_ps();                                                                    \
      }                                                                                                        \
      for (; k < K8; k += 8) {                                                                                 \
        __m256 v = DEQ8(wr + (long)k * (ESZ));                                                                 \
        if (TYPE == KEEL_W_FP8) v = _mm256_mul_ps(v, _mm256_set1_ps(sr[k >> 7] * FP8_UNIT));                   \
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[0] + k), v, a0);                                               \
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[1] + k), v, a1);                                               \
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[2] + k), v, a2);                                               \
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xr[3] + k), v, a3);                                               \
      }                                                                                                        \
      float s[4] = {keel_hsum8(a0), keel_hsum8(a1), keel_hsum8(a2), keel_hsum8(a3)};                           \
      rows_tail(out, xr, w, n0, rows, m, k, s);                                                                \
    }                                                                                                          \
  }
ROWS8_KERNEL(rows256_f32, deq8_f32, 4, KEEL_W_F32)
ROWS8_KERNEL(rows256_bf16, deq8_bf16, 2, KEEL_W_BF16)
ROWS8_KERNEL(rows256_int8, deq8_int8, 1, KEEL_W_INT8)
ROWS8_KERNEL(rows256_fp8, deq8_fp8, 1, KEEL_W_FP8)
#undef ROWS8_KERNEL

/* out (K) = x (M) deq(w), one row of x (absorbing a weight into a decoding query): each
 * weight read once, W = 16 EACH output columns held in named accumulators at a time (AVX-512:
 * 256 in 16; portable: 64 in 4; AVX2 has its own below). The int8 row scale folds into x[m],
 * and so do fp8's block scales of the pass's (one or two) 128 columns. */
#define EACH16(X, ...)                                                                                      \
  X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__) X(5, __VA_ARGS__)   \
  X(6, __VA_ARGS__) X(7, __VA_ARGS__) X(8, __VA_ARGS__) X(9, __VA_ARGS__) X(10, __VA_ARGS__)                   \
  X(11, __VA_ARGS__) X(12, __VA_ARGS__) X(13, __VA_ARGS__) X(14, __VA_ARGS__) X(15, __VA_ARGS__)
#define EACH4(X, ...) X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__)
#define COLS_KERNEL(NAME, DEQ, ESZ, TYPE, ATTR, EACH)                                                    \
  ATTR static void NAME(float *out, const float *x, const keel_wmat *w) {                             \
    enum { W = 16 * (0 EACH(COLS_ONE)) };                                                              \
    int K = w->K, KW = K / W * W;                                                                      \
    const uint8_t *base = w->data;                                                                     \
    long ahead = cols_ahead(w, ESZ);                                                                   \
    for (int k0 = 0; k0 < KW; k0 += W) {                                                               \
      EACH(COLS_ZERO, DEQ, ESZ, TYPE)                                                                  \
      for (int m = 0; m < w->M; m++) {                                                                 \
        const uint8_t *wr = base + ((long)m * K + k0) * (ESZ);                                         \
        for (int pf = 0; pf < W * (ESZ); pf += 64) /* this chunk of a row PF_AHEAD bytes on */         \
          FETCH(wr + ahead + pf);                                                                      \
        float xm = TYPE == KEEL_W_INT8 ? x[m] * w->scale[m] : x[m], x0 = xm, x1 = xm;                  \
        if (TYPE == KEEL_W_FP8) { /* columns k0.. and k0 + 128.. have a block scale each */            \
          const float *sr = fp8_scales(w, m) + (k0 >> 7);                                              \
          x0 *= sr[0] * FP8_UNIT, x1 *= sr[W > 128] * FP8_UNIT;                                        \
        }                                                                                              \
        v16 t;                                                                                         \
        EACH(COLS_FMA, DEQ, ESZ, TYPE)                                                                 \
      }                                                                                                \
      EACH(COLS_STORE, DEQ, ESZ, TYPE)                                                                 \
    }                                                                                                  \
    cols_tail(out, x, w, KW); /* the last K % W columns */                                           \
  }
#define COLS_ONE(i, ...) +1
#define COLS_ZERO(i, ...) v16 a##i = {0};
#define COLS_FMA(i, DEQ, ESZ, TYPE)                                                                    \
  DEQ(&t, wr + (i) * 16 * (ESZ));                                                                      \
  a##i += ((i) < 8 ? x0 : x1) * t;
#define COLS_STORE(i, ...) memcpy(out + k0 + (i) * 16, &a##i, sizeof a##i);

/* Columns [k0, k1) of row m of w as floats, VW at a time in a VEC filled by DEQ. */
#define ROW_DEQ(NAME, VEC, VW, DEQ, ESZ, ATTR)                                                  \
  ATTR static void NAME(float *dst, const keel_wmat *w, long m, int k0, int k1) {               \
    const uint8_t *wr = (const uint8_t *)w->data + m * w->K * (ESZ);                            \
    int k = k0;                                                                                 \
    for (; k < k1 && (k & ((VW) - 1)); k++) dst[k - k0] = keel_wmat_get(w, m, k);              \
    for (; k + (VW) <= k1; k += (VW)) { /* VW aligned columns share one fp8 block scale */      \
      VEC v;                                                                                    \
      DEQ(&v, wr + (long)k * (ESZ));                                                            \
      if (w->type == KEEL_W_FP8) v *= keel_wmat_block_scale(w, m, k) * FP8_UNIT;                \
      if (w->type == KEEL_W_INT8) v *= w->scale[m];                                             \
      memcpy(dst + k - k0, &v, sizeof v);                                                       \
    }                                                                                           \
    for (; k < k1; k++) dst[k - k0] = keel_wmat_get(w, m, k);                                   \
  }

ROW_DEQ(row_bf16, v16, 16, deq_bf16, 2, PORTABLE)
ROW_DEQ(row_int8, v16, 16, deq_int8, 1, PORTABLE)
ROW_DEQ(row_fp8, v16, 16, deq_fp8, 1, PORTABLE)
/* The same for AVX2, eight columns at a time in one register: 16-float vectors built from two
 * 8-float halves went through the stack lane by lane (a typed weight against 32 rows ran at a
 * third of the float weight's speed, perf: most of it in the dequantiser). */
static inline A256 void deq8_into_bf16(__m256 *o, const void *p) { *o = deq8_bf16(p); }
static inline A256 void deq8_into_int8(__m256 *o, const void *p) { *o = deq8_int8(p); }
static inline A256 void deq8_into_fp8(__m256 *o, const void *p) { *o = deq8_fp8(p); }
ROW_DEQ(row256_bf16, __m256, 8, deq8_into_bf16, 2, A256)
ROW_DEQ(row256_int8, __m256, 8, deq8_into_int8, 1, A256)
ROW_DEQ(row256_fp8, __m256, 8, deq8_into_fp8, 1, A256)
ROW_DEQ(row512_bf16, v16, 16, deq512_bf16, 2, A512)
ROW_DEQ(row512_int8, v16, 16, deq512_int8, 1, A512)
ROW_DEQ(row512_fp8, v16, 16, deq512_fp8, 1, A512)

/* AVX2's own columns kernel: 64 columns in eight 8-float accumulators, x[m] broadcast once
 * per row (the 16-float form, compiled for AVX2, built each broadcast on the stack and read
 * W_UK at 1 GB/s). */
#define COLS8_KERNEL(NAME, DEQ8, ESZ, TYPE)                                                                   \
  A256 static void NAME(float *out, const float *x, const keel_wmat *w) {                                     \
    enum { W = 64 };                                                                                          \
    int K = w->K, KW = K / W * W;                                                                             \
    const uint8_t *base = w->data;                                                                            \
    long ahead = cols_ahead(w, ESZ);                                                                          \
    for (int k0 = 0; k0 < KW; k0 += W) {                                                                      \
      __m256 a[8];                                                                                            \
      for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();                                                 \
      for (int m = 0; m < w->M; m++) {                                                                        \
        const uint8_t *wr = base + ((long)m * K + k0) * (ESZ);                                                \
        for (int pf = 0; pf < W * (ESZ); pf += 64) FETCH(wr + ahead + pf);                                    \
        float xm = TYPE == KEEL_W_INT8 ? x[m] * w->scale[m] : x[m];                                           \
        if (TYPE == KEEL_W_FP8) xm *= fp8_scales(w, m)[k0 >> 7] * FP8_UNIT; /* 64 columns, one block */       \
        __m256 xv = _mm256_set1_ps(xm);                                                                       \
        if (TYPE == KEEL_W_FP8) {                                                                             \
          for (int i = 0; i < 8; i += 2) {                                                                    \
            __m256 lo, hi;                                                                                    \
            deq16_fp8(&lo, &hi, wr + i * 8);                                                                  \
            a[i] = _mm256_fmadd_ps(xv, lo, a[i]), a[i + 1] = _mm256_fmadd_ps(xv, hi, a[i + 1]);               \
          }                                                                                                   \
        } else {                                                                                              \
          for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(xv, DEQ8(wr + i * 8 * (ESZ)), a[i]);             \
        }                                                                                                     \
      }                                                                                                       \
      for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + k0 + 8 * i, a[i]);                                   \
    }                                                                                                         \
    cols_tail(out, x, w, KW); /* the last K % 64 columns */                                                  \
  }
COLS8_KERNEL(cols256_f32, deq8_f32, 4, KEEL_W_F32)
COLS8_KERNEL(cols256_bf16, deq8_bf16, 2, KEEL_W_BF16)
COLS8_KERNEL(cols256_int8, deq8_int8, 1, KEEL_W_INT8)
COLS8_KERNEL(cols256_fp8, deq8_fp8, 1, KEEL_W_FP8)
#undef COLS8_KERNEL

COLS_KERNEL(cols_f32, deq_f32, 4, KEEL_W_F32, PORTABLE, EACH4)
COLS_KERNEL(cols_bf16, deq_bf16, 2, KEEL_W_BF16, PORTABLE, EACH4)
COLS_KERNEL(cols_int8, deq_int8, 1, KEEL_W_INT8, PORTABLE, EACH4)
COLS_KERNEL(cols_fp8, deq_fp8, 1, KEEL_W_FP8, PORTABLE, EACH4)
COLS_KERNEL(cols512_f32, deq512_f32, 4, KEEL_W_F32, A512, EACH16)
COLS_KERNEL(cols512_bf16, deq512_bf16, 2, KEEL_W_BF16, A512, EACH16)
COLS_KERNEL(cols512_int8, deq512_int8, 1, KEEL_W_INT8, A512, EACH16)
COLS_KERNEL(cols512_fp8, deq512_fp8, 1, KEEL_W_FP8, A512, EACH16)

/* The kernels by weight type (keel_wtype order) and keel_isa (portable, AVX2, AVX-512). */
typedef void rows_fn(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1);
typedef void cols_fn(float *out, const float *x, const keel_wmat *w);
static rows_fn *const rows_kernel[4][3] = {{rows_f32, rows256_f32, rows512_f32},
                                           {rows_bf16, rows256_bf16, rows512_bf16},
                                           {rows_int8, rows256_int8, rows512_int8},
                                           {rows_fp8, rows256_fp8, rows512_fp8}};
static cols_fn *const cols_kernel[4][3] = {{cols_f32, cols256_f32, cols512_f32},
                                           {cols_bf16, cols256_bf16, cols512_bf16},
                                           {cols_int8, cols256_int8, cols512_int8},
                                           {cols_fp8, cols256_fp8, cols512_fp8}};

void keel_cpu_wmat_row(float *dst, const keel_wmat *w, long m, int k0, int k1) {
  static void (*const row[3][3])(float *, const keel_wmat *, long, int, int) = {
      {row_bf16, row256_bf16, row512_bf16}, {row_int8, row256_int8, row512_int8}, {row_fp8, row256_fp8, row512_fp8}};
  if (w->type == KEEL_W_F32) memcpy(dst, (const float *)w->data + m * w->K + k0, (size_t)(k1 - k0) * sizeof *dst);
  else row[w->type - 1][keel_cpu_isa()](dst, w, m, k0, k1);
}

void keel_cpu_matmul_wt(float *out, const float *x, const keel_wmat *w, int N) {
  if (N >= 16) { /* f32 weights are packed as plain matrices, with nothing to dequantise */
    keel_gemm_b b = w->type == KEEL_W_F32 ? keel_gemm_f32(w->data, w->K, 1) : keel_gemm_wmat(w, 1);
    keel_cpu_gemm(out, w->K, x, w->M, 1, &b, N, w->M, w->K, 0);
    return;
  }
  if (N == 1) { /* one row: every weight once, the outputs in registers */
    cols_kernel[w->type][keel_cpu_isa()](out, x, w);
    return;
  }
  memset(out, 0, (size_t)N * w->K * sizeof *out);
  /* few rows: each weight row is dequantised once and added into every output row */
  float *row = keel_xmalloc((size_t)w->K * sizeof *row);
  for (int m = 0; m < w->M; m++) {
    keel_cpu_wmat_row(row, w, m, 0, w->K);
    for (int n = 0; n < N; n++) {
      float a = x[(long)n * w->M + m], *o = out + (long)n * w->K;
#pragma omp simd
      for (int k = 0; k < w->K; k++) o[k] += a * row[k];
    }
  }
  free(row);
}

/* From 16 rows (float weights) or 20 (typed) the GEMM, which runs few rows transposed with the
 * weight read in place (float, up to 256 on AVX-512, else 64) or dequantised in blocks (typed,
 * up to 128: gemm.c), beats the rows kernels; below, the rows kernels, their dequantised vectors
 * shared by 4 rows (2816 x 2048, two threads: at 12 rows the GEMM ran 0.65-1.08x of them; at 16
 * rows float 1.64x, typed 0.96-1.18x; at 20 rows typed 1.12-1.32x, at 24 1.24-1.59x). */
void keel_cpu_matmul_w(float *out, const float *x, const keel_wmat *w, int N) {
  if (N >= (w->type == KEEL_W_F32 ? 16 : 20)) {
    keel_gemm_b b = w->type == KEEL_W_F32 ? keel_gemm_f32(w->data, 1, w->K) : keel_gemm_wmat(w, 0);
    keel_cpu_gemm(out, w->M, x, w->K, 1, &b, N, w->K, w->M, 0);
    return;
  }
  /* few rows (decoding): split the weight rows over threads, each streams its share once per 4
   * rows of x */
  enum { CHUNK = 64 };
  int nchunk = (w->M + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nchunk; ch++) {
    int m0 = ch * CHUNK, m1 = m0 + CHUNK < w->M ? m0 + CHUNK : w->M;
    for (int n0 = 0; n0 < N; n0 += 4) {
      int rows = N - n0 < 4 ? N - n0 : 4;
      rows_kernel[w->type][keel_cpu_isa()](out, x, w, n0, rows, m0, m1);
    }
  }
}
