/* Brown corpus detokenisation and document splitting. */
#include "corpus.h"

#include <string.h>

#include "../core/error.h"

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) b->p = keel_xrealloc(b->p, b->cap = (b->n + n + 1) * 2);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

/* Tokens that attach to the word before them. */
static int attaches_left(const char *w, size_t n) {
  static const char *const list[] = {".", ",", ";", ":", "!", "?", ")", "''", "'", "'s", "n't", "'ll", "'re", "'ve", "'d", "'m"};
  for (size_t i = 0; i < sizeof list / sizeof *list; i++)
    if (strlen(list[i]) == n && memcmp(w, list[i], n) == 0) return 1;
  return 0;
}

static int attaches_right(const char *w, size_t n) { return (n == 1 && (w[0] == '(' || w[0] == '$')) || (n == 2 && memcmp(w, "``", 2) == 0); }

char *keel_brown_to_text(const char *src, size_t len, size_t *out_len) {
  sbuf out = {0};
  put(&out, "", 0);
  size_t i = 0;
  int in_para = 0, glue = 1; /* glue: no space before the next word */
  while (i < len) {
    size_t e = i;
    while (e < len && src[e] != '\n') e++;
    /* a line: blank ends a paragraph; otherwise whitespace-separated word/tag tokens */
    size_t k = i;
    int blank = 1;
    while (k < e) {
      while (k < e && (src[k] == ' ' || src[k] == '\t' || src[k] == '\r')) k++;
      if (k >= e) break;
      size_t s = k;
      while (k < e && src[k] != ' ' && src[k] != '\t' && src[k] != '\r') k++;
      size_t wl = k - s;
      const char *slash = NULL;
      for (size_t q = s; q < k; q++)
        if (src[q] == '/') slash = src + q;
      if (slash && slash > src + s) wl = (size_t)(slash - (src + s));
      blank = 0;
      const char *w = src + s;
      if (wl == 2 && (memcmp(w, "``", 2) == 0 || memcmp(w, "''", 2) == 0)) {
        int open = w[0] == '`';
        if (!glue && open) put(&out, " ", 1);
        put(&out, "\"", 1);
        glue = open;
        in_para = 1;
        continue;
      }
      if (!glue && !attaches_left(w, wl)) put(&out, " ", 1);
      put(&out, w, wl);
      glue = attaches_right(w, wl);
      in_para = 1;
    }
    if (blank && in_para) {
      put(&out, "\n\n", 2);
      in_para = 0;
      glue = 1;
    }
    i = e + 1;
  }
  if (in_para) put(&out, "\n\n", 2);
  *out_len = out.n;
  return out.p;
}

void keel_split_documents(const char *text, size_t len, void (*fn)(const char *, size_t, void *), void *ctx) {
  size_t start = 0, i = 0;
  while (i < len) {
    size_t e = i;
    while (e < len && text[e] != '\n') e++;
    int blank = 1;
    for (size_t k = i; k < e; k++)
      if (text[k] != ' ' && text[k] != '\t' && text[k] != '\r') blank = 0;
    if (blank) {
      if (i > start) fn(text + start, i - start, ctx);
      start = e + 1;
    }
    i = e + 1;
  }
  if (start < len) fn(text + start, len - start, ctx);
}
