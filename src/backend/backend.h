/* The backend op table: every heavy op of the model, as stateless math on
 * float arrays. A backend fills what it implements; the CPU backend
 * (backend/cpu/) implements all of them and defines the right answer.
 *
 * Shapes use the model's letters: N rows (tokens), K input width, M output
 * width, D a normalised width, V vocabulary. Matrices are row-major; a weight
 * w of a linear layer is (M, K) as in HF files, so out = x w^T. Backward ops
 * accumulate (+=) into gradients. */
#ifndef KEEL_BACKEND_H
#define KEEL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* A weight matrix (M, K), row-major, in a storage type for inference. */
typedef enum keel_wtype { KEEL_W_F32, KEEL_W_BF16, KEEL_W_INT8, KEEL_W_FP8 } keel_wtype;
typedef struct keel_wmat {
  keel_wtype type;
  int M, K;
  const void *data;   /* M*K elements: float, bf16 bits, int8 or e4m3 bytes; any alignment */
  const float *scale; /* INT8: (M) per row; FP8: (ceil(M/128), ceil(K/128)) block scales; else NULL */
  int row0;           /* FP8 row views: row m is row row0 + m of the block-scale grid */
} keel_wmat;

typedef struct keel_backend {
  const char *name;
  /* out (N, M) = x (N, K) w (M, K)^T; with accumulate, out += instead */
  void (*matmul)(float *out, const float *x, const float *w, int N, int K, int M, int accumulate);
  /* dx (N, K) += dout (N, M) w; dw (M, K) += dout^T x. dx or dw may be NULL. */
  void (*matmul_backward)(float *dx, float *dw, const float *dout, const float *x, const float *w, int N, int K,
                          int M);
  /* out (N, D) = w * x / sqrt(mean(x^2) + eps); rstd (N) saved for backward */
  void (*rmsnorm)(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps);
  void (*rmsnorm_backward)(float *dx, float *dw, const float *dout, const float *x, const float *w,
                           const float *rstd, int N, int D);
  /* Rotates, in place, n_vec adjacent-pair vectors of width dr per row:
   * x[n*row_stride + v*vec_stride + 0 .. dr) by angle pos[n]*freq[j] for pair j
   * (cos_t/sin_t are (max_pos, dr/2) tables). inverse rotates back (the backward). */
  void (*rope)(float *x, const int *pos, const float *cos_t, const float *sin_t, int N, int n_vec, int row_stride,
               int vec_stride, int dr, int inverse);
  /* Causal multi-head attention for one sequence batch, MLA naive form:
   * q (B*T, H, dq) with dq = dn + dr; kv (B*T, H, dn + dv) holding k_nope then v;
   * kpe (B*T, dr) shared by all heads; out (B*T, H, dv); att (B, H, T, T) probabilities. */
  void (*attention)(float *out, float *att, const float *q, const float *kv, const float *kpe, int B, int T, int H,
                    int dn, int dr, int dv, float scale);
  void (*attention_backward)(float *dq, float *dkv, float *dkpe, const float *dout, const float *att, const float *q,
                             const float *kv, const float *kpe, int B, int T, int H, int dn, int dr, int dv,
                             float scale);
  /* Decode attention in MLA's absorbed form for one query and H heads over a
   * latent cache of len positions: qabs (H, rkv) = W_UK^T q_nope per head,
   * qpe (H, dr) rotated; ckv (len, rkv) normalised latents, kpe (len, dr)
   * rotated keys; olat (H, rkv) = softmax(scale (qabs.ckv + qpe.kpe)) ckv. */
  void (*attention_latent)(float *olat, const float *qabs, const float *qpe, const float *ckv, const float *kpe,
                           int len, int H, int rkv, int dr, float scale);
  /* h (N, I) = silu(g) * u */
  void (*swiglu)(float *h, const float *g, const float *u, int N, int I);
  void (*swiglu_backward)(float *dg, float *du, const float *dh, const float *g, const float *u, int N, int I);
  /* Cross-entropy of logits (N, V) against targets (N) (-1: ignored). Writes each row's
   * loss to losses (N) and overwrites logits with scale * (softmax - onehot) (0 for ignored rows). */
  void (*cross_entropy)(float *losses, float *logits, const int32_t *targets, int N, int V, float scale);
  /* out (N, M) = x (N, K) w^T for a typed weight, dequantised on the fly:
   * few rows read each weight once; many rows take the GEMM path. */
  void (*matmul_w)(float *out, const float *x, const keel_wmat *w, int N);
  /* out (N, K) = x (N, M) deq(w), the other side of the same weight */
  void (*matmul_wt)(float *out, const float *x, const keel_wmat *w, int N);
  /* AdamW on n parameters with gradient gs * g (gs: the clipping factor, 1 for none): m, v
   * moments; decoupled weight decay wd; bias-corrected with step t >= 1 */
  void (*adamw)(float *p, const float *g, float gs, float *m, float *v, long n, float lr, float beta1, float beta2,
                float eps, float wd, int t);
} keel_backend;

const keel_backend *keel_backend_cpu(void);
/* The plain reference kernels that define the right answer. */
const keel_backend *keel_backend_cpu_reference(void);
/* Threads the CPU backend may use (0: all cores). */
void keel_backend_set_threads(int n);
/* With one OpenMP thread per CPU the process may use, keeps thread i on the i-th of them (as
 * OMP_PROC_BIND=true would; nothing when OMP_PROC_BIND is set). For processes whose work is
 * the team's (training, benchmarks): threads the pinned caller creates later inherit its
 * CPU, so such a thread first calls keel_backend_release_thread. */
void keel_backend_pin_threads(void);
/* The calling thread may again run on every CPU the process could use before pinning. */
void keel_backend_release_thread(void);

/* The FP8 block scale that covers element (m, k). */
static inline float keel_wmat_block_scale(const keel_wmat *w, long m, long k) {
  return w->scale[((m + w->row0) / 128) * ((w->K + 127) / 128) + k / 128];
}

/* Typed weights (backend/wmat.c): element (m, k) as float, and a row k0..k0+n. */
float keel_wmat_get(const keel_wmat *w, long m, long k);
void keel_wmat_row(float *dst, const keel_wmat *w, long m, long k0, long n);
size_t keel_wtype_size(keel_wtype t);
const char *keel_wtype_name(keel_wtype t);
/* Parses "f32", "bf16", "int8" or "fp8"; -1 if none. */
int keel_wtype_parse(const char *s);
/* Rows r0 .. r0+n of w, as a matrix of their own (no copy). */
keel_wmat keel_wmat_rows(const keel_wmat *w, int r0, int n);
/* Stores w (M, K) as type t in new buffers *data (and *scale, NULL if none), set in out. */
void keel_wmat_quantize(keel_wmat *out, void **data, float **scale, const float *w, int M, int K, keel_wtype t);

#endif
