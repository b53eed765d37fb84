/* The CPU reference kernels: the plainest correct form of every op. They
 * define the right answer; the fast kernels (ops.c) and every other backend
 * are tested against them. Ops without a faster version are used by the fast
 * backend as they are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

/* out (N, M) = x (N, K) w (M, K)^T */
static void matmul(float *out, const float *x, const float *w, int N, int K, int M, int accumulate) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) {
      const float *xr = x + (long)n * K, *wr = w + (long)m * K;
      float s = 0;
      for (int k = 0; k < K; k++) s += xr[k] * wr[k];
      out[(long)n * M + m] = accumulate ? out[(long)n * M + m] + s : s;
    }
}

/* out (N, M) = x (N, K) deq(w)^T, element by element */
static void matmul_w(float *out, const float *x, const keel_wmat *w, int N) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int m = 0; m < w->M; m++) {
      float s = 0;
      for (int k = 0; k < w->K; k++) s += x[(long)n * w->K + k] * keel_wmat_get(w, m, k);
      out[(long)n * w->M + m] = s;
    }
}

/* out (N, K) = x (N, M) deq(w) */
static void matmul_wt(float *out, const float *x, const keel_wmat *w, int N) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    for (int k = 0; k < w->K; k++) {
      float s = 0;
      for (int m = 0; m < w->M; m++) s += x[(long)n * w->M + m] * keel_wmat_get(w, m, k);
      out[(long)n * w->K + k] = s;
    }
}

static void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                            int M) {
  if (dx)
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) {
        float s = 0;
        for (int m = 0; m < M; m++) s += dout[(long)n * M + m] * w[(long)m * K + k];
        dx[(long)n * K + k] += s;
      }
  if (dw)
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) {
        float s = 0;
        for (int n = 0; n < N; n++) s += dout[(long)n * M + m] * x[(long)n * K + k];
        dw[(long)m * K + k] += s;
      }
}

static void cross_entropy(float *losses, float *logits, const int32_t *targets, int N, int V, float scale) {
  for (int n = 0; n < N; n++) {
    float *l = logits + (long)n * V;
    if (targets[n] < 0) {
      losses[n] = 0;
      memset(l, 0, (size_t)V * sizeof *l);
      continue;
    }
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
    double lse = mx + log(sum);
    losses[n] = (float)(lse - l[targets[n]]);
    for (int v = 0; v < V; v++) l[v] = (float)(scale * exp(l[v] - lse));
    l[targets[n]] -= scale;
  }
}

void keel_cpu_ref_rmsnorm(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps) {
  for (int n = 0; n < N; n++) {
    const float *xr = x + (long)n * D;
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
    float r = (float)(1.0 / sqrt(ss / D + eps));
    rstd[n] = r;
    for (int i = 0; i < D; i++) out[(long)n * D + i] = xr[i] * r * w[i];
  }
}

void keel_cpu_ref_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
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

void keel_cpu_ref_rope(float *x, const int *pos, const float *cos_t, const float *sin_t, int N, int n_vec, int row_stride,
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

void keel_cpu_ref_attention(float *out, float *att, const float *q, const float *kv, const float *kpe, int B, int T, int H,
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

void keel_cpu_ref_attention_backward(float *dq, float *dkv, float *dkpe, const float *dout, const float *att, const float *q,
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

void keel_cpu_ref_swiglu(float *h, const float *g, const float *u, int N, int I) {
  long n = (long)N * I;
  for (long i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void keel_cpu_ref_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int N, int I) {
  long n = (long)N * I;
  for (long i = 0; i < n; i++) {
    float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
    du[i] += dh[i] * silu;
    dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
  }
}

void keel_cpu_ref_adamw(float *p, const float *g, float gs, float *m, float *v, long n, float lr, float beta1,
                        float beta2, float eps, float wd, int t) {
  float c1 = 1.0f - powf(beta1, (float)t), c2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; i++) {
    float gi = g[i] * gs;
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    float mh = m[i] / c1, vh = v[i] / c2;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
  }
}

void keel_cpu_ref_attention_latent(float *olat, const float *qabs, const float *qpe, const float *ckv,
                                   const float *kpe, int len, int H, int rkv, int dr, float scale) {
  float *a = malloc((size_t)(len > 0 ? len : 1) * sizeof *a);
  if (!a) abort();
  for (int h = 0; h < H; h++) {
    const float *qa = qabs + (long)h * rkv, *qp = qpe + (long)h * dr;
    float mx = -INFINITY, sum = 0;
    for (int j = 0; j < len; j++) {
      float s = 0;
      for (int r = 0; r < rkv; r++) s += qa[r] * ckv[(long)j * rkv + r];
      for (int i = 0; i < dr; i++) s += qp[i] * kpe[(long)j * dr + i];
      a[j] = s * scale;
      mx = a[j] > mx ? a[j] : mx;
    }
    for (int j = 0; j < len; j++) sum += a[j] = expf(a[j] - mx);
    float *o = olat + (long)h * rkv;
    for (int r = 0; r < rkv; r++) o[r] = 0;
    for (int j = 0; j < len; j++)
      for (int r = 0; r < rkv; r++) o[r] += a[j] / sum * ckv[(long)j * rkv + r];
  }
  free(a);
}

static const keel_backend reference = {
    .name = "cpu-reference",
    .matmul = matmul,
    .matmul_backward = matmul_backward,
    .rmsnorm = keel_cpu_ref_rmsnorm,
    .rmsnorm_backward = keel_cpu_ref_rmsnorm_backward,
    .rope = keel_cpu_ref_rope,
    .attention = keel_cpu_ref_attention,
    .attention_backward = keel_cpu_ref_attention_backward,
    .attention_latent = keel_cpu_ref_attention_latent,
    .swiglu = keel_cpu_ref_swiglu,
    .swiglu_backward = keel_cpu_ref_swiglu_backward,
    .cross_entropy = cross_entropy,
    .adamw = keel_cpu_ref_adamw,
    .matmul_w = matmul_w,
    .matmul_wt = matmul_wt,
};

const keel_backend *keel_backend_cpu_reference(void) { return &reference; }
