/* The training loop: batches from token shards, forward/backward with
 * gradient accumulation, clipping, AdamW, the balancing-bias update, metrics,
 * evaluation, checkpoints and resume. */
#ifndef KEEL_TRAIN_TRAINER_H
#define KEEL_TRAIN_TRAINER_H

#include <stdint.h>

#include "../core/error.h"
#include "optim.h"

typedef struct keel_train_opts {
  const char *data;        /* folder from keel prepare */
  const char *out;         /* run folder */
  const char *model_dir;   /* start from this model, or */
  const char *config_path; /* a fresh model of this config */
  long steps;
  int batch, seq, grad_accum;
  float lr, min_lr;
  long warmup;
  keel_schedule schedule;
  float wd, clip, beta1, beta2;
  float bias_gamma, balance_alpha, mtp_lambda; /* balance_alpha < 0: the config's aux_loss_alpha */
  uint64_t seed;
  int threads;
  long eval_every;
  int eval_batches;
  long ckpt_every;
  int quiet;               /* no progress line */
} keel_train_opts;

void keel_train_defaults(keel_train_opts *o);
keel_status keel_train_run(const keel_train_opts *o);

#endif
