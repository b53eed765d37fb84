/* Token shard reading and writing. */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

#include "../core/checksum.h"

static const char magic[8] = "KEELTOK";

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void keel_shard_header_encode(uint8_t out[KEEL_SHARD_HEADER], const keel_shard_header *h) {
  memset(out, 0, KEEL_SHARD_HEADER);
  memcpy(out, magic, 8);
  put_le(out + 8, h->version, 4);
  put_le(out + 12, h->token_bytes, 4);
  put_le(out + 16, h->n_tokens, 8);
  put_le(out + 24, h->checksum, 8);
  put_le(out + 32, h->vocab_size, 4);
}

keel_status keel_shard_header_decode(keel_shard_header *h, const uint8_t *in, size_t size, const char *name) {
  if (size < KEEL_SHARD_HEADER)
    return keel_fail(KEEL_ERR_FORMAT, "%s: %zu bytes is shorter than the %d-byte shard header", name, size,
                     KEEL_SHARD_HEADER);
  if (memcmp(in, magic, 8) != 0) return keel_fail(KEEL_ERR_FORMAT, "%s: byte 0: not a keel token shard (bad magic)", name);
  h->version = (uint32_t)get_le(in + 8, 4);
  h->token_bytes = (uint32_t)get_le(in + 12, 4);
  h->n_tokens = get_le(in + 16, 8);
  h->checksum = get_le(in + 24, 8);
  h->vocab_size = (uint32_t)get_le(in + 32, 4);
  if (h->version != KEEL_SHARD_VERSION)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 8: unsupported shard version %u", name, h->version);
  if (h->token_bytes != 2 && h->token_bytes != 4)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 12: token size %u is not 2 or 4", name, h->token_bytes);
  if (h->vocab_size == 0 || (h->token_bytes == 2 && h->vocab_size > 65536))
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 32: vocabulary size %u does not fit %u-byte tokens", name,
                     h->vocab_size, h->token_bytes);
  for (int i = 36; i < KEEL_SHARD_HEADER; i++)
    if (in[i]) return keel_fail(KEEL_ERR_FORMAT, "%s: byte %d: reserved header bytes must be zero", name, i);
  uint64_t payload = size - KEEL_SHARD_HEADER;
  if (h->n_tokens > payload / h->token_bytes || h->n_tokens * h->token_bytes != payload)
    return keel_fail(KEEL_ERR_FORMAT, "%s: byte 16: header says %llu tokens but the file holds %llu payload bytes",
                     name, (unsigned long long)h->n_tokens, (unsigned long long)payload);
  return KEEL_OK;
}

keel_status keel_shard_open(keel_shard *s, const char *path) {
  memset(s, 0, sizeof *s);
  keel_status st = keel_file_map(&s->map, path);
  if (st) return st;
  if ((st = keel_shard_header_decode(&s->h, s->map.data, s->map.size, path))) goto fail;
  s->tokens = s->map.data + KEEL_SHARD_HEADER;
  uint64_t sum = keel_xxh3(s->tokens, s->map.size - KEEL_SHARD_HEADER);
  if (sum != s->h.checksum) {
    st = keel_fail(KEEL_ERR_FORMAT, "%s: payload checksum %016llx does not match the header's %016llx (file is corrupt)",
                   path, (unsigned long long)sum, (unsigned long long)s->h.checksum);
    goto fail;
  }
  for (uint64_t i = 0; i < s->h.n_tokens; i++)
    if (keel_shard_token(s, i) >= s->h.vocab_size) {
      st = keel_fail(KEEL_ERR_FORMAT, "%s: byte %llu: token %u is outside the vocabulary (%u)", path,
                     (unsigned long long)(KEEL_SHARD_HEADER + i * s->h.token_bytes), keel_shard_token(s, i),
                     s->h.vocab_size);
      goto fail;
    }
  return KEEL_OK;
fail:
  keel_shard_close(s);
  return st;
}

void keel_shard_close(keel_shard *s) {
  keel_file_unmap(&s->map);
  memset(s, 0, sizeof *s);
}

#define WBUF (1 << 16)

keel_status keel_shard_writer_open(keel_shard_writer *w, const char *path, uint32_t vocab_size) {
  memset(w, 0, sizeof *w);
  if (vocab_size == 0) return keel_fail(KEEL_ERR_ARG, "%s: vocabulary size must be positive", path);
  w->h.version = KEEL_SHARD_VERSION;
  w->h.token_bytes = vocab_size <= 65536 ? 2 : 4;
  w->h.vocab_size = vocab_size;
  keel_status st = keel_afile_open(&w->file, path);
  if (st) return st;
  uint8_t hdr[KEEL_SHARD_HEADER] = {0};
  if ((st = keel_afile_write(&w->file, hdr, sizeof hdr))) {
    keel_afile_abort(&w->file);
    return st;
  }
  keel_xxh3_stream *hs = keel_xmalloc(sizeof *hs);
  keel_xxh3_begin(hs);
  w->hash = hs;
  w->buf = keel_xmalloc(WBUF);
  return KEEL_OK;
}

static keel_status flush_buf(keel_shard_writer *w) {
  keel_xxh3_update(w->hash, w->buf, w->buf_n);
  keel_status st = keel_afile_write(&w->file, w->buf, w->buf_n);
  w->buf_n = 0;
  return st;
}

keel_status keel_shard_writer_put(keel_shard_writer *w, const int32_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || (uint32_t)ids[i] >= w->h.vocab_size)
      return keel_fail(KEEL_ERR_ARG, "%s: token %d is outside the vocabulary (%u)", w->file.path, ids[i],
                       w->h.vocab_size);
    if (w->buf_n + 4 > WBUF) {
      keel_status st = flush_buf(w);
      if (st) return st;
    }
    put_le(w->buf + w->buf_n, (uint32_t)ids[i], (int)w->h.token_bytes);
    w->buf_n += w->h.token_bytes;
  }
  w->h.n_tokens += n;
  return KEEL_OK;
}

static void writer_release(keel_shard_writer *w) {
  if (w->hash) keel_xxh3_end(w->hash);
  free(w->hash);
  free(w->buf);
  w->hash = NULL;
  w->buf = NULL;
}

keel_status keel_shard_writer_close(keel_shard_writer *w) {
  keel_status st = flush_buf(w);
  w->h.checksum = keel_xxh3_end(w->hash);
  free(w->hash);
  w->hash = NULL;
  uint8_t hdr[KEEL_SHARD_HEADER];
  keel_shard_header_encode(hdr, &w->h);
  if (!st && (fseek(w->file.fp, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w->file.fp) != sizeof hdr))
    st = keel_fail(KEEL_ERR_IO, "%s: cannot write the shard header", w->file.tmp_path);
  writer_release(w);
  if (st) {
    keel_afile_abort(&w->file);
    return st;
  }
  return keel_afile_commit(&w->file);
}

void keel_shard_writer_abort(keel_shard_writer *w) {
  writer_release(w);
  keel_afile_abort(&w->file);
}
