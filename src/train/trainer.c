/* Training loop. Every result depends only on the data, the seed and the
 * options: kernels split work over outputs, never over reductions, so the
 * thread count does not change a bit, and a resumed run replays exactly. */
#include "../core/clock.h"
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/cpu.h"
#include "../data/loader.h"
#include "../io/file.h"
#include "../io/json.h"
#include "../model/weights.h"
#include "../backend/abft.h"
#include "../core/rng.h"
#include "checkpoint.h"
#include "events.h"

void keel_train_defaults(keel_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->steps = 1000, o->batch = 8, o->seq = 256, o->grad_accum = 1;
  o->lr = 1e-3f, o->min_lr = 1e-4f, o->warmup = 100, o->schedule = KEEL_SCHED_COSINE;
  o->wd = 0.1f, o->clip = 1.0f, o->beta1 = 0.9f, o->beta2 = 0.95f;
  o->bias_gamma = 1e-3f, o->balance_alpha = -1, o->mtp_lambda = 0.3f;
  o->seed = 1, o->eval_every = 100, o->eval_batches = 10, o->ckpt_every = 500;
  o->keep_last = 3, o->keep_every = 0, o->spike_z = 6.0f, o->spike_window = 50, o->max_rollbacks = 2;
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

static void log_save(keel_ckpt_writer *w, const char *run) {
  if (!keel_ckpt_writer_poll(w)) return;
  if (w->ok) {
    keel_event(run, "save", "\"step\": %ld, \"bytes\": %llu, \"seconds\": %.3f", w->done_step,
               (unsigned long long)w->bytes, w->seconds);
    return;
  }
  fprintf(stderr, "keel train: checkpoint of step %ld failed: %s; training goes on, the next save retries\n",
          w->done_step, w->err);
  keel_event(run, "save_failed", "\"step\": %ld, \"reason\": \"%s\"", w->done_step, w->err);
}

typedef struct guard {
  double *win; /* recent losses of applied steps (ring) */
  int n, cap, head;
  long spike_step[64]; /* steps that spiked, and how often */
  int spike_count[64], n_spikes;
} guard;

/* z-score of loss against the window, or 0 while the window is short. */
static double spike_z(const guard *g, double loss) {
  if (g->n < 10) return 0;
  double mean = 0, var = 0;
  for (int i = 0; i < g->n; i++) mean += g->win[i];
  mean /= g->n;
  for (int i = 0; i < g->n; i++) var += (g->win[i] - mean) * (g->win[i] - mean);
  double sd = sqrt(var / g->n);
  if (sd < 1e-3 * fabs(mean)) sd = 1e-3 * fabs(mean); /* a flat window must not make noise a spike */
  return (loss - mean) / sd;
}

static void guard_push(guard *g, double loss) {
  g->win[g->head] = loss;
  g->head = (g->head + 1) % g->cap;
  if (g->n < g->cap) g->n++;
}

static int guard_count(guard *g, long step) {
  for (int i = 0; i < g->n_spikes; i++)
    if (g->spike_step[i] == step) return ++g->spike_count[i];
  if (g->n_spikes < 64) {
    g->spike_step[g->n_spikes] = step;
    g->spike_count[g->n_spikes++] = 1;
  }
  return 1;
}

static int is_skipped(const keel_ckpt_state *cs, long step) {
  for (int i = 0; i < cs->n_skipped; i++)
    if (cs->skipped[i] == step) return 1;
  return 0;
}

static void flip_bit(float *p, size_t n, uint64_t seed) {
  keel_rng r;
  keel_rng_init(&r, keel_rng_key(seed, 0, 0, 98));
  size_t i = (size_t)keel_rng_below(&r, n);
  uint32_t u;
  memcpy(&u, &p[i], 4);
  u ^= 1u << (23 + (int)keel_rng_below(&r, 8)); /* an exponent bit */
  memcpy(&p[i], &u, 4);
}

/* One optimizer step's forward and backward over grad_accum micro-batches. */
static void compute_step(keel_model *m, keel_loader *l, const keel_train_opts *o, int skip_batch, int32_t *x,
                         int32_t *y, double out[4]) {
  int B = o->batch, T = o->seq;
  keel_model_zero_grad(m);
  keel_model_zero_load(m);
  out[0] = out[1] = out[2] = out[3] = 0;
  if (skip_batch) /* a batch that caused a spike: drawn and dropped */
    for (int a = 0; a < o->grad_accum; a++) keel_loader_next(l, x, y);
  for (int a = 0; a < o->grad_accum; a++) {
    keel_loader_next(l, x, y);
    keel_model_forward(m, x, y, B, T, 1);
    keel_model_backward(m, x, B, T);
    out[0] += m->loss, out[1] += m->lm_loss, out[2] += m->mtp_loss, out[3] += m->bal_loss;
  }
  if (o->grad_accum > 1) {
    float k = 1.0f / (float)o->grad_accum;
    long n = (long)m->tab.total;
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) m->grads[i] *= k;
    for (int i = 0; i < 4; i++) out[i] *= k;
  }
}

/* Replays the step on the reference kernels and compares the gradients with the
 * fast kernels'; returns the max relative difference. */
static double replay_reference(keel_model *m, keel_loader *l, const keel_loader_state *at, const keel_train_opts *o,
                               int skip_batch, int32_t *x, int32_t *y) {
  float *fast = keel_xmalloc(m->tab.total * sizeof *fast);
  memcpy(fast, m->grads, m->tab.total * sizeof *fast);
  keel_loader_state after = l->state;
  const keel_backend *be = m->be;
  m->be = keel_backend_cpu_reference();
  keel_loader_restore(l, at);
  double tmp[4];
  compute_step(m, l, o, skip_batch, x, y, tmp);
  m->be = be;
  double mx = 0, diff = 0;
  for (size_t i = 0; i < m->tab.total; i++) {
    mx = fmax(mx, fabs(m->grads[i]));
    diff = fmax(diff, fabs(m->grads[i] - fast[i]));
  }
  memcpy(m->grads, fast, m->tab.total * sizeof *fast);
  keel_loader_restore(l, &after);
  free(fast);
  return diff / (mx + 1e-30);
}

keel_status keel_train_run(const keel_train_opts *o) {
  keel_status st;
  keel_model m;
  keel_shard train = {0}, val = {0};
  keel_loader loader = {0};
  keel_adamw opt = {0};
  keel_ckpt_writer writer;
  keel_inject inj;
  guard gd = {0};
  int have_model = 0, have_val = 0, have_writer = 0;
  FILE *metrics = NULL;
  int32_t *x = NULL, *y = NULL;
  char *train_p = keel_path_join(o->data, "train.bin"), *val_p = keel_path_join(o->data, "val.bin"),
       *metrics_p = keel_path_join(o->out, "metrics.jsonl"), *final_p = keel_path_join(o->out, "final");
  keel_backend_set_threads(o->threads);
  keel_backend_pin_threads();
  if ((st = keel_inject_parse(&inj, o->inject ? o->inject : getenv("KEEL_INJECT")))) goto done;
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
  m.recompute = o->recompute;
  if ((st = keel_model_reserve(&m, B, T))) goto done;
  if ((st = keel_loader_init(&loader, &train, B, T, o->seed))) {
    keel_fail_prefix(st, train_p);
    goto done;
  }
  keel_adamw_init(&opt, m.tab.total, o->beta1, o->beta2, 1e-8f, o->wd, o->bf16_moments);
  keel_ckpt_state cs;
  memset(&cs, 0, sizeof cs);
  cs.loader = loader.state;
  cs.seed = o->seed;
  long latest = -1, *avail;
  int n_avail = keel_ckpt_list(o->out, &avail);
  for (int i = 0; i < n_avail && latest < 0; i++) { /* newest first; one that fails to verify or load is passed over */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ckpt/step-%ld", o->out, avail[i]);
    if (!keel_ckpt_verify(dir) && !keel_ckpt_load(o->out, avail[i], &m, &opt, &cs) &&
        !keel_loader_restore(&loader, &cs.loader)) {
      latest = avail[i];
      break;
    }
    fprintf(stderr, "keel: checkpoint step-%ld is not usable: %s; trying the previous one\n", avail[i], keel_errmsg());
    keel_event(o->out, "checkpoint_unusable", "\"step\": %ld", avail[i]);
  }
  free(avail);
  if (n_avail > 0 && latest < 0) { /* none usable: start over from the initial weights */
    keel_model_free(&m);
    have_model = 0;
    st = keel_fail(KEEL_ERR_FORMAT, "%s: no usable checkpoint (see above); move ckpt/ aside to start over", o->out);
    goto done;
  }
  if (latest >= 0) {
    fprintf(stderr, "keel train: resuming %s from step %ld\n", o->out, latest);
    keel_event(o->out, "resume", "\"step\": %ld", latest);
    if ((st = trim_metrics(metrics_p, latest))) goto done;
  } else {
    keel_event(o->out, "start", "\"steps\": %ld", o->steps);
  }
  keel_ckpt_writer_init(&writer, o->out, o->data, o->keep_last, o->keep_every, &inj);
  have_writer = 1;
  metrics = fopen(metrics_p, "a");
  if (!metrics) {
    st = keel_fail(KEEL_ERR_IO, "%s: cannot open for appending", metrics_p);
    goto done;
  }
  x = keel_xmalloc((size_t)B * T * sizeof *x);
  y = keel_xmalloc((size_t)B * T * sizeof *y);
  gd.cap = o->spike_window > 0 ? o->spike_window : 1;
  gd.win = keel_xcalloc((size_t)gd.cap, sizeof *gd.win);
  int threads = o->threads > 0 ? o->threads : keel_cpu_count();
  double peak = keel_cpu_peak_flops_per_core() * threads, fpt = keel_params_train_flops(&m.c, &m.tab, T);
  size_t total_p, active_p;
  keel_params_count(&m.c, &m.tab, &total_p, &active_p);
  fprintf(stderr,
          "keel train: %.2fM parameters (%.2fM active per token), %ld steps of %d x %d x %d tokens, %d threads, "
          "measured peak %.0f GFLOP/s\n",
          total_p / 1e6, active_p / 1e6, o->steps, o->grad_accum, B, T, threads, peak / 1e9);
  int LD = m.c.num_hidden_layers + m.c.num_nextn_predict_layers, E = m.c.n_routed_experts;
  double t_start = keel_now();
  long first = cs.step;
  for (long step = cs.step; step < o->steps;) {
    double t0 = keel_now();
    memset(m.phase_s, 0, sizeof m.phase_s);
    keel_inject_item *it;
    if ((it = keel_inject_take(&inj, KEEL_FAULT_SLOW, step + 1))) usleep((useconds_t)atoi(it->arg) * 1000);
    if (keel_inject_take(&inj, KEEL_FAULT_HANG, step + 1))
      for (;;) pause(); /* a hung step: only the supervisor's watchdog ends this */
    keel_loader_state at = loader.state;
    int skip_batch = is_skipped(&cs, step + 1);
    double ls[4];
    int checked = o->abft_every > 0 && (step + 1) % o->abft_every == 0;
    m.be = checked ? keel_backend_abft(keel_backend_cpu()) : keel_backend_cpu();
    long det0 = keel_abft_get_stats()->detections;
    for (int i = 0; i < inj.n; i++) /* bitflip@step=N:gemm arms the GEMM hook for this step */
      if (!inj.items[i].fired && inj.items[i].kind == KEEL_FAULT_BITFLIP && inj.items[i].at == step + 1 &&
          !strcmp(inj.items[i].arg, "gemm"))
        inj.items[i].fired = 1, keel_abft_arm_flip((uint64_t)step * 7919 + 1, NULL);
    compute_step(&m, &loader, o, skip_batch, x, y, ls);
    if (checked && keel_abft_get_stats()->detections != det0) { /* silent corruption in a GEMM: recompute */
      keel_event(o->out, "sdc_detected", "\"step\": %ld, \"check\": \"abft\", \"gemms\": %ld", step + 1,
                 keel_abft_get_stats()->detections - det0);
      fprintf(stderr, "keel train: step %ld: a GEMM failed its checksum; recomputing the step\n", step + 1);
      keel_loader_restore(&loader, &at);
      compute_step(&m, &loader, o, skip_batch, x, y, ls);
    }
    m.be = keel_backend_cpu();
    if (o->replay_every > 0 && (step + 1) % o->replay_every == 0) {
      double d = replay_reference(&m, &loader, &at, o, skip_batch, x, y);
      keel_event(o->out, "replay", "\"step\": %ld, \"max_rel_diff\": %.3g, \"ok\": %s", step + 1, d,
                 d <= 1e-3 ? "true" : "false");
      if (d > 1e-3) { /* fast and reference kernels disagree: trust neither, recompute */
        fprintf(stderr, "keel train: step %ld: fast and reference kernels differ by %.3g; recomputing\n", step + 1, d);
        keel_event(o->out, "sdc_detected", "\"step\": %ld, \"check\": \"replay\", \"max_rel_diff\": %.3g", step + 1, d);
        keel_loader_restore(&loader, &at);
        compute_step(&m, &loader, o, skip_batch, x, y, ls);
      }
    }
    double loss = ls[0], lm = ls[1], mtp = ls[2], bal = ls[3];
    if ((it = keel_inject_take(&inj, KEEL_FAULT_NAN, step + 1))) {
      if (!strcmp(it->arg, "grad")) m.grads[m.tab.total / 2] = NAN;
      else loss = NAN;
    }
    if (keel_inject_take(&inj, KEEL_FAULT_SPIKE, step + 1)) {
      loss *= 50, lm *= 50;
      for (size_t i = 0; i < m.tab.total; i++) m.grads[i] *= 50;
    }
    for (int i = 0; i < inj.n; i++)
      if (!inj.items[i].fired && inj.items[i].kind == KEEL_FAULT_BITFLIP && inj.items[i].at == step + 1) {
        inj.items[i].fired = 1;
        flip_bit(!strcmp(inj.items[i].arg, "param") ? m.params : m.grads, m.tab.total, (uint64_t)step);
      }
    double t_opt = keel_now(), gnorm = keel_grad_norm(&m);
    float lr = keel_lr_at(o->schedule, step, o->steps, o->warmup, o->lr, o->min_lr);
    if (!isfinite(loss) || !isfinite(gnorm)) { /* skipped and counted; the batch is spent */
      keel_event(o->out, "skip_nonfinite", "\"step\": %ld, \"loss_finite\": %s, \"grad_finite\": %s", step + 1,
                 isfinite(loss) ? "true" : "false", isfinite(gnorm) ? "true" : "false");
      fprintf(stderr, "keel train: step %ld: non-finite %s; step skipped\n", step + 1, isfinite(loss) ? "gradient" : "loss");
      fprintf(metrics, "{\"step\": %ld, \"skipped\": \"nonfinite\"}\n", step + 1);
      step++;
      continue;
    }
    double z = spike_z(&gd, lm);
    if (o->spike_z > 0 && z > o->spike_z) { /* a loss spike: roll back and skip this batch */
      int times = guard_count(&gd, step + 1);
      if (times > o->max_rollbacks) {
        keel_event(o->out, "stop", "\"step\": %ld, \"reason\": \"loss spikes again after %d rollbacks\"", step + 1,
                   times - 1);
        st = keel_fail(KEEL_ERR_ARG, "step %ld: the loss spikes again after %d rollbacks; stopping", step + 1, times - 1);
        goto done;
      }
      keel_ckpt_writer_wait(&writer);
      log_save(&writer, o->out);
      long good;
      keel_ckpt_latest_good(o->out, &good, stderr);
      fprintf(stderr, "keel train: step %ld: loss %.4f is a spike (z = %.1f)", step + 1, lm, z);
      if (good < 0) { /* nothing to roll back to: drop the step */
        fprintf(stderr, "; no checkpoint yet, step skipped\n");
        keel_event(o->out, "skip_spike", "\"step\": %ld, \"loss\": %.6f, \"z\": %.2f", step + 1, lm, z);
        fprintf(metrics, "{\"step\": %ld, \"skipped\": \"spike\"}\n", step + 1);
        step++;
        continue;
      }
      long bad = step + 1;
      if ((st = keel_ckpt_load(o->out, good, &m, &opt, &cs))) goto done;
      if ((st = keel_loader_restore(&loader, &cs.loader))) goto done;
      if (!is_skipped(&cs, bad) && cs.n_skipped < KEEL_MAX_SKIPS) cs.skipped[cs.n_skipped++] = bad;
      fprintf(stderr, "; rolled back to step %ld, its batch will be skipped\n", good);
      keel_event(o->out, "rollback", "\"step\": %ld, \"to\": %ld, \"loss\": %.6f, \"z\": %.2f, \"skip\": %ld", bad, good,
                 lm, z, bad);
      fclose(metrics);
      metrics = NULL;
      if ((st = trim_metrics(metrics_p, good))) goto done;
      if (!(metrics = fopen(metrics_p, "a"))) {
        st = keel_fail(KEEL_ERR_IO, "%s: cannot open for appending", metrics_p);
        goto done;
      }
      /* the loss window stays: its losses came before the spike */
      step = good;
      continue;
    }
    keel_adamw_step(&opt, &m, lr, keel_grad_clip_scale(o->clip, gnorm));
    keel_model_update_bias(&m, o->bias_gamma);
    guard_push(&gd, lm);
    double now = keel_now(), dt = now - t0, tps = (double)B * T * o->grad_accum / dt;
    fprintf(metrics, "{\"step\": %ld, \"loss\": %.6f, \"lm_loss\": %.6f, \"mtp_loss\": %.6f, \"balance_loss\": %.6g, "
            "\"lr\": %.6g, \"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"mfu\": %.4f, \"step_s\": %.4f%s",
            step + 1, loss, lm, mtp, bal, lr, gnorm, tps, fpt * tps / peak, dt, skip_batch ? ", \"skipped_batch\": true" : "");
    fprintf(metrics, ", \"phase_s\": {\"attention\": %.4f, \"ffn\": %.4f, \"head\": %.4f, \"optimizer\": %.4f}",
            m.phase_s[KEEL_PHASE_ATTENTION], m.phase_s[KEEL_PHASE_FFN], m.phase_s[KEEL_PHASE_HEAD], now - t_opt);
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
    step++;
    if (!o->quiet && isatty(2)) {
      char eta[32];
      double per = (keel_now() - t_start) / (double)(step - first);
      fmt_time(eta, sizeof eta, per * (double)(o->steps - step));
      fprintf(stderr, "\rstep %ld/%ld loss %.4f lr %.2e %.0f tok/s ETA %s\033[K", step, o->steps, loss, lr, tps, eta);
    }
    int last = step == o->steps;
    if (have_val && o->eval_every > 0 && (step % o->eval_every == 0 || last)) {
      double vl = evaluate(&m, &val, B, T, o->eval_batches, x, y);
      fprintf(metrics, "{\"step\": %ld, \"val_loss\": %.6f}\n", step, vl);
      fflush(metrics);
      fprintf(stderr, "%sstep %ld: train lm loss %.4f (total %.4f), val loss %.4f (perplexity %.1f)\n",
              isatty(2) && !o->quiet ? "\r\033[K" : "", step, lm, loss, vl, exp(vl));
    }
    int due = o->ckpt_every > 0 && (step % o->ckpt_every == 0 || last);
    if (due || last) keel_ckpt_writer_wait(&writer); /* at most one save in flight */
    log_save(&writer, o->out);
    if (due) {
      cs.step = step;
      cs.loader = loader.state;
      keel_ckpt_writer_submit(&writer, &m, &opt, &cs, last); /* the last save has nothing to overlap with */
      if (last) {
        keel_ckpt_writer_wait(&writer);
        log_save(&writer, o->out);
      }
    }
    if (o->heartbeat_fd > 0 && write(o->heartbeat_fd, "", 1) < 0) { /* the supervisor is gone */
    }
    if (keel_inject_take(&inj, KEEL_FAULT_KILL, step)) {
      keel_ckpt_writer_wait(&writer);
      log_save(&writer, o->out);
      raise(SIGKILL);
    }
  }
  if (!o->quiet && isatty(2)) fprintf(stderr, "\n");
  keel_ckpt_writer_wait(&writer);
  if ((st = keel_model_save(&m, final_p))) goto done;
  st = keel_copy_tokenizer(o->data, final_p);
  if (!st) {
    keel_event(o->out, "done", "\"step\": %ld, \"seconds\": %.3f", o->steps, keel_now() - t_start);
    if (o->abft_every > 0)
      fprintf(stderr, "keel train: ABFT checked %ld GEMMs, %ld mismatches, %.2fs spent checking\n",
              keel_abft_get_stats()->checks, keel_abft_get_stats()->detections, keel_abft_get_stats()->seconds);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "keel train: done in %.1fs, peak RSS %.0f MB; model in %s\n", keel_now() - t_start,
            ru.ru_maxrss / 1024.0, final_p);
  }
done:
  if (have_writer) keel_ckpt_writer_free(&writer);
  if (metrics) fclose(metrics);
  free(x), free(y), free(gd.win);
  keel_adamw_free(&opt);
  keel_loader_free(&loader);
  if (have_model) keel_model_free(&m);
  keel_shard_close(&train);
  if (have_val) keel_shard_close(&val);
  free(train_p), free(val_p), free(metrics_p), free(final_p);
  return st;
}
