/* ABFT checksums around an inner backend's GEMMs. Sums are taken in double. */
#include "abft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/rng.h"

static const keel_backend *inner;
static keel_backend wrapped;
static keel_abft_stats stats;
static double tol = 1e-7;
static int armed;
static uint64_t arm_seed;
static double *arm_changed;

keel_abft_stats *keel_abft_get_stats(void) { return &stats; }
void keel_abft_set_tolerance(double t) { tol = t; }

void keel_abft_arm_flip(uint64_t seed, double *changed) {
  armed = 1;
  arm_seed = seed;
  arm_changed = changed;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define BS 64 /* checksums cover 64-wide blocks: finer blocks see smaller flips */

typedef struct csums {
  double *row; /* (R, nq) sums of C over each 64-column block of each row */
  double *col; /* (np, S) sums of C over each 64-row block of each column */
} csums;

static csums block_sums(const float *c, int R, int S) {
  int nq = (S + BS - 1) / BS, np = (R + BS - 1) / BS;
  csums k = {calloc((size_t)R * nq + 1, sizeof(double)), calloc((size_t)np * S + 1, sizeof(double))};
  if (!k.row || !k.col) abort();
  for (int r = 0; r < R; r++)
    for (int s = 0; s < S; s++) {
      double v = c[(long)r * S + s];
      k.row[(long)r * nq + s / BS] += v;
      k.col[(long)(r / BS) * S + s] += v;
    }
  return k;
}

/* Checks that C - C_before (R x S) = A (R x J) B (J x S), with A[r][j] = a[r*ars + j*acs]
 * and B[j][s] = b[j*brs + s*bcs], by 64-wide row-block and column-block checksums.
 * before: sums of C before an accumulating product (NULL: C was overwritten). */
static int check(const float *c, const csums *before, int R, int S, const float *a, long ars, long acs,
                 const float *b, long brs, long bcs, int J) {
  int nq = (S + BS - 1) / BS, np = (R + BS - 1) / BS;
  csums now_ = block_sums(c, R, S);
  /* B summed over each column block, A over each row block (values and absolute values) */
  double *bq = calloc((size_t)J * nq * 2, sizeof(double)), *ap = calloc((size_t)J * np * 2, sizeof(double));
  if (!bq || !ap) abort();
  double *bqa = bq + (size_t)J * nq, *apa = ap + (size_t)J * np;
  for (int j = 0; j < J; j++)
    for (int s = 0; s < S; s++) {
      double v = b[j * brs + s * bcs];
      bq[(long)j * nq + s / BS] += v, bqa[(long)j * nq + s / BS] += fabs(v);
    }
  for (int r = 0; r < R; r++)
    for (int j = 0; j < J; j++) {
      double v = a[r * ars + j * acs];
      ap[(long)j * np + r / BS] += v, apa[(long)j * np + r / BS] += fabs(v);
    }
  int ok = 1;
  for (int r = 0; r < R && ok; r++)
    for (int q = 0; q < nq && ok; q++) {
      double got = now_.row[(long)r * nq + q] - (before ? before->row[(long)r * nq + q] : 0), pred = 0, scale = 0;
      for (int j = 0; j < J; j++) {
        double v = a[r * ars + j * acs];
        pred += v * bq[(long)j * nq + q], scale += fabs(v) * bqa[(long)j * nq + q];
      }
      ok = fabs(got - pred) <= tol * scale + 1e-30;
    }
  for (int p = 0; p < np && ok; p++)
    for (int s2 = 0; s2 < S && ok; s2++) {
      double got = now_.col[(long)p * S + s2] - (before ? before->col[(long)p * S + s2] : 0), pred = 0, scale = 0;
      for (int j = 0; j < J; j++) {
        double v = b[j * brs + s2 * bcs];
        pred += ap[(long)j * np + p] * v, scale += apa[(long)j * np + p] * fabs(v);
      }
      ok = fabs(got - pred) <= tol * scale + 1e-30;
    }
  free(now_.row), free(now_.col), free(bq), free(ap);
  return ok;
}

static void flip(float *out, long n) {
  keel_rng r;
  keel_rng_init(&r, keel_rng_key(arm_seed, 0, 0, 99));
  long i = (long)keel_rng_below(&r, (uint64_t)n);
  int bit = (int)keel_rng_below(&r, 32);
  float old = out[i];
  uint32_t u;
  memcpy(&u, &out[i], 4);
  u ^= 1u << bit;
  memcpy(&out[i], &u, 4);
  if (arm_changed) *arm_changed = old != 0 ? fabs((double)out[i] - old) / fabs(old) : INFINITY;
  armed = 0;
}

static void matmul(float *out, const float *x, const float *w, int N, int K, int M, int accumulate) {
  double t0 = now();
  csums before = {0};
  if (accumulate) before = block_sums(out, N, M);
  stats.seconds += now() - t0;
  inner->matmul(out, x, w, N, K, M, accumulate);
  if (armed) flip(out, (long)N * M);
  t0 = now();
  stats.checks++;
  /* out = x (N x K) . w^T (K x M): B[k][m] = w[m*K + k] */
  if (!check(out, accumulate ? &before : NULL, N, M, x, K, 1, w, 1, K, K)) stats.detections++;
  free(before.row), free(before.col);
  stats.seconds += now() - t0;
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  double t0 = now();
  csums bx = {0}, bw = {0};
  if (dx) bx = block_sums(dx, N, K);
  if (dw) bw = block_sums(dw, M, K);
  stats.seconds += now() - t0;
  inner->matmul_backward(dx, dw, dout, x, w, N, K, M);
  t0 = now();
  /* dx (N x K) += dout (N x M) . w (M x K) */
  if (dx) {
    stats.checks++;
    if (!check(dx, &bx, N, K, dout, M, 1, w, K, 1, M)) stats.detections++;
  }
  /* dw (M x K) += dout^T (M x N) . x (N x K) */
  if (dw) {
    stats.checks++;
    if (!check(dw, &bw, M, K, dout, 1, M, x, K, 1, N)) stats.detections++;
  }
  free(bx.row), free(bx.col), free(bw.row), free(bw.col);
  stats.seconds += now() - t0;
}

const keel_backend *keel_backend_abft(const keel_backend *in) {
  inner = in;
  wrapped = *in;
  wrapped.name = "abft";
  wrapped.matmul = matmul;
  wrapped.matmul_backward = matmul_backward;
  return &wrapped;
}
