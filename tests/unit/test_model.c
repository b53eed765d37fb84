/* model/: config parsing, parameter layout, and every gradient of a tiny model
 * with all features on (q-LoRA, YaRN, expert groups with noaux_tc, shared
 * experts, dense and MoE layers, balance loss, MTP of depth 2) against central
 * finite differences of the loss. */
#include <math.h>
#include <omp.h>

#include "check.h"
#include "core/rng.h"
#include "infer/session.h"
#include "model/model.h"
#include "train/optim.h"

static const char *tiny_json =
    "{\"vocab_size\": 37, \"hidden_size\": 16, \"intermediate_size\": 24, \"moe_intermediate_size\": 8,"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"n_shared_experts\": 1, \"n_routed_experts\": 8,"
    " \"num_experts_per_tok\": 2, \"n_group\": 4, \"topk_group\": 2, \"first_k_dense_replace\": 1,"
    " \"routed_scaling_factor\": 2.5, \"scoring_func\": \"sigmoid\", \"topk_method\": \"noaux_tc\","
    " \"norm_topk_prob\": true, \"q_lora_rank\": 12, \"kv_lora_rank\": 10, \"qk_nope_head_dim\": 6,"
    " \"qk_rope_head_dim\": 4, \"v_head_dim\": 5, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000,"
    " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 4,"
    " \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0, \"mscale_all_dim\": 1.0},"
    " \"num_nextn_predict_layers\": 2, \"aux_loss_alpha\": 0.01, \"max_position_embeddings\": 64}";

static double rel_err(const float *a, const float *b, int n) {
  double mx = 0, diff = 0;
  for (int v = 0; v < n; v++) mx = fmax(mx, fabs(b[v])), diff = fmax(diff, fabs(a[v] - b[v]));
  return diff / mx;
}

static keel_config parse(const char *s) {
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  keel_config c;
  keel_status st = keel_config_parse(&c, j, "tiny");
  CHECK_MSG(st == KEEL_OK, "%s", keel_errmsg());
  json_decref(j);
  return c;
}

static void test_config(void) {
  keel_config c = parse(tiny_json);
  CHECK(c.q_lora_rank == 12 && c.yarn && c.num_nextn_predict_layers == 2);
  CHECK(keel_config_is_moe_layer(&c, 1) && !keel_config_is_moe_layer(&c, 0));
  /* V3's YaRN numbers (spec 4.3 and 6.3) */
  const char *v3 = "{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 1,"
                   " \"intermediate_size\": 8, \"kv_lora_rank\": 4, \"qk_nope_head_dim\": 128, \"qk_rope_head_dim\": 64,"
                   " \"v_head_dim\": 4, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"beta_fast\": 32,"
                   " \"beta_slow\": 1, \"mscale\": 1.0, \"mscale_all_dim\": 1.0, \"original_max_position_embeddings\": 4096}}";
  keel_config c3 = parse(v3);
  { /* what keel writes it reads back: dense and MoE configs */
    const keel_config *both[2] = {&c, &c3};
    for (int k = 0; k < 2; k++) {
      json_t *j = keel_config_to_json(both[k]);
      keel_config back;
      keel_status st = keel_config_parse(&back, j, "written");
      CHECK_MSG(st == KEEL_OK && back.hidden_size == both[k]->hidden_size &&
                    back.n_routed_experts == both[k]->n_routed_experts &&
                    back.moe_intermediate_size == both[k]->moe_intermediate_size,
                "config round trip %d: %s", k, st ? keel_errmsg() : "fields differ");
      json_decref(j);
    }
  }
  double f[32];
  keel_config_rope_freqs(&c3, f);
  CHECK(fabs(f[0] - 1.0) < 1e-12 && fabs(f[10] / 5.623413e-2 - 1) < 1e-5 && fabs(f[11] / 3.900693e-2 - 1) < 1e-5);
  CHECK(fabs(f[16] / 5.5e-3 - 1) < 1e-4 && fabs(f[23] / 3.333804e-5 - 1) < 1e-5 && fabs(f[31] / 3.333804e-6 - 1) < 1e-5);
  CHECK(fabs(keel_config_softmax_scale(&c3) - 0.1352338f) < 1e-6);
  static const char *const bad[] = {
      "{}",
      "{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"kv_lora_rank\": 4,"
      " \"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 3, \"v_head_dim\": 2, \"intermediate_size\": 4}",
      "{\"vocab_size\": 10, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"kv_lora_rank\": 4,"
      " \"qk_nope_head_dim\": 2, \"qk_rope_head_dim\": 2, \"v_head_dim\": 2, \"n_routed_experts\": 4,"
      " \"moe_intermediate_size\": 4, \"num_experts_per_tok\": 5}",
      "{\"vocab_size\": \"x\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    json_t *j = json_loads(bad[i], 0, NULL);
    keel_config cb;
    CHECK_MSG(keel_config_parse(&cb, j, "bad.json") == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "bad.json: "),
              "case %zu: %s", i, keel_errmsg());
    json_decref(j);
  }
  keel_param_table tab;
  keel_params_table(&tab, &c);
  size_t total, active;
  keel_params_count(&c, &tab, &total, &active);
  CHECK(total == tab.total && active < total);
  int found = 0;
  for (int i = 0; i < tab.n; i++) found += strcmp(tab.t[i].name, "model.layers.1.mlp.experts.7.down_proj.weight") == 0 ||
                                           strcmp(tab.t[i].name, "model.layers.3.eh_proj.weight") == 0;
  CHECK(found == 2);
  keel_params_table_free(&tab);
}

/* The loss, and a hash of every routing decision: top-K is discontinuous, so a
 * finite difference across a changed selection measures the jump, not the slope. */
static double loss_at(keel_model *m, const int32_t *x, const int32_t *y, int B, int T, uint64_t *routing) {
  keel_model_forward(m, x, y, B, T, 0);
  uint64_t h = 1469598103934665603ULL;
  int LD = m->c.num_hidden_layers + m->c.num_nextn_predict_layers;
  for (int l = 0; l < LD; l++) {
    if (!m->w.layers[l].moe) continue;
    int rows = l < m->c.num_hidden_layers ? B * T : B * (T - (l - m->c.num_hidden_layers + 1));
    for (int i = 0; i < rows * m->c.num_experts_per_tok; i++) h = (h ^ (uint64_t)m->acts[l].sel[i]) * 1099511628211ULL;
  }
  *routing = h;
  return m->loss;
}

static void test_gradients(void) {
  keel_config c = parse(tiny_json);
  keel_model m;
  keel_model_init(&m, &c, keel_backend_cpu());
  keel_params_init(m.params, &m.tab, 11, 0.3f);
  /* perturb norms too, so their gradients are not symmetric */
  keel_rng r;
  keel_rng_init(&r, 5);
  for (int i = 0; i < m.tab.n; i++)
    if (m.tab.t[i].is_norm)
      for (size_t k = 0; k < m.tab.t[i].numel; k++) m.params[m.tab.t[i].offset + k] = 1.0f + 0.2f * keel_rng_normal(&r);
  for (int e = 0; e < 8; e++) m.bias[1 * 8 + e] = 0.05f * (float)(e % 3); /* the biased selection path */
  m.balance_alpha = 0.01f;
  enum { B = 2, T = 7 };
  int32_t x[B * T], y[B * T];
  for (int i = 0; i < B * T; i++) x[i] = (int32_t)keel_rng_below(&r, 37), y[i] = (int32_t)keel_rng_below(&r, 37);
  CHECK(keel_model_reserve(&m, B, T) == KEEL_OK);
  keel_model_zero_grad(&m);
  uint64_t route0, route1, route2;
  loss_at(&m, x, y, B, T, &route0);
  keel_model_zero_load(&m);
  keel_model_forward(&m, x, y, B, T, 1);
  double base = m.loss;
  CHECK(m.lm_loss > 0 && m.mtp_loss > 0 && m.bal_loss > 0);
  keel_model_backward(&m, x, B, T);
  float *g = keel_xmalloc(m.tab.total * sizeof *g);
  memcpy(g, m.grads, m.tab.total * sizeof *g);
  int bad = 0, checked = 0, skipped = 0;
  double worst = 0;
  for (int i = 0; i < m.tab.n; i++) {
    const keel_param_info *p = &m.tab.t[i];
    for (int s = 0; s < 3; s++) {
      size_t k = p->offset + (size_t)keel_rng_below(&r, p->numel);
      float old = m.params[k];
      const float h = 1e-2f;
      m.params[k] = old + h;
      double lp = loss_at(&m, x, y, B, T, &route1);
      m.params[k] = old - h;
      double lm = loss_at(&m, x, y, B, T, &route2);
      m.params[k] = old;
      if (route1 != route0 || route2 != route0) {
        skipped++;
        continue;
      }
      double fd = (lp - lm) / (2 * h), an = g[k];
      double err = fabs(fd - an) / (fabs(fd) + fabs(an) + 1e-3);
      checked++;
      if (err > worst) worst = err;
      if (err > 0.05) {
        bad++;
        fprintf(stderr, "  %s[%zu]: analytic %.6g, finite difference %.6g\n", p->name, k - p->offset, an, fd);
      }
    }
  }
  fprintf(stderr, "gradient check: %d entries (%d skipped: routing changed), worst relative error %.3g, loss %.6f\n",
          checked, skipped, worst, base);
  CHECK(checked > 300);
  CHECK_MSG(bad == 0, "%d of %d gradients disagree with finite differences", bad, checked);
  free(g);
  keel_model_free(&m);
}

/* Decoding token by token with the latent cache gives the full-sequence logits. */
static void test_cached_decode(void) {
  keel_config c = parse(tiny_json);
  keel_model m;
  keel_model_init(&m, &c, keel_backend_cpu());
  keel_params_init(m.params, &m.tab, 3, 0.3f);
  for (int e = 0; e < 8; e++) m.bias[8 + e] = 0.03f * (float)(e % 4);
  enum { T = 40, CTX = 48 };
  int32_t x[T];
  keel_rng r;
  keel_rng_init(&r, 9);
  for (int i = 0; i < T; i++) x[i] = (int32_t)keel_rng_below(&r, 37);
  keel_model_reserve(&m, 1, T);
  keel_model_forward(&m, x, NULL, 1, T, 0);
  float *full = keel_xmalloc((size_t)T * 37 * sizeof *full);
  memcpy(full, m.logits, (size_t)T * 37 * sizeof *full);
  /* each weight type: token by token (decode path), then the whole prompt at once and in two parts
   * (GEMM path), against the full-sequence forward of the model holding the same weights dequantised */
  float *ref = keel_xmalloc((size_t)T * 37 * sizeof *ref);
  for (int t = KEEL_W_F32; t <= KEEL_W_FP8; t++) {
    keel_imodel im;
    keel_imodel_from_model(&im, &m, (keel_wtype)t);
    keel_model dq;
    keel_model_init(&dq, &c, keel_backend_cpu());
    memcpy(dq.params, m.params, m.tab.total * sizeof(float));
    memcpy(dq.bias, m.bias, (size_t)(c.num_hidden_layers + c.num_nextn_predict_layers) * 8 * sizeof(float));
    for (int i = 0; i < im.tab.n; i++)
      for (int row = 0; im.wm[i].data && row < im.wm[i].M; row++)
        keel_wmat_row(dq.params + im.tab.t[i].offset + (size_t)row * im.wm[i].K, &im.wm[i], row, 0, im.wm[i].K);
    keel_model_reserve(&dq, 1, T);
    keel_model_forward(&dq, x, NULL, 1, T, 0);
    memcpy(ref, dq.logits, (size_t)T * 37 * sizeof *ref);
    double vs_f32 = 0;
    for (int i = 0; i < T; i++) vs_f32 = fmax(vs_f32, rel_err(ref + i * 37, full + i * 37, 37));
    keel_model_free(&dq);
    keel_session s;
    CHECK(keel_session_init(&s, &im, CTX) == KEEL_OK);
    double worst = 0;
    for (int i = 0; i < T; i++) {
      CHECK(keel_session_step(&s, x[i]) == KEEL_OK);
      worst = fmax(worst, rel_err(s.logits, ref + i * 37, 37));
    }
    fprintf(stderr, "cached decode, %s weights: worst relative logit error %.2e over %d positions "
            "(the dequantised model against f32: %.2e)\n", keel_wtype_name((keel_wtype)t), worst, T, vs_f32);
    CHECK(worst <= 1e-4);
    keel_session_reset(&s);
    CHECK(keel_session_feed(&s, x, T) == KEEL_OK && s.len == T);
    double e1 = rel_err(s.logits, ref + (T - 1) * 37, 37);
    keel_session_reset(&s);
    CHECK(keel_session_feed(&s, x, 25) == KEEL_OK && keel_session_feed(&s, x + 25, T - 25) == KEEL_OK);
    double e2 = rel_err(s.logits, ref + (T - 1) * 37, 37);
    CHECK_MSG(e1 <= 1e-4 && e2 <= 1e-4, "%s prefill: %.2e, in two parts: %.2e", keel_wtype_name((keel_wtype)t), e1, e2);
    for (int i = T; i < CTX; i++) CHECK(keel_session_step(&s, 1) == KEEL_OK);
    CHECK(keel_session_step(&s, 1) == KEEL_ERR_ARG); /* full */
    keel_session_free(&s);
    keel_imodel_free(&im);
  }
  free(full), free(ref);
  keel_model_free(&m);
}

/* --recompute: the same loss terms, gradients and expert loads, bit for bit, from a model
 * that keeps only each block's output (three main layers, so two are recomputed). */
static void test_recompute(void) {
  char json[2048];
  snprintf(json, sizeof json, "%.*s, \"num_hidden_layers\": 3}", (int)strlen(tiny_json) - 1, tiny_json);
  keel_config c = parse(json);
  enum { B = 2, T = 9 };
  int32_t x[B * T], y[B * T];
  keel_rng r;
  keel_rng_init(&r, 4);
  for (int i = 0; i < B * T; i++) x[i] = (int32_t)keel_rng_below(&r, 37), y[i] = (int32_t)keel_rng_below(&r, 37);
  keel_model m[2];
  for (int k = 0; k < 2; k++) {
    keel_model_init(&m[k], &c, keel_backend_cpu());
    keel_params_init(m[k].params, &m[k].tab, 3, 0.3f);
    m[k].recompute = k;
    keel_model_reserve(&m[k], B, T);
    keel_model_zero_grad(&m[k]);
    keel_model_zero_load(&m[k]);
    keel_model_forward(&m[k], x, y, B, T, 1);
    keel_model_backward(&m[k], x, B, T);
  }
  CHECK(m[1].acts_shared && m[1].acts[1].ln1 == m[1].acts[0].ln1 && m[1].acts[1].out != m[1].acts[0].out);
  CHECK(m[0].loss == m[1].loss && m[0].bal_loss == m[1].bal_loss && m[0].bal_loss > 0);
  CHECK(memcmp(m[0].grads, m[1].grads, m[0].tab.total * sizeof(float)) == 0);
  CHECK(memcmp(m[0].load, m[1].load, (size_t)(c.num_hidden_layers + c.num_nextn_predict_layers) * 8 * sizeof(float)) == 0);
  for (int k = 0; k < 2; k++) keel_model_free(&m[k]);
}

/* The gradient norm against a plain double sum, and the same bits on one thread and on two (its
 * chunks' partial sums are added in chunk order). */
static void test_grad_norm(void) {
  keel_model m; /* keel_grad_norm reads the gradients and their count only */
  memset(&m, 0, sizeof m);
  m.tab.total = 5 * (1 << 16) + 1234; /* several of its chunks and a partial one */
  m.grads = keel_xmalloc(m.tab.total * sizeof *m.grads);
  keel_rng r;
  keel_rng_init(&r, 9);
  double want = 0;
  for (size_t i = 0; i < m.tab.total; i++) {
    m.grads[i] = (float)keel_rng_normal(&r) * (i % 7 == 0 ? 100.0f : 0.01f);
    want += (double)m.grads[i] * m.grads[i];
  }
  want = sqrt(want);
  double got[2];
  for (int k = 0; k < 2; k++) {
    omp_set_num_threads(k + 1);
    got[k] = keel_grad_norm(&m);
  }
  omp_set_num_threads(omp_get_num_procs());
  CHECK_MSG(fabs(got[0] - want) <= 1e-12 * want, "grad norm %.17g, plain sum %.17g", got[0], want);
  CHECK(got[0] == got[1]);
  free(m.grads);
}

int main(void) {
  test_config();
  test_grad_norm();
  test_gradients();
  test_recompute();
  test_cached_decode();
  return check_done("test_model");
}
