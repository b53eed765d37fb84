/* tokenizer.json loading, encoding (added tokens, pre-tokenizer, BPE merges
 * with a piece cache) and decoding. Training lives in bpe_train.c. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "../io/file.h"
#include "../io/json.h"
#include "unicode.h"

/* ---- byte <-> char map (GPT-2) ---- */

static int printable_byte(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t keel_byte_to_char(uint8_t b) {
  if (printable_byte(b)) return b;
  int k = 0; /* the k-th non-printable byte maps to U+0100 + k */
  for (int x = 0; x < b; x++) k += !printable_byte(x);
  return 0x100u + (uint32_t)k;
}

int keel_char_to_byte(uint32_t cp) {
  if (cp < 256) return printable_byte((int)cp) ? (int)cp : -1;
  if (cp < 0x100 || cp >= 0x100 + 68) return -1;
  int k = (int)(cp - 0x100);
  for (int x = 0; x < 256; x++)
    if (!printable_byte(x) && k-- == 0) return x;
  return -1;
}

/* ---- added-token trie ---- */

struct keel_trie_node {
  int first_child, next_sibling; /* indices into the node array, -1 for none */
  int token;                      /* index into added[], -1 if no token ends here */
  uint8_t byte;
};

typedef struct trie {
  keel_trie_node *nodes;
  int n, cap;
  uint8_t first_byte[256]; /* 1 if some added token starts with this byte */
} trie;

static int trie_add_node(trie *t, uint8_t byte) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 256;
    t->nodes = keel_xrealloc(t->nodes, (size_t)t->cap * sizeof *t->nodes);
  }
  keel_trie_node *nd = &t->nodes[t->n];
  nd->first_child = nd->next_sibling = nd->token = -1;
  nd->byte = byte;
  return t->n++;
}

static int trie_child(const trie *t, int node, uint8_t byte) {
  for (int c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
    if (t->nodes[c].byte == byte) return c;
  return -1;
}

static void trie_insert(trie *t, const char *s, size_t len, int token) {
  int node = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t b = (uint8_t)s[i];
    int c = trie_child(t, node, b);
    if (c < 0) {
      c = trie_add_node(t, b);
      t->nodes[c].next_sibling = t->nodes[node].first_child;
      t->nodes[node].first_child = c;
    }
    node = c;
  }
  if (t->nodes[node].token < 0) t->nodes[node].token = token;
  if (len) t->first_byte[(uint8_t)s[0]] = 1;
}

/* Longest added token starting at s (honouring the special flag); its index or -1. */
int keel_tokenizer_added_at(const keel_tokenizer *tok, const uint8_t *s, size_t n, int flags,
                            size_t *mlen) {
  const trie *t = (const trie *)tok->trie;
  int node = 0, best = -1;
  if (!t->first_byte[s[0]]) return -1;
  for (size_t i = 0; i < n; i++) {
    node = trie_child(t, node, s[i]);
    if (node < 0) break;
    int k = t->nodes[node].token;
    if (k >= 0 && (!tok->added[k].special || (flags & KEEL_TOK_SPECIAL))) {
      best = k;
      *mlen = i + 1;
    }
  }
  return best;
}

/* ---- loading ---- */

static keel_status bad(const char *name, const char *what) {
  return keel_fail(KEEL_ERR_FORMAT, "%s: %s", name, what);
}

static const char *json_str(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static int json_flag(json_t *obj, const char *key, int dflt) {
  json_t *v = json_object_get(obj, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static keel_status load_pretok_stage(keel_tokenizer *tok, json_t *pt, const char *name,
                                     const char *where) {
  const char *type = json_str(pt, "type");
  if (!type) return keel_fail(KEEL_ERR_FORMAT, "%s: %s.type missing", name, where);
  if (tok->n_pretok >= KEEL_PRETOK_MAX)
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: %s: too many stages", name, where);
  if (strcmp(type, "Split") == 0) {
    const char *re = json_str(json_object_get(pt, "pattern"), "Regex");
    const char *behavior = json_str(pt, "behavior");
    if (!re) return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: %s.pattern: only Regex patterns are supported", name, where);
    int kind = keel_pretok_lookup(re);
    if (kind < 0)
      return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: %s.pattern: unsupported regex \"%.80s\"", name,
                       where, re);
    if (!behavior || strcmp(behavior, "Isolated") != 0 || json_flag(pt, "invert", 0))
      return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: %s: only behavior Isolated without invert is supported",
                       name, where);
    tok->pretok[tok->n_pretok++] = kind;
  } else if (strcmp(type, "ByteLevel") == 0) {
    tok->add_prefix_space = json_flag(pt, "add_prefix_space", 0);
    if (json_flag(pt, "use_regex", 1)) tok->pretok[tok->n_pretok++] = KEEL_PRETOK_GPT2;
  } else if (strcmp(type, "Sequence") == 0) {
    json_t *arr = json_object_get(pt, "pretokenizers");
    if (!json_is_array(arr))
      return keel_fail(KEEL_ERR_FORMAT, "%s: %s.pretokenizers is not an array", name, where);
    for (size_t i = 0; i < json_array_size(arr); i++) {
      char sub[128];
      snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
      keel_status st = load_pretok_stage(tok, json_array_get(arr, i), name, sub);
      if (st) return st;
    }
  } else {
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: %s: unsupported pre-tokenizer type \"%s\"", name,
                     where, type);
  }
  return KEEL_OK;
}

/* Decodes a byte-level token string into raw bytes. */
static void token_raw(const char *s, uint8_t **raw, uint32_t *raw_len) {
  size_t n = strlen(s), k = 0;
  uint8_t *out = keel_xmalloc(n + 1);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = keel_utf8_next((const uint8_t *)s + i, n - i, &cp);
    int b = keel_char_to_byte(cp);
    if (b >= 0)
      out[k++] = (uint8_t)b;
    else
      memcpy(out + k, s + i, (size_t)len), k += (size_t)len;
    i += (size_t)len;
  }
  *raw = out;
  *raw_len = (uint32_t)k;
}

static keel_status load_merges(keel_tokenizer *tok, json_t *merges, const char *name) {
  size_t n = json_array_size(merges);
  keel_u64map_init(&tok->merges, n);
  char *buf = NULL;
  size_t cap = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(merges, i);
    const char *a, *b;
    size_t alen, blen;
    if (json_is_string(m)) {
      const char *s = json_string_value(m), *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        free(buf);
        return keel_fail(KEEL_ERR_FORMAT, "%s: model.merges[%zu]: expected \"left right\"", name, i);
      }
      a = s, alen = (size_t)(sp - s), b = sp + 1, blen = strlen(b);
    } else if (json_is_array(m) && json_array_size(m) == 2 &&
               json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
      a = json_string_value(json_array_get(m, 0)), alen = json_string_length(json_array_get(m, 0));
      b = json_string_value(json_array_get(m, 1)), blen = json_string_length(json_array_get(m, 1));
    } else {
      free(buf);
      return keel_fail(KEEL_ERR_FORMAT, "%s: model.merges[%zu]: expected a string or a pair", name, i);
    }
    if (alen + blen + 1 > cap) buf = keel_xrealloc(buf, cap = alen + blen + 64);
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    int64_t ia, ib, im;
    if (!keel_strmap_get(&tok->vocab, a, alen, &ia) || !keel_strmap_get(&tok->vocab, b, blen, &ib) ||
        !keel_strmap_get(&tok->vocab, buf, alen + blen, &im)) {
      free(buf);
      return keel_fail(KEEL_ERR_FORMAT, "%s: model.merges[%zu]: a part or the merged token is not in model.vocab",
                       name, i);
    }
    keel_u64map_put(&tok->merges, ((uint64_t)ia << 32) | (uint64_t)ib, ((uint64_t)i << 32) | (uint64_t)im);
  }
  free(buf);
  tok->n_merges = (int32_t)n;
  return KEEL_OK;
}

static keel_status load_added(keel_tokenizer *tok, json_t *arr, const char *name) {
  size_t n = json_array_size(arr);
  tok->added = keel_xcalloc(n, sizeof *tok->added);
  for (size_t i = 0; i < n; i++) {
    json_t *a = json_array_get(arr, i), *id = json_object_get(a, "id");
    const char *content = json_str(a, "content");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 30) ||
        !content || !*content)
      return keel_fail(KEEL_ERR_FORMAT, "%s: added_tokens[%zu]: needs an id in [0, 2^30) and a non-empty content",
                       name, i);
    keel_added_token *t = &tok->added[tok->n_added++];
    t->id = (int32_t)json_integer_value(id);
    t->len = json_string_length(json_object_get(a, "content"));
    t->content = keel_xmalloc(t->len + 1);
    memcpy(t->content, content, t->len + 1);
    t->special = json_flag(a, "special", 0);
    t->lstrip = json_flag(a, "lstrip", 0);
    t->rstrip = json_flag(a, "rstrip", 0);
    t->single_word = json_flag(a, "single_word", 0);
    t->normalized = json_flag(a, "normalized", 0);
  }
  return KEEL_OK;
}

/* bos/eos and add_bos from tokenizer_config.json (token may be a string or {content}). */
static keel_status load_config(keel_tokenizer *tok, const char *path) {
  json_t *cfg;
  keel_status st = keel_json_load_file(&cfg, path);
  if (st) return st;
  static const char *const keys[2] = {"bos_token", "eos_token"};
  int32_t *dst[2] = {&tok->bos_id, &tok->eos_id};
  for (int k = 0; k < 2; k++) {
    json_t *v = json_object_get(cfg, keys[k]);
    const char *s = json_is_string(v) ? json_string_value(v) : json_str(v, "content");
    if (s) {
      int32_t id = keel_tokenizer_token_id(tok, s);
      if (id < 0) {
        json_decref(cfg);
        return keel_fail(KEEL_ERR_FORMAT, "%s: %s \"%s\" is not a token", path, keys[k], s);
      }
      *dst[k] = id;
    }
  }
  tok->add_bos = json_flag(cfg, "add_bos_token", tok->add_bos);
  json_decref(cfg);
  return KEEL_OK;
}

int32_t keel_tokenizer_token_id(const keel_tokenizer *tok, const char *s) {
  for (int i = 0; i < tok->n_added; i++)
    if (strcmp(tok->added[i].content, s) == 0) return tok->added[i].id;
  int64_t id;
  return keel_strmap_get(&tok->vocab, s, strlen(s), &id) ? (int32_t)id : -1;
}

static keel_status tokenizer_build(keel_tokenizer *tok, json_t *root, const char *name) {
  keel_status st;
  if (!json_is_object(root)) return bad(name, "top level is not an object");
  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model)) return bad(name, "model is missing");
  const char *type = json_str(model, "type");
  if (type && strcmp(type, "BPE") != 0)
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (only BPE)", name, type);
  json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
  if (!json_is_object(vocab)) return bad(name, "model.vocab is not an object");
  if (!json_is_array(merges)) return bad(name, "model.merges is not an array");
  json_t *added = json_object_get(root, "added_tokens");
  if (added && !json_is_null(added) && !json_is_array(added)) return bad(name, "added_tokens is not an array");

  int64_t max_id = -1;
  keel_strmap_init(&tok->vocab, json_object_size(vocab));
  const char *key;
  json_t *val;
  json_object_foreach(vocab, key, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 30))
      return keel_fail(KEEL_ERR_FORMAT, "%s: model.vocab[\"%.40s\"]: id must be an integer in [0, 2^30)",
                       name, key);
    int64_t id = json_integer_value(val);
    keel_strmap_put(&tok->vocab, key, strlen(key), id);
    if (id > max_id) max_id = id;
  }
  if ((st = load_added(tok, added, name))) return st;
  for (int i = 0; i < tok->n_added; i++)
    if (tok->added[i].id > max_id) max_id = tok->added[i].id;
  tok->n_vocab = (int32_t)(max_id + 1);
  tok->token = keel_xcalloc((size_t)tok->n_vocab, sizeof *tok->token);
  tok->raw = keel_xcalloc((size_t)tok->n_vocab, sizeof *tok->raw);
  tok->raw_len = keel_xcalloc((size_t)tok->n_vocab, sizeof *tok->raw_len);
  tok->is_special = keel_xcalloc((size_t)tok->n_vocab, 1);
  json_object_foreach(vocab, key, val) {
    int64_t id = json_integer_value(val);
    if (tok->token[id]) return keel_fail(KEEL_ERR_FORMAT, "%s: model.vocab: id %lld is used twice", name, (long long)id);
    tok->token[id] = keel_xstrdup(key);
    token_raw(key, &tok->raw[id], &tok->raw_len[id]);
  }
  trie *t = keel_xcalloc(1, sizeof *t);
  tok->trie = (keel_trie_node *)t;
  trie_add_node(t, 0);
  for (int i = 0; i < tok->n_added; i++) {
    keel_added_token *a = &tok->added[i];
    if (!tok->token[a->id]) tok->token[a->id] = keel_xstrdup(a->content);
    free(tok->raw[a->id]);
    tok->raw[a->id] = keel_xmalloc(a->len);
    memcpy(tok->raw[a->id], a->content, a->len);
    tok->raw_len[a->id] = (uint32_t)a->len;
    tok->is_special[a->id] = (uint8_t)a->special;
    trie_insert(t, a->content, a->len, i);
  }
  for (int b = 0; b < 256; b++) {
    uint8_t u[4];
    int64_t id;
    int n = keel_utf8_put(u, keel_byte_to_char((uint8_t)b));
    tok->byte_id[b] = keel_strmap_get(&tok->vocab, u, (size_t)n, &id) ? (int32_t)id : -1;
  }
  if ((st = load_merges(tok, merges, name))) return st;

  json_t *pt = json_object_get(root, "pre_tokenizer");
  if (pt && !json_is_null(pt) && (st = load_pretok_stage(tok, pt, name, "pre_tokenizer"))) return st;
  json_t *norm = json_object_get(root, "normalizer");
  if (norm && !json_is_null(norm) &&
      !(json_str(norm, "type") && strcmp(json_str(norm, "type"), "Sequence") == 0 &&
        json_array_size(json_object_get(norm, "normalizers")) == 0))
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: normalizer: only none is supported", name);
  json_t *dec = json_object_get(root, "decoder");
  if (dec && !json_is_null(dec) && (!json_str(dec, "type") || strcmp(json_str(dec, "type"), "ByteLevel") != 0))
    return keel_fail(KEEL_ERR_UNSUPPORTED, "%s: decoder: only ByteLevel is supported", name);

  /* Defaults before tokenizer_config.json: the DeepSeek or GPT-2 markers. */
  tok->bos_id = keel_tokenizer_token_id(tok, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
  tok->eos_id = keel_tokenizer_token_id(tok, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>");
  if (tok->bos_id < 0) tok->bos_id = tok->eos_id = keel_tokenizer_token_id(tok, "<|endoftext|>");
  keel_strmap_init(&tok->cache, 1 << 14);
  return KEEL_OK;
}

keel_status keel_tokenizer_load_buf(keel_tokenizer **out, const char *buf, size_t len, const char *name) {
  *out = NULL;
  json_t *root;
  keel_status st = keel_json_load_buf(&root, buf, len, name);
  if (st) return st;
  keel_tokenizer *tok = keel_xcalloc(1, sizeof *tok);
  tok->path = keel_xstrdup(name);
  st = tokenizer_build(tok, root, name);
  json_decref(root);
  if (st) {
    keel_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return KEEL_OK;
}

keel_status keel_tokenizer_load(keel_tokenizer **out, const char *path) {
  char *buf;
  size_t len;
  keel_status st = keel_file_read(path, &buf, &len);
  if (st) return st;
  st = keel_tokenizer_load_buf(out, buf, len, path);
  free(buf);
  if (st) return st;
  /* tokenizer_config.json beside it */
  size_t n = strlen(path);
  char *cfg = keel_xmalloc(n + 32);
  memcpy(cfg, path, n + 1);
  char *slash = strrchr(cfg, '/');
  strcpy(slash ? slash + 1 : cfg, "tokenizer_config.json");
  if (keel_path_exists(cfg) && (st = load_config(*out, cfg))) {
    keel_tokenizer_free(*out);
    *out = NULL;
  }
  free(cfg);
  return st;
}

void keel_tokenizer_free(keel_tokenizer *tok) {
  if (!tok) return;
  for (int32_t i = 0; i < tok->n_vocab; i++) free(tok->token[i]), free(tok->raw[i]);
  free(tok->token);
  free(tok->raw);
  free(tok->raw_len);
  free(tok->is_special);
  keel_strmap_free(&tok->vocab);
  keel_u64map_free(&tok->merges);
  for (int i = 0; i < tok->n_added; i++) free(tok->added[i].content);
  free(tok->added);
  if (tok->trie) free(((trie *)tok->trie)->nodes);
  free(tok->trie);
  keel_cptext_free(&tok->text);
  keel_spans_free(&tok->spans[0]);
  keel_spans_free(&tok->spans[1]);
  keel_strmap_free(&tok->cache);
  free(tok->pool);
  free(tok->path);
  free(tok);
}
