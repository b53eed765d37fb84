/* Byte-level BPE tokenizer compatible with HF tokenizer.json files
 * (DeepSeek-V3, GPT-2 and keel's own). */
#ifndef KEEL_DATA_TOKENIZER_H
#define KEEL_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/hashmap.h"
#include "pretok.h"

enum {
  KEEL_TOK_SPECIAL = 1, /* encode: recognise special-token strings in the text (HF default) */
  KEEL_TOK_ADD_BOS = 2, /* encode: prepend BOS */
  KEEL_TOK_SKIP_SPECIAL = 4, /* decode: drop special tokens */
};

typedef struct keel_added_token {
  int32_t id;
  char *content; /* (len) UTF-8 */
  size_t len;
  int special, lstrip, rstrip, single_word, normalized;
} keel_added_token;

typedef struct keel_trie_node keel_trie_node;

#define KEEL_PRETOK_MAX 8

typedef struct keel_tokenizer {
  int32_t n_vocab;       /* max id + 1 over vocab and added tokens */
  char **token;          /* (n_vocab) token string as written in the file, NULL for holes */
  uint8_t **raw;         /* (n_vocab) decoded bytes of each token */
  uint32_t *raw_len;     /* (n_vocab) */
  uint8_t *is_special;   /* (n_vocab) 1 for special added tokens */
  keel_strmap vocab;     /* token string -> id, model.vocab only */
  keel_u64map merges;    /* (left << 32 | right) -> (rank << 32 | merged id) */
  int32_t n_merges;
  int32_t byte_id[256];  /* id of the single-byte token of each byte, -1 if none */
  keel_added_token *added; /* (n_added) */
  int n_added;
  keel_trie_node *trie;  /* over added token contents */
  int pretok[KEEL_PRETOK_MAX]; /* keel_pretok_kind stages in order */
  int n_pretok;
  int add_prefix_space;  /* ByteLevel pre-tokenizer option */
  int32_t bos_id, eos_id; /* -1 when unknown */
  int add_bos;           /* from tokenizer_config.json add_bos_token */
  /* encode workspace and piece cache (a tokenizer is not thread-safe) */
  keel_cptext text;
  keel_spans spans[2];
  keel_strmap cache;     /* piece bytes -> (pool offset << 8 | count) */
  int32_t *pool;
  size_t pool_n, pool_cap;
  char *path;
} keel_tokenizer;

/* Loads tokenizer.json; reads tokenizer_config.json beside it when present. */
keel_status keel_tokenizer_load(keel_tokenizer **out, const char *path);
/* Loads from memory (no tokenizer_config.json); name is used in messages. */
keel_status keel_tokenizer_load_buf(keel_tokenizer **out, const char *buf, size_t len,
                                    const char *name);
void keel_tokenizer_free(keel_tokenizer *tok);

typedef struct keel_ids {
  int32_t *v;
  size_t n, cap;
} keel_ids;

void keel_ids_push(keel_ids *ids, int32_t id);
void keel_ids_free(keel_ids *ids);

/* Appends the ids of text[0..len) to ids. */
void keel_tokenizer_encode(keel_tokenizer *tok, const char *text, size_t len, int flags,
                           keel_ids *ids);
/* Appends the bytes of ids to *out (heap, grown as needed; NUL-terminated). Fails on an
 * id outside the vocabulary. */
keel_status keel_tokenizer_decode(const keel_tokenizer *tok, const int32_t *ids, size_t n,
                                  int flags, char **out, size_t *len, size_t *cap);
/* Index into added[] of the longest added token at s[0..n) that flags allow, or -1. */
int keel_tokenizer_added_at(const keel_tokenizer *tok, const uint8_t *s, size_t n, int flags,
                            size_t *mlen);
int32_t keel_tokenizer_token_id(const keel_tokenizer *tok, const char *s);

/* GPT-2's byte <-> printable-character map used by byte-level BPE. */
uint32_t keel_byte_to_char(uint8_t b);
int keel_char_to_byte(uint32_t cp); /* -1 if not in the map */

#endif
