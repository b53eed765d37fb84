/* config.json parsing and validation. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "../io/json.h"

typedef struct reader {
  const json_t *j;
  const char *name;
  keel_status st;
} reader;

static const json_t *field(reader *r, const char *key) { return json_object_get(r->j, key); }

static int get_int(reader *r, const char *key, int dflt, int required, int min) {
  const json_t *v = field(r, key);
  if (!v || json_is_null(v)) {
    if (required && !r->st) r->st = keel_fail(KEEL_ERR_FORMAT, "%s: field %s is missing", r->name, key);
    return dflt;
  }
  if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > (1 << 30)) {
    if (!r->st) r->st = keel_fail(KEEL_ERR_FORMAT, "%s: field %s must be an integer >= %d", r->name, key, min);
    return dflt;
  }
  return (int)json_integer_value(v);
}

static double get_num(reader *r, const json_t *obj, const char *key, double dflt) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return dflt;
  if (!json_is_number(v)) {
    if (!r->st) r->st = keel_fail(KEEL_ERR_FORMAT, "%s: field %s must be a number", r->name, key);
    return dflt;
  }
  return json_number_value(v);
}

static int get_bool(reader *r, const char *key, int dflt) {
  const json_t *v = field(r, key);
  if (!v || json_is_null(v)) return dflt;
  if (!json_is_boolean(v)) {
    if (!r->st) r->st = keel_fail(KEEL_ERR_FORMAT, "%s: field %s must be true or false", r->name, key);
    return dflt;
  }
  return json_is_true(v);
}

static const char *get_str(reader *r, const char *key, const char *dflt) {
  const json_t *v = field(r, key);
  if (!v || json_is_null(v)) return dflt;
  if (!json_is_string(v)) {
    if (!r->st) r->st = keel_fail(KEEL_ERR_FORMAT, "%s: field %s must be a string", r->name, key);
    return dflt;
  }
  return json_string_value(v);
}

keel_status keel_config_parse(keel_config *c, const json_t *j, const char *name) {
  memset(c, 0, sizeof *c);
  reader r = {j, name, KEEL_OK};
  if (!json_is_object(j)) return keel_fail(KEEL_ERR_FORMAT, "%s: not a JSON object", name);
  c->vocab_size = get_int(&r, "vocab_size", 0, 1, 1);
  c->hidden_size = get_int(&r, "hidden_size", 0, 1, 1);
  c->num_hidden_layers = get_int(&r, "num_hidden_layers", 0, 1, 1);
  c->num_attention_heads = get_int(&r, "num_attention_heads", 0, 1, 1);
  c->kv_lora_rank = get_int(&r, "kv_lora_rank", 0, 1, 1);
  c->qk_nope_head_dim = get_int(&r, "qk_nope_head_dim", 0, 1, 1);
  c->qk_rope_head_dim = get_int(&r, "qk_rope_head_dim", 0, 1, 2);
  c->v_head_dim = get_int(&r, "v_head_dim", 0, 1, 1);
  c->q_lora_rank = get_int(&r, "q_lora_rank", 0, 0, 0);
  c->n_routed_experts = get_int(&r, "n_routed_experts", 0, 0, 0);
  int moe = c->n_routed_experts > 0;
  c->intermediate_size = get_int(&r, "intermediate_size", 0, 0, 1);
  c->moe_intermediate_size = get_int(&r, "moe_intermediate_size", 0, moe, moe);
  c->n_shared_experts = get_int(&r, "n_shared_experts", 0, 0, 0);
  c->num_experts_per_tok = get_int(&r, "num_experts_per_tok", moe ? 0 : 1, moe, 1);
  c->n_group = get_int(&r, "n_group", 1, 0, 1);
  c->topk_group = get_int(&r, "topk_group", 1, 0, 1);
  c->first_k_dense_replace = get_int(&r, "first_k_dense_replace", 0, 0, 0);
  c->moe_layer_freq = get_int(&r, "moe_layer_freq", 1, 0, 1);
  c->num_nextn_predict_layers = get_int(&r, "num_nextn_predict_layers", 0, 0, 0);
  c->max_position_embeddings = get_int(&r, "max_position_embeddings", 4096, 0, 1);
  c->bos_token_id = get_int(&r, "bos_token_id", 0, 0, 0);
  c->eos_token_id = get_int(&r, "eos_token_id", 1, 0, 0);
  c->routed_scaling_factor = (float)get_num(&r, j, "routed_scaling_factor", 1.0);
  c->rms_norm_eps = (float)get_num(&r, j, "rms_norm_eps", 1e-6);
  c->rope_theta = get_num(&r, j, "rope_theta", 10000.0);
  c->aux_loss_alpha = (float)get_num(&r, j, "aux_loss_alpha", 0.0);
  c->norm_topk_prob = get_bool(&r, "norm_topk_prob", 0);
  c->tie_word_embeddings = get_bool(&r, "tie_word_embeddings", 0);
  const char *sf = get_str(&r, "scoring_func", "softmax");
  const char *tm = get_str(&r, "topk_method", "greedy");
  if (r.st) return r.st;
  if (strcmp(sf, "sigmoid") == 0) c->scoring_func = KEEL_SCORE_SIGMOID;
  else if (strcmp(sf, "softmax") == 0) c->scoring_func = KEEL_SCORE_SOFTMAX;
  else return keel_fail(KEEL_ERR_FORMAT, "%s: scoring_func \"%s\" is not sigmoid or softmax", name, sf);
  if (strcmp(tm, "noaux_tc") == 0) c->topk_method = KEEL_TOPK_NOAUX_TC;
  else if (strcmp(tm, "greedy") == 0) c->topk_method = KEEL_TOPK_GREEDY;
  else if (strcmp(tm, "group_limited_greedy") == 0) c->topk_method = KEEL_TOPK_GROUP_LIMITED_GREEDY;
  else return keel_fail(KEEL_ERR_FORMAT, "%s: topk_method \"%s\" is not noaux_tc, greedy or group_limited_greedy", name, tm);
  const json_t *rs = json_object_get(j, "rope_scaling");
  if (!rs || json_is_null(rs)) rs = json_object_get(j, "rope_parameters");
  if (rs && !json_is_null(rs)) {
    if (!json_is_object(rs)) return keel_fail(KEEL_ERR_FORMAT, "%s: rope_scaling must be an object or null", name);
    const json_t *t = json_object_get(rs, "type");
    if (!t) t = json_object_get(rs, "rope_type");
    if (!json_is_string(t)) return keel_fail(KEEL_ERR_FORMAT, "%s: rope_scaling.type is missing", name);
    if (strcmp(json_string_value(t), "yarn") == 0) {
      c->yarn = 1;
      c->rope_factor = get_num(&r, rs, "factor", 1.0);
      c->beta_fast = get_num(&r, rs, "beta_fast", 32.0);
      c->beta_slow = get_num(&r, rs, "beta_slow", 1.0);
      c->mscale = get_num(&r, rs, "mscale", 1.0);
      c->mscale_all_dim = get_num(&r, rs, "mscale_all_dim", 0.0);
      c->original_max_position_embeddings = (int)get_num(&r, rs, "original_max_position_embeddings", 4096);
      if (r.st) return r.st;
      if (!(c->rope_factor >= 1.0) || c->original_max_position_embeddings < 1)
        return keel_fail(KEEL_ERR_FORMAT, "%s: rope_scaling.factor must be >= 1", name);
    } else if (strcmp(json_string_value(t), "default") != 0) {
      return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: rope_scaling.type \"%s\" is not supported (yarn or null)", name,
                       json_string_value(t));
    }
  }
  /* consistency */
  if (c->qk_rope_head_dim % 2) return keel_fail(KEEL_ERR_FORMAT, "%s: qk_rope_head_dim must be even", name);
  if (moe) {
    if (c->num_experts_per_tok > c->n_routed_experts)
      return keel_fail(KEEL_ERR_FORMAT, "%s: num_experts_per_tok (%d) exceeds n_routed_experts (%d)", name,
                       c->num_experts_per_tok, c->n_routed_experts);
    if (c->n_routed_experts % c->n_group)
      return keel_fail(KEEL_ERR_FORMAT, "%s: n_routed_experts (%d) is not a multiple of n_group (%d)", name,
                       c->n_routed_experts, c->n_group);
    if (c->topk_group > c->n_group)
      return keel_fail(KEEL_ERR_FORMAT, "%s: topk_group (%d) exceeds n_group (%d)", name, c->topk_group, c->n_group);
    if (c->topk_group * (c->n_routed_experts / c->n_group) < c->num_experts_per_tok)
      return keel_fail(KEEL_ERR_FORMAT, "%s: topk_group groups hold fewer experts than num_experts_per_tok", name);
    if (c->topk_method == KEEL_TOPK_NOAUX_TC && c->n_group > 1 && c->n_routed_experts / c->n_group < 2)
      return keel_fail(KEEL_ERR_FORMAT, "%s: noaux_tc needs at least 2 experts per group", name);
  }
  int any_dense = !moe || c->first_k_dense_replace > 0 || c->moe_layer_freq > 1;
  if (any_dense && c->intermediate_size <= 0)
    return keel_fail(KEEL_ERR_FORMAT, "%s: field intermediate_size is missing (dense layers need it)", name);
  if (c->tie_word_embeddings)
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: tie_word_embeddings true is not supported", name);
  if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
    return keel_fail(KEEL_ERR_FORMAT, "%s: bos/eos_token_id outside vocab_size", name);
  return KEEL_OK;
}

keel_status keel_config_load(keel_config *c, const char *path) {
  json_t *j;
  keel_status st = keel_json_load_file(&j, path);
  if (st) return st;
  st = keel_config_parse(c, j, path);
  json_decref(j);
  return st;
}

int keel_config_is_moe_layer(const keel_config *c, int layer) {
  return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace && layer % c->moe_layer_freq == 0;
}

static double yarn_m(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0; }

float keel_config_softmax_scale(const keel_config *c) {
  double scale = 1.0 / sqrt((double)keel_config_dq(c));
  if (c->yarn && c->rope_factor > 1 && c->mscale_all_dim > 0) {
    double m = yarn_m(c->rope_factor, c->mscale_all_dim);
    scale *= m * m;
  }
  return (float)scale;
}

void keel_config_rope_freqs(const keel_config *c, double *freqs) {
  int dr = c->qk_rope_head_dim;
  for (int j = 0; j < dr / 2; j++) freqs[j] = pow(c->rope_theta, -2.0 * j / dr);
  if (!c->yarn || c->rope_factor <= 1) return;
  const double pi = 3.14159265358979323846;
  double L0 = c->original_max_position_embeddings, base = c->rope_theta;
#define CORR(r) ((double)dr * log(L0 / (2 * pi * (r))) / (2 * log(base)))
  double low = floor(CORR(c->beta_fast)), high = ceil(CORR(c->beta_slow));
#undef CORR
  if (low < 0) low = 0;
  if (high > dr - 1) high = dr - 1;
  if (low == high) high += 0.001;
  for (int j = 0; j < dr / 2; j++) {
    double ramp = (j - low) / (high - low);
    ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
    freqs[j] = freqs[j] * (1 - ramp) + freqs[j] / c->rope_factor * ramp;
  }
}

json_t *keel_config_to_json(const keel_config *c) {
  static const char *const sf[] = {"sigmoid", "softmax"};
  static const char *const tm[] = {"noaux_tc", "greedy", "group_limited_greedy"};
  json_t *j = json_pack(
      "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:s, s:b,"
      " s:i, s:i, s:i, s:i, s:f, s:f, s:i, s:i, s:i, s:i, s:f, s:b, s:s, s:b, s:f, s:s}",
      "architectures", "DeepseekV3ForCausalLM", "model_type", "deepseek_v3", "vocab_size", c->vocab_size,
      "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size, "moe_intermediate_size",
      c->moe_intermediate_size, "num_hidden_layers", c->num_hidden_layers, "num_attention_heads",
      c->num_attention_heads, "num_key_value_heads", c->num_attention_heads, "n_shared_experts", c->n_shared_experts,
      "n_routed_experts", c->n_routed_experts, "num_experts_per_tok", c->num_experts_per_tok, "n_group", c->n_group,
      "topk_group", c->topk_group, "first_k_dense_replace", c->first_k_dense_replace, "routed_scaling_factor",
      (double)c->routed_scaling_factor, "scoring_func", sf[c->scoring_func], "topk_method", tm[c->topk_method],
      "norm_topk_prob", c->norm_topk_prob, "kv_lora_rank", c->kv_lora_rank, "qk_nope_head_dim", c->qk_nope_head_dim,
      "qk_rope_head_dim", c->qk_rope_head_dim, "v_head_dim", c->v_head_dim, "rms_norm_eps", (double)c->rms_norm_eps,
      "rope_theta", c->rope_theta, "max_position_embeddings", c->max_position_embeddings, "num_nextn_predict_layers",
      c->num_nextn_predict_layers, "bos_token_id", c->bos_token_id, "eos_token_id", c->eos_token_id,
      "aux_loss_alpha", (double)c->aux_loss_alpha, "tie_word_embeddings", 0, "hidden_act", "silu",
      "attention_bias", 0, "initializer_range", 0.006, "torch_dtype", "float32");
  json_object_set_new(j, "moe_layer_freq", json_integer(c->moe_layer_freq));
  json_object_set_new(j, "q_lora_rank", c->q_lora_rank ? json_integer(c->q_lora_rank) : json_null());
  if (c->yarn)
    json_object_set_new(j, "rope_scaling",
                        json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:i}", "type", "yarn", "factor", c->rope_factor,
                                  "beta_fast", c->beta_fast, "beta_slow", c->beta_slow, "mscale", c->mscale,
                                  "mscale_all_dim", c->mscale_all_dim, "original_max_position_embeddings",
                                  c->original_max_position_embeddings));
  else
    json_object_set_new(j, "rope_scaling", json_null());
  return j;
}
