/* keel convert: a model dir with its weights stored as bf16, int8 (per-row
 * scales) or fp8 e4m3 (128x128 block scales, DeepSeek's format). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../infer/imodel.h"
#include "../train/checkpoint.h"
#include "cli.h"

int keel_cmd_convert(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"dtype", required_argument, 0, 'd'},
                                       {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *in = NULL, *out = NULL;
  int type = -1, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:d:o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'm': in = optarg; break;
      case 'o': out = optarg; break;
      case 'd':
        if ((type = keel_wtype_parse(optarg)) < 0) return keel_cli_usage_error("convert", "--dtype: f32, bf16, int8 or fp8");
        break;
      case 'h':
        printf("usage: keel convert -m DIR --dtype f32|bf16|int8|fp8 -o DIR2\n\n"
               "Writes DIR2 (config.json, model.safetensors, tokenizer files) with every matrix of the main\n"
               "model stored as the given type: bf16; int8 with a per-row scale (NAME_scale [rows, 1]);\n"
               "fp8 e4m3 with 128x128 block scales (NAME_scale_inv, DeepSeek's layout). Norms and the\n"
               "router stay f32; the embedding is bf16 under int8 and fp8. The MTP modules are dropped.\n"
               "keel generate and keel chat read such a dir without a float copy.\n");
        return 0;
      default: return keel_cli_usage_error("convert", "bad option");
    }
  }
  if (!in || !out || type < 0) return keel_cli_usage_error("convert", "--model, --dtype and --output are required");
  keel_imodel im;
  double t0 = keel_now();
  keel_status st = keel_imodel_load(&im, in, type, keel_backend_cpu());
  if (st) return keel_cli_error("convert", st);
  size_t bytes = im.weight_bytes;
  st = keel_imodel_save(&im, out);
  keel_imodel_free(&im);
  if (!st) st = keel_copy_tokenizer(in, out);
  if (st) return keel_cli_error("convert", st);
  fprintf(stderr, "keel convert: %s -> %s, %s weights, %.1f MB in %.1f s\n", in, out, keel_wtype_name(type),
          bytes / 1e6, keel_now() - t0);
  return 0;
}
