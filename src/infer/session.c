/* The inference forward over rows with latent KV caches. */
#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *fa(size_t n) { return keel_xcalloc(n ? n : 1, sizeof(float)); }
static int imax(int a, int b) { return a > b ? a : b; }

keel_status keel_kvcache_init(keel_kvcache *kc, const keel_config *c, int max_len) {
  memset(kc, 0, sizeof *kc);
  if (max_len <= 0) return keel_fail(KEEL_ERR_ARG, "context length must be positive");
  kc->max_len = max_len;
  kc->ckv = fa((size_t)c->num_hidden_layers * max_len * c->kv_lora_rank);
  kc->kpe = fa((size_t)c->num_hidden_layers * max_len * c->qk_rope_head_dim);
  return KEEL_OK;
}

void keel_kvcache_free(keel_kvcache *kc) {
  free(kc->ckv), free(kc->kpe);
  memset(kc, 0, sizeof *kc);
}

keel_status keel_runner_init(keel_runner *r, const keel_imodel *m, int cap, int max_pos) {
  memset(r, 0, sizeof *r);
  const keel_config *c = &m->c;
  if (cap <= 0 || max_pos <= 0) return keel_fail(KEEL_ERR_ARG, "a runner needs rows and positions");
  int d = c->hidden_size, H = c->num_attention_heads, dq = keel_config_dq(c), rkv = c->kv_lora_rank,
      dr = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, E = c->n_routed_experts,
      K = c->num_experts_per_tok, Ie = c->moe_intermediate_size, S = c->n_shared_experts;
  size_t n = (size_t)cap, g = (size_t)imax(imax(d, rkv + dr), imax(dn, dv));
  size_t I = (size_t)imax(c->intermediate_size, S * Ie), nk = E ? n * K : 1;
  r->m = m, r->cap = cap, r->max_pos = max_pos;
  keel_rope_tables(c, max_pos, &r->rope_cos, &r->rope_sin);
  r->x = fa(n * d), r->a = fa(n * d), r->rstd = fa(n), r->qa = fa(n * (c->q_lora_rank + 1)), r->qn = fa(n * (c->q_lora_rank + 1));
  r->q = fa(n * H * dq), r->kva = fa(n * (rkv + dr)), r->lat = fa(n * rkv), r->qabs = fa(n * H * rkv);
  r->qpe = fa(n * H * dr), r->olat = fa(n * H * rkv), r->o = fa(n * H * dv), r->g1 = fa(n * g), r->g2 = fa(n * g);
  r->hs1 = fa(n * H * imax(imax(rkv, dn), dv)), r->hs2 = fa(n * H * imax(imax(rkv, dn), dv));
  r->kvb = fa(n * H * (dn + dv)), r->kpe = fa(n * dr), r->att = fa((size_t)H * n * n);
  r->ln2 = fa(n * d), r->fg = fa(n * I), r->fu = fa(n * I), r->fh = fa(n * I), r->out = fa(n * d);
  r->rl = fa(n * E), r->rs = fa(n * E), r->gw = fa(nk), r->ein = fa(nk * d), r->eo = fa(nk * d);
  r->eg = fa(nk * Ie), r->eu = fa(nk * Ie), r->eh = fa(nk * Ie);
  r->sel = keel_xcalloc(nk, sizeof *r->sel), r->slot = keel_xcalloc(nk, sizeof *r->slot);
  r->offs = keel_xcalloc((size_t)E + 1, sizeof *r->offs);
  r->logits = fa(n * c->vocab_size);
  return KEEL_OK;
}

void keel_runner_free(keel_runner *r) {
  float **f[] = {&r->rope_cos, &r->rope_sin, &r->x, &r->a, &r->rstd, &r->qa, &r->qn, &r->q, &r->kva, &r->lat, &r->qabs,
                 &r->qpe, &r->olat, &r->o, &r->g1, &r->g2, &r->hs1, &r->hs2, &r->ln2, &r->fg, &r->fu, &r->fh, &r->rl, &r->rs,
                 &r->gw, &r->ein, &r->eg, &r->eu, &r->eh, &r->eo, &r->out, &r->logits, &r->kvb, &r->kpe, &r->att};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(*f[i]);
  free(r->sel), free(r->slot), free(r->offs);
  memset(r, 0, sizeof *r);
}

static void add_rows(float *y, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Feed-forward of layer l on r->ln2 (n rows) into r->out. */
static void ffn(keel_runner *r, int l, int n) {
  const keel_imodel *m = r->m;
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  const keel_ilayer *y = &m->layers[l];
  int d = c->hidden_size;
  if (!y->moe) {
    int I = c->intermediate_size;
    be->matmul_w(r->fg, r->ln2, y->w_gate, n);
    be->matmul_w(r->fu, r->ln2, y->w_up, n);
    be->swiglu(r->fh, r->fg, r->fu, n, I);
    be->matmul_w(r->out, r->fh, y->w_down, n);
    return;
  }
  int E = c->n_routed_experts, K = c->num_experts_per_tok, Ie = c->moe_intermediate_size;
  be->matmul_w(r->rl, r->ln2, y->gate, n);
  keel_moe_route(c, m->bias + (size_t)l * E, r->rl, r->rs, r->sel, r->gw, n);
  /* rows sorted by expert: each expert's weights are read once for all its rows */
  memset(r->offs, 0, (size_t)(E + 1) * sizeof *r->offs);
  for (int a = 0; a < n * K; a++) r->offs[r->sel[a] + 1]++;
  for (int e = 0; e < E; e++) r->offs[e + 1] += r->offs[e];
  int fill[E];
  memcpy(fill, r->offs, (size_t)E * sizeof *fill);
  for (int a = 0; a < n * K; a++) {
    int row = fill[r->sel[a]]++;
    r->slot[a] = row;
    memcpy(r->ein + (size_t)row * d, r->ln2 + (size_t)(a / K) * d, (size_t)d * sizeof(float));
  }
  for (int e = 0; e < E; e++) {
    int r0 = r->offs[e], cnt = r->offs[e + 1] - r0;
    if (!cnt) continue;
    be->matmul_w(r->eg + (size_t)r0 * Ie, r->ein + (size_t)r0 * d, &y->e_gate[e], cnt);
    be->matmul_w(r->eu + (size_t)r0 * Ie, r->ein + (size_t)r0 * d, &y->e_up[e], cnt);
    be->swiglu(r->eh + (size_t)r0 * Ie, r->eg + (size_t)r0 * Ie, r->eu + (size_t)r0 * Ie, cnt, Ie);
    be->matmul_w(r->eo + (size_t)r0 * d, r->eh + (size_t)r0 * Ie, &y->e_down[e], cnt);
  }
  for (int i = 0; i < n; i++) {
    float *o = r->out + (size_t)i * d;
    memset(o, 0, (size_t)d * sizeof *o);
    for (int k = 0; k < K; k++) {
      const float *eo = r->eo + (size_t)r->slot[i * K + k] * d;
      float gk = r->gw[i * K + k];
      for (int j = 0; j < d; j++) o[j] += gk * eo[j];
    }
  }
  if (y->s_gate) {
    int I = c->n_shared_experts * Ie;
    be->matmul_w(r->fg, r->ln2, y->s_gate, n);
    be->matmul_w(r->fu, r->ln2, y->s_up, n);
    be->swiglu(r->fh, r->fg, r->fu, n, I);
    be->matmul_w(r->g2, r->fh, y->s_down, n);
    add_rows(r->out, r->g2, (size_t)n * d);
  }
}

/* Attention of g consecutive rows of one sequence (positions p0..p0+g-1, already in the cache) at
 * layer l, as GEMMs per head: scores against the whole cache prefix, the causal softmax, P c_kv. */
static void attend_run(keel_runner *r, int l, int i0, int g, const keel_kvcache *kc, int p0) {
  const keel_config *c = &r->m->c;
  const keel_backend *be = r->m->be;
  int H = c->num_attention_heads, rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim, len = p0 + g;
  const float *ckv = kc->ckv + (size_t)l * kc->max_len * rkv, *kpe = kc->kpe + (size_t)l * kc->max_len * dr;
  float scale = r->m->softmax_scale;
#pragma omp parallel for schedule(static)
  for (int h = 0; h < H; h++) {
    float *S = keel_xmalloc((size_t)g * len * sizeof *S), *Q = keel_xmalloc((size_t)g * rkv * sizeof *Q);
    float *Qp = keel_xmalloc((size_t)g * dr * sizeof *Qp), *O = keel_xcalloc((size_t)g * rkv, sizeof *O);
    for (int i = 0; i < g; i++) {
      memcpy(Q + (size_t)i * rkv, r->qabs + ((size_t)(i0 + i) * H + h) * rkv, (size_t)rkv * sizeof *Q);
      memcpy(Qp + (size_t)i * dr, r->qpe + ((size_t)(i0 + i) * H + h) * dr, (size_t)dr * sizeof *Qp);
    }
    be->matmul(S, Q, ckv, g, rkv, len, 0);
    be->matmul(S, Qp, kpe, g, dr, len, 1);
    for (int i = 0; i < g; i++) {
      float *a = S + (size_t)i * len, mx = -INFINITY, sum = 0;
      int n = p0 + i + 1;
      for (int j = 0; j < n; j++) mx = fmaxf(mx, a[j] *= scale);
      for (int j = 0; j < n; j++) sum += a[j] = expf(a[j] - mx);
      for (int j = 0; j < n; j++) a[j] /= sum;
      for (int j = n; j < len; j++) a[j] = 0;
    }
    be->matmul_backward(O, NULL, S, NULL, ckv, g, rkv, len); /* O (g, rkv) = P (g, len) c_kv (len, rkv) */
    for (int i = 0; i < g; i++)
      memcpy(r->olat + ((size_t)(i0 + i) * H + h) * rkv, O + (size_t)i * rkv, (size_t)rkv * sizeof *O);
    free(S), free(Q), free(Qp), free(O);
  }
}

/* Attention of layer l in MLA's absorbed form (decoding, and prompts that continue a sequence):
 * W_UK absorbed into each head's query, attention over the latent cache, W_UV applied to the
 * result: heads in parallel, each with its own scratch. Reads r->q and the caches (this
 * forward's rows already written); writes r->o. */
static void absorbed(keel_runner *r, int l, int n, keel_kvcache *const *cache, const int *pos) {
  const keel_imodel *m = r->m;
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  const keel_ilayer *y = &m->layers[l];
  int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim,
      dq = dn + dr, rkv = c->kv_lora_rank;
  size_t hs = (size_t)n * imax(imax(rkv, dn), dv);
#pragma omp parallel for schedule(static)
  for (int h = 0; h < H; h++) {
    float *g1 = r->hs1 + h * hs, *g2 = r->hs2 + h * hs;
    for (int i = 0; i < n; i++) {
      memcpy(g1 + (size_t)i * dn, r->q + (size_t)i * H * dq + (size_t)h * dq, (size_t)dn * 4);
      memcpy(r->qpe + ((size_t)i * H + h) * dr, r->q + (size_t)i * H * dq + (size_t)h * dq + dn, (size_t)dr * 4);
    }
    be->matmul_wt(g2, g1, &y->uk[h], n); /* (n, rkv) = q_nope (n, dn) W_UK (dn, rkv) */
    for (int i = 0; i < n; i++)
      memcpy(r->qabs + ((size_t)i * H + h) * rkv, g2 + (size_t)i * rkv, (size_t)rkv * 4);
  }
  for (int i = 0; i < n;) { /* runs of one sequence's consecutive positions go through GEMMs */
    int g = 1;
    while (i + g < n && cache[i + g] == cache[i] && pos[i + g] == pos[i] + g) g++;
    keel_kvcache *kc = cache[i];
    if (g >= 8) {
      attend_run(r, l, i, g, kc, pos[i]);
    } else {
      for (int k = i; k < i + g; k++)
        be->attention_latent(r->olat + (size_t)k * H * rkv, r->qabs + (size_t)k * H * rkv, r->qpe + (size_t)k * H * dr,
                             kc->ckv + (size_t)l * kc->max_len * rkv, kc->kpe + (size_t)l * kc->max_len * dr,
                             pos[k] + 1, H, rkv, dr, m->softmax_scale);
    }
    i += g;
  }
#pragma omp parallel for schedule(static)
  for (int h = 0; h < H; h++) {
    float *g1 = r->hs1 + h * hs, *g2 = r->hs2 + h * hs;
    for (int i = 0; i < n; i++)
      memcpy(g1 + (size_t)i * rkv, r->olat + ((size_t)i * H + h) * rkv, (size_t)rkv * 4);
    be->matmul_w(g2, g1, &y->uv[h], n); /* (n, dv) = o_lat (n, rkv) W_UV^T */
    for (int i = 0; i < n; i++)
      memcpy(r->o + (size_t)i * H * dv + (size_t)h * dv, g2 + (size_t)i * dv, (size_t)dv * 4);
  }
}

keel_status keel_runner_forward(keel_runner *r, int n, const int32_t *tok, keel_kvcache *const *cache,
                                const int *pos, const unsigned char *want) {
  const keel_imodel *m = r->m;
  const keel_config *c = &m->c;
  const keel_backend *be = m->be;
  if (n <= 0 || n > r->cap) return keel_fail(KEEL_ERR_ARG, "%d rows for a runner of %d", n, r->cap);
  for (int i = 0; i < n; i++) {
    if (tok[i] < 0 || tok[i] >= c->vocab_size)
      return keel_fail(KEEL_ERR_ARG, "token %d is outside the vocabulary", tok[i]);
    if (pos[i] < 0 || pos[i] >= cache[i]->max_len || pos[i] >= r->max_pos)
      return keel_fail(KEEL_ERR_ARG, "context of %d tokens is full", cache[i]->max_len);
  }
  int L = c->num_hidden_layers, d = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim,
      dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank;
  float eps = c->rms_norm_eps, *rstd = r->rstd;
  /* one sequence from position 0: queries are as many as keys, and the naive form's scores
   * (dn + dr wide) and values (dv) cost less than the absorbed form's (rkv + dr, rkv) */
  int fresh = n >= 8 && pos[0] == 0;
  for (int i = 1; i < n && fresh; i++) fresh = cache[i] == cache[0] && pos[i] == i;
  for (int i = 0; i < n; i++) keel_wmat_row(r->x + (size_t)i * d, m->embed, tok[i], 0, d);
  for (int l = 0; l < L; l++) {
    const keel_ilayer *y = &m->layers[l];
    be->rmsnorm(r->a, rstd, r->x, y->ln1, n, d, eps);
    if (rq) {
      be->matmul_w(r->qa, r->a, y->wq_a, n);
      be->rmsnorm(r->qn, rstd, r->qa, y->q_norm, n, rq, eps);
      be->matmul_w(r->q, r->qn, y->wq_b, n);
    } else {
      be->matmul_w(r->q, r->a, y->wq, n);
    }
    be->rope(r->q + dn, pos, r->rope_cos, r->rope_sin, n, H, H * dq, dq, dr, 0);
    be->matmul_w(r->kva, r->a, y->wkv_a, n);
    be->rope(r->kva + rkv, pos, r->rope_cos, r->rope_sin, n, 1, rkv + dr, 0, dr, 0);
    for (int i = 0; i < n; i++) memcpy(r->g1 + (size_t)i * rkv, r->kva + (size_t)i * (rkv + dr), (size_t)rkv * 4);
    be->rmsnorm(r->lat, rstd, r->g1, y->kv_norm, n, rkv, eps);
    for (int i = 0; i < n; i++) { /* into each row's cache at its position */
      keel_kvcache *kc = cache[i];
      memcpy(kc->ckv + ((size_t)l * kc->max_len + pos[i]) * rkv, r->lat + (size_t)i * rkv, (size_t)rkv * 4);
      memcpy(kc->kpe + ((size_t)l * kc->max_len + pos[i]) * dr, r->kva + (size_t)i * (rkv + dr) + rkv, (size_t)dr * 4);
    }
    if (fresh) { /* a new sequence's prompt: the naive form, as in training */
      be->matmul_w(r->kvb, r->lat, y->wkv_b, n); /* (n, H (dn + dv)): each head's k_nope, then its v */
      for (int i = 0; i < n; i++)
        memcpy(r->kpe + (size_t)i * dr, r->kva + (size_t)i * (rkv + dr) + rkv, (size_t)dr * 4);
      be->attention(r->o, r->att, r->q, r->kvb, r->kpe, 1, n, H, dn, dr, dv, m->softmax_scale);
    } else {
      absorbed(r, l, n, cache, pos);
    }
    be->matmul_w(r->g2, r->o, y->wo, n);
    add_rows(r->x, r->g2, (size_t)n * d);
    be->rmsnorm(r->ln2, rstd, r->x, y->ln2, n, d, eps);
    ffn(r, l, n);
    add_rows(r->x, r->out, (size_t)n * d);
  }
  int nw = 0;
  for (int i = 0; i < n; i++) {
    if (pos[i] + 1 > cache[i]->len) cache[i]->len = pos[i] + 1;
    if (!want || want[i]) memcpy(r->g1 + (size_t)nw++ * d, r->x + (size_t)i * d, (size_t)d * 4);
  }
  if (nw) {
    be->rmsnorm(r->a, rstd, r->g1, m->norm, nw, d, eps);
    be->matmul_w(r->logits, r->a, m->head, nw);
  }
  return KEEL_OK;
}

enum { SESSION_ROWS = 256 };

keel_status keel_session_init(keel_session *s, const keel_imodel *m, int max_len) {
  memset(s, 0, sizeof *s);
  keel_status st = keel_kvcache_init(&s->cache, &m->c, max_len);
  if (!st) st = keel_runner_init(&s->r, m, max_len < SESSION_ROWS ? max_len : SESSION_ROWS, max_len);
  if (st) {
    keel_session_free(s);
    return st;
  }
  s->max_len = max_len;
  s->logits = s->r.logits;
  return KEEL_OK;
}

void keel_session_free(keel_session *s) {
  keel_runner_free(&s->r);
  keel_kvcache_free(&s->cache);
  memset(s, 0, sizeof *s);
}

void keel_session_reset(keel_session *s) { s->len = s->cache.len = 0; }

keel_status keel_session_feed(keel_session *s, const int32_t *tokens, int n) {
  if (s->len + n > s->max_len) return keel_fail(KEEL_ERR_ARG, "context of %d tokens is full", s->max_len);
  int pos[SESSION_ROWS];
  keel_kvcache *caches[SESSION_ROWS];
  unsigned char want[SESSION_ROWS];
  for (int done = 0; done < n;) {
    int k = n - done < s->r.cap ? n - done : s->r.cap;
    for (int i = 0; i < k; i++) pos[i] = s->len + i, caches[i] = &s->cache, want[i] = done + i == n - 1;
    keel_status st = keel_runner_forward(&s->r, k, tokens + done, caches, pos, want);
    if (st) return st;
    s->len += k, done += k;
  }
  return KEEL_OK;
}

keel_status keel_session_step(keel_session *s, int32_t token) { return keel_session_feed(s, &token, 1); }
