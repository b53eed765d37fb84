/* Cluster presets and user cluster files for keel plan. The presets are the JSON files in
 * configs/clusters/, assembled into the binary so that `keel plan` works from any directory. */
#include "cluster.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/file.h"
#include "../io/json.h"

const char *const keel_prec_names[KEEL_PREC_COUNT] = {"fp32", "bf16", "fp8", "int8"};

keel_status keel_prec_parse(keel_prec *p, const char *s) {
  for (int i = 0; i < KEEL_PREC_COUNT; i++)
    if (strcmp(s, keel_prec_names[i]) == 0) return *p = (keel_prec)i, KEEL_OK;
  return keel_fail(KEEL_ERR_ARG, "precision '%s' is not one of fp32, bf16, fp8, int8", s);
}

/* Each preset file becomes a NUL-terminated string in .rodata. */
#define PRESET(sym, file)                                                                        \
  __asm__(".pushsection .rodata\n.global " #sym "\n.type " #sym ", @object\n" #sym ":\n.incbin \"" \
          file "\"\n.byte 0\n.popsection\n");                                                    \
  extern const char sym[];
PRESET(keel_preset_cm384, "configs/clusters/cloudmatrix384.json")
PRESET(keel_preset_nvl72, "configs/clusters/gb200-nvl72.json")
PRESET(keel_preset_a100, "configs/clusters/hgx-a100.json")
PRESET(keel_preset_h100, "configs/clusters/hgx-h100.json")
PRESET(keel_preset_h200, "configs/clusters/hgx-h200.json")
PRESET(keel_preset_h800, "configs/clusters/hgx-h800.json")
PRESET(keel_preset_h20, "configs/clusters/hgx-h20.json")

static const struct {
  const char *name;
  const char *text;
} presets[] = {
    {"cloudmatrix384", keel_preset_cm384}, {"gb200-nvl72", keel_preset_nvl72}, {"hgx-a100", keel_preset_a100},
    {"hgx-h100", keel_preset_h100},        {"hgx-h200", keel_preset_h200},     {"hgx-h800", keel_preset_h800},
    {"hgx-h20", keel_preset_h20},
};
enum { N_PRESETS = sizeof presets / sizeof *presets };

const char *const *keel_cluster_presets(void) {
  static const char *names[N_PRESETS + 1];
  for (int i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
  return names;
}

/* JSON field -> struct member, with the factor from the field's unit to SI. */
static const struct {
  const char *key;
  size_t off;
  double scale;
} fields[] = {
#define F(key, member, scale) {key, offsetof(keel_cluster, member), scale}
    F("chips", chips, 1),
    F("fp32_tflops", peak[KEEL_PREC_FP32], 1e12),
    F("bf16_tflops", peak[KEEL_PREC_BF16], 1e12),
    F("fp8_tflops", peak[KEEL_PREC_FP8], 1e12),
    F("int8_tops", peak[KEEL_PREC_INT8], 1e12),
    F("hbm_gb", hbm_bytes, 1e9),
    F("hbm_tb_s", hbm_bw, 1e12),
    F("gemm_efficiency", gemm_eff, 1),
    F("gemm_efficiency_8bit", gemm_eff8, 1),
    F("gemm_half_dim", gemm_half, 1),
    F("attention_efficiency", attn_eff, 1),
    F("memory_efficiency", mem_eff, 1),
    F("sustained_efficiency", sustained, 1),
    F("scale_up_chips", domain, 1),
    F("scale_up_gb_s", up_bw, 1e9),
    F("scale_out_gb_s", out_bw, 1e9),
    F("scale_up_latency_us", up_lat, 1e-6),
    F("scale_out_latency_us", out_lat, 1e-6),
    F("chip_power_w", chip_power, 1),
    F("system_power_kw", system_power, 1e3),
    F("system_chips", system_chips, 1),
    F("failures_per_chip_day", fail_chip_day, 1),
    F("checkpoint_gb_s_per_chip", ckpt_bw, 1e9),
    F("restart_min", restart_s, 60),
    F("comm_compute_tax", comm_tax, 1),
    F("reserved_gb", reserve_bytes, 1e9),
#undef F
};
enum { N_FIELDS = sizeof fields / sizeof *fields };

static double *member(keel_cluster *c, int i) { return (double *)((char *)c + fields[i].off); }

static int field_index(const char *key) {
  for (int i = 0; i < N_FIELDS; i++)
    if (strcmp(fields[i].key, key) == 0) return i;
  return -1;
}

static const char *preset_text(const char *name) {
  char alt[80];
  snprintf(alt, sizeof alt, "hgx-%s", name);
  for (int i = 0; i < N_PRESETS; i++)
    if (strcmp(presets[i].name, name) == 0 || strcmp(presets[i].name, alt) == 0) return presets[i].text;
  return NULL;
}

static keel_status apply_text(keel_cluster *c, const char *text, const char *what, int depth);

static keel_status apply(keel_cluster *c, json_t *o, const char *what, int depth) {
  if (!json_is_object(o)) return keel_fail(KEEL_ERR_FORMAT, "%s: a cluster file must be a JSON object", what);
  json_t *base = json_object_get(o, "base");
  if (base) {
    const char *b = json_string_value(base), *text = b ? preset_text(b) : NULL;
    if (!text) return keel_fail(KEEL_ERR_FORMAT, "%s: field 'base' must name a built-in preset", what);
    if (depth > 0) return keel_fail(KEEL_ERR_FORMAT, "%s: a preset cannot have a base", what);
    keel_status st = apply_text(c, text, b, 1);
    if (st != KEEL_OK) return st;
  }
  const struct {
    const char *key;
    char *dst;
    size_t cap;
  } text[] = {{"name", c->name, sizeof c->name}, {"chip", c->chip, sizeof c->chip}, {"note", c->note, sizeof c->note}};
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    if (!strcmp(key, "base") || !strcmp(key, "sources")) continue;
    size_t t = 0;
    while (t < 3 && strcmp(key, text[t].key)) t++;
    if (t < 3) {
      if (!json_is_string(v)) return keel_fail(KEEL_ERR_FORMAT, "%s: field '%s' must be a string", what, key);
      snprintf(text[t].dst, text[t].cap, "%s", json_string_value(v));
      continue;
    }
    int i = field_index(key);
    if (i < 0) return keel_fail(KEEL_ERR_FORMAT, "%s: unknown field '%s'", what, key);
    if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
      return keel_fail(KEEL_ERR_FORMAT, "%s: field '%s' must be a number >= 0", what, key);
    *member(c, i) = json_number_value(v) * fields[i].scale;
  }
  return KEEL_OK;
}

static keel_status apply_text(keel_cluster *c, const char *text, const char *what, int depth) {
  json_t *o = NULL;
  keel_status st = keel_json_load_buf(&o, text, strlen(text), what);
  if (st != KEEL_OK) return st;
  st = apply(c, o, what, depth);
  json_decref(o);
  return st;
}

keel_status keel_cluster_apply_json(keel_cluster *c, const char *text, const char *what) {
  return apply_text(c, text, what, 0);
}

static void defaults(keel_cluster *c) {
  memset(c, 0, sizeof *c);
  c->chips = 1;
  c->gemm_eff = 0.7, c->gemm_half = 64, c->attn_eff = 0.5, c->mem_eff = 0.8, c->sustained = 1;
  c->domain = 1;
  c->ckpt_bw = 1e9, c->restart_s = 600;
}

keel_status keel_cluster_load(keel_cluster *c, const char *name_or_path) {
  defaults(c);
  const char *text = preset_text(name_or_path);
  if (text) return apply_text(c, text, name_or_path, 1);
  if (!strchr(name_or_path, '/') && !strstr(name_or_path, ".json")) {
    char list[512] = "";
    for (int i = 0; i < N_PRESETS; i++) strcat(strcat(list, i ? ", " : ""), presets[i].name);
    return keel_fail(KEEL_ERR_ARG, "cluster '%s' is not a preset (%s, local) or a .json file", name_or_path, list);
  }
  char *buf = NULL;
  size_t len = 0;
  keel_status st = keel_file_read(name_or_path, &buf, &len);
  if (st != KEEL_OK) return st;
  if (strlen(buf) != len) st = keel_fail(KEEL_ERR_FORMAT, "%s: a NUL byte inside the file", name_or_path);
  else st = keel_cluster_apply_json(c, buf, name_or_path);
  free(buf);
  if (st == KEEL_OK && !c->name[0]) snprintf(c->name, sizeof c->name, "%s", name_or_path);
  return st;
}

keel_status keel_cluster_set(keel_cluster *c, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  char key[64];
  if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof key)
    return keel_fail(KEEL_ERR_ARG, "--set '%s': expected FIELD=VALUE", assignment);
  memcpy(key, assignment, eq - assignment);
  key[eq - assignment] = 0;
  int i = field_index(key);
  if (i < 0) return keel_fail(KEEL_ERR_ARG, "--set: unknown cluster field '%s'", key);
  char *end;
  double v = strtod(eq + 1, &end);
  if (end == eq + 1 || *end || !(v >= 0) || !isfinite(v))
    return keel_fail(KEEL_ERR_ARG, "--set %s: '%s' is not a number >= 0", key, eq + 1);
  *member(c, i) = v * fields[i].scale;
  return KEEL_OK;
}

double keel_cluster_power_per_chip(const keel_cluster *c) {
  return c->system_power > 0 && c->system_chips > 0 ? c->system_power / c->system_chips : c->chip_power;
}

keel_status keel_cluster_check(const keel_cluster *c) {
  const char *missing = !(c->peak[KEEL_PREC_BF16] > 0 || c->peak[KEEL_PREC_FP32] > 0) ? "bf16_tflops"
                        : !(c->hbm_bytes > 0)                                        ? "hbm_gb"
                        : !(c->hbm_bw > 0)                                           ? "hbm_tb_s"
                        : !(c->gemm_eff > 0 && c->gemm_eff <= 1)                     ? "gemm_efficiency (0..1]"
                        : !(c->gemm_eff8 >= 0 && c->gemm_eff8 <= 1)                  ? "gemm_efficiency_8bit [0..1]"
                        : !(c->attn_eff > 0 && c->attn_eff <= 1)                     ? "attention_efficiency (0..1]"
                        : !(c->mem_eff > 0 && c->mem_eff <= 1)                       ? "memory_efficiency (0..1]"
                        : !(c->sustained > 0 && c->sustained <= 1)                   ? "sustained_efficiency (0..1]"
                        : !(c->domain >= 1)                                          ? "scale_up_chips"
                        : !(c->up_bw > 0 || c->domain <= 1)                          ? "scale_up_gb_s"
                        : !(c->out_bw > 0 || c->chips <= c->domain)                  ? "scale_out_gb_s"
                        : !(c->comm_tax < 1)                                         ? "comm_compute_tax (< 1)"
                        : !(c->ckpt_bw > 0)                                          ? "checkpoint_gb_s_per_chip"
                                                                                     : NULL;
  if (missing) return keel_fail(KEEL_ERR_FORMAT, "cluster '%s': field %s is missing or out of range", c->name, missing);
  return KEEL_OK;
}
