/* keel serve: the OpenAI-compatible HTTP server. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "../serve/server.h"
#include "cli.h"

int keel_cmd_serve(int argc, char **argv) {
  enum { O_HOST = 1000, O_PORT, O_ALIAS, O_KEY, O_METRICS, O_DTYPE, O_QUEUE, O_BODY };
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'},   {"host", required_argument, 0, O_HOST},
      {"port", required_argument, 0, O_PORT}, {"alias", required_argument, 0, O_ALIAS},
      {"api-key", required_argument, 0, O_KEY}, {"ctx-size", required_argument, 0, 'c'},
      {"parallel", required_argument, 0, 'P'}, {"threads", required_argument, 0, 't'},
      {"metrics", no_argument, 0, O_METRICS}, {"dtype", required_argument, 0, O_DTYPE},
      {"queue", required_argument, 0, O_QUEUE}, {"max-body", required_argument, 0, O_BODY},
      {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
  keel_serve_opts o = {0};
  o.host = "127.0.0.1", o.port = 8080, o.ctx = 2048, o.parallel = 4, o.queue_max = 64, o.dtype = -1;
  o.max_body = 1 << 20;
  int c;
  optind = 1;
  /* llama.cpp spells the slots -np */
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-np")) argv[i] = "-P";
  while ((c = getopt_long(argc, argv, "m:c:P:t:h", opts, NULL)) != -1) {
    switch (c) {
      case 'm': o.model_dir = optarg; break;
      case O_HOST: o.host = optarg; break;
      case O_PORT: o.port = atoi(optarg); break;
      case O_ALIAS: o.alias = optarg; break;
      case O_KEY: o.api_key = optarg; break;
      case 'c': o.ctx = atoi(optarg); break;
      case 'P': o.parallel = atoi(optarg); break;
      case 't': o.threads = atoi(optarg); break;
      case O_METRICS: o.metrics = 1; break;
      case O_QUEUE: o.queue_max = atoi(optarg); break;
      case O_BODY: o.max_body = (size_t)atol(optarg); break;
      case O_DTYPE:
        if ((o.dtype = keel_wtype_parse(optarg)) < 0) return keel_cli_usage_error("serve", "--dtype: f32, bf16, int8 or fp8");
        break;
      case 'h':
        printf("usage: keel serve -m DIR [options]\n\n"
               "An OpenAI-compatible HTTP server: GET /health, GET /v1/models, POST /v1/chat/completions,\n"
               "POST /v1/completions (\"stream\": true for server-sent events), POST /tokenize, POST /detokenize,\n"
               "GET /metrics. Sequences decode together in one forward per step (continuous batching).\n\n"
               "  -m, --model DIR        model dir (config.json, model.safetensors, tokenizer.json)\n"
               "      --host ADDR        IPv4 address to listen on (default 127.0.0.1)\n"
               "      --port N           (default 8080)\n"
               "      --alias NAME       the model id clients use (default: the dir's name)\n"
               "      --api-key KEY      require Authorization: Bearer KEY (not on /health)\n"
               "  -c, --ctx-size N       context per sequence (default 2048)\n"
               "  -np, --parallel N      sequences decoded together; each has a cache of ctx-size (default 4)\n"
               "      --queue N          requests waiting beyond those before 503 (default 64)\n"
               "      --max-body BYTES   largest request body (default 1048576)\n"
               "      --dtype T          weights as f32, bf16, int8 or fp8 (default: as stored)\n"
               "      --metrics          serve Prometheus metrics on /metrics\n"
               "  -t, --threads N        threads (default: all cores)\n");
        return 0;
      default: return keel_cli_usage_error("serve", "bad option");
    }
  }
  if (!o.model_dir) return keel_cli_usage_error("serve", "--model is required");
  if (o.port < 0 || o.port > 65535 || o.ctx < 2 || o.parallel < 1 || o.parallel > 256 || o.queue_max < 0 ||
      o.max_body < 64)
    return keel_cli_usage_error("serve", "an option is out of range");
  keel_backend_set_threads(o.threads);
  keel_status st = keel_serve_run(&o);
  return st ? keel_cli_error("serve", st) : 0;
}
