/* 16 x 16 register transposes for the GEMM's packing and its transposed products (gemm.c). */
#include "../../core/cpu.h"
#include "gemm.h"
#include "simd.h"

/* dst[i][k] = src[k][i] for a 16 x 16 block (rows dst_rs and src_rs floats apart), in four
 * rounds of two-vector shuffles: round s swaps the off-diagonal s x s blocks of each 2s x 2s. */
#define LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define LO4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define HI4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define LO2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define HI2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define LO1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define HI1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define ROUND(s, LO, HI)                                  \
  for (int i = 0; i < (int)(sizeof r / sizeof r[0]); i++) \
    if (!(i & (s))) {                                     \
      __typeof__(r[0]) x = r[i], y = r[i + (s)];          \
      r[i] = __builtin_shufflevector(x, y, LO);           \
      r[i + (s)] = __builtin_shufflevector(x, y, HI);     \
    }

KERNEL512 static void transpose16_512(float *dst, long dst_rs, const float *src, long src_rs) {
  v16 r[16];
  for (int i = 0; i < 16; i++) r[i] = *(const v16 *)(src + i * src_rs);
  ROUND(8, LO8, HI8)
  ROUND(4, LO4, HI4)
  ROUND(2, LO2, HI2)
  ROUND(1, LO1, HI1)
  for (int i = 0; i < 16; i++) *(v16 *)(dst + i * dst_rs) = r[i];
}

/* The same off AVX-512, as four 8 x 8 transposes in three rounds of two-vector shuffles: 16
 * vectors of 16 floats would not fit AVX2's 16 registers (that copy spilled, and packing W^T
 * took 6% of an AVX2 training step). */
#define LO4_8 0, 1, 2, 3, 8, 9, 10, 11
#define HI4_8 4, 5, 6, 7, 12, 13, 14, 15
#define LO2_8 0, 1, 8, 9, 4, 5, 12, 13
#define HI2_8 2, 3, 10, 11, 6, 7, 14, 15
#define LO1_8 0, 8, 2, 10, 4, 12, 6, 14
#define HI1_8 1, 9, 3, 11, 5, 13, 7, 15
#define TRANSPOSE16_BY8(SUF, ATTR)                                                                        \
  ATTR static void transpose16_##SUF(float *dst, long dst_rs, const float *src, long src_rs) {           \
    for (int bi = 0; bi < 2; bi++)                                                                        \
      for (int bj = 0; bj < 2; bj++) {                                                                    \
        const float *s8 = src + (long)8 * bj * src_rs + 8 * bi;                                           \
        float *d8 = dst + (long)8 * bi * dst_rs + 8 * bj;                                                 \
        v8 r[8];                                                                                          \
        for (int i = 0; i < 8; i++) r[i] = *(const v8 *)(s8 + i * src_rs);                                \
        ROUND(4, LO4_8, HI4_8)                                                                            \
        ROUND(2, LO2_8, HI2_8)                                                                            \
        ROUND(1, LO1_8, HI1_8)                                                                            \
        for (int i = 0; i < 8; i++) *(v8 *)(d8 + i * dst_rs) = r[i];                                      \
      }                                                                                                   \
  }
TRANSPOSE16_BY8(256, KERNEL256)
TRANSPOSE16_BY8(128, KERNEL128)
#undef TRANSPOSE16_BY8
#undef ROUND

keel_transpose_fn *keel_cpu_transpose16(void) {
  keel_isa isa = keel_cpu_isa();
  return isa == KEEL_ISA_AVX512 ? transpose16_512 : isa == KEEL_ISA_AVX2 ? transpose16_256 : transpose16_128;
}

/* dst[i][k] = src[k][i] for a block of rows x cols (each at most 16): a register transpose when
 * the block is whole. */
void keel_cpu_transpose_block(keel_transpose_fn *tr, float *dst, long dst_rs, const float *src, long src_rs, int rows,
                              int cols) {
  if (rows == 16 && cols == 16) {
    tr(dst, dst_rs, src, src_rs);
    return;
  }
  for (int k = 0; k < rows; k++)
    for (int i = 0; i < cols; i++) dst[(long)i * dst_rs + k] = src[(long)k * src_rs + i];
}
