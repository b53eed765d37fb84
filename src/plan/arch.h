/* The model side of keel plan: an HF config.json (DeepSeek-V2/V3 with MLA, MoE and MTP,
 * Llama-style dense with grouped-query attention, GPT-2-style dense) read into the sizes the
 * cost model needs, and each layer as a list of GEMMs.
 *
 * Letters: d model width, H heads, Hkv key/value heads, hd head dim, I dense FFN width,
 * E routed experts, K experts per token, S shared experts, Ie expert FFN width, V vocab. */
#ifndef KEEL_PLAN_ARCH_H
#define KEEL_PLAN_ARCH_H

#include "../core/error.h"

typedef struct keel_arch {
  char family[32];       /* "deepseek" (MLA), "llama" (GQA, gated FFN), "gpt" (MHA, GELU MLP) */
  int layers, d, vocab, heads, kv_heads, head_dim;
  int ffn;               /* I */
  int gated;             /* SwiGLU (gate, up, down) vs two-matrix MLP */
  int tied;              /* lm_head shares the embedding */
  int mla, q_lora, kv_lora, dn, dr, dv; /* MLA sizes (mla = 0 for GQA/MHA) */
  int experts, topk, shared, moe_ffn; /* E, K, S, Ie (experts = 0: dense) */
  int first_dense, moe_freq, n_group, topk_group;
  int mtp;               /* multi-token prediction modules */
} keel_arch;

/* One GEMM of a layer: out = in (rows x k) . W^T (k -> n). `rows` is rows per token of the
 * layer's input: 1 for most, K for the routed experts together. */
typedef struct keel_pgemm {
  const char *name;
  double n, k, rows;
  int expert;            /* 1: one of E routed experts (sharded by expert parallelism) */
  int tp_split;          /* 1: split across tensor-parallel ranks (Megatron column/row) */
} keel_pgemm;

enum { KEEL_PLAN_MAX_GEMMS = 16 };

/* Reads a config.json object's text; errors name `name` and the field. */
keel_status keel_arch_parse(keel_arch *a, const char *json_text, const char *name);
keel_status keel_arch_load(keel_arch *a, const char *path);

int keel_arch_is_moe_layer(const keel_arch *a, int layer);
/* The GEMMs of one main layer (attention + FFN or MoE); returns the count. */
int keel_arch_layer_gemms(const keel_arch *a, int moe, keel_pgemm *g);
/* Attention-core FLOPs per token per layer forward (QK^T and PV) at mean context `ctx`. */
double keel_arch_attn_flops(const keel_arch *a, double ctx);
/* Parameters: weights of one layer (all experts or the active ones), the embedding and head,
 * one MTP module's own weights (its block and projection; the head is shared). */
double keel_arch_layer_params(const keel_arch *a, int moe, int active_only);
double keel_arch_params(const keel_arch *a, int active_only, int with_mtp);
double keel_arch_mtp_params(const keel_arch *a, int active_only);
/* Elements of the per-token KV cache of one layer: MLA's latent + rope key, or 2 Hkv hd. */
double keel_arch_kv_elems(const keel_arch *a);
/* 6 N_active plus attention: training FLOPs per token (the MFU numerator), at context ctx. */
double keel_arch_train_flops_per_token(const keel_arch *a, double seq);

#endif
