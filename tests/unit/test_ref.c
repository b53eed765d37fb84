/* keel against the PyTorch reference (tests/ref/deepseek_ref.py): for each
 * fixture (a model dir written by that script, in F32, BF16 and FP8 with block
 * scales, plus expected values), the logits, every loss term, every parameter
 * gradient, and the losses of 10 AdamW steps must match.
 * Fixtures: $KEEL_REF_FIXTURES or tests/ref/fixtures. */
#include <math.h>

#include "check.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "train/optim.h"

static double max_rel(const float *a, const float *b, size_t n) {
  double mx = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(b[i]) > mx) mx = fabs(b[i]);
    if (fabs(a[i] - b[i]) > diff) diff = fabs(a[i] - b[i]);
  }
  return diff / (mx + 1e-6);
}

static const keel_st_tensor *need(const keel_st_file *f, const char *name) {
  const keel_st_tensor *t = keel_st_find(f, name);
  CHECK_MSG(t != NULL, "fixture lacks %s", name);
  return t;
}

static void logits_of(const char *dir, const int32_t *x, int B, int T, const float *want, const char *what) {
  keel_model m;
  keel_status st = keel_model_load(&m, dir, keel_backend_cpu());
  CHECK_MSG(st == KEEL_OK, "%s", keel_errmsg());
  if (st) return;
  keel_model_reserve(&m, B, T);
  keel_model_forward(&m, x, NULL, B, T, 0);
  double e = max_rel(m.logits, want, (size_t)B * T * m.c.vocab_size);
  fprintf(stderr, "  %s logits: max relative error %.2e\n", what, e);
  CHECK_MSG(e <= 1e-4, "%s logits differ: %.3g", what, e);
  keel_model_free(&m);
}

static void check_fixture(const char *root, const char *name) {
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/%s", root, name);
  snprintf(path, sizeof path, "%s/expect.safetensors", dir);
  keel_st_file ex;
  if (keel_st_open(&ex, path)) {
    CHECK_MSG(0, "%s", keel_errmsg());
    return;
  }
  const keel_st_tensor *tt = need(&ex, "tokens"), *yt = need(&ex, "targets"), *lt = need(&ex, "loss"),
                       *gt = need(&ex, "logits"), *at = need(&ex, "adamw_losses");
  if (!tt || !yt || !lt || !gt || !at) return;
  int B = (int)tt->shape[0], T = (int)tt->shape[1];
  const int32_t *x = tt->data, *y = yt->data;
  const double *loss = lt->data;
  fprintf(stderr, "fixture %s:\n", name);
  snprintf(path, sizeof path, "%s/model", dir);
  logits_of(path, x, B, T, gt->data, "F32");
  char sub[600];
  snprintf(sub, sizeof sub, "%s/model-bf16", dir);
  logits_of(sub, x, B, T, need(&ex, "logits.bf16")->data, "BF16");
  snprintf(sub, sizeof sub, "%s/model-fp8", dir);
  logits_of(sub, x, B, T, need(&ex, "logits.fp8")->data, "FP8");
  snprintf(sub, sizeof sub, "%s/model-sharded", dir);
  logits_of(sub, x, B, T, gt->data, "F32 sharded");

  keel_model m;
  if (keel_model_load(&m, path, keel_backend_cpu())) {
    CHECK_MSG(0, "%s", keel_errmsg());
    return;
  }
  m.mtp_lambda = 0.3f;
  keel_model_reserve(&m, B, T);
  keel_model_zero_grad(&m);
  keel_model_forward(&m, x, y, B, T, 1);
  double got[4] = {m.loss, m.lm_loss, m.mtp_loss, m.bal_loss};
  static const char *const terms[4] = {"loss", "lm", "mtp", "balance"};
  for (int k = 0; k < 4; k++)
    CHECK_MSG(fabs(got[k] - loss[k]) <= 1e-4 * fabs(loss[k]) + 1e-7, "%s: %.8f vs %.8f", terms[k], got[k], loss[k]);
  keel_model_backward(&m, x, B, T);
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < m.tab.n; i++) {
    const keel_param_info *p = &m.tab.t[i];
    char gname[128];
    snprintf(gname, sizeof gname, "grad.%s", p->name);
    const keel_st_tensor *g = need(&ex, gname);
    if (!g) continue;
    double e = max_rel(m.grads + p->offset, g->data, p->numel);
    if (e > worst) worst = e, worst_name = p->name;
    CHECK_MSG(e <= 1e-4, "gradient of %s: max relative error %.3g", p->name, e);
  }
  fprintf(stderr, "  loss %.6f (lm %.6f, mtp %.6f, balance %.6f); %d gradients, worst %.2e (%s)\n", got[0], got[1],
          got[2], got[3], m.tab.n, worst, worst_name);

  /* 10 AdamW steps with the reference's settings, bias update after each */
  keel_model_free(&m);
  keel_model_load(&m, path, keel_backend_cpu());
  m.mtp_lambda = 0.3f;
  keel_model_reserve(&m, B, T);
  keel_adamw opt;
  keel_adamw_init(&opt, m.tab.total, 0.9f, 0.95f, 1e-8f, 0.1f, 0);
  const double *want = at->data;
  double worst_step = 0;
  for (int s = 0; s < 10; s++) {
    keel_model_zero_grad(&m);
    keel_model_zero_load(&m);
    keel_model_forward(&m, x, y, B, T, 1);
    keel_model_backward(&m, x, B, T);
    double e = fabs(m.loss - want[s]) / fabs(want[s]);
    if (e > worst_step) worst_step = e;
    CHECK_MSG(e <= 1e-4, "AdamW step %d: loss %.8f vs %.8f", s + 1, m.loss, want[s]);
    keel_adamw_step(&opt, &m, 1e-2f, 1.0f);
    keel_model_update_bias(&m, 1e-3f);
  }
  fprintf(stderr, "  10 AdamW steps: %.6f -> %.6f, worst relative error %.2e\n", want[0], want[9], worst_step);
  keel_adamw_free(&opt);
  keel_model_free(&m);
  keel_st_close(&ex);
}

int main(void) {
  const char *root = getenv("KEEL_REF_FIXTURES");
  if (!root || !*root) root = "tests/ref/fixtures";
  check_fixture(root, "full");
  check_fixture(root, "dense");
  return check_done("test_ref");
}
