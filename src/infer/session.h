/* Running the inference model over rows of tokens with the latent KV cache
 * (the absorbed MLA form, spec 6.5): per layer and position only the
 * normalised latent c_kv (rkv) and the rotated k_pe (dr) are cached.
 *
 * A runner does one forward over up to `cap` rows; each row is a token of
 * some sequence at some position, with that sequence's cache. So a prompt is
 * prefilled as many rows of one sequence (projections and FFN on the GEMM
 * path) and several sequences decode together as one row each. */
#ifndef KEEL_INFER_SESSION_H
#define KEEL_INFER_SESSION_H

#include "imodel.h"

typedef struct keel_kvcache {
  int max_len, len; /* capacity and positions filled */
  float *ckv;       /* (L, max_len, rkv) */
  float *kpe;       /* (L, max_len, dr) */
} keel_kvcache;

keel_status keel_kvcache_init(keel_kvcache *c, const keel_config *cfg, int max_len);
void keel_kvcache_free(keel_kvcache *c);

typedef struct keel_runner {
  const keel_imodel *m;
  int cap, max_pos;   /* rows per forward, positions the RoPE tables cover */
  float *rope_cos, *rope_sin;
  float *x, *a, *rstd, *qa, *qn, *q, *kva, *lat, *qabs, *qpe, *olat, *o, *g1, *g2, *hs1, *hs2; /* attention scratch */
  float *kvb, *kpe, *att; /* a fresh prompt's keys and values, rotated keys, probabilities (H, cap, cap) */
  float *ln2, *fg, *fu, *fh, *rl, *rs, *gw, *ein, *eg, *eu, *eh, *eo, *out;  /* feed-forward scratch */
  int *sel, *slot, *offs;
  float *logits;      /* (cap, V): rows asked for, in order */
} keel_runner;

keel_status keel_runner_init(keel_runner *r, const keel_imodel *m, int cap, int max_pos);
void keel_runner_free(keel_runner *r);
/* One forward over n <= cap rows: token tok[i] of the sequence with cache
 * cache[i] at position pos[i] (rows of one sequence in position order). Each
 * row's c_kv and k_pe are written at its position; a cache's len becomes the
 * largest position written + 1. Logits of the rows with want[i] set (all when
 * want is NULL) go to r->logits in row order. */
keel_status keel_runner_forward(keel_runner *r, int n, const int32_t *tok, keel_kvcache *const *cache,
                                const int *pos, const unsigned char *want);

/* One sequence: a runner and its cache. */
typedef struct keel_session {
  keel_runner r;
  keel_kvcache cache;
  int max_len, len;
  float *logits; /* (V) of the last token fed */
} keel_session;

keel_status keel_session_init(keel_session *s, const keel_imodel *m, int max_len);
void keel_session_free(keel_session *s);
void keel_session_reset(keel_session *s);
/* Feeds n tokens at positions len.. (in chunks of the runner's rows); logits of the last one. */
keel_status keel_session_feed(keel_session *s, const int32_t *tokens, int n);
keel_status keel_session_step(keel_session *s, int32_t token);

#endif
