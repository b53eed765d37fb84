/* keel serve: an OpenAI-compatible HTTP server on libmicrohttpd over the
 * batching engine. Endpoints: GET /health, GET /v1/models, POST
 * /v1/chat/completions, POST /v1/completions (both streamed or not), POST
 * /tokenize, POST /detokenize, GET /metrics. */
#ifndef KEEL_SERVE_SERVER_H
#define KEEL_SERVE_SERVER_H

#include <stddef.h>

#include "../core/error.h"

typedef struct keel_serve_opts {
  const char *model_dir, *host, *alias, *api_key;
  int port, ctx, parallel, threads, metrics, queue_max;
  int dtype; /* -1: as stored */
  size_t max_body;
} keel_serve_opts;

/* Runs until SIGINT or SIGTERM. */
keel_status keel_serve_run(const keel_serve_opts *o);

#endif
