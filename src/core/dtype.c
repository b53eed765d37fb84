/* dtype names, sizes and scalar conversions. */
#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} info[KEEL_DTYPE_COUNT] = {
    [KEEL_DTYPE_F64] = {"F64", 8},        [KEEL_DTYPE_F32] = {"F32", 4},
    [KEEL_DTYPE_F16] = {"F16", 2},        [KEEL_DTYPE_BF16] = {"BF16", 2},
    [KEEL_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [KEEL_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [KEEL_DTYPE_I64] = {"I64", 8},        [KEEL_DTYPE_I32] = {"I32", 4},
    [KEEL_DTYPE_I16] = {"I16", 2},        [KEEL_DTYPE_I8] = {"I8", 1},
    [KEEL_DTYPE_U64] = {"U64", 8},        [KEEL_DTYPE_U32] = {"U32", 4},
    [KEEL_DTYPE_U16] = {"U16", 2},        [KEEL_DTYPE_U8] = {"U8", 1},
    [KEEL_DTYPE_BOOL] = {"BOOL", 1},
};

const char *keel_dtype_name(keel_dtype t) { return (unsigned)t < KEEL_DTYPE_COUNT ? info[t].name : "?"; }
size_t keel_dtype_size(keel_dtype t) { return (unsigned)t < KEEL_DTYPE_COUNT ? info[t].size : 0; }

int keel_dtype_from_name(const char *name) {
  for (int t = 0; t < KEEL_DTYPE_COUNT; t++)
    if (strcmp(name, info[t].name) == 0) return t;
  return -1;
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float keel_bf16_to_f32(unsigned short h) { return from_bits((uint32_t)h << 16); }

unsigned short keel_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1);
  return (unsigned short)(u >> 16);
}

float keel_f16_to_f32(unsigned short h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) return (sign ? -1.f : 1.f) * ldexpf((float)man, -24);
  if (exp == 31) return from_bits(sign | 0x7f800000u | (man << 13));
  return from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* e4m3fn: bias 7, no infinities, S.1111.111 is NaN. */
float keel_f8e4m3_to_f32(unsigned char b) {
  int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
  float v;
  if (exp == 15 && man == 7)
    v = NAN;
  else if (exp == 0)
    v = ldexpf((float)man, -9);
  else
    v = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
  return sign ? -v : v;
}

/* Nearest e4m3fn value (ties to even), saturating at +-448; NaN stays NaN. */
unsigned char keel_f32_to_f8e4m3(float f) {
  unsigned char sign = signbit(f) ? 0x80 : 0;
  float a = fabsf(f);
  if (isnan(f)) return 0x7f;
  if (a >= 448.0f) return sign | 0x7e;
  if (a < 0x1p-6f) { /* subnormal: multiples of 2^-9; 8 * 2^-9 is the smallest normal, code 0x08 */
    return sign | (unsigned char)nearbyintf(a * 512.0f);
  }
  int e;
  float m = frexpf(a, &e);                    /* a = m 2^e, m in [0.5, 1) */
  int q = (int)nearbyintf((m * 2.0f - 1.0f) * 8.0f); /* 3 mantissa bits */
  int exp = e - 1 + 7;
  if (q == 8) q = 0, exp++;
  if (exp > 15 || (exp == 15 && q > 6)) return sign | 0x7e;
  return sign | (unsigned char)(exp << 3 | q);
}
