/* The fast CPU backend: vectorised GEMM kernels and cross-entropy; the other
 * ops are the reference kernels (reference.c). Threaded with OpenMP over
 * independent outputs, so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../backend.h"
#include "reference.h"

void keel_backend_set_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

/* GEMM kernels, compiled for AVX-512, AVX2+FMA and a portable fallback and
 * chosen at run time. Every output is reduced in a fixed order, so results do
 * not depend on the thread count. */
typedef float v16 __attribute__((vector_size(64), aligned(4)));
#ifdef __clang__ /* clang contracts a*b+c into FMA by default */
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default"), optimize("fp-contract=fast")))
#endif

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

/* The packed GEMM: C (R x S, row stride ldc) += A (R x J) B (J x S), with
 * A(r, j) = a[r*a_rs + j*a_cs] and B(j, s) = b[j*b_rs + s*b_cs]. B is packed
 * into panels of 64 columns (J x 64, contiguous, zero-padded) and A into
 * 6-row micro-panels; each panel is walked in chunks of KC rows that stay in
 * L2 while a 6 x 64 register tile (24 vector accumulators) runs over them. Threads take
 * whole panels, so every C element is summed in the same order whatever the
 * thread count. */
#define NR 64  /* columns of a panel */
#define MR 6   /* rows of a register tile */
#define KC 384 /* rows of a panel chunk */

KERNEL static void pack_panel(float *dst, const float *b, long b_rs, long b_cs, int J, int s0, int S) {
  int w = S - s0 < NR ? S - s0 : NR;
  for (int j = 0; j < J; j++) {
    float *d = dst + (long)j * NR;
    const float *src = b + j * b_rs + (long)s0 * b_cs;
    if (b_cs == 1) {
      memcpy(d, src, (size_t)w * sizeof *d);
    } else {
      for (int c = 0; c < w; c++) d[c] = src[(long)c * b_cs];
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

static void gemm(float *c, long ldc, const float *a, long a_rs, long a_cs, const float *b, long b_rs, long b_cs, int R,
                 int J, int S) {
  int np = (S + NR - 1) / NR, nb = (R + MR - 1) / MR;
  float *packed = malloc((size_t)np * J * NR * sizeof *packed), *ap = malloc((size_t)nb * J * MR * sizeof *ap);
  if (!packed || !ap) abort();
  pack_a(ap, a, a_rs, a_cs, R, J);
#pragma omp parallel for schedule(static)
  for (int p = 0; p < np; p++) {
    float *bp = packed + (size_t)p * J * NR;
    pack_panel(bp, b, b_rs, b_cs, J, p * NR, S);
    int cols = S - p * NR < NR ? S - p * NR : NR;
    for (int j0 = 0; j0 < J; j0 += KC) {
      int kc = J - j0 < KC ? J - j0 : KC;
      for (int r0 = 0; r0 < R; r0 += MR)
        tile(c + (long)r0 * ldc + (long)p * NR, ldc, ap + ((long)(r0 / MR) * J + j0) * MR, bp + (long)j0 * NR,
             R - r0 < MR ? R - r0 : MR, kc, cols);
    }
  }
  free(packed);
  free(ap);
}

static void matmul(float *out, const float *x, const float *w, int N, int K, int M, int accumulate) {
  if (N < 16) { /* few rows (decoding): dot products, no packing */
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += 4) matmul_rows(out, x, w, n0, N - n0 < 4 ? N - n0 : 4, K, M, accumulate);
    return;
  }
  if (!accumulate) memset(out, 0, (size_t)N * M * sizeof *out);
  gemm(out, M, x, K, 1, w, 1, K, N, K, M); /* B(k, m) = w[m*K + k] */
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  if (dx) gemm(dx, K, dout, M, 1, w, K, 1, N, M, K); /* dx (N, K) += dout (N, M) w (M, K) */
  if (dw) gemm(dw, K, dout, 1, M, x, K, 1, M, N, K); /* dw (M, K) += dout^T (M, N) x (N, K) */
}

static void cross_entropy(float *losses, float *logits, const int32_t *targets, int N, int V, float scale) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float *l = logits + (long)n * V;
    if (targets[n] < 0) {
      losses[n] = 0;
      memset(l, 0, (size_t)V * sizeof *l);
      continue;
    }
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    float target = l[targets[n]];
    double sum = 0;
    for (int v = 0; v < V; v++) sum += l[v] = expf(l[v] - mx); /* one exp per logit */
    losses[n] = mx + (float)log(sum) - target;
    float k = (float)(scale / sum);
    for (int v = 0; v < V; v++) l[v] *= k;
    l[targets[n]] -= scale;
  }
}

/* MLA attention (naive form), vectorised over head dimensions and over the
 * keys of one query; forward parallel over (sequence, head), backward over
 * (sequence, head) too, with k/v/kpe gradients reduced per sequence after. */
KERNEL static float dot(const float *a, const float *b, int n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

KERNEL static void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void attention(float *out, float *att, const float *q, const float *kv, const float *kpe, int B, int T, int H,
                      int dn, int dr, int dv, float scale) {
  int dq = dn + dr, dkv = dn + dv;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        const float *qt = q + ((long)(b * T + t) * H + h) * dq;
        float *a = att + (((long)b * H + h) * T + t) * T;
        float mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
          const float *kj = kv + ((long)(b * T + j) * H + h) * dkv, *pj = kpe + (long)(b * T + j) * dr;
          a[j] = (dot(qt, kj, dn) + dot(qt + dn, pj, dr)) * scale;
          mx = a[j] > mx ? a[j] : mx;
        }
        float sum = 0;
        for (int j = 0; j <= t; j++) sum += a[j] = expf(a[j] - mx);
        float inv = 1.0f / sum;
        for (int j = 0; j <= t; j++) a[j] *= inv;
        for (int j = t + 1; j < T; j++) a[j] = 0;
        float *o = out + ((long)(b * T + t) * H + h) * dv;
        memset(o, 0, (size_t)dv * sizeof *o);
        for (int j = 0; j <= t; j++) axpy(o, a[j], kv + ((long)(b * T + j) * H + h) * dkv + dn, dv);
      }
}

static void attention_backward(float *dq, float *dkv, float *dkpe, const float *dout, const float *att, const float *q,
                               const float *kv, const float *kpe, int B, int T, int H, int dn, int dr, int dv,
                               float scale) {
  int dq_ = dn + dr, dkv_ = dn + dv;
  /* per (b, h): dq and this head's k/v gradients are private; the shared kpe gradient
   * goes to a per-head buffer summed in head order after, so the result is thread-independent */
  float *dpe = calloc((size_t)B * H * T * dr, sizeof *dpe);
  if (!dpe) abort();
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      float *da = malloc((size_t)(T > 0 ? T : 1) * sizeof *da);
      if (!da) abort();
      float *dph = dpe + ((long)b * H + h) * T * dr;
      for (int t = 0; t < T; t++) {
        const float *a = att + (((long)b * H + h) * T + t) * T;
        const float *go = dout + ((long)(b * T + t) * H + h) * dv;
        const float *qt = q + ((long)(b * T + t) * H + h) * dq_;
        float *dqt = dq + ((long)(b * T + t) * H + h) * dq_;
        float s_dot = 0;
        for (int j = 0; j <= t; j++) {
          const float *vj = kv + ((long)(b * T + j) * H + h) * dkv_ + dn;
          axpy(dkv + ((long)(b * T + j) * H + h) * dkv_ + dn, a[j], go, dv);
          da[j] = dot(go, vj, dv);
          s_dot += a[j] * da[j];
        }
        for (int j = 0; j <= t; j++) {
          float ds = a[j] * (da[j] - s_dot) * scale;
          const float *kj = kv + ((long)(b * T + j) * H + h) * dkv_, *pj = kpe + (long)(b * T + j) * dr;
          axpy(dqt, ds, kj, dn);
          axpy(dkv + ((long)(b * T + j) * H + h) * dkv_, ds, qt, dn);
          axpy(dqt + dn, ds, pj, dr);
          axpy(dph + (long)j * dr, ds, qt + dn, dr);
        }
      }
      free(da);
    }
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++)
        axpy(dkpe + (long)(b * T + t) * dr, 1.0f, dpe + (((long)b * H + h) * T + t) * dr, dr);
  free(dpe);
}

static const keel_backend cpu = {
    .name = "cpu",
    .matmul = matmul,
    .matmul_backward = matmul_backward,
    .rmsnorm = keel_cpu_ref_rmsnorm,
    .rmsnorm_backward = keel_cpu_ref_rmsnorm_backward,
    .rope = keel_cpu_ref_rope,
    .attention = attention,
    .attention_backward = attention_backward,
    .attention_latent = keel_cpu_ref_attention_latent,
    .swiglu = keel_cpu_ref_swiglu,
    .swiglu_backward = keel_cpu_ref_swiglu_backward,
    .cross_entropy = cross_entropy,
    .adamw = keel_cpu_ref_adamw,
};

const keel_backend *keel_backend_cpu(void) { return &cpu; }
