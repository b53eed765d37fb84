/* What gemm.c and gemm_t.c (the products run transposed) share: the blocking, the lines a tile
 * fetches ahead, each thread's buffers, and the packed GEMM with lines to fetch besides. */
#ifndef KEEL_BACKEND_CPU_GEMM_INT_H
#define KEEL_BACKEND_CPU_GEMM_INT_H

#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#else /* one thread (the fuzz builds) */
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_in_parallel(void) { return 0; }
#endif

#include "gemm.h"

#define NR KEEL_GEMM_NR /* columns of a panel (64) */
#define MR 6            /* rows of a register tile */
#define KC 512          /* rows of a panel chunk past the budget (super-chunks) */
#define KCF 1024        /* the most rows of a chunk otherwise */
#define MC 48           /* rows of A per block */
#define L2B 524288      /* bytes of packed B a thread keeps (in L2) */

/* Lines a tile fetches besides its own (the next panel's source in B, for the packing to come, or
 * the C a few-rows product is copied into): n of them, `per` in each row, rows rs bytes apart from
 * p. */
typedef struct ahead {
  const char *p;
  long rs;
  int n, per;
} ahead;

/* Each thread's packing buffers and the ops' scratch, freed when the thread ends. */
typedef struct keel_gemm_bufs {
  float *a, *b, *row, *part, *ct, *op[2];
  size_t a_cap, b_cap, row_cap, part_cap, ct_cap, op_cap[2];
} keel_gemm_bufs;

keel_gemm_bufs *keel_gemm_my_bufs(void);
/* *buf, grown to at least n floats (64-byte aligned; its contents are not kept) */
float *keel_gemm_grow(float **buf, size_t *cap, size_t n);

/* keel_cpu_gemm, with warm: lines for the tiles to fetch besides their own, spread over those
 * that fetch no panel's source (few rows: the C that C^T is copied into next) */
void keel_gemm_run(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R, int J,
                   int S, int acc, ahead warm);

/* Runs the product transposed where its shape gains by it (gemm_t.c); 0 where it does not. */
int keel_gemm_transposed(float *c, long ldc, const float *a, long a_rs, long a_cs, const keel_gemm_b *b, int R,
                         int J, int S, int acc);

#endif
