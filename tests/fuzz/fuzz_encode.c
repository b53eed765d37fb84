/* libFuzzer target: encoding arbitrary bytes (invalid UTF-8, NUL, CR runs,
 * special-token fragments) with a small tokenizer that uses DeepSeek-V3's
 * pre-tokenizer; decode(encode(x)) must be x. */
#include "small_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) build();
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, (const char *)data, size, size && (data[0] & 1) ? KEEL_TOK_SPECIAL : 0, &ids);
  char *out = NULL;
  size_t len = 0, cap = 0;
  if (keel_tokenizer_decode(tok, ids.v, ids.n, 0, &out, &len, &cap) != KEEL_OK) abort();
  if (len != size || memcmp(out, data, size) != 0) abort();
  free(out);
  keel_ids_free(&ids);
  return 0;
}
