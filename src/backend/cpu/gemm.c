/* The packed GEMM: C (R x S, row stride ldc) += A (R x J) B (J x S).
 *
 * B is packed into panels of 64 columns (J x 64, contiguous, zero-padded; a
 * typed weight is dequantised while packing, a weight used as W^T goes
 * through 16 x 16 register transposes, transpose.c). A 6 x 64 register tile (24 vector
 * accumulators) multiplies 6 rows of A by a chunk of at most KCF (1024) rows
 * of a panel (J cut into chunks of equal depth), read from L2 while the tile
 * walks down a block of MC rows of A: the longer the chunk, the fewer times a
 * tile starts over and stores C. For each block, every panel of a group (as
 * many as fit 512 KiB of packed B, in L2) runs all its chunks, so the block's
 * C tiles stay in L1/L2 over the whole reduction and A's block (48 x J) in
 * L2. When one panel of J rows does not fit that budget (J past 2048, the
 * head's dx), a group is a thread's share of the panels (up to 4), packed
 * and run a super-chunk of whole chunks of KC (512) rows at a time: B is
 * still read from L2, and A, streamed once per group, is streamed once or
 * twice per thread. Such a GEMM (few groups, long ones) also splits J into up to 4
 * parts, summed into buffers of their own and added to C in order at the end,
 * so that threads have smaller units to share.
 * A last panel of at most 32 columns (S = 352, the experts' width, ends in
 * one) runs 12 x 32 tiles instead, with the same 24 accumulators, rather
 * than multiply zeros in half of a 6 x 64 tile.
 * Rows of A are read in place when they are contiguous (a_cs 1); otherwise A
 * is packed once into 6-row micro-panels, chunk by chunk, so that every read
 * is a sequential stream (a tall A read so, the head's weight gradient, runs
 * transposed instead, in blocks of rows: gemm_t.c, which also runs few rows
 * against a weight used as W^T transposed). Each tile asks for the
 * next tile's rows of A and for its own C rows ahead of time, one cache line
 * per iteration of its first ones (a burst up front stalled it). With acc 0
 * the first chunk writes C instead of adding to it, so callers need not zero
 * C.
 *
 * With few rows (at most 512: an expert's dx), a group packed afresh packs its first panel up
 * front and each other one just before the unit's first block uses it, its source fetched by
 * the tiles of the panel before, so that a weight fresh from memory arrives while they run.
 *
 * B may come packed already (keel_cpu_gemm_pack), for callers that run
 * several GEMMs on it: then a thread's panels are one group.
 *
 * The work is cut into units, a group of panels over a range of rows, and
 * each thread takes the next unit as soon as it is free: the cores of a
 * shared machine often run at different speeds, and equal fixed shares left
 * one idle for 10-15% of the head's GEMMs in a training step. Groups are
 * split by rows only when there are fewer than four per thread, into ranges
 * of at least four blocks (each range packs the group's B again) and as many
 * units for each thread, or of fewer blocks when a thread would otherwise be
 * idle (an expert-sized dw, 352 x 256 x 512, one group: 1.8x faster on two
 * threads). A C element
 * is summed over the chunks in order within one unit, so results do not
 * depend on the thread count.
 * Packing buffers belong to each thread and are kept between calls.
 * (Block sizes measured side by side, one and two threads. On an AVX-512 CPU with a 48 KiB L1,
 * 192-row chunks, which fit it, with MC 48 were at least as fast as chunks of 96..384 rows and
 * MC 96..1024, within the noise. On one with a 32 KiB L1 and a 1 MiB L2, chunks of up to 1024
 * rows ran up to 8% faster than 192 on the training shapes, slower on none, and 2048 no faster
 * than 1024; there, super-chunks of one 512-deep chunk, not two of 192, ran the head's dx
 * (2044 x 32000 x 512) 1.025-1.034x faster on two threads, 1.024x on one, and a 256-row
 * prefill's down projection (J 4096) 1.04-1.09x; 1024 gained 0.6-2.4% more, streaming A
 * twice as often.) */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cpu.h"
#include "../../core/error.h"
#include "gemm.h"
#include "gemm_int.h"
#include "simd.h"

/* A per-thread buffer that only grows. */
float *keel_gemm_grow(float **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    *buf = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!*buf) abort();
    keel_advise_huge(*buf, n * sizeof(float));
    *cap = n;
  }
  return *buf;
}

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *p) {
  keel_gemm_bufs *t = p;
  free(t->a), free(t->b), free(t->row), free(t->part), free(t->ct), free(t->op[0]), free(t->op[1]), free(t);
}

static void bufs_init(void) { pthread_key_create(&bufs_key, bufs_free); }

keel_gemm_bufs *keel_gemm_my_bufs(void) {
  pthread_once(&bufs_once, bufs_init);
  keel_gemm_bufs *t = pthread_getspecific(bufs_key);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) abort();
    pthread_setspecific(bufs_key, t);
  }
  return t;
}

float *keel_cpu_scratch(int slot, size_t n) {
  keel_gemm_bufs *t = keel_gemm_my_bufs();
  return keel_gemm_grow(&t->op[slot], &t->op_cap[slot], n);
}

/* Rows [js, js + J) of B's columns [s0, s0 + 64) into a panel. */
KERNEL static void pack_panel(float *dst, const keel_gemm_b *b, int js, int J, int s0, int S) {
  int w = S - s0 < NR ? S - s0 : NR;
  keel_transpose_fn *tr = keel_cpu_transpose16();
  if (b->w && b->w_rows) { /* typed weight, row j of w is row j of B: the panel's columns dequantised */
    for (int j = 0; j < J; j++) {
      keel_cpu_wmat_row(dst + (long)j * NR, b->w, js + j, s0, s0 + w);
      for (int c = w; c < NR; c++) dst[(long)j * NR + c] = 0;
    }
    return;
  }
  if (b->w) { /* typed weight: row s of w is column s of B; 16 rows dequantised, then 16 x 16 transposes */
    keel_gemm_bufs *t = keel_gemm_my_bufs();
    int j16 = J & ~15;
    float *rows = keel_gemm_grow(&t->row, &t->row_cap, (size_t)16 * J); /* 16 rows of J: columns [js, js + J) */
    for (int c0 = 0; c0 < NR; c0 += 16) {
      int n = w - c0 < 16 ? (w - c0 > 0 ? w - c0 : 0) : 16;
      for (int c = 0; c < n; c++) keel_cpu_wmat_row(rows + (long)c * J, b->w, s0 + c0 + c, js, js + J);
      for (int c = n; c < 16; c++) memset(rows + (long)c * J, 0, (size_t)J * sizeof *rows);
      for (int j0 = 0; j0 < j16; j0 += 16) tr(dst + (long)j0 * NR + c0, NR, rows + j0, J);
      for (int j = j16; j < J; j++)
        for (int c = 0; c < 16; c++) dst[(long)j * NR + c0 + c] = rows[(long)c * J + j];
    }
    return;
  }
  int j0 = 0;
  if (b->rs == 1 && b->cs != 1) { /* B's columns are contiguous (a weight used as W^T): 16 x 16 transposes, */
    int j16 = J & ~15;          /* 16 of its rows at a time, each read end to end and fetched 64 ahead */
    for (int c0 = 0; c0 + 16 <= w; c0 += 16)
      for (j0 = 0; j0 < j16; j0 += 16) {
        const float *src = b->b + js + j0 + (long)(s0 + c0) * b->cs;
        if (j0 + 64 < J)
          for (int i = 0; i < 16; i++) __builtin_prefetch(src + 64 + i * b->cs);
        tr(dst + (long)j0 * NR + c0, NR, src, b->cs);
      }
    j0 = j16;
  }
  for (int j = 0; j < J; j++) {
    float *d = dst + (long)j * NR;
    const float *src = b->b + (long)(js + j) * b->rs + (long)s0 * b->cs;
    if (b->cs == 1) { /* rows fetched 16 ahead: pieces of rows far apart (the head's dw reads
                         * 512 bytes of each 128 KB row) are not fetched by the hardware */
      if (j + 16 < J)
        for (int c = 0; c < w; c += 16) __builtin_prefetch(src + 16 * b->rs + c);
      memcpy(d, src, (size_t)w * sizeof *d);
    } else {
      for (int c = j < j0 ? w & ~15 : 0; c < w; c++) d[c] = src[(long)c * b->cs]; /* what the blocks left */
    }
    for (int c = w; c < NR; c++) d[c] = 0;
  }
}

/* A chunk of A packed as MR-row micro-panels, ap[rb][j][0..MR) for j in
 * [j0, j0 + kc), zero-padded, so that one chunk is one sequential stream. */
static void pack_a_block(float *ap, const float *a, long a_rs, long a_cs, int R, int j0, int kc, int rb) {
  float *d = ap + (long)rb * kc * MR;
  int rows = R - rb * MR < MR ? R - rb * MR : MR;
  const float *s = a + (long)rb * MR * a_rs + (long)j0 * a_cs;
  if (rows == MR && a_rs == 1) { /* the MR values of a column are contiguous */
    for (int j = 0; j < kc; j++) memcpy(d + (long)j * MR, s + (long)j * a_cs, MR * sizeof *d);
    return;
  }
  for (int j = 0; j < kc; j++) {
    for (int r = 0; r < rows; r++) d[(long)j * MR + r] = s[r * a_rs + j * a_cs];
    for (int r = rows; r < MR; r++) d[(long)j * MR + r] = 0.0f;
  }
}

static void pack_a(float *ap, const float *a, long a_rs, long a_cs, int R, int j0, int kc) {
  int nb = (R + MR - 1) / MR;
  if (omp_in_parallel()) { /* on this thread alone, without a region of one thread */
    for (int rb = 0; rb < nb; rb++) pack_a_block(ap, a, a_rs, a_cs, R, j0, kc, rb);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int rb = 0; rb < nb; rb++) pack_a_block(ap, a, a_rs, a_cs, R, j0, kc, rb);
}

/* Row r of a register tile, its n accumulators x0.. (16 columns each, the first `cols` of them
 * kept), into C: added with acc, else written. Used by the tiles below, whose accumulators
 * stay in registers (named, never addressed in the loop). */
#define STORE_ROW(r, n, ...)                                                            \
  if (rows > r) {                                                                       \
    float *cr = c + (long)(r) * ldc;                                                    \
    v16 t[n] = {__VA_ARGS__};                                                           \
    if (cols == 16 * (n) && acc) {                                                      \
      for (int k = 0; k < (n); k++) *(v16 *)(cr + 16 * k) += t[k];                      \
    } else if (cols == 16 * (n)) {                                                      \
      for (int k = 0; k < (n); k++) *(v16 *)(cr + 16 * k) = t[k];                       \
    } else { /* whole vectors, then the last few columns one by one */                \
      int k = 0;                                                                        \
      for (; k + 16 <= cols; k += 16)                                                   \
        *(v16 *)(cr + k) = (acc ? *(v16 *)(cr + k) : (v16){0}) + t[k / 16];             \
      for (; k < cols; k++) cr[k] = (acc ? cr[k] : 0.0f) + t[k / 16][k % 16];           \
    }                                                                                   \
  }

/* C (rows x cols) += A (rows x J) B (J x NR, a panel chunk), or = with acc 0,
 * A(r, j) = a[r*a_rs + j*a_cs] with the strides constant in each caller: rows in place
 * (a_cs 1) or a packed micro-panel (a_rs 1). Rows past `rows` repeat the
 * last one and are not stored. pf is the next tile's A (pf_rows rows,
 * pf_rs apart), fetched into L2 while this one runs, one line per iteration of the first ones,
 * then this tile's C rows, then the lines of nx: a burst of them up front stalled the tile while
 * the few fill buffers drained (perf: 7% of a bench-b step's tile samples sat on those
 * prefetches). */
#define TILE_STEP(j)                                                                      \
  {                                                                                       \
    const float *bj = bp + (long)(j) * NR;                                                \
    v16 b0 = *(const v16 *)bj, b1 = *(const v16 *)(bj + 16);                              \
    v16 b2 = *(const v16 *)(bj + 32), b3 = *(const v16 *)(bj + 48);                       \
    long o = (long)(j) * a_cs;                                                            \
    float s;                                                                              \
    s = a0[o], c00 += s * b0, c01 += s * b1, c02 += s * b2, c03 += s * b3;                \
    s = a1[o], c10 += s * b0, c11 += s * b1, c12 += s * b2, c13 += s * b3;                \
    s = a2[o], c20 += s * b0, c21 += s * b1, c22 += s * b2, c23 += s * b3;                \
    s = a3[o], c30 += s * b0, c31 += s * b1, c32 += s * b2, c33 += s * b3;                \
    s = a4[o], c40 += s * b0, c41 += s * b1, c42 += s * b2, c43 += s * b3;                \
    s = a5[o], c50 += s * b0, c51 += s * b1, c52 += s * b2, c53 += s * b3;                \
  }

static inline __attribute__((always_inline)) void tile_body(float *c, long ldc, const float *a, long a_rs, long a_cs,
                                                            const float *bp, int rows, int J, int cols, int acc,
                                                            const float *pf, long pf_rs, int pf_rows,
                                                            const ahead *nx) {
  const float *a0 = a, *a1 = a + (rows > 1) * a_rs, *a2 = a + (rows > 2 ? 2 : rows - 1) * a_rs,
              *a3 = a + (rows > 3 ? 3 : rows - 1) * a_rs, *a4 = a + (rows > 4 ? 4 : rows - 1) * a_rs,
              *a5 = a + (rows > 5 ? 5 : rows - 1) * a_rs;
  v16 c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
  v16 c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
  v16 c40 = {0}, c41 = {0}, c42 = {0}, c43 = {0}, c50 = {0}, c51 = {0}, c52 = {0}, c53 = {0};
  /* lines to fetch, q-th in order: la of the next A (row pr, offset pk), then this C's (row qr,
   * offset qk), then nx's (at np, the nk-th of its row); those the iterations cannot carry (a
   * short J) go first */
  int la = pf_rows * ((J + 15) / 16), lc = la + rows * (NR / 16), lt = lc + nx->n, q = 0, pr = 0, pk = 0, qr = 0,
      qk = 0, nk = 0, j = 0;
  const char *np = nx->p;
#define FETCH()                                                                                           \
  {                                                                                                       \
    if (q < la) {                                                                                         \
      __builtin_prefetch(pf + pr * pf_rs + pk, 0, 2), pk += ++pr == pf_rows ? (pr = 0, 16) : 0;           \
    } else if (q < lc) {                                                                                  \
      __builtin_prefetch(c + (long)qr * ldc + qk, 1), qk += ++qr == rows ? (qr = 0, 16) : 0;              \
    } else {                                                                                              \
      __builtin_prefetch(np + nk * 64, 0, 2);                                                             \
      if (++nk == nx->per) nk = 0, np += nx->rs;                                                          \
    }                                                                                                     \
    q++;                                                                                                  \
  }
  while (q < lt - J) FETCH()
  for (; j < J && q < lt; j++) {
    FETCH()
    TILE_STEP(j)
  }
#undef FETCH
#pragma GCC unroll 4
  for (; j < J; j++) TILE_STEP(j)
  STORE_ROW(0, 4, c00, c01, c02, c03)
  STORE_ROW(1, 4, c10, c11, c12, c13)
  STORE_ROW(2, 4, c20, c21, c22, c23)
  STORE_ROW(3, 4, c30, c31, c32, c33)
  STORE_ROW(4, 4, c40, c41, c42, c43)
  STORE_ROW(5, 4, c50, c51, c52, c53)
}
#undef TILE_STEP

KERNEL512 static void tile_rows512(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J,
                                   int cols, int acc, const float *pf, int pf_rows, const ahead *nx) {
  tile_body(c, ldc, a, a_rs, 1, bp, rows, J, cols, acc, pf, a_rs, pf_rows, nx);
}

KERNEL512 static void tile_packed512(float *c, long ldc, const float *ap, const float *bp, int rows, int J,
                                     int cols, int acc, const float *pf, const ahead *nx) {
  tile_body(c, ldc, ap, 1, MR, bp, rows, J, cols, acc, pf, J, MR, nx); /* a micro-panel: MR pieces of J floats */
}

/* The same over a panel of at most 32 columns (the last panel of S = 64k + 32, say the experts'
 * 352): 12 rows x 32 columns keep the 24 accumulators busy where a 6 x 64 tile would multiply
 * zeros. Rows r in [0, 6) are at a_lo + r a_rs, rows [6, 12) at a_hi + (r - 6) a_rs. */
static inline __attribute__((always_inline)) void half_body(float *c, long ldc, const float *a_lo, const float *a_hi,
                                                            long a_rs, long a_cs, const float *bp, int rows, int J,
                                                            int cols, int acc) {
  for (int r = 0; r < rows; r++)
    __builtin_prefetch(c + (long)r * ldc, 1), __builtin_prefetch(c + (long)r * ldc + 16, 1);
  const float *p[12];
  for (int r = 0; r < 12; r++) {
    int q = r < rows ? r : rows - 1;
    p[r] = q < 6 ? a_lo + q * a_rs : a_hi + (q - 6) * a_rs;
  }
  const float *a0 = p[0], *a1 = p[1], *a2 = p[2], *a3 = p[3], *a4 = p[4], *a5 = p[5], *a6 = p[6], *a7 = p[7],
              *a8 = p[8], *a9 = p[9], *a10 = p[10], *a11 = p[11];
  v16 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
  v16 c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0}, c60 = {0}, c61 = {0}, c70 = {0}, c71 = {0};
  v16 c80 = {0}, c81 = {0}, c90 = {0}, c91 = {0}, ca0 = {0}, ca1 = {0}, cb0 = {0}, cb1 = {0};
#pragma GCC unroll 4
  for (int j = 0; j < J; j++) {
    const float *bj = bp + (long)j * NR;
    v16 b0 = *(const v16 *)bj, b1 = *(const v16 *)(bj + 16);
    long o = (long)j * a_cs;
    float s;
    s = a0[o], c00 += s * b0, c01 += s * b1;
    s = a1[o], c10 += s * b0, c11 += s * b1;
    s = a2[o], c20 += s * b0, c21 += s * b1;
    s = a3[o], c30 += s * b0, c31 += s * b1;
    s = a4[o], c40 += s * b0, c41 += s * b1;
    s = a5[o], c50 += s * b0, c51 += s * b1;
    s = a6[o], c60 += s * b0, c61 += s * b1;
    s = a7[o], c70 += s * b0, c71 += s * b1;
    s = a8[o], c80 += s * b0, c81 += s * b1;
    s = a9[o], c90 += s * b0, c91 += s * b1;
    s = a10[o], ca0 += s * b0, ca1 += s * b1;
    s = a11[o], cb0 += s * b0, cb1 += s * b1;
  }
  STORE_ROW(0, 2, c00, c01)
  STORE_ROW(1, 2, c10, c11)
  STORE_ROW(2, 2, c20, c21)
  STORE_ROW(3, 2, c30, c31)
  STORE_ROW(4, 2, c40, c41)
  STORE_ROW(5, 2, c50, c51)
  STORE_ROW(6, 2, c60, c61)
  STORE_ROW(7, 2, c70, c71)
  STORE_ROW(8, 2, c80, c81)
  STORE_ROW(9, 2, c90, c91)
  STORE_ROW(10, 2, ca0, ca1)
  STORE_ROW(11, 2, cb0, cb1)
}
#undef STORE_ROW

KERNEL512 static void half_rows512(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J,
                                   int cols, int acc) {
  half_body(c, ldc, a, a + MR * a_rs, a_rs, 1, bp, rows, J, cols, acc);
}

KERNEL512 static void half_packed512(float *c, long ldc, const float *ap, const float *ap_next, const float *bp,
                                     int rows, int J, int cols, int acc) {
  half_body(c, ldc, ap, ap_next, 1, MR, bp, rows, J, cols, acc);
}

/* The tiles for CPUs without AVX-512 (and KEEL_CPU=avx2|portable): the same C (rows x cols)
 * += A B over a panel chunk, as slices of two vectors' width (AVX2: 16 columns; portable: 8)
 * and six rows, in 12 vector accumulators, which the 16 registers hold (the 16-float tiles
 * above, compiled for AVX2, spilled theirs and ran at 3 GFLOP/s). A row block of up to 12
 * (the narrow last panel's) is two of them. */
typedef float v4 __attribute__((vector_size(16), aligned(4)));
#define NSTORE(r, x, y, V, VW)                                                                 \
  if (rows > r) {                                                                              \
    float *cr = c + (long)(r) * ldc + s0;                                                      \
    if (w == 2 * VW && acc) {                                                                  \
      *(V *)cr += x, *(V *)(cr + VW) += y;                                                     \
    } else if (w == 2 * VW) {                                                                  \
      *(V *)cr = x, *(V *)(cr + VW) = y;                                                       \
    } else {                                                                                   \
      for (int k = 0; k < w; k++) cr[k] = (acc ? cr[k] : 0.0f) + (k < VW ? x[k] : y[k - VW]); \
    }                                                                                          \
  }
#define NARROW_BODY(NAME, V, VW)                                                                                     \
  static inline __attribute__((always_inline)) void NAME(float *c, long ldc, const float *a, long a_rs, long a_cs,   \
                                                         const float *bp, int rows, int J, int cols, int acc) {     \
    const float *a0 = a, *a1 = a + (rows > 1) * a_rs, *a2 = a + (rows > 2 ? 2 : rows - 1) * a_rs,                 \
                *a3 = a + (rows > 3 ? 3 : rows - 1) * a_rs, *a4 = a + (rows > 4 ? 4 : rows - 1) * a_rs,           \
                *a5 = a + (rows > 5 ? 5 : rows - 1) * a_rs;                                                         \
    for (int s0 = 0; s0 < cols; s0 += 2 * VW) {                                                                     \
      V c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};                                           \
      V c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};                                           \
      for (int j = 0; j < J; j++) {                                                                                 \
        const float *bj = bp + (long)j * NR + s0;                                                                   \
        V b0 = *(const V *)bj, b1 = *(const V *)(bj + VW);                                                          \
        long o = (long)j * a_cs;                                                                                    \
        float t;                                                                                                    \
        t = a0[o], c00 += t * b0, c01 += t * b1;                                                                    \
        t = a1[o], c10 += t * b0, c11 += t * b1;                                                                    \
        t = a2[o], c20 += t * b0, c21 += t * b1;                                                                    \
        t = a3[o], c30 += t * b0, c31 += t * b1;                                                                    \
        t = a4[o], c40 += t * b0, c41 += t * b1;                                                                    \
        t = a5[o], c50 += t * b0, c51 += t * b1;                                                                    \
      }                                                                                                             \
      int w = cols - s0 < 2 * VW ? cols - s0 : 2 * VW;                                                              \
      NSTORE(0, c00, c01, V, VW)                                                                                    \
      NSTORE(1, c10, c11, V, VW)                                                                                    \
      NSTORE(2, c20, c21, V, VW)                                                                                    \
      NSTORE(3, c30, c31, V, VW)                                                                                    \
      NSTORE(4, c40, c41, V, VW)                                                                                    \
      NSTORE(5, c50, c51, V, VW)                                                                                    \
    }                                                                                                               \
  }
NARROW_BODY(narrow_body256, v8, 8)
NARROW_BODY(narrow_body128, v4, 4)
#undef NARROW_BODY
#undef NSTORE

#define NARROW_TILES(SUF, ATTR)                                                                                    \
  ATTR static void tile_rows##SUF(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J, \
                                  int cols, int acc, const float *pf, int pf_rows, const ahead *nx) {              \
    narrow_body##SUF(c, ldc, a, a_rs, 1, bp, rows, J, cols, acc);                                                  \
  }                                                                                                                \
  ATTR static void tile_packed##SUF(float *c, long ldc, const float *ap, const float *bp, int rows, int J,         \
                                    int cols, int acc, const float *pf, const ahead *nx) {                         \
    narrow_body##SUF(c, ldc, ap, 1, MR, bp, rows, J, cols, acc);                                                   \
  }                                                                                                                \
  ATTR static void half_rows##SUF(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J, \
                                  int cols, int acc) {                                                             \
    narrow_body##SUF(c, ldc, a, a_rs, 1, bp, rows < MR ? rows : MR, J, cols, acc);                                 \
    if (rows > MR) narrow_body##SUF(c + MR * ldc, ldc, a + MR * a_rs, a_rs, 1, bp, rows - MR, J, cols, acc);       \
  }                                                                                                                \
  ATTR static void half_packed##SUF(float *c, long ldc, const float *ap, const float *ap_next, const float *bp,    \
                                    int rows, int J, int cols, int acc) {                                          \
    narrow_body##SUF(c, ldc, ap, 1, MR, bp, rows < MR ? rows : MR, J, cols, acc);                                  \
    if (rows > MR) narrow_body##SUF(c + MR * ldc, ldc, ap_next, 1, MR, bp, rows - MR, J, cols, acc);               \
  }
NARROW_TILES(256, KERNEL256)
NARROW_TILES(128, KERNEL128)
#undef NARROW_TILES

/* The tiles of the ISA the kernels run (keel_cpu_isa). */
typedef struct tiles {
  void (*rows)(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J, int cols, int acc,
               const float *pf, int pf_rows, const ahead *nx);
  void (*packed)(float *c, long ldc, const float *ap, const float *bp, int rows, int J, int cols, int acc,
                 const float *pf, const ahead *nx);
  void (*half_rows)(float *c, long ldc, const float *a, long a_rs, const float *bp, int rows, int J, int cols, int acc);
  void (*half_packed)(float *c, long ldc, const float *ap, const float *ap_next, const float *bp, int rows, int J,
                      int cols, int acc);
} tiles;

static const tiles *the_tiles(void) {
  static const tiles t512 = {tile_rows512, tile_packed512, half_rows512, half_packed512},
                     t256 = {tile_rows256, tile_packed256, half_rows256, half_packed256},
                     t128 = {tile_rows128, tile_packed128, half_rows128, half_packed128};
  keel_isa isa = keel_cpu_isa();
  return isa == KEEL_ISA_AVX512 ? &t512 : isa == KEEL_ISA_AVX2 ? &t256 : &t128;
}

/* The lines of panel p's source in B (rows [js, js + jn)), to be fetched ahead of its packing:
 * its rows when B's rows are contiguous, its columns when its columns are. */
static ahead panel_source(const keel_gemm_b *b, int js, int jn, int p, int S) {
  int w = S - p * NR < NR ? S - p * NR : NR;
  if (b->w) return (ahead){0};
  if (b->cs == 1) {
    int per = (w + 15) / 16;
    return (ahead){(const char *)(b->b + (long)js * b->rs + (long)p * NR), b->rs * (long)sizeof(float), jn * per, per};
  }
  if (b->rs == 1) {
    int per = (jn + 15) / 16;
    return (ahead){(const char *)(b->b + js + (long)p * NR * b->cs), b->cs * (long)sizeof(float), w * per, per};
  }
  return (ahead){0};
}

/* Tile t's share (of n tiles) of the lines of src, in whole rows. */
static ahead tile_share(ahead src, int t, int n) {
  if (!src.n) return src;
  int rows = src.n / src.per, each = (rows + n - 1) / n, r0 = t * each, r1 = r0 + each < rows ? r0 + each : rows;
  if (r0 >= r1) return (ahead){0};
  return (ahead){src.p + r0 * src.rs, src.rs, (r1 - r0) * src.per, src.per};
}

void keel_cpu_gemm_pack(float *dst, long ps, const keel_gemm_b *b, int J, int S) {
  for (int p = 0; p < (S + NR - 1) / NR; p++) pack_panel(dst + (long)p * ps, b, 0, J, p * NR, S);
}

void keel_cpu_gemm(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R, int J,
                   int S, int acc) {
  keel_gemm_run(c, ldc, a, a_rs, a_cs, b, R, J, S, acc, (ahead){0});
}

/* C += the parts k = 1.. of its rows [r0, r1), in order. */
static void parts_into_c(float *c, long ldc, const float *part, int R, int S, int nk, int r0, int r1) {
  for (int r = r0; r < r1; r++)
    for (int k = 1; k < nk; k++) {
      float *cr = c + (long)r * ldc;
      const float *pr = part + ((size_t)(k - 1) * R + r) * S;
#pragma omp simd
      for (int s = 0; s < S; s++) cr[s] += pr[s];
    }
}

/* A GEMM's work once set up, handed to the threads as units. */
typedef struct job {
  float *c, *ap, *part;
  const float *a;
  const keel_gemm_b *b;
  long ldc, a_rs;
  int R, J, S, acc, super, nk, kp, kcs;
  ahead warm;
  int unit; /* the next unit of work, handed to whichever thread is free */
} job;

/* One of nt threads' part of j: units until none is left. */
static void run_units(job *j, int nt) {
  float *c = j->c, *ap = j->ap, *part = j->part;
  const float *a = j->a;
  const keel_gemm_b *b = j->b;
  long ldc = j->ldc, a_rs = j->a_rs, budget = L2B / (long)sizeof(float), most = budget / ((long)KC * NR);
  int R = j->R, J = j->J, S = j->S, acc = j->acc, super = j->super, nk = j->nk, kp = j->kp, kcs = j->kcs;
  int np = (S + NR - 1) / NR, nb = (R + MR - 1) / MR;
  ahead warm = j->warm;
  const tiles *tk = the_tiles();
  keel_gemm_bufs *t = keel_gemm_my_bufs();
  /* a group: as many panels of J rows as fit the budget; past it, a thread's share of the
   * panels (at most `most`, the panels of one chunk each that fit) in super-chunks of jc rows;
   * then groups of equal size */
  int jc = J, gp = (int)(budget / ((long)J * NR)), share = (np + nt - 1) / nt;
  if (b->packed) {
    gp = share; /* nothing to pack */
  } else if (super) {
    gp = share < most ? share : (int)most;
    jc = (int)(budget / ((long)gp * NR) / KC * KC);
  }
  int ng = (np + gp - 1) / gp;
  gp = (np + ng - 1) / ng;
  /* a unit: a group over a range of rows. Few groups are split by rows as well, so that a
   * thread that runs slower (on a core shared with other work) is evened out by the other
   * taking more units; a range keeps >= 4 blocks, so re-packing its group's B stays small. */
  int nr = 1;
  if (nt > 1 && !super && ng < 4 * nt) {
    nr = (4 * nt + ng - 1) / ng;
    if (nr > R / (4 * MC)) nr = R / (4 * MC) > 1 ? R / (4 * MC) : 1;
    while (nr > 1 && ng * nr > nt && ng * nr % nt) nr--; /* as many units for each thread */
    if (ng * nr < nt) { /* a thread would be idle: ranges of fewer blocks, one per thread */
      nr = (nt + ng - 1) / ng;
      if (nr > (R + MC - 1) / MC) nr = (R + MC - 1) / MC;
    }
  }
  /* too few rows to split and fewer groups than 4 per thread: smaller groups until the threads
   * share them evenly (3 groups on 2 threads had left one idle a third of the time: dw 1024 x
   * 384 x 128 1.26x, dx 128 x 1024 x 384 1.22x; the sums do not change) */
  if (nr == 1 && nt > 1 && !super && !b->packed && ng < 4 * nt)
    while (ng % nt && gp > 1) gp--, ng = (np + gp - 1) / gp, gp = (np + ng - 1) / ng;
  /* the ranges: the row blocks shared out, the larger ranges first (R 1024, 4 ranges: 6, 6, 5
   * and 5 blocks, not 6, 6, 6 and 4: one thread had waited on the other for a fifth of the
   * time, and with 5 ranges for two threads for 38% of it, MLA's kv_b forward) */
  int nbk = (R + MC - 1) / MC, held = -1; /* held: the group packed in t->b */
  if (nr > nbk) nr = nbk;
  int bq = nbk / nr, brem = nbk % nr;
  for (;;) {
    int u;
#pragma omp atomic capture
    u = j->unit++;
    if (u >= ng * nr * nk) break;
    int g = u / (nr * nk), g0 = g * gp, g1 = g0 + gp < np ? g0 + gp : np, ri = u / nk % nr;
    int r_lo = (ri * bq + (ri < brem ? ri : brem)) * MC, r_hi = r_lo + (bq + (ri < brem)) * MC;
    if (r_hi > R) r_hi = R;
    int k = u % nk, j_lo = k * kp, j_hi = J - j_lo < kp ? J : j_lo + kp;
    float *cu = k ? part + (size_t)(k - 1) * R * S : c; /* this unit's C, row stride lc */
    long lc = k ? S : ldc;
    int acc0 = k ? 0 : acc; /* whether the part's first chunk adds */
    for (int js = j_lo; js < j_hi; js += jc) {
      int jn = j_hi - js < jc ? j_hi - js : jc;
      const float *bp = t->b; /* the group's panels, ps floats apart */
      long ps = (long)jn * NR;
      int lazy = 0; /* the group's panels past its first are packed as the first block reaches them */
      if (b->packed) {
        bp = b->packed + (long)g0 * b->ps, ps = b->ps;
      } else if (held != g || super) {
        /* with few rows (B's packing a large part of the work), a group packed afresh packs
         * its first panel now and each other one just before the unit's first block uses it,
         * its source fetched by the tiles of the panel before: an expert's dx, its weight
         * fresh from memory, 64-480 rows, 1.15-1.02x; 1024 rows gained nothing */
        lazy = !super && R <= 512;
        float *mine = keel_gemm_grow(&t->b, &t->b_cap, (size_t)(g1 - g0) * jn * NR);
        for (int p = g0; p < (lazy ? g0 + 1 : g1); p++)
          pack_panel(mine + (long)(p - g0) * jn * NR, b, js, jn, p * NR, S);
        bp = mine, held = super ? -1 : g;
      }
      /* the group's panels run in 6 x 64 tiles (those fetch; a last one of 32 columns does not) */
      int full = g1 == np && S - (np - 1) * NR <= 32 ? g1 - g0 - 1 : g1 - g0;
      for (int i0 = r_lo; i0 < r_hi; i0 += MC) {
        int i1 = r_hi - i0 < MC ? r_hi : i0 + MC, first = lazy && i0 == r_lo;
        for (int p = g0; p < g1; p++) {
          /* src: the lines this block's tiles fetch, tile tn of nf taking its share */
          int cols = S - p * NR < NR ? S - p * NR : NR, nf = (i1 - i0 + MR - 1) / MR * ((jn + kcs - 1) / kcs), tn = 0;
          ahead src = {0};
          if (first && p > g0) pack_panel(t->b + (long)(p - g0) * ps, b, js, jn, p * NR, S);
          if (first && p + 1 < np) /* the next panel's, maybe the next group's first */
            src = panel_source(b, js, jn, p + 1, S);
          else if (warm.n && !first && cols > 32) /* this unit's share of warm, this block's of it */
            src = tile_share(tile_share(warm, u, ng * nr * nk), ((i0 - r_lo) / MC - lazy) * full + p - g0,
                             ((r_hi - r_lo + MC - 1) / MC - lazy) * full);
          for (int j0 = js; j0 < js + jn; j0 += kcs) {
            int kc = j_hi - j0 < kcs ? j_hi - j0 : kcs, add = acc0 || j0 > j_lo;
            const float *bc = bp + (long)(p - g0) * ps + (long)(j0 - js) * NR;
            if (cols <= 32) { /* a narrow last panel: 12-row tiles */
              for (int r0 = i0; r0 < i1; r0 += 2 * MR) {
                float *ct = cu + (long)r0 * lc + (long)p * NR;
                int rows = R - r0 < 2 * MR ? R - r0 : 2 * MR;
                if (ap) {
                  const float *chunk = ap + (long)nb * j0 * MR;
                  const float *lo = chunk + (long)r0 * kc, *hi = rows > MR ? lo + (long)MR * kc : lo;
                  tk->half_packed(ct, lc, lo, hi, bc, rows, kc, cols, add);
                } else {
                  tk->half_rows(ct, lc, a + (long)r0 * a_rs + j0, a_rs, bc, rows, kc, cols, add);
                }
              }
              continue;
            }
            for (int r0 = i0; r0 < i1; r0 += MR) {
              float *ct = cu + (long)r0 * lc + (long)p * NR;
              int rows = R - r0 < MR ? R - r0 : MR, next = r0 + MR < R ? r0 + MR : r0; /* next tile's first row */
              int next_rows = R - next < MR ? R - next : MR;
              ahead nx = tile_share(src, tn++, nf);
              if (ap) {
                const float *chunk = ap + (long)nb * j0 * MR; /* nb micro-panels of kc x MR */
                tk->packed(ct, lc, chunk + (long)r0 * kc, bc, rows, kc, cols, add, chunk + (long)next * kc, &nx);
              } else {
                tk->rows(ct, lc, a + (long)r0 * a_rs + j0, a_rs, bc, rows, kc, cols, add,
                          a + (long)next * a_rs + j0, next_rows, &nx);
              }
            }
          }
        }
      }
    }
  }
  if (nk > 1 && nt == 1) parts_into_c(c, ldc, part, R, S, nk, 0, R);
  if (nk > 1 && nt > 1) { /* C += the parts, in order */
#pragma omp barrier
#pragma omp for schedule(static)
    for (int r = 0; r < R; r++) parts_into_c(c, ldc, part, R, S, nk, r, r + 1);
  }
}

void keel_gemm_run(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R, int J,
                   int S, int acc, ahead warm) {
  int nb = (R + MR - 1) / MR;
  if (J == 0 && !acc)
    for (int r = 0; r < R; r++) memset(c + (long)r * ldc, 0, (size_t)S * sizeof *c);
  if (R <= 0 || J <= 0 || S <= 0) return;
  if (keel_gemm_transposed(c, ldc, a, a_rs, a_cs, b, R, J, S, acc)) return;
  /* budget: floats of packed B a thread keeps. Past it (one panel of J rows does not fit), B is
   * packed in super-chunks of J, and J is also split in nk parts of kp rows: part 0 adds into
   * C, part k > 0 into its own R x S buffer, added to C in order at the end. The parts depend
   * on the shape only, so the sums do not depend on the thread count; they give a few large
   * units more, smaller ones. */
  long budget = L2B / (long)sizeof(float);
  int super = !b->packed && (long)J * NR > budget, nk = 1, kp = J;
  /* chunks of equal depth, at most KCF (J 1100: two of 550, not 1024 and 76, whose short tiles
   * would run at a fraction of the others' speed); past the budget, KC exactly */
  int nch = (J + KCF - 1) / KCF, kcs = super ? KC : (J + nch - 1) / nch;
  float *ap = NULL;
  if (a_cs != 1) { /* A is read down its columns: pack it, chunk by chunk */
    keel_gemm_bufs *mine = keel_gemm_my_bufs();
    ap = keel_gemm_grow(&mine->a, &mine->a_cap, (size_t)nb * J * MR);
    for (int j0 = 0; j0 < J; j0 += kcs)
      pack_a(ap + (long)nb * j0 * MR, a, a_rs, a_cs, R, j0, J - j0 < kcs ? J - j0 : kcs);
  }
  float *part = NULL;
  if (super) {
    long room = (16L << 20) / ((long)R * S); /* partial sums of at most 64 MB */
    nk = room < 3 ? (int)room + 1 : 4;
    kp = ((J + nk - 1) / nk + KC - 1) / KC * KC;
    nk = (J + kp - 1) / kp;
    if (nk > 1) {
      keel_gemm_bufs *mine = keel_gemm_my_bufs();
      part = keel_gemm_grow(&mine->part, &mine->part_cap, (size_t)(nk - 1) * R * S);
    }
  }
  job jb = {c, ap, part, a, b, ldc, a_rs, R, J, S, acc, super, nk, kp, kcs, warm, 0};
  /* a thread's own GEMM (an expert's, an attention head's) opens no region of one thread: about
   * 1 us each, 2-3% of the attention core's time (9 layers, 6 pairs of runs: forward 0.970x,
   * backward 0.976x) */
  if (omp_in_parallel()) {
    run_units(&jb, 1);
    return;
  }
#pragma omp parallel
  run_units(&jb, omp_get_num_threads());
}
