/* Token shards: a fixed 64-byte little-endian header, then the tokens.
 *
 *   offset size field
 *   0      8    magic "KEELTOK\0"
 *   8      4    version (1)
 *   12     4    bytes per token (2 = uint16, 4 = uint32)
 *   16     8    token count
 *   24     8    xxh3-64 of the payload
 *   32     4    vocabulary size
 *   36     28   zero
 */
#ifndef KEEL_DATA_SHARD_H
#define KEEL_DATA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../io/file.h"

#define KEEL_SHARD_HEADER 64
#define KEEL_SHARD_VERSION 1

typedef struct keel_shard_header {
  uint32_t version;
  uint32_t token_bytes; /* 2 or 4 */
  uint64_t n_tokens;
  uint64_t checksum;    /* xxh3-64 of the payload */
  uint32_t vocab_size;
} keel_shard_header;

void keel_shard_header_encode(uint8_t out[KEEL_SHARD_HEADER], const keel_shard_header *h);
/* Checks magic, version, token size; errors name the file and byte offset. */
keel_status keel_shard_header_decode(keel_shard_header *h, const uint8_t *in, size_t size, const char *name);

typedef struct keel_shard {
  keel_mapped map;
  keel_shard_header h;
  const uint8_t *tokens; /* (n_tokens * token_bytes) little-endian */
} keel_shard;

/* Maps and validates a shard, including its checksum. */
keel_status keel_shard_open(keel_shard *s, const char *path);
void keel_shard_close(keel_shard *s);
static inline uint32_t keel_shard_token(const keel_shard *s, uint64_t i) {
  const uint8_t *p = s->tokens + i * s->h.token_bytes;
  return s->h.token_bytes == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                               : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct keel_shard_writer {
  keel_afile file;
  keel_shard_header h;
  void *hash; /* keel_xxh3_stream state */
  uint8_t *buf;
  size_t buf_n;
} keel_shard_writer;

/* token_bytes 2 when vocab_size <= 65536, else 4. */
keel_status keel_shard_writer_open(keel_shard_writer *w, const char *path, uint32_t vocab_size);
keel_status keel_shard_writer_put(keel_shard_writer *w, const int32_t *ids, size_t n);
keel_status keel_shard_writer_close(keel_shard_writer *w); /* header, fsync, rename */
void keel_shard_writer_abort(keel_shard_writer *w);

#endif
