/* keel bench: kernel figures against the machine's own limits, measured in the
 * same run: GEMM GFLOP/s against the FMA peak, memory bandwidth (triad). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "../core/cpu.h"
#include "../core/rng.h"
#include "cli.h"

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

int keel_cmd_bench(int argc, char **argv) {
  static const struct option opts[] = {{"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c, threads = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
    if (c == 't') threads = atoi(optarg);
    else if (c == 'h') {
      printf("usage: keel bench [-t THREADS]\n\nGEMM GFLOP/s (forward, dx, dw) on training shapes against the FMA peak\n"
             "and memory bandwidth (triad), all measured in this run.\n");
      return 0;
    } else
      return keel_cli_usage_error("bench", "bad option");
  }
  keel_backend_set_threads(threads);
  int nt = threads > 0 ? threads : keel_cpu_count();
  double peak = keel_cpu_peak_flops_per_core() * nt;
  triad t = {0};
  t.n = 1L << 25; /* 3 x 128 MiB: far beyond the caches */
  t.a = malloc((size_t)t.n * 4), t.b = malloc((size_t)t.n * 4), t.c = malloc((size_t)t.n * 4);
  if (!t.a || !t.b || !t.c) return keel_cli_error("bench", keel_fail(KEEL_ERR_NOMEM, "no memory for the triad"));
  for (long i = 0; i < t.n; i++) t.a[i] = 0, t.b[i] = 1, t.c[i] = 2;
  double dt = best_of(5, run_triad, &t), bw = 3.0 * 4 * t.n / dt;
  free(t.a), free(t.b), free(t.c);
  printf("machine: %d threads, FMA peak %.0f GFLOP/s (measured), triad bandwidth %.1f GB/s (measured)\n", nt,
         peak / 1e9, bw / 1e9);
  static const int shapes[][3] = {{1024, 128, 384}, {1024, 384, 128}, {1024, 768, 2048}, {1024, 2048, 768},
                                  {1024, 768, 32000}, {256, 512, 352}};
  printf("%-22s %10s %10s %10s   %s\n", "GEMM N x K x M", "forward", "dx", "dw", "(GFLOP/s, share of peak)");
  keel_rng r;
  keel_rng_init(&r, 1);
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    gemm_case g = {keel_backend_cpu(), shapes[s][0], shapes[s][1], shapes[s][2], 0, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)g.N * g.K, nw = (size_t)g.M * g.K, no = (size_t)g.N * g.M;
    g.x = malloc(nx * 4), g.w = malloc(nw * 4), g.o = malloc(no * 4), g.dx = calloc(nx, 4), g.dw = calloc(nw, 4);
    for (size_t i = 0; i < nx; i++) g.x[i] = keel_rng_normal(&r);
    for (size_t i = 0; i < nw; i++) g.w[i] = 0.05f * keel_rng_normal(&r);
    double flops = 2.0 * g.N * g.K * g.M, gf[3];
    for (g.which = 0; g.which < 3; g.which++) gf[g.which] = flops / best_of(3, run_gemm, &g);
    char name[32];
    snprintf(name, sizeof name, "%d x %d x %d", g.N, g.K, g.M);
    printf("%-22s %6.0f %2.0f%% %6.0f %2.0f%% %6.0f %2.0f%%\n", name, gf[0] / 1e9, 100 * gf[0] / peak, gf[1] / 1e9,
           100 * gf[1] / peak, gf[2] / 1e9, 100 * gf[2] / peak);
    free(g.x), free(g.w), free(g.o), free(g.dx), free(g.dw);
  }
  return 0;
}
