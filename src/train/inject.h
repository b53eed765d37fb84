/* Fault injection, built into keel for its tests: a spec is a comma-separated
 * list of faults, from --inject or KEEL_INJECT:
 *   kill@step=N            SIGKILL after step N
 *   nan@step=N[:loss|grad] a NaN in the loss or the gradients of step N
 *   spike@step=N           step N's loss and gradients scaled by 50 (a bad batch)
 *   bitflip@step=N:gemm|param|grad   one bit flipped in a GEMM output, a parameter or a gradient
 *   enospc@save=N          the N-th checkpoint save fails with ENOSPC
 *   torn@save=N            the process dies in the middle of writing the N-th save
 *   slow@step=N:MS         step N takes MS milliseconds longer
 *   hang@step=N            step N never finishes
 * Each fault fires once per process. Under --supervise a fault applies to the
 * first attempt only, unless its spec ends in '!' (a fault that recurs). */
#ifndef KEEL_TRAIN_INJECT_H
#define KEEL_TRAIN_INJECT_H

#include "../core/error.h"

typedef enum keel_fault {
  KEEL_FAULT_KILL,
  KEEL_FAULT_NAN,
  KEEL_FAULT_SPIKE,
  KEEL_FAULT_BITFLIP,
  KEEL_FAULT_ENOSPC,
  KEEL_FAULT_TORN,
  KEEL_FAULT_SLOW,
  KEEL_FAULT_HANG,
} keel_fault;

typedef struct keel_inject_item {
  keel_fault kind;
  long at;      /* step (1-based, the step being computed) or save index (1-based) */
  char arg[16]; /* nan: loss|grad; bitflip: gemm|param|grad; slow: milliseconds */
  int fired;
  int persistent; /* '!': also after a supervisor restart */
} keel_inject_item;

typedef struct keel_inject {
  keel_inject_item items[16];
  int n;
} keel_inject;

/* Parses spec (NULL or empty: no faults). */
keel_status keel_inject_parse(keel_inject *in, const char *spec);
/* The matching unfired item (and marks it fired), or NULL. */
keel_inject_item *keel_inject_take(keel_inject *in, keel_fault kind, long at);
const char *keel_fault_name(keel_fault k);
/* The part of spec that recurs after a restart (items ending in '!'); heap string. */
char *keel_inject_persistent(const char *spec);

#endif
