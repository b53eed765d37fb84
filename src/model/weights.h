/* Model directories in the HF layout: config.json plus model.safetensors (or
 * shards listed in model.safetensors.index.json), with HF tensor names.
 * Loads F32, BF16, F16, I8 (with a per-row NAME_scale) and F8_E4M3 (with
 * NAME_scale_inv 128x128 block scales) into fp32 master weights; writes F32. */
#ifndef KEEL_MODEL_WEIGHTS_H
#define KEEL_MODEL_WEIGHTS_H

#include <jansson.h>

#include "../io/safetensors.h"
#include "model.h"

/* The safetensors files of a model dir: model.safetensors or the shards
 * that model.safetensors.index.json lists, all open and validated. */
typedef struct keel_shards {
  char **files;
  keel_st_file *st;
  int n;
} keel_shards;
keel_status keel_shards_open(keel_shards *s, const char *dir);
void keel_shards_close(keel_shards *s);
/* The tensor called name in any shard (its file index in *file), or NULL. */
const keel_st_tensor *keel_shards_find(const keel_shards *s, const char *name, int *file);
/* Converts a stored tensor to fp32: F32, BF16, F16, I8 with a per-row scale,
 * F8_E4M3 with 128x128 block scales (scale: the *_scale or *_scale_inv tensor). */
keel_status keel_tensor_to_f32(float *dst, const keel_st_tensor *t, const keel_st_tensor *scale, const char *file);
const keel_st_tensor *keel_shards_scale(const keel_shards *s, const char *name);
/* For I8 and F8_E4M3 weights: checks the scale's shape and returns an aligned copy in *out (else NULL). */
keel_status keel_tensor_scale(float **out, const keel_st_tensor *t, const keel_st_tensor *scale, const char *file);

/* Reads DIR/config.json and the weights into a new model. */
keel_status keel_model_load(keel_model *m, const char *dir, const keel_backend *be);
/* Loads the weights of an already initialised model (same config) from DIR. */
keel_status keel_model_load_weights(keel_model *m, const char *dir);
/* Writes DIR/config.json and DIR/model.safetensors (atomically, file by file). */
keel_status keel_model_save(const keel_model *m, const char *dir);
/* Writes DIR/model.safetensors from w, then DIR/config.json from config (which it releases). */
keel_status keel_model_dir_write(const char *dir, keel_st_writer *w, json_t *config);
/* The same from parts (a snapshot taken while training goes on). */
keel_status keel_weights_save(const keel_config *c, const keel_param_table *tab, const float *params,
                              const float *bias, const char *dir);

#endif
