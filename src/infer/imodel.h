/* The model for inference: the main layers only (MTP modules are dropped),
 * every matrix a typed weight (f32, bf16, int8 or fp8) read by the backend's
 * matmul_w. Loaded from a model dir without a float copy when the stored
 * types are used as they are (the safetensors files stay mapped), converted
 * on load when another type is asked for, or viewed from a training model. */
#ifndef KEEL_INFER_IMODEL_H
#define KEEL_INFER_IMODEL_H

#include "../model/model.h"

typedef struct keel_ilayer {
  int moe;
  const float *ln1, *q_norm, *kv_norm, *ln2;
  const keel_wmat *wq_a, *wq_b, *wq, *wkv_a, *wo; /* wq_a/wq_b with q-LoRA, else wq */
  const keel_wmat *wkv_b; /* kv_b_proj (H (dn + dv), rkv): each head's W_UK rows, then its W_UV rows */
  keel_wmat *uk, *uv; /* (H) views of kv_b_proj's rows per head: W_UK (dn, rkv), W_UV (dv, rkv) */
  const keel_wmat *w_gate, *w_up, *w_down;       /* dense */
  const keel_wmat *gate;                         /* router (E, d) */
  const keel_wmat *e_gate, *e_up, *e_down;       /* (E) each */
  const keel_wmat *s_gate, *s_up, *s_down;       /* shared experts, NULL if none */
} keel_ilayer;

typedef struct keel_imodel {
  keel_config c;
  const keel_backend *be;
  keel_wtype wtype;        /* the type of the large matrices */
  keel_param_table tab;    /* names and shapes */
  keel_wmat *wm;           /* (tab.n) every tensor the main model uses (others: data NULL) */
  keel_ilayer *layers;     /* (L) */
  const keel_wmat *embed, *head;
  const float *norm;
  float *bias;             /* (L, E) balancing biases */
  float softmax_scale;
  size_t weight_bytes;     /* bytes of all weights held */
  void **owned;            /* allocations to free */
  int n_owned;
  void *shards;            /* mapped files the weights point into */
} keel_imodel;

/* Loads DIR; type -1 keeps each tensor's stored type where matmul_w reads it
 * (F32, BF16, I8 + NAME_scale, F8_E4M3 + NAME_scale_inv), else converts to type. */
keel_status keel_imodel_load(keel_imodel *im, const char *dir, int type, const keel_backend *be);
/* The main model of m, as views (KEEL_W_F32) or quantised copies. */
void keel_imodel_from_model(keel_imodel *im, const keel_model *m, keel_wtype type);
void keel_imodel_free(keel_imodel *im);
/* Writes DIR/config.json and DIR/model.safetensors with the typed weights
 * (the embedding as BF16 under int8/fp8; int8 scales as NAME_scale [M, 1],
 * fp8 as NAME_scale_inv [ceil(M/128), ceil(K/128)], DeepSeek's layout). */
keel_status keel_imodel_save(const keel_imodel *im, const char *dir);
/* The type each tensor is held in when the large matrices are of type t. */
keel_wtype keel_imodel_tensor_type(const keel_param_info *p, keel_wtype t);

#endif
