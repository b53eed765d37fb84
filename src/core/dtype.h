/* Element types of tensors, with the names safetensors uses. */
#ifndef KEEL_CORE_DTYPE_H
#define KEEL_CORE_DTYPE_H

#include <stddef.h>

typedef enum keel_dtype {
  KEEL_DTYPE_F64,
  KEEL_DTYPE_F32,
  KEEL_DTYPE_F16,
  KEEL_DTYPE_BF16,
  KEEL_DTYPE_F8_E4M3,
  KEEL_DTYPE_F8_E5M2,
  KEEL_DTYPE_I64,
  KEEL_DTYPE_I32,
  KEEL_DTYPE_I16,
  KEEL_DTYPE_I8,
  KEEL_DTYPE_U64,
  KEEL_DTYPE_U32,
  KEEL_DTYPE_U16,
  KEEL_DTYPE_U8,
  KEEL_DTYPE_BOOL,
  KEEL_DTYPE_COUNT
} keel_dtype;

const char *keel_dtype_name(keel_dtype t);
size_t keel_dtype_size(keel_dtype t);
/* Returns the dtype for a safetensors name, or -1. */
int keel_dtype_from_name(const char *name);

/* Scalar conversions used by readers of low-precision files. */
float keel_bf16_to_f32(unsigned short h);
unsigned short keel_f32_to_bf16(float f); /* round to nearest even */
float keel_f16_to_f32(unsigned short h);
float keel_f8e4m3_to_f32(unsigned char b);
unsigned char keel_f32_to_f8e4m3(float f); /* nearest, ties to even, saturating */

#endif
