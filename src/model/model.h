/* A DeepSeek-V3-style model for training and full-sequence evaluation:
 * parameters and gradients, the activations kept for backward, and the
 * forward/backward passes (main model, MTP modules, losses). */
#ifndef KEEL_MODEL_MODEL_H
#define KEEL_MODEL_MODEL_H

#include <stdint.h>

#include "../backend/backend.h"
#include "config.h"
#include "params.h"

/* Activations of one decoder block for a batch of B sequences of T tokens (N = B*T). */
typedef struct keel_layer_acts {
  float *x;                 /* (N, d) block input (aliases the previous block's out) */
  float *ln1, *ln1_rstd;    /* (N, d), (N) */
  float *qa, *qn, *qn_rstd; /* (N, rq), (N, rq), (N): q-LoRA only */
  float *q;                 /* (N, H*dq) after RoPE */
  float *lat, *ckv, *ckv_rstd; /* (N, rkv) raw latent, normalised latent, (N) */
  float *kpe;               /* (N, dr) after RoPE */
  float *kvb;               /* (N, H*(dn+dv)) k_nope and v */
  float *att;               /* (B, H, T, T) attention probabilities */
  float *o;                 /* (N, H*dv) */
  float *x2;                /* (N, d) after the attention residual */
  float *ln2, *ln2_rstd;    /* (N, d), (N) */
  float *fg, *fu, *fh;      /* (N, I) dense SwiGLU */
  float *logits, *scores;   /* (N, E) router */
  int *sel;                 /* (N, K) chosen experts */
  float *gw;                /* (N, K) their weights */
  int *order, *slot;        /* (N*K) sorted row -> assignment n*K+k, and back */
  int *offs;                /* (E+1) first sorted row of each expert */
  float *ein;               /* (N*K, d) gathered expert inputs */
  float *eg, *eu, *eh;      /* (N*K, Ie) */
  float *eo;                /* (N*K, d) expert outputs */
  float *sg, *su, *sh;      /* (N, S*Ie) shared experts */
  float *fbal;              /* (B, E) balance-loss f_i per sequence */
  float *out;               /* (N, d) */
  /* MTP modules */
  float *emb, *en, *en_rstd, *hp, *hn, *hn_rstd, *cat; /* (N,d) (N,d) (N) (N,d) (N,d) (N) (N,2d) */
  float *z, *z_rstd, *dz;   /* (N, d) shared_head.norm output (rows of m->z), (N), its gradient (rows of m->dz) */
} keel_layer_acts;

/* The parts of a training step that keel_model times (forward and backward together). */
enum keel_phase { KEEL_PHASE_ATTENTION, KEEL_PHASE_FFN, KEEL_PHASE_HEAD, KEEL_PHASES };

typedef struct keel_model {
  keel_config c;
  keel_param_table tab;
  float *params, *grads;    /* (tab.total) each */
  keel_model_w w, g;
  float *bias;              /* (L+D, E) balancing bias, not trained by gradients */
  const keel_backend *be;
  float softmax_scale;
  float *rope_cos, *rope_sin; /* (rope_len, dr/2) */
  int rope_len;
  /* training knobs */
  float mtp_lambda, balance_alpha;
  int recompute;            /* set before keel_model_reserve: keep only each main block's output and
                             * recompute the block in backward (activation memory of one block) */
  int acts_shared;          /* main blocks share one set of activation buffers (recompute) */
  /* activations, allocated for B x T */
  int B, T;
  keel_layer_acts *acts;    /* (L+D) */
  float *h0;                /* (N, d) embeddings */
  float *z, *z_rstd, *dz;   /* (NH, d) the head's input: final norm output, then each MTP depth's; (N); gradient */
  float *logits, *losses;   /* (NH, V), (NH): NH = N + the MTP depths' rows */
  int *pos;                 /* (N) position of each row in its sequence */
  int32_t *tgt;             /* (NH) the head's targets */
  float *ws;                /* backward workspace */
  size_t ws_size;
  /* results of the last forward */
  double loss, lm_loss, mtp_loss, bal_loss;
  double phase_s[KEEL_PHASES]; /* wall seconds per part, added up until the caller zeroes them */
  float *load;              /* (L+D, E) expert assignments counted since keel_model_zero_load */
} keel_model;

/* Allocates parameters (uninitialised), gradients and RoPE tables. */
keel_status keel_model_init(keel_model *m, const keel_config *c, const keel_backend *be);
void keel_model_free(keel_model *m);
/* (Re)allocates activations for batches of B sequences of T tokens. */
keel_status keel_model_reserve(keel_model *m, int B, int T);
/* Makes the RoPE cos/sin tables cover positions 0..len-1. */
void keel_model_rope_tables(keel_model *m, int len);
void keel_model_zero_grad(keel_model *m);
/* p[0..n) = 0 on all threads (one thread cannot fill memory's bandwidth, and the others would wait). */
void keel_model_zero(float *p, size_t n);
/* dst = src, n floats, on all threads. */
void keel_model_copy(float *dst, const float *src, size_t n);
void keel_model_zero_load(keel_model *m);

/* Forward over tokens (B, T). With targets (B, T) computes the loss (main +
 * MTP + balance) and, when grads is set, the head gradients; call
 * keel_model_backward afterwards for the rest. Without targets only logits
 * of the main head are left in m->logits. */
void keel_model_forward(keel_model *m, const int32_t *tokens, const int32_t *targets, int B, int T, int grads);
void keel_model_backward(keel_model *m, const int32_t *tokens, int B, int T);
/* b_i += gamma * sign(mean load - load_i) for every MoE layer, from m->load. */
void keel_model_update_bias(keel_model *m, float gamma);

/* Router of an MoE layer (block.c): scores from logits (N, E), (group-limited)
 * top-K with the layer's balancing bias (noaux_tc), gate weights (N, K). */
void keel_moe_route(const keel_config *c, const float *layer_bias, const float *logits, float *scores, int *sel,
                    float *gw, int N);
/* RoPE cos/sin tables (len, dr/2) for c, newly allocated. */
void keel_rope_tables(const keel_config *c, int len, float **cos_t, float **sin_t);

/* The train argument of the block forward: 0 inference, 1 training (counts expert load and adds the
 * balance loss), KEEL_RECOMPUTE the same activations again without those side effects. */
enum { KEEL_RECOMPUTE = 2 };

/* Decoder block pieces (block.c), shared with inference. */
void keel_block_forward(keel_model *m, int layer, keel_layer_acts *A, const float *x, int B, int T, int train);
/* The feed-forward half alone: reads A->ln2, writes A->out (no residual). */
void keel_ffn_forward(keel_model *m, int layer, keel_layer_acts *A, int B, int T, int train);
/* dx (N, d) = the gradient of the block's input, given dout of its output (written, not added). */
void keel_block_backward(keel_model *m, int layer, keel_layer_acts *A, const float *dout, float *dx, int B, int T);

#endif
