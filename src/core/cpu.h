/* What this CPU can do: a measured fp32 FMA peak, used as the denominator of MFU. */
#ifndef KEEL_CORE_CPU_H
#define KEEL_CORE_CPU_H

/* fp32 FLOP/s of one core running independent FMAs with the widest vector
 * unit the CPU has (measured for ~70 ms on first call, then cached). */
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
