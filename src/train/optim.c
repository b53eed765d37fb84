/* Optimizer and schedules. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "../core/dtype.h"

enum { CHUNK = 1 << 16 }; /* gradients summed per chunk by keel_grad_norm */
/* parameters per AdamW task: 2^16, not 2^13, as each task's calls cost a few microseconds (the
 * backend's loop, a nested parallel region; bench-b's 185M parameters: 0.110 s, not 0.122 s) */
enum { SLICE = 1 << 16 };
enum { WIDEN = 1 << 13 }; /* bf16 moments are widened this many at a time */

void keel_adamw_init(keel_adamw *o, size_t n, float beta1, float beta2, float eps, float wd, int bf16) {
  memset(o, 0, sizeof *o);
  o->bf16 = bf16;
  o->n = n;
  o->m = keel_xcalloc(n ? n : 1, keel_adamw_moment_bytes(o));
  o->v = keel_xcalloc(n ? n : 1, keel_adamw_moment_bytes(o));
  o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->wd = wd;
}

void keel_adamw_free(keel_adamw *o) {
  free(o->m), free(o->v);
  memset(o, 0, sizeof *o);
}

size_t keel_adamw_moment_bytes(const keel_adamw *o) { return o->bf16 ? 2 : 4; }

static void widen(float *dst, const uint16_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = keel_bf16_to_f32(src[i]);
}

static void narrow(uint16_t *dst, const float *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = keel_f32_to_bf16(src[i]);
}

void keel_adamw_set(keel_adamw *o, const void *m, const void *v, int src_bf16) {
  const void *src[2] = {m, v};
  void *dst[2] = {o->m, o->v};
  for (int k = 0; k < 2; k++) {
    if (src_bf16 == o->bf16) memcpy(dst[k], src[k], o->n * keel_adamw_moment_bytes(o));
    else if (src_bf16) widen(dst[k], src[k], o->n);
    else narrow(dst[k], src[k], o->n);
  }
}

/* AdamW on the parameters in [c0, c1): each tensor's part with its own weight decay. */
static void step_slice(const keel_adamw *o, keel_model *m, size_t c0, size_t c1, float lr, float gs) {
  const keel_param_table *tab = &m->tab;
  int lo = 0, hi = tab->n; /* the first tensor that ends after c0 (tensors lie in offset order) */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (tab->t[mid].offset + tab->t[mid].numel <= c0) lo = mid + 1;
    else hi = mid;
  }
  for (int i = lo; i < tab->n && tab->t[i].offset < c1; i++) {
    const keel_param_info *p = &tab->t[i];
    size_t a = p->offset > c0 ? p->offset : c0, b = p->offset + p->numel < c1 ? p->offset + p->numel : c1;
    if (a >= b) continue;
    float wd = p->decay ? o->wd : 0.0f;
    if (!o->bf16) {
      m->be->adamw(m->params + a, m->grads + a, gs, (float *)o->m + a, (float *)o->v + a, (long)(b - a), lr, o->beta1,
                   o->beta2, o->eps, wd, (int)o->t);
      continue;
    }
    for (size_t a1 = a; a1 < b; a1 += WIDEN) {
      size_t n = b - a1 < WIDEN ? b - a1 : WIDEN;
      float tm[WIDEN], tv[WIDEN];
      uint16_t *bm = (uint16_t *)o->m + a1, *bv = (uint16_t *)o->v + a1;
      widen(tm, bm, n), widen(tv, bv, n);
      m->be->adamw(m->params + a1, m->grads + a1, gs, tm, tv, (long)n, lr, o->beta1, o->beta2, o->eps, wd, (int)o->t);
      narrow(bm, tm, n), narrow(bv, tv, n);
    }
  }
}

/* One parallel pass over all parameters in fixed slices (each element's update does not depend
 * on the split, so any thread count gives the same bits). */
void keel_adamw_step(keel_adamw *o, keel_model *m, float lr, float gs) {
  o->t++;
  size_t total = m->tab.total;
  long ns = (long)((total + SLICE - 1) / SLICE);
#pragma omp parallel for schedule(dynamic, 8) /* threads take slices as they come free */
  for (long s = 0; s < ns; s++)
    step_slice(o, m, (size_t)s * SLICE, (size_t)(s + 1) * SLICE < total ? (size_t)(s + 1) * SLICE : total, lr, gs);
}

typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16), aligned(4)));

/* a[k] += x[i]^2 for i % 16 == k, in order: sixteen running sums in four 4-double vectors (the
 * same sums, in the same order, as sixteen scalar chains), then the n % 16 left into a[0]. Four
 * chains, not two, and the stream fetched 16 KB ahead: the gradients come from memory, and two
 * chains with the hardware's prefetch alone read them at 11 GB/s on two threads (20 GB/s now).
 * (One 16-double vector would live on the stack in the AVX2 copy, stored and reloaded every
 * 16 floats: an 8-double one cost 5% of an AVX2 training step.) */
__attribute__((KEEL_CLONES)) static void add_squares(double a[16], const float *x, size_t n) {
  v4d s0 = {a[0], a[1], a[2], a[3]}, s1 = {a[4], a[5], a[6], a[7]};
  v4d s2 = {a[8], a[9], a[10], a[11]}, s3 = {a[12], a[13], a[14], a[15]};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __builtin_prefetch(x + i + 4096);
    v4d d0 = __builtin_convertvector(*(const v4f *)(x + i), v4d);
    v4d d1 = __builtin_convertvector(*(const v4f *)(x + i + 4), v4d);
    v4d d2 = __builtin_convertvector(*(const v4f *)(x + i + 8), v4d);
    v4d d3 = __builtin_convertvector(*(const v4f *)(x + i + 12), v4d);
    s0 += d0 * d0, s1 += d1 * d1, s2 += d2 * d2, s3 += d3 * d3;
  }
  for (int k = 0; k < 4; k++) a[k] = s0[k], a[4 + k] = s1[k], a[8 + k] = s2[k], a[12 + k] = s3[k];
  for (; i < n; i++) a[0] += (double)x[i] * x[i];
}

double keel_grad_norm(const keel_model *m) {
  /* partial sums over fixed chunks, added in chunk order: the same value for any thread count */
  long nch = (long)((m->tab.total + CHUNK - 1) / CHUNK);
  double *part = keel_xmalloc((size_t)(nch ? nch : 1) * sizeof *part), s = 0;
#pragma omp parallel for schedule(dynamic)
  for (long ch = 0; ch < nch; ch++) {
    size_t i0 = (size_t)ch * CHUNK, i1 = i0 + CHUNK < m->tab.total ? i0 + CHUNK : m->tab.total;
    double a[16] = {0}, q = 0;
    add_squares(a, m->grads + i0, i1 - i0);
    for (int k = 0; k < 16; k += 4) q += (a[k] + a[k + 1]) + (a[k + 2] + a[k + 3]);
    part[ch] = q;
  }
  for (long ch = 0; ch < nch; ch++) s += part[ch];
  free(part);
  return sqrt(s);
}

float keel_grad_clip_scale(float max_norm, double norm) {
  return max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
}

float keel_lr_at(keel_schedule s, long step, long total, long warmup, float lr, float min_lr) {
  if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
  if (s == KEEL_SCHED_CONSTANT || total <= warmup) return lr;
  double tau = (double)(step - warmup) / (double)(total - warmup);
  if (tau > 1) tau = 1;
  if (s == KEEL_SCHED_COSINE) return (float)(min_lr + 0.5 * (lr - min_lr) * (1 + cos(3.14159265358979 * tau)));
  /* WSD: stable, then the last 20% decays linearly */
  if (tau < 0.8) return lr;
  return (float)(lr + (min_lr - lr) * (tau - 0.8) / 0.2);
}

int keel_schedule_parse(const char *name, keel_schedule *s) {
  if (strcmp(name, "cosine") == 0) *s = KEEL_SCHED_COSINE;
  else if (strcmp(name, "wsd") == 0) *s = KEEL_SCHED_WSD;
  else if (strcmp(name, "constant") == 0) *s = KEEL_SCHED_CONSTANT;
  else return 0;
  return 1;
}
