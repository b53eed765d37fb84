/* keel bench: kernel figures against the machine's own limits, measured in the
 * same run: GEMM GFLOP/s against the FMA peak, memory bandwidth (triad). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include "../backend/backend.h"
#include "../core/cpu.h"
#include "../core/rng.h"
#include "../infer/session.h"
#include "../model/params.h"
#include "../train/optim.h"
#include "cli.h"

/* The median of n values (reordered). */
static double median(double *v, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
      double x = v[j];
      v[j] = v[j - 1], v[j - 1] = x;
    }
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The median of reps (at most 15) runs: what a long run sees on a shared machine, where the
 * best of a few is too optimistic. */
static double median_of(int reps, void (*fn)(void *), void *ctx) {
  double t[15];
  for (int r = 0; r < reps; r++) {
    double t0 = keel_now();
    fn(ctx);
    t[r] = keel_now() - t0;
  }
  return median(t, reps);
}

static double best_of(int reps, void (*fn)(void *), void *ctx) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = keel_now();
    fn(ctx);
    double dt = keel_now() - t0;
    if (dt < best) best = dt;
  }
  return best;
}

typedef struct gemm_case {
  const keel_backend *be;
  int N, K, M, which; /* 0 forward, 1 dx, 2 dw */
  float *x, *w, *o, *dx, *dw;
} gemm_case;

static void run_gemm(void *p) {
  gemm_case *g = p;
  if (g->which == 0) g->be->matmul(g->o, g->x, g->w, g->N, g->K, g->M, 0);
  else if (g->which == 1) g->be->matmul_backward(g->dx, NULL, g->o, g->x, g->w, g->N, g->K, g->M);
  else g->be->matmul_backward(NULL, g->dw, g->o, g->x, g->w, g->N, g->K, g->M);
}

typedef struct triad {
  float *a, *b, *c;
  long n;
} triad;

static void run_triad(void *p) {
  triad *t = p;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < t->n; i++) t->a[i] = t->b[i] + 1.5f * t->c[i];
}

static double peak_rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

/* Bytes a decode step reads: every matrix but the embedding (one row), routed
 * experts at top-K of E. */
static double decode_bytes(const keel_imodel *im) {
  const keel_config *c = &im->c;
  double b = 0;
  for (int i = 0; i < im->tab.n; i++) {
    const keel_wmat *w = &im->wm[i];
    if (!w->data || w == im->embed) continue;
    double x = (double)w->M * w->K * keel_wtype_size(w->type);
    if (strstr(im->tab.t[i].name, "mlp.experts.")) x *= (double)c->num_experts_per_tok / c->n_routed_experts;
    b += x;
  }
  return b;
}

/* The FLOPs of a prefill of n tokens: every active matrix but the embedding (a lookup) and the
 * head (the last token's logits only) once per token, and causal attention in MLA's naive form
 * (the one a fresh prompt runs): scores dn + dr wide and values dv wide over the p + 1
 * positions a token at position p sees. */
static double prefill_flops(const keel_config *c, size_t active, int n) {
  double vd = (double)c->vocab_size * c->hidden_size;
  double mats = (double)active - (c->tie_word_embeddings ? 1 : 2) * vd;
  double span = (double)n * (n + 1) / 2; /* positions attended, summed over the prompt */
  double attn = (double)c->num_hidden_layers * c->num_attention_heads *
                (keel_config_dq(c) + c->v_head_dim) * 2 * span;
  return 2 * mats * n + 2 * vd + attn;
}

/* Prefill and decode of a randomly initialised model of a config, for each weight type. */
static keel_status bench_infer(const char *cfg_path, int prompt, int gen, double peak, double bw) {
  keel_config c;
  keel_status st = keel_config_load(&c, cfg_path);
  if (st) return st;
  keel_model m;
  keel_model_init(&m, &c, keel_backend_cpu());
  keel_params_init(m.params, &m.tab, 1, 0.02f);
  size_t total, active;
  keel_params_count(&c, &m.tab, &total, &active);
  keel_rng r;
  keel_rng_init(&r, 7);
  int32_t *tok = keel_xmalloc((size_t)(prompt + gen) * sizeof *tok);
  for (int i = 0; i < prompt + gen; i++) tok[i] = (int32_t)keel_rng_below(&r, (uint64_t)c.vocab_size);
  printf("\n%s: %.0fM parameters (%.0fM active), prompt %d tokens, %d decoded\n", cfg_path, total / 1e6, active / 1e6,
         prompt, gen);
  printf("%-6s %9s %9s %10s %9s %10s %10s %7s\n", "dtype", "weights", "prefill", "prefill", "decode", "read/token",
         "bound", "of bound");
  printf("%-6s %9s %9s %10s %9s %10s %10s %7s\n", "", "MB", "tokens/s", "% of peak", "tokens/s", "MB", "tokens/s", "");
  for (int t = KEEL_W_F32; t <= KEEL_W_FP8 && !st; t++) {
    keel_imodel im;
    keel_imodel_from_model(&im, &m, (keel_wtype)t);
    keel_session s;
    if ((st = keel_session_init(&s, &im, prompt + gen))) break;
    double t0 = keel_now();
    st = keel_session_feed(&s, tok, prompt);
    double tp = keel_now() - t0;
    t0 = keel_now();
    for (int i = 0; i < gen && !st; i++) st = keel_session_step(&s, tok[prompt + i]);
    double tg = keel_now() - t0, bytes = decode_bytes(&im);
    double flops = prefill_flops(&c, active, prompt);
    printf("%-6s %9.0f %9.1f %9.0f%% %9.2f %10.0f %10.2f %6.0f%%\n", keel_wtype_name((keel_wtype)t),
           im.weight_bytes / 1e6, prompt / tp, 100 * flops / tp / peak, gen / tg, bytes / 1e6, bw / bytes,
           100 * (gen / tg) / (bw / bytes));
    keel_session_free(&s);
    keel_imodel_free(&im);
  }
  printf("peak RSS %.0f MB\n", peak_rss_mb());
  printf("bound: the triad bandwidth above (%.1f GB/s) over the bytes a token reads, for weights beyond the\n"
         "caches; decoding only reads, which can outrun the triad's two reads and a write (f32 may pass 100%%)\n",
         bw / 1e9);
  free(tok);
  keel_model_free(&m);
  return st;
}

double keel_bench_triad(void) {
  triad t = {0};
  t.n = 1L << 25; /* 3 x 128 MiB: far beyond the caches */
  t.a = malloc((size_t)t.n * 4), t.b = malloc((size_t)t.n * 4), t.c = malloc((size_t)t.n * 4);
  double bw = 0;
  if (t.a && t.b && t.c) {
    for (long i = 0; i < t.n; i++) t.a[i] = 0, t.b[i] = 1, t.c[i] = 2;
    bw = 3.0 * 4 * t.n / best_of(5, run_triad, &t);
  }
  free(t.a), free(t.b), free(t.c);
  return bw;
}

void keel_bench_gemm(int N, int K, int M, double flops_per_s[3]) {
  keel_rng r;
  keel_rng_init(&r, (uint64_t)N * K + M);
  gemm_case g = {keel_backend_cpu(), N, K, M, 0, NULL, NULL, NULL, NULL, NULL};
  size_t nx = (size_t)N * K, nw = (size_t)M * K, no = (size_t)N * M;
  g.x = keel_xmalloc(nx * 4), g.w = keel_xmalloc(nw * 4), g.o = keel_xmalloc(no * 4);
  g.dx = keel_xcalloc(nx, 4), g.dw = keel_xcalloc(nw, 4);
  for (size_t i = 0; i < nx; i++) g.x[i] = keel_rng_normal(&r);
  for (size_t i = 0; i < nw; i++) g.w[i] = 0.05f * keel_rng_normal(&r);
  for (g.which = 0; g.which < 3; g.which++) flops_per_s[g.which] = 2.0 * N * K * M / median_of(5, run_gemm, &g);
  free(g.x), free(g.w), free(g.o), free(g.dx), free(g.dw);
}

typedef struct attn_case {
  const keel_backend *be;
  int B, T, H, dn, dr, dv;
  float *q, *kv, *kpe, *out, *att, *dq, *dkv, *dkpe;
} attn_case;

static void run_attention(void *p) {
  attn_case *a = p;
  a->be->attention(a->out, a->att, a->q, a->kv, a->kpe, a->B, a->T, a->H, a->dn, a->dr, a->dv, 0.1f);
  a->be->attention_backward(a->dq, a->dkv, a->dkpe, a->out, a->att, a->q, a->kv, a->kpe, a->B, a->T, a->H, a->dn,
                            a->dr, a->dv, 0.1f);
}

double keel_bench_attention(int B, int T, int H, int dn, int dr, int dv) {
  attn_case a = {keel_backend_cpu(), B, T, H, dn, dr, dv, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  size_t n = (size_t)B * T, nq = n * H * (dn + dr), nkv = n * H * (dn + dv), np = n * (dr > 0 ? dr : 1);
  a.q = keel_xmalloc(nq * 4), a.kv = keel_xmalloc(nkv * 4), a.kpe = keel_xmalloc(np * 4);
  a.out = keel_xmalloc(n * H * dv * 4), a.att = keel_xmalloc((size_t)B * H * T * T * 4);
  a.dq = keel_xcalloc(nq, 4), a.dkv = keel_xcalloc(nkv, 4), a.dkpe = keel_xcalloc(np, 4);
  keel_rng r;
  keel_rng_init(&r, 11);
  for (size_t i = 0; i < nq; i++) a.q[i] = keel_rng_normal(&r);
  for (size_t i = 0; i < nkv; i++) a.kv[i] = keel_rng_normal(&r);
  for (size_t i = 0; i < np; i++) a.kpe[i] = keel_rng_normal(&r);
  double t = median_of(3, run_attention, &a);
  free(a.q), free(a.kv), free(a.kpe), free(a.out), free(a.att), free(a.dq), free(a.dkv), free(a.dkpe);
  return t;
}

typedef struct elementwise {
  const keel_backend *be;
  int N, D, I, V;
  float *x, *y, *w, *dw, *rstd, *g, *u, *h, *dg, *du, *logits, *loss;
  int32_t *tgt;
} elementwise;

static void run_elementwise(void *p) {
  elementwise *e = p;
  e->be->rmsnorm(e->y, e->rstd, e->x, e->w, e->N, e->D, 1e-6f);
  e->be->rmsnorm_backward(e->h, e->dw, e->y, e->x, e->w, e->rstd, e->N, e->D);
  e->be->swiglu(e->h, e->g, e->u, e->N, e->I);
  e->be->swiglu_backward(e->dg, e->du, e->h, e->g, e->u, e->N, e->I);
  e->be->cross_entropy(e->loss, e->logits, e->tgt, e->N, e->V, 1.0f);
}

double keel_bench_elementwise(int N, int D, int I, int V) {
  elementwise e = {.be = keel_backend_cpu(), .N = N, .D = D, .I = I, .V = V};
  size_t nd = (size_t)N * D, ni = (size_t)N * I;
  e.x = keel_xcalloc(nd, 4), e.y = keel_xcalloc(nd, 4), e.w = keel_xcalloc(D, 4), e.dw = keel_xcalloc(D, 4);
  e.rstd = keel_xcalloc(N, 4), e.g = keel_xcalloc(ni, 4), e.u = keel_xcalloc(ni, 4), e.h = keel_xcalloc(ni, 4);
  e.dg = keel_xcalloc(ni, 4), e.du = keel_xcalloc(ni, 4), e.logits = keel_xcalloc((size_t)N * V, 4);
  e.loss = keel_xcalloc(N, 4), e.tgt = keel_xcalloc(N, 4);
  for (size_t i = 0; i < nd; i++) e.x[i] = (float)(i % 7) - 3;
  for (int i = 0; i < D; i++) e.w[i] = 1;
  double t = median_of(5, run_elementwise, &e);
  /* bytes as keel plan counts them: norm 2D and SwiGLU 3I elements forward, twice that
   * backward; the loss 4 passes over fp32 logits */
  double bytes = (double)N * (3 * 2.0 * D * 4 + 3 * 3.0 * I * 4 + 16.0 * V);
  free(e.x), free(e.y), free(e.w), free(e.dw), free(e.rstd), free(e.g), free(e.u), free(e.h), free(e.dg), free(e.du);
  free(e.logits), free(e.loss), free(e.tgt);
  return bytes / t;
}

/* Training steps (forward, backward, gradient norm, AdamW) of a randomly initialised model on
 * random tokens, one thread and nt threads in turn in one process, the order swapped every
 * pair: each pair sees the same machine, where runs minutes apart on a shared one do not. */
static keel_status bench_scaling(const char *cfg_path, int nt, int pairs, int B, int T) {
  keel_config c;
  keel_status st = keel_config_load(&c, cfg_path);
  if (st) return st;
  keel_model m;
  if ((st = keel_model_init(&m, &c, keel_backend_cpu()))) return st;
  keel_params_init(m.params, &m.tab, 1, 0.006f);
  if ((st = keel_model_reserve(&m, B, T))) {
    keel_model_free(&m);
    return st;
  }
  keel_adamw opt;
  keel_adamw_init(&opt, m.tab.total, 0.9f, 0.95f, 1e-8f, 0.1f, 0);
  keel_rng r;
  keel_rng_init(&r, 7);
  int32_t *x = keel_xmalloc((size_t)B * T * sizeof *x), *y = keel_xmalloc((size_t)B * T * sizeof *y);
  for (int i = 0; i < B * T; i++) x[i] = (int32_t)keel_rng_below(&r, (uint64_t)c.vocab_size);
  for (int i = 0; i < B * T; i++) /* the next token of each sequence */
    y[i] = (i + 1) % T ? x[i + 1] : (int32_t)keel_rng_below(&r, (uint64_t)c.vocab_size);
  printf("\n%s: training steps of %d x %d tokens, 1 thread and %d in turn (the first step, %d threads, untimed)\n",
         cfg_path, B, T, nt, nt);
  double ratio[64], t1 = 0, tn = 0;
  for (int s = -1; s < 2 * pairs; s++) {
    int one = s >= 0 && (s % 2 == 0) == (s / 2 % 2 == 0); /* 1, n, then n, 1, ... */
    keel_backend_set_threads(one ? 1 : nt);
    double t0 = keel_now();
    keel_model_zero_grad(&m);
    keel_model_forward(&m, x, y, B, T, 1);
    keel_model_backward(&m, x, B, T);
    double norm = keel_grad_norm(&m);
    keel_adamw_step(&opt, &m, 1e-4f, keel_grad_clip_scale(1.0f, norm));
    double dt = keel_now() - t0;
    if (s < 0) continue;
    *(one ? &t1 : &tn) = dt;
    if (s % 2 == 0) continue;
    ratio[s / 2] = t1 / tn;
    printf("pair %d: 1 thread %.2f s, %d threads %.2f s a step: %.2fx\n", s / 2 + 1, t1, nt, tn, t1 / tn);
    fflush(stdout);
  }
  keel_backend_set_threads(nt);
  double mid = median(ratio, pairs);
  printf("%d threads over 1, median of %d pairs: %.2fx (range %.2f..%.2f)\n", nt, pairs, mid, ratio[0],
         ratio[pairs - 1]);
  free(x), free(y);
  keel_adamw_free(&opt);
  keel_model_free(&m);
  return KEEL_OK;
}

int keel_cmd_bench(int argc, char **argv) {
  static const struct option opts[] = {{"threads", required_argument, 0, 't'}, {"infer", required_argument, 0, 'i'},
                                       {"prompt", required_argument, 0, 'p'}, {"gen", required_argument, 0, 'g'},
                                       {"no-gemm", no_argument, 0, 'G'}, {"scaling", required_argument, 0, 's'},
                                       {"pairs", required_argument, 0, 'P'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c, threads = 0, prompt = 256, gen = 32, gemm = 1, pairs = 5;
  const char *infer = NULL, *scaling = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
    if (c == 't') threads = atoi(optarg);
    else if (c == 'i') infer = optarg;
    else if (c == 'p') prompt = atoi(optarg);
    else if (c == 'g') gen = atoi(optarg);
    else if (c == 'G') gemm = 0;
    else if (c == 's') scaling = optarg;
    else if (c == 'P') pairs = atoi(optarg);
    else if (c == 'h') {
      printf("usage: keel bench [-t THREADS] [--infer CONFIG.json [--prompt N (256)] [--gen N (32)]]\n"
             "                  [--scaling CONFIG.json [--pairs N (5)]] [--no-gemm]\n\n"
             "GEMM GFLOP/s (forward, dx, dw) on training shapes against the FMA peak and memory bandwidth\n"
             "(triad), all measured in this run. With --infer, a randomly initialised model of the config\n"
             "is run for each weight type (f32, bf16, int8, fp8): prefill tokens/s and share of the FMA\n"
             "peak, decode tokens/s against the bound bandwidth / bytes of weights read per token, and\n"
             "the peak RSS. With --scaling, training steps (batch 4 x 256) of a randomly initialised model\n"
             "of the config run on 1 thread and on THREADS in turn, N pairs: the speed-up of each pair\n"
             "and their median.\n");
      return 0;
    } else
      return keel_cli_usage_error("bench", "bad option");
  }
  keel_backend_set_threads(threads);
  keel_backend_pin_threads();
  int nt = threads > 0 ? threads : keel_cpu_count();
  if (infer && (prompt < 1 || gen < 1)) return keel_cli_usage_error("bench", "--prompt and --gen must be >= 1");
  if (scaling && (pairs < 1 || pairs > 64)) return keel_cli_usage_error("bench", "--pairs must be 1..64");
  if (scaling && nt < 2) return keel_cli_usage_error("bench", "--scaling needs 2 threads or more (-t)");
  double peak = keel_cpu_peak_flops_per_core() * nt, sustained = 0;
#pragma omp parallel num_threads(nt) reduction(+ : sustained)
  sustained += keel_cpu_fma_rate(2.0);
  double bw = keel_bench_triad();
  if (bw <= 0) return keel_cli_error("bench", keel_fail(KEEL_ERR_NOMEM, "no memory for the triad"));
  printf("machine: %d threads, %s kernels, FMA peak %.0f GFLOP/s (measured: best of short bursts; %.0f held for 2 s "
         "on every thread), triad bandwidth %.1f GB/s (measured)\n",
         nt, keel_cpu_isa_name(keel_cpu_isa()), peak / 1e9, sustained / 1e9, bw / 1e9);
  static const int shapes[][3] = {{1024, 128, 384}, {1024, 384, 128}, {1024, 768, 2048}, {1024, 2048, 768},
                                  {1024, 768, 32000}, {256, 512, 352}};
  if (gemm)
    printf("%-22s %10s %10s %10s   %s\n", "GEMM N x K x M", "forward", "dx", "dw", "(GFLOP/s median of 5, share of peak)");
  for (size_t s = 0; gemm && s < sizeof shapes / sizeof *shapes; s++) {
    double gf[3];
    keel_bench_gemm(shapes[s][0], shapes[s][1], shapes[s][2], gf);
    char name[32];
    snprintf(name, sizeof name, "%d x %d x %d", shapes[s][0], shapes[s][1], shapes[s][2]);
    printf("%-22s %6.0f %2.0f%% %6.0f %2.0f%% %6.0f %2.0f%%\n", name, gf[0] / 1e9, 100 * gf[0] / peak, gf[1] / 1e9,
           100 * gf[1] / peak, gf[2] / 1e9, 100 * gf[2] / peak);
  }
  if (infer) {
    keel_status st = bench_infer(infer, prompt, gen, peak, bw);
    if (st) return keel_cli_error("bench", st);
  }
  if (scaling) {
    keel_status st = bench_scaling(scaling, nt, pairs, 4, 256);
    if (st) return keel_cli_error("bench", st);
  }
  return 0;
}
