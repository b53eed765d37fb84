/* libFuzzer target: the safetensors header parser and validator. Whatever the
 * bytes, parsing must not crash, and an accepted file must describe tensors
 * that lie inside the buffer. */
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_st_file f;
  if (keel_st_parse(&f, data, size, "fuzz") != KEEL_OK) return 0;
  for (int i = 0; i < f.n; i++) {
    const keel_st_tensor *t = &f.tensors[i];
    if (t->offset + t->nbytes > size) abort();
    if ((size_t)keel_st_numel(t) * keel_dtype_size(t->dtype) != t->nbytes) abort();
  }
  keel_st_close(&f);
  return 0;
}
