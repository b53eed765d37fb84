/* The CPU reference kernels shared by the fast CPU backend (reference.c). */
#ifndef KEEL_BACKEND_CPU_REFERENCE_H
#define KEEL_BACKEND_CPU_REFERENCE_H

#include "../backend.h"

void keel_cpu_ref_rmsnorm(float *out, float *rstd, const float *x, const float *w, int N, int D, float eps);
void keel_cpu_ref_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                                   const float *rstd, int N, int D);
void keel_cpu_ref_rope(float *x, const int *pos, const float *cos_t, const float *sin_t, int N, int n_vec,
                       int row_stride, int vec_stride, int dr, int inverse);
void keel_cpu_ref_attention(float *out, float *att, const float *q, const float *kv, const float *kpe, int B, int T,
                            int H, int dn, int dr, int dv, float scale);
void keel_cpu_ref_attention_backward(float *dq, float *dkv, float *dkpe, const float *dout, const float *att,
                                     const float *q, const float *kv, const float *kpe, int B, int T, int H, int dn,
                                     int dr, int dv, float scale);
void keel_cpu_ref_attention_latent(float *olat, const float *qabs, const float *qpe, const float *ckv,
                                   const float *kpe, int len, int H, int rkv, int dr, float scale);
void keel_cpu_ref_swiglu(float *h, const float *g, const float *u, int N, int I);
void keel_cpu_ref_swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int N, int I);
void keel_cpu_ref_adamw(float *p, const float *g, float gs, float *m, float *v, long n, float lr, float beta1,
                        float beta2, float eps, float wd, int t);

#endif
