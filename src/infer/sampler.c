/* Token sampling. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"

void keel_sampler_defaults(keel_sampler_opts *o) {
  memset(o, 0, sizeof *o);
  o->temperature = 0.8f, o->top_k = 40, o->top_p = 0.95f, o->min_p = 0.05f, o->repeat_penalty = 1.0f;
  o->repeat_last_n = 64, o->seed = 1;
}

void keel_sampler_init(keel_sampler *s, const keel_sampler_opts *o, int n_vocab) {
  s->o = *o;
  s->n_vocab = n_vocab;
  keel_rng_init(&s->rng, keel_rng_key(o->seed, 0, 0, KEEL_RNG_SAMPLE));
  s->work = keel_xmalloc((size_t)n_vocab * sizeof *s->work);
  s->idx = keel_xmalloc((size_t)n_vocab * sizeof *s->idx);
}

void keel_sampler_free(keel_sampler *s) {
  free(s->work);
  free(s->idx);
  s->work = NULL;
  s->idx = NULL;
}

static const float *sort_key;
static int by_logit_desc(const void *a, const void *b) {
  float x = sort_key[*(const int32_t *)a], y = sort_key[*(const int32_t *)b];
  if (x != y) return x > y ? -1 : 1;
  return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t keel_sampler_next(keel_sampler *s, const float *logits, int n_valid, const int32_t *history, int n_history) {
  const keel_sampler_opts *o = &s->o;
  int n = n_valid < s->n_vocab ? n_valid : s->n_vocab;
  float *l = s->work;
  memcpy(l, logits, (size_t)n * sizeof *l);
  int from = o->repeat_last_n > 0 && n_history > o->repeat_last_n ? n_history - o->repeat_last_n : 0;
  if (o->repeat_penalty != 1.0f || o->frequency_penalty != 0 || o->presence_penalty != 0) {
    for (int i = from; i < n_history; i++) {
      int32_t t = history[i];
      if (t < 0 || t >= n) continue;
      int first = 1; /* presence and repeat penalties apply once per distinct token */
      for (int j = from; j < i; j++) first &= history[j] != t;
      if (first) {
        if (o->repeat_penalty != 1.0f) l[t] = l[t] > 0 ? l[t] / o->repeat_penalty : l[t] * o->repeat_penalty;
        l[t] -= o->presence_penalty;
      }
      l[t] -= o->frequency_penalty;
    }
  }
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  if (o->temperature <= 0) return best;
  /* candidates sorted by logit (ties by id), cut by top-k, min-p, top-p */
  for (int i = 0; i < n; i++) s->idx[i] = i;
  sort_key = l;
  qsort(s->idx, (size_t)n, sizeof *s->idx, by_logit_desc);
  int k = o->top_k > 0 && o->top_k < n ? o->top_k : n;
  double mx = l[s->idx[0]], sum = 0;
  for (int i = 0; i < k; i++) sum += exp((l[s->idx[i]] - mx) / o->temperature);
  int keep = 0;
  double cum = 0;
  for (int i = 0; i < k; i++) {
    double p = exp((l[s->idx[i]] - mx) / o->temperature) / sum;
    if (i > 0 && o->min_p > 0 && p < o->min_p * (1.0 / sum)) break; /* p < min_p * p_max */
    keep = i + 1;
    cum += p;
    if (o->top_p < 1.0f && cum >= o->top_p) break;
  }
  double total = 0;
  for (int i = 0; i < keep; i++) total += exp((l[s->idx[i]] - mx) / o->temperature);
  double u = keel_rng_uniform(&s->rng) * total, acc = 0;
  for (int i = 0; i < keep; i++) {
    acc += exp((l[s->idx[i]] - mx) / o->temperature);
    if (u < acc) return s->idx[i];
  }
  return s->idx[keep - 1];
}
