/* AdamW with decoupled weight decay (matrices only, never norms), global
 * gradient-norm clipping, and learning-rate schedules. */
#ifndef KEEL_TRAIN_OPTIM_H
#define KEEL_TRAIN_OPTIM_H

#include "../model/model.h"

typedef struct keel_adamw {
  void *m, *v;    /* (n) moments, laid out like the parameters: float, or bf16 bits when bf16 is set */
  int bf16;       /* moments kept in bf16 (as DeepSeek-V3 does): 4 bytes per parameter instead of 8 */
  size_t n;
  long t;         /* steps taken */
  float beta1, beta2, eps, wd;
} keel_adamw;

void keel_adamw_init(keel_adamw *o, size_t n, float beta1, float beta2, float eps, float wd, int bf16);
/* Bytes of one moment array. */
size_t keel_adamw_moment_bytes(const keel_adamw *o);
/* Sets both moments from arrays of n floats (src_bf16 0) or n bf16 values (1), converting as needed. */
void keel_adamw_set(keel_adamw *o, const void *m, const void *v, int src_bf16);
void keel_adamw_free(keel_adamw *o);
/* One AdamW step on gs * the gradients (gs: keel_grad_clip_scale's factor, or 1). */
void keel_adamw_step(keel_adamw *o, keel_model *m, float lr, float gs);

/* L2 norm of all gradients (double accumulation). */
double keel_grad_norm(const keel_model *m);
/* The factor that brings the gradients' norm (keel_grad_norm's value) down to max_norm: 1
 * when it is already at most max_norm or max_norm is 0. AdamW applies it as it reads each
 * gradient, so clipping costs no pass of its own. */
float keel_grad_clip_scale(float max_norm, double norm);

typedef enum keel_schedule { KEEL_SCHED_COSINE, KEEL_SCHED_WSD, KEEL_SCHED_CONSTANT } keel_schedule;
/* Linear warm-up to lr, then: cosine to min_lr; WSD (constant, then linear
 * decay to min_lr over the last 20% of steps); or constant. step is 0-based. */
float keel_lr_at(keel_schedule s, long step, long total, long warmup, float lr, float min_lr);
int keel_schedule_parse(const char *name, keel_schedule *s);

#endif
