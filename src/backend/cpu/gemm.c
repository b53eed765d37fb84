/* The packed GEMM: C (R x S, row stride ldc) += A (R x J) B (J x S). B is
 * packed into panels of 64 columns (J x 64, contiguous, zero-padded; a typed
 * weight is dequantised while packing) and A into 6-row micro-panels; each
 * panel is walked in chunks of KC rows that stay in L2 while a 6 x 64
 * register tile (24 vector accumulators) runs over them. Threads take whole
 * panels, so every C element is summed in the same order whatever the thread
 * count. Packing buffers belong to each thread and are kept between calls. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "simd.h"

#define NR 64  /* columns of a panel */
#define MR 6   /* rows of a register tile */
#define KC 384 /* rows of a panel chunk */

/* A per-thread buffer that only grows. */
static float *scratch(float **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    *buf = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!*buf) abort();
    *cap = n;
  }
  return *buf;
}

/* Each thread's packing buffers, freed when the thread ends. */
typedef struct bufs {
  float *a, *b, *row;
  size_t a_cap, b_cap, row_cap;
} bufs;

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *p) {
  bufs *t = p;
  free(t->a), free(t->b), free(t->row), free(t);
}

static void bufs_init(void) { pthread_key_create(&bufs_key, bufs_free); }

static bufs *my_bufs(void) {
  pthread_once(&bufs_once, bufs_init);
  bufs *t = pthread_getspecific(bufs_key);
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) abort();
    pthread_setspecific(bufs_key, t);
  }
  return t;
}

KERNEL static void pack_panel(float *dst, const keel_gemm_b *b, int J, int s0, int S) {
  int w = S - s0 < NR ? S - s0 : NR;
  if (b->w && b->w_rows) { /* typed weight, row j of w is row j of B */
    bufs *t = my_bufs();
    float *row = scratch(&t->row, &t->row_cap, (size_t)b->w->K);
    for (int j = 0; j < J; j++) {
      keel_cpu_wmat_row(row, b->w, j);
      memcpy(dst + (long)j * NR, row + s0, (size_t)w * sizeof *dst);
      for (int c = w; c < NR; c++) dst[(long)j * NR + c] = 0;
    }
    return;
  }
  if (b->w) { /* typed weight: row s of w is column s of B; 16 rows dequantised, then written across */
    bufs *t = my_bufs();
    float *rows = scratch(&t->row, &t->row_cap, (size_t)16 * J);
    for (int c0 = 0; c0 < NR; c0 += 16) {
      int n = w - c0 < 16 ? (w - c0 > 0 ? w - c0 : 0) : 16;
      for (int c = 0; c < n; c++) keel_cpu_wmat_row(rows + (long)c * J, b->w, s0 + c0 + c);
      for (int j = 0; j < J; j++) {
        float *d = dst + (long)j * NR + c0;
        for (int c = 0; c < n; c++) d[c] = rows[(long)c * J + j];
        for (int c = n; c < 16; c++) d[c] = 0;
      }
    }
    return;
  }
  for (int j = 0; j < J; j++) {
    float *d = dst + (long)j * NR;
    const float *src = b->b + j * b->rs + (long)s0 * b->cs;
    if (b->cs == 1) {
      memcpy(d, src, (size_t)w * sizeof *d);
    } else {
      for (int c = 0; c < w; c++) d[c] = src[(long)c * b->cs];
    }
    for (int c = w; c < NR; c++) d[c] = 0;
  }
}

/* A packed as MR-row micro-panels: ap[rb][j][0..MR), zero-padded. */
static void pack_a(float *ap, const float *a, long a_rs, long a_cs, int R, int J) {
  int nb = (R + MR - 1) / MR;
#pragma omp parallel for schedule(static)
  for (int rb = 0; rb < nb; rb++) {
    float *d = ap + (long)rb * J * MR;
    for (int j = 0; j < J; j++)
      for (int r = 0; r < MR; r++) {
        int row = rb * MR + r;
        d[(long)j * MR + r] = row < R ? a[row * a_rs + j * a_cs] : 0.0f;
      }
  }
}

KERNEL static void tile(float *c, long ldc, const float *ap, const float *bp, int rows, int J, int cols) {
  v16 c00 = {0}, c01 = {0}, c02 = {0}, c03 = {0}, c10 = {0}, c11 = {0}, c12 = {0}, c13 = {0};
  v16 c20 = {0}, c21 = {0}, c22 = {0}, c23 = {0}, c30 = {0}, c31 = {0}, c32 = {0}, c33 = {0};
  v16 c40 = {0}, c41 = {0}, c42 = {0}, c43 = {0}, c50 = {0}, c51 = {0}, c52 = {0}, c53 = {0};
  for (int j = 0; j < J; j++) {
    const float *bj = bp + (long)j * NR;
    v16 b0 = *(const v16 *)bj, b1 = *(const v16 *)(bj + 16), b2 = *(const v16 *)(bj + 32), b3 = *(const v16 *)(bj + 48);
    const float *aj = ap + (long)j * MR;
    float s;
    s = aj[0], c00 += s * b0, c01 += s * b1, c02 += s * b2, c03 += s * b3;
    s = aj[1], c10 += s * b0, c11 += s * b1, c12 += s * b2, c13 += s * b3;
    s = aj[2], c20 += s * b0, c21 += s * b1, c22 += s * b2, c23 += s * b3;
    s = aj[3], c30 += s * b0, c31 += s * b1, c32 += s * b2, c33 += s * b3;
    s = aj[4], c40 += s * b0, c41 += s * b1, c42 += s * b2, c43 += s * b3;
    s = aj[5], c50 += s * b0, c51 += s * b1, c52 += s * b2, c53 += s * b3;
  }
  /* accumulators stay in registers: no address is taken, each row is stored by name */
#define STORE_ROW(r, x0, x1, x2, x3)                                                  \
  if (rows > r) {                                                                     \
    float *cr = c + (long)(r) * ldc;                                                  \
    if (cols == NR) {                                                                 \
      *(v16 *)cr += x0, *(v16 *)(cr + 16) += x1, *(v16 *)(cr + 32) += x2, *(v16 *)(cr + 48) += x3; \
    } else {                                                                          \
      v16 t[4] = {x0, x1, x2, x3};                                                    \
      for (int k = 0; k < cols; k++) cr[k] += t[k / 16][k % 16];                      \
    }                                                                                 \
  }
  STORE_ROW(0, c00, c01, c02, c03)
  STORE_ROW(1, c10, c11, c12, c13)
  STORE_ROW(2, c20, c21, c22, c23)
  STORE_ROW(3, c30, c31, c32, c33)
  STORE_ROW(4, c40, c41, c42, c43)
  STORE_ROW(5, c50, c51, c52, c53)
#undef STORE_ROW
}

void keel_cpu_gemm(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R, int J,
                   int S) {
  int np = (S + NR - 1) / NR, nb = (R + MR - 1) / MR;
  bufs *mine = my_bufs();
  float *ap = scratch(&mine->a, &mine->a_cap, (size_t)nb * J * MR);
  pack_a(ap, a, a_rs, a_cs, R, J);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < np; p++) {
    bufs *t = my_bufs();
    float *bp = scratch(&t->b, &t->b_cap, (size_t)J * NR);
    pack_panel(bp, b, J, p * NR, S);
    int cols = S - p * NR < NR ? S - p * NR : NR;
    for (int j0 = 0; j0 < J; j0 += KC) {
      int kc = J - j0 < KC ? J - j0 : KC;
      for (int r0 = 0; r0 < R; r0 += MR)
        tile(c + (long)r0 * ldc + (long)p * NR, ldc, ap + ((long)(r0 / MR) * J + j0) * MR, bp + (long)j0 * NR,
             R - r0 < MR ? R - r0 : MR, kc, cols);
    }
  }
}
