/* RUN/events.jsonl: one JSON line per event of a run (resume, skipped step,
 * rollback, checkpoint saved or failed, corruption detected, worker restart),
 * each with a wall-clock time and a reason. */
#ifndef KEEL_TRAIN_EVENTS_H
#define KEEL_TRAIN_EVENTS_H

#include <stdio.h>

/* Appends {"time": ..., "event": NAME, <fields>} to RUN/events.jsonl; fields is a
 * printf format producing the rest of the object's members (may be empty). */
void keel_event(const char *run, const char *name, const char *fields, ...) __attribute__((format(printf, 3, 4)));

#endif
