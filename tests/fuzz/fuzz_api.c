/* libFuzzer target: HTTP bodies of /v1/completions and /v1/chat/completions
 * through the JSON parser and the request checks (every field, the chat
 * template, the prompt's tokens). Anything may be rejected; nothing may crash
 * or leak, and a rejection is a 4xx JSON error. */
#include "serve/api.h"
#include "small_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) build();
  static keel_serve_opts o;
  o.ctx = 64;
  keel_srv s;
  memset(&s, 0, sizeof s);
  s.o = &o;
  s.tok = tok;
  snprintf(s.model_id, sizeof s.model_id, "m");
  json_t *req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  keel_reply r = {0};
  if (req && keel_api_check(&s, req, size && (data[0] & 1), &r) < 0) {
    json_t *e = json_loads(r.body, 0, NULL);
    json_t *code = json_object_get(json_object_get(e, "error"), "code");
    if (!e || !json_is_integer(code) || json_integer_value(code) < 400 || json_integer_value(code) >= 500) abort();
    json_decref(e);
  }
  free(r.body);
  json_decref(req);
  return 0;
}
