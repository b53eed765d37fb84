/* Fault-injection specs. */
#include "inject.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"kill", "nan", "spike", "bitflip", "enospc", "torn", "slow", "hang"};

const char *keel_fault_name(keel_fault k) { return names[k]; }

keel_status keel_inject_parse(keel_inject *in, const char *spec) {
  memset(in, 0, sizeof *in);
  if (!spec || !*spec) return KEEL_OK;
  char *copy = keel_xstrdup(spec), *save = NULL;
  keel_status st = KEEL_OK;
  for (char *tok = strtok_r(copy, ",", &save); tok && !st; tok = strtok_r(NULL, ",", &save)) {
    if (in->n == (int)(sizeof in->items / sizeof *in->items)) {
      st = keel_fail(KEEL_ERR_ARG, "inject: at most 16 faults");
      break;
    }
    keel_inject_item *it = &in->items[in->n];
    size_t tl = strlen(tok);
    if (tl && tok[tl - 1] == '!') it->persistent = 1, tok[tl - 1] = 0;
    char *at = strchr(tok, '@');
    if (!at) {
      st = keel_fail(KEEL_ERR_ARG, "inject: \"%s\": expected KIND@step=N or KIND@save=N", tok);
      break;
    }
    *at = 0;
    int kind = -1;
    for (int k = 0; k < (int)(sizeof names / sizeof *names); k++)
      if (strcmp(tok, names[k]) == 0) kind = k;
    if (kind < 0) {
      st = keel_fail(KEEL_ERR_ARG, "inject: unknown fault \"%s\"", tok);
      break;
    }
    it->kind = (keel_fault)kind;
    int on_save = kind == KEEL_FAULT_ENOSPC || kind == KEEL_FAULT_TORN;
    const char *key = on_save ? "save=" : "step=";
    char *rest = at + 1, *end;
    if (strncmp(rest, key, 5) != 0 || (it->at = strtol(rest + 5, &end, 10)) < 1) {
      st = keel_fail(KEEL_ERR_ARG, "inject: %s needs @%sN with N >= 1", names[kind], key);
      break;
    }
    if (*end == ':') snprintf(it->arg, sizeof it->arg, "%s", end + 1);
    else if (*end) {
      st = keel_fail(KEEL_ERR_ARG, "inject: %s: unexpected \"%s\"", names[kind], end);
      break;
    }
    if (kind == KEEL_FAULT_BITFLIP && strcmp(it->arg, "gemm") && strcmp(it->arg, "param") && strcmp(it->arg, "grad"))
      st = keel_fail(KEEL_ERR_ARG, "inject: bitflip needs :gemm, :param or :grad");
    if (kind == KEEL_FAULT_NAN && it->arg[0] && strcmp(it->arg, "loss") && strcmp(it->arg, "grad"))
      st = keel_fail(KEEL_ERR_ARG, "inject: nan takes :loss or :grad");
    if (kind == KEEL_FAULT_SLOW && atoi(it->arg) <= 0) st = keel_fail(KEEL_ERR_ARG, "inject: slow needs :MS > 0");
    in->n++;
  }
  free(copy);
  return st;
}

char *keel_inject_persistent(const char *spec) {
  char *out = keel_xcalloc(spec ? strlen(spec) + 1 : 1, 1), *copy = keel_xstrdup(spec ? spec : ""), *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t n = strlen(tok);
    if (!n || tok[n - 1] != '!') continue;
    if (*out) strcat(out, ",");
    strcat(out, tok);
  }
  free(copy);
  return out;
}

keel_inject_item *keel_inject_take(keel_inject *in, keel_fault kind, long at) {
  for (int i = 0; i < in->n; i++) {
    keel_inject_item *it = &in->items[i];
    if (!it->fired && it->kind == kind && it->at == at) {
      it->fired = 1;
      return it;
    }
  }
  return NULL;
}
