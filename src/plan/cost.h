/* The cost model of keel plan: one training step (or a serving step) of a model on a cluster
 * under a parallel layout, from per-layer GEMMs, memory-bound bytes and collective volumes;
 * memory per chip; and, with the failure model, wall-clock, chip-hours, energy and goodput.
 *
 * Layouts follow Megatron: chips = tp * pp * dp * cp; expert parallelism shards the routed
 * experts inside the data-parallel group, so ep divides dp. Ranks are placed tp innermost,
 * then cp, then dp (whose ep-sized slices form the expert groups), then pp. */
#ifndef KEEL_PLAN_COST_H
#define KEEL_PLAN_COST_H

#include "arch.h"
#include "cluster.h"

typedef enum keel_recompute { KEEL_RECOMPUTE_NONE, KEEL_RECOMPUTE_SELECTIVE, KEEL_RECOMPUTE_FULL, KEEL_RECOMPUTE_AUTO } keel_recompute;
typedef enum keel_schedule { KEEL_SCHEDULE_1F1B, KEEL_SCHEDULE_INTERLEAVED, KEEL_SCHEDULE_DUALPIPE } keel_schedule;

typedef struct keel_layout {
  int tp, pp, dp, ep, cp, micro; /* micro: sequences per micro-batch */
} keel_layout;

typedef struct keel_plan_opts {
  int serve;
  double chips, seq, global_batch, tokens; /* global_batch in sequences, tokens to train on */
  keel_prec prec;
  int zero;                    /* 0..3 */
  keel_recompute recompute;
  keel_schedule schedule;
  int vpp;                     /* interleaved 1F1B: model chunks per pipeline rank */
  int bf16_moments;            /* AdamW moments in bf16 (DeepSeek-V3, keel train --bf16-moments) */
  double moe_imbalance;        /* busiest expert rank's load over the mean (1 = balanced) */
  double tpot;                 /* serve: target time per output token, seconds */
} keel_plan_opts;

typedef struct keel_plan {
  keel_layout lay;
  keel_recompute recompute;
  double micro_batches;        /* per data-parallel rank per step */
  /* training step, seconds */
  double step_s, compute_s, comm_exposed_s, bubble_s, dp_exposed_s, optimizer_s;
  double tp_s, ep_s, pp_s, dp_s; /* each collective's whole time per step, hidden or not */
  double tokens_per_s, flops_per_token, mfu;
  /* memory per chip, bytes */
  double mem_weights, mem_grads, mem_opt, mem_act, mem_kv, mem_reserve, mem_total;
  int fits;
  /* failures */
  double state_bytes, ckpt_s, mtbf_s, ckpt_interval_s, goodput;
  double wall_s, chip_hours, energy_mwh;
  /* serving */
  double prefill_tps_chip, decode_tps_chip, decode_batch, decode_step_s, kv_tokens_chip;
} keel_plan;

/* Formulas, exposed for the tests. */
double keel_plan_gemm_time(const keel_cluster *c, keel_prec p, double m, double n, double k, double in_bytes,
                           double w_bytes);
double keel_plan_allreduce_time(double bytes, double n, double bw, double lat);
double keel_plan_allgather_time(double bytes, double n, double bw, double lat); /* also reduce-scatter */
double keel_plan_bubble(keel_schedule s, double pp, double vpp, double fwd, double bwd);
/* Per chip: bytes of weights, gradients and optimizer state for `params` parameters of which
 * the ZeRO stage shards over `dp` ranks. */
void keel_plan_zero_bytes(double params, double dp, int zero, keel_prec p, int bf16_moments, double *w,
                          double *g, double *o);

/* Why a layout is illegal for this model, cluster and run (KEEL_ERR_ARG with the reason). */
keel_status keel_plan_check(const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o, const keel_layout *l);
keel_status keel_plan_eval(keel_plan *p, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                           const keel_layout *l);
/* Searches the legal layouts that agree with the fields of `fixed` that are > 0 and keeps the
 * best `max` (fitting ones first, then by tokens/s); returns how many, or -1 with a message
 * when none is legal. */
int keel_plan_search(keel_plan *best, int max, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                     const keel_layout *fixed);

#endif
