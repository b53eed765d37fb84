/* Optimizer and schedules. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void keel_adamw_init(keel_adamw *o, size_t n, float beta1, float beta2, float eps, float wd) {
  memset(o, 0, sizeof *o);
  o->m = keel_xcalloc(n ? n : 1, sizeof *o->m);
  o->v = keel_xcalloc(n ? n : 1, sizeof *o->v);
  o->n = n;
  o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->wd = wd;
}

void keel_adamw_free(keel_adamw *o) {
  free(o->m);
  free(o->v);
  memset(o, 0, sizeof *o);
}

void keel_adamw_step(keel_adamw *o, keel_model *m, float lr) {
  o->t++;
  for (int i = 0; i < m->tab.n; i++) {
    const keel_param_info *p = &m->tab.t[i];
    m->be->adamw(m->params + p->offset, m->grads + p->offset, o->m + p->offset, o->v + p->offset, (long)p->numel, lr,
                 o->beta1, o->beta2, o->eps, p->decay ? o->wd : 0.0f, (int)o->t);
  }
}

double keel_grad_norm(const keel_model *m) {
  double s = 0;
  for (size_t i = 0; i < m->tab.total; i++) s += (double)m->grads[i] * m->grads[i];
  return sqrt(s);
}

double keel_grad_clip(keel_model *m, float max_norm) {
  double norm = keel_grad_norm(m);
  if (max_norm > 0 && norm > max_norm) {
    float k = (float)(max_norm / (norm + 1e-6));
    for (size_t i = 0; i < m->tab.total; i++) m->grads[i] *= k;
  }
  return norm;
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
