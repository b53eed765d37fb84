/* libFuzzer target: the tokenizer.json loader. A file that loads must then
 * encode and decode its own bytes without crashing; with all 256 byte tokens
 * present, decode(encode(x)) must give x back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  keel_tokenizer *tok;
  if (keel_tokenizer_load_buf(&tok, (const char *)data, size, "fuzz") != KEEL_OK) return 0;
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, (const char *)data, size, KEEL_TOK_SPECIAL, &ids);
  char *out = NULL;
  size_t len = 0, cap = 0;
  if (keel_tokenizer_decode(tok, ids.v, ids.n, 0, &out, &len, &cap) != KEEL_OK) abort();
  int all_bytes = 1;
  for (int b = 0; b < 256; b++) all_bytes &= tok->byte_id[b] >= 0;
  /* added tokens whose content is also reachable by BPE can decode the same
   * bytes differently only if contents collide; plain round trip must hold */
  if (all_bytes && tok->n_added == 0 && (len != size || memcmp(out, data, size) != 0)) abort();
  free(out);
  keel_ids_free(&ids);
  keel_tokenizer_free(tok);
  return 0;
}
