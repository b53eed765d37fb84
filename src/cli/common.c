/* Shared CLI helpers: error reporting, stdin, progress lines. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int keel_cli_error(const char *cmd, keel_status st) {
  fprintf(stderr, "keel %s: %s\n", cmd, keel_errmsg());
  return (st == KEEL_ERR_FORMAT || st == KEEL_ERR_ARG || st == KEEL_ERR_UNSUPPORTED) ? 2 : 1;
}

int keel_cli_usage_error(const char *cmd, const char *msg) {
  fprintf(stderr, "keel %s: %s (see keel %s --help)\n", cmd, msg, cmd);
  return 2;
}

char *keel_read_stdin(size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = keel_xmalloc(cap);
  for (;;) {
    if (n + 1 >= cap) buf = keel_xrealloc(buf, cap *= 2);
    size_t got = fread(buf + n, 1, cap - n - 1, stdin);
    if (got == 0) break;
    n += got;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

void keel_progress_begin(keel_progress *p, const char *what, double total) {
  p->what = what;
  p->t0 = p->last = keel_now();
  p->total = total;
  p->shown = 0;
}

static void progress_draw(keel_progress *p, double done, const char *extra, int final) {
  /* on a terminal the line is redrawn in place; elsewhere only the final line is written */
  const char *cr = isatty(2) ? "\r" : "", *clear = isatty(2) ? "\033[K" : "";
  double dt = keel_now() - p->t0;
  double rate = dt > 0 ? done / dt : 0;
  char eta[32] = "";
  if (p->total > 0 && rate > 0 && !final)
    snprintf(eta, sizeof eta, " ETA %.0fs", (p->total - done) / rate);
  if (p->total > 0)
    fprintf(stderr, "%s%s: %5.1f%% %.1f/%.1f MB %.1f MB/s%s%s%s%s", cr, p->what,
            100.0 * done / p->total, done / 1e6, p->total / 1e6, rate / 1e6, eta,
            extra ? " " : "", extra ? extra : "", clear);
  else
    fprintf(stderr, "%s%s: %.1f MB %.1f MB/s%s%s%s", cr, p->what, done / 1e6, rate / 1e6,
            extra ? " " : "", extra ? extra : "", clear);
  p->shown = 1;
}

void keel_progress_update(keel_progress *p, double done, const char *extra) {
  double t = keel_now();
  if (t - p->last < 0.1 || !isatty(2)) return;
  p->last = t;
  progress_draw(p, done, extra, 0);
}

void keel_progress_end(keel_progress *p, double done, const char *extra) {
  progress_draw(p, done, extra, 1);
  fprintf(stderr, " in %.2fs\n", keel_now() - p->t0);
}
