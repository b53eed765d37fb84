/* The packed GEMM of the fast CPU backend (gemm.c) and the typed-weight
 * kernels it shares with matmul_w (wmat.c). */
#ifndef KEEL_BACKEND_CPU_GEMM_H
#define KEEL_BACKEND_CPU_GEMM_H

#include "../backend.h"

/* B of a GEMM: B(j, s) = b[j*rs + s*cs], or, when w is set, the weight
 * transposed, B(j, s) = deq(w)(s, j), or with w_rows the weight itself,
 * B(j, s) = deq(w)(j, s); or, when packed is set, B already packed by
 * keel_cpu_gemm_pack (panel p at packed + p*ps). */
typedef struct keel_gemm_b {
  const float *b;
  long rs, cs;
  const keel_wmat *w;
  int w_rows;
  const float *packed;
  long ps;
} keel_gemm_b;

static inline keel_gemm_b keel_gemm_f32(const float *b, long rs, long cs) {
  return (keel_gemm_b){.b = b, .rs = rs, .cs = cs};
}
static inline keel_gemm_b keel_gemm_wmat(const keel_wmat *w, int w_rows) {
  return (keel_gemm_b){.w = w, .w_rows = w_rows};
}

/* Columns of a packed panel. */
#define KEEL_GEMM_NR 64
/* Floats that keel_cpu_gemm_pack writes for S columns with panels ps floats apart. */
static inline size_t keel_gemm_packed_size(int S, long ps) { return (size_t)((S + KEEL_GEMM_NR - 1) / KEEL_GEMM_NR) * ps; }

/* Packs rows [0, J) of B's columns [0, S) once, for GEMMs that share them: panel p (columns
 * [64p, 64p + 64), zero past S) at dst + p*ps, its row j at + j*64 (ps >= J*64). A GEMM may
 * then read rows [j0, j0 + J') of it as keel_gemm_packed(dst + j0*64, ps), J' <= J - j0. */
void keel_cpu_gemm_pack(float *dst, long ps, const keel_gemm_b *b, int J, int S);
static inline keel_gemm_b keel_gemm_packed(const float *p, long ps) { return (keel_gemm_b){.packed = p, .ps = ps}; }

/* C (R x S, row stride ldc) += A (R x J) B (J x S) with A(r, j) = a[r*a_rs + j*a_cs]; with acc
 * 0, C = A B (C is not read). */
void keel_cpu_gemm(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R, int J, int S,
                   int acc);
/* A buffer of at least n floats that belongs to the calling thread and is kept between calls
 * (slot 0 or 1; contents undefined): scratch for ops called every step, which would otherwise
 * map, fault in and unmap fresh pages each time. */
float *keel_cpu_scratch(int slot, size_t n);
/* dst[i][k] = src[k][i] for a 16 x 16 block (rows dst_rs and src_rs floats apart), in
 * registers: the one for the kernels' ISA (transpose.c). */
typedef void keel_transpose_fn(float *dst, long dst_rs, const float *src, long src_rs);
keel_transpose_fn *keel_cpu_transpose16(void);
/* The same for a block of rows x cols, each at most 16, through tr when it is whole. */
void keel_cpu_transpose_block(keel_transpose_fn *tr, float *dst, long dst_rs, const float *src, long src_rs, int rows,
                              int cols);
/* dst (k1 - k0) = columns [k0, k1) of row m of w as floats, vectorised. */
void keel_cpu_wmat_row(float *dst, const keel_wmat *w, long m, int k0, int k1);
/* out (N, M) = x (N, K) deq(w)^T */
void keel_cpu_matmul_w(float *out, const float *x, const keel_wmat *w, int N);
/* out (N, K) = x (N, M) deq(w) */
void keel_cpu_matmul_wt(float *out, const float *x, const keel_wmat *w, int N);

#endif
