/* Pre-tokenizer: cuts text into pieces before BPE, emulating the HF
 * `tokenizers` regex Split stages (behaviour Isolated) with hand-written
 * matchers. Supported patterns: DeepSeek-V3's three stages and GPT-2's. */
#ifndef KEEL_DATA_PRETOK_H
#define KEEL_DATA_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum keel_pretok_kind {
  KEEL_PRETOK_DIGITS3,   /* \p{N}{1,3} */
  KEEL_PRETOK_CJK,       /* [一-龥぀-ゟ゠-ヿ]+ */
  KEEL_PRETOK_DEEPSEEK,  /* DeepSeek-V3's main alternation */
  KEEL_PRETOK_GPT2,      /* GPT-2's pattern ('s|'t|... ?\p{L}+|...) */
} keel_pretok_kind;

/* The regex source text of each kind, exactly as in tokenizer.json. */
const char *keel_pretok_regex(keel_pretok_kind kind);
/* Maps a regex from tokenizer.json to a kind; returns -1 if unsupported. */
int keel_pretok_lookup(const char *regex);

/* A decoded text: one entry per code point (an invalid byte is one entry). */
typedef struct keel_cptext {
  uint32_t *cp;  /* (n) code points, 0xFFFFFFFF for an invalid byte */
  uint8_t *cls;  /* (n) keel_uni_* bits */
  uint32_t *off; /* (n+1) byte offset of each code point, off[n] = byte length */
  size_t n, cap;
} keel_cptext;

typedef struct keel_span {
  uint32_t lo, hi; /* code point indices [lo, hi) */
} keel_span;

typedef struct keel_spans {
  keel_span *v;
  size_t n, cap;
} keel_spans;

void keel_cptext_decode(keel_cptext *t, const uint8_t *s, size_t len);
void keel_cptext_free(keel_cptext *t);

/* Splits every span of in by kind (Isolated: matches and gaps both kept), into out. */
void keel_pretok_split(keel_spans *out, const keel_spans *in, const keel_cptext *t,
                       keel_pretok_kind kind);
void keel_spans_push(keel_spans *s, uint32_t lo, uint32_t hi);
void keel_spans_free(keel_spans *s);

#endif
