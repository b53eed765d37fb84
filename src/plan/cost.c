/* keel plan's cost model for training: per micro-batch and pipeline stage, the time of every
 * GEMM (roofline of its shape), the attention core, the memory-bound kernels and the
 * collectives; then the step under the pipeline schedule, memory per chip under ZeRO and
 * recomputation, and wall-clock under failures; then serving (prefill, and decode at a target
 * time per output token). */
#include "cost.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reliability.h"

static double shape(double x, double half) { return x / (x + half); }

static int is_8bit(keel_prec p) { return p == KEEL_PREC_FP8 || p == KEEL_PREC_INT8; }
/* Bytes of a stored element in precision p, and of an activation (16-bit unless training in fp32). */
static double elem_bytes(keel_prec p) { return p == KEEL_PREC_FP32 ? 4 : p == KEEL_PREC_BF16 ? 2 : 1; }
static double act_bytes(keel_prec p) { return p == KEEL_PREC_FP32 ? 4 : 2; }
/* KV-cache bytes per token and layer on one of tp ranks: the MLA latent is read by every rank,
 * GQA's kv heads are split */
static double kv_bytes(const keel_arch *a, double tp) {
  return keel_arch_kv_elems(a) * 2 / (a->mla ? 1 : fmin(tp, a->kv_heads));
}

double keel_plan_gemm_time(const keel_cluster *c, keel_prec p, double m, double n, double k, double in_bytes,
                           double w_bytes) {
  if (m <= 0 || n <= 0 || k <= 0) return 0;
  double peak = c->peak[p] > 0 ? c->peak[p] : c->peak[KEEL_PREC_BF16];
  double e0 = is_8bit(p) && c->gemm_eff8 > 0 ? c->gemm_eff8 : c->gemm_eff;
  double eff = e0 * shape(m, c->gemm_half) * shape(n, c->gemm_half) * shape(k, c->gemm_half);
  double t_flops = 2 * m * n * k / (peak * eff);
  double t_bytes = (m * k * in_bytes + n * k * w_bytes + m * n * 2) / (c->hbm_bw * c->mem_eff);
  return t_flops > t_bytes ? t_flops : t_bytes;
}

double keel_plan_allreduce_time(double bytes, double n, double bw, double lat) {
  return n <= 1 ? 0 : 2 * (n - 1) / n * bytes / bw + 2 * (n - 1) * lat;
}

double keel_plan_allgather_time(double bytes, double n, double bw, double lat) {
  return n <= 1 ? 0 : (n - 1) / n * bytes / bw + (n - 1) * lat;
}

double keel_plan_bubble(keel_schedule s, double pp, double vpp, double fwd, double bwd) {
  if (pp <= 1) return 0;
  /* 1F1B idles (pp - 1) forward+backward slots, interleaved 1F1B (Megatron) 1/vpp of that.
   * DualPipe (DeepSeek-V3 Table 2):
   * (pp/2 - 1)(F&B + B - 3W) with the overlapped chunk F&B = F + B and W = B / 2 */
  if (s == KEEL_SCHEDULE_DUALPIPE) return (pp / 2 - 1) * (fwd + 0.5 * bwd);
  return (pp - 1) * (fwd + bwd) / (s == KEEL_SCHEDULE_INTERLEAVED && vpp > 1 ? vpp : 1);
}

void keel_plan_zero_bytes(double params, double dp, int zero, keel_prec p, int bf16_moments, double *w, double *g,
                          double *o) {
  /* fp32 training (keel on CPU) keeps one fp32 copy; mixed precision keeps 16-bit weights and
   * gradients plus an fp32 master copy with the two AdamW moments (ZeRO paper: 2 + 2 + 12) */
  double wb = p == KEEL_PREC_FP32 ? 4 : 2, gb = wb, mb = bf16_moments ? 2 : 4;
  double ob = (p == KEEL_PREC_FP32 ? 0 : 4) + 2 * mb;
  double s = dp > 1 ? dp : 1;
  *w = params * wb / (zero >= 3 ? s : 1);
  *g = params * gb / (zero >= 2 ? s : 1);
  *o = params * ob / (zero >= 1 ? s : 1);
}

keel_status keel_plan_check(const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o, const keel_layout *l) {
  if (l->tp < 1 || l->pp < 1 || l->dp < 1 || l->ep < 1 || l->cp < 1 || l->micro < 1)
    return keel_fail(KEEL_ERR_ARG, "tp, pp, dp, ep, cp and the micro-batch must be >= 1");
  double n = (double)l->tp * l->pp * l->dp * l->cp;
  if (n != o->chips)
    return keel_fail(KEEL_ERR_ARG, "tp*pp*dp*cp = %d*%d*%d*%d = %.0f does not match the %.0f chips", l->tp, l->pp,
                     l->dp, l->cp, n, o->chips);
  if (l->dp % l->ep)
    return keel_fail(KEEL_ERR_ARG, "ep %d does not divide dp %d (experts are sharded inside the data-parallel group)",
                     l->ep, l->dp);
  if (l->ep > 1 && !a->experts) return keel_fail(KEEL_ERR_ARG, "ep %d > 1 but the model has no routed experts", l->ep);
  if (a->experts && a->experts % l->ep)
    return keel_fail(KEEL_ERR_ARG, "ep %d does not divide the %d routed experts", l->ep, a->experts);
  if (a->heads % l->tp) return keel_fail(KEEL_ERR_ARG, "tp %d does not divide the %d attention heads", l->tp, a->heads);
  if (l->pp > a->layers) return keel_fail(KEEL_ERR_ARG, "pp %d exceeds the %d layers", l->pp, a->layers);
  if ((long)o->seq % l->cp) return keel_fail(KEEL_ERR_ARG, "cp %d does not divide the sequence length %.0f", l->cp, o->seq);
  if (o->prec != KEEL_PREC_FP32 && !(c->peak[o->prec] > 0))
    return keel_fail(KEEL_ERR_ARG, "%s has no dense %s peak (cluster field %s)", c->chip, keel_prec_names[o->prec],
                     o->prec == KEEL_PREC_INT8 ? "int8_tops" : o->prec == KEEL_PREC_FP8 ? "fp8_tflops" : "bf16_tflops");
  if (o->prec == KEEL_PREC_FP32 && !(c->peak[KEEL_PREC_FP32] > 0))
    return keel_fail(KEEL_ERR_ARG, "%s has no fp32 peak (cluster field fp32_tflops)", c->chip);
  if (o->serve) {
    if (l->pp > 1) return keel_fail(KEEL_ERR_ARG, "serving with pipeline parallelism is not modelled: use pp 1");
    return KEEL_OK;
  }
  double per = (double)l->dp * l->micro;
  if (fmod(o->global_batch, per) != 0)
    return keel_fail(KEEL_ERR_ARG, "global batch %.0f is not a multiple of dp*micro-batch = %d*%d", o->global_batch,
                     l->dp, l->micro);
  if (o->schedule == KEEL_SCHEDULE_INTERLEAVED && (o->vpp < 1 || l->pp * o->vpp > a->layers))
    return keel_fail(KEEL_ERR_ARG, "interleaved: pp*vpp = %d*%d exceeds the %d layers", l->pp, o->vpp, a->layers);
  if (o->schedule == KEEL_SCHEDULE_DUALPIPE && l->pp % 2)
    return keel_fail(KEEL_ERR_ARG, "DualPipe needs an even pp (it has %d)", l->pp);
  return KEEL_OK;
}

/* Bandwidth and latency of a group of `span` consecutive chips: inside one scale-up domain or not. */
static void link(const keel_cluster *c, double span, double *bw, double *lat) {
  int up = span <= c->domain;
  *bw = up ? c->up_bw : c->out_bw;
  *lat = up ? c->up_lat : c->out_lat;
}

/* Time of the EP dispatch + combine of `tokens` tokens on one chip (one direction of a pass). */
static double ep_time(const keel_arch *a, const keel_cluster *c, const keel_layout *l, double tokens, double disp,
                      double comb) {
  if (l->ep <= 1) return 0;
  double stride = (double)l->tp * l->cp, per_dom = fmax(1, fmin(l->ep, floor(c->domain / stride)));
  double doms = ceil(l->ep / per_dom), bytes_tok = a->d * (disp + comb);
  double t_up = tokens * a->topk * bytes_tok * (per_dom - 1) / per_dom / fmax(c->up_bw, 1);
  if (doms <= 1) return t_up + 2 * c->up_lat;
  /* across domains a token goes once to each remote domain that holds one of its experts
   * (DeepEP-style forwarding), at most topk_group domains with group-limited routing */
  double hit = doms * (1 - pow(1 - 1 / doms, a->topk));
  if (a->n_group > 1 && a->topk_group < a->n_group) hit = fmin(hit, a->topk_group * fmax(1, doms / a->n_group));
  double t_out = tokens * hit * (doms - 1) / doms * bytes_tok / c->out_bw;
  return fmax(t_out, tokens * a->topk * bytes_tok / fmax(c->up_bw, 1)) + 2 * c->out_lat;
}

/* Elements a token's layer reads and writes in memory-bound kernels (norms, residual adds,
 * RoPE, activation, MoE permute/unpermute), forward. */
static double elementwise_elems(const keel_arch *a, int moe) {
  double attn = a->mla ? 2.0 * (a->q_lora + a->kv_lora) + 2.0 * a->heads * a->dr : 2.0 * a->heads * a->head_dim;
  double ffn = moe ? 3.0 * (a->topk + a->shared) * a->moe_ffn + 4.0 * a->topk * a->d : 3.0 * a->ffn;
  return 10.0 * a->d + attn + ffn;
}

/* Activation bytes kept per token and layer for backward under a recompute policy. `ab` is
 * the activation size; GEMM inputs after attention are kept in `gb` bytes (FP8 training caches
 * them in 8 bits, as DeepSeek-V3 does). Selective recomputes the norms, the attention
 * up-projections and the SwiGLU output. */
static double stored_bytes(const keel_arch *a, int moe, keel_recompute r, double ab, double gb) {
  if (r == KEEL_RECOMPUTE_FULL) return a->d * ab;
  double att, up; /* up: up-projection outputs */
  if (a->mla) {
    att = 2.0 * a->q_lora + a->kv_lora + a->dr + a->kv_lora + (double)a->heads * a->dv;
    up = (double)a->heads * (a->dn + a->dr) * 2 + (double)a->heads * (a->dn + a->dv);
  } else {
    att = (double)a->heads * a->head_dim;
    up = (double)(a->heads + 2 * a->kv_heads) * a->head_dim;
  }
  int sel = r == KEEL_RECOMPUTE_SELECTIVE, gm = a->gated ? 2 : 1;
  double w = moe ? (double)a->topk * a->moe_ffn : a->ffn, sw = moe ? (double)a->shared * a->moe_ffn : 0;
  double ffn_in = (moe ? a->topk * (double)a->d + a->d : a->d) + (gm + !sel) * (w + sw); /* inputs, SwiGLU in/out */
  double bytes = (2.0 * a->d + att) * ab + ffn_in * gb + (moe ? 4.0 * a->experts : 0);
  return bytes + (sel ? 0 : (2.0 * a->d + up) * ab);
}

typedef struct pass {
  double fwd, bwd;           /* compute, per micro-batch, whole model (all stages) */
  double recompute;          /* extra forward work in backward */
  double tp, ep_f, ep_b;     /* collectives per micro-batch, whole model */
  double act;                /* stored activation bytes per micro-batch, whole model */
} pass;

/* One layer (or MTP block) of a micro-batch of `t` tokens on one chip group. */
static void layer_cost(pass *ps, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                       const keel_layout *l, keel_recompute rc, int moe, double t) {
  keel_pgemm g[KEEL_PLAN_MAX_GEMMS];
  int ng = keel_arch_layer_gemms(a, moe, g);
  keel_prec p = o->prec;
  double ab = act_bytes(p), ib = fmin(elem_bytes(p), ab);
  double tp = l->tp, f = 0, b = 0, up_f = 0;
  for (int i = 0; i < ng; i++) {
    double m, n = g[i].n, k = g[i].k, count = 1, scale = 1;
    if (g[i].expert) { /* E/ep local experts, tokens split over tp by sequence parallelism */
      count = a->experts / (double)l->ep;
      m = t / tp * l->ep * a->topk / a->experts;
      scale = o->moe_imbalance > 0 ? o->moe_imbalance : 1;
    } else if (g[i].tp_split) {
      m = t, n /= tp;
    } else {
      m = t / tp;
    }
    double tf = count * scale * keel_plan_gemm_time(c, p, m, n, k, ib, ib);
    double tb = count * scale * (keel_plan_gemm_time(c, p, m, k, n, ib, ib) + keel_plan_gemm_time(c, p, n, k, m, ib, ib));
    f += tf, b += tb;
    if (!strcmp(g[i].name, "q_b") || !strcmp(g[i].name, "kv_b") || !strcmp(g[i].name, "qkv")) up_f += tf;
  }
  /* attention core in 16-bit (fp32 when that is all the chip does), causal */
  keel_prec ap = c->peak[KEEL_PREC_BF16] > 0 && p != KEEL_PREC_FP32 ? KEEL_PREC_BF16 : KEEL_PREC_FP32;
  double attn = keel_arch_attn_flops(a, (o->seq + 1) / 2) * t / tp /
                (c->peak[ap] * c->attn_eff * shape(o->seq, c->gemm_half));
  double bw = c->hbm_bw * c->mem_eff, elem = elementwise_elems(a, moe) * ab * t / tp / bw;
  if (is_8bit(p)) /* quantising each GEMM input: read 16-bit, write 8-bit */
    for (int i = 0; i < ng; i++) elem += 3.0 * g[i].k * g[i].rows * t / tp / bw;
  ps->fwd += f + attn + elem;
  ps->bwd += b + 2.5 * attn + 2 * elem;
  ps->recompute += rc == KEEL_RECOMPUTE_FULL ? f + attn + elem : rc == KEEL_RECOMPUTE_SELECTIVE ? up_f + 0.2 * elem : 0;
  double bw_tp, lat_tp;
  link(c, tp, &bw_tp, &lat_tp);
  ps->tp += 4 * keel_plan_allreduce_time(t * a->d * ab, tp, bw_tp, lat_tp); /* 2 forward, 2 backward */
  if (moe) {
    double disp = p == KEEL_PREC_FP8 ? 1 : ab;
    ps->ep_f += ep_time(a, c, l, t / tp, disp, ab);
    ps->ep_b += ep_time(a, c, l, t / tp, ab, disp);
  }
  ps->act += stored_bytes(a, moe, rc, ab, p == KEEL_PREC_FP8 ? 1 : ab) * t / tp;
}

static void model_cost(pass *ps, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                       const keel_layout *l, keel_recompute rc, double t) {
  memset(ps, 0, sizeof *ps);
  for (int i = 0; i < a->layers; i++) layer_cost(ps, a, c, o, l, rc, keel_arch_is_moe_layer(a, i), t);
  for (int i = 0; i < a->mtp; i++) layer_cost(ps, a, c, o, l, rc, keel_arch_is_moe_layer(a, a->layers), t);
  keel_prec p = o->prec;
  double ab = act_bytes(p), bw = c->hbm_bw * c->mem_eff;
  /* the head (vocab-parallel over tp) once per prediction depth, the MTP projections, and the
   * loss over fp32 logits (softmax, cross-entropy, their gradient: ~4 passes) */
  double heads = 1 + a->mtp, v = a->vocab / (double)l->tp;
  keel_prec p16 = p == KEEL_PREC_FP32 ? p : KEEL_PREC_BF16; /* the head stays in 16 bits */
  double hf = keel_plan_gemm_time(c, p16, t, v, a->d, ab, ab);
  double hb = keel_plan_gemm_time(c, p16, t, a->d, v, ab, ab) + keel_plan_gemm_time(c, p16, v, a->d, t, ab, ab);
  double proj = a->mtp * keel_plan_gemm_time(c, p, t / l->tp, a->d, 2.0 * a->d, ab, ab);
  double loss = heads * 4.0 * 4 * t * v / bw;
  ps->fwd += heads * hf + proj + loss / 2;
  ps->bwd += heads * hb + 2 * proj + loss / 2;
  if (rc == KEEL_RECOMPUTE_FULL) ps->recompute += proj;
  ps->act += heads * 2.0 * 4 * t * v / l->pp; /* logits and their gradient, on the last stage only */
}

/* Parameters one chip holds: dense ones split over tp and pp, experts over ep and pp. */
static void chip_params(const keel_arch *a, const keel_layout *l, double *dense, double *expert) {
  double all = keel_arch_params(a, 0, 1), act_e = 0;
  keel_pgemm g[KEEL_PLAN_MAX_GEMMS];
  int n = keel_arch_layer_gemms(a, 1, g), moe_layers = a->mtp;
  for (int i = 0; i < a->layers; i++) moe_layers += keel_arch_is_moe_layer(a, i);
  for (int i = 0; i < n; i++)
    if (g[i].expert) act_e += g[i].n * g[i].k;
  double e = a->experts ? act_e * a->experts * moe_layers : 0;
  *dense = (all - e) / ((double)l->tp * l->pp);
  *expert = e / ((double)l->ep * l->pp);
}

static void reliability(keel_plan *p, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o, double work_s) {
  double w, g, opt;
  keel_plan_zero_bytes(keel_arch_params(a, 0, 1), 1, 0, o->prec, o->bf16_moments, &w, &g, &opt);
  p->state_bytes = w + opt;
  p->ckpt_s = p->state_bytes / o->chips / c->ckpt_bw;
  p->mtbf_s = keel_mtbf_s(c->fail_chip_day, o->chips);
  if (isinf(p->mtbf_s)) {
    p->ckpt_interval_s = INFINITY, p->goodput = 1;
  } else {
    p->ckpt_interval_s = keel_daly_interval(p->ckpt_s, p->mtbf_s);
    p->goodput = keel_goodput(p->ckpt_interval_s, p->ckpt_s, c->restart_s + p->ckpt_s, p->mtbf_s);
  }
  p->wall_s = work_s / p->goodput;
  p->chip_hours = p->wall_s * o->chips / 3600;
  p->energy_mwh = p->wall_s * o->chips * keel_cluster_power_per_chip(c) / 3.6e9;
}

/* One decode step for `B` sequences per data-parallel rank at mean context C = seq. */
static double decode_step(const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o, const keel_layout *l,
                          double B) {
  keel_prec p = o->prec;
  double wb = elem_bytes(p), tp = l->tp, C = o->seq;
  double bw = c->hbm_bw * c->mem_eff, total = 0, bw_tp, lat_tp;
  link(c, tp, &bw_tp, &lat_tp);
  keel_prec ap = c->peak[KEEL_PREC_BF16] > 0 ? KEEL_PREC_BF16 : KEEL_PREC_FP32;
  for (int i = 0; i < a->layers; i++) {
    int moe = keel_arch_is_moe_layer(a, i);
    keel_pgemm g[KEEL_PLAN_MAX_GEMMS];
    int ng = keel_arch_layer_gemms(a, moe, g);
    double comp = 0;
    for (int j = 0; j < ng; j++) {
      if (g[j].expert) { /* each local expert runs when at least one token picks it */
        double m = B / tp * l->ep * a->topk / a->experts, busy = 1 - exp(-m);
        comp += a->experts / (double)l->ep * busy * keel_plan_gemm_time(c, p, fmax(1, m / busy), g[j].n, g[j].k, 2, wb);
      } else {
        comp += keel_plan_gemm_time(c, p, B, g[j].tp_split ? g[j].n / tp : g[j].n, g[j].k, 2, wb);
      }
    }
    /* attention over the cache: MLA absorbed (scores over the latent + rope key, values over
     * the latent; every tp rank reads the whole latent cache), or GQA over its kv heads */
    double flops = a->mla ? 2.0 * a->heads * (2.0 * a->kv_lora + a->dr) * C : 4.0 * a->heads * a->head_dim * C;
    comp += B * fmax(flops / tp / (c->peak[ap] * c->attn_eff), kv_bytes(a, tp) * C / bw);
    comp += B * elementwise_elems(a, moe) * 2 / bw;
    double comm = 2 * keel_plan_allreduce_time(B * a->d * 2, tp, bw_tp, lat_tp);
    if (moe) comm += ep_time(a, c, l, B / tp, fmin(wb, 2), 2);
    total += comp + fmax(0, comm - comp); /* two micro-batches: one computes while the other talks */
  }
  return (total + keel_plan_gemm_time(c, p, B, a->vocab / tp, a->d, 2, wb)) / c->sustained;
}

static keel_status plan_serve(keel_plan *p, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                              const keel_layout *l) {
  memset(p, 0, sizeof *p);
  p->lay = *l, p->recompute = KEEL_RECOMPUTE_NONE;
  keel_prec pr = o->prec;
  double dense, expert;
  chip_params(a, l, &dense, &expert);
  p->mem_weights = (dense + expert) * elem_bytes(pr);
  p->mem_reserve = c->reserve_bytes;
  double kv_tok = a->layers * kv_bytes(a, l->tp);
  double free_b = c->hbm_bytes - p->mem_weights - p->mem_reserve;
  p->kv_tokens_chip = free_b > 0 ? free_b / kv_tok : 0;
  p->fits = p->kv_tokens_chip >= o->seq;
  /* prefill: micro-batches of whole prompts, forward only, communication overlapped */
  pass ps;
  keel_plan_opts po = *o;
  po.moe_imbalance = 1;
  model_cost(&ps, a, c, &po, l, KEEL_RECOMPUTE_NONE, (double)l->micro * o->seq / l->cp);
  double t_pre = fmax(ps.fwd / c->sustained, ps.tp / 2 + ps.ep_f);
  p->prefill_tps_chip = l->micro * o->seq / t_pre / ((double)l->tp * l->cp);
  /* decode: the largest batch whose step meets the target time per output token and whose
   * cache fits */
  double max_b = fmax(1, floor(p->kv_tokens_chip * l->tp / o->seq)), lo = 1, hi = 1;
  while (hi * 2 <= max_b && decode_step(a, c, o, l, hi * 2) <= o->tpot) hi *= 2;
  lo = hi, hi = fmin(hi * 2, max_b);
  while (hi - lo > 1) {
    double mid = floor((lo + hi) / 2);
    if (decode_step(a, c, o, l, mid) <= o->tpot) lo = mid;
    else hi = mid;
  }
  if (hi > lo && decode_step(a, c, o, l, hi) <= o->tpot) lo = hi;
  p->decode_batch = lo;
  p->decode_step_s = decode_step(a, c, o, l, lo);
  p->decode_tps_chip = lo / p->decode_step_s / l->tp;
  p->mem_kv = lo * o->seq * kv_tok / l->tp;
  p->mem_total = p->mem_weights + p->mem_kv + p->mem_reserve;
  p->step_s = p->decode_step_s;
  p->tokens_per_s = p->decode_tps_chip * o->chips;
  p->flops_per_token = 2 * keel_arch_params(a, 1, 0);
  p->mfu = p->flops_per_token * p->tokens_per_s / (o->chips * (c->peak[pr] > 0 ? c->peak[pr] : c->peak[KEEL_PREC_BF16]));
  p->mtbf_s = keel_mtbf_s(c->fail_chip_day, o->chips);
  p->goodput = 1;
  return KEEL_OK;
}

static keel_status eval_at(keel_plan *p, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                           const keel_layout *l, keel_recompute rc) {
  memset(p, 0, sizeof *p);
  p->lay = *l, p->recompute = rc;
  double t = (double)l->micro * o->seq / l->cp, m = o->global_batch / ((double)l->dp * l->micro), pp = l->pp;
  p->micro_batches = m;
  pass ps;
  model_cost(&ps, a, c, o, l, rc, t);
  int overlap = o->schedule == KEEL_SCHEDULE_DUALPIPE;
  double tax = (overlap ? 1 / (1 - c->comm_tax) : 1) / c->sustained;
  double F = ps.fwd * tax / pp, B = (ps.bwd + ps.recompute) * tax / pp;
  double bw_pp, lat_pp, ab = act_bytes(o->prec);
  link(c, (double)l->tp * l->cp * l->dp + 1, &bw_pp, &lat_pp);
  double ppc = pp > 1 ? t / l->tp * a->d * ab / bw_pp + lat_pp : 0; /* one boundary, one direction */
  double tp_s = ps.tp / pp, epf = ps.ep_f / pp, epb = ps.ep_b / pp;
  /* exposed communication per micro-batch: DualPipe hides EP and PP traffic behind the other
   * chunk's compute; 1F1B waits for it */
  double exp_f = tp_s / 2 + (overlap ? fmax(0, epf + ppc - F) : epf + ppc);
  double exp_b = tp_s / 2 + (overlap ? fmax(0, epb + ppc - B) : epb + ppc);
  double Ft = F + exp_f, Bt = B + exp_b;
  p->compute_s = m * (F + B);
  p->bubble_s = keel_plan_bubble(o->schedule, pp, o->vpp, Ft, Bt);
  p->tp_s = m * tp_s, p->ep_s = m * (epf + epb), p->pp_s = m * 2 * ppc;
  /* data parallel: gradients reduce-scattered and parameters all-gathered (ZeRO >= 1) or
   * all-reduced (the same volume); ZeRO-3 gathers parameters again for every micro-batch.
   * Dense parameters reduce over dp, experts over the dp/ep replicas of each expert. */
  double dense, expert;
  chip_params(a, l, &dense, &expert);
  double bw_dp, lat_dp, gb = 2;
  link(c, (double)l->tp * l->cp * l->dp, &bw_dp, &lat_dp);
  double edp = l->dp / (double)l->ep;
  p->dp_s = keel_plan_allreduce_time(dense * gb, l->dp, bw_dp, lat_dp) + keel_plan_allreduce_time(expert * gb, edp, bw_dp, lat_dp);
  if (o->zero >= 3)
    p->dp_s += 2 * m * (keel_plan_allgather_time(dense * gb, l->dp, bw_dp, lat_dp) + keel_plan_allgather_time(expert * gb, edp, bw_dp, lat_dp));
  p->dp_exposed_s = fmax(0, p->dp_s - (o->zero >= 3 ? m : 1) * B);
  /* AdamW over this chip's share: read master, gradient, both moments; write master, both
   * moments and the 16-bit weights */
  double mb = o->bf16_moments ? 2 : 4, z = o->zero >= 1;
  double per_param = o->prec == KEEL_PREC_FP32 ? 4 + 4 + 4 + 4 * mb : 4 + 4 + 2 + 4 * mb + 2;
  double updated = dense / (z ? l->dp : 1) + expert / (z ? edp : 1);
  p->optimizer_s = updated * per_param / (c->hbm_bw * c->mem_eff);
  p->comm_exposed_s = m * (exp_f + exp_b) + p->dp_exposed_s;
  p->step_s = p->compute_s + m * (exp_f + exp_b) + p->bubble_s + p->dp_exposed_s + p->optimizer_s;
  double tokens = o->global_batch * o->seq;
  p->tokens_per_s = tokens / p->step_s;
  p->flops_per_token = keel_arch_train_flops_per_token(a, o->seq);
  p->mfu = p->flops_per_token * p->tokens_per_s / (o->chips * c->peak[o->prec]);
  /* memory of the busiest (first) stage */
  double w1, g1, o1, w2, g2, o2;
  keel_plan_zero_bytes(dense, l->dp, o->zero, o->prec, o->bf16_moments, &w1, &g1, &o1);
  keel_plan_zero_bytes(expert, edp, o->zero, o->prec, o->bf16_moments, &w2, &g2, &o2);
  p->mem_weights = w1 + w2, p->mem_grads = g1 + g2, p->mem_opt = o1 + o2;
  double inflight = fmin(m, overlap ? pp + 1 : pp);
  p->mem_act = ps.act / pp * inflight;
  p->mem_reserve = c->reserve_bytes;
  p->mem_total = p->mem_weights + p->mem_grads + p->mem_opt + p->mem_act + p->mem_reserve;
  p->fits = p->mem_total <= c->hbm_bytes;
  reliability(p, a, c, o, o->tokens / p->tokens_per_s);
  return KEEL_OK;
}

keel_status keel_plan_eval(keel_plan *p, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                           const keel_layout *l) {
  keel_status st = keel_plan_check(a, c, o, l);
  if (st != KEEL_OK) return st;
  if (o->serve) return plan_serve(p, a, c, o, l);
  if (o->recompute != KEEL_RECOMPUTE_AUTO) return eval_at(p, a, c, o, l, o->recompute);
  /* the least recomputation that fits */
  for (int r = KEEL_RECOMPUTE_NONE; r <= KEEL_RECOMPUTE_FULL; r++) {
    eval_at(p, a, c, o, l, (keel_recompute)r);
    if (p->fits) break;
  }
  return KEEL_OK;
}

static int better(const keel_plan *x, const keel_plan *y, int serve) {
  if (x->fits != y->fits) return x->fits;
  if (serve) return x->decode_tps_chip > y->decode_tps_chip;
  return x->fits ? x->tokens_per_s > y->tokens_per_s : x->mem_total < y->mem_total;
}

int keel_plan_search(keel_plan *best, int max, const keel_arch *a, const keel_cluster *c, const keel_plan_opts *o,
                     const keel_layout *fixed) {
  int n = 0, chips = (int)o->chips;
  char why[256] = ""; /* the first reason a layout was refused */
  for (int tp = 1; tp <= chips; tp++) {
    if (chips % tp || (fixed->tp && tp != fixed->tp) || (!fixed->tp && tp > c->domain)) continue;
    for (int pp = 1; pp <= chips / tp; pp++) {
      if ((chips / tp) % pp || (fixed->pp && pp != fixed->pp)) continue;
      int cp = fixed->cp ? fixed->cp : 1;
      if ((chips / tp / pp) % cp) continue;
      int dp = chips / tp / pp / cp;
      if (fixed->dp && dp != fixed->dp) continue;
      for (int ep = 1; ep <= dp; ep++) {
        if (dp % ep || (fixed->ep && ep != fixed->ep) || (!fixed->ep && a->experts && a->experts % ep)) continue;
        if (!fixed->ep && !a->experts && ep > 1) break;
        for (int mb = 1; mb <= 64; mb *= 2) {
          if (fixed->micro && mb != fixed->micro) continue;
          if (o->serve && mb > 1) break;
          keel_layout l = {tp, pp, dp, ep, cp, mb};
          keel_plan p;
          if (keel_plan_eval(&p, a, c, o, &l) != KEEL_OK) {
            if (!why[0]) snprintf(why, sizeof why, "%s", keel_errmsg());
            continue;
          }
          int at = n < max ? n++ : max;
          if (at == max && !better(&p, &best[max - 1], o->serve)) continue;
          if (at == max) at = max - 1;
          while (at > 0 && better(&p, &best[at - 1], o->serve)) best[at] = best[at - 1], at--;
          best[at] = p;
        }
      }
    }
  }
  if (!n) {
    keel_fail(KEEL_ERR_ARG, "no legal layout for %.0f chips with the options given%s%s", o->chips, why[0] ? ": " : "", why);
    return -1;
  }
  return n;
}
