/* BPE training with incremental pair counts (as HF's BpeTrainer): each pair
 * knows the words it occurs in; merging a pair rewrites only those words.
 * Ties between equally frequent pairs go to the smaller (left id, right id),
 * so training is deterministic. */
#include "bpe_train.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "tokenizer.h"
#include "unicode.h"

const char *const keel_bpe_specials[] = {
    "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c>",
    "<\xef\xbd\x9cUser\xef\xbd\x9c>",
    "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
    "<think>",
    "</think>",
};
const int keel_bpe_n_specials = (int)(sizeof keel_bpe_specials / sizeof *keel_bpe_specials);

void keel_bpe_trainer_init(keel_bpe_trainer *t, int gpt2) {
  memset(t, 0, sizeof *t);
  if (gpt2) {
    t->pretok[t->n_pretok++] = KEEL_PRETOK_GPT2;
  } else {
    t->pretok[t->n_pretok++] = KEEL_PRETOK_DIGITS3;
    t->pretok[t->n_pretok++] = KEEL_PRETOK_CJK;
    t->pretok[t->n_pretok++] = KEEL_PRETOK_DEEPSEEK;
  }
  keel_strmap_init(&t->words, 1 << 16);
}

void keel_bpe_trainer_feed(keel_bpe_trainer *t, const char *text, size_t len) {
  keel_cptext_decode(&t->text, (const uint8_t *)text, len);
  keel_spans *cur = &t->spans[0], *nxt = &t->spans[1];
  cur->n = 0;
  keel_spans_push(cur, 0, (uint32_t)t->text.n);
  for (int k = 0; k < t->n_pretok; k++) {
    keel_pretok_split(nxt, cur, &t->text, (keel_pretok_kind)t->pretok[k]);
    keel_spans *tmp = cur;
    cur = nxt;
    nxt = tmp;
  }
  for (size_t i = 0; i < cur->n; i++) {
    uint32_t lo = t->text.off[cur->v[i].lo], hi = t->text.off[cur->v[i].hi];
    int64_t c = 0;
    keel_strmap_get(&t->words, text + lo, hi - lo, &c);
    keel_strmap_put(&t->words, text + lo, hi - lo, c + 1);
  }
  t->bytes_seen += len;
}

void keel_bpe_trainer_free(keel_bpe_trainer *t) {
  keel_strmap_free(&t->words);
  keel_cptext_free(&t->text);
  keel_spans_free(&t->spans[0]);
  keel_spans_free(&t->spans[1]);
}

/* ---- training state ---- */

typedef struct word {
  int32_t *sym; /* (n) current symbols */
  int n;
  int64_t count;
} word;

typedef struct pair_info {
  int32_t a, b;
  int64_t count;
  int32_t *words; /* words it may occur in (may repeat or be stale) */
  int n_words, cap_words;
  uint32_t stamp;
} pair_info;

typedef struct heap_ent {
  int64_t count;
  int32_t a, b, idx;
} heap_ent;

typedef struct trainer_state {
  word *w;
  size_t n_w;
  pair_info *p;
  int32_t n_p, cap_p;
  keel_u64map pidx; /* (a << 32 | b) -> pair index */
  heap_ent *h;
  size_t n_h, cap_h;
} trainer_state;

static int ent_before(const heap_ent *x, const heap_ent *y) {
  if (x->count != y->count) return x->count > y->count;
  if (x->a != y->a) return x->a < y->a;
  return x->b < y->b;
}

static void heap_push(trainer_state *s, heap_ent e) {
  if (s->n_h == s->cap_h) s->h = keel_xrealloc(s->h, (s->cap_h = s->cap_h ? s->cap_h * 2 : 1024) * sizeof *s->h);
  size_t i = s->n_h++;
  while (i > 0 && ent_before(&e, &s->h[(i - 1) / 2])) {
    s->h[i] = s->h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  s->h[i] = e;
}

static heap_ent heap_pop(trainer_state *s) {
  heap_ent top = s->h[0], last = s->h[--s->n_h];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= s->n_h) break;
    if (c + 1 < s->n_h && ent_before(&s->h[c + 1], &s->h[c])) c++;
    if (!ent_before(&s->h[c], &last)) break;
    s->h[i] = s->h[c];
    i = c;
  }
  if (s->n_h) s->h[i] = last;
  return top;
}

static int32_t pair_get(trainer_state *s, int32_t a, int32_t b) {
  uint64_t *slot = keel_u64map_slot(&s->pidx, ((uint64_t)a << 32) | (uint32_t)b);
  if (*slot) return (int32_t)(*slot - 1);
  if (s->n_p == s->cap_p) s->p = keel_xrealloc(s->p, (size_t)(s->cap_p = s->cap_p ? s->cap_p * 2 : 4096) * sizeof *s->p);
  pair_info *p = &s->p[s->n_p];
  memset(p, 0, sizeof *p);
  p->a = a;
  p->b = b;
  *slot = (uint64_t)++s->n_p;
  return s->n_p - 1;
}

static void pair_add_word(pair_info *p, int32_t w) {
  if (p->n_words && p->words[p->n_words - 1] == w) return;
  if (p->n_words == p->cap_words) p->words = keel_xrealloc(p->words, (size_t)(p->cap_words = p->cap_words ? p->cap_words * 2 : 4) * sizeof *p->words);
  p->words[p->n_words++] = w;
}

static int cmp_keys(const void *x, const void *y) {
  const keel_strmap_slot *a = *(keel_strmap_slot *const *)x, *b = *(keel_strmap_slot *const *)y;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->key, b->key, n);
  return c ? c : (a->len > b->len) - (a->len < b->len);
}

static json_t *build_json(char **str, int32_t n_tokens, const int32_t (*merges)[2], int32_t n_merges, int gpt2) {
  json_t *added = json_array();
  for (int i = 0; i < keel_bpe_n_specials; i++)
    json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content",
                                           keel_bpe_specials[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                           "normalized", 0, "special", 1));
  json_t *vocab = json_object();
  for (int32_t id = keel_bpe_n_specials; id < n_tokens; id++) json_object_set_new(vocab, str[id], json_integer(id));
  json_t *jm = json_array();
  for (int32_t i = 0; i < n_merges; i++)
    json_array_append_new(jm, json_pack("[s, s]", str[merges[i][0]], str[merges[i][1]]));
  json_t *stages = json_array();
  if (gpt2) {
    json_array_append_new(stages, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                            "trim_offsets", 1, "use_regex", 1));
  } else {
    static const keel_pretok_kind kinds[3] = {KEEL_PRETOK_DIGITS3, KEEL_PRETOK_CJK, KEEL_PRETOK_DEEPSEEK};
    for (int k = 0; k < 3; k++)
      json_array_append_new(stages, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                              keel_pretok_regex(kinds[k]), "behavior", "Isolated", "invert", 0));
    json_array_append_new(stages, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                            "trim_offsets", 1, "use_regex", 0));
  }
  return json_pack(
      "{s:s, s:n, s:n, s:o, s:n, s:{s:s, s:o}, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b, s:b},"
      " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
      "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer", "type",
      "Sequence", "pretokenizers", stages, "post_processor", "type", "ByteLevel", "add_prefix_space", 1,
      "trim_offsets", 0, "use_regex", 1, "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
      "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
      "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", jm);
}

static keel_status save_config(const char *path) {
  size_t n = strlen(path);
  char *cfg = keel_xmalloc(n + 32);
  memcpy(cfg, path, n + 1);
  char *slash = strrchr(cfg, '/');
  strcpy(slash ? slash + 1 : cfg, "tokenizer_config.json");
  json_t *j = json_pack("{s:b, s:b, s:s, s:s, s:s, s:b, s:b, s:i, s:s}", "add_bos_token", 1, "add_eos_token", 0,
                        "bos_token", keel_bpe_specials[0], "eos_token", keel_bpe_specials[1], "pad_token",
                        keel_bpe_specials[1], "clean_up_tokenization_spaces", 0, "legacy", 1, "model_max_length",
                        16384, "tokenizer_class", "LlamaTokenizerFast");
  keel_status st = keel_json_save_file(j, cfg, 2);
  json_decref(j);
  free(cfg);
  return st;
}

keel_status keel_bpe_trainer_save(keel_bpe_trainer *t, int32_t vocab_size, const char *path, keel_bpe_result *res) {
  int32_t base = keel_bpe_n_specials + 256;
  if (vocab_size < base)
    return keel_fail(KEEL_ERR_ARG, "vocabulary size %d is below the %d special and byte tokens", vocab_size, base);
  trainer_state s = {0};
  /* token strings by id: specials, then bytes in byte order, then merges */
  char **str = keel_xcalloc((size_t)vocab_size, sizeof *str);
  keel_strmap tokid;
  keel_strmap_init(&tokid, (size_t)vocab_size);
  int32_t n_tokens = 0;
  for (; n_tokens < keel_bpe_n_specials; n_tokens++) str[n_tokens] = keel_xstrdup(keel_bpe_specials[n_tokens]);
  for (int b = 0; b < 256; b++, n_tokens++) {
    char u[5] = {0};
    keel_utf8_put((uint8_t *)u, keel_byte_to_char((uint8_t)b));
    str[n_tokens] = keel_xstrdup(u);
    keel_strmap_put(&tokid, u, strlen(u), n_tokens);
  }
  /* words in sorted order so ids and ties do not depend on hashing */
  keel_strmap_slot **sorted = keel_xmalloc(t->words.count * sizeof *sorted);
  size_t nw = 0;
  for (size_t i = 0; i < t->words.cap; i++)
    if (t->words.slots[i].key) sorted[nw++] = &t->words.slots[i];
  qsort(sorted, nw, sizeof *sorted, cmp_keys);
  s.w = keel_xcalloc(nw, sizeof *s.w);
  s.n_w = nw;
  keel_u64map_init(&s.pidx, 1 << 16);
  for (size_t i = 0; i < nw; i++) {
    word *w = &s.w[i];
    w->n = (int)sorted[i]->len;
    w->count = sorted[i]->value;
    w->sym = keel_xmalloc((size_t)w->n * sizeof *w->sym);
    for (int k = 0; k < w->n; k++) w->sym[k] = keel_bpe_n_specials + (uint8_t)sorted[i]->key[k];
    for (int k = 0; k + 1 < w->n; k++) {
      int32_t pi = pair_get(&s, w->sym[k], w->sym[k + 1]);
      s.p[pi].count += w->count;
      pair_add_word(&s.p[pi], (int32_t)i);
    }
  }
  free(sorted);
  for (int32_t i = 0; i < s.n_p; i++) heap_push(&s, (heap_ent){s.p[i].count, s.p[i].a, s.p[i].b, i});

  int32_t (*merges)[2] = NULL;
  int32_t n_merges = 0, cap_merges = 0;
  uint32_t stamp = 0;
  uint32_t *wstamp = keel_xcalloc(nw ? nw : 1, sizeof *wstamp);
  int32_t *touched = NULL;
  size_t n_touched = 0, cap_touched = 0;
  char *buf = NULL;
  size_t cap_buf = 0;
  while (n_tokens < vocab_size && s.n_h) {
    heap_ent e = heap_pop(&s);
    pair_info *p = &s.p[e.idx];
    if (e.count != p->count) {
      if (p->count > 0) heap_push(&s, (heap_ent){p->count, p->a, p->b, e.idx});
      continue;
    }
    if (e.count < 2) break;
    int32_t a = p->a, b = p->b;
    size_t la = strlen(str[a]), lb = strlen(str[b]);
    if (la + lb + 1 > cap_buf) buf = keel_xrealloc(buf, cap_buf = la + lb + 64);
    memcpy(buf, str[a], la);
    memcpy(buf + la, str[b], lb);
    buf[la + lb] = 0;
    int64_t existing;
    int32_t nid;
    if (keel_strmap_get(&tokid, buf, la + lb, &existing)) {
      nid = (int32_t)existing; /* the same string reached by another merge order */
    } else {
      nid = n_tokens++;
      str[nid] = keel_xstrdup(buf);
      keel_strmap_put(&tokid, buf, la + lb, nid);
    }
    if (n_merges == cap_merges)
      merges = keel_xrealloc(merges, (size_t)(cap_merges = cap_merges ? cap_merges * 2 : 1024) * sizeof *merges);
    merges[n_merges][0] = a;
    merges[n_merges][1] = b;
    n_merges++;
    stamp++;
    n_touched = 0;
    /* p may move when pairs are added: copy its word list first */
    int n_pw = p->n_words;
    int32_t *pw = p->words;
    p->words = NULL;
    p->n_words = p->cap_words = 0;
    for (int k = 0; k < n_pw; k++) {
      int32_t wi = pw[k];
      if (wstamp[wi] == stamp) continue;
      wstamp[wi] = stamp;
      word *w = &s.w[wi];
      int has = 0;
      for (int i = 0; i + 1 < w->n && !has; i++) has = w->sym[i] == a && w->sym[i + 1] == b;
      if (!has) continue;
      for (int i = 0; i + 1 < w->n; i++) s.p[pair_get(&s, w->sym[i], w->sym[i + 1])].count -= w->count;
      int m = 0;
      for (int i = 0; i < w->n; i++) {
        if (i + 1 < w->n && w->sym[i] == a && w->sym[i + 1] == b) {
          w->sym[m++] = nid;
          i++;
        } else {
          w->sym[m++] = w->sym[i];
        }
      }
      w->n = m;
      for (int i = 0; i + 1 < w->n; i++) {
        int32_t pi = pair_get(&s, w->sym[i], w->sym[i + 1]);
        s.p[pi].count += w->count;
        if (w->sym[i] != nid && w->sym[i + 1] != nid) continue;
        pair_add_word(&s.p[pi], wi);
        if (s.p[pi].stamp != stamp) {
          s.p[pi].stamp = stamp;
          if (n_touched == cap_touched) touched = keel_xrealloc(touched, (cap_touched = cap_touched ? cap_touched * 2 : 256) * sizeof *touched);
          touched[n_touched++] = pi;
        }
      }
    }
    free(pw);
    for (size_t k = 0; k < n_touched; k++) {
      pair_info *q = &s.p[touched[k]];
      if (q->count > 0) heap_push(&s, (heap_ent){q->count, q->a, q->b, touched[k]});
    }
  }
  json_t *j = build_json(str, n_tokens, (const int32_t(*)[2])merges, n_merges, t->n_pretok == 1);
  keel_status st = keel_json_save_file(j, path, 0);
  json_decref(j);
  if (!st) st = save_config(path);
  if (res) {
    res->vocab_size = n_tokens;
    res->n_merges = n_merges;
    res->n_words = nw;
  }
  for (int32_t i = 0; i < vocab_size; i++) free(str[i]);
  free(str);
  keel_strmap_free(&tokid);
  for (size_t i = 0; i < s.n_w; i++) free(s.w[i].sym);
  free(s.w);
  for (int32_t i = 0; i < s.n_p; i++) free(s.p[i].words);
  free(s.p);
  keel_u64map_free(&s.pidx);
  free(s.h);
  free(merges);
  free(wstamp);
  free(touched);
  free(buf);
  return st;
}
