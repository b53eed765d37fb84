/* Token-by-token decoding with the latent KV cache. */
#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *fa(size_t n) { return keel_xcalloc(n ? n : 1, sizeof(float)); }

keel_status keel_session_init(keel_session *s, keel_model *m, int max_len) {
  memset(s, 0, sizeof *s);
  const keel_config *c = &m->c;
  if (max_len <= 0) return keel_fail(KEEL_ERR_ARG, "context length must be positive");
  keel_status st = keel_model_reserve(m, 1, 1); /* FFN scratch for one row */
  if (st) return st;
  keel_model_rope_tables(m, max_len);
  int L = c->num_hidden_layers, d = c->hidden_size, H = c->num_attention_heads, dq = keel_config_dq(c),
      rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
  s->m = m;
  s->max_len = max_len;
  s->ckv = fa((size_t)L * max_len * rkv);
  s->kpe = fa((size_t)L * max_len * dr);
  s->x = fa((size_t)d), s->a = fa((size_t)d), s->qa = fa((size_t)c->q_lora_rank + 1), s->qn = fa((size_t)c->q_lora_rank + 1);
  s->q = fa((size_t)H * dq), s->kva = fa((size_t)rkv + dr), s->qabs = fa((size_t)H * rkv), s->olat = fa((size_t)H * rkv);
  s->o = fa((size_t)H * c->v_head_dim), s->qpe = fa((size_t)H * dr), s->tmp = fa((size_t)d + rkv);
  s->logits = fa((size_t)c->vocab_size);
  return KEEL_OK;
}

void keel_session_free(keel_session *s) {
  float **f[] = {&s->ckv, &s->kpe, &s->x, &s->a, &s->qa, &s->qn, &s->q, &s->kva, &s->qabs, &s->qpe, &s->olat, &s->o,
                 &s->tmp, &s->logits};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(*f[i]);
  memset(s, 0, sizeof *s);
}

void keel_session_reset(keel_session *s) { s->len = 0; }

keel_status keel_session_step(keel_session *s, int32_t token) {
  keel_model *m = s->m;
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  if (s->len >= s->max_len) return keel_fail(KEEL_ERR_ARG, "context of %d tokens is full", s->max_len);
  if (token < 0 || token >= c->vocab_size) return keel_fail(KEEL_ERR_ARG, "token %d is outside the vocabulary", token);
  int L = c->num_hidden_layers, d = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim,
      dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
  int p = s->len;
  float eps = c->rms_norm_eps, rstd;
  memcpy(s->x, m->w.embed + (size_t)token * d, (size_t)d * sizeof(float));
  for (int l = 0; l < L; l++) {
    const keel_layer_w *w = &m->w.layers[l];
    float *ckv = s->ckv + (size_t)l * s->max_len * rkv, *kpe = s->kpe + (size_t)l * s->max_len * dr;
    be->rmsnorm(s->a, &rstd, s->x, w->ln1, 1, d, eps);
    if (rq) {
      be->matmul(s->qa, s->a, w->wq_a, 1, d, rq, 0);
      be->rmsnorm(s->qn, &rstd, s->qa, w->q_norm, 1, rq, eps);
      be->matmul(s->q, s->qn, w->wq_b, 1, rq, H * dq, 0);
    } else {
      be->matmul(s->q, s->a, w->wq, 1, d, H * dq, 0);
    }
    be->rope(s->q + dn, &p, m->rope_cos, m->rope_sin, 1, H, H * dq, dq, dr, 0);
    be->matmul(s->kva, s->a, w->wkv_a, 1, d, rkv + dr, 0);
    be->rmsnorm(ckv + (size_t)p * rkv, &rstd, s->kva, w->kv_norm, 1, rkv, eps);
    memcpy(kpe + (size_t)p * dr, s->kva + rkv, (size_t)dr * sizeof(float));
    be->rope(kpe + (size_t)p * dr, &p, m->rope_cos, m->rope_sin, 1, 1, dr, 0, dr, 0);
    /* absorb W_UK into each head's query, attend over the latent cache, absorb W_UV after */
    memset(s->qabs, 0, (size_t)H * rkv * sizeof(float));
    for (int h = 0; h < H; h++) {
      const float *wh = w->wkv_b + (size_t)h * (dn + dv) * rkv; /* W_UK rows, then W_UV rows */
      be->matmul_backward(s->qabs + (size_t)h * rkv, NULL, s->q + (size_t)h * dq, NULL, wh, 1, rkv, dn);
      memcpy(s->qpe + (size_t)h * dr, s->q + (size_t)h * dq + dn, (size_t)dr * sizeof(float));
    }
    be->attention_latent(s->olat, s->qabs, s->qpe, ckv, kpe, p + 1, H, rkv, dr, m->softmax_scale);
    for (int h = 0; h < H; h++)
      be->matmul(s->o + (size_t)h * dv, s->olat + (size_t)h * rkv, w->wkv_b + ((size_t)h * (dn + dv) + dn) * rkv, 1, rkv,
                 dv, 0);
    be->matmul(s->tmp, s->o, w->wo, 1, H * dv, d, 0);
    for (int i = 0; i < d; i++) s->x[i] += s->tmp[i];
    /* feed-forward through the model's one-row scratch */
    keel_layer_acts *A = &m->acts[l];
    be->rmsnorm(A->ln2, A->ln2_rstd, s->x, w->ln2, 1, d, eps);
    keel_ffn_forward(m, l, A, 1, 1, 0);
    for (int i = 0; i < d; i++) s->x[i] += A->out[i];
  }
  be->rmsnorm(s->a, &rstd, s->x, m->w.norm, 1, d, eps);
  be->matmul(s->logits, s->a, m->w.head, 1, d, c->vocab_size, 0);
  s->len++;
  return KEEL_OK;
}
