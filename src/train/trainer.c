/* Training loop. Every result depends only on the data, the seed and the
 * options: kernels split work over outputs, never over reductions, so the
 * thread count does not change a bit, and a resumed run replays exactly. */
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/cpu.h"
#include "../data/loader.h"
#include "../io/file.h"
#include "../io/json.h"
#include "../model/weights.h"
#include "checkpoint.h"

void keel_train_defaults(keel_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->steps = 1000, o->batch = 8, o->seq = 256, o->grad_accum = 1;
  o->lr = 1e-3f, o->min_lr = 1e-4f, o->warmup = 100, o->schedule = KEEL_SCHED_COSINE;
  o->wd = 0.1f, o->clip = 1.0f, o->beta1 = 0.9f, o->beta2 = 0.95f;
  o->bias_gamma = 1e-3f, o->balance_alpha = -1, o->mtp_lambda = 0.3f;
  o->seed = 1, o->eval_every = 100, o->eval_batches = 10, o->ckpt_every = 500;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *joinp(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = keel_xmalloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

/* Training FLOPs per token: 6 x (active matrix parameters) plus attention scores
 * and values over an average causal span of T/2, forward and backward. */
static double flops_per_token(const keel_model *m, int T) {
  size_t total, active;
  keel_params_count(&m->c, &m->tab, &total, &active);
  const keel_config *c = &m->c;
  double attn = (double)c->num_hidden_layers * c->num_attention_heads * (keel_config_dq(c) + c->v_head_dim) * T;
  return 6.0 * ((double)active - (double)c->vocab_size * c->hidden_size) + 3.0 * attn;
}

static double evaluate(keel_model *m, const keel_shard *val, int B, int T, int batches, int32_t *x, int32_t *y) {
  keel_loader l;
  if (keel_loader_init(&l, val, B, T, 12345)) return NAN;
  double sum = 0;
  for (int i = 0; i < batches; i++) {
    keel_loader_next(&l, x, y);
    keel_model_forward(m, x, y, B, T, 0);
    sum += m->lm_loss;
  }
  keel_loader_free(&l);
  return sum / batches;
}

/* Keeps the metrics lines of steps <= step (a resumed run rewrites what follows). */
static keel_status trim_metrics(const char *path, long step) {
  if (!keel_path_exists(path)) return KEEL_OK;
  char *buf;
  size_t len;
  keel_status st = keel_file_read(path, &buf, &len);
  if (st) return st;
  char *out = keel_xmalloc(len + 1);
  size_t n = 0;
  for (char *line = buf; line < buf + len;) {
    char *nl = memchr(line, '\n', (size_t)(buf + len - line));
    size_t l = nl ? (size_t)(nl - line) + 1 : (size_t)(buf + len - line);
    long s = -1;
    if (sscanf(line, "{\"step\": %ld", &s) == 1 && s <= step) memcpy(out + n, line, l), n += l;
    line += l;
  }
  st = keel_write_atomic(path, out, n);
  free(buf), free(out);
  return st;
}

static void fmt_time(char *b, size_t n, double s) {
  if (s < 0 || !isfinite(s)) s = 0;
  if (s >= 3600) snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
  else snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* Fault injection for tests: KEEL_INJECT=kill@step=N sends SIGKILL to this
 * process right after step N (and its checkpoint, if one is due). */
static long inject_kill_step(void) {
  const char *s = getenv("KEEL_INJECT");
  long n;
  if (s && sscanf(s, "kill@step=%ld", &n) == 1) return n;
  return -1;
}

keel_status keel_train_run(const keel_train_opts *o) {
  keel_status st;
  keel_model m;
  keel_shard train = {0}, val = {0};
  keel_loader loader = {0};
  keel_adamw opt = {0};
  int have_model = 0, have_val = 0;
  FILE *metrics = NULL;
  int32_t *x = NULL, *y = NULL;
  char *train_p = joinp(o->data, "train.bin"), *val_p = joinp(o->data, "val.bin"),
       *metrics_p = joinp(o->out, "metrics.jsonl"), *final_p = joinp(o->out, "final");
  keel_backend_set_threads(o->threads);
  if ((st = keel_mkdirs(o->out))) goto done;
  if ((st = keel_shard_open(&train, train_p))) goto done;
  if (keel_path_exists(val_p)) {
    if ((st = keel_shard_open(&val, val_p))) goto done;
    if (val.h.n_tokens > (uint64_t)o->seq) have_val = 1;
    else keel_shard_close(&val); /* too short for one window: no evaluation */
  }
  if (o->model_dir) {
    if ((st = keel_model_load(&m, o->model_dir, keel_backend_cpu()))) goto done;
  } else {
    keel_config c;
    if ((st = keel_config_load(&c, o->config_path))) goto done;
    keel_model_init(&m, &c, keel_backend_cpu());
    keel_params_init(m.params, &m.tab, o->seed, 0.006f);
  }
  have_model = 1;
  if (train.h.vocab_size > (uint32_t)m.c.vocab_size) {
    st = keel_fail(KEEL_ERR_ARG, "%s: the tokenizer has %u ids but the model's vocab_size is %d", train_p,
                   train.h.vocab_size, m.c.vocab_size);
    goto done;
  }
  m.mtp_lambda = o->mtp_lambda;
  m.balance_alpha = o->balance_alpha >= 0 ? o->balance_alpha : m.c.aux_loss_alpha;
  int B = o->batch, T = o->seq;
  if ((st = keel_model_reserve(&m, B, T))) goto done;
  if ((st = keel_loader_init(&loader, &train, B, T, o->seed))) {
    keel_fail_prefix(st, train_p);
    goto done;
  }
  keel_adamw_init(&opt, m.tab.total, o->beta1, o->beta2, 1e-8f, o->wd);
  keel_ckpt_state cs = {0, loader.state, o->seed};
  long latest;
  keel_ckpt_latest(o->out, &latest);
  if (latest >= 0) {
    if ((st = keel_ckpt_load(o->out, latest, &m, &opt, &cs))) goto done;
    if ((st = keel_loader_restore(&loader, &cs.loader))) goto done;
    fprintf(stderr, "keel train: resuming %s from step %ld\n", o->out, latest);
    if ((st = trim_metrics(metrics_p, latest))) goto done;
  }
  metrics = fopen(metrics_p, "a");
  if (!metrics) {
    st = keel_fail(KEEL_ERR_IO, "%s: cannot open for appending", metrics_p);
    goto done;
  }
  x = keel_xmalloc((size_t)B * T * sizeof *x);
  y = keel_xmalloc((size_t)B * T * sizeof *y);
  int threads = o->threads > 0 ? o->threads : keel_cpu_count();
  double peak = keel_cpu_peak_flops_per_core() * threads, fpt = flops_per_token(&m, T);
  size_t total_p, active_p;
  keel_params_count(&m.c, &m.tab, &total_p, &active_p);
  fprintf(stderr,
          "keel train: %.2fM parameters (%.2fM active per token), %ld steps of %d x %d x %d tokens, %d threads, "
          "measured peak %.0f GFLOP/s\n",
          total_p / 1e6, active_p / 1e6, o->steps, o->grad_accum, B, T, threads, peak / 1e9);
  int L = m.c.num_hidden_layers, LD = L + m.c.num_nextn_predict_layers, E = m.c.n_routed_experts;
  double t_start = now();
  long first = cs.step;
  for (long step = cs.step; step < o->steps; step++) {
    double t0 = now();
    keel_model_zero_grad(&m);
    keel_model_zero_load(&m);
    double loss = 0, lm = 0, mtp = 0, bal = 0;
    for (int a = 0; a < o->grad_accum; a++) {
      keel_loader_next(&loader, x, y);
      keel_model_forward(&m, x, y, B, T, 1);
      keel_model_backward(&m, x, B, T);
      loss += m.loss, lm += m.lm_loss, mtp += m.mtp_loss, bal += m.bal_loss;
    }
    if (o->grad_accum > 1) {
      float k = 1.0f / (float)o->grad_accum;
      for (size_t i = 0; i < m.tab.total; i++) m.grads[i] *= k;
      loss *= k, lm *= k, mtp *= k, bal *= k;
    }
    double gnorm = keel_grad_clip(&m, o->clip);
    float lr = keel_lr_at(o->schedule, step, o->steps, o->warmup, o->lr, o->min_lr);
    int finite = isfinite(loss) && isfinite(gnorm);
    if (finite) {
      keel_adamw_step(&opt, &m, lr);
      keel_model_update_bias(&m, o->bias_gamma);
    }
    double dt = now() - t0, tps = (double)B * T * o->grad_accum / dt;
    fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"lm_loss\": %.6f, \"mtp_loss\": %.6f, \"balance_loss\": %.6g, "
            "\"lr\": %.6g, \"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"mfu\": %.4f%s",
            step + 1, loss, lm, mtp, bal, lr, gnorm, tps, fpt * tps / peak, finite ? "" : ", \"skipped\": true");
    if (E) {
      fprintf(metrics, ", \"expert_load\": [");
      int first_l = 1;
      for (int l = 0; l < LD; l++) {
        if (!m.w.layers[l].moe) continue;
        float mn = INFINITY, mx = 0;
        for (int e = 0; e < E; e++) {
          float v = m.load[(size_t)l * E + e];
          mn = v < mn ? v : mn, mx = v > mx ? v : mx;
        }
        fprintf(metrics, "%s{\"layer\": %d, \"min\": %.0f, \"max\": %.0f}", first_l ? "" : ", ", l, mn, mx);
        first_l = 0;
      }
      fprintf(metrics, "]");
    }
    fprintf(metrics, "}\n");
    fflush(metrics);
    if (!o->quiet && isatty(2)) {
      char eta[32];
      double per = (now() - t_start) / (double)(step + 1 - first);
      fmt_time(eta, sizeof eta, per * (double)(o->steps - step - 1));
      fprintf(stderr, "\rstep %ld/%ld loss %.4f lr %.2e %.0f tok/s ETA %s\033[K", step + 1, o->steps, loss, lr, tps, eta);
    }
    int last = step + 1 == o->steps;
    if (have_val && o->eval_every > 0 && ((step + 1) % o->eval_every == 0 || last)) {
      double vl = evaluate(&m, &val, B, T, o->eval_batches, x, y);
      fprintf(metrics, "{\"step\": %ld, \"val_loss\": %.6f}\n", step + 1, vl);
      fflush(metrics);
      fprintf(stderr, "%sstep %ld: train lm loss %.4f (total %.4f), val loss %.4f (perplexity %.1f)\n",
              isatty(2) && !o->quiet ? "\r\033[K" : "", step + 1, lm, loss, vl, exp(vl));
    }
    if (o->ckpt_every > 0 && ((step + 1) % o->ckpt_every == 0 || last)) {
      cs.step = step + 1;
      cs.loader = loader.state;
      if ((st = keel_ckpt_save(o->out, &m, &opt, &cs, o->data))) goto done;
    }
    if (step + 1 == inject_kill_step()) raise(SIGKILL);
  }
  if (!o->quiet && isatty(2)) fprintf(stderr, "\n");
  if ((st = keel_model_save(&m, final_p))) goto done;
  st = keel_copy_tokenizer(o->data, final_p);
  if (!st) fprintf(stderr, "keel train: done in %.1fs; model in %s\n", now() - t_start, final_p);
done:
  if (metrics) fclose(metrics);
  free(x), free(y);
  keel_adamw_free(&opt);
  keel_loader_free(&loader);
  if (have_model) keel_model_free(&m);
  keel_shard_close(&train);
  if (have_val) keel_shard_close(&val);
  free(train_p), free(val_p), free(metrics_p), free(final_p);
  return st;
}
