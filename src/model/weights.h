/* Model directories in the HF layout: config.json plus model.safetensors (or
 * shards listed in model.safetensors.index.json), with HF tensor names.
 * Loads F32, BF16, F16 and F8_E4M3 (with weight_scale_inv 128x128 block
 * scales) into fp32 master weights; writes F32. */
#ifndef KEEL_MODEL_WEIGHTS_H
#define KEEL_MODEL_WEIGHTS_H

#include "model.h"

/* Reads DIR/config.json and the weights into a new model. */
keel_status keel_model_load(keel_model *m, const char *dir, const keel_backend *be);
/* Loads the weights of an already initialised model (same config) from DIR. */
keel_status keel_model_load_weights(keel_model *m, const char *dir);
/* Writes DIR/config.json and DIR/model.safetensors (atomically, file by file). */
keel_status keel_model_save(const keel_model *m, const char *dir);
/* The same from parts (a snapshot taken while training goes on). */
keel_status keel_weights_save(const keel_config *c, const keel_param_table *tab, const float *params,
                              const float *bias, const char *dir);

#endif
