/* keel verify (checkpoint integrity) and keel report (what happened in a run). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/file.h"
#include "../train/checkpoint.h"
#include "cli.h"

int keel_cmd_verify(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("usage: keel verify RUN|CKPT\n\nChecks every file of a checkpoint (or of every checkpoint of a run)\n"
           "against its manifest; exits 1 if anything is wrong.\n");
    return argc < 2 ? 2 : 0;
  }
  const char *path = argv[1];
  size_t n = strlen(path) + 32;
  char *state = keel_xmalloc(n);
  snprintf(state, n, "%s/state.json", path);
  int bad = 0, count = 0;
  if (keel_path_exists(state)) {
    count = 1;
    if (keel_ckpt_verify(path)) printf("BAD  %s: %s\n", path, keel_errmsg()), bad++;
    else printf("ok   %s\n", path);
  } else {
    long *steps;
    int k = keel_ckpt_list(path, &steps);
    for (int i = 0; i < k; i++) {
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/ckpt/step-%ld", path, steps[i]);
      count++;
      if (keel_ckpt_verify(dir)) printf("BAD  %s: %s\n", dir, keel_errmsg()), bad++;
      else printf("ok   %s\n", dir);
    }
    free(steps);
  }
  free(state);
  if (!count) {
    fprintf(stderr, "keel verify: %s: no checkpoint found\n", path);
    return 1;
  }
  printf("%d checkpoint%s, %d bad\n", count, count == 1 ? "" : "s", bad);
  return bad ? 1 : 0;
}

/* Calls fn on each JSON object line of path. */
static void each_line(const char *path, void (*fn)(json_t *, void *), void *ctx) {
  char *buf;
  size_t len;
  if (keel_file_read(path, &buf, &len)) return;
  for (char *line = buf; line < buf + len;) {
    char *nl = memchr(line, '\n', (size_t)(buf + len - line));
    size_t l = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
    json_t *j = json_loadb(line, l, 0, NULL);
    if (json_is_object(j)) fn(j, ctx);
    json_decref(j);
    line += l + 1;
  }
  free(buf);
}

typedef struct report {
  long steps, skipped_nonfinite, skipped_spike, skipped_batches, rollbacks, sdc, restarts, watchdog, saves,
      save_failed, replays;
  double save_s, save_bytes_last, t_first, t_last, *step_s;
  long step_cap;
  double val_first, val_last;
} report;

static void on_metric(json_t *j, void *ctx) {
  report *r = ctx;
  long step = (long)json_integer_value(json_object_get(j, "step"));
  json_t *ss = json_object_get(j, "step_s"), *sk = json_object_get(j, "skipped"), *vl = json_object_get(j, "val_loss");
  if (step > r->steps && (ss || sk)) r->steps = step;
  if (ss && step > 0) {
    if (step >= r->step_cap) {
      long cap = step * 2;
      r->step_s = keel_xrealloc(r->step_s, (size_t)cap * sizeof *r->step_s);
      for (long i = r->step_cap; i < cap; i++) r->step_s[i] = 0;
      r->step_cap = cap;
    }
    r->step_s[step] = json_number_value(ss); /* the last attempt at a step is the one kept */
  }
  if (json_object_get(j, "skipped_batch")) r->skipped_batches++;
  if (vl) {
    if (isnan(r->val_first)) r->val_first = json_number_value(vl);
    r->val_last = json_number_value(vl);
  }
}

static void on_event(json_t *j, void *ctx) {
  report *r = ctx;
  const char *e = json_string_value(json_object_get(j, "event"));
  double t = json_number_value(json_object_get(j, "time"));
  if (!e) return;
  if (r->t_first == 0 || t < r->t_first) r->t_first = t;
  if (t > r->t_last) r->t_last = t;
  if (!strcmp(e, "skip_nonfinite")) r->skipped_nonfinite++;
  else if (!strcmp(e, "skip_spike")) r->skipped_spike++;
  else if (!strcmp(e, "rollback")) r->rollbacks++;
  else if (!strcmp(e, "sdc_detected")) r->sdc++;
  else if (!strcmp(e, "restart")) r->restarts++;
  else if (!strcmp(e, "watchdog_timeout")) r->watchdog++;
  else if (!strcmp(e, "replay")) r->replays++;
  else if (!strcmp(e, "save_failed")) r->save_failed++;
  else if (!strcmp(e, "save")) {
    r->saves++;
    r->save_s += json_number_value(json_object_get(j, "seconds"));
    r->save_bytes_last = (double)json_integer_value(json_object_get(j, "bytes"));
  }
}

int keel_cmd_report(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    printf("usage: keel report RUN\n\nSummarises a training run from RUN/metrics.jsonl and RUN/events.jsonl.\n");
    return argc < 2 ? 2 : 0;
  }
  const char *run = argv[1];
  char mp[4096], ep[4096];
  snprintf(mp, sizeof mp, "%s/metrics.jsonl", run);
  snprintf(ep, sizeof ep, "%s/events.jsonl", run);
  if (!keel_path_exists(mp) && !keel_path_exists(ep)) {
    fprintf(stderr, "keel report: %s: no metrics.jsonl or events.jsonl\n", run);
    return 2;
  }
  report r = {0};
  r.val_first = r.val_last = NAN;
  each_line(mp, on_metric, &r);
  each_line(ep, on_event, &r);
  double useful = 0;
  for (long i = 1; i <= r.steps && i < r.step_cap; i++) useful += r.step_s ? r.step_s[i] : 0;
  double wall = r.t_last - r.t_first;
  long *steps;
  int nck = keel_ckpt_list(run, &steps);
  free(steps);
  printf("run %s\n", run);
  printf("  steps done            %ld\n", r.steps);
  printf("  restarts              %ld (%ld after a watchdog timeout)\n", r.restarts, r.watchdog);
  printf("  rollbacks             %ld\n", r.rollbacks);
  printf("  skipped               %ld non-finite steps, %ld spike steps, %ld skipped batches\n", r.skipped_nonfinite,
         r.skipped_spike, r.skipped_batches);
  printf("  SDC detections        %ld (%ld reference replays)\n", r.sdc, r.replays);
  printf("  checkpoints           %ld saved, %ld failed, %d on disk, %.2f MB each, %.3f s mean save\n", r.saves,
         r.save_failed, nck, r.save_bytes_last / 1e6, r.saves ? r.save_s / r.saves : 0.0);
  if (!isnan(r.val_first)) printf("  validation loss       %.4f -> %.4f\n", r.val_first, r.val_last);
  printf("  useful step time      %.1f s of %.1f s wall: effective training time ratio %.3f\n", useful, wall,
         wall > 0 ? useful / wall : 0.0);
  free(r.step_s);
  return 0;
}
