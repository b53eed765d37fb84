/* Training a byte-level BPE vocabulary from text, saved as an HF tokenizer.json. */
#ifndef KEEL_DATA_BPE_TRAIN_H
#define KEEL_DATA_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/hashmap.h"
#include "pretok.h"

typedef struct keel_bpe_trainer {
  int pretok[8]; /* keel_pretok_kind stages */
  int n_pretok;
  keel_strmap words; /* pre-tokenized piece -> count */
  keel_cptext text;
  keel_spans spans[2];
  uint64_t bytes_seen;
} keel_bpe_trainer;

typedef struct keel_bpe_result {
  int32_t vocab_size; /* specials + 256 bytes + merged tokens */
  int32_t n_merges;
  uint64_t n_words;   /* distinct pieces counted */
} keel_bpe_result;

/* The special tokens keel's own tokenizers carry, ids 0.. in this order
 * (DeepSeek's markers: BOS, EOS, pad, chat roles, reasoning tags). */
extern const char *const keel_bpe_specials[];
extern const int keel_bpe_n_specials;

/* gpt2: GPT-2's pre-tokenizer instead of DeepSeek-V3's. */
void keel_bpe_trainer_init(keel_bpe_trainer *t, int gpt2);
void keel_bpe_trainer_feed(keel_bpe_trainer *t, const char *text, size_t len);
/* Learns merges until vocab_size tokens or no pair occurs twice, and writes
 * tokenizer.json to path (and tokenizer_config.json beside it). */
keel_status keel_bpe_trainer_save(keel_bpe_trainer *t, int32_t vocab_size, const char *path,
                                  keel_bpe_result *res);
void keel_bpe_trainer_free(keel_bpe_trainer *t);

#endif
