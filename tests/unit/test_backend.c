/* backend/: the fast CPU kernels against the reference kernels, on shapes that
 * hit every path (tails of 4-row blocks, 16- and 64-wide chunks, few rows). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/simd.h"
#include "check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"

static float *rnd(keel_rng *r, size_t n) {
  float *p = keel_xmalloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++) p[i] = keel_rng_normal(r);
  return p;
}

static double rel(const float *a, const float *b, size_t n) {
  double mx = 0, d = 0;
  for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(b[i])), d = fmax(d, fabs(a[i] - b[i]));
  return d / (mx + 1e-12);
}

/* Typed weights: the e4m3 conversion both ways, each type's quantisation error,
 * and matmul_w (decode rows and GEMM path) against the reference. */
static void typed_weights(const keel_backend *fast, const keel_backend *ref, keel_rng *r) {
  for (int c = 0; c < 256; c++) { /* every code but NaN round-trips */
    if ((c & 0x7f) == 0x7f) continue;
    CHECK_MSG(keel_f32_to_f8e4m3(keel_f8e4m3_to_f32((unsigned char)c)) == c, "e4m3 code 0x%02x", c);
  }
  CHECK(keel_f32_to_f8e4m3(1.0625f) == 0x38);  /* tie between 1 and 1.125 goes to even (1) */
  CHECK(keel_f32_to_f8e4m3(1.1875f) == 0x3a);  /* tie between 1.125 and 1.25 goes to even (1.25) */
  CHECK(keel_f32_to_f8e4m3(1e6f) == 0x7e && keel_f32_to_f8e4m3(-1e6f) == 0xfe); /* saturates at 448 */
  CHECK(keel_f32_to_f8e4m3(0x1p-10f) == 0x00 && keel_f32_to_f8e4m3(0x1.8p-9f) == 0x02); /* subnormal ties to even */
  static const int shapes[][3] = {{1, 16, 5},    {3, 37, 130},  {5, 256, 129}, {15, 300, 64},
                                  {16, 130, 70}, {40, 257, 200}, {1, 200, 300}, {20, 64, 290},
                                  {1, 600, 300}, /* one row, K past 256: matmul_wt's register blocks */
                                  {40, 2100, 40}, {40, 40, 4000}}; /* GEMM path, K or M / 2 past a panel's L2 share */
  for (int t = KEEL_W_F32; t <= KEEL_W_FP8; t++)
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
      int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
      float *x = rnd(r, (size_t)N * K), *w = rnd(r, (size_t)M * K);
      for (int k = 0; k < K; k++) w[k] *= 1e-3f; /* a row of small values: fp8 subnormals */
      keel_wmat q;
      void *data;
      float *scale;
      keel_wmat_quantize(&q, &data, &scale, w, M, K, (keel_wtype)t);
      double qerr = 0, bound = t == KEEL_W_F32 ? 0 : t == KEEL_W_BF16 ? 0x1p-8 : t == KEEL_W_INT8 ? 0.5 / 127 : 0x1p-4;
      for (int m = 0; m < M; m++) { /* bf16 relative, int8 against the row's largest value */
        double amax = 0;
        for (int k = 0; k < K; k++) amax = fmax(amax, fabs(w[(size_t)m * K + k]));
        for (int k = 0; k < K; k++) {
          double v = w[(size_t)m * K + k], e = fabs(keel_wmat_get(&q, m, k) - v);
          if (t == KEEL_W_FP8) /* relative for normal codes, half the subnormal step below */
            e /= fabs(v) + 0x1p-10 / 0x1p-4 * scale[(m / 128) * ((K + 127) / 128) + k / 128];
          else
            e /= t == KEEL_W_INT8 ? amax : fabs(v) + 1e-30;
          qerr = fmax(qerr, e);
        }
      }
      CHECK_MSG(qerr <= bound * 1.0001, "%s quantisation error %.3g > %.3g", keel_wtype_name((keel_wtype)t), qerr, bound);
      float *o1 = keel_xmalloc((size_t)N * M * 4), *o2 = keel_xmalloc((size_t)N * M * 4);
      fast->matmul_w(o1, x, &q, N);
      ref->matmul_w(o2, x, &q, N);
      double e = rel(o1, o2, (size_t)N * M);
      CHECK_MSG(e < 1e-5, "matmul_w %s %dx%dx%d: %.3g", keel_wtype_name((keel_wtype)t), N, K, M, e);
      /* the other side, out (N, K) = x (N, M) deq(w), on a view of rows M/3 .. M/3 + M/2 */
      keel_wmat v = keel_wmat_rows(&q, M / 3, M / 2);
      float *xt = rnd(r, (size_t)N * v.M), *t1 = keel_xmalloc((size_t)N * K * 4), *t2 = keel_xmalloc((size_t)N * K * 4);
      fast->matmul_wt(t1, xt, &v, N);
      ref->matmul_wt(t2, xt, &v, N);
      int same = 1; /* the view reads the same values as the whole */
      for (int m = 0; m < v.M; m++)
        for (int k = 0; k < K; k += 7) same &= keel_wmat_get(&v, m, k) == keel_wmat_get(&q, M / 3 + m, k);
      CHECK(same);
      double et = v.M ? rel(t1, t2, (size_t)N * K) : 0;
      CHECK_MSG(et < 1e-5, "matmul_wt %s %dx%dx%d: %.3g", keel_wtype_name((keel_wtype)t), N, v.M, K, et);
      free(xt), free(t1), free(t2);
      free(x), free(w), free(data), free(scale), free(o1), free(o2);
    }
}

/* Every e4m3 code (NaN aside) through the fast kernels: decoding (one row, one column) and the
 * GEMM's packing pick single weights out of w with one-hot x, so each must equal the reference
 * value exactly, under block scales that differ per 128 x 128 block. */
static void fp8_codes(const keel_backend *fast) {
  enum { M = 130, K = 512 };
  unsigned char *data = keel_xmalloc((size_t)M * K);
  float scale[2 * 4], *x = keel_xmalloc(K * sizeof *x), *out = keel_xmalloc((size_t)K * K * sizeof *out);
  for (int i = 0; i < 8; i++) scale[i] = ldexpf(1.0f + i / 8.0f, i - 4);
  for (int m = 0; m < M; m++)
    for (int k = 0; k < K; k++) {
      int c = (m * 37 + k) % 256;
      data[(size_t)m * K + k] = (unsigned char)((c & 0x7f) == 0x7f ? 0 : c);
    }
  keel_wmat w = {.type = KEEL_W_FP8, .M = M, .K = K, .data = data, .scale = scale};
  int bad_rows = 0, bad_cols = 0, bad_gemm = 0;
  for (int k = 0; k < K; k++) { /* out (1, M) = e_k w^T: column k */
    memset(x, 0, K * sizeof *x), x[k] = 1;
    fast->matmul_w(out, x, &w, 1);
    for (int m = 0; m < M; m++) bad_rows += out[m] != keel_wmat_get(&w, m, k);
  }
  for (int m = 0; m < M; m++) { /* out (1, K) = e_m w: row m */
    memset(x, 0, M * sizeof *x), x[m] = 1;
    fast->matmul_wt(out, x, &w, 1);
    for (int k = 0; k < K; k++) bad_cols += out[k] != keel_wmat_get(&w, m, k);
  }
  float *eye = calloc((size_t)K * K, sizeof *eye); /* out (K, M) = I w^T, through the GEMM's packing */
  for (int k = 0; k < K; k++) eye[(size_t)k * K + k] = 1;
  fast->matmul_w(out, eye, &w, K);
  for (int k = 0; k < K; k++)
    for (int m = 0; m < M; m++) bad_gemm += out[(size_t)k * M + m] != keel_wmat_get(&w, m, k);
  CHECK_MSG(!bad_rows && !bad_cols && !bad_gemm, "fp8 codes: %d wrong by rows, %d by columns, %d in the GEMM", bad_rows,
            bad_cols, bad_gemm);
  free(data), free(x), free(out), free(eye);
}

int main(void) {
  const keel_backend *fast = keel_backend_cpu(), *ref = keel_backend_cpu_reference();
  static const int shapes[][3] = {{1, 1, 1},   {3, 17, 5},  {4, 16, 4},   {15, 64, 9},  {16, 64, 64},
                                  {37, 130, 70}, {64, 96, 33}, {5, 200, 130}, {130, 48, 257},
                                  {100, 400, 1100}, {30, 2100, 150}, {20, 70, 2300}}; /* J past a panel's L2 share */
  keel_rng r;
  keel_rng_init(&r, 1);
  typed_weights(fast, ref, &r);
  fp8_codes(fast);
  double worst = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
    float *x = rnd(&r, (size_t)N * K), *w = rnd(&r, (size_t)M * K), *dout = rnd(&r, (size_t)N * M);
    float *o1 = rnd(&r, (size_t)N * M), *o2 = keel_xmalloc((size_t)N * M * sizeof *o2);
    for (int acc = 0; acc < 2; acc++) {
      memcpy(o2, o1, (size_t)N * M * sizeof *o2);
      fast->matmul(o1, x, w, N, K, M, acc);
      ref->matmul(o2, x, w, N, K, M, acc);
      double e = rel(o1, o2, (size_t)N * M);
      worst = fmax(worst, e);
      CHECK_MSG(e < 1e-5, "matmul %dx%dx%d accumulate %d: %.3g", N, K, M, acc, e);
    }
    float *dx1 = rnd(&r, (size_t)N * K), *dx2 = keel_xmalloc((size_t)N * K * sizeof *dx2);
    float *dw1 = rnd(&r, (size_t)M * K), *dw2 = keel_xmalloc((size_t)M * K * sizeof *dw2);
    memcpy(dx2, dx1, (size_t)N * K * sizeof *dx2);
    memcpy(dw2, dw1, (size_t)M * K * sizeof *dw2);
    fast->matmul_backward(dx1, dw1, dout, x, w, N, K, M);
    ref->matmul_backward(dx2, dw2, dout, x, w, N, K, M);
    double ex = rel(dx1, dx2, (size_t)N * K), ew = rel(dw1, dw2, (size_t)M * K);
    worst = fmax(worst, fmax(ex, ew));
    CHECK_MSG(ex < 1e-5 && ew < 1e-5, "matmul backward %dx%dx%d: dx %.3g dw %.3g", N, K, M, ex, ew);
    free(x), free(w), free(dout), free(o1), free(o2), free(dx1), free(dx2), free(dw1), free(dw2);
  }
  /* the vector e^x behind the softmaxes and SwiGLU: within 3e-7 of exp() over its range */
  {
    double worst_exp = 0;
    for (float x0 = -87.0f; x0 < 88.0f; x0 += 0.37f) {
      v16 x;
      for (int k = 0; k < 16; k++) x[k] = x0 + 0.0231f * k;
      v16 y = x;
      keel_exp16(&y);
      for (int k = 0; k < 16; k++) worst_exp = fmax(worst_exp, fabs(y[k] / exp((double)x[k]) - 1));
    }
    v16 e = {NAN, -1000.0f, 1000.0f, 0.0f};
    keel_exp16(&e);
    CHECK_MSG(worst_exp < 3e-7, "exp16 relative error %.3g", worst_exp);
    CHECK(isnan(e[0]) && e[1] > 0 && e[1] < 1e-37f && isfinite(e[2]) && e[2] > 1e38f && e[3] == 1.0f);
  }
  /* cross-entropy: losses and gradients, ignored rows */
  int N = 7, V = 1000;
  float *l1 = rnd(&r, (size_t)N * V), *l2 = keel_xmalloc((size_t)N * V * sizeof *l2), ls1[7], ls2[7];
  for (size_t i = 0; i < (size_t)N * V; i++) l1[i] *= 5;
  memcpy(l2, l1, (size_t)N * V * sizeof *l2);
  int32_t tg[7] = {0, 999, 5, -1, 17, 500, 3};
  fast->cross_entropy(ls1, l1, tg, N, V, 0.25f);
  ref->cross_entropy(ls2, l2, tg, N, V, 0.25f);
  CHECK(rel(ls1, ls2, 7) < 1e-5 && rel(l1, l2, (size_t)N * V) < 1e-5 && ls1[3] == 0);
  free(l1), free(l2);
  /* memory-bound ops over more rows than one 64-row chunk */
  {
    int R = 150, D = 40, pos[150];
    float *x = rnd(&r, (size_t)R * D), *w = rnd(&r, (size_t)D), *dout = rnd(&r, (size_t)R * D), *u = rnd(&r, (size_t)R * D);
    float ct[28], st[28], *o[2], *rs[2], *dx[2], *dw[2], *dg[2], *du[2], *ro[2];
    for (int n = 0; n < R; n++) pos[n] = n % 7;
    for (int i = 0; i < 28; i++) ct[i] = cosf(0.1f * i), st[i] = sinf(0.1f * i);
    for (int b = 0; b < 2; b++) {
      const keel_backend *be = b ? ref : fast;
      o[b] = keel_xmalloc((size_t)R * D * 4), rs[b] = keel_xmalloc((size_t)R * 4), ro[b] = keel_xmalloc((size_t)R * D * 4);
      dx[b] = keel_xcalloc((size_t)R * D, 4), dw[b] = keel_xcalloc((size_t)D, 4);
      dg[b] = keel_xcalloc((size_t)R * D, 4), du[b] = keel_xcalloc((size_t)R * D, 4);
      be->rmsnorm(o[b], rs[b], x, w, R, D, 1e-6f);
      be->rmsnorm_backward(dx[b], dw[b], dout, x, w, rs[b], R, D);
      be->swiglu_backward(dg[b], du[b], dout, x, u, R, D);
      memcpy(ro[b], x, (size_t)R * D * 4);
      be->rope(ro[b] + 2, pos, ct, st, R, 3, D, 12, 8, 0); /* 3 vectors of 8 per row, from column 2 */
    }
    CHECK(rel(o[0], o[1], (size_t)R * D) < 1e-6 && rel(dx[0], dx[1], (size_t)R * D) < 1e-6);
    CHECK(rel(dw[0], dw[1], (size_t)D) < 1e-5 && rel(dg[0], dg[1], (size_t)R * D) < 1e-6 && rel(du[0], du[1], (size_t)R * D) < 1e-6);
    CHECK(rel(ro[0], ro[1], (size_t)R * D) < 1e-6);
    fast->rope(ro[0] + 2, pos, ct, st, R, 3, D, 12, 8, 1);
    CHECK(rel(ro[0], x, (size_t)R * D) < 1e-5); /* the inverse undoes it */
    for (int b = 0; b < 2; b++) (b ? ref : fast)->swiglu(o[b], x, u, R, D);
    CHECK(rel(o[0], o[1], (size_t)R * D) < 1e-6);
    for (int b = 0; b < 2; b++) free(o[b]), free(rs[b]), free(dx[b]), free(dw[b]), free(dg[b]), free(du[b]), free(ro[b]);
    free(x), free(w), free(dout), free(u);
  }
  /* AdamW: three steps from the same state, with and without weight decay, a length that is no multiple of 16 */
  {
    long n = 40007;
    float *st[2][4];
    float *g = rnd(&r, (size_t)n);
    for (int k = 0; k < 4; k++) st[0][k] = rnd(&r, (size_t)n);
    for (long i = 0; i < n; i++) st[0][3][i] = fabsf(st[0][3][i]); /* v >= 0 */
    for (int k = 0; k < 4; k++) st[1][k] = keel_xmalloc((size_t)n * 4), memcpy(st[1][k], st[0][k], (size_t)n * 4);
    for (int t = 1; t <= 3; t++)
      for (int b = 0; b < 2; b++)
        (b ? ref : fast)->adamw(st[b][0], g, t == 3 ? 0.5f : 1.0f, st[b][2], st[b][3], n, 1e-2f, 0.9f, 0.95f, 1e-8f,
                                t == 2 ? 0.1f : 0, t);
    CHECK_MSG(rel(st[0][0], st[1][0], (size_t)n) < 1e-6 && rel(st[0][2], st[1][2], (size_t)n) < 1e-6 &&
                  rel(st[0][3], st[1][3], (size_t)n) < 1e-6,
              "adamw: %.3g", rel(st[0][0], st[1][0], (size_t)n));
    for (int k = 0; k < 4; k++) free(st[0][k]), free(st[1][k]);
    free(g);
  }
  /* decode attention over a latent cache: head groups of 6 (5, 12 and 13 heads: one group
   * short, none, a three-way split), position blocks of 4 and column tiles of 64 with and
   * without remainders, widths past and short of a vector; the same bits on 1 and 2 threads */
  {
    static const int lat_shapes[][4] = {{37, 5, 40, 8}, {1, 12, 512, 64}, {130, 12, 72, 24}, {9, 13, 16, 16}};
    for (int t = 0; t < 4; t++) {
      int len = lat_shapes[t][0], H = lat_shapes[t][1], rkv = lat_shapes[t][2], dr = lat_shapes[t][3];
      size_t no = (size_t)H * rkv;
      float *qa = rnd(&r, no), *qp = rnd(&r, (size_t)H * dr), *ck = rnd(&r, (size_t)len * rkv);
      float *kp = rnd(&r, (size_t)len * dr), *o[3];
      for (int k = 0; k < 3; k++) o[k] = keel_xmalloc(no * 4);
      ref->attention_latent(o[2], qa, qp, ck, kp, len, H, rkv, dr, 0.2f);
      for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        fast->attention_latent(o[k], qa, qp, ck, kp, len, H, rkv, dr, 0.2f);
      }
      omp_set_num_threads(omp_get_num_procs());
      CHECK_MSG(rel(o[0], o[2], no) < 1e-5, "attention_latent %d x %d x %d: %.3g", len, H, rkv, rel(o[0], o[2], no));
      CHECK_MSG(!memcmp(o[0], o[1], no * 4), "attention_latent %d x %d x %d: 1 and 2 threads differ", len, H, rkv);
      free(qa), free(qp), free(ck), free(kp), free(o[0]), free(o[1]), free(o[2]);
    }
  }
  /* attention forward and backward: one causal block, then T past it and not a multiple of it */
  for (int pass = 0; pass < 2; pass++) {
    int B = 2, T = pass ? 150 : 9, H = 3, dn = 20, dr = 8, dv = 17, Nt = B * T;
    float *q = rnd(&r, (size_t)Nt * H * (dn + dr)), *kv = rnd(&r, (size_t)Nt * H * (dn + dv)), *kpe = rnd(&r, (size_t)Nt * dr);
    float *o1 = keel_xmalloc((size_t)Nt * H * dv * 4), *o2 = keel_xmalloc((size_t)Nt * H * dv * 4);
    float *a1 = keel_xmalloc((size_t)B * H * T * T * 4), *a2 = keel_xmalloc((size_t)B * H * T * T * 4);
    memset(a1, 0xff, (size_t)B * H * T * T * 4); /* NaN: the masked lanes past the diagonal must not leak */
    if (pass) /* key 143 far larger than the rest: rows 128..142 must not see it (a masked lane of theirs) */
      for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
          for (int i = 0; i < dn; i++) kv[((size_t)(b * T + 143) * H + h) * (dn + dv) + i] *= 1000;
    fast->attention(o1, a1, q, kv, kpe, B, T, H, dn, dr, dv, 0.3f);
    ref->attention(o2, a2, q, kv, kpe, B, T, H, dn, dr, dv, 0.3f);
    CHECK(rel(o1, o2, (size_t)Nt * H * dv) < 1e-5 && rel(a1, a2, (size_t)B * H * T * T) < 1e-5);
    float *go = rnd(&r, (size_t)Nt * H * dv);
    float *g[2][3];
    for (int k = 0; k < 2; k++) {
      g[k][0] = keel_xcalloc((size_t)Nt * H * (dn + dr), 4);
      g[k][1] = keel_xcalloc((size_t)Nt * H * (dn + dv), 4);
      g[k][2] = keel_xcalloc((size_t)Nt * dr, 4);
      (k ? ref : fast)->attention_backward(g[k][0], g[k][1], g[k][2], go, a2, q, kv, kpe, B, T, H, dn, dr, dv, 0.3f);
    }
    CHECK(rel(g[0][0], g[1][0], (size_t)Nt * H * (dn + dr)) < 1e-5);
    CHECK(rel(g[0][1], g[1][1], (size_t)Nt * H * (dn + dv)) < 1e-5);
    CHECK(rel(g[0][2], g[1][2], (size_t)Nt * dr) < 1e-5);
    for (int k = 0; k < 2; k++) free(g[k][0]), free(g[k][1]), free(g[k][2]);
    free(q), free(kv), free(kpe), free(o1), free(o2), free(a1), free(a2), free(go);
  }
  /* the same bits whatever the thread count (row blocks, chunks, panel groups and, in dx, super-chunks and parts
   * of J all split; in the second shape, few panels: every GEMM split by rows too, the last panel narrow; in the
   * third, dw is tall: blocks of rows run transposed, the last one short; in the fourth, dw is one group, its
   * rows split in ranges of fewer blocks, one per thread; in the fifth, dw's J (1100) is two chunks; in the sixth,
   * dx's 3 groups of panels, too few rows to split, become 6 smaller ones) */
  static const int bits_shapes[][3] = {{200, 450, 2100}, {1000, 300, 160}, {300, 40, 1000}, {256, 512, 352},
                                       {1100, 64, 200}, {128, 384, 1024}};
  for (int shape = 0; shape < 6; shape++) {
    int n = bits_shapes[shape][0], kk = bits_shapes[shape][1], m = bits_shapes[shape][2];
    float *x = rnd(&r, (size_t)n * kk), *w = rnd(&r, (size_t)m * kk), *o[2], *dx[2], *dw[2];
    for (int k = 0; k < 2; k++) {
      omp_set_num_threads(k + 1);
      o[k] = keel_xmalloc((size_t)n * m * 4), dx[k] = keel_xcalloc((size_t)n * kk, 4);
      dw[k] = keel_xcalloc((size_t)m * kk, 4);
      fast->matmul(o[k], x, w, n, kk, m, 0);
      fast->matmul_backward(dx[k], dw[k], o[k], x, w, n, kk, m);
    }
    omp_set_num_threads(omp_get_num_procs());
    CHECK(!memcmp(o[0], o[1], (size_t)n * m * 4) && !memcmp(dw[0], dw[1], (size_t)m * kk * 4));
    CHECK(!memcmp(dx[0], dx[1], (size_t)n * kk * 4));
    for (int k = 0; k < 2; k++) free(o[k]), free(dx[k]), free(dw[k]);
    free(x), free(w);
  }
  /* few rows against W^T run transposed (C^T = W A^T): the same bits as with W^T stored as a
   * plain matrix, which takes the usual path; with and without accumulating, one and two
   * threads, J past a panel's L2 share (super-chunks and parts) in the fifth shape, 50 rows
   * (C^T's panel 50 wide: three whole vectors and two columns) and a last block of 40 weight
   * rows in the sixth; 200 rows, four panels of A^T, in the eighth (the float path on AVX-512).
   * A typed weight (dequantised in blocks of rows; two panels of A^T in the seventh) against the
   * plain path on its dequantised values, likewise. */
  static const int few[][3] = {{1, 70, 40}, {5, 300, 100}, {40, 512, 352}, {128, 352, 512}, {20, 2100, 300},
                               {50, 130, 1000}, {100, 200, 700}, {200, 300, 700}};
  for (size_t f = 0; f < sizeof few / sizeof *few; f++)
    for (int acc = 0; acc < 2; acc++) {
      int n = few[f][0], kk = few[f][1], m = few[f][2], bad = 0;
      float *x = rnd(&r, (size_t)n * kk), *w = rnd(&r, (size_t)m * kk), *wt = keel_xmalloc((size_t)kk * m * 4);
      float *c0 = rnd(&r, (size_t)n * m), *c1 = keel_xmalloc((size_t)n * m * 4), *c2 = keel_xmalloc((size_t)n * m * 4);
      for (int i = 0; i < m; i++)
        for (int k = 0; k < kk; k++) wt[(size_t)k * m + i] = w[(size_t)i * kk + k];
      for (int th = 1; th <= 2; th++) {
        omp_set_num_threads(th);
        memcpy(c1, c0, (size_t)n * m * 4), memcpy(c2, c0, (size_t)n * m * 4);
        keel_gemm_b bw = keel_gemm_f32(w, 1, kk), bwt = keel_gemm_f32(wt, m, 1);
        keel_cpu_gemm(c1, m, x, kk, 1, &bw, n, kk, m, acc);
        keel_cpu_gemm(c2, m, x, kk, 1, &bwt, n, kk, m, acc);
        bad += memcmp(c1, c2, (size_t)n * m * 4) != 0;
      }
      for (int t = KEEL_W_F32; t <= KEEL_W_FP8; t++) {
        keel_wmat q;
        void *data;
        float *scale;
        keel_wmat_quantize(&q, &data, &scale, w, m, kk, (keel_wtype)t);
        for (int i = 0; i < m; i++)
          for (int k = 0; k < kk; k++) wt[(size_t)k * m + i] = keel_wmat_get(&q, i, k);
        for (int th = 1; th <= 2; th++) {
          omp_set_num_threads(th);
          memcpy(c1, c0, (size_t)n * m * 4), memcpy(c2, c0, (size_t)n * m * 4);
          keel_gemm_b bq = keel_gemm_wmat(&q, 0), bwt = keel_gemm_f32(wt, m, 1);
          keel_cpu_gemm(c1, m, x, kk, 1, &bq, n, kk, m, acc);
          keel_cpu_gemm(c2, m, x, kk, 1, &bwt, n, kk, m, acc);
          bad += memcmp(c1, c2, (size_t)n * m * 4) != 0;
        }
        free(data), free(scale);
      }
      omp_set_num_threads(omp_get_num_procs());
      CHECK_MSG(!bad, "few rows %dx%dx%d acc %d: not the same bits as the plain path", n, kk, m, acc);
      free(x), free(w), free(wt), free(c0), free(c1), free(c2);
    }
  fprintf(stderr, "fast vs reference GEMM: worst relative error %.2e\n", worst);
  return check_done("test_backend");
}
