/* keel plan: time, memory, energy and goodput of a training or serving run of a model on a
 * cluster, before renting it. The model is in plan/; this file reads options, measures this
 * machine for `--cluster local`, and prints a table or JSON. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../backend/backend.h"
#include "../core/cpu.h"
#include "../plan/cost.h"
#include "cli.h"

static const char *const recompute_names[] = {"none", "selective", "full", "auto"};
static const char *const schedule_names[] = {"1f1b", "interleaved", "dualpipe"};

static void usage(void) {
  printf("usage: keel plan --model CONFIG.json --cluster NAME|FILE.json [options]\n"
         "       keel plan --model CONFIG.json --compare NAME1,NAME2,... [options]\n\n"
         "Predicts a training run (step time, MFU, tokens/s, chip-hours, days, memory per chip, energy,\n"
         "failures and goodput) or a serving deployment (prefill and decode tokens/s per chip at a target\n"
         "time per output token, KV-cache capacity) of an HF config.json (DeepSeek-V2/V3, Llama-style,\n"
         "GPT-2-style) on a cluster preset or JSON file.\n\n"
         "Layout (Megatron semantics): chips = tp * pp * dp * cp, and expert parallelism shards the\n"
         "routed experts inside the data-parallel group, so ep must divide dp. Layout options left out\n"
         "are searched; the best few layouts are listed.\n\n"
         "  -m, --model FILE         HF config.json\n"
         "  -c, --cluster NAME|FILE  preset (cloudmatrix384, gb200-nvl72, hgx-a100, hgx-h100, hgx-h200,\n"
         "                           hgx-h800, hgx-h20; 'hgx-' may be left out), 'local' (this machine,\n"
         "                           measured now with keel's kernels on this model's shapes), or a JSON\n"
         "                           file (\"base\": NAME starts from a preset)\n"
         "      --compare A,B,...    the same run on each cluster, side by side\n"
         "      --chips N            cluster size (default: the preset's)\n"
         "      --tp/--pp/--dp/--ep/--cp N   parallel layout (default: searched; cp 1)\n"
         "      --micro-batch N      sequences per micro-batch (default: searched)\n"
         "      --seq N              sequence length; prompt + cache length when serving (4096)\n"
         "      --global-batch N     sequences per optimizer step (1024)\n"
         "      --tokens N           tokens to train on; suffixes K M B T (1T)\n"
         "      --precision P        fp32|bf16|fp8|int8 GEMMs (bf16; fp32 on local)\n"
         "      --zero 0|1|2|3       ZeRO stage of the data-parallel optimizer (1)\n"
         "      --recompute R        none|selective|full (default: the least that fits)\n"
         "      --schedule S         pipeline schedule: 1f1b|interleaved|dualpipe (1f1b)\n"
         "      --vpp N              interleaved: model chunks per pipeline rank (2)\n"
         "      --bf16-moments       AdamW moments in bf16\n"
         "      --moe-imbalance X    busiest expert rank's load over the mean (1.0)\n"
         "      --mode train|serve   (train)\n"
         "      --tpot MS            serving: target time per output token in ms (50)\n"
         "      --set FIELD=VALUE    override a cluster field (repeatable), e.g. scale_out_gb_s=25\n"
         "      --top N              layouts listed when searching (5)\n"
         "  -t, --threads N          threads for the local measurement\n"
         "      --json               JSON on stdout instead of the table\n");
}

static int parse_num(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  static const char suf[] = "KMBGT";
  static const double mul[] = {1e3, 1e6, 1e9, 1e9, 1e12};
  if (end != s && *end && !end[1] && strchr(suf, *end)) v *= mul[strchr(suf, *end) - suf], end++;
  if (end == s || *end || !isfinite(v) || v < 0) return 0;
  *out = v;
  return 1;
}

/* GEMM share of peak as the planner models its shape: prod(x / (x + half)). */
static double shape3(const double s[3], double half) {
  return s[0] / (s[0] + half) * s[1] / (s[1] + half) * s[2] / (s[2] + half);
}

/* Forward, dx and dw at equal work: their harmonic mean. */
static double mean3(const double f[3]) { return 3 / (1 / f[0] + 1 / f[1] + 1 / f[2]); }

/* The local preset's GEMM efficiency, fitted to keel's GEMM on the planned model's own shapes:
 * every distinct GEMM of a dense and of a MoE layer (routed experts at their share of the
 * tokens) and the head, at `tokens` rows, forward + dx + dw each. eff and half of
 * eff * prod(x / (x + half)) are those whose predicted times match the measured ones best in
 * log terms, each shape weighted by its measured time times how often the model runs it. */
static void fit_gemm(keel_cluster *c, const keel_arch *m, double tokens) {
  enum { MAXS = 2 * KEEL_PLAN_MAX_GEMMS + 1 };
  double sh[MAXS][3], w[MAXS], t[MAXS]; /* rows, k, n; weight; measured seconds */
  int ns = 0, moe_layers = 0;
  for (int i = 0; i < m->layers; i++) moe_layers += keel_arch_is_moe_layer(m, i);
  for (int moe = 0; moe < 2; moe++) {
    int layers = moe ? moe_layers + m->mtp : m->layers - moe_layers;
    if (!layers) continue;
    keel_pgemm g[KEEL_PLAN_MAX_GEMMS];
    int ng = keel_arch_layer_gemms(m, moe, g);
    for (int i = 0; i < ng && ns < MAXS - 1; i++) {
      double rows = g[i].expert ? fmax(1, round(tokens * m->topk / m->experts)) : tokens;
      double times = layers * (g[i].expert ? m->experts : 1);
      int k = 0;
      while (k < ns && !(sh[k][0] == rows && sh[k][1] == g[i].k && sh[k][2] == g[i].n)) k++;
      if (k == ns) sh[ns][0] = rows, sh[ns][1] = g[i].k, sh[ns][2] = g[i].n, w[ns++] = 0;
      w[k] += times;
    }
  }
  sh[ns][0] = tokens, sh[ns][1] = m->d, sh[ns][2] = m->vocab, w[ns++] = 1 + m->mtp;
  for (int i = 0; i < ns; i++) {
    double f[3];
    keel_bench_gemm((int)sh[i][0], (int)sh[i][1], (int)sh[i][2], f);
    t[i] = 3 * 2 * sh[i][0] * sh[i][1] * sh[i][2] / mean3(f);
    w[i] *= t[i];
  }
  double best = INFINITY, peak = c->peak[KEEL_PREC_FP32];
  for (double half = 0; half <= 4096; half = half < 1 ? 1 : half * 1.05) {
    double x[MAXS], sw = 0, le = 0, r = 0; /* x: log(time at eff 1 / measured); log eff: their weighted mean */
    for (int i = 0; i < ns; i++) {
      x[i] = log(3 * 2 * sh[i][0] * sh[i][1] * sh[i][2] / (peak * shape3(sh[i], half)) / t[i]);
      sw += w[i], le += w[i] * x[i];
    }
    le /= sw;
    for (int i = 0; i < ns; i++) r += w[i] * (x[i] - le) * (x[i] - le);
    if (r < best) best = r, c->gemm_half = half, c->gemm_eff = fmin(1, exp(le));
  }
}

/* The local preset: this machine, measured with the kernels keel train runs, GEMMs on the
 * shapes of the model planned at `tokens` rows per micro-batch, attention at its length. */
static keel_status local_cluster(keel_cluster *c, int threads, const keel_arch *m, double tokens, double seq) {
  memset(c, 0, sizeof *c);
  int nt = threads > 0 ? threads : keel_cpu_count();
  snprintf(c->name, sizeof c->name, "local");
  snprintf(c->chip, sizeof c->chip, "this CPU, %d threads", nt);
  snprintf(c->note, sizeof c->note,
           "measured now: FMA peak, triad bandwidth, keel's GEMM and attention on this model's shapes, "
           "its norm/SwiGLU/loss kernels");
  fprintf(stderr, "keel plan: measuring this machine (FMA peak, bandwidth, GEMM on the model's shapes)...\n");
  c->chips = 1, c->domain = 1, c->sustained = 1;
  c->peak[KEEL_PREC_FP32] = keel_cpu_peak_flops_per_core() * nt;
  c->hbm_bw = keel_bench_triad();
  if (c->hbm_bw <= 0) return keel_fail(KEEL_ERR_NOMEM, "no memory to measure the bandwidth");
  c->mem_eff = fmin(1, keel_bench_elementwise(2048, 768, 2048, 8192) / c->hbm_bw);
  c->hbm_bytes = (double)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
  fit_gemm(c, m, tokens);
  /* keel's attention forward + backward on one sequence of the model's length (at most 1024)
   * and at most 16 of its heads, against the FLOPs the planner counts for it */
  int T = (int)fmin(seq, 1024), H = m->heads < 16 ? m->heads : 16;
  int dn = m->mla ? m->dn : m->head_dim, dr = m->mla ? m->dr : 0, dv = m->mla ? m->dv : m->head_dim;
  double flops = 3.5 * keel_arch_attn_flops(m, (T + 1) / 2.0) * T * H / m->heads; /* forward + 2.5x backward */
  double t = keel_bench_attention(1, T, H, dn, dr, dv);
  c->attn_eff = fmin(1, flops / (c->peak[KEEL_PREC_FP32] * t * (T / (T + c->gemm_half))));
  c->ckpt_bw = 1e9, c->restart_s = 30, c->reserve_bytes = 0.3e9;
  return KEEL_OK;
}

typedef struct args {
  const char *model, *cluster, *compare;
  keel_plan_opts o;
  keel_layout fixed;
  double chips;
  int json, top, threads, prec_given, n_set;
  char *set[32];
} args;

static keel_status load_cluster(keel_cluster *c, const char *name, const args *a, const keel_arch *m) {
  double tokens = (a->fixed.micro > 0 ? a->fixed.micro : 1) * a->o.seq; /* rows of the GEMMs measured */
  keel_status st = strcmp(name, "local") == 0 ? local_cluster(c, a->threads, m, tokens, a->o.seq) : keel_cluster_load(c, name);
  for (int i = 0; st == KEEL_OK && i < a->n_set; i++) st = keel_cluster_set(c, a->set[i]);
  if (st == KEEL_OK && a->chips > 0) c->chips = a->chips;
  return st == KEEL_OK ? keel_cluster_check(c) : st;
}

/* Plans on one cluster: the given layout, or the best `top` found. */
static int plan_one(keel_plan *best, int top, const keel_arch *m, keel_cluster *c, args *a, keel_plan_opts *o) {
  *o = a->o;
  o->chips = c->chips;
  if (!a->prec_given) o->prec = c->peak[KEEL_PREC_BF16] > 0 ? KEEL_PREC_BF16 : KEEL_PREC_FP32;
  keel_layout l = a->fixed;
  /* a whole layout (ep may be left out for a dense model): plan it as given */
  if (l.tp && l.pp && l.dp && l.micro && (l.ep || !m->experts)) {
    if (!l.ep) l.ep = 1;
    if (!l.cp) l.cp = 1;
    return keel_plan_eval(best, m, c, o, &l) == KEEL_OK ? 1 : -1;
  }
  return keel_plan_search(best, top, m, c, o, &l);
}

static void gib(char *b, size_t n, double bytes) { snprintf(b, n, "%.1f", bytes / 1073741824.0); }

static const char *layout_str(const keel_plan *p, const keel_plan_opts *o, char *b, size_t n) {
  snprintf(b, n, "tp %d pp %d dp %d ep %d cp %d, micro-batch %d%s%s", p->lay.tp, p->lay.pp, p->lay.dp, p->lay.ep,
           p->lay.cp, p->lay.micro, o->serve ? "" : ", recompute ", o->serve ? "" : recompute_names[p->recompute]);
  return b;
}

static void print_train(const keel_plan *p, const keel_cluster *c, const keel_plan_opts *o) {
  char lay[160], w[4][16];
  printf("layout           %s, %.0f micro-batches, ZeRO-%d, %s\n", layout_str(p, o, lay, sizeof lay), p->micro_batches,
         o->zero, schedule_names[o->schedule]);
  printf("                 (%s efficiency: GEMM %.2f%s, attention %.2f, memory %.2f, sustained %.2f)\n", c->name,
         o->prec >= KEEL_PREC_FP8 && c->gemm_eff8 > 0 ? c->gemm_eff8 : c->gemm_eff,
         o->prec >= KEEL_PREC_FP8 ? " (8-bit)" : "", c->attn_eff, c->mem_eff, c->sustained);
  printf("step time        %.3f s = compute %.3f + exposed communication %.3f + bubble %.3f + optimizer %.3f\n",
         p->step_s, p->compute_s, p->comm_exposed_s, p->bubble_s, p->optimizer_s);
  printf("collectives      TP %.3f s, EP %.3f s, PP %.3f s, DP %.3f s per step (hidden or not)\n", p->tp_s, p->ep_s,
         p->pp_s, p->dp_s);
  printf("throughput       %.4g tokens/s (%.4g per chip), MFU %.1f%% of the %s peak\n", p->tokens_per_s,
         p->tokens_per_s / o->chips, 100 * p->mfu, keel_prec_names[o->prec]);
  gib(w[0], 16, p->mem_weights), gib(w[1], 16, p->mem_grads), gib(w[2], 16, p->mem_opt), gib(w[3], 16, p->mem_act);
  printf("memory per chip  %.1f GiB of %.1f: weights %s, gradients %s, optimizer %s, activations %s, reserved %.1f -> %s\n",
         p->mem_total / 1073741824.0, c->hbm_bytes / 1073741824.0, w[0], w[1], w[2], w[3],
         p->mem_reserve / 1073741824.0, p->fits ? "fits" : "DOES NOT FIT");
  printf("run              %.4g tokens: %.2f days, %.4g chip-hours, %.3g MWh (%.0f W per chip all-in)\n", o->tokens,
         p->wall_s / 86400, p->chip_hours, p->energy_mwh, keel_cluster_power_per_chip(c));
  if (isinf(p->mtbf_s))
    printf("failures         none expected (no failure rate)\n");
  else
    printf("failures         MTBF %.1f h; checkpoint %.1f s blocking, every %.1f min (Daly); restart %.0f min; goodput %.1f%%\n",
           p->mtbf_s / 3600, p->ckpt_s, p->ckpt_interval_s / 60, c->restart_s / 60, 100 * p->goodput);
}

static void print_serve(const keel_plan *p, const keel_cluster *c, const keel_plan_opts *o) {
  char lay[160];
  printf("layout           %s\n", layout_str(p, o, lay, sizeof lay));
  printf("prefill          %.4g tokens/s per chip (prompts of %.0f)\n", p->prefill_tps_chip, o->seq);
  printf("decode           %.4g tokens/s per chip: batch %.0f per replica, %.1f ms per output token (target %.0f)%s\n",
         p->decode_tps_chip, p->decode_batch, 1e3 * p->decode_step_s, 1e3 * o->tpot,
         p->decode_step_s > o->tpot ? " - TARGET NOT MET" : "");
  printf("KV cache         %.4g tokens per chip\n", p->kv_tokens_chip);
  printf("memory per chip  %.1f GiB of %.1f: weights %.1f, KV cache %.1f, reserved %.1f -> %s\n",
         p->mem_total / 1073741824.0, c->hbm_bytes / 1073741824.0, p->mem_weights / 1073741824.0,
         p->mem_kv / 1073741824.0, p->mem_reserve / 1073741824.0, p->fits ? "fits" : "DOES NOT FIT");
  printf("power            %.3g kW for %.0f chips, %.3g J per output token\n",
         o->chips * keel_cluster_power_per_chip(c) / 1e3, o->chips,
         keel_cluster_power_per_chip(c) / p->decode_tps_chip);
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *plan_json(const keel_plan *p, const keel_cluster *c, const keel_plan_opts *o) {
  json_t *j = json_object();
  json_object_set_new(j, "cluster", json_string(c->name));
  json_object_set_new(j, "chips", json_integer((json_int_t)o->chips));
  json_object_set_new(j, "mode", json_string(o->serve ? "serve" : "train"));
  json_object_set_new(j, "precision", json_string(keel_prec_names[o->prec]));
  json_t *l = json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "tp", p->lay.tp, "pp", p->lay.pp, "dp", p->lay.dp, "ep", p->lay.ep,
                        "cp", p->lay.cp, "micro_batch", p->lay.micro);
  json_object_set_new(j, "layout", l);
  json_object_set_new(j, "recompute", json_string(recompute_names[p->recompute]));
  int s = o->serve;
  struct { const char *k; double v; } f[] = {
      {"step_time_s", p->step_s},
      {"compute_s", s ? NAN : p->compute_s},
      {"comm_exposed_s", s ? NAN : p->comm_exposed_s},
      {"bubble_s", s ? NAN : p->bubble_s},
      {"optimizer_s", s ? NAN : p->optimizer_s},
      {"tokens_per_s", p->tokens_per_s},
      {"mfu", p->mfu},
      {"chip_hours", s ? NAN : p->chip_hours},
      {"wall_days", s ? NAN : p->wall_s / 86400},
      {"mem_per_chip_gib", p->mem_total / 1073741824.0},
      {"mem_capacity_gib", c->hbm_bytes / 1073741824.0},
      {"energy_mwh", s ? NAN : p->energy_mwh},
      {"mtbf_hours", p->mtbf_s / 3600},
      {"ckpt_interval_s", s ? NAN : p->ckpt_interval_s},
      {"ckpt_cost_s", s ? NAN : p->ckpt_s},
      {"goodput", p->goodput},
      {"prefill_tokens_per_s_per_chip", s ? p->prefill_tps_chip : NAN},
      {"decode_tokens_per_s_per_chip", s ? p->decode_tps_chip : NAN},
      {"decode_batch", s ? p->decode_batch : NAN},
      {"kv_cache_tokens_per_chip", s ? p->kv_tokens_chip : NAN},
  };
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) json_object_set_new(j, f[i].k, num(f[i].v));
  json_object_set_new(j, "fits", json_boolean(p->fits));
  return j;
}

typedef struct row {
  const char *label;
  int serve; /* 0 train only, 1 serve only, 2 both */
} row;

/* The same run on several clusters, one column each. */
static void print_compare(keel_plan *p, keel_cluster *c, keel_plan_opts *o, int n) {
  static const row rows[] = {{"chips", 2},           {"layout", 2},          {"step time (s)", 0},
                             {"tokens/s per chip", 0}, {"MFU", 0},             {"days", 0},
                             {"chip-hours", 0},      {"energy (MWh)", 0},    {"prefill tok/s/chip", 1},
                             {"decode tok/s/chip", 1}, {"decode batch", 1},    {"ms per token", 1},
                             {"KV tokens/chip", 1},  {"memory/chip (GiB)", 2}, {"capacity (GiB)", 2},
                             {"fits", 2},            {"MTBF (h)", 2},        {"ckpt every (min)", 0},
                             {"goodput", 0}};
  int s = o[0].serve;
  printf("%-20s", "");
  for (int i = 0; i < n; i++) printf(" %22s", c[i].name);
  printf("\n");
  for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
    if (rows[r].serve != 2 && rows[r].serve != s) continue;
    printf("%-20s", rows[r].label);
    for (int i = 0; i < n; i++) {
      char b[64];
      const keel_plan *q = &p[i];
      switch (r) {
      case 0: snprintf(b, sizeof b, "%.0f", o[i].chips); break;
      case 1: snprintf(b, sizeof b, "tp%d pp%d dp%d ep%d", q->lay.tp, q->lay.pp, q->lay.dp, q->lay.ep); break;
      case 2: snprintf(b, sizeof b, "%.3f", q->step_s); break;
      case 3: snprintf(b, sizeof b, "%.0f", q->tokens_per_s / o[i].chips); break;
      case 4: snprintf(b, sizeof b, "%.1f%% %s", 100 * q->mfu, keel_prec_names[o[i].prec]); break;
      case 5: snprintf(b, sizeof b, "%.2f", q->wall_s / 86400); break;
      case 6: snprintf(b, sizeof b, "%.4g", q->chip_hours); break;
      case 7: snprintf(b, sizeof b, "%.3g", q->energy_mwh); break;
      case 8: snprintf(b, sizeof b, "%.0f", q->prefill_tps_chip); break;
      case 9: snprintf(b, sizeof b, "%.0f", q->decode_tps_chip); break;
      case 10: snprintf(b, sizeof b, "%.0f", q->decode_batch); break;
      case 11: snprintf(b, sizeof b, "%.1f", 1e3 * q->decode_step_s); break;
      case 12: snprintf(b, sizeof b, "%.4g", q->kv_tokens_chip); break;
      case 13: snprintf(b, sizeof b, "%.1f", q->mem_total / 1073741824.0); break;
      case 14: snprintf(b, sizeof b, "%.1f", c[i].hbm_bytes / 1073741824.0); break;
      case 15: snprintf(b, sizeof b, "%s", q->fits ? "yes" : "NO"); break;
      case 16: snprintf(b, sizeof b, "%.1f", q->mtbf_s / 3600); break;
      case 17: snprintf(b, sizeof b, "%.1f", q->ckpt_interval_s / 60); break;
      case 18: snprintf(b, sizeof b, "%.1f%%", 100 * q->goodput); break;
      }
      printf(" %22s", b);
    }
    printf("\n");
  }
}

static int pick(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

int keel_cmd_plan(int argc, char **argv) {
  enum { O_CHIPS = 256, O_TP, O_PP, O_DP, O_EP, O_CP, O_MB, O_SEQ, O_GB, O_TOK, O_PREC, O_ZERO, O_RC, O_SCHED,
         O_BF16, O_IMB, O_MODE, O_TPOT, O_SET, O_TOP, O_JSON, O_CMP, O_VPP };
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},      {"cluster", required_argument, 0, 'c'},
      {"compare", required_argument, 0, O_CMP},  {"chips", required_argument, 0, O_CHIPS},
      {"tp", required_argument, 0, O_TP},        {"pp", required_argument, 0, O_PP},
      {"dp", required_argument, 0, O_DP},        {"ep", required_argument, 0, O_EP},
      {"cp", required_argument, 0, O_CP},        {"micro-batch", required_argument, 0, O_MB},
      {"seq", required_argument, 0, O_SEQ},      {"global-batch", required_argument, 0, O_GB},
      {"tokens", required_argument, 0, O_TOK},   {"precision", required_argument, 0, O_PREC},
      {"zero", required_argument, 0, O_ZERO},    {"recompute", required_argument, 0, O_RC},
      {"schedule", required_argument, 0, O_SCHED}, {"vpp", required_argument, 0, O_VPP},
      {"bf16-moments", no_argument, 0, O_BF16},
      {"moe-imbalance", required_argument, 0, O_IMB}, {"mode", required_argument, 0, O_MODE},
      {"tpot", required_argument, 0, O_TPOT},    {"set", required_argument, 0, O_SET},
      {"top", required_argument, 0, O_TOP},      {"threads", required_argument, 0, 't'},
      {"json", no_argument, 0, O_JSON},          {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  args a = {0};
  a.o.seq = 4096, a.o.global_batch = 1024, a.o.tokens = 1e12, a.o.zero = 1, a.o.recompute = KEEL_RECOMPUTE_AUTO;
  a.o.moe_imbalance = 1, a.o.tpot = 0.05, a.o.vpp = 2, a.top = 5;
  int ch;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "m:c:t:h", opts, NULL)) != -1) {
    double v = 0;
    int ok = 1, *lay[] = {&a.fixed.tp, &a.fixed.pp, &a.fixed.dp, &a.fixed.ep, &a.fixed.cp, &a.fixed.micro};
    switch (ch) {
    case 'm': a.model = optarg; break;
    case 'c': a.cluster = optarg; break;
    case O_CMP: a.compare = optarg; break;
    case 't': a.threads = atoi(optarg); break;
    case 'h': usage(); return 0;
    case O_CHIPS: ok = parse_num(optarg, &a.chips) && a.chips >= 1 && a.chips == floor(a.chips) && a.chips < 1e7; break;
    case O_TP: case O_PP: case O_DP: case O_EP: case O_CP: case O_MB:
      ok = parse_num(optarg, &v) && v >= 1 && v == floor(v) && v < 1e7;
      *lay[ch - O_TP] = (int)v;
      break;
    case O_SEQ: ok = parse_num(optarg, &a.o.seq) && a.o.seq >= 1 && a.o.seq == floor(a.o.seq); break;
    case O_GB: ok = parse_num(optarg, &a.o.global_batch) && a.o.global_batch >= 1 && a.o.global_batch == floor(a.o.global_batch); break;
    case O_TOK: ok = parse_num(optarg, &a.o.tokens) && a.o.tokens > 0; break;
    case O_PREC:
      if (keel_prec_parse(&a.o.prec, optarg) != KEEL_OK) return keel_cli_usage_error("plan", keel_errmsg());
      a.prec_given = 1;
      break;
    case O_ZERO: ok = parse_num(optarg, &v) && v <= 3 && v == floor(v), a.o.zero = (int)v; break;
    case O_RC: ok = (int)(a.o.recompute = (keel_recompute)pick(optarg, recompute_names, 3)) >= 0; break;
    case O_SCHED: ok = (int)(a.o.schedule = (keel_schedule)pick(optarg, schedule_names, 3)) >= 0; break;
    case O_VPP: ok = parse_num(optarg, &v) && v >= 1 && v == floor(v) && v <= 1000, a.o.vpp = (int)v; break;
    case O_BF16: a.o.bf16_moments = 1; break;
    case O_IMB: ok = parse_num(optarg, &a.o.moe_imbalance) && a.o.moe_imbalance >= 1; break;
    case O_MODE:
      ok = !strcmp(optarg, "train") || !strcmp(optarg, "serve");
      a.o.serve = !strcmp(optarg, "serve");
      break;
    case O_TPOT: ok = parse_num(optarg, &a.o.tpot) && a.o.tpot > 0, a.o.tpot /= 1e3; break;
    case O_SET:
      if (a.n_set == 32) return keel_cli_usage_error("plan", "at most 32 --set");
      a.set[a.n_set++] = optarg;
      break;
    case O_TOP: ok = parse_num(optarg, &v) && v >= 1 && v <= 50, a.top = (int)v; break;
    case O_JSON: a.json = 1; break;
    default: return keel_cli_usage_error("plan", "bad option (see keel plan --help)");
    }
    if (!ok) {
      char msg[160] = "bad value";
      for (const struct option *op = opts; op->name; op++)
        if (op->val == ch) snprintf(msg, sizeof msg, "--%s: bad value '%s'", op->name, optarg);
      return keel_cli_usage_error("plan", msg);
    }
  }
  if (optind < argc) return keel_cli_usage_error("plan", "unexpected argument (see keel plan --help)");
  if (!a.model) return keel_cli_usage_error("plan", "--model CONFIG.json is required");
  if (!a.cluster == !a.compare) return keel_cli_usage_error("plan", "give one of --cluster NAME or --compare A,B,...");
  keel_backend_set_threads(a.threads);
  keel_backend_pin_threads(); /* as keel train runs: the local calibration measures kernels */
  keel_arch m;
  keel_status st = keel_arch_load(&m, a.model);
  if (st != KEEL_OK) return keel_cli_error("plan", st);

  /* the clusters */
  char *list = keel_xstrdup(a.compare ? a.compare : a.cluster), *save = NULL;
  int n = 0, rc = 0;
  keel_cluster c[16];
  keel_plan p[16], found[50];
  keel_plan_opts o[16];
  for (char *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
    if (n == 16) {
      rc = keel_cli_usage_error("plan", "at most 16 clusters in --compare");
      break;
    }
    if ((st = load_cluster(&c[n], tok, &a, &m)) != KEEL_OK) {
      rc = keel_cli_error("plan", st);
      break;
    }
    int k = plan_one(found, a.compare ? 1 : a.top, &m, &c[n], &a, &o[n]);
    if (k < 0) {
      fprintf(stderr, "keel plan: %s: %s\n", c[n].name, keel_errmsg());
      rc = 2;
      break;
    }
    p[n] = found[0];
    if (!a.compare && !a.json) {
      printf("model            %s: %s, %d layers, %.4g B parameters (%.4g B active per token)%s\n", a.model, m.family,
             m.layers, keel_arch_params(&m, 0, 1) / 1e9, keel_arch_params(&m, 1, 1) / 1e9,
             m.mtp ? ", MTP included" : "");
      printf("cluster          %s: %.0f x %s; %s\n", c[n].name, c[n].chips, c[n].chip, c[n].note);
      printf("run              %s, %s, seq %.0f%s", o[n].serve ? "serve" : "train", keel_prec_names[o[n].prec],
             o[n].seq, o[n].serve ? "\n" : "");
      if (!o[n].serve) printf(", global batch %.0f sequences (%.4g tokens per step)\n", o[n].global_batch, o[n].global_batch * o[n].seq);
      if (k > 1) {
        printf("\nbest layouts found (of the legal ones):\n");
        for (int i = 0; i < k; i++) {
          char lay[160];
          printf("  %d. %-60s %s %.4g %s, %.1f GiB/chip%s\n", i + 1, layout_str(&found[i], &o[n], lay, sizeof lay),
                 o[n].serve ? "decode" : "step", o[n].serve ? found[i].decode_tps_chip : found[i].step_s,
                 o[n].serve ? "tok/s/chip" : "s", found[i].mem_total / 1073741824.0, found[i].fits ? "" : " (does not fit)");
        }
      }
      printf("\n");
      if (o[n].serve) print_serve(&p[n], &c[n], &o[n]);
      else print_train(&p[n], &c[n], &o[n]);
      if (!p[n].fits) {
        fprintf(stderr, "keel plan: the model does not fit in %s's %.1f GiB per chip under any layout tried (best %.1f GiB)\n",
                c[n].name, c[n].hbm_bytes / 1073741824.0, p[n].mem_total / 1073741824.0);
        rc = 1;
      }
    }
    n++;
  }
  free(list);
  if (rc) return rc;
  if (a.json) {
    json_t *out = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(out, plan_json(&p[i], &c[i], &o[i]));
    char *s = json_dumps(a.compare ? out : json_array_get(out, 0), JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("%s\n", s);
    free(s);
    json_decref(out);
  } else if (a.compare) {
    printf("model %s (%.4g B parameters, %.4g B active), %s %s, seq %.0f\n\n", a.model, keel_arch_params(&m, 0, 1) / 1e9,
           keel_arch_params(&m, 1, 1) / 1e9, o[0].serve ? "serve" : "train", keel_prec_names[o[0].prec], o[0].seq);
    print_compare(p, c, o, n);
  }
  return 0;
}
