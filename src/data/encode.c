/* Encoding and decoding with a loaded tokenizer: added-token split, then the
 * pre-tokenizer stages, then BPE merges on each piece (lowest rank first,
 * leftmost on ties, as HF does), with a cache of pieces already seen. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

#define CACHE_MAX_PIECE 64         /* longer pieces are not cached */
#define CACHE_MAX_POOL (1u << 22)  /* ids kept before the cache is cleared */

void keel_ids_push(keel_ids *ids, int32_t id) {
  if (ids->n == ids->cap) {
    ids->cap = ids->cap ? ids->cap * 2 : 256;
    ids->v = keel_xrealloc(ids->v, ids->cap * sizeof *ids->v);
  }
  ids->v[ids->n++] = id;
}

void keel_ids_free(keel_ids *ids) {
  free(ids->v);
  memset(ids, 0, sizeof *ids);
}

typedef struct merge_cand {
  uint32_t rank, left; /* ordered by rank, then by position */
  int32_t lid, rid;    /* ids when pushed: stale if either side changed */
} merge_cand;

static int cand_less(const merge_cand *a, const merge_cand *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(merge_cand *h, size_t *n, merge_cand c) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(&c, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static merge_cand heap_pop(merge_cand *h, size_t *n) {
  merge_cand top = h[0], last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
    if (!cand_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = last;
  return top;
}

static int lookup_merge(const keel_tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                        int32_t *merged) {
  uint64_t v;
  if (a < 0 || b < 0 || !keel_u64map_get(&tok->merges, ((uint64_t)a << 32) | (uint32_t)b, &v))
    return 0;
  *rank = (uint32_t)(v >> 32);
  *merged = (int32_t)(uint32_t)v;
  return 1;
}

/* BPE on one piece of raw bytes; appends ids. */
static void bpe_piece(const keel_tokenizer *tok, const uint8_t *s, size_t n, keel_ids *out) {
  if (n == 1) {
    if (tok->byte_id[s[0]] >= 0) keel_ids_push(out, tok->byte_id[s[0]]);
    return;
  }
  int32_t stack_id[64], stack_link[128];
  merge_cand stack_heap[3 * 64]; /* pushes <= (n-1) + 2 per merge */
  int32_t *id = n <= 64 ? stack_id : keel_xmalloc(n * sizeof *id);
  int32_t *prev = n <= 64 ? stack_link : keel_xmalloc(2 * n * sizeof *prev), *next = prev + n;
  merge_cand *heap = n <= 64 ? stack_heap : keel_xmalloc(3 * n * sizeof *heap);
  size_t nh = 0;
  for (size_t i = 0; i < n; i++) {
    id[i] = tok->byte_id[s[i]];
    prev[i] = (int32_t)i - 1;
    next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  for (size_t i = 0; i + 1 < n; i++) {
    merge_cand c = {0, (uint32_t)i, id[i], id[i + 1]};
    int32_t m;
    if (lookup_merge(tok, id[i], id[i + 1], &c.rank, &m)) heap_push(heap, &nh, c);
  }
  while (nh) {
    merge_cand c = heap_pop(heap, &nh);
    int32_t l = (int32_t)c.left, r = next[l];
    if (id[l] != c.lid || r < 0 || id[r] != c.rid) continue; /* stale */
    uint32_t rank;
    int32_t merged = -2;
    lookup_merge(tok, id[l], id[r], &rank, &merged);
    id[l] = merged;
    id[r] = -2; /* dead */
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    merge_cand nc;
    if (prev[l] >= 0 && lookup_merge(tok, id[prev[l]], id[l], &nc.rank, &merged)) {
      nc.left = (uint32_t)prev[l], nc.lid = id[prev[l]], nc.rid = id[l];
      heap_push(heap, &nh, nc);
    }
    if (next[l] >= 0 && lookup_merge(tok, id[l], id[next[l]], &nc.rank, &merged)) {
      nc.left = (uint32_t)l, nc.lid = id[l], nc.rid = id[next[l]];
      heap_push(heap, &nh, nc);
    }
  }
  for (int32_t i = 0; i >= 0; i = next[i])
    if (id[i] >= 0) keel_ids_push(out, id[i]); /* bytes with no token are dropped, as HF does without unk */
  if (n > 64) free(id), free(prev), free(heap);
}

static void encode_piece(keel_tokenizer *tok, const uint8_t *s, size_t n, keel_ids *out) {
  int64_t v;
  if (n <= CACHE_MAX_PIECE && keel_strmap_get(&tok->cache, s, n, &v)) {
    size_t off = (size_t)(v >> 8), cnt = (size_t)(v & 0xFF);
    for (size_t i = 0; i < cnt; i++) keel_ids_push(out, tok->pool[off + i]);
    return;
  }
  size_t start = out->n;
  bpe_piece(tok, s, n, out);
  if (n > CACHE_MAX_PIECE) return;
  size_t cnt = out->n - start;
  if (tok->pool_n + cnt > CACHE_MAX_POOL) {
    keel_strmap_clear(&tok->cache);
    tok->pool_n = 0;
  }
  if (tok->pool_n + cnt > tok->pool_cap) {
    while (tok->pool_n + cnt > tok->pool_cap) tok->pool_cap = tok->pool_cap ? tok->pool_cap * 2 : 1 << 16;
    tok->pool = keel_xrealloc(tok->pool, tok->pool_cap * sizeof *tok->pool);
  }
  if (cnt) memcpy(tok->pool + tok->pool_n, out->v + start, cnt * sizeof *out->v);
  keel_strmap_put(&tok->cache, s, n, (int64_t)((tok->pool_n << 8) | cnt));
  tok->pool_n += cnt;
}

/* Text between added tokens: pre-tokenize, then BPE each piece. */
static void encode_segment(keel_tokenizer *tok, const uint8_t *s, size_t n, keel_ids *out) {
  if (n == 0) return;
  uint8_t *copy = NULL;
  if (tok->add_prefix_space && s[0] != ' ') {
    copy = keel_xmalloc(n + 1);
    copy[0] = ' ';
    memcpy(copy + 1, s, n);
    s = copy;
    n++;
  }
  keel_cptext *t = &tok->text;
  keel_cptext_decode(t, s, n);
  keel_spans *cur = &tok->spans[0], *nxt = &tok->spans[1];
  cur->n = 0;
  keel_spans_push(cur, 0, (uint32_t)t->n);
  for (int k = 0; k < tok->n_pretok; k++) {
    keel_pretok_split(nxt, cur, t, (keel_pretok_kind)tok->pretok[k]);
    keel_spans *tmp = cur;
    cur = nxt;
    nxt = tmp;
  }
  for (size_t i = 0; i < cur->n; i++) {
    uint32_t lo = t->off[cur->v[i].lo], hi = t->off[cur->v[i].hi];
    encode_piece(tok, s + lo, hi - lo, out);
  }
  free(copy);
}

static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

void keel_tokenizer_encode(keel_tokenizer *tok, const char *text, size_t len, int flags, keel_ids *ids) {
  const uint8_t *s = (const uint8_t *)text;
  if ((flags & KEEL_TOK_ADD_BOS) && tok->bos_id >= 0) keel_ids_push(ids, tok->bos_id);
  size_t seg = 0, pos = 0;
  while (pos < len) {
    size_t mlen = 0;
    int k = tok->n_added ? keel_tokenizer_added_at(tok, s + pos, len - pos, flags, &mlen) : -1;
    if (k < 0) {
      pos++;
      continue;
    }
    const keel_added_token *a = &tok->added[k];
    size_t seg_end = pos;
    if (a->lstrip)
      while (seg_end > seg && is_space(s[seg_end - 1])) seg_end--;
    encode_segment(tok, s + seg, seg_end - seg, ids);
    keel_ids_push(ids, a->id);
    pos += mlen;
    if (a->rstrip)
      while (pos < len && is_space(s[pos])) pos++;
    seg = pos;
  }
  encode_segment(tok, s + seg, len - seg, ids);
}

keel_status keel_tokenizer_decode(const keel_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                                  char **out, size_t *len, size_t *cap) {
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= tok->n_vocab || !tok->raw[id])
      return keel_fail(KEEL_ERR_ARG, "token id %d at position %zu is not in the vocabulary (size %d)",
                       id, i, tok->n_vocab);
    if ((flags & KEEL_TOK_SKIP_SPECIAL) && tok->is_special[id]) continue;
    uint32_t k = tok->raw_len[id];
    if (*len + k + 1 > *cap) {
      *cap = (*len + k + 1) * 2;
      *out = keel_xrealloc(*out, *cap);
    }
    memcpy(*out + *len, tok->raw[id], k);
    *len += k;
  }
  if (!*out) *out = keel_xcalloc(1, *cap = 1);
  (*out)[*len] = 0;
  return KEEL_OK;
}
