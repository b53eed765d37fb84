/* Tokenizer speed: load time of a tokenizer.json and single-thread encoding
 * throughput of a text file (load excluded), as the JS peer measures itself.
 * usage: tokenizer_bench tokenizer.json text.txt */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "data/tokenizer.h"
#include "io/file.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s tokenizer.json text.txt\n", argv[0]);
    return 2;
  }
  keel_tokenizer *tok;
  double t0 = keel_now();
  if (keel_tokenizer_load(&tok, argv[1])) {
    fprintf(stderr, "%s\n", keel_errmsg());
    return 2;
  }
  double load = keel_now() - t0;
  char *text;
  size_t len;
  if (keel_file_read(argv[2], &text, &len)) {
    fprintf(stderr, "%s\n", keel_errmsg());
    return 2;
  }
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, text, len < 1000 ? len : 1000, 0, &ids); /* warm up, as the JS side does */
  ids.n = 0;
  t0 = keel_now();
  keel_tokenizer_encode(tok, text, len, 0, &ids);
  double s = keel_now() - t0;
  printf("keel %.3f MB/s %zu tokens %.3f s (load %.3f s)\n", (double)len / 1e6 / s, ids.n, s, load);
  keel_ids_free(&ids);
  free(text);
  keel_tokenizer_free(tok);
  return 0;
}
