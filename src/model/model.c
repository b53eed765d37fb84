/* Whole-model forward and backward: embedding, decoder blocks, final norm,
 * the MTP modules (spec 7), then the shared head and cross-entropy over the
 * main rows and every MTP depth's at once, and the balance loss. The head's
 * backward runs right after its loss in forward, so only the gradient of its
 * input is kept, never the logits. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/clock.h"
#include "../core/cpu.h"

static float *falloc(size_t n) { return keel_xcalloc(n ? n : 1, sizeof(float)); }
#define ALLOC(n) falloc((size_t)(n))

keel_status keel_model_init(keel_model *m, const keel_config *c, const keel_backend *be) {
  memset(m, 0, sizeof *m);
  m->c = *c;
  m->be = be;
  keel_params_table(&m->tab, c);
  m->params = ALLOC(m->tab.total);
  m->grads = ALLOC(m->tab.total);
  keel_params_bind(&m->w, c, m->params);
  keel_params_bind(&m->g, c, m->grads);
  int LD = c->num_hidden_layers + c->num_nextn_predict_layers, E = c->n_routed_experts ? c->n_routed_experts : 1;
  m->bias = ALLOC((size_t)LD * E);
  m->load = ALLOC((size_t)LD * E);
  m->softmax_scale = keel_config_softmax_scale(c);
  m->mtp_lambda = 0.3f;
  m->balance_alpha = c->aux_loss_alpha;
  return KEEL_OK;
}

static void free_acts(keel_model *m) {
  if (!m->acts) return;
  int LD = m->c.num_hidden_layers + m->c.num_nextn_predict_layers;
  for (int l = 0; l < LD; l++) {
    keel_layer_acts *A = &m->acts[l];
    if (m->acts_shared && l > 0 && l < m->c.num_hidden_layers) { /* only its output is its own */
      free(A->out);
      continue;
    }
    float **f[] = {&A->ln1, &A->ln1_rstd, &A->qa, &A->qn, &A->qn_rstd, &A->q, &A->lat, &A->ckv, &A->ckv_rstd,
                   &A->kpe, &A->kvb, &A->att, &A->o, &A->x2, &A->ln2, &A->ln2_rstd, &A->fg, &A->fu, &A->fh,
                   &A->logits, &A->scores, &A->gw, &A->ein, &A->eg, &A->eu, &A->eh, &A->eo, &A->sg, &A->su,
                   &A->sh, &A->fbal, &A->out, &A->emb, &A->en, &A->en_rstd, &A->hp, &A->hn, &A->hn_rstd, &A->cat,
                   &A->z_rstd};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(*f[i]);
    free(A->sel), free(A->order), free(A->slot), free(A->offs);
    if (l >= m->c.num_hidden_layers) free(A->x); /* an MTP block owns its input; main blocks alias */
  }
  free(m->acts);
  m->acts_shared = 0;
  free(m->h0), free(m->z), free(m->z_rstd), free(m->dz), free(m->logits), free(m->losses), free(m->pos);
  free(m->tgt), free(m->ws);
  m->acts = NULL;
}

void keel_model_free(keel_model *m) {
  free_acts(m);
  keel_params_unbind(&m->w);
  keel_params_unbind(&m->g);
  keel_params_table_free(&m->tab);
  free(m->params), free(m->grads), free(m->bias), free(m->load), free(m->rope_cos), free(m->rope_sin);
  memset(m, 0, sizeof *m);
}

void keel_rope_tables(const keel_config *c, int len, float **cos_t, float **sin_t) {
  int half = c->qk_rope_head_dim / 2;
  double freqs[half > 0 ? half : 1];
  keel_config_rope_freqs(c, freqs);
  float *ct = ALLOC((size_t)len * half), *st = ALLOC((size_t)len * half);
  for (int p = 0; p < len; p++)
    for (int j = 0; j < half; j++) {
      double a = (double)p * freqs[j];
      ct[(size_t)p * half + j] = (float)cos(a);
      st[(size_t)p * half + j] = (float)sin(a);
    }
  *cos_t = ct, *sin_t = st;
}

void keel_model_rope_tables(keel_model *m, int len) {
  if (len <= m->rope_len) return;
  free(m->rope_cos), free(m->rope_sin);
  keel_rope_tables(&m->c, len, &m->rope_cos, &m->rope_sin);
  m->rope_len = len;
}

keel_status keel_model_reserve(keel_model *m, int B, int T) {
  const keel_config *c = &m->c;
  if (B <= 0 || T <= 0) return keel_fail(KEEL_ERR_ARG, "batch %d x %d is empty", B, T);
  if (m->acts && B * T <= m->B * m->T && T <= m->T && B <= m->B) return KEEL_OK;
  free_acts(m);
  keel_model_rope_tables(m, T);
  size_t N = (size_t)B * T;
  int d = c->hidden_size, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim,
      dv = c->v_head_dim, dq = dn + dr, rq = c->q_lora_rank, rkv = c->kv_lora_rank, I = c->intermediate_size,
      E = c->n_routed_experts, K = c->num_experts_per_tok, Ie = c->moe_intermediate_size,
      SI = c->n_shared_experts * c->moe_intermediate_size, V = c->vocab_size;
  int L = c->num_hidden_layers, D = c->num_nextn_predict_layers;
  m->acts = keel_xcalloc((size_t)(L + D), sizeof *m->acts);
  m->acts_shared = m->recompute && L > 1;
  int any_dense = 0, any_moe = 0;
  for (int l = 0; l < L; l++) any_dense |= !m->w.layers[l].moe, any_moe |= m->w.layers[l].moe;
  for (int l = 0; l < L + D; l++) {
    keel_layer_acts *A = &m->acts[l];
    const keel_layer_w *w = &m->w.layers[l];
    if (m->acts_shared && l > 0 && l < L) { /* recompute: the block's scratch is layer 0's, its output its own */
      *A = m->acts[0];
      A->out = ALLOC(N * d);
      continue;
    }
    int dense = m->acts_shared && l == 0 ? any_dense : !w->moe, moe = m->acts_shared && l == 0 ? any_moe : w->moe;
    A->ln1 = ALLOC(N * d), A->ln1_rstd = ALLOC(N);
    if (rq) A->qa = ALLOC(N * rq), A->qn = ALLOC(N * rq), A->qn_rstd = ALLOC(N);
    A->q = ALLOC(N * H * dq);
    A->lat = ALLOC(N * rkv), A->ckv = ALLOC(N * rkv), A->ckv_rstd = ALLOC(N), A->kpe = ALLOC(N * dr);
    A->kvb = ALLOC(N * H * (dn + dv));
    A->att = ALLOC((size_t)B * H * T * T);
    A->o = ALLOC(N * H * dv), A->x2 = ALLOC(N * d), A->ln2 = ALLOC(N * d), A->ln2_rstd = ALLOC(N);
    A->out = ALLOC(N * d);
    if (dense) A->fg = ALLOC(N * I), A->fu = ALLOC(N * I), A->fh = ALLOC(N * I);
    if (moe) {
      A->logits = ALLOC(N * E), A->scores = ALLOC(N * E), A->gw = ALLOC(N * K);
      A->sel = keel_xcalloc(N * K, sizeof(int)), A->order = keel_xcalloc(N * K, sizeof(int));
      A->slot = keel_xcalloc(N * K, sizeof(int)), A->offs = keel_xcalloc((size_t)E + 1, sizeof(int));
      A->ein = ALLOC(N * K * d), A->eo = ALLOC(N * K * d);
      A->eg = ALLOC(N * K * Ie), A->eu = ALLOC(N * K * Ie), A->eh = ALLOC(N * K * Ie);
      if (SI) A->sg = ALLOC(N * SI), A->su = ALLOC(N * SI), A->sh = ALLOC(N * SI);
      A->fbal = ALLOC((size_t)B * E);
    }
    if (l >= L) {
      A->emb = ALLOC(N * d), A->en = ALLOC(N * d), A->en_rstd = ALLOC(N), A->hp = ALLOC(N * d);
      A->hn = ALLOC(N * d), A->hn_rstd = ALLOC(N), A->cat = ALLOC(N * 2 * d), A->z_rstd = ALLOC(N);
      A->x = ALLOC(N * d); /* the MTP block's own input h' */
    }
  }
  size_t NH = N; /* rows of the head: the main ones, then each MTP depth's */
  for (int k = 1; k <= D && T - k > 0; k++) NH += (size_t)B * (T - k);
  m->h0 = ALLOC(N * d), m->z = ALLOC(NH * d), m->z_rstd = ALLOC(N), m->dz = ALLOC(NH * d);
  m->logits = ALLOC(NH * V), m->losses = ALLOC(NH);
  m->pos = keel_xcalloc(N, sizeof(int)), m->tgt = keel_xcalloc(NH, sizeof(int32_t));
  /* workspace: the largest backward of a block, or the MTP glue, with padding per array */
  size_t mla = N * ((size_t)H * dv + (size_t)H * dq + (size_t)H * (dn + dv) + dr + 3 * (size_t)rkv + dr + 2 * (size_t)rq);
  size_t ffn = 3 * N * (size_t)(I > SI ? I : SI);
  size_t moe = E ? N * K * (2 * (size_t)d + 1) + 3 * N * K * (size_t)Ie + 2 * N * E : 0;
  size_t need = 3 * N * d + mla + ffn + moe + 64 * 16;
  if (need < 4 * N * d) need = 4 * N * d; /* the MTP glue at the front */
  m->ws_size = need + 8 * N * d;          /* backward keeps (N, d) buffers at the end */
  m->ws = ALLOC(m->ws_size);
  m->B = B;
  m->T = T;
  return KEEL_OK;
}

/* dst = src, or 0 without src, in parts on all threads; `stream` for arrays read again only
 * later (the gradients): stores that bypass the caches, and so need not read each line first
 * (744 MB in bench-b: 36 -> 16 ms). */
static void in_parts(float *dst, const float *src, size_t n, int stream) {
  enum { PART = 1 << 16 };
  long np = (long)((n + PART - 1) / PART);
#pragma omp parallel for schedule(dynamic, 16) if (np > 1)
  for (long i = 0; i < np; i++) {
    size_t k = n - (size_t)i * PART < PART ? n - (size_t)i * PART : PART;
    if (src) memcpy(dst + i * PART, src + i * PART, k * sizeof *dst);
    else if (stream) keel_cpu_zero_stream(dst + i * PART, k);
    else memset(dst + i * PART, 0, k * sizeof *dst);
  }
}

void keel_model_zero(float *p, size_t n) { in_parts(p, NULL, n, 0); }

void keel_model_copy(float *dst, const float *src, size_t n) { in_parts(dst, src, n, 0); }

void keel_model_zero_grad(keel_model *m) { in_parts(m->grads, NULL, m->tab.total, 1); }

void keel_model_zero_load(keel_model *m) {
  int LD = m->c.num_hidden_layers + m->c.num_nextn_predict_layers, E = m->c.n_routed_experts ? m->c.n_routed_experts : 1;
  memset(m->load, 0, (size_t)LD * E * sizeof(float));
}

/* The shared head over the rows of m->z against m->tgt, in ns segments (the main rows, then each
 * MTP depth's) of rows[i] rows whose losses are scaled by scale[i]: logits = z head^T, each
 * segment's loss sum into sum[i]; with grads, dz = dlogits head and dhead += dlogits^T z. One
 * GEMM each for all segments: the head's weight (V x d, past the caches) is read and packed once,
 * not once per depth (its three GEMMs alone 1.01-1.07x; bench-b's head in a step 1.012x). */
static void head_loss(keel_model *m, int ns, const int *rows, const float *scale, double *sum, int grads) {
  int d = m->c.hidden_size, V = m->c.vocab_size, N = 0;
  double t0 = keel_now();
  for (int i = 0; i < ns; i++) N += rows[i];
  m->be->matmul(m->logits, m->z, m->w.head, N, d, V, 0);
  for (int i = 0, r = 0; i < ns; r += rows[i++]) {
    m->be->cross_entropy(m->losses + r, m->logits + (size_t)r * V, m->tgt + r, rows[i], V, scale[i]);
    sum[i] = 0;
    for (int n = r; n < r + rows[i]; n++) sum[i] += m->losses[n];
  }
  if (grads) {
    keel_model_zero(m->dz, (size_t)N * d);
    m->be->matmul_backward(m->dz, m->g.head, m->logits, m->z, m->w.head, N, d, V);
  }
  m->phase_s[KEEL_PHASE_HEAD] += keel_now() - t0;
}

static void set_positions(keel_model *m, int B, int T) {
  for (int n = 0; n < B * T; n++) m->pos[n] = n % T;
}

void keel_model_forward(keel_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int grads) {
  const keel_config *c = &m->c;
  int d = c->hidden_size, L = c->num_hidden_layers, D = c->num_nextn_predict_layers, N = B * T;
  m->loss = m->lm_loss = m->mtp_loss = m->bal_loss = 0;
  for (int n = 0; n < N; n++) memcpy(m->h0 + (size_t)n * d, m->w.embed + (size_t)tokens[n] * d, (size_t)d * sizeof(float));
  set_positions(m, B, T);
  const float *h = m->h0;
  int train = targets != NULL;
  for (int l = 0; l < L; l++) {
    keel_block_forward(m, l, &m->acts[l], h, B, T, train);
    h = m->acts[l].out;
  }
  m->be->rmsnorm(m->z, m->z_rstd, h, m->w.norm, N, d, c->rms_norm_eps);
  if (!targets) {
    m->be->matmul(m->logits, m->z, m->w.head, N, d, c->vocab_size, 0);
    return;
  }
  memcpy(m->tgt, targets, (size_t)N * sizeof *targets);
  /* MTP depth k on B x (T-k): input token t+k, hidden of depth k-1 at t, target the token after t+k;
   * its head rows follow the main ones' (and the depths' before) in m->z, m->dz and m->tgt */
  int rows[1 + D], ns = 1, r0 = N;
  float scale[1 + D];
  double sum[1 + D];
  rows[0] = N, scale[0] = 1.0f / N;
  const float *hprev = m->z;
  int Tprev = T;
  for (int k = 1; k <= D && T - k > 0; k++) {
    keel_layer_acts *A = &m->acts[L + k - 1];
    const keel_layer_w *w = &m->w.layers[L + k - 1];
    int Tk = T - k, Nk = B * Tk;
    A->z = m->z + (size_t)r0 * d, A->dz = m->dz + (size_t)r0 * d;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < Tk; t++) {
        int n = b * Tk + t;
        memcpy(A->emb + (size_t)n * d, m->w.embed + (size_t)tokens[b * T + t + k] * d, (size_t)d * sizeof(float));
        memcpy(A->hp + (size_t)n * d, hprev + (size_t)(b * Tprev + t) * d, (size_t)d * sizeof(float));
        m->tgt[r0 + n] = targets[b * T + t + k];
      }
    m->be->rmsnorm(A->en, A->en_rstd, A->emb, w->enorm, Nk, d, c->rms_norm_eps);
    m->be->rmsnorm(A->hn, A->hn_rstd, A->hp, w->hnorm, Nk, d, c->rms_norm_eps);
    for (int n = 0; n < Nk; n++) { /* embedding first, then hidden (spec 7.1) */
      memcpy(A->cat + (size_t)n * 2 * d, A->en + (size_t)n * d, (size_t)d * sizeof(float));
      memcpy(A->cat + (size_t)n * 2 * d + d, A->hn + (size_t)n * d, (size_t)d * sizeof(float));
    }
    float *hin = A->x; /* the MTP block's own input buffer */
    m->be->matmul(hin, A->cat, w->eh_proj, Nk, 2 * d, d, 0);
    set_positions(m, B, Tk);
    keel_block_forward(m, L + k - 1, A, hin, B, Tk, 1);
    m->be->rmsnorm(A->z, A->z_rstd, A->out, w->head_norm, Nk, d, c->rms_norm_eps);
    rows[ns] = Nk, scale[ns++] = m->mtp_lambda / ((float)D * N); /* normalised by T per sequence (spec 7.2) */
    r0 += Nk;
    hprev = A->out;
    Tprev = Tk;
  }
  head_loss(m, ns, rows, scale, sum, grads);
  m->lm_loss = sum[0] / N;
  for (int i = 1; i < ns; i++) m->mtp_loss += m->mtp_lambda / D * sum[i] / N;
  m->loss = m->lm_loss + m->mtp_loss + m->bal_loss;
}

void keel_model_backward(keel_model *m, const int32_t *tokens, int B, int T) {
  const keel_config *c = &m->c;
  int d = c->hidden_size, L = c->num_hidden_layers, D = c->num_nextn_predict_layers, N = B * T;
  /* glue buffers live after the block's workspace use, so carve from the end */
  float *dA = m->ws + m->ws_size - 8 * (size_t)N * d; /* (N, d) x 8 */
  float *dh_next = dA, *dblock = dA + (size_t)N * d, *dx = dA + 2 * (size_t)N * d, *demb = dA + 3 * (size_t)N * d,
        *dhp = dA + 4 * (size_t)N * d;
  int Dk = D < T ? D : T - 1;
  for (int k = Dk; k >= 1; k--) {
    keel_layer_acts *A = &m->acts[L + k - 1];
    const keel_layer_w *w = &m->w.layers[L + k - 1];
    keel_layer_w *g = &m->g.layers[L + k - 1];
    int Tk = T - k, Nk = B * Tk;
    if (k == Dk) memset(dblock, 0, (size_t)Nk * d * sizeof(float));
    else memcpy(dblock, dh_next, (size_t)Nk * d * sizeof(float));
    m->be->rmsnorm_backward(dblock, g->head_norm, A->dz, A->out, w->head_norm, A->z_rstd, Nk, d);
    set_positions(m, B, Tk);
    /* the block backward uses the front of ws; dblock/dx sit at its end */
    keel_block_backward(m, L + k - 1, A, dblock, dx, B, Tk);
    float *dc = m->ws; /* (Nk, 2d), free again after the block */
    memset(dc, 0, (size_t)Nk * 2 * d * sizeof(float));
    m->be->matmul_backward(dc, g->eh_proj, dx, A->cat, w->eh_proj, Nk, 2 * d, d);
    float *den = m->ws + (size_t)Nk * 2 * d, *dhn = den + (size_t)Nk * d;
    for (int n = 0; n < Nk; n++) {
      memcpy(den + (size_t)n * d, dc + (size_t)n * 2 * d, (size_t)d * sizeof(float));
      memcpy(dhn + (size_t)n * d, dc + (size_t)n * 2 * d + d, (size_t)d * sizeof(float));
    }
    memset(demb, 0, (size_t)Nk * d * sizeof(float));
    m->be->rmsnorm_backward(demb, g->enorm, den, A->emb, w->enorm, A->en_rstd, Nk, d);
    memset(dhp, 0, (size_t)Nk * d * sizeof(float));
    m->be->rmsnorm_backward(dhp, g->hnorm, dhn, A->hp, w->hnorm, A->hn_rstd, Nk, d);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < Tk; t++) {
        int n = b * Tk + t;
        float *ge = m->g.embed + (size_t)tokens[b * T + t + k] * d;
        for (int i = 0; i < d; i++) ge[i] += demb[(size_t)n * d + i];
      }
    /* the hidden input came from depth k-1 (rows b*(Tk+1)+t) */
    int Tp = Tk + 1;
    if (k == 1) {
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tk; t++)
          for (int i = 0; i < d; i++) m->dz[(size_t)(b * Tp + t) * d + i] += dhp[(size_t)(b * Tk + t) * d + i];
    } else {
      memset(dh_next, 0, (size_t)B * Tp * d * sizeof(float));
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tk; t++)
          memcpy(dh_next + (size_t)(b * Tp + t) * d, dhp + (size_t)(b * Tk + t) * d, (size_t)d * sizeof(float));
    }
  }
  set_positions(m, B, T);
  const float *hlast = L ? m->acts[L - 1].out : m->h0;
  memset(dblock, 0, (size_t)N * d * sizeof(float));
  m->be->rmsnorm_backward(dblock, m->g.norm, m->dz, hlast, m->w.norm, m->z_rstd, N, d);
  for (int l = L - 1; l >= 0; l--) {
    if (m->acts_shared && l < L - 1) /* recompute this block's activations from its kept input */
      keel_block_forward(m, l, &m->acts[l], l ? m->acts[l - 1].out : m->h0, B, T, KEEL_RECOMPUTE);
    keel_block_backward(m, l, &m->acts[l], dblock, dx, B, T);
    float *t = dblock; /* this block's input gradient is the next one's output gradient */
    dblock = dx, dx = t;
  }
  for (int n = 0; n < N; n++) {
    float *ge = m->g.embed + (size_t)tokens[n] * d;
    for (int i = 0; i < d; i++) ge[i] += dblock[(size_t)n * d + i];
  }
}

void keel_model_update_bias(keel_model *m, float gamma) {
  const keel_config *c = &m->c;
  int E = c->n_routed_experts, LD = c->num_hidden_layers + c->num_nextn_predict_layers;
  if (!E || c->topk_method != KEEL_TOPK_NOAUX_TC) return;
  for (int l = 0; l < LD; l++) {
    if (!m->w.layers[l].moe) continue;
    const float *load = m->load + (size_t)l * E;
    double mean = 0;
    for (int e = 0; e < E; e++) mean += load[e];
    mean /= E;
    for (int e = 0; e < E; e++) {
      double diff = mean - load[e];
      m->bias[(size_t)l * E + e] += gamma * (float)((diff > 0) - (diff < 0));
    }
  }
}
