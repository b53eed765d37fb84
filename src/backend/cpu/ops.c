/* The CPU backend: plain, readable reference kernels, threaded with OpenMP over
 * independent outputs so that results do not depend on the thread count. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../backend.h"

void keel_backend_set_threads(int n) {
#ifdef _OPENMP
  if (n > 0) omp_set_num_threads(n);
#else
  (void)n;
#endif
}

/* GEMM kernels: 4 rows at a time share each load of the other operand; the
 * inner loops run over contiguous k with 16-wide vectors, compiled for
 * AVX-512, AVX2+FMA and a portable fallback and chosen at run time. Every
 * output is reduced in a fixed order, so results do not depend on threads. */
typedef float v16 __attribute__((vector_size(64), aligned(4)));
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default"), optimize("fp-contract=fast")))

static inline float hsum(const v16 *v) {
  float s = 0;
  for (int i = 0; i < 16; i++) s += (*v)[i];
  return s;
}

KERNEL static void matmul_rows(float *out, const float *x, const float *w, int n0, int rows, int K, int M,
                               int accumulate) {
  const float *x0 = x + (long)n0 * K, *x1 = x0 + (rows > 1 ? K : 0), *x2 = x0 + (rows > 2 ? 2 * K : 0),
              *x3 = x0 + (rows > 3 ? 3 * K : 0);
  int K16 = K & ~15;
  for (int m = 0; m < M; m++) {
    const float *wr = w + (long)m * K;
    v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int k = 0; k < K16; k += 16) {
      v16 wv = *(const v16 *)(wr + k);
      a0 += *(const v16 *)(x0 + k) * wv;
      a1 += *(const v16 *)(x1 + k) * wv;
      a2 += *(const v16 *)(x2 + k) * wv;
      a3 += *(const v16 *)(x3 + k) * wv;
    }
    float s[4] = {hsum(&a0), hsum(&a1), hsum(&a2), hsum(&a3)};
    for (int k = K16; k < K; k++) {
      s[0] += x0[k] * wr[k], s[1] += x1[k] * wr[k], s[2] += x2[k] * wr[k], s[3] += x3[k] * wr[k];
    }
    for (int r = 0; r < rows; r++) {
      float *o = out + (long)(n0 + r) * M + m;
      *o = accumulate ? *o + s[r] : s[r];
    }
  }
}

static void matmul(float *out, const float *x, const float *w, int N, int K, int M, int accumulate) {
#pragma omp parallel for schedule(static)
  for (int n0 = 0; n0 < N; n0 += 4) matmul_rows(out, x, w, n0, N - n0 < 4 ? N - n0 : 4, K, M, accumulate);
}

/* dx rows n0..n0+rows: dx[n] += sum_m dout[n][m] w[m] */
KERNEL static void matmul_dx_rows(float *dx, const float *dout, const float *w, int n0, int rows, int K, int M) {
  int K16 = K & ~15;
  for (int m = 0; m < M; m++) {
    const float *wr = w + (long)m * K;
    for (int r = 0; r < rows; r++) {
      float d = dout[(long)(n0 + r) * M + m];
      if (d == 0) continue;
      float *dr = dx + (long)(n0 + r) * K;
      v16 dv = {d, d, d, d, d, d, d, d, d, d, d, d, d, d, d, d};
      for (int k = 0; k < K16; k += 16) *(v16 *)(dr + k) += dv * *(const v16 *)(wr + k);
      for (int k = K16; k < K; k++) dr[k] += d * wr[k];
    }
  }
}

/* dw rows m0..m0+rows: dw[m] += sum_n dout[n][m] x[n] */
KERNEL static void matmul_dw_rows(float *dw, const float *dout, const float *x, int m0, int rows, int N, int K, int M) {
  int K16 = K & ~15;
  for (int n = 0; n < N; n++) {
    const float *xr = x + (long)n * K;
    for (int r = 0; r < rows; r++) {
      float d = dout[(long)n * M + m0 + r];
      if (d == 0) continue;
      float *dr = dw + (long)(m0 + r) * K;
      v16 dv = {d, d, d, d, d, d, d, d, d, d, d, d, d, d, d, d};
      for (int k = 0; k < K16; k += 16) *(v16 *)(dr + k) += dv * *(const v16 *)(xr + k);
      for (int k = K16; k < K; k++) dr[k] += d * xr[k];
    }
  }
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += 4) matmul_dx_rows(dx, dout, w, n0, N - n0 < 4 ? N - n0 : 4, K, M);
  }
  if (dw) {
#pragma omp parallel for schedule(static)
    for (int m0 = 0; m0 < M; m0 += 4) matmul_dw_rows(dw, dout, x, m0, M - m0 < 4 ? M - m0 : 4, N, K, M);
  }
}

static void rmsnorm(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps) {
  for (int n = 0; n < N; n++) {
    const float *xr = x + (long)n * D;
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float r = (float)(1.0 / sqrt(ss / D + eps));
    rstd[n] = r;
    for (int i = 0; i < D; i++) out[(long)n * D + i] = xr[i] * r * w[i];
  }
}

static void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                             const float *rstd, int N, int D) {
  for (int n = 0; n < N; n++) {
    const float *xr = x + (long)n * D, *dr = dout + (long)n * D;
    float r = rstd[n];
    double dot = 0; /* sum_i dout_i w_i x_i */
    for (int i = 0; i < D; i++) dot += (double)dr[i] * w[i] * xr[i];
    float c = (float)(dot * r * r * r / D);
    for (int i = 0; i < D; i++) {
      dx[(long)n * D + i] += dr[i] * w[i] * r - xr[i] * c;
      if (dw) dw[i] += dr[i] * xr[i] * r;
    }
  }
}

static void rope(float *x, const int *pos, const float *cos_t, const float *sin_t, int N, int n_vec, int row_stride,
                 int vec_stride, int dr, int inverse) {
  int half = dr / 2;
  float sign = inverse ? -1.0f : 1.0f;
  for (int n = 0; n < N; n++) {
    const float *c = cos_t + (long)pos[n] * half, *s = sin_t + (long)pos[n] * half;
    for (int v = 0; v < n_vec; v++) {
      float *p = x + (long)n * row_stride + (long)v * vec_stride;
      for (int j = 0; j < half; j++) {
        float a = p[2 * j], b = p[2 * j + 1], sn = sign * s[j];
        p[2 * j] = a * c[j] - b * sn;
        p[2 * j + 1] = a * sn + b * c[j];
      }
    }
  }
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
          float s = 0;
          for (int i = 0; i < dn; i++) s += qt[i] * kj[i];
          for (int i = 0; i < dr; i++) s += qt[dn + i] * pj[i];
          a[j] = s * scale;
          if (a[j] > mx) mx = a[j];
        }
        float sum = 0;
        for (int j = 0; j <= t; j++) sum += a[j] = expf(a[j] - mx);
        for (int j = 0; j <= t; j++) a[j] /= sum;
        for (int j = t + 1; j < T; j++) a[j] = 0;
        float *o = out + ((long)(b * T + t) * H + h) * dv;
        for (int i = 0; i < dv; i++) o[i] = 0;
        for (int j = 0; j <= t; j++) {
          const float *vj = kv + ((long)(b * T + j) * H + h) * dkv + dn;
          for (int i = 0; i < dv; i++) o[i] += a[j] * vj[i];
        }
      }
}

static void attention_backward(float *dq, float *dkv, float *dkpe, const float *dout, const float *att, const float *q,
                               const float *kv, const float *kpe, int B, int T, int H, int dn, int dr, int dv,
                               float scale) {
  int dq_ = dn + dr, dkv_ = dn + dv;
  /* one thread per sequence: k/v gradients of a sequence are written by one thread only */
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float da[T > 0 ? T : 1];
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        const float *a = att + (((long)b * H + h) * T + t) * T;
        const float *go = dout + ((long)(b * T + t) * H + h) * dv;
        const float *qt = q + ((long)(b * T + t) * H + h) * dq_;
        float *dqt = dq + ((long)(b * T + t) * H + h) * dq_;
        float dot = 0;
        for (int j = 0; j <= t; j++) {
          const float *vj = kv + ((long)(b * T + j) * H + h) * dkv_ + dn;
          float *dvj = dkv + ((long)(b * T + j) * H + h) * dkv_ + dn;
          float s = 0;
          for (int i = 0; i < dv; i++) {
            s += go[i] * vj[i];
            dvj[i] += a[j] * go[i];
          }
          da[j] = s;
          dot += a[j] * s;
        }
        for (int j = 0; j <= t; j++) {
          float ds = a[j] * (da[j] - dot) * scale; /* softmax backward, then the scale */
          const float *kj = kv + ((long)(b * T + j) * H + h) * dkv_, *pj = kpe + (long)(b * T + j) * dr;
          float *dkj = dkv + ((long)(b * T + j) * H + h) * dkv_, *dpj = dkpe + (long)(b * T + j) * dr;
          for (int i = 0; i < dn; i++) {
            dqt[i] += ds * kj[i];
            dkj[i] += ds * qt[i];
          }
          for (int i = 0; i < dr; i++) {
            dqt[dn + i] += ds * pj[i];
            dpj[i] += ds * qt[dn + i];
          }
        }
      }
  }
}

static void swiglu(float *h, const float *g, const float *u, int N, int I) {
  long n = (long)N * I;
  for (long i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int N, int I) {
  long n = (long)N * I;
  for (long i = 0; i < n; i++) {
    float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
    du[i] += dh[i] * silu;
    dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
  }
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
    double sum = 0;
    for (int v = 0; v < V; v++) sum += expf(l[v] - mx);
    float lse = mx + (float)log(sum);
    losses[n] = lse - l[targets[n]];
    for (int v = 0; v < V; v++) l[v] = scale * expf(l[v] - lse);
    l[targets[n]] -= scale;
  }
}

static void adamw(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2, float eps,
                  float wd, int t) {
  float c1 = 1.0f - powf(beta1, (float)t), c2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) {
    m[i] = beta1 * m[i] + (1 - beta1) * g[i];
    v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
    float mh = m[i] / c1, vh = v[i] / c2;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
  }
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
    .swiglu = swiglu,
    .swiglu_backward = swiglu_backward,
    .cross_entropy = cross_entropy,
    .adamw = adamw,
};

const keel_backend *keel_backend_cpu(void) { return &cpu; }
