/* core/: hash maps, xxh3, Philox RNG, dtype conversions, errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cpu.h"
#include "core/checksum.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/hashmap.h"
#include "core/rng.h"

static void test_strmap(void) {
  keel_strmap m;
  keel_strmap_init(&m, 4);
  char key[32];
  for (int i = 0; i < 5000; i++) {
    int n = snprintf(key, sizeof key, "k%d", i);
    CHECK(keel_strmap_put(&m, key, (size_t)n, i) == 1);
  }
  CHECK(m.count == 5000);
  int64_t v = -1;
  CHECK(keel_strmap_get(&m, "k4321", 5, &v) && v == 4321);
  CHECK(!keel_strmap_get(&m, "k5000", 5, &v));
  CHECK(keel_strmap_put(&m, "k7", 2, 77) == 0);
  CHECK(keel_strmap_get(&m, "k7", 2, &v) && v == 77);
  /* keys with NUL bytes are distinct by length */
  CHECK(keel_strmap_put(&m, "a\0b", 3, 1) == 1);
  CHECK(keel_strmap_put(&m, "a", 1, 2) == 1);
  CHECK(keel_strmap_get(&m, "a\0b", 3, &v) && v == 1);
  keel_strmap_clear(&m);
  CHECK(m.count == 0 && !keel_strmap_get(&m, "k1", 2, &v));
  keel_strmap_free(&m);

  keel_u64map u;
  keel_u64map_init(&u, 2);
  for (uint64_t i = 0; i < 10000; i++) keel_u64map_put(&u, i * 0x9E3779B97F4A7C15ULL, i);
  uint64_t x;
  CHECK(u.count == 10000);
  CHECK(keel_u64map_get(&u, 1234 * 0x9E3779B97F4A7C15ULL, &x) && x == 1234);
  CHECK(keel_u64map_get(&u, 0, &x) && x == 0);
  CHECK(!keel_u64map_get(&u, 5, &x));
  (*keel_u64map_slot(&u, 5)) += 3;
  CHECK(keel_u64map_get(&u, 5, &x) && x == 3);
  keel_u64map_free(&u);
}

static void test_xxh3(void) {
  /* XXH3-64 of the empty input, seed 0: a published test vector */
  CHECK(keel_xxh3("", 0) == 0x2D06800538D394C2ULL);
  char buf[1000];
  for (int i = 0; i < 1000; i++) buf[i] = (char)(i * 7);
  keel_xxh3_stream s;
  keel_xxh3_begin(&s);
  keel_xxh3_update(&s, buf, 10);
  keel_xxh3_update(&s, buf + 10, 990);
  CHECK(keel_xxh3_end(&s) == keel_xxh3(buf, 1000));
}

static void test_rng(void) {
  uint32_t o[4];
  /* Random123's known-answer vector for philox4x32-10, counter 0, key 0 */
  keel_philox(0, 0, o);
  CHECK_MSG(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u,
            "%08x %08x %08x %08x", o[0], o[1], o[2], o[3]);
  keel_rng a, b;
  keel_rng_init(&a, keel_rng_key(42, 7, 0, KEEL_RNG_DATA));
  keel_rng_init(&b, keel_rng_key(42, 7, 0, KEEL_RNG_DATA));
  for (int i = 0; i < 100; i++) CHECK(keel_rng_u64(&a) == keel_rng_u64(&b));
  CHECK(keel_rng_key(42, 7, 0, KEEL_RNG_DATA) != keel_rng_key(42, 7, 1, KEEL_RNG_DATA));
  CHECK(keel_rng_key(42, 7, 0, KEEL_RNG_DATA) != keel_rng_key(42, 8, 0, KEEL_RNG_DATA));
  /* uniform, below and normal have the right moments */
  double sum = 0, sq = 0;
  int hist[10] = {0};
  for (int i = 0; i < 100000; i++) {
    double u = keel_rng_uniform(&a);
    CHECK(u >= 0 && u < 1);
    hist[keel_rng_below(&a, 10)]++;
    double z = keel_rng_normal(&a);
    sum += z;
    sq += z * z;
  }
  for (int k = 0; k < 10; k++) CHECK_MSG(hist[k] > 9500 && hist[k] < 10500, "bucket %d: %d", k, hist[k]);
  CHECK(fabs(sum / 100000) < 0.02);
  CHECK(fabs(sq / 100000 - 1) < 0.03);
  /* the pair: each half standard normal, the halves uncorrelated */
  double m[2] = {0, 0}, v[2] = {0, 0}, cross = 0;
  for (int i = 0; i < 100000; i++) {
    float z[2];
    keel_rng_normal2(&a, z);
    for (int k = 0; k < 2; k++) m[k] += z[k], v[k] += (double)z[k] * z[k];
    cross += (double)z[0] * z[1];
  }
  for (int k = 0; k < 2; k++) CHECK(fabs(m[k] / 100000) < 0.02 && fabs(v[k] / 100000 - 1) < 0.03);
  CHECK(fabs(cross / 100000) < 0.02);
}

static void test_dtype(void) {
  CHECK(keel_dtype_from_name("BF16") == KEEL_DTYPE_BF16);
  CHECK(keel_dtype_from_name("F8_E4M3") == KEEL_DTYPE_F8_E4M3);
  CHECK(keel_dtype_from_name("X") == -1);
  CHECK(keel_dtype_size(KEEL_DTYPE_I64) == 8);
  CHECK(keel_bf16_to_f32(keel_f32_to_bf16(1.5f)) == 1.5f);
  CHECK(keel_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80); /* tie rounds to even */
  CHECK(keel_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
  CHECK(keel_f16_to_f32(0x3c00) == 1.0f && keel_f16_to_f32(0xc000) == -2.0f);
  CHECK(keel_f16_to_f32(0x0001) == ldexpf(1, -24));
  CHECK(keel_f8e4m3_to_f32(0x38) == 1.0f);
  CHECK(keel_f8e4m3_to_f32(0x7e) == 448.0f);
  CHECK(keel_f8e4m3_to_f32(0x01) == ldexpf(1, -9));
  CHECK(keel_f8e4m3_to_f32(0xb8) == -1.0f);
  CHECK(isnan(keel_f8e4m3_to_f32(0x7f)));
}

static void test_errors(void) {
  CHECK(keel_fail(KEEL_ERR_FORMAT, "bad %d", 7) == KEEL_ERR_FORMAT);
  CHECK(strcmp(keel_errmsg(), "bad 7") == 0);
  keel_fail_prefix(KEEL_ERR_FORMAT, "file.json");
  CHECK(strcmp(keel_errmsg(), "file.json: bad 7") == 0);
}

/* The streaming zero clears exactly [p, p + n) at any alignment and length. */
static void test_zero_stream(void) {
  float buf[80];
  for (int off = 0; off < 5; off++)
    for (int n = 0; n < 40; n += 3) {
      for (int i = 0; i < 80; i++) buf[i] = 1.0f;
      keel_cpu_zero_stream(buf + off, (unsigned long)n);
      int bad = 0;
      for (int i = 0; i < 80; i++) bad += buf[i] != (i >= off && i < off + n ? 0.0f : 1.0f);
      CHECK_MSG(!bad, "offset %d, %d floats: %d wrong", off, n, bad);
    }
}

/* KEEL_CPU names a kernel set no wider than the CPU's (read once: set before the first call),
 * and the FMA peak is measured with it. */
static void test_isa(void) {
  setenv("KEEL_CPU", "portable", 1);
  CHECK(keel_cpu_isa() == KEEL_ISA_PORTABLE);
  CHECK(strcmp(keel_cpu_isa_name(keel_cpu_isa()), "portable") == 0);
  setenv("KEEL_CPU", "avx512", 1);
  CHECK(keel_cpu_isa() == KEEL_ISA_PORTABLE); /* chosen once */
  CHECK(strcmp(keel_cpu_isa_name(KEEL_ISA_AVX2), "avx2") == 0);
  CHECK(strcmp(keel_cpu_isa_name(KEEL_ISA_AVX512), "avx512") == 0);
  double peak = keel_cpu_peak_flops_per_core();
  CHECK_MSG(peak > 1e8, "portable FMA peak %.3g FLOP/s", peak);
}

int main(void) {
  test_isa();
  test_strmap();
  test_xxh3();
  test_rng();
  test_dtype();
  test_errors();
  test_zero_stream();
  return check_done("test_core");
}
