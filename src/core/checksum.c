/* xxh3-64 through libxxhash. */
#include "checksum.h"

#include <xxhash.h>

#include "error.h"

uint64_t keel_xxh3(const void *data, size_t len) { return XXH3_64bits(data, len); }

void keel_xxh3_begin(keel_xxh3_stream *s) {
  XXH3_state_t *st = XXH3_createState();
  if (!st) keel_xmalloc((unsigned long)-1); /* createState only fails when memory is out */
  XXH3_64bits_reset(st);
  s->state = st;
}

void keel_xxh3_update(keel_xxh3_stream *s, const void *data, size_t len) {
  XXH3_64bits_update((XXH3_state_t *)s->state, data, len);
}

uint64_t keel_xxh3_end(keel_xxh3_stream *s) {
  uint64_t h = XXH3_64bits_digest((XXH3_state_t *)s->state);
  XXH3_freeState((XXH3_state_t *)s->state);
  s->state = NULL;
  return h;
}
