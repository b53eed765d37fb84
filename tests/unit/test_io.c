/* io/: safetensors round trip and validation, atomic writes, JSON errors. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"


static void test_roundtrip(void) {
  float w[6] = {1, 2, 3, 4, 5, 6};
  uint16_t h[3] = {0x3f80, 0x4000, 0xc040};
  uint8_t f8[4] = {0x38, 0x7e, 0x01, 0xb8};
  int64_t big[1] = {1234567890123LL};
  int64_t s23[2] = {2, 3}, s3[1] = {3}, s22[2] = {2, 2}, s0[2] = {0, 5};
  keel_st_writer wr;
  keel_st_writer_init(&wr);
  keel_st_writer_meta(&wr, "format", "pt");
  keel_st_writer_add(&wr, "model.embed_tokens.weight", KEEL_DTYPE_F32, 2, s23, w);
  keel_st_writer_add(&wr, "bf16", KEEL_DTYPE_BF16, 1, s3, h);
  keel_st_writer_add(&wr, "fp8", KEEL_DTYPE_F8_E4M3, 2, s22, f8);
  keel_st_writer_add(&wr, "scalar", KEEL_DTYPE_I64, 0, NULL, big);
  keel_st_writer_add(&wr, "empty", KEEL_DTYPE_F32, 2, s0, NULL);
  char *p = check_path("m.safetensors");
  CHECK(keel_st_writer_save(&wr, p) == KEEL_OK);
  keel_st_writer_free(&wr);
  keel_st_file f;
  CHECK(keel_st_open(&f, p) == KEEL_OK);
  CHECK(f.n == 5 && f.n_meta == 1 && strcmp(f.meta_values[0], "pt") == 0);
  const keel_st_tensor *t = keel_st_find(&f, "model.embed_tokens.weight");
  CHECK(t && t->dtype == KEEL_DTYPE_F32 && t->ndim == 2 && t->shape[1] == 3 && memcmp(t->data, w, sizeof w) == 0);
  CHECK(t && t->offset % 8 == 0); /* header padded to 8 bytes */
  t = keel_st_find(&f, "fp8");
  CHECK(t && t->nbytes == 4 && memcmp(t->data, f8, 4) == 0);
  t = keel_st_find(&f, "scalar");
  CHECK(t && t->ndim == 0 && keel_st_numel(t) == 1 && memcmp(t->data, big, 8) == 0);
  t = keel_st_find(&f, "empty");
  CHECK(t && t->nbytes == 0);
  CHECK(keel_st_find(&f, "nope") == NULL);
  keel_st_close(&f);
}

static keel_status parse_hdr(const char *json, size_t data_bytes) {
  size_t n = strlen(json), total = 8 + n + data_bytes;
  uint8_t *buf = calloc(1, total);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, json, n);
  keel_st_file f;
  keel_status st = keel_st_parse(&f, buf, total, "x.safetensors");
  if (!st) keel_st_close(&f);
  free(buf);
  return st;
}

static void test_invalid(void) {
  CHECK(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8) == KEEL_OK);
  static const struct {
    const char *json;
    size_t data;
    const char *msg;
  } bad[] = {
      {"[1]", 0, "byte 8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "bad header JSON"},
      {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "after the last tensor"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8, "past the data"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin <= end"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "contiguous"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "contiguous"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "duplicate"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "need"},
      {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
      {"{\"a\":{\"dtype\":\"F32\"}}", 0, "needs dtype"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    keel_status st = parse_hdr(bad[i].json, bad[i].data);
    CHECK_MSG(st == KEEL_ERR_FORMAT && strstr(keel_errmsg(), bad[i].msg) && strstr(keel_errmsg(), "x.safetensors"),
              "case %zu: %s", i, keel_errmsg());
  }
  uint8_t small[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}', ' ', ' '};
  keel_st_file f;
  CHECK(keel_st_parse(&f, small, sizeof small, "y") == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "byte 0"));
  CHECK(keel_st_parse(&f, small, 5, "y") == KEEL_ERR_FORMAT);
  CHECK(keel_st_open(&f, check_path("missing.safetensors")) == KEEL_ERR_IO);
}

static void test_atomic(void) {
  char *p = check_path("a.txt");
  CHECK(keel_write_atomic(p, "one", 3) == KEEL_OK);
  CHECK(keel_write_atomic(p, "two!", 4) == KEEL_OK);
  char *d;
  size_t n;
  CHECK(keel_file_read(p, &d, &n) == KEEL_OK && n == 4 && memcmp(d, "two!", 4) == 0);
  free(d);
  /* an aborted write leaves the old file and no temporary behind */
  keel_afile af;
  CHECK(keel_afile_open(&af, p) == KEEL_OK);
  char tmp_path[600];
  snprintf(tmp_path, sizeof tmp_path, "%s", af.tmp_path);
  CHECK(keel_afile_write(&af, "partial", 7) == KEEL_OK);
  CHECK(keel_path_exists(tmp_path));
  keel_afile_abort(&af);
  CHECK(!keel_path_exists(tmp_path));
  CHECK(keel_file_read(p, &d, &n) == KEEL_OK && n == 4);
  free(d);
  CHECK(keel_write_atomic(check_path("no/such/dir/f"), "x", 1) == KEEL_ERR_IO);
  CHECK(keel_mkdirs(check_path("d1/d2/d3")) == KEEL_OK && keel_is_dir(check_path("d1/d2/d3")));
  if (getuid() != 0) { /* root ignores permissions */
    chmod(check_tmpdir(), 0500);
    CHECK(keel_write_atomic(check_path("ro.txt"), "x", 1) == KEEL_ERR_IO);
    chmod(check_tmpdir(), 0700);
  }
}

static void test_json(void) {
  json_t *j;
  CHECK(keel_json_load_buf(&j, "{\"a\": [1, 2,]}", 14, "c.json") == KEEL_ERR_FORMAT);
  CHECK(strstr(keel_errmsg(), "c.json: invalid JSON at line 1") != NULL);
  CHECK(keel_json_load_buf(&j, "{\"a\":1,\"a\":2}", 13, "d.json") == KEEL_ERR_FORMAT);
  CHECK(keel_json_load_buf(&j, "{\"a\":1}", 7, "e.json") == KEEL_OK);
  CHECK(keel_json_save_file(j, check_path("e.json"), 2) == KEEL_OK);
  json_decref(j);
  CHECK(keel_json_load_file(&j, check_path("e.json")) == KEEL_OK && json_integer_value(json_object_get(j, "a")) == 1);
  json_decref(j);
}

int main(void) {
  test_roundtrip();
  test_invalid();
  test_atomic();
  test_json();
  return check_done("test_io");
}
