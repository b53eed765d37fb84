/* The supervisor: runs training in a worker process, watches its heartbeat (one
 * byte per step on a pipe), and restarts it when it crashes, is killed or stops
 * beating for longer than the watchdog allows, with exponential back-off and a
 * restart budget. Each restart resumes from the newest good checkpoint. Every
 * event goes to RUN/events.jsonl. Injected faults apply to the first attempt. */
#ifndef KEEL_TRAIN_SUPERVISOR_H
#define KEEL_TRAIN_SUPERVISOR_H

#include "trainer.h"

typedef struct keel_supervise_opts {
  int max_restarts;   /* restarts allowed */
  double watchdog_s;  /* seconds without a heartbeat before the worker is killed */
  double backoff_s;   /* first wait before a restart; doubles each time, at most 60 s */
} keel_supervise_opts;

keel_status keel_supervise(const keel_train_opts *o, const keel_supervise_opts *so);

#endif
