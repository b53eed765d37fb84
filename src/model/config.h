/* Model configuration: the fields of an HF DeepSeek-V3/V2 config.json, checked,
 * with the derived sizes the layers use.
 *
 * Dimension letters used across model/: N tokens in a batch (B*T), d model
 * width, H heads, dn/dr/dq/dv head dims (nope, rope, q/k = dn+dr, value),
 * rq q-LoRA rank (0: none), rkv KV latent rank, I dense FFN width, E routed
 * experts, K experts per token, Ie expert width, S shared experts, V vocab. */
#ifndef KEEL_MODEL_CONFIG_H
#define KEEL_MODEL_CONFIG_H

#include <jansson.h>

#include "../core/error.h"

typedef enum keel_score_func { KEEL_SCORE_SIGMOID, KEEL_SCORE_SOFTMAX } keel_score_func;
typedef enum keel_topk_method { KEEL_TOPK_NOAUX_TC, KEEL_TOPK_GREEDY, KEEL_TOPK_GROUP_LIMITED_GREEDY } keel_topk_method;

typedef struct keel_config {
  int vocab_size;          /* V */
  int hidden_size;         /* d */
  int intermediate_size;   /* I */
  int moe_intermediate_size; /* Ie */
  int num_hidden_layers;   /* L */
  int num_attention_heads; /* H */
  int n_shared_experts;    /* S, 0 for none */
  int n_routed_experts;    /* E, 0 for a dense model */
  int num_experts_per_tok; /* K */
  int n_group, topk_group; /* G, TG */
  int first_k_dense_replace;
  int moe_layer_freq;
  float routed_scaling_factor;
  keel_score_func scoring_func;
  keel_topk_method topk_method;
  int norm_topk_prob;
  int q_lora_rank;         /* rq, 0 for none */
  int kv_lora_rank;        /* rkv */
  int qk_nope_head_dim;    /* dn */
  int qk_rope_head_dim;    /* dr */
  int v_head_dim;          /* dv */
  float rms_norm_eps;
  double rope_theta;
  int yarn;                /* rope_scaling type yarn present */
  double rope_factor, beta_fast, beta_slow, mscale, mscale_all_dim;
  int original_max_position_embeddings;
  int max_position_embeddings;
  int num_nextn_predict_layers; /* D */
  int bos_token_id, eos_token_id;
  float aux_loss_alpha;
  int tie_word_embeddings;
} keel_config;

/* Parses and validates; name is used in messages ("config.json: field: ..."). */
keel_status keel_config_parse(keel_config *c, const json_t *j, const char *name);
keel_status keel_config_load(keel_config *c, const char *path);
/* The HF config.json object for c (DeepseekV3ForCausalLM). */
json_t *keel_config_to_json(const keel_config *c);

int keel_config_is_moe_layer(const keel_config *c, int layer);
static inline int keel_config_dq(const keel_config *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
/* dq^-1/2 times the YaRN mscale squared (spec 6.3). */
float keel_config_softmax_scale(const keel_config *c);
/* The dr/2 rotary frequencies (with YaRN when configured). */
void keel_config_rope_freqs(const keel_config *c, double *freqs);

#endif
