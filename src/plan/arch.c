/* HF config.json -> keel_arch, and each layer as GEMMs, for keel plan. Field names follow
 * transformers: DeepSeek-V2/V3 (kv_lora_rank, n_routed_experts, ...), Llama/Mistral
 * (num_key_value_heads, head_dim), GPT-2 (n_embd, n_layer, n_head, n_inner). */
#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../io/json.h"

/* The first of several spellings that is present: an integer >= 0, or null/absent (-> dflt). */
static keel_status int_field(json_t *o, const char *name, int *out, int dflt, const char *const *keys) {
  for (int i = 0; keys[i]; i++) {
    json_t *v = json_object_get(o, keys[i]);
    if (!v || json_is_null(v)) continue;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 100000000) {
      *out = (int)json_integer_value(v);
      return KEEL_OK;
    }
    if (json_is_boolean(v)) {
      *out = json_is_true(v);
      return KEEL_OK;
    }
    return keel_fail(KEEL_ERR_FORMAT, "%s: field '%s' must be a non-negative integer", name, keys[i]);
  }
  *out = dflt;
  return KEEL_OK;
}

#define FIELD(out, dflt, ...)                                                              \
  do {                                                                                     \
    static const char *const keys_[] = {__VA_ARGS__, NULL};                                \
    if ((st = int_field(o, name, &(out), (dflt), keys_)) != KEEL_OK) goto done;            \
  } while (0)

keel_status keel_arch_parse(keel_arch *a, const char *text, const char *name) {
  memset(a, 0, sizeof *a);
  json_t *o = NULL;
  keel_status st = keel_json_load_buf(&o, text, strlen(text), name);
  if (st != KEEL_OK) return st;
  if (!json_is_object(o)) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: a config.json must be a JSON object", name);
    goto done;
  }
  const char *type = json_string_value(json_object_get(o, "model_type"));
  FIELD(a->d, 0, "hidden_size", "n_embd", "d_model");
  FIELD(a->layers, 0, "num_hidden_layers", "n_layer", "num_layers");
  FIELD(a->heads, 0, "num_attention_heads", "n_head");
  FIELD(a->vocab, 0, "vocab_size");
  FIELD(a->kv_heads, a->heads, "num_key_value_heads", "n_head_kv");
  FIELD(a->kv_lora, 0, "kv_lora_rank");
  a->mla = a->kv_lora > 0;
  int gpt = !a->mla && (json_object_get(o, "n_embd") || (type && strstr(type, "gpt")));
  snprintf(a->family, sizeof a->family, "%s", a->mla ? "deepseek" : gpt ? "gpt" : "llama");
  FIELD(a->ffn, gpt ? 4 * a->d : 0, "intermediate_size", "n_inner", "ffn_hidden_size");
  FIELD(a->head_dim, a->heads ? a->d / a->heads : 0, "head_dim");
  FIELD(a->tied, gpt, "tie_word_embeddings");
  a->gated = !gpt;
  FIELD(a->q_lora, 0, "q_lora_rank");
  FIELD(a->dn, 0, "qk_nope_head_dim");
  FIELD(a->dr, 0, "qk_rope_head_dim");
  FIELD(a->dv, 0, "v_head_dim");
  FIELD(a->experts, 0, "n_routed_experts", "num_local_experts", "num_experts");
  FIELD(a->topk, 0, "num_experts_per_tok");
  FIELD(a->shared, 0, "n_shared_experts");
  FIELD(a->moe_ffn, a->ffn, "moe_intermediate_size");
  FIELD(a->first_dense, 0, "first_k_dense_replace");
  FIELD(a->moe_freq, 1, "moe_layer_freq");
  FIELD(a->n_group, 1, "n_group");
  FIELD(a->topk_group, a->n_group, "topk_group");
  FIELD(a->mtp, 0, "num_nextn_predict_layers");
  const char *missing = !a->d ? "hidden_size" : !a->layers ? "num_hidden_layers" : !a->heads ? "num_attention_heads"
                        : !a->vocab ? "vocab_size" : !a->ffn && !a->experts ? "intermediate_size" : NULL;
  if (missing) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: field '%s' is missing or 0", name, missing);
    goto done;
  }
  if (a->mla && ((!a->dn && !a->dr) || !a->dv)) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: an MLA model (kv_lora_rank) needs qk_nope_head_dim, qk_rope_head_dim and v_head_dim", name);
    goto done;
  }
  if (a->experts && (!a->topk || a->topk > a->experts || !a->moe_ffn)) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: a MoE model needs 0 < num_experts_per_tok <= n_routed_experts and moe_intermediate_size", name);
    goto done;
  }
  if (!a->mla && (!a->kv_heads || a->heads % a->kv_heads)) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: num_key_value_heads (%d) must divide num_attention_heads (%d)", name,
                   a->kv_heads, a->heads);
    goto done;
  }
  if (!a->moe_freq) a->moe_freq = 1;
  if (a->experts && !a->ffn) a->ffn = a->moe_ffn;
done:
  json_decref(o);
  return st;
}

keel_status keel_arch_load(keel_arch *a, const char *path) {
  json_t *o = NULL;
  keel_status st = keel_json_load_file(&o, path);
  if (st != KEEL_OK) return st;
  char *text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (!text) return keel_fail(KEEL_ERR_NOMEM, "%s: out of memory", path);
  st = keel_arch_parse(a, text, path);
  free(text);
  return st;
}

int keel_arch_is_moe_layer(const keel_arch *a, int layer) {
  return a->experts > 0 && layer >= a->first_dense && layer % a->moe_freq == 0;
}

static int add(keel_pgemm *g, int n, const char *name, double out, double in, double rows, int expert, int tp) {
  g[n] = (keel_pgemm){name, out, in, rows, expert, tp};
  return n + 1;
}

int keel_arch_layer_gemms(const keel_arch *a, int moe, keel_pgemm *g) {
  int n = 0, d = a->d, H = a->heads;
  if (a->mla) {
    int dq = a->dn + a->dr;
    if (a->q_lora) {
      n = add(g, n, "q_a", a->q_lora, d, 1, 0, 0);
      n = add(g, n, "q_b", (double)H * dq, a->q_lora, 1, 0, 1);
    } else {
      n = add(g, n, "q", (double)H * dq, d, 1, 0, 1);
    }
    n = add(g, n, "kv_a", a->kv_lora + a->dr, d, 1, 0, 0);
    n = add(g, n, "kv_b", (double)H * (a->dn + a->dv), a->kv_lora, 1, 0, 1);
    n = add(g, n, "o", d, (double)H * a->dv, 1, 0, 1);
  } else {
    n = add(g, n, "qkv", (double)(H + 2 * a->kv_heads) * a->head_dim, d, 1, 0, 1);
    n = add(g, n, "o", d, (double)H * a->head_dim, 1, 0, 1);
  }
  int mats = a->gated ? 2 : 1; /* gate and up fused into one GEMM */
  if (!moe) {
    n = add(g, n, "ffn_up", (double)mats * a->ffn, d, 1, 0, 1);
    n = add(g, n, "ffn_down", d, a->ffn, 1, 0, 1);
    return n;
  }
  n = add(g, n, "router", a->experts, d, 1, 0, 0);
  n = add(g, n, "expert_up", (double)mats * a->moe_ffn, d, a->topk, 1, 0);
  n = add(g, n, "expert_down", d, a->moe_ffn, a->topk, 1, 0);
  if (a->shared) {
    n = add(g, n, "shared_up", (double)mats * a->shared * a->moe_ffn, d, 1, 0, 1);
    n = add(g, n, "shared_down", d, (double)a->shared * a->moe_ffn, 1, 0, 1);
  }
  return n;
}

double keel_arch_attn_flops(const keel_arch *a, double ctx) {
  double qk = a->mla ? a->dn + a->dr : a->head_dim, v = a->mla ? a->dv : a->head_dim;
  return 2.0 * a->heads * (qk + v) * ctx;
}

double keel_arch_layer_params(const keel_arch *a, int moe, int active_only) {
  keel_pgemm g[KEEL_PLAN_MAX_GEMMS];
  int n = keel_arch_layer_gemms(a, moe, g);
  double p = 2.0 * a->d; /* the two RMSNorm/LayerNorm weights */
  if (a->mla) p += a->kv_lora + a->q_lora;
  for (int i = 0; i < n; i++) p += g[i].n * g[i].k * (g[i].expert ? (active_only ? a->topk : a->experts) : 1);
  return p;
}

double keel_arch_mtp_params(const keel_arch *a, int active_only) {
  if (!a->mtp) return 0;
  /* each module: two norms, the 2d -> d projection and one block (MoE when the main model's
   * last layer is) */
  return a->mtp * (2.0 * a->d + 2.0 * a->d * a->d +
                   keel_arch_layer_params(a, keel_arch_is_moe_layer(a, a->layers), active_only));
}

double keel_arch_params(const keel_arch *a, int active_only, int with_mtp) {
  double p = (double)a->vocab * a->d * (a->tied ? 1 : 2) + a->d;
  for (int l = 0; l < a->layers; l++) p += keel_arch_layer_params(a, keel_arch_is_moe_layer(a, l), active_only);
  return p + (with_mtp ? keel_arch_mtp_params(a, active_only) : 0);
}

double keel_arch_kv_elems(const keel_arch *a) {
  return a->mla ? a->kv_lora + a->dr : 2.0 * a->kv_heads * a->head_dim;
}

double keel_arch_train_flops_per_token(const keel_arch *a, double seq) {
  /* 6 N over the weights a token goes through (the embedding lookup is not a GEMM; the
   * MTP modules run the head once more), plus 3x the forward attention core, causal */
  double n = keel_arch_params(a, 1, 1) - (double)a->vocab * a->d * (a->tied ? 0 : 1) + (double)a->mtp * a->vocab * a->d;
  return 6.0 * n + 3.0 * keel_arch_attn_flops(a, (seq + 1) / 2) * (a->layers + a->mtp);
}
