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
  int bf16_moments;        /* AdamW moments in bf16 */
  int recompute;           /* activation recomputation per block */
  float bias_gamma, balance_alpha, mtp_lambda; /* balance_alpha < 0: the config's aux_loss_alpha */
  uint64_t seed;
  int threads;
  long eval_every;
  int eval_batches;
  long ckpt_every;
  int keep_last, keep_every; /* checkpoint retention: the newest K, plus every M-th step forever */
  float spike_z;           /* loss more than z standard deviations above the recent mean is a spike */
  int spike_window;        /* steps in that window */
  int max_rollbacks;       /* rollbacks for a spike at the same step before giving up */
  const char *inject;      /* fault-injection spec (see inject.h); KEEL_INJECT when NULL */
  long abft_every;         /* verify the GEMMs of every N-th step with checksums (0: never); recompute on a mismatch */
  long replay_every;       /* every N steps, replay the step on the reference kernels and compare */
  int quiet;               /* no progress line */
  int heartbeat_fd;        /* > 0: write a byte here after every step (for the supervisor) */
} keel_train_opts;

void keel_train_defaults(keel_train_opts *o);
keel_status keel_train_run(const keel_train_opts *o);

#endif
