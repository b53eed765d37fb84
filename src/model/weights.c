/* HF-layout model directories. */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/file.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../backend/backend.h"

keel_status keel_tensor_scale(float **out, const keel_st_tensor *t, const keel_st_tensor *scale, const char *file) {
  *out = NULL;
  if (t->dtype != KEEL_DTYPE_I8 && t->dtype != KEEL_DTYPE_F8_E4M3) return KEEL_OK;
  const char *kind = t->dtype == KEEL_DTYPE_I8 ? "I8" : "F8_E4M3";
  if (!scale || t->ndim != 2)
    return keel_fail(KEEL_ERR_FORMAT, "%s: %s: %s weight without a 2-D weight and its scale tensor", file, t->name, kind);
  int64_t R = t->shape[0], C = t->shape[1], want[2] = {R, 1};
  if (t->dtype == KEEL_DTYPE_F8_E4M3) want[0] = (R + 127) / 128, want[1] = (C + 127) / 128;
  int ok = scale->dtype == KEEL_DTYPE_F32 && keel_st_numel(scale) == want[0] * want[1] && scale->shape[0] == want[0];
  if (!ok)
    return keel_fail(KEEL_ERR_FORMAT, "%s: %s: expected an F32 [%lld, %lld] scale", file, scale->name,
                     (long long)want[0], (long long)want[1]);
  *out = keel_xmalloc((size_t)want[0] * want[1] * sizeof **out);
  memcpy(*out, scale->data, (size_t)want[0] * want[1] * sizeof **out); /* the mapping may be unaligned */
  return KEEL_OK;
}

keel_status keel_tensor_to_f32(float *dst, const keel_st_tensor *t, const keel_st_tensor *scale, const char *file) {
  size_t n = (size_t)keel_st_numel(t);
  const uint8_t *p = t->data;
  float *sc;
  keel_status st = keel_tensor_scale(&sc, t, scale, file);
  if (st) return st;
  switch (t->dtype) {
    case KEEL_DTYPE_F32: memcpy(dst, p, n * 4); break;
    case KEEL_DTYPE_BF16:
      for (size_t i = 0; i < n; i++) dst[i] = keel_bf16_to_f32((unsigned short)(p[2 * i] | p[2 * i + 1] << 8));
      break;
    case KEEL_DTYPE_F16:
      for (size_t i = 0; i < n; i++) dst[i] = keel_f16_to_f32((unsigned short)(p[2 * i] | p[2 * i + 1] << 8));
      break;
    case KEEL_DTYPE_I8:
    case KEEL_DTYPE_F8_E4M3: {
      keel_wmat w = {t->dtype == KEEL_DTYPE_I8 ? KEEL_W_INT8 : KEEL_W_FP8, (int)t->shape[0], (int)t->shape[1], p, sc, 0};
      for (int64_t r = 0; r < w.M; r++) keel_wmat_row(dst + r * w.K, &w, r, 0, w.K);
      break;
    }
    default:
      st = keel_fail(KEEL_ERR_FORMAT, "%s: %s: dtype %s is not a float type keel loads", file, t->name,
                     keel_dtype_name(t->dtype));
  }
  free(sc);
  return st;
}

/* The scale tensor that goes with a weight: NAME_scale_inv (fp8) or NAME_scale (int8). */
const keel_st_tensor *keel_shards_scale(const keel_shards *s, const char *name) {
  char sname[160];
  int f;
  snprintf(sname, sizeof sname, "%s_scale_inv", name);
  const keel_st_tensor *t = keel_shards_find(s, sname, &f);
  if (t) return t;
  snprintf(sname, sizeof sname, "%s_scale", name);
  return keel_shards_find(s, sname, &f);
}

keel_status keel_shards_open(keel_shards *s, const char *dir) {
  memset(s, 0, sizeof *s);
  char *single = keel_path_join(dir, "model.safetensors"), *index = keel_path_join(dir, "model.safetensors.index.json");
  keel_status st = KEEL_OK;
  if (keel_path_exists(single)) {
    s->files = keel_xcalloc(1, sizeof *s->files);
    s->files[s->n++] = single;
    single = NULL;
  } else if (keel_path_exists(index)) {
    json_t *j;
    if ((st = keel_json_load_file(&j, index))) goto done;
    json_t *map = json_object_get(j, "weight_map");
    if (!json_is_object(map)) {
      json_decref(j);
      st = keel_fail(KEEL_ERR_FORMAT, "%s: weight_map is missing", index);
      goto done;
    }
    s->files = keel_xcalloc(json_object_size(map) + 1, sizeof *s->files);
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v) {
      if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
        st = keel_fail(KEEL_ERR_FORMAT, "%s: weight_map[\"%.60s\"] must be a file name", index, k);
        break;
      }
      int seen = 0;
      for (int i = 0; i < s->n && !seen; i++) seen = strcmp(strrchr(s->files[i], '/') + 1, json_string_value(v)) == 0;
      if (!seen) s->files[s->n++] = keel_path_join(dir, json_string_value(v));
    }
    json_decref(j);
  } else {
    st = keel_fail(KEEL_ERR_ARG, "%s: no model.safetensors or model.safetensors.index.json", dir);
  }
  if (!st) {
    s->st = keel_xcalloc((size_t)s->n + 1, sizeof *s->st);
    for (int i = 0; i < s->n && !st; i++) st = keel_st_open(&s->st[i], s->files[i]);
  }
done:
  free(single);
  free(index);
  return st;
}

void keel_shards_close(keel_shards *s) {
  for (int i = 0; i < s->n; i++) {
    if (s->st) keel_st_close(&s->st[i]);
    free(s->files[i]);
  }
  free(s->st);
  free(s->files);
}

const keel_st_tensor *keel_shards_find(const keel_shards *s, const char *name, int *file) {
  for (int i = 0; i < s->n; i++) {
    const keel_st_tensor *t = keel_st_find(&s->st[i], name);
    if (t) {
      *file = i;
      return t;
    }
  }
  return NULL;
}

keel_status keel_model_load_weights(keel_model *m, const char *dir) {
  keel_shards s;
  keel_status st = keel_shards_open(&s, dir);
  if (st) {
    keel_shards_close(&s);
    return st;
  }
  for (int i = 0; i < m->tab.n && !st; i++) {
    const keel_param_info *p = &m->tab.t[i];
    int f;
    const keel_st_tensor *t = keel_shards_find(&s, p->name, &f);
    if (!t) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: tensor %s is missing", dir, p->name);
      break;
    }
    int ok = t->ndim == p->ndim;
    for (int k = 0; ok && k < p->ndim; k++) ok = t->shape[k] == p->shape[k];
    if (!ok) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: %s: shape does not match config.json", s.files[f], p->name);
      break;
    }
    st = keel_tensor_to_f32(m->params + p->offset, t, keel_shards_scale(&s, p->name), s.files[f]);
  }
  /* balancing biases (noaux_tc), F32 [E]; absent means zero */
  int LD = m->c.num_hidden_layers + m->c.num_nextn_predict_layers, E = m->c.n_routed_experts;
  for (int l = 0; l < LD && !st; l++) {
    if (!m->w.layers[l].moe || m->c.topk_method != KEEL_TOPK_NOAUX_TC) continue;
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    int f;
    const keel_st_tensor *t = keel_shards_find(&s, name, &f);
    if (!t) continue;
    if (t->ndim != 1 || t->shape[0] != E)
      st = keel_fail(KEEL_ERR_FORMAT, "%s: %s: expected [%d]", s.files[f], name, E);
    else
      st = keel_tensor_to_f32(m->bias + (size_t)l * E, t, NULL, s.files[f]);
  }
  keel_shards_close(&s);
  return st;
}

keel_status keel_model_load(keel_model *m, const char *dir, const keel_backend *be) {
  keel_config c;
  char *cfg = keel_path_join(dir, "config.json");
  keel_status st = keel_config_load(&c, cfg);
  free(cfg);
  if (st) return st;
  keel_model_init(m, &c, be);
  if ((st = keel_model_load_weights(m, dir))) keel_model_free(m);
  return st;
}

keel_status keel_weights_save(const keel_config *c, const keel_param_table *tab, const float *params,
                              const float *bias, const char *dir) {
  keel_status st = keel_mkdirs(dir);
  if (st) return st;
  keel_st_writer w;
  keel_st_writer_init(&w);
  keel_st_writer_meta(&w, "format", "pt");
  const float *embed = NULL, *head = NULL;
  for (int i = 0; i < tab->n; i++) {
    const keel_param_info *p = &tab->t[i];
    keel_st_writer_add(&w, p->name, KEEL_DTYPE_F32, p->ndim, p->shape, params + p->offset);
    if (!strcmp(p->name, "model.embed_tokens.weight")) embed = params + p->offset;
    if (!strcmp(p->name, "lm_head.weight")) head = params + p->offset;
  }
  int L = c->num_hidden_layers, D = c->num_nextn_predict_layers, E = c->n_routed_experts;
  char(*names)[96] = keel_xcalloc((size_t)(L + 3 * D + 1), sizeof *names);
  int nn = 0;
  for (int l = 0; l < L + D; l++) {
    int moe = l >= L ? E > 0 : keel_config_is_moe_layer(c, l);
    if (!moe || c->topk_method != KEEL_TOPK_NOAUX_TC) continue;
    snprintf(names[nn], sizeof names[nn], "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    int64_t shape[1] = {E};
    keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 1, shape, bias + (size_t)l * E);
  }
  /* MTP modules carry copies of the shared embedding and head in the HF layout */
  int64_t vd[2] = {c->vocab_size, c->hidden_size};
  for (int k = 0; k < D; k++) {
    snprintf(names[nn], sizeof names[nn], "model.layers.%d.embed_tokens.weight", L + k);
    keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 2, vd, embed);
    snprintf(names[nn], sizeof names[nn], "model.layers.%d.shared_head.head.weight", L + k);
    keel_st_writer_add(&w, names[nn++], KEEL_DTYPE_F32, 2, vd, head);
  }
  st = keel_model_dir_write(dir, &w, keel_config_to_json(c));
  free(names);
  keel_st_writer_free(&w);
  return st;
}

keel_status keel_model_dir_write(const char *dir, keel_st_writer *w, json_t *config) {
  char *path = keel_path_join(dir, "model.safetensors");
  keel_status st = keel_st_writer_save(w, path);
  free(path);
  if (!st) {
    char *cfg = keel_path_join(dir, "config.json");
    st = keel_json_save_file(config, cfg, 2);
    free(cfg);
  }
  json_decref(config);
  return st;
}

keel_status keel_model_save(const keel_model *m, const char *dir) {
  return keel_weights_save(&m->c, &m->tab, m->params, m->bias, dir);
}
