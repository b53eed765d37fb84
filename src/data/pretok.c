/* Hand-written regex matchers with leftmost-first alternation and greedy,
 * backtracking quantifiers, as the JS and Rust regex engines behave on these
 * patterns. Each matcher returns the end of the match starting at i, or i. */
#include "pretok.h"

#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "unicode.h"

static const char *const regexes[] = {
    [KEEL_PRETOK_DIGITS3] = "\\p{N}{1,3}",
    [KEEL_PRETOK_CJK] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    [KEEL_PRETOK_DEEPSEEK] =
        ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
        "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
    [KEEL_PRETOK_GPT2] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
};

const char *keel_pretok_regex(keel_pretok_kind kind) { return regexes[kind]; }

int keel_pretok_lookup(const char *regex) {
  for (int k = 0; k < (int)(sizeof regexes / sizeof *regexes); k++)
    if (strcmp(regex, regexes[k]) == 0) return k;
  return -1;
}

void keel_cptext_decode(keel_cptext *t, const uint8_t *s, size_t len) {
  if (t->cap < len + 1) {
    t->cap = len + 1;
    t->cp = keel_xrealloc(t->cp, t->cap * sizeof *t->cp);
    t->cls = keel_xrealloc(t->cls, t->cap * sizeof *t->cls);
    t->off = keel_xrealloc(t->off, t->cap * sizeof *t->off);
  }
  size_t n = 0, i = 0;
  while (i < len) {
    uint32_t cp;
    int k;
    if (s[i] < 0x80)
      cp = s[i], k = 1;
    else
      k = keel_utf8_next(s + i, len - i, &cp);
    t->cp[n] = cp;
    t->cls[n] = cp < 128 ? keel_uni_ascii[cp] : (uint8_t)keel_uni_class(cp);
    t->off[n] = (uint32_t)i;
    n++;
    i += (size_t)k;
  }
  t->off[n] = (uint32_t)len;
  t->n = n;
}

void keel_cptext_free(keel_cptext *t) {
  free(t->cp);
  free(t->cls);
  free(t->off);
  memset(t, 0, sizeof *t);
}

void keel_spans_push(keel_spans *s, uint32_t lo, uint32_t hi) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->v = keel_xrealloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n].lo = lo;
  s->v[s->n].hi = hi;
  s->n++;
}

void keel_spans_free(keel_spans *s) {
  free(s->v);
  memset(s, 0, sizeof *s);
}

#define IS(t, i, bits) ((t)->cls[i] & (bits))
#define CR_OR_LF(c) ((c) == '\r' || (c) == '\n')

/* \s+(?!\S) then \s+ : whitespace at i; returns end or i. */
static size_t match_ws_tail(const keel_cptext *t, size_t i, size_t end) {
  size_t j = i;
  while (j < end && IS(t, j, KEEL_UNI_WS)) j++;
  if (j == i) return i;
  /* \s+(?!\S): the whole run if it ends the piece, else one less (if non-empty) */
  if (j == end) return j;
  if (j - 1 > i) return j - 1;
  return j; /* \s+ */
}

static int ascii_punct(uint32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

static int ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

static size_t match_deepseek(const keel_cptext *t, size_t i, size_t end) {
  const uint32_t *cp = t->cp;
  size_t j;
  /* [!"#...~][A-Za-z]+ */
  if (ascii_punct(cp[i]) && i + 1 < end && ascii_alpha(cp[i + 1])) {
    j = i + 1;
    while (j < end && ascii_alpha(cp[j])) j++;
    return j;
  }
  /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
  j = i;
  if (!CR_OR_LF(cp[i]) && !IS(t, i, KEEL_UNI_L | KEEL_UNI_P | KEEL_UNI_S) && i + 1 < end &&
      IS(t, i + 1, KEEL_UNI_L | KEEL_UNI_M))
    j = i + 1;
  if (IS(t, j, KEEL_UNI_L | KEEL_UNI_M)) {
    while (j < end && IS(t, j, KEEL_UNI_L | KEEL_UNI_M)) j++;
    return j;
  }
  /*  ?[\p{P}\p{S}]+[\r\n]* */
  j = i;
  if (cp[i] == ' ' && i + 1 < end && IS(t, i + 1, KEEL_UNI_P | KEEL_UNI_S)) j = i + 1;
  if (IS(t, j, KEEL_UNI_P | KEEL_UNI_S)) {
    while (j < end && IS(t, j, KEEL_UNI_P | KEEL_UNI_S)) j++;
    while (j < end && CR_OR_LF(cp[j])) j++;
    return j;
  }
  /* \s*[\r\n]+ : backtrack \s* to the last CR/LF of the whitespace run */
  j = i;
  size_t last_nl = end;
  while (j < end && IS(t, j, KEEL_UNI_WS)) {
    if (CR_OR_LF(cp[j])) last_nl = j;
    j++;
  }
  if (last_nl != end) return last_nl + 1;
  return match_ws_tail(t, i, end);
}

static size_t match_gpt2(const keel_cptext *t, size_t i, size_t end) {
  const uint32_t *cp = t->cp;
  if (cp[i] == '\'' && i + 1 < end) {
    uint32_t a = cp[i + 1], b = i + 2 < end ? cp[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  static const unsigned classes[2] = {KEEL_UNI_L, KEEL_UNI_N};
  for (int k = 0; k < 2; k++) { /*  ?\p{L}+ and  ?\p{N}+ */
    size_t j = i;
    if (cp[i] == ' ' && i + 1 < end && IS(t, i + 1, classes[k])) j = i + 1;
    if (IS(t, j, classes[k])) {
      while (j < end && IS(t, j, classes[k])) j++;
      return j;
    }
  }
  /*  ?[^\s\p{L}\p{N}]+ */
#define OTHER(x) (!IS(t, x, KEEL_UNI_WS | KEEL_UNI_L | KEEL_UNI_N))
  size_t j = i;
  if (cp[i] == ' ' && i + 1 < end && OTHER(i + 1)) j = i + 1;
  if (OTHER(j)) {
    while (j < end && OTHER(j)) j++;
    return j;
  }
#undef OTHER
  return match_ws_tail(t, i, end);
}

static int is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x30FF);
}

static size_t match_at(const keel_cptext *t, size_t i, size_t end, keel_pretok_kind kind) {
  size_t j = i;
  switch (kind) {
    case KEEL_PRETOK_DIGITS3:
      while (j < end && j - i < 3 && IS(t, j, KEEL_UNI_N)) j++;
      return j;
    case KEEL_PRETOK_CJK:
      while (j < end && is_cjk(t->cp[j])) j++;
      return j;
    case KEEL_PRETOK_DEEPSEEK:
      return match_deepseek(t, i, end);
    case KEEL_PRETOK_GPT2:
      return match_gpt2(t, i, end);
  }
  return i;
}

void keel_pretok_split(keel_spans *out, const keel_spans *in, const keel_cptext *t,
                       keel_pretok_kind kind) {
  out->n = 0;
  for (size_t s = 0; s < in->n; s++) {
    size_t lo = in->v[s].lo, end = in->v[s].hi, gap = lo, pos = lo;
    while (pos < end) {
      size_t e = match_at(t, pos, end, kind);
      if (e == pos) {
        pos++;
        continue;
      }
      if (gap < pos) keel_spans_push(out, (uint32_t)gap, (uint32_t)pos);
      keel_spans_push(out, (uint32_t)pos, (uint32_t)e);
      pos = gap = e;
    }
    if (gap < end) keel_spans_push(out, (uint32_t)gap, (uint32_t)end);
  }
}
