/* Internal to serve/: the server's state and the OpenAI request handlers
 * (api.c) that the HTTP side (server.c) calls. */
#ifndef KEEL_SERVE_API_H
#define KEEL_SERVE_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../infer/engine.h"
#include "server.h"

typedef struct keel_srv {
  const keel_serve_opts *o;
  keel_imodel m;
  keel_tokenizer *tok;
  keel_engine *eng;
  char model_id[256];
  volatile int ready; /* 0 while loading */
  long next_id;
} keel_srv;

/* A response: a JSON body with a status, or a stream (SSE) to hand to the HTTP side. */
typedef struct keel_reply {
  int status;
  char *body; /* malloc'd */
  struct keel_stream *stream;
} keel_reply;

/* {"error": {"message", "type", "param", "code"}} with code = status. */
void keel_reply_error(keel_reply *out, int status, const char *type, const char *param, const char *fmt, ...);
void keel_reply_json(keel_reply *out, int status, json_t *j); /* steals j */

void keel_api_completions(keel_srv *s, json_t *req, int chat, keel_reply *out);
/* Only checks a completions request (0, or -1 with the error in out); needs s->o and s->tok. */
int keel_api_check(keel_srv *s, json_t *req, int chat, keel_reply *out);
void keel_api_tokenize(keel_srv *s, json_t *req, keel_reply *out);
void keel_api_detokenize(keel_srv *s, json_t *req, keel_reply *out);

/* DeepSeek reasoning: text[r0, r0+rn) is inside <think>...</think> at the start, text[c0..] the answer. */
void keel_split_think(const char *text, size_t n, size_t *r0, size_t *rn, size_t *c0);

/* The SSE stream of a streamed completion: reads events as the engine makes them. */
long keel_stream_read(struct keel_stream *st, char *buf, size_t max); /* -1: end */
void keel_stream_free(struct keel_stream *st);

#endif
