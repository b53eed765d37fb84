/* Training checkpoints: RUN/ckpt/step-N/ holds an HF model dir (config.json,
 * model.safetensors, tokenizer files), optimizer.safetensors (AdamW moments)
 * and state.json (step, optimizer step, loader state, seed, world size, keel
 * version, size and xxh3 of every file). Written under a temporary name and
 * renamed into place. */
#ifndef KEEL_TRAIN_CHECKPOINT_H
#define KEEL_TRAIN_CHECKPOINT_H

#include "../data/loader.h"
#include "../model/model.h"
#include "optim.h"

typedef struct keel_ckpt_state {
  long step;              /* optimizer steps completed */
  keel_loader_state loader;
  uint64_t seed;
} keel_ckpt_state;

/* tokenizer_dir: folder whose tokenizer.json / tokenizer_config.json are copied (may be NULL). */
keel_status keel_ckpt_save(const char *run, const keel_model *m, const keel_adamw *opt, const keel_ckpt_state *s,
                           const char *tokenizer_dir);
/* Finds the newest checkpoint of run; returns 0 and leaves *step = -1 when there is none. */
keel_status keel_ckpt_latest(const char *run, long *step);
/* Loads step N of run into an initialised model of the same config, and the optimizer. */
keel_status keel_ckpt_load(const char *run, long step, keel_model *m, keel_adamw *opt, keel_ckpt_state *s);
/* Copies tokenizer.json and tokenizer_config.json (when present) from one folder to another. */
keel_status keel_copy_tokenizer(const char *from_dir, const char *to_dir);

#endif
