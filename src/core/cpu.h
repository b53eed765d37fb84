/* What this CPU can do: the vector ISA the kernels use, and a measured fp32 FMA peak (the
 * denominator of MFU). */
#ifndef KEEL_CORE_CPU_H
#define KEEL_CORE_CPU_H

/* The ISAs a kernel written once on generic vectors is compiled for, as __attribute__((KEEL_CLONES)):
 * the CPU picks the copy when the program loads, which KEEL_CPU cannot change. A build with
 * -DKEEL_ONE_ISA compiles one copy for its -march instead: the tests' AVX2 and x86-64 builds,
 * which run those copies on a machine with AVX-512. */
#ifdef KEEL_ONE_ISA
#define KEEL_CLONES
#else
#define KEEL_CLONES target_clones("avx512f", "arch=haswell", "default")
#endif

/* The vector instruction sets the fast CPU kernels are written for. */
typedef enum { KEEL_ISA_PORTABLE, KEEL_ISA_AVX2, KEEL_ISA_AVX512 } keel_isa;
/* The one the kernels use: the widest this CPU has (AVX-512F; AVX2 with FMA and F16C; else portable
 * vector code), or a narrower one named by KEEL_CPU=portable|avx2|avx512 (the tests run each
 * path this way; a value this CPU cannot run is reported on stderr and ignored). Read once. */
keel_isa keel_cpu_isa(void);
const char *keel_cpu_isa_name(keel_isa isa);
/* fp32 FLOP/s of one core running independent FMAs with the vector unit of keel_cpu_isa
 * (measured for ~70 ms on first call, then cached). */
double keel_cpu_peak_flops_per_core(void);
/* fp32 FLOP/s of the calling thread running the same FMAs for `seconds` without a break: on a
 * machine that lowers its clock under load, or is shared, less than the burst peak above. */
double keel_cpu_fma_rate(double seconds);
int keel_cpu_count(void);
/* p[0..n) = 0 with stores that bypass the caches (x86; elsewhere memset): for arrays far larger
 * than the caches and read again only later, which then skip reading each line before writing
 * it. */
void keel_cpu_zero_stream(float *p, unsigned long n);

#endif
