/* Typed weights on the fast CPU backend: each weight type has a 16-wide
 * dequantiser, in AVX-512 intrinsics and in portable vector code (compiled
 * for AVX2 and for any x86-64, chosen at run time); decoding (few rows) reads every weight once and multiplies
 * on the fly, many rows go through the packed GEMM, which dequantises while
 * packing. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/error.h"

#include "gemm.h"
#include "simd.h"

typedef uint16_t u16x16 __attribute__((vector_size(32), aligned(1)));
typedef int8_t i8x16 __attribute__((vector_size(16), aligned(1)));
typedef uint8_t u8x16 __attribute__((vector_size(16), aligned(1)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

static inline void deq_f32(v16 *o, const void *p) { *o = *(const v16 *)p; }

static inline void deq_bf16(v16 *o, const void *p) {
  u32x16 u = __builtin_convertvector(*(const u16x16 *)p, u32x16) << 16;
  *o = (v16)u;
}

static inline void deq_int8(v16 *o, const void *p) { *o = __builtin_convertvector(*(const i8x16 *)p, v16); }

/* e4m3fn without a table, as the value / 256 (FP8_UNIT, folded into the block scale, as the
 * AVX-512 form below gets it for free): normal codes become float bits directly; codes with a
 * zero exponent are multiples of 2^-17. */
#define FP8_UNIT 256.0f
static inline void deq_fp8(v16 *o, const void *p) {
  u32x16 b = __builtin_convertvector(*(const u8x16 *)p, u32x16);
  u32x16 e = (b >> 3) & 15, man = b & 7, sign = (b >> 7) << 31;
  u32x16 normal = sign | (e + 112) << 23 | man << 20;
  v16 sub = __builtin_convertvector((i32x16)man, v16) * 0x1p-17f;
  u32x16 subbits = (u32x16)sub | sign;
  u32x16 isz = (u32x16)(e == 0);
  *o = (v16)((isz & subbits) | (~isz & normal));
}

/* The same with AVX-512 intrinsics (GCC 12 does not vectorise the narrow
 * conversions above); fp8 goes through f16: the e4m3 bits shifted into an
 * f16 are the value times 2^-8, FP8_UNIT's 1 / 256. */
#ifdef __clang__
#define A512 __attribute__((target("avx512f")))
#define GENERIC __attribute__((target_clones("arch=haswell", "default")))
#else
#define A512 __attribute__((target("avx512f"), optimize("fp-contract=fast")))
#define GENERIC __attribute__((target_clones("arch=haswell", "default"), optimize("fp-contract=fast")))
#endif
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


#define PF_AHEAD 8192 /* bytes */

/* Row m's FP8 block scales, one per 128 columns (applied times FP8_UNIT). */
static inline const float *fp8_scales(const keel_wmat *w, long m) {
  return w->scale + ((m + w->row0) / 128) * ((w->K + 127) / 128);
}

/* One kernel per type: out[n][m] for rows n0..n0+rows (rows <= 4), weight rows m0..m1.
 * One row (decoding) runs four accumulators over k, or for FP8 sums each 64 columns (which
 * share a block scale) and scales the sum once; more rows share each dequantised vector. */
#define ROWS_KERNEL(NAME, DEQ, ESZ, TYPE, ATTR, HSUM)                                                                \
  ATTR static void NAME(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1) {   \
    int K = w->K, M = w->M, K16 = K & ~15, K64 = K & ~63;                                                    \
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
            __builtin_prefetch(wr + (long)k * (ESZ) + PF_AHEAD + pf);                                         \
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
      for (; k < K; k++) {                                                                                   \
        float v = keel_wmat_get(w, m, k);                                                                    \
        if (TYPE == KEEL_W_INT8) v /= w->scale[m]; /* the row scale is applied below */                     \
        for (int r = 0; r < 4; r++) s[r] += xr[r][k] * v;                                                    \
      }                                                                                                      \
      float rs = TYPE == KEEL_W_INT8 ? w->scale[m] : 1.0f;                                                   \
      for (int r = 0; r < rows; r++) out[(long)(n0 + r) * M + m] = s[r] * rs;                                \
    }                                                                                                        \
  }

/* Horizontal sums per weight row: keel_hsum16's halving tree, or AVX-512's reduction. */
static inline A512 float hsum512(const v16 *a) { return _mm512_reduce_add_ps((__m512)*a); }

ROWS_KERNEL(rows_f32, deq_f32, 4, KEEL_W_F32, GENERIC, keel_hsum16)
ROWS_KERNEL(rows_bf16, deq_bf16, 2, KEEL_W_BF16, GENERIC, keel_hsum16)
ROWS_KERNEL(rows_int8, deq_int8, 1, KEEL_W_INT8, GENERIC, keel_hsum16)
ROWS_KERNEL(rows_fp8, deq_fp8, 1, KEEL_W_FP8, GENERIC, keel_hsum16)
ROWS_KERNEL(rows512_f32, deq512_f32, 4, KEEL_W_F32, A512, hsum512)
ROWS_KERNEL(rows512_bf16, deq512_bf16, 2, KEEL_W_BF16, A512, hsum512)
ROWS_KERNEL(rows512_int8, deq512_int8, 1, KEEL_W_INT8, A512, hsum512)
ROWS_KERNEL(rows512_fp8, deq512_fp8, 1, KEEL_W_FP8, A512, hsum512)

/* out (K) = x (M) deq(w), one row of x (absorbing a weight into a decoding query): each
 * weight read once, 256 output columns held in 16 named accumulators at a time. The int8
 * row scale folds into x[m], and so do fp8's two block scales of each 256 columns. */
#define EACH16(X, ...)                                                                                      \
  X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__) X(5, __VA_ARGS__)   \
  X(6, __VA_ARGS__) X(7, __VA_ARGS__) X(8, __VA_ARGS__) X(9, __VA_ARGS__) X(10, __VA_ARGS__)                   \
  X(11, __VA_ARGS__) X(12, __VA_ARGS__) X(13, __VA_ARGS__) X(14, __VA_ARGS__) X(15, __VA_ARGS__)
#define COLS_KERNEL(NAME, DEQ, ESZ, TYPE, ATTR)                                                          \
  ATTR static void NAME(float *out, const float *x, const keel_wmat *w) {                             \
    int K = w->K, K256 = K & ~255;                                                                     \
    const uint8_t *base = w->data;                                                                     \
    long ahead = PF_AHEAD / ((long)K * (ESZ)) > 0 ? PF_AHEAD / ((long)K * (ESZ)) * K * (ESZ) : (long)K * (ESZ); \
    for (int k0 = 0; k0 < K256; k0 += 256) {                                                           \
      EACH16(COLS_ZERO, DEQ, ESZ, TYPE)                                                                \
      for (int m = 0; m < w->M; m++) {                                                                 \
        const uint8_t *wr = base + ((long)m * K + k0) * (ESZ);                                         \
        for (int pf = 0; pf < 256 * (ESZ); pf += 64) /* this chunk of a row PF_AHEAD bytes on */       \
          __builtin_prefetch(wr + ahead + pf);                                                         \
        float xm = TYPE == KEEL_W_INT8 ? x[m] * w->scale[m] : x[m], x0 = xm, x1 = xm;                  \
        if (TYPE == KEEL_W_FP8) { /* columns k0.. and k0 + 128.. have a block scale each */            \
          const float *sr = fp8_scales(w, m) + (k0 >> 7);                                              \
          x0 *= sr[0] * FP8_UNIT, x1 *= sr[1] * FP8_UNIT;                                              \
        }                                                                                              \
        v16 t;                                                                                         \
        EACH16(COLS_FMA, DEQ, ESZ, TYPE)                                                               \
      }                                                                                                \
      EACH16(COLS_STORE, DEQ, ESZ, TYPE)                                                               \
    }                                                                                                  \
    for (int k = K256; k < K; k++) { /* the last K % 256 columns */                                    \
      float s = 0;                                                                                     \
      for (int m = 0; m < w->M; m++) s += x[m] * keel_wmat_get(w, m, k);                              \
      out[k] = s;                                                                                      \
    }                                                                                                  \
  }
#define COLS_ZERO(i, ...) v16 a##i = {0};
#define COLS_FMA(i, DEQ, ESZ, TYPE)                                                                    \
  DEQ(&t, wr + (i) * 16 * (ESZ));                                                                      \
  a##i += ((i) < 8 ? x0 : x1) * t;
#define COLS_STORE(i, ...) memcpy(out + k0 + (i) * 16, &a##i, sizeof a##i);

#define ROW_DEQ(NAME, DEQ, ESZ, ATTR)                                                           \
  ATTR static void NAME(float *dst, const keel_wmat *w, long m, int k0, int k1) {            \
    const uint8_t *wr = (const uint8_t *)w->data + m * w->K * (ESZ);                            \
    int k = k0;                                                                                 \
    for (; k < k1 && (k & 15); k++) dst[k - k0] = keel_wmat_get(w, m, k);                       \
    for (; k + 16 <= k1; k += 16) { /* 16 aligned columns share one fp8 block scale */          \
      v16 v;                                                                                    \
      DEQ(&v, wr + (long)k * (ESZ));                                                            \
      if (w->type == KEEL_W_FP8) v *= keel_wmat_block_scale(w, m, k) * FP8_UNIT;                \
      if (w->type == KEEL_W_INT8) v *= w->scale[m];                                             \
      memcpy(dst + k - k0, &v, sizeof v);                                                       \
    }                                                                                           \
    for (; k < k1; k++) dst[k - k0] = keel_wmat_get(w, m, k);                                   \
  }

ROW_DEQ(row_bf16, deq_bf16, 2, GENERIC)
ROW_DEQ(row_int8, deq_int8, 1, GENERIC)
ROW_DEQ(row_fp8, deq_fp8, 1, GENERIC)
ROW_DEQ(row512_bf16, deq512_bf16, 2, A512)
ROW_DEQ(row512_int8, deq512_int8, 1, A512)
ROW_DEQ(row512_fp8, deq512_fp8, 1, A512)

COLS_KERNEL(cols_f32, deq_f32, 4, KEEL_W_F32, GENERIC)
COLS_KERNEL(cols_bf16, deq_bf16, 2, KEEL_W_BF16, GENERIC)
COLS_KERNEL(cols_int8, deq_int8, 1, KEEL_W_INT8, GENERIC)
COLS_KERNEL(cols_fp8, deq_fp8, 1, KEEL_W_FP8, GENERIC)
COLS_KERNEL(cols512_f32, deq512_f32, 4, KEEL_W_F32, A512)
COLS_KERNEL(cols512_bf16, deq512_bf16, 2, KEEL_W_BF16, A512)
COLS_KERNEL(cols512_int8, deq512_int8, 1, KEEL_W_INT8, A512)
COLS_KERNEL(cols512_fp8, deq512_fp8, 1, KEEL_W_FP8, A512)

/* The kernels by weight type (keel_wtype order), portable [0] or AVX-512 [1]. */
typedef void rows_fn(float *out, const float *x, const keel_wmat *w, int n0, int rows, int m0, int m1);
typedef void cols_fn(float *out, const float *x, const keel_wmat *w);
static rows_fn *const rows_kernel[4][2] = {
    {rows_f32, rows512_f32}, {rows_bf16, rows512_bf16}, {rows_int8, rows512_int8}, {rows_fp8, rows512_fp8}};
static cols_fn *const cols_kernel[4][2] = {
    {cols_f32, cols512_f32}, {cols_bf16, cols512_bf16}, {cols_int8, cols512_int8}, {cols_fp8, cols512_fp8}};

static int has_avx512(void) {
  static int has = -1;
  if (has < 0) has = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return has;
}

void keel_cpu_wmat_row(float *dst, const keel_wmat *w, long m, int k0, int k1) {
  int v = has_avx512();
  switch (w->type) {
    case KEEL_W_F32: memcpy(dst, (const float *)w->data + m * w->K + k0, (size_t)(k1 - k0) * sizeof *dst); break;
    case KEEL_W_BF16: (v ? row512_bf16 : row_bf16)(dst, w, m, k0, k1); break;
    case KEEL_W_INT8: (v ? row512_int8 : row_int8)(dst, w, m, k0, k1); break;
    case KEEL_W_FP8: (v ? row512_fp8 : row_fp8)(dst, w, m, k0, k1); break;
  }
}

void keel_cpu_matmul_wt(float *out, const float *x, const keel_wmat *w, int N) {
  if (N >= 16) { /* f32 weights are packed as plain matrices, with nothing to dequantise */
    keel_gemm_b b = w->type == KEEL_W_F32 ? keel_gemm_f32(w->data, w->K, 1) : keel_gemm_wmat(w, 1);
    keel_cpu_gemm(out, w->K, x, w->M, 1, &b, N, w->M, w->K, 0);
    return;
  }
  if (N == 1) { /* one row: every weight once, the outputs in registers */
    cols_kernel[w->type][has_avx512()](out, x, w);
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

void keel_cpu_matmul_w(float *out, const float *x, const keel_wmat *w, int N) {
  if (N >= 32) { /* up to 32 rows (batched decoding), rows share each weight read */
    keel_gemm_b b = w->type == KEEL_W_F32 ? keel_gemm_f32(w->data, 1, w->K) : keel_gemm_wmat(w, 0);
    keel_cpu_gemm(out, w->M, x, w->K, 1, &b, N, w->K, w->M, 0);
    return;
  }
  /* few rows: split the weight rows over threads, each streams its share once per 4 rows of x */
  enum { CHUNK = 64 };
  int nchunk = (w->M + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nchunk; ch++) {
    int m0 = ch * CHUNK, m1 = m0 + CHUNK < w->M ? m0 + CHUNK : w->M;
    for (int n0 = 0; n0 < N; n0 += 4) {
      int rows = N - n0 < 4 ? N - n0 : 4;
      rows_kernel[w->type][has_avx512()](out, x, w, n0, rows, m0, m1);
    }
  }
}
