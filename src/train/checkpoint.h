/* Training checkpoints that cannot be torn.
 *
 * RUN/ckpt/step-N/ holds an HF model dir (config.json, model.safetensors,
 * tokenizer files), optimizer.safetensors (AdamW moments) and, written last,
 * state.json: the manifest (step, optimizer step, loader state, seed, skipped
 * steps, world size, keel version, config hash, a fingerprint of parameters
 * and optimizer state, and bytes + xxh3 of every file). A checkpoint is built
 * in ckpt/.step-N.tmp/ (every file written, fsynced, closed), then renamed into
 * place and the folder fsynced. A checkpoint whose manifest is missing or
 * whose files do not match it is never loaded.
 *
 * Saves run on a background thread from a memory snapshot, one at a time. */
#ifndef KEEL_TRAIN_CHECKPOINT_H
#define KEEL_TRAIN_CHECKPOINT_H

#include <pthread.h>

#include "../data/loader.h"
#include "../model/model.h"
#include "inject.h"
#include "optim.h"

#define KEEL_MAX_SKIPS 64

typedef struct keel_ckpt_state {
  long step;              /* optimizer steps completed */
  keel_loader_state loader;
  uint64_t seed;
  long skipped[KEEL_MAX_SKIPS]; /* steps whose batch is skipped (after a loss spike) */
  int n_skipped;
} keel_ckpt_state;

typedef struct keel_ckpt_writer {
  char *run, *tokenizer_dir;
  int keep_last, keep_every;
  keel_inject *inject;
  long n_saves;             /* saves started, for save=N injections */
  /* the snapshot being written */
  keel_config c;
  const keel_param_table *tab;
  float *params, *bias;
  void *m, *v;          /* moments as the optimizer keeps them */
  int bf16_moments;
  size_t n_params, n_bias;
  long adamw_t;
  keel_ckpt_state s;
  pthread_t thread;
  int busy;
  /* written by the thread */
  int r_ok;
  double r_seconds;
  uint64_t r_bytes;
  char r_err[512];
  /* result of the last finished save, copied when it is joined; taken with keel_ckpt_writer_poll */
  int done, ok;
  long done_step;
  double seconds;
  uint64_t bytes;
  char err[512];
} keel_ckpt_writer;

void keel_ckpt_writer_init(keel_ckpt_writer *w, const char *run, const char *tokenizer_dir, int keep_last,
                           int keep_every, keel_inject *inject);
/* Snapshots the model and optimizer and starts writing; call only when no save is in flight
 * (keel_ckpt_writer_wait first, and poll its result). in_place: write from the live arrays
 * before returning, without the snapshot's memory (the last save of a run). */
void keel_ckpt_writer_submit(keel_ckpt_writer *w, const keel_model *m, const keel_adamw *opt, const keel_ckpt_state *s,
                             int in_place);
/* Waits for the save in flight, if any. */
void keel_ckpt_writer_wait(keel_ckpt_writer *w);
/* 1 when a save finished since the last call (its result in done_step, ok, err, ...). */
int keel_ckpt_writer_poll(keel_ckpt_writer *w);
void keel_ckpt_writer_free(keel_ckpt_writer *w);

/* Checks a checkpoint folder against its manifest; the message names the file. */
keel_status keel_ckpt_verify(const char *dir);
/* The newest checkpoint of run that verifies (-1 if none); each bad one is
 * reported on log (may be NULL) with the reason. */
keel_status keel_ckpt_latest_good(const char *run, long *step, FILE *log);
/* Verifies and loads step N of run into an initialised model of the same
 * config and the optimizer; checks the parameter fingerprint. */
keel_status keel_ckpt_load(const char *run, long step, keel_model *m, keel_adamw *opt, keel_ckpt_state *s);
/* Copies tokenizer.json and tokenizer_config.json (when present) from one folder to another. */
keel_status keel_copy_tokenizer(const char *from_dir, const char *to_dir);
/* Lists step-N folders of run, newest first; returns the count (*steps is heap). */
int keel_ckpt_list(const char *run, long **steps);

#endif
