/* The fast CPU backend: matmuls on the packed GEMM (gemm.c) or on dot-product
 * kernels for few rows, typed weights (wmat.c), attention and cross-entropy;
 * the other ops are the reference kernels (reference.c). Threaded with OpenMP over
 * independent outputs, so results do not depend on the thread count. */
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../core/cpu.h"
#include "../backend.h"
#include "gemm.h"
#include "reference.h"
#include "simd.h"

void keel_backend_set_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

/* Pinning (see backend.h): the GEMM keeps each thread's packed panels in its own core's L2,
 * which a thread moved to the other core loses. Measured on a shared 2-core machine, bench-a
 * and bench-b alternating: OMP_PROC_BIND=true ahead of unbound in 5 of 6 pairs (by 6-29%);
 * this code against OMP_PROC_BIND=false, 7 pairs on bench-b, 354 vs 344 tokens/s on average,
 * within that machine's noise. */
#if defined(_OPENMP) && defined(CPU_SET)
static cpu_set_t unpinned; /* the calling thread's CPUs before pinning */
static int pinned;
#endif

void keel_backend_pin_threads(void) {
#if defined(_OPENMP) && defined(CPU_SET)
  cpu_set_t allowed;
  if (pinned || getenv("OMP_PROC_BIND") || sched_getaffinity(0, sizeof allowed, &allowed)) return;
  int nt = omp_get_max_threads(), cpu[CPU_SETSIZE], n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) cpu[n++] = c;
  if (nt < 2 || nt != n) return;
  unpinned = allowed, pinned = 1;
#pragma omp parallel num_threads(nt)
  {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu[omp_get_thread_num()], &one);
    sched_setaffinity(0, sizeof one, &one); /* this thread; a refusal leaves it where it is */
  }
#endif
}

void keel_backend_release_thread(void) {
#if defined(_OPENMP) && defined(CPU_SET)
  if (pinned) sched_setaffinity(0, sizeof unpinned, &unpinned);
#endif
}

/* GEMM kernels, compiled for AVX-512, AVX2+FMA and a portable fallback and
 * chosen at run time. Every output is reduced in a fixed order, so results do
 * not depend on the thread count. */
static inline float hsum(const v16 *v) {
  float s = 0;
  for (int i = 0; i < 16; i++) s += (*v)[i];
  return s;
}

/* out rows n0.. (rows <= 4): a 4x4 block of dot products at a time, 16 vector accumulators. */
KERNEL static void matmul_rows(float *out, const float *x, const float *w, int n0, int rows, int K, int M,
                               int accumulate) {
  const float *xr[4];
  for (int r = 0; r < 4; r++) xr[r] = x + (long)(n0 + (r < rows ? r : 0)) * K;
  int K16 = K & ~15;
  for (int m0 = 0; m0 < M; m0 += 4) {
    int cols = M - m0 < 4 ? M - m0 : 4;
    const float *wr[4];
    for (int c = 0; c < 4; c++) wr[c] = w + (long)(m0 + (c < cols ? c : 0)) * K;
    v16 a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0}, a13 = {0};
    v16 a20 = {0}, a21 = {0}, a22 = {0}, a23 = {0}, a30 = {0}, a31 = {0}, a32 = {0}, a33 = {0};
    for (int k = 0; k < K16; k += 16) {
      v16 w0 = *(const v16 *)(wr[0] + k), w1 = *(const v16 *)(wr[1] + k), w2 = *(const v16 *)(wr[2] + k),
          w3 = *(const v16 *)(wr[3] + k);
      v16 x0 = *(const v16 *)(xr[0] + k);
      a00 += x0 * w0, a01 += x0 * w1, a02 += x0 * w2, a03 += x0 * w3;
      v16 x1 = *(const v16 *)(xr[1] + k);
      a10 += x1 * w0, a11 += x1 * w1, a12 += x1 * w2, a13 += x1 * w3;
      v16 x2 = *(const v16 *)(xr[2] + k);
      a20 += x2 * w0, a21 += x2 * w1, a22 += x2 * w2, a23 += x2 * w3;
      v16 x3 = *(const v16 *)(xr[3] + k);
      a30 += x3 * w0, a31 += x3 * w1, a32 += x3 * w2, a33 += x3 * w3;
    }
    float s[4][4] = {{hsum(&a00), hsum(&a01), hsum(&a02), hsum(&a03)},
                     {hsum(&a10), hsum(&a11), hsum(&a12), hsum(&a13)},
                     {hsum(&a20), hsum(&a21), hsum(&a22), hsum(&a23)},
                     {hsum(&a30), hsum(&a31), hsum(&a32), hsum(&a33)}};
    for (int k = K16; k < K; k++)
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) s[r][c] += xr[r][k] * wr[c][k];
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        float *o = out + (long)(n0 + r) * M + m0 + c;
        *o = accumulate ? *o + s[r][c] : s[r][c];
      }
  }
}

static void matmul(float *out, const float *x, const float *w, int N, int K, int M, int accumulate) {
  if (N < 16) { /* few rows (decoding): dot products, no packing */
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += 4) matmul_rows(out, x, w, n0, N - n0 < 4 ? N - n0 : 4, K, M, accumulate);
    return;
  }
  keel_gemm_b b = keel_gemm_f32(w, 1, K); /* B(k, m) = w[m*K + k] */
  keel_cpu_gemm(out, M, x, K, 1, &b, N, K, M, accumulate);
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  keel_gemm_b bw = keel_gemm_f32(w, K, 1), bx = keel_gemm_f32(x, K, 1);
  if (dx) keel_cpu_gemm(dx, K, dout, M, 1, &bw, N, M, K, 1); /* dx (N, K) += dout (N, M) w (M, K) */
  if (dw) keel_cpu_gemm(dw, K, dout, 1, M, &bx, M, N, K, 1); /* dw (M, K) += dout^T (M, N) x (N, K) */
}

/* Row kernels of the softmaxes, SwiGLU and RMSNorm, 16 floats at a time with
 * keel_exp16; the last n % 16 go through the scalar formula. */
#define ld(p) (*(const v16 *)(p))
static inline double hsum_d(const v16 *v) {
  double s = 0;
  for (int k = 0; k < 16; k++) s += (*v)[k];
  return s;
}

/* The largest of 16 lanes by halving, as keel_hsum16 (inlined into each KERNEL clone). */
static inline float hmax16(const v16 *pm) {
  v16 m = *pm, t = __builtin_shufflevector(m, m, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  keel_max16(&m, &t);
  t = __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  keel_max16(&m, &t);
  t = __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  keel_max16(&m, &t);
  t = __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return t[0] > m[0] ? t[0] : m[0];
}

KERNEL static float row_max(const float *x, int n) {
  v16 m = {0};
  m -= INFINITY;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 v = ld(x + i);
    keel_max16(&m, &v);
  }
  float r = hmax16(&m);
  for (; i < n; i++) r = x[i] > r ? x[i] : r;
  return r;
}

/* x = e^(x - mx) in place; returns the sum. */
KERNEL static double exp_sum(float *x, int n, float mx) {
  v16 acc = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 e = ld(x + i) - mx;
    keel_exp16(&e);
    *(v16 *)(x + i) = e, acc += e;
  }
  double s = hsum_d(&acc);
  for (; i < n; i++) s += x[i] = expf(x[i] - mx);
  return s;
}

KERNEL static void scale_row(float *x, int n, float k) {
#pragma omp simd
  for (int i = 0; i < n; i++) x[i] *= k;
}

static void cross_entropy(float *losses, float *logits, const int32_t *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(dynamic, 8)
  for (int n = 0; n < N; n++) {
    float *l = logits + (long)n * V;
    if (targets[n] < 0) {
      losses[n] = 0;
      memset(l, 0, (size_t)V * sizeof *l);
      continue;
    }
    float mx = row_max(l, V), target = l[targets[n]];
    double sum = exp_sum(l, V, mx); /* one exp per logit */
    losses[n] = mx + (float)log(sum) - target;
    scale_row(l, V, (float)(scale / sum));
    l[targets[n]] -= scale;
  }
}

/* MLA attention (naive form) on the GEMM; forward parallel over (sequence, head), backward
 * over (sequence, head) too, with k/v/kpe gradients reduced per sequence after. */
KERNEL static void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* The causal mask in blocks of BT query rows: block [r0, r1) needs keys [0, r1) only, and key
 * block [k0, k1) gets gradient from queries [k0, T) only, so the GEMMs skip the masked part
 * (at T 256, 62% of the full products). */
#define BT 64

/* One (sequence, head)'s keys [k_nope | k_pe] (T x dq) into kc, contiguous, so that the
 * scores and dq take one GEMM over dq where two (dn, then dr) would each pack and store. */
static void keys_cat(float *kc, const float *kv, const float *kpe, int T, int H, int dn, int dr, int dv) {
  for (int t = 0; t < T; t++) {
    memcpy(kc + (long)t * (dn + dr), kv + (long)t * H * (dn + dv), (size_t)dn * sizeof *kc);
    memcpy(kc + (long)t * (dn + dr) + dn, kpe + (long)t * dr, (size_t)dr * sizeof *kc);
  }
}

/* The causal softmax of score rows [r0, r1) of P (T x T; row t's keys [0, t] valid) in place:
 * P = softmax(scale S) over those keys, 0 past them. One call a block of rows, whole 16-float
 * vectors: a row's last partial vector runs masked when the row has room for it (the lanes past
 * t selected away, not zeroed by a multiply: they hold whatever the GEMM or an earlier pair
 * left, NaN included), rather than through a scalar exp; the row's passes (max, exp and sum,
 * 1 / sum) stay in L1. */
KERNEL static void causal_softmax(float *P, int T, int r0, int r1, float scale) {
  const v16 zero = {0}, ninf = zero - INFINITY;
  for (int t = r0; t < r1; t++) {
    float *a = P + (long)t * T;
    int n = t + 1, nv = n & ~15, vt = n > nv && nv + 16 <= T, end = vt ? nv + 16 : n;
    v16 m = ninf, xt = ninf;
    for (int i = 0; i < nv; i += 16) {
      v16 v = ld(a + i) * scale;
      keel_max16(&m, &v);
    }
    if (vt) {
      xt = ld(a + nv) * scale;
      keel_keep16(&xt, n - nv, -INFINITY);
      keel_max16(&m, &xt);
    }
    float mx = hmax16(&m);
    if (!vt)
      for (int i = nv; i < n; i++) mx = a[i] * scale > mx ? a[i] * scale : mx;
    v16 acc = zero;
    for (int i = 0; i < nv; i += 16) {
      v16 e = ld(a + i) * scale - mx;
      keel_exp16(&e);
      *(v16 *)(a + i) = e, acc += e;
    }
    if (vt) {
      v16 e = xt - mx;
      keel_exp16(&e);
      keel_keep16(&e, n - nv, 0.0f);
      *(v16 *)(a + nv) = e, acc += e;
    }
    float sum = keel_hsum16(&acc); /* at most T terms in [0, 1]: a float sum suffices */
    if (!vt)
      for (int i = nv; i < n; i++) sum += a[i] = expf(a[i] * scale - mx);
    float inv = 1 / sum;
    int i = 0;
    for (; i + 16 <= end; i += 16) *(v16 *)(a + i) = ld(a + i) * inv;
    for (; i < end; i++) a[i] *= inv; /* only without room for the masked vector */
    memset(a + end, 0, (size_t)(T - end) * sizeof *a);
  }
}

/* MLA attention (naive form) on the packed GEMM: per (sequence, head), handed to threads as they
 * come free (the cores may run at different speeds), the scores
 * S = [q_nope | q_pe] [k_nope | k_pe]^T, their causal softmax in place (masked entries 0) and
 * P V; each pair's GEMMs run on one thread, so sums keep their order. K^T and V are packed
 * once per pair and every row block reads the prefix of them it needs. */
static void attention(float *out, float *att, const float *q, const float *kv, const float *kpe, int B, int T, int H,
                      int dn, int dr, int dv, float scale) {
  int dq = dn + dr, dkv = dn + dv;
  long kps = (long)dq * KEEL_GEMM_NR, vps = (long)T * KEEL_GEMM_NR; /* panel strides */
  size_t kn = keel_gemm_packed_size(T, kps), vn = keel_gemm_packed_size(dv, vps);
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      float *kc = keel_cpu_scratch(1, (size_t)T * dq + kn + vn), *kt = kc + (size_t)T * dq, *vp = kt + kn;
      float *P = att + ((long)b * H + h) * T * T;
      const float *qb = q + ((long)b * T * H + h) * dq, *kvb = kv + ((long)b * T * H + h) * dkv;
      keys_cat(kc, kvb, kpe + (long)b * T * dr, T, H, dn, dr, dv);
      keel_gemm_b bk = keel_gemm_f32(kc, 1, dq), bv = keel_gemm_f32(kvb + dn, (long)H * dkv, 1);
      keel_cpu_gemm_pack(kt, kps, &bk, dq, T);
      keel_cpu_gemm_pack(vp, vps, &bv, T, dv);
      bk = keel_gemm_packed(kt, kps), bv = keel_gemm_packed(vp, vps);
      float *o = out + ((long)b * T * H + h) * dv;
      for (int r0 = 0; r0 < T; r0 += BT) { /* rows [r0, r1): keys [0, r1) */
        int r1 = T - r0 < BT ? T : r0 + BT;
        keel_cpu_gemm(P + (long)r0 * T, T, qb + (long)r0 * H * dq, (long)H * dq, 1, &bk, r1 - r0, dq, r1, 0);
        causal_softmax(P, T, r0, r1, scale);
        keel_cpu_gemm(o + (long)r0 * H * dv, (long)H * dv, P + (long)r0 * T, T, 1, &bv, r1 - r0, r1, dv, 0);
      }
    }
}

/* The softmax gradient of rows [r0, r1) of dS (T x T) in place from the probabilities P:
 * dS = scale P (dS - P.dS) over keys [0, t], 0 past them. As causal_softmax, whole vectors
 * with the lanes past t selected away (dS holds stale values there). */
KERNEL static void causal_softmax_grad(float *dS, const float *P, int T, int r0, int r1, float scale) {
  const v16 zero = {0};
  for (int t = r0; t < r1; t++) {
    float *d = dS + (long)t * T;
    const float *a = P + (long)t * T;
    int n = t + 1, nv = n & ~15, vt = n > nv && nv + 16 <= T, end = vt ? nv + 16 : n;
    v16 acc = zero;
    for (int i = 0; i < nv; i += 16) acc += ld(a + i) * ld(d + i);
    v16 dt = zero;
    if (vt) {
      dt = ld(d + nv);
      keel_keep16(&dt, n - nv, 0.0f);
      acc += ld(a + nv) * dt;
    }
    float dot = keel_hsum16(&acc);
    if (!vt)
      for (int i = nv; i < n; i++) dot += a[i] * d[i];
    for (int i = 0; i < nv; i += 16) *(v16 *)(d + i) = ld(a + i) * (ld(d + i) - dot) * scale;
    if (vt) {
      v16 g = ld(a + nv) * (dt - dot) * scale;
      keel_keep16(&g, n - nv, 0.0f);
      *(v16 *)(d + nv) = g;
    } else {
      for (int i = nv; i < n; i++) d[i] = a[i] * (d[i] - dot) * scale;
    }
    memset(d + end, 0, (size_t)(T - end) * sizeof *d);
  }
}

static void attention_backward(float *dq, float *dkv, float *dkpe, const float *dout, const float *att, const float *q,
                               const float *kv, const float *kpe, int B, int T, int H, int dn, int dr, int dv,
                               float scale) {
  int dq_ = dn + dr, dkv_ = dn + dv;
  long NR = KEEL_GEMM_NR, vps = (long)dv * NR, tps = (long)T * NR; /* panel strides: V^T's, and T rows' */
  size_t vn = keel_gemm_packed_size(T, vps), kn = keel_gemm_packed_size(dq_, tps), on = keel_gemm_packed_size(dv, tps);
  /* per (b, h): dq and this head's k/v gradients are private; the shared kpe gradient
   * goes to a per-head buffer summed in head order after, so the result is thread-independent */
  float *dpe = keel_cpu_scratch(0, (size_t)B * H * T * dr); /* each head's part written below */
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      /* this thread's dS, [k | k_pe] and its gradient (T x dq each), and the packed V^T, K, Q, dO */
      float *dS = keel_cpu_scratch(1, (size_t)T * T + 2 * (size_t)T * dq_ + vn + 2 * kn + on);
      float *kc = dS + (size_t)T * T, *dkc = kc + (size_t)T * dq_, *vt = dkc + (size_t)T * dq_, *kp = vt + vn,
            *qp = kp + kn, *op = qp + kn;
      const float *P = att + ((long)b * H + h) * T * T;
      long row0 = (long)b * T * H + h;
      const float *go = dout + row0 * dv, *qb = q + row0 * dq_, *kvb = kv + row0 * dkv_, *pe = kpe + (long)b * T * dr;
      float *dqb = dq + row0 * dq_, *dkvb = dkv + row0 * dkv_, *dph = dpe + ((long)b * H + h) * T * dr;
      keys_cat(kc, kvb, pe, T, H, dn, dr, dv);
      keel_gemm_b bvt = keel_gemm_f32(kvb + dn, 1, (long)H * dkv_), bk = keel_gemm_f32(kc, dq_, 1),
                  bq = keel_gemm_f32(qb, (long)H * dq_, 1), bo = keel_gemm_f32(go, (long)H * dv, 1);
      keel_cpu_gemm_pack(vt, vps, &bvt, dv, T);
      keel_cpu_gemm_pack(kp, tps, &bk, T, dq_);
      keel_cpu_gemm_pack(qp, tps, &bq, T, dq_);
      keel_cpu_gemm_pack(op, tps, &bo, T, dv);
      bvt = keel_gemm_packed(vt, vps), bk = keel_gemm_packed(kp, tps);
      for (int r0 = 0; r0 < T; r0 += BT) { /* query rows [r0, r1): keys [0, r1) */
        int r1 = T - r0 < BT ? T : r0 + BT;
        /* dP = dO V^T, then dS = P (dP - rowsum(P dP)) scale, then dq += dS [k_nope | k_pe] */
        keel_cpu_gemm(dS + (long)r0 * T, T, go + (long)r0 * H * dv, (long)H * dv, 1, &bvt, r1 - r0, dv, r1, 0);
        causal_softmax_grad(dS, P, T, r0, r1, scale);
        keel_cpu_gemm(dqb + (long)r0 * H * dq_, (long)H * dq_, dS + (long)r0 * T, T, 1, &bk, r1 - r0, r1, dq_, 1);
      }
      for (int k0 = 0; k0 < T; k0 += BT) { /* key rows [k0, k1): queries [k0, T), rows k0.. of Q and dO */
        int k1 = T - k0 < BT ? T : k0 + BT, n = T - k0;
        const float *ds = dS + (long)k0 * T + k0, *p = P + (long)k0 * T + k0; /* (query k0, key k0) */
        keel_gemm_b bqk = keel_gemm_packed(qp + k0 * NR, tps), bok = keel_gemm_packed(op + k0 * NR, tps);
        keel_cpu_gemm(dkc + (long)k0 * dq_, dq_, ds, 1, T, &bqk, k1 - k0, n, dq_, 0); /* [dk | dk_pe] = dS^T Q */
        keel_cpu_gemm(dkvb + (long)k0 * H * dkv_ + dn, (long)H * dkv_, p, 1, T, &bok, k1 - k0, n, dv, 1); /* dv += P^T dO */
      }
      for (int t = 0; t < T; t++) { /* dk_nope into dkv, this head's dk_pe aside */
        axpy(dkvb + (long)t * H * dkv_, 1.0f, dkc + (long)t * dq_, dn);
        memcpy(dph + (long)t * dr, dkc + (long)t * dq_ + dn, (size_t)dr * sizeof *dph);
      }
    }
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++)
        axpy(dkpe + (long)(b * T + t) * dr, 1.0f, dpe + (((long)b * H + h) * T + t) * dr, dr);
}

/* The memory-bound ops, parallel over rows or elements (the reference's formulas). RMSNorm's
 * weight gradient is summed over fixed 64-row chunks, then the chunks in order. */
KERNEL static void rmsnorm_row(float *out, float *rstd, const float *x, const float *w, int D, float eps) {
  v16 acc = {0};
  int i = 0;
  for (; i + 16 <= D; i += 16) acc += ld(x + i) * ld(x + i);
  double ss = hsum_d(&acc);
  for (; i < D; i++) ss += (double)x[i] * x[i];
  float r = *rstd = (float)(1.0 / sqrt(ss / D + eps));
#pragma omp simd
  for (int k = 0; k < D; k++) out[k] = x[k] * r * w[k];
}

static void rmsnorm(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) rmsnorm_row(out + (long)n * D, rstd + n, x + (long)n * D, w, D, eps);
}

/* dx += dout w r - x (sum dout w x) r^3 / D, dw += dout x r, for n rows. */
KERNEL static void rmsnorm_backward_rows(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                         const float *rstd, int n, int D) {
  for (int row = 0; row < n; row++) {
    const float *xr = x + (long)row * D, *dr = dout + (long)row * D;
    float *dxr = dx + (long)row * D, r = rstd[row];
    v16 acc = {0};
    int i = 0;
    for (; i + 16 <= D; i += 16) acc += ld(dr + i) * ld(w + i) * ld(xr + i);
    double dot = hsum_d(&acc);
    for (; i < D; i++) dot += (double)dr[i] * w[i] * xr[i];
    float c = (float)(dot * r * r * r / D);
#pragma omp simd
    for (int k = 0; k < D; k++) dxr[k] += dr[k] * w[k] * r - xr[k] * c;
    if (dw) {
#pragma omp simd
      for (int k = 0; k < D; k++) dw[k] += dr[k] * xr[k] * r;
    }
  }
}

static void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *rstd, int N, int D) {
  enum { ROWS = 64 };
  int nch = (N + ROWS - 1) / ROWS;
  float *part = dw ? calloc((size_t)nch * D, sizeof *part) : NULL;
  if (dw && !part) abort();
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nch; ch++) {
    int n0 = ch * ROWS, n = N - n0 < ROWS ? N - n0 : ROWS;
    rmsnorm_backward_rows(dx + (long)n0 * D, part ? part + (long)ch * D : NULL, dout + (long)n0 * D, x + (long)n0 * D,
                          w, rstd + n0, n, D);
  }
  for (int ch = 0; dw && ch < nch; ch++) axpy(dw, 1.0f, part + (long)ch * D, D);
  free(part);
}

static void rope(float *x, const int *pos, const float *cos_t, const float *sin_t, int N, int n_vec, int row_stride,
                 int vec_stride, int dr, int inverse) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    keel_cpu_ref_rope(x + (long)n * row_stride, pos + n, cos_t, sin_t, 1, n_vec, row_stride, vec_stride, dr, inverse);
}

/* h = silu(g) u and its gradients; silu(g) = g sigmoid(g). */
KERNEL static void swiglu_row(float *h, const float *g, const float *u, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 e = -ld(g + i);
    keel_exp16(&e);
    *(v16 *)(h + i) = ld(g + i) / (1.0f + e) * ld(u + i);
  }
  if (i < n) keel_cpu_ref_swiglu(h + i, g + i, u + i, 1, n - i);
}

KERNEL static void swiglu_backward_row(float *dg, float *du, const float *dh, const float *g, const float *u, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 gi = ld(g + i), e = -gi, d = ld(dh + i);
    keel_exp16(&e);
    v16 sg = 1.0f / (1.0f + e);
    *(v16 *)(du + i) += d * gi * sg;
    *(v16 *)(dg + i) += d * ld(u + i) * sg * (1.0f + gi * (1.0f - sg));
  }
  if (i < n) keel_cpu_ref_swiglu_backward(dg + i, du + i, dh + i, g + i, u + i, 1, n - i);
}

static void swiglu(float *h, const float *g, const float *u, int N, int I) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) swiglu_row(h + (long)n * I, g + (long)n * I, u + (long)n * I, I);
}

static void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int N, int I) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    long o = (long)n * I;
    swiglu_backward_row(dg + o, du + o, dh + o, g + o, u + o, I);
  }
}

/* AdamW, vectorised: the reference's formula with the bias corrections c1, c2 as products by
 * their reciprocals r1, r2 (within an ulp of it): one division and one square root an element,
 * not three divisions (the vector divider, not the 28 bytes an element, had set its pace). */
KERNEL static void adamw_chunk(float *p, const float *g, float gs, float *m, float *v, long n, float lr, float beta1,
                               float beta2, float eps, float wd, float r1, float r2) {
#pragma omp simd
  for (long i = 0; i < n; i++) {
    float gi = g[i] * gs;
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    p[i] -= lr * (m[i] * r1 / (sqrtf(v[i] * r2) + eps) + wd * p[i]);
  }
}

static void adamw(float *p, const float *g, float gs, float *m, float *v, long n, float lr, float beta1, float beta2,
                  float eps, float wd, int t) {
  float r1 = 1 / (1.0f - powf(beta1, (float)t)), r2 = 1 / (1.0f - powf(beta2, (float)t));
  long chunk = 1 << 14, nch = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (long ch = 0; ch < nch; ch++) {
    long i0 = ch * chunk, k = n - i0 < chunk ? n - i0 : chunk;
    adamw_chunk(p + i0, g + i0, gs, m + i0, v + i0, k, lr, beta1, beta2, eps, wd, r1, r2);
  }
}

/* Decode attention over the latent cache, as two small GEMMs with register tiles: scores for up
 * to six heads at four positions (24 accumulators: each cache row loaded once per six heads,
 * each query vector once per four positions), then the output for six heads over 64 latent
 * columns. Heads go in groups of equal size (12 heads: two of six, none computed twice).
 * Every sum runs in a fixed order, whatever the thread count. (Eight heads at one position
 * had made two loads per FMA and one horizontal sum per score: 3x slower on 12 heads.) */
enum { LH = 6, LJ = 4, LC = 64 }; /* heads, positions, output columns per tile */

/* The six accumulators' rows of a tile, and what is done to each. */
#define EACH6(X, ...) \
  X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__) X(5, __VA_ARGS__)
#define ZERO4(h, ...) v16 a##h##0 = {0}, a##h##1 = {0}, a##h##2 = {0}, a##h##3 = {0};

/* Lanes 0, 4, 8, 12 of *o: the sums of a, b, c, d (halving, as keel_hsum16 does). Inlined into
 * the AVX-512 kernels (hence pointers, not vector arguments). */
static inline __attribute__((always_inline)) void sum4(v16 *o, const v16 *pa, const v16 *pb, const v16 *pc,
                                                       const v16 *pd) {
  v16 a = *pa, b = *pb, c = *pc, d = *pd;
  v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  v16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  v16 t = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
          __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  t += __builtin_shufflevector(t, t, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  *o = t + __builtin_shufflevector(t, t, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
}

/* S[h][j] = scale (qa_h . ckv_j + qp_h . kpe_j) for heads h0..h0+nh (nh <= LH) and positions
 * j0..j0+nj (nj <= LJ); rows past nh or nj repeat the last one and are not stored. */
KERNEL512 static void latent_scores(float *S, const float *qabs, const float *qpe, const float *ckv, const float *kpe,
                                    int h0, int nh, int j0, int nj, int len, int rkv, int dr, float scale) {
  const float *qa[LH], *qp[LH], *c[LJ], *e[LJ];
  for (int h = 0; h < LH; h++) {
    int hh = h0 + (h < nh ? h : nh - 1);
    qa[h] = qabs + (long)hh * rkv, qp[h] = qpe + (long)hh * dr;
  }
  for (int p = 0; p < LJ; p++) {
    int j = j0 + (p < nj ? p : nj - 1);
    c[p] = ckv + (long)j * rkv, e[p] = kpe + (long)j * dr;
  }
  const float *q0 = qa[0], *q1 = qa[1], *q2 = qa[2], *q3 = qa[3], *q4 = qa[4], *q5 = qa[5];
  const float *r0 = qp[0], *r1 = qp[1], *r2 = qp[2], *r3 = qp[3], *r4 = qp[4], *r5 = qp[5];
  const float *c0 = c[0], *c1 = c[1], *c2 = c[2], *c3 = c[3], *e0 = e[0], *e1 = e[1], *e2 = e[2], *e3 = e[3];
  EACH6(ZERO4)
#define FMA4(h, Q)                                              \
  {                                                             \
    v16 q = ld(Q##h + k);                                       \
    a##h##0 += q * x0, a##h##1 += q * x1, a##h##2 += q * x2, a##h##3 += q * x3; \
  }
  int rv = rkv & ~15, dv = dr & ~15;
  long ahead = (long)2 * LJ * rkv; /* the rows two blocks on, fetched while this one runs (a cache
                                    * just read from memory: 12 layers at 260 positions 10% faster) */
  for (int k = 0; k < rv; k += 16) {
    v16 x0 = ld(c0 + k), x1 = ld(c1 + k), x2 = ld(c2 + k), x3 = ld(c3 + k);
    __builtin_prefetch(c0 + ahead + k), __builtin_prefetch(c1 + ahead + k);
    __builtin_prefetch(c2 + ahead + k), __builtin_prefetch(c3 + ahead + k);
    EACH6(FMA4, q)
  }
  for (int k = 0; k < dv; k += 16) {
    v16 x0 = ld(e0 + k), x1 = ld(e1 + k), x2 = ld(e2 + k), x3 = ld(e3 + k);
    EACH6(FMA4, r)
  }
#undef FMA4
  v16 t[LH];
#define SUMS(h, ...) sum4(&t[h], &a##h##0, &a##h##1, &a##h##2, &a##h##3);
  EACH6(SUMS)
#undef SUMS
  for (int h = 0; h < nh; h++)
    for (int p = 0; p < nj; p++) {
      float s = t[h][4 * p];
      for (int k = rv; k < rkv; k++) s += qa[h][k] * c[p][k];
      for (int k = dv; k < dr; k++) s += qp[h][k] * e[p][k];
      S[(long)(h0 + h) * len + j0 + p] = s * scale;
    }
}

/* olat[h][k0..k0+n) = sum_j P[h][j] ckv_j[k0..k0+n) for heads h0..h0+nh, n <= LC. */
KERNEL512 static void latent_out(float *olat, const float *P, const float *ckv, int h0, int nh, int k0, int n, int len,
                                 int rkv) {
  const float *p[LH];
  for (int h = 0; h < LH; h++) p[h] = P + (long)(h0 + (h < nh ? h : nh - 1)) * len;
  const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3], *p4 = p[4], *p5 = p[5];
  EACH6(ZERO4)
#define FMA_P(h, ...)                                                             \
  {                                                                               \
    float w = p##h[j];                                                            \
    a##h##0 += w * x0, a##h##1 += w * x1, a##h##2 += w * x2, a##h##3 += w * x3; \
  }
  for (int j = 0; j < len; j++) {
    const float *row = ckv + (long)j * rkv + k0;
    v16 x0, x1, x2, x3;
    if (n == LC) {
      x0 = ld(row), x1 = ld(row + 16), x2 = ld(row + 32), x3 = ld(row + 48);
    } else { /* the last columns: zeros past n */
      float b[LC] = {0};
      memcpy(b, row, (size_t)n * sizeof(float));
      x0 = ld(b), x1 = ld(b + 16), x2 = ld(b + 32), x3 = ld(b + 48);
    }
    EACH6(FMA_P)
  }
#undef FMA_P
#define STORE4(h, ...)                                                                  \
  if (h < nh) {                                                                         \
    float b[LC];                                                                        \
    memcpy(b, &a##h##0, 64), memcpy(b + 16, &a##h##1, 64), memcpy(b + 32, &a##h##2, 64); \
    memcpy(b + 48, &a##h##3, 64);                                                       \
    memcpy(olat + (long)(h0 + h) * rkv + k0, b, (size_t)n * sizeof(float));            \
  }
  EACH6(STORE4)
#undef STORE4
}
#undef ZERO4
#undef EACH6

/* The same in portable code, where 16-float vectors take four registers and the 24
 * accumulators above would spill: one score per (head, position), and one head's output over
 * the tile's columns at a time, as loops the compiler vectorises. */
KERNEL128 static void latent_scores128(float *S, const float *qabs, const float *qpe, const float *ckv,
                                       const float *kpe, int h0, int nh, int j0, int nj, int len, int rkv, int dr,
                                       float scale) {
  for (int h = h0; h < h0 + nh; h++)
    for (int j = j0; j < j0 + nj; j++) {
      const float *qa = qabs + (long)h * rkv, *c = ckv + (long)j * rkv, *qp = qpe + (long)h * dr,
                  *e = kpe + (long)j * dr;
      float s = 0, t = 0;
#pragma omp simd reduction(+ : s)
      for (int k = 0; k < rkv; k++) s += qa[k] * c[k];
#pragma omp simd reduction(+ : t)
      for (int k = 0; k < dr; k++) t += qp[k] * e[k];
      S[(long)h * len + j] = (s + t) * scale;
    }
}
KERNEL128 static void latent_out128(float *olat, const float *P, const float *ckv, int h0, int nh, int k0, int n,
                                    int len, int rkv) {
  for (int h = h0; h < h0 + nh; h++) {
    float acc[LC] = {0};
    const float *p = P + (long)h * len;
    for (int j = 0; j < len; j++) {
      const float *row = ckv + (long)j * rkv + k0;
      float w = p[j];
#pragma omp simd
      for (int c = 0; c < n; c++) acc[c] += w * row[c];
    }
    memcpy(olat + (long)h * rkv + k0, acc, (size_t)n * sizeof *acc);
  }
}

/* AVX2's: each head against four positions at once (four independent sums, each cache vector
 * loaded once per head), and 64 output columns in eight registers. */
KERNEL256 static float dot_tail(const float *a, const float *b, int k, int n) {
  float s = 0;
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}
KERNEL256 static void latent_scores256(float *S, const float *qabs, const float *qpe, const float *ckv,
                                       const float *kpe, int h0, int nh, int j0, int nj, int len, int rkv, int dr,
                                       float scale) {
  const float *c[LJ], *e[LJ];
  for (int p = 0; p < LJ; p++) {
    int j = j0 + (p < nj ? p : nj - 1);
    c[p] = ckv + (long)j * rkv, e[p] = kpe + (long)j * dr;
  }
  const float *c0 = c[0], *c1 = c[1], *c2 = c[2], *c3 = c[3], *e0 = e[0], *e1 = e[1], *e2 = e[2], *e3 = e[3];
  int rv = rkv & ~7, dv = dr & ~7;
  for (int h = h0; h < h0 + nh; h++) {
    const float *qa = qabs + (long)h * rkv, *qp = qpe + (long)h * dr;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < rv; k += 8) {
      __m256 q = _mm256_loadu_ps(qa + k);
      a0 = _mm256_fmadd_ps(q, _mm256_loadu_ps(c0 + k), a0), a1 = _mm256_fmadd_ps(q, _mm256_loadu_ps(c1 + k), a1);
      a2 = _mm256_fmadd_ps(q, _mm256_loadu_ps(c2 + k), a2), a3 = _mm256_fmadd_ps(q, _mm256_loadu_ps(c3 + k), a3);
    }
    for (int k = 0; k < dv; k += 8) {
      __m256 q = _mm256_loadu_ps(qp + k);
      a0 = _mm256_fmadd_ps(q, _mm256_loadu_ps(e0 + k), a0), a1 = _mm256_fmadd_ps(q, _mm256_loadu_ps(e1 + k), a1);
      a2 = _mm256_fmadd_ps(q, _mm256_loadu_ps(e2 + k), a2), a3 = _mm256_fmadd_ps(q, _mm256_loadu_ps(e3 + k), a3);
    }
    float t[LJ] = {keel_hsum8(a0), keel_hsum8(a1), keel_hsum8(a2), keel_hsum8(a3)};
    for (int p = 0; p < nj; p++)
      S[(long)h * len + j0 + p] = (t[p] + dot_tail(qa, c[p], rv, rkv) + dot_tail(qp, e[p], dv, dr)) * scale;
  }
}
KERNEL256 static void latent_out256(float *olat, const float *P, const float *ckv, int h0, int nh, int k0, int n,
                                    int len, int rkv) {
  for (int h = h0; h < h0 + nh; h++) {
    const float *p = P + (long)h * len;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int j = 0; j < len; j++) {
      const float *row = ckv + (long)j * rkv + k0;
      float b[LC];
      if (n < LC) { /* the last columns: zeros past n */
        memset(b, 0, sizeof b);
        memcpy(b, row, (size_t)n * sizeof *b);
        row = b;
      }
      __m256 w = _mm256_set1_ps(p[j]);
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row), a0), a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 16), a2), a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 24), a3);
      a4 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 32), a4), a5 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 40), a5);
      a6 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 48), a6), a7 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 56), a7);
    }
    float b[LC];
    _mm256_storeu_ps(b, a0), _mm256_storeu_ps(b + 8, a1), _mm256_storeu_ps(b + 16, a2), _mm256_storeu_ps(b + 24, a3);
    _mm256_storeu_ps(b + 32, a4), _mm256_storeu_ps(b + 40, a5), _mm256_storeu_ps(b + 48, a6);
    _mm256_storeu_ps(b + 56, a7);
    memcpy(olat + (long)h * rkv + k0, b, (size_t)n * sizeof *b);
  }
}

static void attention_latent(float *olat, const float *qabs, const float *qpe, const float *ckv, const float *kpe,
                             int len, int H, int rkv, int dr, float scale) {
  float *S = malloc((size_t)H * (len > 0 ? len : 1) * sizeof *S);
  if (!S) abort();
  int ng = (H + LH - 1) / LH, gh = (H + ng - 1) / ng; /* ng groups of gh heads, the last one maybe fewer */
  ng = (H + gh - 1) / gh;
  int nb = (len + LJ - 1) / LJ, nc = (rkv + LC - 1) / LC;
  keel_isa isa = keel_cpu_isa();
  void (*scores)(float *, const float *, const float *, const float *, const float *, int, int, int, int, int, int, int,
                 float) = isa == KEEL_ISA_AVX512 ? latent_scores
                          : isa == KEEL_ISA_AVX2 ? latent_scores256
                                                 : latent_scores128;
  void (*outs)(float *, const float *, const float *, int, int, int, int, int, int) =
      isa == KEEL_ISA_AVX512 ? latent_out : isa == KEEL_ISA_AVX2 ? latent_out256 : latent_out128;
#pragma omp parallel
  {
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < nb; b++) /* a thread's share of the positions, for all heads */
      for (int g = 0; g < ng; g++)
        scores(S, qabs, qpe, ckv, kpe, g * gh, H - g * gh < gh ? H - g * gh : gh, b * LJ,
               len - b * LJ < LJ ? len - b * LJ : LJ, len, rkv, dr, scale);
#pragma omp for schedule(static)
    for (int h = 0; h < H; h++) {
      float *a = S + (long)h * len;
      scale_row(a, len, (float)(1 / exp_sum(a, len, row_max(a, len))));
    }
#pragma omp for collapse(2) schedule(static)
    for (int c = 0; c < nc; c++) /* a thread's share of the columns, for all heads */
      for (int g = 0; g < ng; g++)
        outs(olat, S, ckv, g * gh, H - g * gh < gh ? H - g * gh : gh, c * LC,
             rkv - c * LC < LC ? rkv - c * LC : LC, len, rkv);
  }
  free(S);
}

static const keel_backend cpu = {
    .name = "cpu",
    .matmul = matmul,
    .matmul_backward = matmul_backward,
    .rmsnorm = rmsnorm,
    .rmsnorm_backward = rmsnorm_backward,
    .rope = rope,
    .attention = attention,
    .attention_backward = attention_backward,
    .attention_latent = attention_latent,
    .swiglu = swiglu,
    .swiglu_backward = swiglu_backward,
    .cross_entropy = cross_entropy,
    .adamw = adamw,
    .matmul_w = keel_cpu_matmul_w,
    .matmul_wt = keel_cpu_matmul_wt,
};

const keel_backend *keel_backend_cpu(void) { return &cpu; }
