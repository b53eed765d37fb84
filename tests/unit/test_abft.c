/* backend/abft: GEMM checksums catch single bit flips that change an output
 * by more than 1e-3 relative (>= 99% over >= 200 injections, on the shapes a
 * training step uses) and never flag a clean GEMM, forward or backward. */
#include <math.h>

#include "backend/abft.h"
#include "check.h"
#include "core/error.h"
#include "core/rng.h"

int main(void) {
  const keel_backend *be = keel_backend_abft(keel_backend_cpu());
  static const int shapes[][3] = {{256, 128, 384}, {256, 384, 128}, {128, 128, 2048}, {256, 128, 96}, {256, 64, 512}};
  keel_rng r;
  keel_rng_init(&r, 7);
  int big = 0, det = 0, fp = 0, clean = 0;
  for (int it = 0; it < 400; it++) {
    const int *s = shapes[it % 5];
    int N = s[0], K = s[1], M = s[2];
    float *x = keel_xmalloc(4L * N * K), *w = keel_xmalloc(4L * M * K), *o = keel_xmalloc(4L * N * M);
    for (long i = 0; i < (long)N * K; i++) x[i] = keel_rng_normal(&r);
    for (long i = 0; i < (long)M * K; i++) w[i] = 0.05f * keel_rng_normal(&r);
    for (long i = 0; i < (long)N * M; i++) o[i] = keel_rng_normal(&r); /* what an accumulating GEMM adds to */
    long d0 = keel_abft_get_stats()->detections;
    be->matmul(o, x, w, N, K, M, it % 2); /* overwrite and accumulate both */
    clean++;
    fp += keel_abft_get_stats()->detections != d0;
    double changed = 0;
    keel_abft_arm_flip(1000 + (uint64_t)it, &changed);
    d0 = keel_abft_get_stats()->detections;
    be->matmul(o, x, w, N, K, M, 0);
    if (changed > 1e-3) big++, det += keel_abft_get_stats()->detections != d0;
    if (it % 40 == 0) { /* backward products of a clean step */
      float *dx = keel_xcalloc((size_t)N * K, 4), *dw = keel_xcalloc((size_t)M * K, 4);
      keel_backend_cpu()->matmul(o, x, w, N, K, M, 0); /* a clean upstream gradient (the last one had a flip) */
      d0 = keel_abft_get_stats()->detections;
      be->matmul_backward(dx, dw, o, x, w, N, K, M);
      clean += 2;
      fp += keel_abft_get_stats()->detections != d0;
      free(dx), free(dw);
    }
    free(x), free(w), free(o);
  }
  fprintf(stderr, "ABFT: %d of %d flips that change an output by > 1e-3 detected (%.1f%%); %d false alarms in %d clean GEMMs\n",
          det, big, 100.0 * det / big, fp, clean);
  CHECK(big >= 200);
  CHECK(det >= 0.99 * big);
  CHECK(fp == 0);
  return check_done("test_abft");
}
