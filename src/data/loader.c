/* Loader: Fisher-Yates order of windows per epoch from a counter-based RNG. */
#include "loader.h"

#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

static void shuffle(keel_loader *l) {
  keel_rng r;
  keel_rng_init(&r, keel_rng_key(l->state.seed, l->state.epoch, 0, KEEL_RNG_DATA));
  for (uint64_t i = 0; i < l->n_windows; i++) l->order[i] = i;
  for (uint64_t i = l->n_windows; i > 1; i--) {
    uint64_t j = keel_rng_below(&r, i);
    uint64_t t = l->order[i - 1];
    l->order[i - 1] = l->order[j];
    l->order[j] = t;
  }
}

keel_status keel_loader_init(keel_loader *l, const keel_shard *shard, int B, int T, uint64_t seed) {
  memset(l, 0, sizeof *l);
  if (B <= 0 || T <= 0) return keel_fail(KEEL_ERR_ARG, "batch (%d) and sequence length (%d) must be positive", B, T);
  if (shard->h.n_tokens < (uint64_t)T + 1)
    return keel_fail(KEEL_ERR_ARG, "shard has %llu tokens, fewer than one window of %d+1",
                     (unsigned long long)shard->h.n_tokens, T);
  l->shard = shard;
  l->B = B;
  l->T = T;
  l->n_windows = (shard->h.n_tokens - 1) / (uint64_t)T;
  l->order = keel_xmalloc(l->n_windows * sizeof *l->order);
  l->state.seed = seed;
  shuffle(l);
  return KEEL_OK;
}

void keel_loader_free(keel_loader *l) {
  free(l->order);
  l->order = NULL;
}

keel_status keel_loader_restore(keel_loader *l, const keel_loader_state *st) {
  if (st->position > l->n_windows)
    return keel_fail(KEEL_ERR_FORMAT, "loader position %llu is past the %llu windows of this shard",
                     (unsigned long long)st->position, (unsigned long long)l->n_windows);
  l->state = *st;
  shuffle(l);
  return KEEL_OK;
}

void keel_loader_next(keel_loader *l, int32_t *x, int32_t *y) {
  for (int b = 0; b < l->B; b++) {
    if (l->state.position == l->n_windows) {
      l->state.epoch++;
      l->state.position = 0;
      shuffle(l);
    }
    uint64_t start = l->order[l->state.position++] * (uint64_t)l->T;
    for (int t = 0; t < l->T; t++) {
      x[b * l->T + t] = (int32_t)keel_shard_token(l->shard, start + (uint64_t)t);
      y[b * l->T + t] = (int32_t)keel_shard_token(l->shard, start + (uint64_t)t + 1);
    }
  }
}
