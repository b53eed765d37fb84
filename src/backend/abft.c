/* ABFT checksums around an inner backend's GEMMs. Sums are taken in double. */
#include "../core/clock.h"
#include "../core/cpu.h"
#include "abft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/rng.h"

static const keel_backend *inner;
static keel_backend wrapped;
static keel_abft_stats stats;
static double tol = 2.5e-7;
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

#define BS 16 /* checksums cover 16-wide blocks: finer blocks see smaller flips */

typedef struct csums {
  double *row, *row_abs; /* (R, nq) sums of C (and |C|) over each 64-column block of each row */
  double *col, *col_abs; /* (np, S) sums over each 64-row block of each column */
} csums;

static csums block_sums(const float *c, int R, int S) {
  int nq = (S + BS - 1) / BS, np = (R + BS - 1) / BS;
  csums k = {calloc((size_t)R * nq * 2 + 1, sizeof(double)), NULL, calloc((size_t)np * S * 2 + 1, sizeof(double)), NULL};
  if (!k.row || !k.col) abort();
  k.row_abs = k.row + (size_t)R * nq;
  k.col_abs = k.col + (size_t)np * S;
  for (int r = 0; r < R; r++) {
    const float *cr = c + (long)r * S;
    double *col = k.col + (long)(r / BS) * S, *cola = k.col_abs + (long)(r / BS) * S;
    for (int s = 0; s < S; s++) col[s] += cr[s], cola[s] += fabs((double)cr[s]);
    for (int q = 0; q < nq; q++) {
      double v = 0, va = 0;
      for (int s = q * BS; s < (q + 1) * BS && s < S; s++) v += cr[s], va += fabs((double)cr[s]);
      k.row[(long)r * nq + q] = v, k.row_abs[(long)r * nq + q] = va;
    }
  }
  return k;
}

/* Adding into C rounds each element once more, by up to half an ulp of its value. */
#define ACC_ROUNDING 1.2e-7

#define KERNEL __attribute__((KEEL_CLONES))

/* pred[r][q] (and with absolute values) = sum_j A[r][j] Bq[j][q] for the row-block checks. */
KERNEL static void row_pred(double *pred, double *pabs, const float *a, long ars, long acs, const double *bq,
                            const double *bqa, int R, int J, int nq) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < R; r++) {
    double *p = pred + (long)r * nq, *pa = pabs + (long)r * nq;
    for (int q = 0; q < nq; q++) p[q] = pa[q] = 0;
    for (int j = 0; j < J; j++) {
      double v = a[r * ars + j * acs], av = fabs(v);
      const double *b = bq + (long)j * nq, *ba = bqa + (long)j * nq;
      for (int q = 0; q < nq; q++) p[q] += v * b[q], pa[q] += av * ba[q];
    }
  }
}

/* pred[p][s] (and absolute) = sum_j Ap[p][j] B[j][s] for the column-block checks. */
KERNEL static void col_pred(double *pred, double *pabs, const double *ap, const double *apa, const float *b, long brs,
                            long bcs, int np, int J, int S) {
#pragma omp parallel for schedule(static)
  for (int p = 0; p < np; p++) {
    double *o = pred + (long)p * S, *oa = pabs + (long)p * S;
    if (bcs == 1) { /* rows of B contiguous: stream them */
      for (int s = 0; s < S; s++) o[s] = oa[s] = 0;
      for (int j = 0; j < J; j++) {
        double c = ap[(long)p * J + j], ca = apa[(long)p * J + j];
        const float *bj = b + j * brs;
        for (int s = 0; s < S; s++) o[s] += c * bj[s], oa[s] += ca * fabs((double)bj[s]);
      }
    } else { /* columns of B contiguous (B = w^T): handled below, all p at once */
      (void)o, (void)oa;
    }
  }
  if (bcs == 1) return;
#pragma omp parallel for schedule(static)
  for (int s = 0; s < S; s++) {
    double acc[np], acca[np];
    for (int p = 0; p < np; p++) acc[p] = acca[p] = 0;
    const float *bs = b + s * bcs;
    for (int p = 0; p < np; p++) {
      const double *a = ap + (long)p * J, *aa = apa + (long)p * J;
      double x = 0, xa = 0;
      for (int j = 0; j < J; j++) {
        double v = bs[j * brs];
        x += a[j] * v, xa += aa[j] * fabs(v);
      }
      acc[p] = x, acca[p] = xa;
    }
    for (int p = 0; p < np; p++) pred[(long)p * S + s] = acc[p], pabs[(long)p * S + s] = acca[p];
  }
}

/* Checks that C - C_before (R x S) = A (R x J) B (J x S), with A[r][j] = a[r*ars + j*acs]
 * and B[j][s] = b[j*brs + s*bcs], by row-block and column-block checksums.
 * before: sums of C before an accumulating product (NULL: C was overwritten). */
static int check(const float *c, const csums *before, int R, int S, const float *a, long ars, long acs,
                 const float *b, long brs, long bcs, int J) {
  int nq = (S + BS - 1) / BS, np = (R + BS - 1) / BS;
  csums now_ = block_sums(c, R, S);
  /* B summed over each column block, A over each row block (values and absolute values) */
  double *bq = calloc((size_t)J * nq * 2, sizeof(double)), *ap = calloc((size_t)J * np * 2, sizeof(double));
  double *rp = malloc((size_t)R * nq * 2 * sizeof(double)), *cp = malloc((size_t)np * S * 2 * sizeof(double));
  if (!bq || !ap || !rp || !cp) abort();
  double *bqa = bq + (size_t)J * nq, *apa = ap + (size_t)J * np;
  for (int j = 0; j < J; j++)
    for (int q = 0; q < nq; q++) {
      double v = 0, va = 0;
      for (int s = q * BS; s < (q + 1) * BS && s < S; s++) v += b[j * brs + s * bcs], va += fabs(b[j * brs + s * bcs]);
      bq[(long)j * nq + q] = v, bqa[(long)j * nq + q] = va;
    }
  for (int p = 0; p < np; p++) { /* ap is (np, J) */
    double *row = ap + (long)p * J, *rowa = apa + (long)p * J;
    for (int r = p * BS; r < (p + 1) * BS && r < R; r++)
      for (int j = 0; j < J; j++) {
        double v = a[r * ars + j * acs];
        row[j] += v, rowa[j] += fabs(v);
      }
  }
  row_pred(rp, rp + (size_t)R * nq, a, ars, acs, bq, bqa, R, J, nq);
  col_pred(cp, cp + (size_t)np * S, ap, apa, b, brs, bcs, np, J, S);
  /* rounding in a J-long dot product grows like sqrt(J); a block sum of BS of them averages out by sqrt(BS) */
  double t = tol * sqrt((double)J / BS);
  int ok = 1;
  for (long i = 0; i < (long)R * nq && ok; i++) {
    double got = now_.row[i] - (before ? before->row[i] : 0);
    double acc = before ? ACC_ROUNDING * (before->row_abs[i] + now_.row_abs[i]) : 0;
    ok = fabs(got - rp[i]) <= t * rp[(size_t)R * nq + i] + acc + 1e-30;
  }
  for (long i = 0; i < (long)np * S && ok; i++) {
    double got = now_.col[i] - (before ? before->col[i] : 0);
    double acc = before ? ACC_ROUNDING * (before->col_abs[i] + now_.col_abs[i]) : 0;
    ok = fabs(got - cp[i]) <= t * cp[(size_t)np * S + i] + acc + 1e-30;
  }
  free(now_.row), free(now_.col), free(bq), free(ap), free(rp), free(cp);
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
  double t0 = keel_now();
  csums before = {0};
  if (accumulate) before = block_sums(out, N, M);
  stats.seconds += keel_now() - t0;
  inner->matmul(out, x, w, N, K, M, accumulate);
  if (armed) flip(out, (long)N * M);
  t0 = keel_now();
  stats.checks++;
  /* out = x (N x K) . w^T (K x M): B[k][m] = w[m*K + k] */
  if (!check(out, accumulate ? &before : NULL, N, M, x, K, 1, w, 1, K, K)) stats.detections++;
  free(before.row), free(before.col);
  stats.seconds += keel_now() - t0;
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  double t0 = keel_now();
  csums bx = {0}, bw = {0};
  if (dx) bx = block_sums(dx, N, K);
  if (dw) bw = block_sums(dw, M, K);
  stats.seconds += keel_now() - t0;
  inner->matmul_backward(dx, dw, dout, x, w, N, K, M);
  t0 = keel_now();
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
  stats.seconds += keel_now() - t0;
}

const keel_backend *keel_backend_abft(const keel_backend *in) {
  inner = in;
  wrapped = *in;
  wrapped.name = "abft";
  wrapped.matmul = matmul;
  wrapped.matmul_backward = matmul_backward;
  return &wrapped;
}
