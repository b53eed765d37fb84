/* Parameter layout. One walk over the config both names the tensors and, when
 * binding, sets the pointers, so the two can never disagree. */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/rng.h"

typedef struct walker {
  keel_param_table *tab; /* when building the table */
  float *base;           /* when binding */
  size_t off;
} walker;

static float *add(walker *wk, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int decay) {
  size_t numel = (size_t)a * (size_t)(ndim > 1 ? b : 1) * (size_t)(ndim > 2 ? c : 1);
  if (wk->tab) {
    keel_param_table *t = wk->tab;
    t->t = keel_xrealloc(t->t, (size_t)(t->n + 1) * sizeof *t->t);
    keel_param_info *p = &t->t[t->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = a, p->shape[1] = b, p->shape[2] = c;
    p->offset = wk->off;
    p->numel = numel;
    p->decay = decay;
    p->is_norm = !decay;
  }
  float *ptr = wk->base ? wk->base + wk->off : NULL;
  wk->off += numel;
  return ptr;
}

static void walk_layer(walker *wk, const keel_config *c, keel_layer_w *lw, int l, int mtp) {
  int d = c->hidden_size, H = c->num_attention_heads, dq = keel_config_dq(c), rq = c->q_lora_rank,
      rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
  char n[96];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
  memset(lw, 0, sizeof *lw);
  if (mtp) {
    lw->enorm = add(wk, NAME("enorm.weight"), 1, d, 0, 0, 0);
    lw->hnorm = add(wk, NAME("hnorm.weight"), 1, d, 0, 0, 0);
    lw->eh_proj = add(wk, NAME("eh_proj.weight"), 2, d, 2 * d, 0, 1);
    lw->head_norm = add(wk, NAME("shared_head.norm.weight"), 1, d, 0, 0, 0);
  }
  lw->ln1 = add(wk, NAME("input_layernorm.weight"), 1, d, 0, 0, 0);
  if (rq) {
    lw->wq_a = add(wk, NAME("self_attn.q_a_proj.weight"), 2, rq, d, 0, 1);
    lw->q_norm = add(wk, NAME("self_attn.q_a_layernorm.weight"), 1, rq, 0, 0, 0);
    lw->wq_b = add(wk, NAME("self_attn.q_b_proj.weight"), 2, (int64_t)H * dq, rq, 0, 1);
  } else {
    lw->wq = add(wk, NAME("self_attn.q_proj.weight"), 2, (int64_t)H * dq, d, 0, 1);
  }
  lw->wkv_a = add(wk, NAME("self_attn.kv_a_proj_with_mqa.weight"), 2, rkv + dr, d, 0, 1);
  lw->kv_norm = add(wk, NAME("self_attn.kv_a_layernorm.weight"), 1, rkv, 0, 0, 0);
  lw->wkv_b = add(wk, NAME("self_attn.kv_b_proj.weight"), 2, (int64_t)H * (dn + dv), rkv, 0, 1);
  lw->wo = add(wk, NAME("self_attn.o_proj.weight"), 2, d, (int64_t)H * dv, 0, 1);
  lw->ln2 = add(wk, NAME("post_attention_layernorm.weight"), 1, d, 0, 0, 0);
  lw->moe = mtp ? c->n_routed_experts > 0 : keel_config_is_moe_layer(c, l);
  if (!lw->moe) {
    int I = c->intermediate_size;
    lw->w_gate = add(wk, NAME("mlp.gate_proj.weight"), 2, I, d, 0, 1);
    lw->w_up = add(wk, NAME("mlp.up_proj.weight"), 2, I, d, 0, 1);
    lw->w_down = add(wk, NAME("mlp.down_proj.weight"), 2, d, I, 0, 1);
  } else {
    int E = c->n_routed_experts, Ie = c->moe_intermediate_size, S = c->n_shared_experts;
    lw->gate = add(wk, NAME("mlp.gate.weight"), 2, E, d, 0, 1);
    /* experts are contiguous per kind so a grouped GEMM walks one block */
    static const char *const kinds[3] = {"gate_proj", "up_proj", "down_proj"};
    float **dst[3] = {&lw->e_gate, &lw->e_up, &lw->e_down};
    for (int k = 0; k < 3; k++)
      for (int e = 0; e < E; e++) {
        char en[64];
        snprintf(en, sizeof en, "mlp.experts.%d.%s.weight", e, kinds[k]);
        snprintf(n, sizeof n, "model.layers.%d.%s", l, en);
        float *p = k < 2 ? add(wk, n, 2, Ie, d, 0, 1) : add(wk, n, 2, d, Ie, 0, 1);
        if (e == 0) *dst[k] = p;
      }
    if (S) {
      lw->s_gate = add(wk, NAME("mlp.shared_experts.gate_proj.weight"), 2, (int64_t)S * Ie, d, 0, 1);
      lw->s_up = add(wk, NAME("mlp.shared_experts.up_proj.weight"), 2, (int64_t)S * Ie, d, 0, 1);
      lw->s_down = add(wk, NAME("mlp.shared_experts.down_proj.weight"), 2, d, (int64_t)S * Ie, 0, 1);
    }
  }
#undef NAME
}

static void walk(walker *wk, const keel_config *c, keel_model_w *w) {
  int d = c->hidden_size, V = c->vocab_size, L = c->num_hidden_layers, D = c->num_nextn_predict_layers;
  keel_model_w tmp;
  if (!w) w = &tmp, w->layers = NULL;
  keel_layer_w scratch;
  w->embed = add(wk, "model.embed_tokens.weight", 2, V, d, 0, 1);
  for (int l = 0; l < L + D; l++) walk_layer(wk, c, w->layers ? &w->layers[l] : &scratch, l, l >= L);
  w->norm = add(wk, "model.norm.weight", 1, d, 0, 0, 0);
  w->head = add(wk, "lm_head.weight", 2, V, d, 0, 1);
}

void keel_params_table(keel_param_table *tab, const keel_config *c) {
  memset(tab, 0, sizeof *tab);
  walker wk = {tab, NULL, 0};
  walk(&wk, c, NULL);
  tab->total = wk.off;
}

void keel_params_table_free(keel_param_table *tab) {
  free(tab->t);
  memset(tab, 0, sizeof *tab);
}

void keel_params_bind(keel_model_w *w, const keel_config *c, float *base) {
  w->layers = keel_xcalloc((size_t)(c->num_hidden_layers + c->num_nextn_predict_layers), sizeof *w->layers);
  walker wk = {NULL, base, 0};
  walk(&wk, c, w);
}

void keel_params_unbind(keel_model_w *w) {
  free(w->layers);
  w->layers = NULL;
}

void keel_params_init(float *base, const keel_param_table *tab, uint64_t seed, float std) {
  for (int i = 0; i < tab->n; i++) {
    const keel_param_info *p = &tab->t[i];
    float *x = base + p->offset;
    if (p->is_norm) {
      for (size_t k = 0; k < p->numel; k++) x[k] = 1.0f;
      continue;
    }
    /* keyed per tensor (adding a tensor does not shift the others); elements 2k and 2k+1 take
     * the stream's draw k, so chunks run in parallel with the same values */
    uint64_t key = keel_rng_key(seed, (uint64_t)i, 0, KEEL_RNG_INIT);
    long chunks = (long)((p->numel + 65535) / 65536);
#pragma omp parallel for schedule(static)
    for (long ch = 0; ch < chunks; ch++) {
      keel_rng r;
      keel_rng_init(&r, key);
      size_t k0 = (size_t)ch * 65536, k1 = k0 + 65536 < p->numel ? k0 + 65536 : p->numel;
      r.counter += k0 / 2;
      for (size_t k = k0; k < k1; k += 2) {
        float z[2];
        keel_rng_normal2(&r, z);
        x[k] = std * z[0];
        if (k + 1 < k1) x[k + 1] = std * z[1];
      }
    }
  }
}

/* Which layer a parameter belongs to (-1: none), and whether it is one of the routed
 * experts past the first K (per token, K of E experts count as active). */
static int param_layer(const keel_param_info *p) {
  int layer = -1;
  return sscanf(p->name, "model.layers.%d.", &layer) == 1 ? layer : -1;
}

static int inactive_expert(const keel_config *c, const keel_param_info *p) {
  const char *s = strstr(p->name, ".mlp.experts.");
  int e = -1;
  return s && sscanf(s, ".mlp.experts.%d.", &e) == 1 && e >= c->num_experts_per_tok;
}

void keel_params_count(const keel_config *c, const keel_param_table *tab, size_t *total, size_t *active) {
  size_t all = 0, act = 0;
  for (int i = 0; i < tab->n; i++) {
    const keel_param_info *p = &tab->t[i];
    all += p->numel;
    if (param_layer(p) >= c->num_hidden_layers || inactive_expert(c, p)) continue; /* MTP, or not among the K */
    act += p->numel;
  }
  *total = all;
  *active = act;
}

size_t keel_params_mtp_active(const keel_config *c, const keel_param_table *tab, int k) {
  size_t act = 0;
  for (int i = 0; i < tab->n; i++)
    if (param_layer(&tab->t[i]) == c->num_hidden_layers + k - 1 && !inactive_expert(c, &tab->t[i]))
      act += tab->t[i].numel;
  return act;
}

double keel_params_train_flops(const keel_config *c, const keel_param_table *tab, int T) {
  size_t total, active;
  keel_params_count(c, tab, &total, &active);
  double head = (double)c->vocab_size * c->hidden_size, attn = (double)c->num_attention_heads * (keel_config_dq(c) + c->v_head_dim);
  double f = 6.0 * ((double)active - head) + 3.0 * c->num_hidden_layers * attn * T;
  for (int k = 1; k <= c->num_nextn_predict_layers && k < T; k++)
    f += (double)(T - k) / T * (6.0 * ((double)keel_params_mtp_active(c, tab, k) + head) + 3.0 * attn * (T - k));
  return f;
}
