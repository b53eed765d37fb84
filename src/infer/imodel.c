/* The inference model: typed weights bound to the main layers. */
#include "imodel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/hashmap.h"
#include "../model/weights.h"

static void *own(keel_imodel *im, void *p) {
  im->owned = keel_xrealloc(im->owned, (size_t)(im->n_owned + 1) * sizeof *im->owned);
  im->owned[im->n_owned++] = p;
  return p;
}

/* Tensors of the main model: everything but the MTP modules' layers. */
static int in_main_model(const keel_config *c, const char *name) {
  if (strncmp(name, "model.layers.", 13) != 0) return 1;
  return atoi(name + 13) < c->num_hidden_layers;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

keel_wtype keel_imodel_tensor_type(const keel_param_info *p, keel_wtype t) {
  if (p->ndim == 1 || ends_with(p->name, "mlp.gate.weight")) return KEEL_W_F32; /* norms and the router */
  if (!strcmp(p->name, "model.embed_tokens.weight")) return t == KEEL_W_F32 ? KEEL_W_F32 : KEEL_W_BF16;
  return t;
}

static void shape_of(const keel_param_info *p, int *M, int *K) {
  *M = p->ndim == 1 ? 1 : (int)p->shape[0];
  *K = p->ndim == 1 ? (int)p->shape[0] : (int)p->shape[1];
}

static const keel_wmat *find(keel_imodel *im, const keel_strmap *names, const char *name) {
  int64_t i;
  if (!keel_strmap_get(names, name, strlen(name), &i)) abort(); /* the table names every tensor bind asks for */
  return &im->wm[i];
}

/* Points the layer structs at the tensors by name; derives the absorbed-MLA matrices. */
static void bind(keel_imodel *im) {
  const keel_config *c = &im->c;
  keel_strmap names;
  keel_strmap_init(&names, (size_t)im->tab.n);
  for (int i = 0; i < im->tab.n; i++) keel_strmap_put(&names, im->tab.t[i].name, strlen(im->tab.t[i].name), i);
  char n[128];
#define W(...) (snprintf(n, sizeof n, __VA_ARGS__), find(im, &names, n))
  int L = c->num_hidden_layers, H = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
  im->layers = own(im, keel_xcalloc((size_t)L, sizeof *im->layers));
  im->embed = W("model.embed_tokens.weight");
  im->head = W("lm_head.weight");
  im->norm = W("model.norm.weight")->data;
  im->weight_bytes = 0;
  for (int i = 0; i < im->tab.n; i++) {
    const keel_wmat *w = &im->wm[i];
    if (!w->data) continue;
    size_t ns = w->type == KEEL_W_INT8 ? (size_t)w->M : w->type == KEEL_W_FP8 ? (size_t)((w->M + 127) / 128) * ((w->K + 127) / 128) : 0;
    im->weight_bytes += (size_t)w->M * w->K * keel_wtype_size(w->type) + ns * sizeof(float);
  }
  for (int l = 0; l < L; l++) {
    keel_ilayer *y = &im->layers[l];
    const char *p = "model.layers";
    y->ln1 = W("%s.%d.input_layernorm.weight", p, l)->data;
    y->ln2 = W("%s.%d.post_attention_layernorm.weight", p, l)->data;
    if (c->q_lora_rank) {
      y->wq_a = W("%s.%d.self_attn.q_a_proj.weight", p, l);
      y->q_norm = W("%s.%d.self_attn.q_a_layernorm.weight", p, l)->data;
      y->wq_b = W("%s.%d.self_attn.q_b_proj.weight", p, l);
    } else {
      y->wq = W("%s.%d.self_attn.q_proj.weight", p, l);
    }
    y->wkv_a = W("%s.%d.self_attn.kv_a_proj_with_mqa.weight", p, l);
    y->kv_norm = W("%s.%d.self_attn.kv_a_layernorm.weight", p, l)->data;
    y->wo = W("%s.%d.self_attn.o_proj.weight", p, l);
    const keel_wmat *kvb = y->wkv_b = W("%s.%d.self_attn.kv_b_proj.weight", p, l);
    y->uk = own(im, keel_xmalloc((size_t)H * sizeof *y->uk));
    y->uv = own(im, keel_xmalloc((size_t)H * sizeof *y->uv));
    for (int h = 0; h < H; h++) { /* read in place, in the stored type */
      y->uk[h] = keel_wmat_rows(kvb, h * (dn + dv), dn);
      y->uv[h] = keel_wmat_rows(kvb, h * (dn + dv) + dn, dv);
    }
    y->moe = keel_config_is_moe_layer(c, l);
    if (!y->moe) {
      y->w_gate = W("%s.%d.mlp.gate_proj.weight", p, l);
      y->w_up = W("%s.%d.mlp.up_proj.weight", p, l);
      y->w_down = W("%s.%d.mlp.down_proj.weight", p, l);
    } else {
      y->gate = W("%s.%d.mlp.gate.weight", p, l);
      y->e_gate = W("%s.%d.mlp.experts.0.gate_proj.weight", p, l); /* experts are consecutive in the table */
      y->e_up = W("%s.%d.mlp.experts.0.up_proj.weight", p, l);
      y->e_down = W("%s.%d.mlp.experts.0.down_proj.weight", p, l);
      if (c->n_shared_experts) {
        y->s_gate = W("%s.%d.mlp.shared_experts.gate_proj.weight", p, l);
        y->s_up = W("%s.%d.mlp.shared_experts.up_proj.weight", p, l);
        y->s_down = W("%s.%d.mlp.shared_experts.down_proj.weight", p, l);
      }
    }
  }
#undef W
  keel_strmap_free(&names);
}

static void init_common(keel_imodel *im, const keel_config *c, const keel_backend *be, keel_wtype t) {
  memset(im, 0, sizeof *im);
  im->c = *c;
  im->be = be;
  im->wtype = t;
  keel_params_table(&im->tab, c);
  im->wm = keel_xcalloc((size_t)im->tab.n, sizeof *im->wm);
  int E = c->n_routed_experts ? c->n_routed_experts : 1;
  im->bias = own(im, keel_xcalloc((size_t)c->num_hidden_layers * E, sizeof(float)));
  im->softmax_scale = keel_config_softmax_scale(c);
}

/* Tensor i as type tt: f32 itself (a view, kept alive by the caller) or a quantised copy. */
static void set_typed(keel_imodel *im, int i, const float *f32, keel_wtype tt) {
  const keel_param_info *p = &im->tab.t[i];
  int M, K;
  shape_of(p, &M, &K);
  if (tt == KEEL_W_F32) {
    im->wm[i] = (keel_wmat){KEEL_W_F32, M, K, f32, NULL, 0};
    return;
  }
  void *data;
  float *scale;
  keel_wmat_quantize(&im->wm[i], &data, &scale, f32, M, K, tt);
  own(im, data);
  if (scale) own(im, scale);
}

void keel_imodel_from_model(keel_imodel *im, const keel_model *m, keel_wtype type) {
  init_common(im, &m->c, m->be, type);
  for (int i = 0; i < im->tab.n; i++) {
    const keel_param_info *p = &im->tab.t[i];
    if (in_main_model(&m->c, p->name)) set_typed(im, i, m->params + p->offset, keel_imodel_tensor_type(p, type));
  }
  int E = m->c.n_routed_experts;
  if (E) memcpy(im->bias, m->bias, (size_t)m->c.num_hidden_layers * E * sizeof(float));
  bind(im);
}

static int stored_wtype(keel_dtype d) {
  switch (d) {
    case KEEL_DTYPE_F32: return KEEL_W_F32;
    case KEEL_DTYPE_BF16: return KEEL_W_BF16;
    case KEEL_DTYPE_I8: return KEEL_W_INT8;
    case KEEL_DTYPE_F8_E4M3: return KEEL_W_FP8;
    default: return -1;
  }
}

keel_status keel_imodel_load(keel_imodel *im, const char *dir, int type, const keel_backend *be) {
  keel_config c;
  char *cfg = keel_path_join(dir, "config.json");
  keel_status st = keel_config_load(&c, cfg);
  free(cfg);
  if (st) return st;
  init_common(im, &c, be, type < 0 ? KEEL_W_F32 : (keel_wtype)type);
  keel_shards *s = keel_xcalloc(1, sizeof *s);
  im->shards = s;
  if ((st = keel_shards_open(s, dir))) {
    keel_imodel_free(im);
    return st;
  }
  int seen_type = -1;
  for (int i = 0; i < im->tab.n && !st; i++) {
    const keel_param_info *p = &im->tab.t[i];
    if (!in_main_model(&c, p->name)) continue;
    int f;
    const keel_st_tensor *t = keel_shards_find(s, p->name, &f);
    if (!t) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: tensor %s is missing", dir, p->name);
      break;
    }
    int ok = t->ndim == p->ndim || (p->ndim == 1 && t->ndim == 2 && t->shape[1] == 1);
    for (int k = 0; ok && k < p->ndim; k++) ok = t->shape[k] == p->shape[k];
    if (!ok) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: %s: shape does not match config.json", s->files[f], p->name);
      break;
    }
    int sw = stored_wtype(t->dtype);
    keel_wtype tt = type < 0 ? (p->ndim == 1 || sw < 0 ? KEEL_W_F32 : (keel_wtype)sw)
                             : keel_imodel_tensor_type(p, (keel_wtype)type);
    if (p->ndim == 2 && sw == (int)tt && (tt != KEEL_W_F32 || ((uintptr_t)t->data & 3) == 0)) {
      float *scale; /* used as stored: the weight stays in the mapping */
      if ((st = keel_tensor_scale(&scale, t, keel_shards_scale(s, p->name), s->files[f]))) break;
      if (scale) own(im, scale);
      im->wm[i] = (keel_wmat){tt, (int)p->shape[0], (int)p->shape[1], t->data, scale, 0};
    } else {
      float *f32 = keel_xmalloc(p->numel * sizeof(float));
      if ((st = keel_tensor_to_f32(f32, t, keel_shards_scale(s, p->name), s->files[f]))) {
        free(f32);
        break;
      }
      set_typed(im, i, f32, tt);
      if (tt == KEEL_W_F32) own(im, f32); /* the view's storage */
      else free(f32);                     /* quantised: the float copy is not needed */
    }
    if (p->ndim == 2 && !ends_with(p->name, "mlp.gate.weight") && strcmp(p->name, "model.embed_tokens.weight"))
      seen_type = (int)im->wm[i].type; /* the type of the large matrices, for reports */
  }
  if (type < 0 && seen_type >= 0) im->wtype = (keel_wtype)seen_type;
  int E = c.n_routed_experts;
  for (int l = 0; l < c.num_hidden_layers && !st && E && c.topk_method == KEEL_TOPK_NOAUX_TC; l++) {
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    int f;
    const keel_st_tensor *t = keel_shards_find(s, name, &f);
    if (!t || !keel_config_is_moe_layer(&c, l)) continue;
    if (keel_st_numel(t) != E) st = keel_fail(KEEL_ERR_FORMAT, "%s: %s: expected [%d]", s->files[f], name, E);
    else st = keel_tensor_to_f32(im->bias + (size_t)l * E, t, NULL, s->files[f]);
  }
  if (st) {
    keel_imodel_free(im);
    return st;
  }
  bind(im);
  return KEEL_OK;
}

void keel_imodel_free(keel_imodel *im) {
  for (int i = 0; i < im->n_owned; i++) free(im->owned[i]);
  free(im->owned);
  free(im->wm);
  keel_params_table_free(&im->tab);
  if (im->shards) keel_shards_close(im->shards);
  free(im->shards);
  memset(im, 0, sizeof *im);
}

static keel_dtype dtype_of(keel_wtype t) {
  static const keel_dtype d[] = {KEEL_DTYPE_F32, KEEL_DTYPE_BF16, KEEL_DTYPE_I8, KEEL_DTYPE_F8_E4M3};
  return d[t];
}

keel_status keel_imodel_save(const keel_imodel *im, const char *dir) {
  keel_status st = keel_mkdirs(dir);
  if (st) return st;
  keel_config c = im->c;
  c.num_nextn_predict_layers = 0; /* the MTP modules are not part of an inference model */
  keel_st_writer w;
  keel_st_writer_init(&w);
  keel_st_writer_meta(&w, "format", "pt");
  int L = c.num_hidden_layers, E = c.n_routed_experts;
  char(*names)[160] = keel_xcalloc((size_t)im->tab.n + L + 1, sizeof *names);
  int nn = 0;
  for (int i = 0; i < im->tab.n; i++) {
    const keel_wmat *m = &im->wm[i];
    const keel_param_info *p = &im->tab.t[i];
    if (!m->data) continue;
    keel_st_writer_add(&w, p->name, dtype_of(m->type), p->ndim, p->shape, m->data);
    if (m->type == KEEL_W_INT8) {
      int64_t sh[2] = {m->M, 1};
      snprintf(names[nn], sizeof names[nn], "%s_scale", p->name);
      keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 2, sh, m->scale);
    } else if (m->type == KEEL_W_FP8) {
      int64_t sh[2] = {(m->M + 127) / 128, (m->K + 127) / 128};
      snprintf(names[nn], sizeof names[nn], "%s_scale_inv", p->name);
      keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 2, sh, m->scale);
    }
  }
  for (int l = 0; l < L && E && c.topk_method == KEEL_TOPK_NOAUX_TC; l++) {
    if (!keel_config_is_moe_layer(&c, l)) continue;
    snprintf(names[nn], sizeof names[nn], "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    int64_t sh[1] = {E};
    keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 1, sh, im->bias + (size_t)l * E);
  }
  json_t *j = keel_config_to_json(&c);
  if (im->wtype == KEEL_W_FP8) /* what DeepSeek's FP8 checkpoints declare */
    json_object_set_new(j, "quantization_config",
                        json_pack("{s:s, s:s, s:[i,i], s:s}", "quant_method", "fp8", "fmt", "e4m3",
                                  "weight_block_size", 128, 128, "activation_scheme", "dynamic"));
  st = keel_model_dir_write(dir, &w, j);
  free(names);
  keel_st_writer_free(&w);
  return st;
}
