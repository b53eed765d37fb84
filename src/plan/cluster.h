/* The hardware side of keel plan: a chip and the system it sits in, read from a JSON preset
 * (configs/clusters/NAME.json, built into keel) or a user file that may start from a preset
 * ("base": "NAME") and override any field; `keel plan --set FIELD=VALUE` overrides one more.
 * Units inside keel are SI (FLOP/s, bytes, bytes/s, seconds, watts); the JSON fields carry
 * the unit in their name (TFLOPS, GB, GB/s, us, kW). */
#ifndef KEEL_PLAN_CLUSTER_H
#define KEEL_PLAN_CLUSTER_H

#include "../core/error.h"

typedef enum keel_prec { KEEL_PREC_FP32, KEEL_PREC_BF16, KEEL_PREC_FP8, KEEL_PREC_INT8, KEEL_PREC_COUNT } keel_prec;

typedef struct keel_cluster {
  char name[64], chip[96], note[512];
  double chips;              /* default cluster size */
  double peak[KEEL_PREC_COUNT]; /* dense peak FLOP/s (or OP/s) per precision; 0: not supported */
  double hbm_bytes, hbm_bw;  /* per chip */
  double gemm_eff;           /* share of peak a large GEMM reaches */
  double gemm_eff8;          /* the same for 8-bit GEMMs with block scales (0: gemm_eff) */
  double gemm_half;          /* a GEMM dimension of this size halves that share (x / (x + half) per dim) */
  double attn_eff;           /* share of peak of fused attention at long context */
  double mem_eff;            /* share of hbm_bw memory-bound kernels reach */
  double sustained;          /* share of the modelled kernel time a large run sustains (launch gaps,
                              * synchronisation, stragglers); fitted to published runs */
  double domain;             /* chips in one scale-up domain (NVLink, UB, ...) */
  double up_bw, out_bw;      /* per chip, one direction: inside the domain / across domains */
  double up_lat, out_lat;    /* per message */
  double chip_power, system_power, system_chips; /* W; an all-in system of system_chips chips */
  double fail_chip_day;      /* interruptions per chip-day */
  double ckpt_bw;            /* checkpoint write bandwidth per chip (blocking part) */
  double restart_s;          /* detect + reschedule + reload, per interruption */
  double comm_tax;           /* share of compute lost while communication overlaps it */
  double reserve_bytes;      /* per chip: runtime, workspace, fragmentation */
} keel_cluster;

extern const char *const keel_prec_names[KEEL_PREC_COUNT];
keel_status keel_prec_parse(keel_prec *p, const char *s);

/* Built-in preset by name ("h800" also finds "hgx-h800"), or a JSON file. */
keel_status keel_cluster_load(keel_cluster *c, const char *name_or_path);
/* Applies a JSON object's fields over c (every field optional); `what` names it in errors. */
keel_status keel_cluster_apply_json(keel_cluster *c, const char *text, const char *what);
/* One override, "field=value" with the JSON field name and unit. */
keel_status keel_cluster_set(keel_cluster *c, const char *assignment);
/* Names of the built-in presets, NULL-terminated. */
const char *const *keel_cluster_presets(void);
/* All-in power per chip (system power shared out, else the chip's own). */
double keel_cluster_power_per_chip(const keel_cluster *c);
/* Checks that what the cost model divides by is there; names the missing field. */
keel_status keel_cluster_check(const keel_cluster *c);

#endif
