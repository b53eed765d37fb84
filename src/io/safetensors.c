/* safetensors reader (validation per the format's rules: header bounds,
 * known dtypes, sizes matching shapes, ranges covering the data buffer
 * contiguously without overlap, no duplicate keys) and writer. */
#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static uint64_t get_u64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void put_u64le(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int64_t keel_st_numel(const keel_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

static int cmp_offset(const void *a, const void *b) {
  const keel_st_tensor *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static keel_status parse_entry(keel_st_tensor *t, const char *key, json_t *v, const char *name,
                               size_t data_size) {
  json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
         *offs = json_object_get(v, "data_offsets");
  if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
      json_array_size(offs) != 2)
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": needs dtype, shape and data_offsets [begin, end]",
                     name, key);
  int d = keel_dtype_from_name(json_string_value(dt));
  if (d < 0)
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": unknown dtype \"%.20s\"", name, key,
                     json_string_value(dt));
  t->dtype = (keel_dtype)d;
  if (json_array_size(shape) > KEEL_ST_MAX_DIMS)
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": more than %d dimensions", name, key, KEEL_ST_MAX_DIMS);
  t->ndim = (int)json_array_size(shape);
  unsigned __int128 bytes = keel_dtype_size(t->dtype);
  for (int i = 0; i < t->ndim; i++) {
    json_t *s = json_array_get(shape, (size_t)i);
    if (!json_is_integer(s) || json_integer_value(s) < 0)
      return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": shape[%d] is not a non-negative integer", name, key, i);
    t->shape[i] = json_integer_value(s);
    bytes *= (unsigned __int128)t->shape[i];
    if (bytes >> 64) bytes = (unsigned __int128)1 << 64; /* saturate: no file is that large */
  }
  json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
  if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
      json_integer_value(e) < json_integer_value(b))
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": data_offsets must be 0 <= begin <= end", name, key);
  uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
  if (end > data_size)
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": data_offsets end %llu is past the data (%zu bytes)",
                     name, key, (unsigned long long)end, data_size);
  if ((unsigned __int128)(end - begin) != bytes) {
    char need[32];
    if (bytes >> 64) snprintf(need, sizeof need, "over 2^64");
    else snprintf(need, sizeof need, "%llu", (unsigned long long)bytes);
    return keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": %llu bytes of data but shape and dtype need %s", name,
                     key, (unsigned long long)(end - begin), need);
  }
  t->offset = (size_t)begin;
  t->nbytes = (size_t)(end - begin);
  t->name = keel_xstrdup(key);
  return KEEL_OK;
}

keel_status keel_st_parse(keel_st_file *f, const uint8_t *data, size_t size, const char *name) {
  keel_status st;
  memset(f, 0, sizeof *f);
  if (size < 8) return keel_fail(KEEL_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", name, size);
  uint64_t n = get_u64le(data);
  if (n > KEEL_ST_MAX_HEADER)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 0: header length %llu exceeds %u", name, (unsigned long long)n,
                     KEEL_ST_MAX_HEADER);
  if (n > size - 8)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 0: header length %llu runs past the end of the file (%zu bytes)",
                     name, (unsigned long long)n, size);
  if (n == 0 || data[8] != '{') return keel_fail(KEEL_ERR_FORMAT, "%s: byte 8: header does not start with '{'", name);
  json_error_t je;
  json_t *root = json_loadb((const char *)data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
  if (!root)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte %d: bad header JSON: %s", name, 8 + je.position, je.text);
  if (!json_is_object(root)) {
    json_decref(root);
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 8: header is not a JSON object", name);
  }
  size_t data_off = 8 + (size_t)n, data_size = size - data_off;
  f->tensors = keel_xcalloc(json_object_size(root), sizeof *f->tensors);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(v)) {
        st = keel_fail(KEEL_ERR_FORMAT, "%s: __metadata__ is not an object", name);
        goto fail;
      }
      size_t m = json_object_size(v);
      f->meta_keys = keel_xcalloc(m, sizeof *f->meta_keys);
      f->meta_values = keel_xcalloc(m, sizeof *f->meta_values);
      const char *mk;
      json_t *mv;
      json_object_foreach(v, mk, mv) {
        if (!json_is_string(mv)) {
          st = keel_fail(KEEL_ERR_FORMAT, "%s: __metadata__[\"%.40s\"] is not a string", name, mk);
          goto fail;
        }
        f->meta_keys[f->n_meta] = keel_xstrdup(mk);
        f->meta_values[f->n_meta++] = keel_xstrdup(json_string_value(mv));
      }
      continue;
    }
    if ((st = parse_entry(&f->tensors[f->n], key, v, name, data_size))) goto fail;
    f->n++;
  }
  qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_offset);
  size_t at = 0;
  for (int i = 0; i < f->n; i++) {
    keel_st_tensor *t = &f->tensors[i];
    if (t->offset != at) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: tensor \"%.60s\": data at %zu but %zu expected (ranges must be contiguous, without overlap)",
                     name, t->name, t->offset, at);
      goto fail;
    }
    at += t->nbytes;
    t->data = data + data_off + t->offset;
    t->offset += data_off;
  }
  if (at != data_size) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: byte %zu: %zu bytes of data after the last tensor", name, data_off + at,
                   data_size - at);
    goto fail;
  }
  json_decref(root);
  return KEEL_OK;
fail:
  json_decref(root);
  keel_st_close(f);
  return st;
}

keel_status keel_st_open(keel_st_file *f, const char *path) {
  keel_mapped m;
  keel_status st = keel_file_map(&m, path);
  if (st) return st;
  if ((st = keel_st_parse(f, m.data, m.size, path))) {
    keel_file_unmap(&m);
    return st;
  }
  f->map = m;
  return KEEL_OK;
}

void keel_st_close(keel_st_file *f) {
  for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
  free(f->tensors);
  for (int i = 0; i < f->n_meta; i++) free(f->meta_keys[i]), free(f->meta_values[i]);
  free(f->meta_keys);
  free(f->meta_values);
  keel_file_unmap(&f->map);
  memset(f, 0, sizeof *f);
}

const keel_st_tensor *keel_st_find(const keel_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}

void keel_st_writer_init(keel_st_writer *w) { memset(w, 0, sizeof *w); }

void keel_st_writer_add(keel_st_writer *w, const char *name, keel_dtype dtype, int ndim, const int64_t *shape,
                        const void *data) {
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 16;
    w->tensors = keel_xrealloc(w->tensors, (size_t)w->cap * sizeof *w->tensors);
  }
  keel_st_tensor *t = &w->tensors[w->n++];
  memset(t, 0, sizeof *t);
  t->name = keel_xstrdup(name);
  t->dtype = dtype;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->data = data;
  t->nbytes = (size_t)keel_st_numel(t) * keel_dtype_size(dtype);
}

void keel_st_writer_meta(keel_st_writer *w, const char *key, const char *value) {
  w->meta_keys = keel_xrealloc(w->meta_keys, (size_t)(w->n_meta + 1) * sizeof *w->meta_keys);
  w->meta_values = keel_xrealloc(w->meta_values, (size_t)(w->n_meta + 1) * sizeof *w->meta_values);
  w->meta_keys[w->n_meta] = keel_xstrdup(key);
  w->meta_values[w->n_meta++] = keel_xstrdup(value);
}

keel_status keel_st_writer_save(keel_st_writer *w, const char *path) {
  json_t *root = json_object();
  if (w->n_meta) {
    json_t *meta = json_object();
    for (int i = 0; i < w->n_meta; i++) json_object_set_new(meta, w->meta_keys[i], json_string(w->meta_values[i]));
    json_object_set_new(root, "__metadata__", meta);
  }
  size_t at = 0;
  for (int i = 0; i < w->n; i++) {
    keel_st_tensor *t = &w->tensors[i];
    json_t *shape = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
    json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", keel_dtype_name(t->dtype), "shape", shape,
                          "data_offsets", (json_int_t)at, (json_int_t)(at + t->nbytes));
    json_object_set_new(root, t->name, e);
    at += t->nbytes;
  }
  char *hdr = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  size_t n = strlen(hdr), padded = (n + 7) / 8 * 8;
  uint8_t len8[8];
  put_u64le(len8, padded);
  keel_afile af;
  keel_status st = keel_afile_open(&af, path);
  if (st) {
    free(hdr);
    return st;
  }
  static const char spaces[8] = "        ";
  st = keel_afile_write(&af, len8, 8);
  if (!st) st = keel_afile_write(&af, hdr, n);
  if (!st) st = keel_afile_write(&af, spaces, padded - n);
  for (int i = 0; i < w->n && !st; i++) st = keel_afile_write(&af, w->tensors[i].data, w->tensors[i].nbytes);
  free(hdr);
  if (st) {
    keel_afile_abort(&af);
    return st;
  }
  return keel_afile_commit(&af);
}

void keel_st_writer_free(keel_st_writer *w) {
  for (int i = 0; i < w->n; i++) free(w->tensors[i].name);
  free(w->tensors);
  for (int i = 0; i < w->n_meta; i++) free(w->meta_keys[i]), free(w->meta_values[i]);
  free(w->meta_keys);
  free(w->meta_values);
  memset(w, 0, sizeof *w);
}
