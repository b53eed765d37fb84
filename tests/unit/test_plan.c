/* plan/: the reliability formulas against the numbers their papers print
 * (spec clusters.md C1 and C3). */
#include <math.h>

#include <stdio.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "model/params.h"
#include "plan/cost.h"
#include "plan/reliability.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }
static int rel(double a, double b, double tol) { return fabs(a - b) <= tol * fabs(b); }

static keel_arch model(const char *path) {
  keel_arch a;
  if (keel_arch_load(&a, path) != KEEL_OK) {
    fprintf(stderr, "%s\n", keel_errmsg());
    memset(&a, 0, sizeof a);
  }
  return a;
}

/* Parameter counts of published models, from their config.json alone. */
static void test_arch(void) {
  keel_arch v3 = model("configs/models/deepseek-v3.json");
  CHECK(v3.mla && v3.experts == 256 && v3.topk == 8 && v3.mtp == 1 && v3.first_dense == 3);
  /* 671B in the main model, 37B activated per token (DeepSeek-V3 report); the MTP module
   * brings the HF checkpoint to 685B */
  CHECK_MSG(rel(keel_arch_params(&v3, 0, 0), 671e9, 0.005), "%.4g", keel_arch_params(&v3, 0, 0));
  CHECK_MSG(rel(keel_arch_params(&v3, 1, 0), 37e9, 0.02), "%.4g", keel_arch_params(&v3, 1, 0));
  CHECK_MSG(rel(keel_arch_params(&v3, 0, 1) + (double)v3.vocab * v3.d, 685e9, 0.01), "%.4g",
            keel_arch_params(&v3, 0, 1)); /* HF also stores the MTP's own embedding and head copies */
  keel_arch lite = model("configs/models/deepseek-v2-lite.json");
  CHECK_MSG(rel(keel_arch_params(&lite, 0, 0), 15706484224.0, 0.001), "%.10g", keel_arch_params(&lite, 0, 0));
  keel_arch l405 = model("configs/models/llama-3.1-405b.json"), l8 = model("configs/models/llama-3-8b.json");
  CHECK(!strcmp(l405.family, "llama") && l405.kv_heads == 8 && l405.gated);
  CHECK_MSG(rel(keel_arch_params(&l405, 0, 0), 405.85e9, 0.002), "%.5g", keel_arch_params(&l405, 0, 0));
  CHECK_MSG(rel(keel_arch_params(&l8, 0, 0), 8.03e9, 0.002), "%.5g", keel_arch_params(&l8, 0, 0));
  keel_arch g3 = model("configs/models/gpt3-175b.json"), gxl = model("configs/models/gpt2-xl.json");
  CHECK(!strcmp(g3.family, "gpt") && !g3.gated && g3.tied && g3.ffn == 4 * g3.d);
  CHECK_MSG(rel(keel_arch_params(&g3, 0, 0), 174.6e9, 0.005), "%.5g", keel_arch_params(&g3, 0, 0));
  /* GPT-2 XL: 1.56B without position embeddings (which keel's RoPE-centred count leaves out) */
  CHECK_MSG(rel(keel_arch_params(&gxl, 0, 0), 1.5576e9, 0.005), "%.5g", keel_arch_params(&gxl, 0, 0));
  /* training FLOPs per token: 6N plus the causal attention core; GPT-3's 6N + 6 L d S
   * (Kaplan et al.) with S = 2048 */
  double f = keel_arch_train_flops_per_token(&g3, 2048), n = keel_arch_params(&g3, 1, 0);
  CHECK_MSG(rel(f, 6 * n + 6.0 * 96 * 12288 * 2049 / 2 * 2, 0.001), "%.5g vs %.5g", f,
            6 * n + 6.0 * 96 * 12288 * 2048);
  /* errors name the file and field */
  keel_arch bad;
  CHECK(keel_arch_parse(&bad, "{\"num_hidden_layers\": 2}", "x.json") == KEEL_ERR_FORMAT &&
        strstr(keel_errmsg(), "x.json") && strstr(keel_errmsg(), "hidden_size"));
  CHECK(keel_arch_parse(&bad, "{\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 3, \"vocab_size\": 10, \"intermediate_size\": 8}", "y.json") ==
            KEEL_ERR_FORMAT &&
        strstr(keel_errmsg(), "num_key_value_heads"));
  CHECK(keel_arch_parse(&bad, "{\"hidden_size\": -1}", "z.json") == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "hidden_size"));
  CHECK(keel_arch_parse(&bad, "[1,", "w.json") == KEEL_ERR_FORMAT);
}

/* The FLOPs per token the trainer's MFU counts (from the model's own parameter table) agree
 * with the planner's (from config.json alone), MTP modules included: in bench-b the MTP block
 * and its second pass through the head are about a third of the step. */
static void test_train_flops(void) {
  const char *cfgs[] = {"configs/bench-a.json", "configs/bench-b.json"};
  for (int i = 0; i < 2; i++) {
    keel_config c;
    keel_arch a = model(cfgs[i]);
    if (keel_config_load(&c, cfgs[i]) != KEEL_OK) {
      CHECK_MSG(0, "%s", keel_errmsg());
      continue;
    }
    keel_param_table tab;
    keel_params_table(&tab, &c);
    double f = keel_params_train_flops(&c, &tab, 256), p = keel_arch_train_flops_per_token(&a, 256);
    CHECK_MSG(rel(f, p, 0.01), "%s: trainer %.4g, planner %.4g FLOPs per token", cfgs[i], f, p);
    size_t total, active;
    keel_params_count(&c, &tab, &total, &active);
    double main_only = 6.0 * ((double)active - (double)c.vocab_size * c.hidden_size);
    CHECK_MSG(c.num_nextn_predict_layers ? f > 1.3 * main_only : f < 1.1 * main_only, "%s: %.4g vs %.4g", cfgs[i], f,
              main_only);
    keel_params_table_free(&tab);
  }
}

static void test_formulas(void) {
  keel_cluster c;
  CHECK(keel_cluster_load(&c, "h800") == KEEL_OK && c.domain == 8 && c.up_bw == 160e9 && c.out_bw == 50e9);
  /* a large GEMM runs at peak x efficiency x shape factors; a skinny one at the bandwidth */
  double m = 8192, t = keel_plan_gemm_time(&c, KEEL_PREC_BF16, m, m, m, 2, 2);
  double sh = m / (m + c.gemm_half);
  CHECK(rel(t, 2 * m * m * m / (c.peak[KEEL_PREC_BF16] * c.gemm_eff * sh * sh * sh), 1e-12));
  t = keel_plan_gemm_time(&c, KEEL_PREC_BF16, 1, 8192, 8192, 2, 2);
  CHECK(rel(t, (8192 * 2 + 8192.0 * 8192 * 2 + 8192 * 2) / (c.hbm_bw * c.mem_eff), 1e-12));
  CHECK(keel_plan_gemm_time(&c, KEEL_PREC_FP8, m, m, m, 1, 1) > t / 1e6); /* 8-bit uses its own efficiency */
  /* ring all-reduce: 2 (n-1)/n V / B plus 2 (n-1) latencies; all-gather half that */
  CHECK(rel(keel_plan_allreduce_time(1e9, 8, 1e11, 1e-5), 2 * 7.0 / 8 * 1e-2 + 14e-5, 1e-12));
  CHECK(rel(keel_plan_allgather_time(1e9, 8, 1e11, 1e-5), 7.0 / 8 * 1e-2 + 7e-5, 1e-12));
  CHECK(keel_plan_allreduce_time(1e9, 1, 1e11, 1e-5) == 0);
  /* pipeline bubbles: 1F1B (p-1)(F+B), interleaved / v, DualPipe (p/2-1)(F&B + B - 3W) */
  CHECK(keel_plan_bubble(KEEL_SCHEDULE_1F1B, 16, 0, 1, 2) == 45);
  CHECK(keel_plan_bubble(KEEL_SCHEDULE_INTERLEAVED, 16, 3, 1, 2) == 15);
  CHECK(keel_plan_bubble(KEEL_SCHEDULE_DUALPIPE, 16, 0, 1, 2) == 7 * 2);
  CHECK(keel_plan_bubble(KEEL_SCHEDULE_1F1B, 1, 0, 1, 2) == 0);
  /* ZeRO paper, Figure 1: 7.5B parameters on 64 GPUs, K = 12: 120, 31.4, 16.6, 1.9 GB */
  static const double zero_gb[4] = {120, 31.4, 16.6, 1.88};
  for (int z = 0; z < 4; z++) {
    double w, g, o;
    keel_plan_zero_bytes(7.5e9, 64, z, KEEL_PREC_BF16, 0, &w, &g, &o);
    CHECK_MSG(rel((w + g + o) / 1e9, zero_gb[z], 0.01), "ZeRO-%d %.2f GB", z, (w + g + o) / 1e9);
  }
  double w, g, o;
  keel_plan_zero_bytes(1e9, 8, 1, KEEL_PREC_FP32, 1, &w, &g, &o); /* keel on CPU: fp32 copy, bf16 moments */
  CHECK(w == 4e9 && g == 4e9 && o == 4e9 / 8);
}

static keel_plan_opts v3_run(void) {
  keel_plan_opts o = {0};
  o.chips = 2048, o.seq = 4096, o.global_batch = 15360, o.tokens = 1e12, o.prec = KEEL_PREC_FP8, o.zero = 1;
  o.recompute = KEEL_RECOMPUTE_AUTO, o.schedule = KEEL_SCHEDULE_DUALPIPE, o.bf16_moments = 1, o.moe_imbalance = 1;
  o.tpot = 0.05;
  return o;
}

static void test_layouts(void) {
  keel_arch v3 = model("configs/models/deepseek-v3.json");
  keel_cluster c;
  CHECK(keel_cluster_load(&c, "hgx-h800") == KEEL_OK);
  keel_plan_opts o = v3_run();
  keel_layout l = {1, 16, 128, 64, 1, 1};
  keel_plan p;
  /* DeepSeek-V3 on 2,048 H800 (PP16, EP64, ZeRO-1 DP, FP8, seq 4K, 15,360 sequences):
   * published 180K H800 GPU-hours per trillion tokens */
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &l) == KEEL_OK && p.fits);
  CHECK_MSG(rel(p.chip_hours, 180e3, 0.10), "DeepSeek-V3: %.4g GPU-hours per 1T tokens", p.chip_hours);
  CHECK(p.bubble_s > 0 && p.ep_s > 0 && p.dp_s > 0 && p.tp_s == 0 && p.goodput < 1 && p.goodput > 0.9);
  CHECK(rel(p.step_s * p.tokens_per_s, 15360.0 * 4096, 1e-9));
  /* illegal layouts say why */
  keel_layout bad = {1, 16, 64, 64, 1, 1};
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &bad) == KEEL_ERR_ARG && strstr(keel_errmsg(), "does not match"));
  bad = (keel_layout){1, 16, 128, 48, 1, 1};
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &bad) == KEEL_ERR_ARG && strstr(keel_errmsg(), "does not divide dp"));
  bad = (keel_layout){1, 8, 256, 128, 1, 1};
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &bad) == KEEL_OK); /* 256 experts over 128 ranks is fine */
  bad = (keel_layout){3, 1, 682, 2, 1, 1};
  o.chips = 2046;
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &bad) == KEEL_ERR_ARG && strstr(keel_errmsg(), "heads"));
  o = v3_run();
  keel_cluster cm;
  CHECK(keel_cluster_load(&cm, "cloudmatrix384") == KEEL_OK);
  o.chips = 384;
  keel_layout l384 = {1, 16, 24, 8, 1, 1};
  CHECK(keel_plan_eval(&p, &v3, &cm, &o, &l384) == KEEL_ERR_ARG && strstr(keel_errmsg(), "fp8"));
  /* the search finds legal, fitting layouts, best first */
  o.prec = KEEL_PREC_BF16;
  keel_plan best[4];
  int n = keel_plan_search(best, 4, &v3, &cm, &o, &(keel_layout){0});
  CHECK(n == 4 && best[0].fits && best[0].tokens_per_s >= best[1].tokens_per_s && best[1].tokens_per_s >= best[3].tokens_per_s);
  /* Llama 3 405B does not fit on one 8-GPU A100 node under any layout */
  keel_arch l405 = model("configs/models/llama-3.1-405b.json");
  keel_cluster a100;
  CHECK(keel_cluster_load(&a100, "a100") == KEEL_OK);
  o = v3_run(), o.chips = 8, o.prec = KEEL_PREC_BF16, o.schedule = KEEL_SCHEDULE_1F1B, o.global_batch = 64;
  n = keel_plan_search(best, 1, &l405, &a100, &o, &(keel_layout){0});
  CHECK(n == 1 && !best[0].fits);
  /* ...and a cluster of 8 chips cannot take 16-way pipelining */
  CHECK(keel_plan_search(best, 1, &l405, &a100, &o, &(keel_layout){.pp = 16}) == -1 && strstr(keel_errmsg(), "no legal layout"));
}

static void test_cluster_files(void) {
  keel_cluster c;
  CHECK(keel_cluster_load(&c, "gb200-nvl72") == KEEL_OK && c.domain == 72 && c.chips == 72);
  CHECK(keel_cluster_set(&c, "scale_out_gb_s=25") == KEEL_OK && c.out_bw == 25e9);
  CHECK(keel_cluster_set(&c, "nonsense=1") == KEEL_ERR_ARG && strstr(keel_errmsg(), "nonsense"));
  CHECK(keel_cluster_set(&c, "hbm_gb=-3") == KEEL_ERR_ARG);
  CHECK(keel_cluster_apply_json(&c, "{\"base\": \"hgx-h20\", \"chips\": 64}", "mine.json") == KEEL_OK &&
        c.chips == 64 && c.peak[KEEL_PREC_BF16] == 148e12);
  CHECK(keel_cluster_apply_json(&c, "{\"hbm_gb\": \"lots\"}", "mine.json") == KEEL_ERR_FORMAT &&
        strstr(keel_errmsg(), "mine.json") && strstr(keel_errmsg(), "hbm_gb"));
  CHECK(keel_cluster_apply_json(&c, "{\"base\": \"nowhere\"}", "mine.json") == KEEL_ERR_FORMAT);
  CHECK(keel_cluster_load(&c, "tpu-v9") == KEEL_ERR_ARG && strstr(keel_errmsg(), "not a preset"));
  for (const char *const *n = keel_cluster_presets(); *n; n++) {
    CHECK_MSG(keel_cluster_load(&c, *n) == KEEL_OK && keel_cluster_check(&c) == KEEL_OK, "%s: %s", *n, keel_errmsg());
    CHECK(keel_cluster_power_per_chip(&c) > 0 && c.fail_chip_day > 0);
  }
}

/* Serving: KV capacity and a decode batch that meets the target. */
static void test_serve(void) {
  keel_arch v3 = model("configs/models/deepseek-v3.json");
  keel_cluster c;
  CHECK(keel_cluster_load(&c, "cloudmatrix384") == KEEL_OK);
  keel_plan_opts o = v3_run();
  o.serve = 1, o.chips = 384, o.prec = KEEL_PREC_INT8;
  keel_layout l = {1, 1, 384, 128, 1, 1};
  keel_plan p;
  CHECK(keel_plan_eval(&p, &v3, &c, &o, &l) == KEEL_OK && p.fits);
  double kv_tok = 61 * (512 + 64) * 2.0;
  CHECK(rel(p.kv_tokens_chip, (c.hbm_bytes - p.mem_weights - c.reserve_bytes) / kv_tok, 1e-9));
  CHECK(p.decode_step_s <= o.tpot && p.decode_batch >= 1 && p.prefill_tps_chip > 0);
  keel_plan q;
  o.tpot = 0.015;
  CHECK(keel_plan_eval(&q, &v3, &c, &o, &l) == KEEL_OK && q.decode_batch < p.decode_batch && q.decode_tps_chip < p.decode_tps_chip);
  l.pp = 2, l.dp = 192, l.ep = 64;
  CHECK(keel_plan_eval(&q, &v3, &c, &o, &l) == KEEL_ERR_ARG && strstr(keel_errmsg(), "pipeline"));
}

int main(void) {
  test_arch();
  test_train_flops();
  test_formulas();
  test_layouts();
  test_cluster_files();
  test_serve();
  /* Daly's own test points: restart 10 min, checkpoint 5 min; MTBF 24 h, 6 h, 15 min -> 116.7, 56.7, 9.1 min */
  double d = 5 * 60;
  CHECK_MSG(near(keel_daly_interval(d, 24 * 3600) / 60, 116.7, 0.05), "%.2f", keel_daly_interval(d, 24 * 3600) / 60);
  CHECK_MSG(near(keel_daly_interval(d, 6 * 3600) / 60, 56.7, 0.05), "%.2f", keel_daly_interval(d, 6 * 3600) / 60);
  CHECK_MSG(near(keel_daly_interval(d, 15 * 60) / 60, 9.1, 0.05), "%.2f", keel_daly_interval(d, 15 * 60) / 60);
  CHECK(keel_daly_interval(3600, 1200) == 1200); /* delta >= 2M: the MTBF itself */
  /* Young at the Llama-3 MTBF (11,135 s): 5 s -> 5.6 min, 20 s -> 11.1, 60 s -> 19.3, 300 s -> 43 */
  static const double cost[4] = {5, 20, 60, 300}, minutes[4] = {5.6, 11.1, 19.3, 43};
  for (int i = 0; i < 4; i++) {
    double t = keel_young_interval(cost[i], 11135) / 60;
    CHECK_MSG(near(t, minutes[i], minutes[i] < 40 ? 0.05 : 0.5), "Young %.0f s: %.2f min", cost[i], t);
  }
  /* Llama 3: 419 unexpected interruptions in 54 days on 16,384 GPUs (2,048 nodes): MTBF 3.09 h,
   * 3.79e-3 per node-day */
  double rate = 419.0 / 54 / 2048;
  CHECK_MSG(near(rate, 3.79e-3, 0.005e-3), "%.4g", rate);
  CHECK_MSG(near(keel_mtbf_s(rate, 2048) / 3600, 3.09, 0.005), "%.3f", keel_mtbf_s(rate, 2048) / 3600);
  /* Meta's node-series model: 6.5e-3 per node-day -> 1.80 h at 16,384 GPUs, 0.225 h at 131,072 */
  CHECK_MSG(near(keel_mtbf_s(6.5e-3, 16384 / 8) / 3600, 1.80, 0.005), "%.3f", keel_mtbf_s(6.5e-3, 2048) / 3600);
  CHECK_MSG(near(keel_mtbf_s(6.5e-3, 131072 / 8) / 3600, 0.225, 0.001), "%.4f", keel_mtbf_s(6.5e-3, 16384) / 3600);
  CHECK(isinf(keel_mtbf_s(0, 100)));
  /* goodput: no failures leaves only the checkpoint cost; failures cost more, and Daly's interval
   * beats intervals on either side of it */
  CHECK(near(keel_goodput(3600, 60, 600, INFINITY), 3600.0 / 3660, 1e-12));
  double M = 6 * 3600, best = keel_daly_interval(d, M), g = keel_goodput(best, d, 600, M);
  CHECK(g > keel_goodput(best / 3, d, 600, M) && g > keel_goodput(best * 3, d, 600, M));
  CHECK_MSG(near(g, 1 - sqrt(2 * d / M), 0.03), "goodput %.3f vs 1 - sqrt(2 delta / M) %.3f", g, 1 - sqrt(2 * d / M));
  /* Meta's ETTR: 1,024 nodes failing 2.34 per 1,000 node-days, 10 min restart, 5 min non-blocking
   * checkpoints: about 0.98 */
  double e = keel_ettr_meta(1024, 2.34e-3 / 86400, 600, 300, 0);
  CHECK_MSG(e > 0.97 && e < 0.99, "ETTR %.4f", e);
  CHECK(keel_ettr_meta(1024, 2.34e-3 / 86400, 600, 300, 30) < e); /* blocking writes cost */
  return check_done("test_plan");
}
