/* A small byte-level BPE tokenizer with DeepSeek-V3's pre-tokenizer and one
 * added special token, built in memory, for the fuzz targets. */
#ifndef KEEL_FUZZ_SMALL_TOKENIZER_H
#define KEEL_FUZZ_SMALL_TOKENIZER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/pretok.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

static keel_tokenizer *tok;

static void build(void) {
  /* vocab: 256 byte tokens + a few merges; one added special token */
  size_t cap = 1 << 16, n = 0;
  char *j = malloc(cap);
  n += (size_t)snprintf(j + n, cap - n, "{\"added_tokens\":[{\"id\":300,\"content\":\"<|x|>\",\"special\":true}],"
                                        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[");
  const int kinds[3] = {KEEL_PRETOK_DIGITS3, KEEL_PRETOK_CJK, KEEL_PRETOK_DEEPSEEK};
  for (int k = 0; k < 3; k++) {
    n += (size_t)snprintf(j + n, cap - n, "%s{\"type\":\"Split\",\"behavior\":\"Isolated\",\"pattern\":{\"Regex\":\"", k ? "," : "");
    for (const char *p = keel_pretok_regex((keel_pretok_kind)kinds[k]); *p; p++) {
      if (*p == '"' || *p == '\\') j[n++] = '\\';
      if (*p == '\r') { j[n++] = '\\'; j[n++] = 'r'; continue; }
      if (*p == '\n') { j[n++] = '\\'; j[n++] = 'n'; continue; }
      j[n++] = *p;
    }
    n += (size_t)snprintf(j + n, cap - n, "\"}}");
  }
  n += (size_t)snprintf(j + n, cap - n, ",{\"type\":\"ByteLevel\",\"use_regex\":false}]},\"model\":{\"type\":\"BPE\",\"vocab\":{");
  for (int b = 0; b < 256; b++) {
    uint8_t u[5] = {0};
    keel_utf8_put(u, keel_byte_to_char((uint8_t)b));
    n += (size_t)snprintf(j + n, cap - n, "%s\"%s%s\":%d", b ? "," : "", (b == '"' || b == '\\') ? "\\" : "", u, b);
  }
  n += (size_t)snprintf(j + n, cap - n, ",\"th\":256,\"the\":257,\"\xc4\xa0the\":258,\"\xc4\xa0\xc4\xa0\":259},"
                                        "\"merges\":[\"t h\",\"th e\",\"\xc4\xa0 the\",\"\xc4\xa0 \xc4\xa0\"]}}");
  if (keel_tokenizer_load_buf(&tok, j, n, "fuzz-encode")) {
    fprintf(stderr, "%s\n", keel_errmsg());
    abort();
  }
  free(j);
}

#endif
