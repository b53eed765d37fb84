/* Checkpoint writing and reading. */
#include "checkpoint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../include/keel.h"
#include "../core/checksum.h"
#include "../io/file.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../model/weights.h"

static char *pathf(const char *fmt, const char *a, long n) {
  size_t len = strlen(a) + strlen(fmt) + 32;
  char *p = keel_xmalloc(len);
  snprintf(p, len, fmt, a, n);
  return p;
}

static char *joinp(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = keel_xmalloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

static keel_status copy_if_present(const char *from_dir, const char *to_dir, const char *name) {
  char *src = joinp(from_dir, name), *dst = joinp(to_dir, name);
  keel_status st = KEEL_OK;
  if (keel_path_exists(src)) {
    char *buf;
    size_t len;
    if (!(st = keel_file_read(src, &buf, &len))) {
      st = keel_write_atomic(dst, buf, len);
      free(buf);
    }
  }
  free(src), free(dst);
  return st;
}

keel_status keel_copy_tokenizer(const char *from_dir, const char *to_dir) {
  keel_status st = copy_if_present(from_dir, to_dir, "tokenizer.json");
  return st ? st : copy_if_present(from_dir, to_dir, "tokenizer_config.json");
}

static keel_status rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return KEEL_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *p = joinp(dir, e->d_name);
    if (keel_is_dir(p)) rm_rf(p);
    else unlink(p);
    free(p);
  }
  closedir(d);
  rmdir(dir);
  return KEEL_OK;
}

static json_t *file_sums(const char *dir) {
  static const char *const names[] = {"config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
                                      "tokenizer_config.json"};
  json_t *files = json_object();
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char *p = joinp(dir, names[i]);
    keel_mapped mp;
    if (keel_path_exists(p) && !keel_file_map(&mp, p)) {
      char sum[17];
      snprintf(sum, sizeof sum, "%016llx", (unsigned long long)keel_xxh3(mp.data, mp.size));
      json_object_set_new(files, names[i], json_pack("{s:I, s:s}", "bytes", (json_int_t)mp.size, "xxh3", sum));
      keel_file_unmap(&mp);
    }
    free(p);
  }
  return files;
}

keel_status keel_ckpt_save(const char *run, const keel_model *m, const keel_adamw *opt, const keel_ckpt_state *s,
                           const char *tokenizer_dir) {
  char *ck = joinp(run, "ckpt"), *tmp = pathf("%s/ckpt/.step-%ld.tmp", run, s->step),
       *dst = pathf("%s/ckpt/step-%ld", run, s->step);
  keel_status st = keel_mkdirs(ck);
  rm_rf(tmp);
  if (!st) st = keel_model_save(m, tmp);
  if (!st && tokenizer_dir) st = keel_copy_tokenizer(tokenizer_dir, tmp);
  if (!st) {
    keel_st_writer w;
    keel_st_writer_init(&w);
    int64_t shape[1] = {(int64_t)opt->n};
    keel_st_writer_add(&w, "adamw.m", KEEL_DTYPE_F32, 1, shape, opt->m);
    keel_st_writer_add(&w, "adamw.v", KEEL_DTYPE_F32, 1, shape, opt->v);
    char *p = joinp(tmp, "optimizer.safetensors");
    st = keel_st_writer_save(&w, p);
    free(p);
    keel_st_writer_free(&w);
  }
  if (!st) {
    json_t *j = json_pack("{s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:i, s:s, s:o}", "step", (json_int_t)s->step,
                          "adamw_step", (json_int_t)opt->t, "loader", "seed", (json_int_t)s->loader.seed, "epoch",
                          (json_int_t)s->loader.epoch, "position", (json_int_t)s->loader.position, "seed",
                          (json_int_t)s->seed, "world_size", 1, "keel_version", KEEL_VERSION, "files", file_sums(tmp));
    char *p = joinp(tmp, "state.json");
    st = keel_json_save_file(j, p, 2);
    free(p);
    json_decref(j);
  }
  if (!st) {
    rm_rf(dst);
    if (rename(tmp, dst) != 0) st = keel_fail(KEEL_ERR_IO, "%s: cannot rename checkpoint into place", dst);
    else st = keel_fsync_dir_of(dst);
  }
  if (st) rm_rf(tmp);
  free(ck), free(tmp), free(dst);
  return st;
}

keel_status keel_ckpt_latest(const char *run, long *step) {
  *step = -1;
  char *ck = joinp(run, "ckpt");
  DIR *d = opendir(ck);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      long n;
      char tail;
      if (sscanf(e->d_name, "step-%ld%c", &n, &tail) != 1 || n <= *step) continue;
      char *sub = joinp(ck, e->d_name), *state = joinp(sub, "state.json");
      free(sub);
      if (keel_path_exists(state)) *step = n;
      free(state);
    }
    closedir(d);
  }
  free(ck);
  return KEEL_OK;
}

keel_status keel_ckpt_load(const char *run, long step, keel_model *m, keel_adamw *opt, keel_ckpt_state *s) {
  char *dir = pathf("%s/ckpt/step-%ld", run, step), *state = joinp(dir, "state.json"),
       *optp = joinp(dir, "optimizer.safetensors");
  json_t *j = NULL;
  keel_st_file f = {0};
  keel_status st = keel_json_load_file(&j, state);
  if (!st) st = keel_model_load_weights(m, dir);
  if (!st) st = keel_st_open(&f, optp);
  if (!st) {
    const keel_st_tensor *mt = keel_st_find(&f, "adamw.m"), *vt = keel_st_find(&f, "adamw.v");
    if (!mt || !vt || mt->nbytes != opt->n * 4 || vt->nbytes != opt->n * 4 || mt->dtype != KEEL_DTYPE_F32)
      st = keel_fail(KEEL_ERR_FORMAT, "%s: adamw.m/adamw.v missing or of the wrong size", optp);
    else {
      memcpy(opt->m, mt->data, opt->n * 4);
      memcpy(opt->v, vt->data, opt->n * 4);
    }
    keel_st_close(&f);
  }
  if (!st) {
    json_t *ld = json_object_get(j, "loader");
    s->step = (long)json_integer_value(json_object_get(j, "step"));
    opt->t = (long)json_integer_value(json_object_get(j, "adamw_step"));
    s->seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
    s->loader.seed = (uint64_t)json_integer_value(json_object_get(ld, "seed"));
    s->loader.epoch = (uint64_t)json_integer_value(json_object_get(ld, "epoch"));
    s->loader.position = (uint64_t)json_integer_value(json_object_get(ld, "position"));
    if (s->step != step || !json_is_object(ld))
      st = keel_fail(KEEL_ERR_FORMAT, "%s: step or loader state missing", state);
  }
  json_decref(j);
  free(dir), free(state), free(optp);
  return st;
}
