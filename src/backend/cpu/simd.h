/* What the fast CPU kernels share: a 16-float vector type and the run-time
 * dispatch of each kernel to AVX-512, AVX2+FMA or portable code. */
#ifndef KEEL_BACKEND_CPU_SIMD_H
#define KEEL_BACKEND_CPU_SIMD_H

typedef float v16 __attribute__((vector_size(64), aligned(4)));
#ifdef __clang__ /* clang contracts a*b+c into FMA by default */
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define KERNEL __attribute__((target_clones("avx512f", "arch=haswell", "default"), optimize("fp-contract=fast")))
#endif

#endif
