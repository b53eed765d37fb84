/* The vector ISA the fast kernels use, and the FMA peak measured with it. */
#include "clock.h"
#include "cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static keel_isa chosen_isa;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
/* CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports has no "f16c"). */
static int has_f16c(void) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
#endif

static void choose_isa(void) {
  int best = KEEL_ISA_PORTABLE;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f")) best = KEEL_ISA_AVX512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
    best = KEEL_ISA_AVX2; /* F16C: the AVX2 fp8 dequantiser; every AVX2 CPU has had it */
#endif
  const char *want = getenv("KEEL_CPU");
  int asked = best;
  if (want && *want) {
    asked = !strcmp(want, "portable") ? KEEL_ISA_PORTABLE : !strcmp(want, "avx2") ? KEEL_ISA_AVX2
            : !strcmp(want, "avx512") ? KEEL_ISA_AVX512 : -1;
    if (asked < 0 || asked > best) {
      fprintf(stderr, "keel: KEEL_CPU=%s: not one of portable, avx2, avx512 this CPU runs; using %s\n", want,
              keel_cpu_isa_name((keel_isa)best));
      asked = best;
    }
  }
  chosen_isa = (keel_isa)asked;
}

keel_isa keel_cpu_isa(void) {
  pthread_once(&isa_once, choose_isa); /* GEMMs ask from many threads at once */
  return chosen_isa;
}

const char *keel_cpu_isa_name(keel_isa isa) {
  return isa == KEEL_ISA_AVX512 ? "avx512" : isa == KEEL_ISA_AVX2 ? "avx2" : "portable";
}

/* 12 independent accumulators in registers hide the FMA latency; returns FLOPs done. One body
 * per vector width, so each ISA keeps its 12 accumulators in registers (16-float vectors on
 * AVX2's 16 registers would spill). */
typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
#define FMA_LOOP(NAME, V, W, ATTR)                                                                    \
  ATTR static double NAME(long iters, float *sink) {                                                  \
    V mul, add, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;                                     \
    for (int i = 0; i < (W); i++) {                                                                   \
      mul[i] = 0.999999f, add[i] = 1e-7f;                                                             \
      a0[i] = a1[i] = a2[i] = a3[i] = a4[i] = a5[i] = (float)i;                                       \
      a6[i] = a7[i] = a8[i] = a9[i] = a10[i] = a11[i] = (float)(i + 1);                               \
    }                                                                                                 \
    for (long it = 0; it < iters; it++) {                                                             \
      a0 = a0 * mul + add, a1 = a1 * mul + add, a2 = a2 * mul + add, a3 = a3 * mul + add;             \
      a4 = a4 * mul + add, a5 = a5 * mul + add, a6 = a6 * mul + add, a7 = a7 * mul + add;             \
      a8 = a8 * mul + add, a9 = a9 * mul + add, a10 = a10 * mul + add, a11 = a11 * mul + add;         \
    }                                                                                                 \
    V t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                                \
    float s = 0;                                                                                      \
    for (int i = 0; i < (W); i++) s += t[i];                                                          \
    *sink = s;                                                                                        \
    return (double)iters * 12 * (W) * 2;                                                              \
  }
#ifdef __clang__ /* clang contracts a*b+c into FMA by default */
#define CONTRACT
#else
#define CONTRACT optimize("fp-contract=fast")
#endif
#if defined(__x86_64__) || defined(__i386__)
FMA_LOOP(fma_loop512, v16, 16, __attribute__((target("avx512f"), CONTRACT)))
FMA_LOOP(fma_loop256, v8, 8, __attribute__((target("avx2,fma"), CONTRACT)))
#endif
FMA_LOOP(fma_loop128, v4, 4, __attribute__((CONTRACT)))

/* The loop of the ISA the kernels run (keel_cpu_isa). */
static double fma_loop(long iters, float *sink) {
#if defined(__x86_64__) || defined(__i386__)
  keel_isa isa = keel_cpu_isa();
  if (isa == KEEL_ISA_AVX512) return fma_loop512(iters, sink);
  if (isa == KEEL_ISA_AVX2) return fma_loop256(iters, sink);
#endif
  return fma_loop128(iters, sink);
}

double keel_cpu_peak_flops_per_core(void) {
  static double peak;
  if (peak > 0) return peak;
  float sink;
  fma_loop(1000, &sink); /* warm up the clock */
  double best = 0;
  for (int rep = 0; rep < 10; rep++) { /* ~7 ms each; the best is the peak */
    double t0 = keel_now(), flops = fma_loop(3000000, &sink), dt = keel_now() - t0;
    if (dt > 0 && flops / dt > best) best = flops / dt;
  }
  peak = best;
  return peak;
}

double keel_cpu_fma_rate(double seconds) {
  float sink;
  double t0 = keel_now(), flops = 0, t;
  do flops += fma_loop(300000, &sink); /* ~0.7 ms a slice */
  while ((t = keel_now() - t0) < seconds);
  return flops / t;
}

void keel_cpu_zero_stream(float *p, unsigned long n) {
#ifdef __SSE2__
  unsigned long k = 0;
  for (; k < n && ((unsigned long)(p + k) & 15); k++) p[k] = 0;
  for (; k + 4 <= n; k += 4) _mm_stream_ps(p + k, _mm_setzero_ps());
  for (; k < n; k++) p[k] = 0;
  _mm_sfence(); /* visible to the other threads before they read it */
#else
  memset(p, 0, n * sizeof *p);
#endif
}

int keel_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
