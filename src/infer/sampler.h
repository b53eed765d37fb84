/* Sampling the next token from logits: repetition/frequency/presence
 * penalties, temperature, top-k, top-p, min-p; temperature 0 is greedy.
 * Draws come from a counter-based RNG, so a seed fixes the whole output. */
#ifndef KEEL_INFER_SAMPLER_H
#define KEEL_INFER_SAMPLER_H

#include <stdint.h>

#include "../core/rng.h"

typedef struct keel_sampler_opts {
  float temperature; /* 0: greedy */
  int top_k;         /* 0: off */
  float top_p;       /* 1: off */
  float min_p;       /* 0: off */
  float repeat_penalty;   /* 1: off (llama.cpp style: divide positive logits, multiply negative) */
  float frequency_penalty, presence_penalty; /* 0: off (OpenAI style) */
  int repeat_last_n; /* tokens the penalties look back on (0: all) */
  uint64_t seed;
} keel_sampler_opts;

typedef struct keel_sampler {
  keel_sampler_opts o;
  keel_rng rng;
  int n_vocab;
  float *work;   /* (n_vocab) */
  int32_t *idx;  /* (n_vocab) */
} keel_sampler;

void keel_sampler_defaults(keel_sampler_opts *o);
void keel_sampler_init(keel_sampler *s, const keel_sampler_opts *o, int n_vocab);
void keel_sampler_free(keel_sampler *s);
/* history: tokens so far (for the penalties). Only the first n_valid logits are
 * considered (a model's vocab_size may exceed its tokenizer's ids). */
int32_t keel_sampler_next(keel_sampler *s, const float *logits, int n_valid, const int32_t *history, int n_history);

#endif
