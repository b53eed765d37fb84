/* A generation session: the main model run token by token with the absorbed
 * MLA form (spec 6.5), caching per layer and position only the normalised
 * latent c_kv (rkv) and the rotated k_pe (dr). */
#ifndef KEEL_INFER_SESSION_H
#define KEEL_INFER_SESSION_H

#include "../model/model.h"

typedef struct keel_session {
  keel_model *m;
  int max_len, len;   /* capacity and tokens cached */
  float *ckv;         /* (L, max_len, rkv) */
  float *kpe;         /* (L, max_len, dr) */
  float *x, *a, *qa, *qn, *q, *kva, *qabs, *qpe, *olat, *o, *tmp; /* scratch for one token */
  float *logits;      /* (V) of the last token */
} keel_session;

keel_status keel_session_init(keel_session *s, keel_model *m, int max_len);
void keel_session_free(keel_session *s);
void keel_session_reset(keel_session *s);
/* Runs one token at position s->len, appends it to the cache, leaves its logits in s->logits. */
keel_status keel_session_step(keel_session *s, int32_t token);

#endif
