/* The products the packed GEMM (gemm.c) runs transposed, C^T = B^T A^T, where the shape gains by
 * it: few rows of A against a weight used as W^T (float or typed), and a weight's gradient read
 * down many more rows than C has columns. Each C element sums the same products in the same
 * order as the plain path. */
#include "../../core/cpu.h"
#include "gemm.h"
#include "gemm_int.h"
#include "simd.h"

/* Columns [s0, s0 + n) of C (R rows) into C^T's rows (ct, n x R), or back into C, written or
 * added: 16 x 16 register transposes, on every thread (a scalar loop on the calling thread had
 * cost more than the transposed product saved at 128 rows; adding into C column by column, 8%
 * of the head's dw). */
enum { CT_FROM_C, CT_TO_C, CT_ADD_TO_C };
/* C's rows [r0, r0 + 16) of that */
static void ct_rows(float *c, long ldc, float *ct, int R, int s0, int n, int mode, keel_transpose_fn *tr, int r0) {
  for (int i0 = 0; i0 < n; i0 += 16) {
    int nr = R - r0 < 16 ? R - r0 : 16, ni = n - i0 < 16 ? n - i0 : 16;
    float *x = c + (long)r0 * ldc + s0 + i0, *y = ct + (long)i0 * R + r0;
    if (mode == CT_FROM_C) {
      keel_cpu_transpose_block(tr, y, R, x, ldc, nr, ni);
    } else if (mode == CT_TO_C) {
      keel_cpu_transpose_block(tr, x, ldc, y, R, ni, nr);
    } else { /* through a block in L1, then added row by row, in whole vectors where they fit */
      float blk[16 * 16];
      keel_cpu_transpose_block(tr, blk, 16, y, R, ni, nr);
      for (int r = 0; r < nr; r++) {
        float *cr = x + (long)r * ldc;
        if (ni == 16) *(v16 *)cr += *(const v16 *)(blk + r * 16);
        else
          for (int i = 0; i < ni; i++) cr[i] += blk[r * 16 + i];
      }
    }
  }
}

static void c_transposed(float *c, long ldc, float *ct, int R, int s0, int n, int mode) {
  keel_transpose_fn *tr = keel_cpu_transpose16();
  if (omp_in_parallel()) { /* on this thread alone, without a region of one thread */
    for (int r0 = 0; r0 < R; r0 += 16) ct_rows(c, ldc, ct, R, s0, n, mode, tr, r0);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int r0 = 0; r0 < R; r0 += 16) ct_rows(c, ldc, ct, R, s0, n, mode, tr, r0);
}

/* Few rows of A in place against a float B used as W^T (its columns contiguous: a weight), up to
 * 256 on AVX-512 and 64 on the others: the product runs transposed, C^T = B^T A^T, so the weight
 * is read in place as the A side and only the few rows are packed, transposed, as the B side;
 * C^T (holding C first when accumulating) is copied back into C. Packing the weight (J x S,
 * 16 x 16 transposes) had cost a small expert's forward GEMM as much as its arithmetic; at 128
 * rows, its weight fresh from memory, the transposed product is 1.2x faster (160 rows 1.1x;
 * AVX2, whose narrower tiles read the weight's rows four times, 0.9x). While C^T is computed its
 * tiles fetch the lines of C it is copied into (when C fits L2): an expert's outputs, fresh
 * rows of a large array, had cost the copy a stall on every line (experts' forward, 64-128 rows,
 * activations cold as in training: 1.03-1.08x). Every C element sums the same products in the
 * same order, so the bits are those of the plain path. */
static int few_rows(long a_cs, const keel_gemm_b *b, int R, int S) {
  return a_cs == 1 && !b->packed && !b->w && b->rs == 1 && b->cs != 1 && 2 * R <= S &&
         R <= (keel_cpu_isa() == KEEL_ISA_AVX512 ? 256 : 64);
}

/* The same for a typed weight used as W^T (a short prompt's prefill, 32 to 128 rows): blocks of
 * TB weight rows are dequantised into floats in L2, each block then the A side of C^T = W A^T,
 * so the weight is dequantised once and never transposed into panels (which had cost more than
 * the arithmetic: int8 at 32 rows ran at half the float weights' speed; past 128 rows, no gain).
 * A^T is packed once for all blocks when a panel fits the budget (J up to 2048); past it each
 * block's GEMM takes the super-chunks and parts of J that the plain path takes. Every element
 * sums the same products in the same order as the plain path: the same bits. */
#define TB 48
static int few_rows_typed(long a_cs, const keel_gemm_b *b, int R, int S) {
  return a_cs == 1 && !b->packed && b->w && !b->w_rows && R <= 128 && 2 * R <= S;
}

static void gemm_few_typed(float *c, long ldc, const float *a, long a_rs, const keel_gemm_b *b, int R, int J, int S,
                           int acc) {
  keel_gemm_b at = keel_gemm_f32(a, 1, a_rs); /* B'(j, r) = A(r, j) */
  if ((long)J * NR <= L2B / (long)sizeof(float)) {
    long ps = (long)J * NR;
    keel_gemm_bufs *mine = keel_gemm_my_bufs();
    float *ap = keel_gemm_grow(&mine->a, &mine->a_cap, (size_t)ps * ((R + NR - 1) / NR)); /* one or two panels */
    keel_cpu_gemm_pack(ap, ps, &at, J, R);
    at = keel_gemm_packed(ap, ps);
  }
#pragma omp parallel
  {
    keel_gemm_bufs *t = keel_gemm_my_bufs();
    float *wf = keel_gemm_grow(&t->row, &t->row_cap, (size_t)TB * J);
    float *ct = keel_gemm_grow(&t->ct, &t->ct_cap, (size_t)TB * R);
#pragma omp for schedule(dynamic)
    for (int s0 = 0; s0 < S; s0 += TB) {
      int n = S - s0 < TB ? S - s0 : TB;
      for (int i = 0; i < n; i++) keel_cpu_wmat_row(wf + (long)i * J, b->w, s0 + i, 0, J);
      if (acc) c_transposed(c, ldc, ct, R, s0, n, CT_FROM_C); /* C^T's rows s0.. hold C first when accumulating */
      keel_cpu_gemm(ct, R, wf, J, 1, &at, n, J, R, acc);
      c_transposed(c, ldc, ct, R, s0, n, CT_TO_C);
    }
  }
}

/* A read down its columns (a weight's gradient, dout^T x) with many more rows than C has
 * columns: the head's, 32000 x 1024 times 1024 x 512. Taken as it is, A (the logits' gradient,
 * 131 MB) would be packed whole and then streamed from memory once per group of B's panels.
 * Instead each block of WIDE rows of C runs transposed on one thread, C^T = B^T A^T: B^T
 * (small, transposed once for all blocks) is read in place as the A side, the block's columns
 * of A^T are packed as B's panels (A read once, row by row), and the block's C^T, in L2, is
 * transposed into C. Head dw, two threads: 9% faster (the median of 41 pairs); one thread: the
 * same. From 4 times more rows than columns (MLA's kv_b dw, 1024 x 1024 x 128: 1.17x; 2048 x
 * 1024 x 256 1.09x); at 2-3 times, 0.88-1.00x. Each block's sums run in one fixed order, so the
 * bits do not depend on the threads. */
#define WIDE 128
static int wide_rows(long a_rs, long a_cs, const keel_gemm_b *b, int R, int S) {
  return a_rs == 1 && a_cs != 1 && !b->packed && !b->w && b->cs == 1 && R >= 4 * S;
}

static void gemm_wide(float *c, long ldc, const float *a, long a_cs, const keel_gemm_b *b, int R, int J, int S,
                      int acc) {
  long lb = (J + 15) / 16 * 16 + 16; /* B^T's row stride: not a multiple of 4 KB (its rows in one L1 set) */
  keel_gemm_bufs *mine = keel_gemm_my_bufs();
  float *bt = keel_gemm_grow(&mine->a, &mine->a_cap, (size_t)S * lb);
  keel_transpose_fn *tr = keel_cpu_transpose16();
#pragma omp parallel for schedule(static)
  for (int s0 = 0; s0 < S; s0 += 16)
    for (int j0 = 0; j0 < J; j0 += 16)
      keel_cpu_transpose_block(tr, bt + (long)s0 * lb + j0, lb, b->b + (long)j0 * b->rs + s0, b->rs,
                               J - j0 < 16 ? J - j0 : 16, S - s0 < 16 ? S - s0 : 16);
#pragma omp parallel
  {
    keel_gemm_bufs *t = keel_gemm_my_bufs();
    float *ct = keel_gemm_grow(&t->ct, &t->ct_cap, (size_t)S * WIDE); /* the block's C^T, S x w */
#pragma omp for schedule(dynamic)
    for (int r0 = 0; r0 < R; r0 += WIDE) {
      int w = R - r0 < WIDE ? R - r0 : WIDE;
      keel_gemm_b at = keel_gemm_f32(a + r0, a_cs, 1); /* A^T's columns [r0, r0 + w) */
      keel_cpu_gemm(ct, w, bt, lb, 1, &at, S, J, w, 0);
      c_transposed(c + (long)r0 * ldc, ldc, ct, w, 0, S, acc ? CT_ADD_TO_C : CT_TO_C);
    }
  }
}

int keel_gemm_transposed(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R,
                         int J, int S, int acc) {
  if (wide_rows(a_rs, a_cs, b, R, S)) {
    gemm_wide(c, ldc, a, a_cs, b, R, J, S, acc);
    return 1;
  }
  if (few_rows_typed(a_cs, b, R, S)) {
    gemm_few_typed(c, ldc, a, a_rs, b, R, J, S, acc);
    return 1;
  }
  if (few_rows(a_cs, b, R, S)) {
    keel_gemm_bufs *mine = keel_gemm_my_bufs();
    float *ct = keel_gemm_grow(&mine->ct, &mine->ct_cap, (size_t)S * R); /* C^T, S x R */
    if (acc) c_transposed(c, ldc, ct, R, 0, S, CT_FROM_C);
    keel_gemm_b at = keel_gemm_f32(a, 1, a_rs); /* B'(j, r) = A(r, j) */
    ahead cw = {0};
    if ((long)R * S * (long)sizeof(float) <= L2B) { /* C's rows (each line a row touches), fetched as C^T is computed */
      int per = (int)((S * (long)sizeof(float) + 63) / 64) + 1;
      cw = (ahead){(const char *)c, ldc * (long)sizeof(float), R * per, per};
    }
    keel_gemm_run(ct, R, b->b, b->cs, 1, &at, S, J, R, acc, cw);
    c_transposed(c, ldc, ct, R, 0, S, CT_TO_C);
    return 1;
  }
  return 0;
}
