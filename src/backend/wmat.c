/* Typed weight matrices: scalar access and quantisation. The fast kernels
 * that read them are in cpu/wmat.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dtype.h"
#include "../core/error.h"
#include "backend.h"

size_t keel_wtype_size(keel_wtype t) { return t == KEEL_W_F32 ? 4 : t == KEEL_W_BF16 ? 2 : 1; }

const char *keel_wtype_name(keel_wtype t) {
  static const char *const names[] = {"f32", "bf16", "int8", "fp8"};
  return names[t];
}

int keel_wtype_parse(const char *s) {
  for (int t = KEEL_W_F32; t <= KEEL_W_FP8; t++)
    if (!strcmp(s, keel_wtype_name(t))) return t;
  return -1;
}

float keel_wmat_get(const keel_wmat *w, long m, long k) {
  const uint8_t *p = w->data;
  long i = m * w->K + k;
  switch (w->type) {
    case KEEL_W_F32: {
      float f;
      memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case KEEL_W_BF16: return keel_bf16_to_f32((unsigned short)(p[2 * i] | p[2 * i + 1] << 8));
    case KEEL_W_INT8: return (float)(int8_t)p[i] * w->scale[m];
    case KEEL_W_FP8: return keel_f8e4m3_to_f32(p[i]) * keel_wmat_block_scale(w, m, k);
  }
  return 0;
}

void keel_wmat_row(float *dst, const keel_wmat *w, long m, long k0, long n) {
  if (w->type == KEEL_W_F32) {
    memcpy(dst, (const float *)w->data + m * w->K + k0, (size_t)n * sizeof *dst);
    return;
  }
  for (long k = 0; k < n; k++) dst[k] = keel_wmat_get(w, m, k0 + k);
}

keel_wmat keel_wmat_rows(const keel_wmat *w, int r0, int n) {
  keel_wmat v = *w;
  v.M = n;
  v.data = (const uint8_t *)w->data + (size_t)r0 * w->K * keel_wtype_size(w->type);
  if (w->type == KEEL_W_INT8) v.scale = w->scale + r0;
  if (w->type == KEEL_W_FP8) v.row0 = w->row0 + r0;
  return v;
}

void keel_wmat_quantize(keel_wmat *out, void **data, float **scale, const float *w, int M, int K, keel_wtype t) {
  size_t n = (size_t)M * K;
  uint8_t *d = keel_xmalloc(n * keel_wtype_size(t) + 1);
  float *s = NULL;
  switch (t) {
    case KEEL_W_F32: memcpy(d, w, n * 4); break;
    case KEEL_W_BF16:
      for (size_t i = 0; i < n; i++) {
        unsigned short h = keel_f32_to_bf16(w[i]);
        d[2 * i] = (uint8_t)h, d[2 * i + 1] = (uint8_t)(h >> 8);
      }
      break;
    case KEEL_W_INT8: /* symmetric, per row: scale = absmax / 127 */
      s = keel_xmalloc((size_t)M * sizeof *s);
      for (int m = 0; m < M; m++) {
        float amax = 0;
        for (int k = 0; k < K; k++) amax = fmaxf(amax, fabsf(w[(size_t)m * K + k]));
        s[m] = amax > 0 ? amax / 127.0f : 1.0f;
        for (int k = 0; k < K; k++) d[(size_t)m * K + k] = (uint8_t)(int8_t)lrintf(w[(size_t)m * K + k] / s[m]);
      }
      break;
    case KEEL_W_FP8: { /* DeepSeek's format: 128 x 128 blocks, scale = absmax / 448 */
      int br = (M + 127) / 128, bc = (K + 127) / 128;
      s = keel_xmalloc((size_t)br * bc * sizeof *s);
      for (int bi = 0; bi < br; bi++)
        for (int bj = 0; bj < bc; bj++) {
          int m1 = bi * 128 + 128 < M ? bi * 128 + 128 : M, k1 = bj * 128 + 128 < K ? bj * 128 + 128 : K;
          float amax = 0;
          for (int m = bi * 128; m < m1; m++)
            for (int k = bj * 128; k < k1; k++) amax = fmaxf(amax, fabsf(w[(size_t)m * K + k]));
          float sc = s[bi * bc + bj] = amax > 0 ? amax / 448.0f : 1.0f;
          for (int m = bi * 128; m < m1; m++)
            for (int k = bj * 128; k < k1; k++) d[(size_t)m * K + k] = keel_f32_to_f8e4m3(w[(size_t)m * K + k] / sc);
        }
      break;
    }
  }
  *data = d, *scale = s;
  *out = (keel_wmat){t, M, K, d, s, 0};
}
