/* xxh3-64 checksums (libxxhash), one-shot and streaming. */
#ifndef KEEL_CORE_CHECKSUM_H
#define KEEL_CORE_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t keel_xxh3(const void *data, size_t len);

typedef struct keel_xxh3_stream {
  void *state; /* XXH3_state_t */
} keel_xxh3_stream;

void keel_xxh3_begin(keel_xxh3_stream *s);
void keel_xxh3_update(keel_xxh3_stream *s, const void *data, size_t len);
uint64_t keel_xxh3_end(keel_xxh3_stream *s); /* frees the state */

#endif
