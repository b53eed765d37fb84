/* libFuzzer target: the token shard header decoder. An accepted header must
 * describe exactly the bytes that follow it. */
#include <stdint.h>
#include <stdlib.h>

#include "data/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_shard_header h;
  if (keel_shard_header_decode(&h, data, size, "fuzz") != KEEL_OK) return 0;
  if (KEEL_SHARD_HEADER + h.n_tokens * h.token_bytes != size) abort();
  uint8_t again[KEEL_SHARD_HEADER];
  keel_shard_header_encode(again, &h);
  for (int i = 0; i < KEEL_SHARD_HEADER; i++)
    if (again[i] != data[i]) abort(); /* decode then encode is the identity */
  return 0;
}
