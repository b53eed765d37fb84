/* Checkpoint writing (background thread), verification, loading, retention. */
#include "../core/clock.h"
#include "checkpoint.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../include/keel.h"
#include "../core/checksum.h"
#include "../io/file.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../model/weights.h"

static char *step_dir(const char *run, const char *fmt, long step) {
  size_t n = strlen(run) + 64;
  char *p = keel_xmalloc(n);
  snprintf(p, n, fmt, run, step);
  return p;
}

static keel_status copy_if_present(const char *from_dir, const char *to_dir, const char *name) {
  char *src = keel_path_join(from_dir, name), *dst = keel_path_join(to_dir, name);
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

static void rm_rf(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *p = keel_path_join(dir, e->d_name);
    if (keel_is_dir(p)) rm_rf(p);
    else unlink(p);
    free(p);
  }
  closedir(d);
  rmdir(dir);
}

static int cmp_desc(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x < y) - (x > y);
}

int keel_ckpt_list(const char *run, long **steps) {
  char *ck = keel_path_join(run, "ckpt");
  DIR *d = opendir(ck);
  int n = 0, cap = 16;
  *steps = keel_xmalloc((size_t)cap * sizeof **steps);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      long s;
      char tail;
      if (sscanf(e->d_name, "step-%ld%c", &s, &tail) != 1 || s < 0) continue;
      if (n == cap) *steps = keel_xrealloc(*steps, (size_t)(cap *= 2) * sizeof **steps);
      (*steps)[n++] = s;
    }
    closedir(d);
  }
  free(ck);
  qsort(*steps, (size_t)n, sizeof **steps, cmp_desc);
  return n;
}

/* ---- the manifest ---- */

static const char *const ckpt_files[] = {"config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
                                         "tokenizer_config.json"};

static keel_status file_sum(const char *path, uint64_t *bytes, uint64_t *sum) {
  keel_mapped mp;
  keel_status st = keel_file_map(&mp, path);
  if (st) return st;
  *bytes = mp.size;
  *sum = keel_xxh3(mp.data, mp.size);
  keel_file_unmap(&mp);
  return KEEL_OK;
}

/* Parameters, biases and the moments as stored (mbytes each). */
static uint64_t fingerprint(const float *params, size_t np, const float *bias, size_t nb, const void *m,
                            const void *v, size_t mbytes) {
  keel_xxh3_stream h;
  keel_xxh3_begin(&h);
  keel_xxh3_update(&h, params, np * sizeof *params);
  keel_xxh3_update(&h, bias, nb * sizeof *bias);
  keel_xxh3_update(&h, m, mbytes);
  keel_xxh3_update(&h, v, mbytes);
  return keel_xxh3_end(&h);
}

keel_status keel_ckpt_verify(const char *dir) {
  char *state = keel_path_join(dir, "state.json");
  json_t *j = NULL;
  keel_status st = KEEL_OK;
  if (!keel_path_exists(state)) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: manifest missing (an unfinished checkpoint)", state);
    goto done;
  }
  if ((st = keel_json_load_file(&j, state))) goto done;
  json_t *files = json_object_get(j, "files");
  if (!json_is_object(files) || !json_object_get(files, "model.safetensors") ||
      !json_object_get(files, "optimizer.safetensors")) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: files is missing or incomplete", state);
    goto done;
  }
  const char *name;
  json_t *f;
  json_object_foreach(files, name, f) {
    char *p = keel_path_join(dir, name);
    uint64_t bytes, sum;
    const char *want = json_string_value(json_object_get(f, "xxh3"));
    json_int_t want_bytes = json_integer_value(json_object_get(f, "bytes"));
    char got[17];
    if (strchr(name, '/') || !keel_path_exists(p)) st = keel_fail(KEEL_ERR_FORMAT, "%s: missing", p);
    else if ((st = file_sum(p, &bytes, &sum))) {
    } else if ((json_int_t)bytes != want_bytes)
      st = keel_fail(KEEL_ERR_FORMAT, "%s: %llu bytes, the manifest says %lld (truncated or extended)", p,
                     (unsigned long long)bytes, (long long)want_bytes);
    else if (snprintf(got, sizeof got, "%016llx", (unsigned long long)sum), !want || strcmp(got, want) != 0)
      st = keel_fail(KEEL_ERR_FORMAT, "%s: xxh3 %s does not match the manifest's %s (corrupted)", p, got,
                     want ? want : "(none)");
    free(p);
    if (st) goto done;
  }
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) { /* nothing may sit beside what the manifest lists */
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "state.json")) continue;
    if (!json_object_get(files, e->d_name)) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s/%s: not in the manifest (an unexpected file)", dir, e->d_name);
      break;
    }
  }
  if (d) closedir(d);
done:
  json_decref(j);
  free(state);
  return st;
}

keel_status keel_ckpt_latest_good(const char *run, long *step, FILE *log) {
  long *steps;
  int n = keel_ckpt_list(run, &steps);
  *step = -1;
  for (int i = 0; i < n; i++) {
    char *dir = step_dir(run, "%s/ckpt/step-%ld", steps[i]);
    keel_status st = keel_ckpt_verify(dir);
    free(dir);
    if (!st) {
      *step = steps[i];
      break;
    }
    if (log) fprintf(log, "keel: checkpoint step-%ld is not usable: %s; trying the previous one\n", steps[i], keel_errmsg());
  }
  free(steps);
  return KEEL_OK;
}

keel_status keel_ckpt_load(const char *run, long step, keel_model *m, keel_adamw *opt, keel_ckpt_state *s) {
  char *dir = step_dir(run, "%s/ckpt/step-%ld", step), *state = keel_path_join(dir, "state.json"),
       *optp = keel_path_join(dir, "optimizer.safetensors");
  json_t *j = NULL;
  keel_st_file f = {0};
  uint64_t mom_sum = 0;
  keel_status st = keel_ckpt_verify(dir);
  if (!st) st = keel_json_load_file(&j, state);
  if (!st) st = keel_model_load_weights(m, dir);
  if (!st) st = keel_st_open(&f, optp);
  if (!st) {
    const keel_st_tensor *mt = keel_st_find(&f, "adamw.m"), *vt = keel_st_find(&f, "adamw.v");
    int b16 = mt && mt->dtype == KEEL_DTYPE_BF16;
    size_t want = opt->n * (b16 ? 2 : 4);
    if (!mt || !vt || mt->dtype != vt->dtype || (mt->dtype != KEEL_DTYPE_F32 && !b16) || mt->nbytes != want ||
        vt->nbytes != want)
      st = keel_fail(KEEL_ERR_FORMAT, "%s: adamw.m/adamw.v missing or of the wrong size", optp);
    else {
      keel_adamw_set(opt, mt->data, vt->data, b16); /* either stored type resumes either kind of run */
      mom_sum = fingerprint(m->params, m->tab.total, m->bias,
                            (size_t)(m->c.num_hidden_layers + m->c.num_nextn_predict_layers) *
                                (m->c.n_routed_experts ? m->c.n_routed_experts : 1),
                            mt->data, vt->data, want);
    }
    keel_st_close(&f);
  }
  if (!st) {
    json_t *ld = json_object_get(j, "loader"), *sk = json_object_get(j, "skipped_steps");
    memset(s, 0, sizeof *s);
    s->step = (long)json_integer_value(json_object_get(j, "step"));
    opt->t = (long)json_integer_value(json_object_get(j, "adamw_step"));
    s->seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
    s->loader.seed = (uint64_t)json_integer_value(json_object_get(ld, "seed"));
    s->loader.epoch = (uint64_t)json_integer_value(json_object_get(ld, "epoch"));
    s->loader.position = (uint64_t)json_integer_value(json_object_get(ld, "position"));
    for (size_t i = 0; i < json_array_size(sk) && s->n_skipped < KEEL_MAX_SKIPS; i++)
      s->skipped[s->n_skipped++] = (long)json_integer_value(json_array_get(sk, i));
    if (s->step != step || !json_is_object(ld)) st = keel_fail(KEEL_ERR_FORMAT, "%s: step or loader state missing", state);
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)mom_sum);
    const char *want = json_string_value(json_object_get(j, "fingerprint"));
    if (!st && (!want || strcmp(want, got) != 0))
      st = keel_fail(KEEL_ERR_FORMAT, "%s: parameters and optimizer state load with fingerprint %s, the manifest says %s",
                     dir, got, want ? want : "(none)");
  }
  json_decref(j);
  free(dir), free(state), free(optp);
  return st;
}

/* ---- writing ---- */

void keel_ckpt_writer_init(keel_ckpt_writer *w, const char *run, const char *tokenizer_dir, int keep_last,
                           int keep_every, keel_inject *inject) {
  memset(w, 0, sizeof *w);
  w->run = keel_xstrdup(run);
  w->tokenizer_dir = tokenizer_dir ? keel_xstrdup(tokenizer_dir) : NULL;
  w->keep_last = keep_last;
  w->keep_every = keep_every;
  w->inject = inject;
}

static void retention(keel_ckpt_writer *w) {
  long *steps;
  int n = keel_ckpt_list(w->run, &steps);
  for (int i = 0; i < n; i++) {
    int keep = i < w->keep_last || (w->keep_every > 0 && steps[i] % w->keep_every == 0) || w->keep_last <= 0;
    if (keep) continue;
    char *dir = step_dir(w->run, "%s/ckpt/step-%ld", steps[i]);
    rm_rf(dir);
    free(dir);
  }
  free(steps);
}

static keel_status write_all(keel_ckpt_writer *w, const char *tmp, long save_index) {
  keel_status st = keel_weights_save(&w->c, w->tab, w->params, w->bias, tmp);
  if (!st && w->tokenizer_dir) st = keel_copy_tokenizer(w->tokenizer_dir, tmp);
  if (st) return st;
  if (w->inject && keel_inject_take(w->inject, KEEL_FAULT_TORN, save_index)) raise(SIGKILL); /* dies mid-save */
  if (w->inject && keel_inject_take(w->inject, KEEL_FAULT_ENOSPC, save_index))
    return keel_fail(KEEL_ERR_IO, "%s/optimizer.safetensors: write failed: No space left on device (injected)", tmp);
  keel_st_writer sw;
  keel_st_writer_init(&sw);
  int64_t shape[1] = {(int64_t)w->n_params};
  keel_dtype mt = w->bf16_moments ? KEEL_DTYPE_BF16 : KEEL_DTYPE_F32;
  keel_st_writer_add(&sw, "adamw.m", mt, 1, shape, w->m);
  keel_st_writer_add(&sw, "adamw.v", mt, 1, shape, w->v);
  char *p = keel_path_join(tmp, "optimizer.safetensors");
  st = keel_st_writer_save(&sw, p);
  free(p);
  keel_st_writer_free(&sw);
  if (st) return st;
  json_t *files = json_object();
  w->r_bytes = 0;
  for (size_t i = 0; i < sizeof ckpt_files / sizeof *ckpt_files && !st; i++) {
    char *fp = keel_path_join(tmp, ckpt_files[i]);
    uint64_t bytes, sum;
    if (keel_path_exists(fp) && !(st = file_sum(fp, &bytes, &sum))) {
      char hex[17];
      snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sum);
      json_object_set_new(files, ckpt_files[i], json_pack("{s:I, s:s}", "bytes", (json_int_t)bytes, "xxh3", hex));
      w->r_bytes += bytes;
    }
    free(fp);
  }
  char *cfg = keel_path_join(tmp, "config.json");
  uint64_t cb = 0, ch = 0;
  file_sum(cfg, &cb, &ch);
  free(cfg);
  json_t *skips = json_array();
  for (int i = 0; i < w->s.n_skipped; i++) json_array_append_new(skips, json_integer(w->s.skipped[i]));
  char fp_hex[17], cfg_hex[17];
  snprintf(fp_hex, sizeof fp_hex, "%016llx",
           (unsigned long long)fingerprint(w->params, w->n_params, w->bias, w->n_bias, w->m, w->v,
                                           w->n_params * (w->bf16_moments ? 2 : 4)));
  snprintf(cfg_hex, sizeof cfg_hex, "%016llx", (unsigned long long)ch);
  json_t *j = json_pack("{s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:o, s:i, s:s, s:s, s:s, s:o}", "step",
                        (json_int_t)w->s.step, "adamw_step", (json_int_t)w->adamw_t, "loader", "seed",
                        (json_int_t)w->s.loader.seed, "epoch", (json_int_t)w->s.loader.epoch, "position",
                        (json_int_t)w->s.loader.position, "seed", (json_int_t)w->s.seed, "skipped_steps", skips,
                        "world_size", 1, "keel_version", KEEL_VERSION, "config_hash", cfg_hex, "fingerprint", fp_hex,
                        "files", files);
  p = keel_path_join(tmp, "state.json");
  if (!st) st = keel_json_save_file(j, p, 2); /* the manifest goes last */
  free(p);
  json_decref(j);
  return st;
}

static void *writer_main(void *arg) {
  keel_ckpt_writer *w = arg;
  double t0 = keel_now();
  char *ck = keel_path_join(w->run, "ckpt"), *tmp = step_dir(w->run, "%s/ckpt/.step-%ld.tmp", w->s.step),
       *dst = step_dir(w->run, "%s/ckpt/step-%ld", w->s.step);
  keel_status st = keel_mkdirs(ck);
  rm_rf(tmp);
  if (!st) st = write_all(w, tmp, w->n_saves);
  if (!st) {
    if (keel_path_exists(dst)) rm_rf(dst); /* an older save of the same step (before a rollback) */
    if (rename(tmp, dst) != 0) st = keel_fail(KEEL_ERR_IO, "%s: cannot rename the checkpoint into place", dst);
    else st = keel_fsync_dir_of(dst);
  }
  if (st) {
    snprintf(w->r_err, sizeof w->r_err, "%s", keel_errmsg());
    rm_rf(tmp); /* the previous checkpoint is never touched */
  } else {
    retention(w);
  }
  w->r_ok = !st;
  w->r_seconds = keel_now() - t0;
  free(ck), free(tmp), free(dst);
  return NULL;
}

/* The background writer: not held to the CPU of the (pinned) training thread that starts it. */
static void *writer_thread(void *arg) {
  keel_backend_release_thread();
  return writer_main(arg);
}

static void take_result(keel_ckpt_writer *w) {
  w->ok = w->r_ok;
  w->done_step = w->s.step;
  w->seconds = w->r_seconds;
  w->bytes = w->r_bytes;
  snprintf(w->err, sizeof w->err, "%s", w->r_err);
  w->done = 1;
}

void keel_ckpt_writer_wait(keel_ckpt_writer *w) {
  if (!w->busy) return;
  pthread_join(w->thread, NULL);
  w->busy = 0;
  take_result(w);
}

int keel_ckpt_writer_poll(keel_ckpt_writer *w) {
  int d = w->done;
  w->done = 0;
  return d;
}

static void *dup_bytes(void *old, const void *src, size_t n) {
  void *p = keel_xrealloc(old, n ? n : 1);
  memcpy(p, src, n);
  return p;
}

static float *dup_floats(float *old, const float *src, size_t n) { return dup_bytes(old, src, n * sizeof *src); }

void keel_ckpt_writer_submit(keel_ckpt_writer *w, const keel_model *m, const keel_adamw *opt, const keel_ckpt_state *s,
                             int in_place) {
  keel_ckpt_writer_wait(w);
  int E = m->c.n_routed_experts ? m->c.n_routed_experts : 1;
  w->c = m->c;
  w->tab = &m->tab;
  w->n_params = m->tab.total;
  w->n_bias = (size_t)(m->c.num_hidden_layers + m->c.num_nextn_predict_layers) * E;
  if (w->m && w->bf16_moments != opt->bf16) free(w->m), free(w->v), w->m = w->v = NULL;
  w->bf16_moments = opt->bf16;
  w->adamw_t = opt->t;
  w->s = *s;
  w->n_saves++;
  w->r_err[0] = 0;
  if (in_place) { /* nothing changes the state while this runs: write it where it lies, no copies */
    free(w->params), free(w->bias), free(w->m), free(w->v);
    w->params = m->params, w->bias = m->bias, w->m = opt->m, w->v = opt->v;
    writer_main(w);
    take_result(w);
    w->params = w->bias = NULL, w->m = w->v = NULL;
    return;
  }
  w->params = dup_floats(w->params, m->params, w->n_params);
  w->bias = dup_floats(w->bias, m->bias, w->n_bias);
  w->m = dup_bytes(w->m, opt->m, w->n_params * keel_adamw_moment_bytes(opt));
  w->v = dup_bytes(w->v, opt->v, w->n_params * keel_adamw_moment_bytes(opt));
  w->busy = pthread_create(&w->thread, NULL, writer_thread, w) == 0;
  if (!w->busy) { /* no thread: write in place */
    writer_main(w);
    take_result(w);
  }
}

void keel_ckpt_writer_free(keel_ckpt_writer *w) {
  keel_ckpt_writer_wait(w);
  free(w->run), free(w->tokenizer_dir), free(w->params), free(w->bias), free(w->m), free(w->v);
  memset(w, 0, sizeof *w);
}
