/* Parameters: one float allocation described by a table that gives every
 * tensor its HF name, shape and offset, and pointers into it per layer.
 * The same layout serves the gradients and the optimizer moments. */
#ifndef KEEL_MODEL_PARAMS_H
#define KEEL_MODEL_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct keel_layer_w {
  int moe;         /* routed experts (else a dense SwiGLU) */
  float *ln1;      /* (d) input_layernorm */
  float *wq_a;     /* (rq, d), NULL without q-LoRA */
  float *q_norm;   /* (rq) */
  float *wq_b;     /* (H*dq, rq) */
  float *wq;       /* (H*dq, d), only without q-LoRA */
  float *wkv_a;    /* (rkv+dr, d) */
  float *kv_norm;  /* (rkv) */
  float *wkv_b;    /* (H*(dn+dv), rkv) */
  float *wo;       /* (d, H*dv) */
  float *ln2;      /* (d) post_attention_layernorm */
  float *w_gate, *w_up, *w_down; /* dense: (I, d), (I, d), (d, I) */
  float *gate;     /* (E, d) router */
  float *e_gate, *e_up, *e_down; /* experts: (E, Ie, d), (E, Ie, d), (E, d, Ie) */
  float *s_gate, *s_up, *s_down; /* shared experts fused: (S*Ie, d), (S*Ie, d), (d, S*Ie); NULL if S = 0 */
  float *enorm, *hnorm; /* MTP only: (d), (d) */
  float *eh_proj;  /* MTP only: (d, 2d), embedding columns first */
  float *head_norm; /* MTP only: (d) shared_head.norm */
} keel_layer_w;

typedef struct keel_model_w {
  float *embed;          /* (V, d) */
  keel_layer_w *layers;  /* (L + D): main layers, then the MTP modules */
  float *norm;           /* (d) */
  float *head;           /* (V, d) */
} keel_model_w;

typedef struct keel_param_info {
  char name[96]; /* HF tensor name */
  int ndim;
  int64_t shape[3];
  size_t offset, numel;
  int decay;     /* weight decay applies (matrices), not to norms */
  int is_norm;   /* initialised to 1 */
} keel_param_info;

typedef struct keel_param_table {
  keel_param_info *t;
  int n;
  size_t total; /* floats */
} keel_param_table;

/* Builds the table for c. */
void keel_params_table(keel_param_table *tab, const keel_config *c);
void keel_params_table_free(keel_param_table *tab);
/* Points w into base (params, grads, ... laid out by the table). */
void keel_params_bind(keel_model_w *w, const keel_config *c, float *base);
void keel_params_unbind(keel_model_w *w);
/* std-normal init scaled by std (keyed by seed), norms to 1. */
void keel_params_init(float *base, const keel_param_table *tab, uint64_t seed, float std);
/* Parameters in all, and used per token (top-K of the routed experts, MTP excluded). */
void keel_params_count(const keel_config *c, const keel_param_table *tab, size_t *total, size_t *active);
/* Parameters MTP module k (1..num_nextn_predict_layers) uses per token, the shared head excluded. */
size_t keel_params_mtp_active(const keel_config *c, const keel_param_table *tab, int k);
/* Model FLOPs per trained token at sequence length T (what MFU counts): 6 per weight a token
 * goes through (the embedding lookup is not a GEMM) plus 3x the causal attention core's
 * forward. MTP module k runs on T-k of every T tokens: its own block and projection, then the
 * shared head once more. */
double keel_params_train_flops(const keel_config *c, const keel_param_table *tab, int T);

#endif
