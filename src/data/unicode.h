/* Unicode classes the pre-tokenizer regexes need, and a lenient UTF-8 decoder:
 * an invalid byte decodes as one "code point" of its own with no class, so
 * every byte string can be pre-tokenized and round-trips. */
#ifndef KEEL_DATA_UNICODE_H
#define KEEL_DATA_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
  KEEL_UNI_L = 1,  /* \p{L} */
  KEEL_UNI_M = 2,  /* \p{M} */
  KEEL_UNI_N = 4,  /* \p{N} */
  KEEL_UNI_P = 8,  /* \p{P} */
  KEEL_UNI_S = 16, /* \p{S} */
  KEEL_UNI_WS = 32 /* \s */
};

typedef struct keel_uni_range {
  uint32_t lo, hi; /* inclusive */
  uint8_t cls;
} keel_uni_range;

extern const unsigned char keel_uni_ascii[128];
extern const keel_uni_range keel_uni_ranges[];
extern const int keel_uni_nranges;

/* Class bits of a code point; 0 for unassigned or invalid (cp > 0x10FFFF). */
unsigned keel_uni_class(uint32_t cp);

/* Decodes one code point at s[0..n). Returns its length in bytes (>= 1).
 * Invalid or truncated sequences and surrogates give *cp = 0xFFFFFFFF, length 1. */
int keel_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp; returns bytes written (1..4). */
int keel_utf8_put(uint8_t *out, uint32_t cp);

#endif
