/* Errors: functions that can fail return a keel_status and leave a one-line
 * message (thread-local) that the caller can read with keel_errmsg(). */
#ifndef KEEL_CORE_ERROR_H
#define KEEL_CORE_ERROR_H

typedef enum keel_status {
  KEEL_OK = 0,
  KEEL_ERR_ARG = 1,    /* bad argument from the caller */
  KEEL_ERR_FORMAT = 2, /* malformed input file or data */
  KEEL_ERR_IO = 3,     /* the operating system refused (open, write, fsync) */
  KEEL_ERR_NOMEM = 4,
  KEEL_ERR_UNSUPPORTED = 5,
} keel_status;

/* Sets the message (printf-style) and returns code, so `return keel_fail(...)`. */
keel_status keel_fail(keel_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: ". */
keel_status keel_fail_prefix(keel_status code, const char *prefix);
const char *keel_errmsg(void);

void *keel_xmalloc(unsigned long n); /* aborts on out-of-memory */
void *keel_xcalloc(unsigned long n, unsigned long size);
void *keel_xrealloc(void *p, unsigned long n);
char *keel_xstrdup(const char *s);
/* Asks the kernel for 2 MiB pages over the whole 2 MiB blocks inside [p, p + n) (transparent
 * huge pages set to madvise): fewer TLB misses and longer hardware prefetch streams for the
 * large arrays the model streams through. keel_xmalloc and keel_xcalloc do it from 4 MiB. */
void keel_advise_huge(void *p, unsigned long n);

#endif
