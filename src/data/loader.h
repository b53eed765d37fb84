/* The training data loader: B x T windows of a token shard, in an order fixed
 * by (seed, epoch), with a three-number state so that a resumed run reads
 * exactly the batch an uninterrupted one would have read next. */
#ifndef KEEL_DATA_LOADER_H
#define KEEL_DATA_LOADER_H

#include <stdint.h>

#include "../core/error.h"
#include "shard.h"

typedef struct keel_loader_state {
  uint64_t seed;
  uint64_t epoch;    /* completed passes over the shard */
  uint64_t position; /* next window within this epoch's order */
} keel_loader_state;

typedef struct keel_loader {
  const keel_shard *shard;
  int B, T;
  uint64_t n_windows; /* (n_tokens - 1) / T windows of T+1 tokens, stride T */
  uint64_t *order;    /* (n_windows) window indices for the current epoch */
  keel_loader_state state;
} keel_loader;

keel_status keel_loader_init(keel_loader *l, const keel_shard *shard, int B, int T, uint64_t seed);
void keel_loader_free(keel_loader *l);
/* Fills inputs x and targets y, both (B, T); y[b][t] is the token after x[b][t]. */
void keel_loader_next(keel_loader *l, int32_t *x, int32_t *y);
/* Restores a state saved from a loader over the same shard, B and T. */
keel_status keel_loader_restore(keel_loader *l, const keel_loader_state *st);

#endif
