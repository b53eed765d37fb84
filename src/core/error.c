/* Thread-local last-error message and allocation helpers. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static _Thread_local char errbuf[1024];

keel_status keel_fail(keel_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return code;
}

keel_status keel_fail_prefix(keel_status code, const char *prefix) {
  char tmp[sizeof errbuf];
  memcpy(tmp, errbuf, sizeof tmp);
  size_t n = 0;
  for (const char *parts[3] = {prefix, ": ", tmp}, **p = parts; p < parts + 3; p++)
    for (const char *c = *p; *c && n + 1 < sizeof errbuf; c++) errbuf[n++] = *c; /* truncates */
  errbuf[n] = 0;
  return code;
}

const char *keel_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }

static void oom(unsigned long n) {
  fprintf(stderr, "keel: out of memory allocating %lu bytes\n", n);
  abort();
}

void keel_advise_huge(void *p, unsigned long n) {
#ifdef MADV_HUGEPAGE
  const unsigned long huge = 2UL << 20;
  if (n < 2 * huge) return;
  unsigned long a = ((unsigned long)p + huge - 1) & ~(huge - 1), b = ((unsigned long)p + n) & ~(huge - 1);
  if (b > a) madvise((void *)a, b - a, MADV_HUGEPAGE); /* a hint: where refused, pages stay small */
#else
  (void)p, (void)n;
#endif
}

void *keel_xmalloc(unsigned long n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  keel_advise_huge(p, n);
  return p;
}

void *keel_xcalloc(unsigned long n, unsigned long size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom(n * size);
  keel_advise_huge(p, n * size);
  return p;
}

void *keel_xrealloc(void *p, unsigned long n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *keel_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = keel_xmalloc(n);
  memcpy(p, s, n);
  return p;
}
