/* The HTTP side of keel serve: libmicrohttpd with a thread per connection
 * (a handler may wait for the engine), bodies collected up to a limit,
 * routing, the API key, /health, /v1/models and /metrics. */
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if KEEL_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "../io/file.h"
#include "api.h"

typedef struct conn {
  char *body;
  size_t len;
  int too_large;
} conn;

static volatile sig_atomic_t quit;
static void on_signal(int sig) { quit = sig; }

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  long n = keel_stream_read(cls, buf, max);
  return n < 0 ? (ssize_t)MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls) { keel_stream_free(cls); }

static enum MHD_Result send_reply(struct MHD_Connection *c, keel_reply *r, const char *ctype) {
  struct MHD_Response *resp;
  if (r->stream) {
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r->stream, stream_free);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
  } else {
    const char *b = r->body ? r->body : "{}";
    resp = MHD_create_response_from_buffer(strlen(b), (void *)b, r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Content-Type", ctype ? ctype : "application/json");
  }
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ok;
}

static void metrics(keel_srv *s, keel_reply *out) {
  keel_engine_stats st;
  keel_engine_get_stats(s->eng, &st);
  size_t cap = 8192, n = 0;
  char *b = keel_xmalloc(cap);
#define P(...) (n += (size_t)snprintf(b + n, cap - n, __VA_ARGS__))
  P("# TYPE keel_requests_running gauge\nkeel_requests_running %ld\n", st.running);
  P("# TYPE keel_requests_waiting gauge\nkeel_requests_waiting %ld\n", st.waiting);
  P("# TYPE keel_requests_total counter\nkeel_requests_total %ld\n", st.requests);
  P("# TYPE keel_prompt_tokens_total counter\nkeel_prompt_tokens_total %ld\n", st.prompt_tokens);
  P("# TYPE keel_generation_tokens_total counter\nkeel_generation_tokens_total %ld\n", st.gen_tokens);
  P("# TYPE keel_kv_cache_usage_ratio gauge\nkeel_kv_cache_usage_ratio %.6f\n",
    st.kv_total ? (double)st.kv_used / st.kv_total : 0.0);
  const char *names[2] = {"keel_time_to_first_token_seconds", "keel_time_per_output_token_seconds"};
  long *h[2] = {st.ttft_hist, st.tpot_hist}, cnt[2] = {st.ttft_n, st.tpot_n};
  double sum[2] = {st.ttft_sum, st.tpot_sum};
  for (int k = 0; k < 2; k++) {
    P("# TYPE %s histogram\n", names[k]);
    long acc = 0;
    for (int i = 0; i < 12; i++) {
      acc += h[k][i];
      if (i < 11) P("%s_bucket{le=\"%g\"} %ld\n", names[k], keel_engine_buckets[i], acc);
      else P("%s_bucket{le=\"+Inf\"} %ld\n", names[k], acc);
    }
    P("%s_sum %.6f\n%s_count %ld\n", names[k], sum[k], names[k], cnt[k]);
  }
#undef P
  out->status = 200;
  out->body = b;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  keel_srv *s = cls;
  conn *cn = *con_cls;
  if (!cn) { /* first call: headers only */
    *con_cls = cn = keel_xcalloc(1, sizeof *cn);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int one = 1; /* stream chunks leave at once, not when the previous one is acknowledged */
    if (ci) setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return MHD_YES;
  }
  if (*upload_size) { /* a piece of the body */
    if (cn->len + *upload_size > s->o->max_body) {
      cn->too_large = 1;
    } else {
      cn->body = keel_xrealloc(cn->body, cn->len + *upload_size + 1);
      memcpy(cn->body + cn->len, upload, *upload_size);
      cn->len += *upload_size;
      cn->body[cn->len] = 0;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  keel_reply r = {0};
  const char *ctype = NULL;
  int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
  if (!strcmp(url, "/health")) {
    if (!get) keel_reply_error(&r, 405, "invalid_request_error", NULL, "use GET");
    else if (!s->ready) keel_reply_error(&r, 503, "unavailable", NULL, "the model is loading");
    else keel_reply_json(&r, 200, json_pack("{s:s}", "status", "ok"));
    return send_reply(c, &r, NULL);
  }
  if (s->o->api_key) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    char want[512];
    snprintf(want, sizeof want, "Bearer %s", s->o->api_key);
    if (!auth || strcmp(auth, want)) {
      keel_reply_error(&r, 401, "authentication_error", NULL, "a valid API key is required (Authorization: Bearer KEY)");
      return send_reply(c, &r, NULL);
    }
  }
  if (!s->ready) {
    keel_reply_error(&r, 503, "unavailable", NULL, "the model is loading");
    return send_reply(c, &r, NULL);
  }
  int chat = !strcmp(url, "/v1/chat/completions"), cmpl = !strcmp(url, "/v1/completions");
  int tokz = !strcmp(url, "/tokenize"), detok = !strcmp(url, "/detokenize");
  if (!strcmp(url, "/v1/models") && get) {
    keel_reply_json(&r, 200, json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:i}]}", "object", "list", "data", "id",
                                       s->model_id, "object", "model", "created", (json_int_t)0, "owned_by", "keel",
                                       "max_model_len", s->o->ctx));
  } else if (!strcmp(url, "/metrics") && get && s->o->metrics) {
    metrics(s, &r);
    ctype = "text/plain; version=0.0.4";
  } else if ((chat || cmpl || tokz || detok) && post) {
    json_error_t err;
    json_t *req = NULL;
    if (cn->too_large)
      keel_reply_error(&r, 413, "invalid_request_error", NULL, "the body is over %zu bytes", s->o->max_body);
    else if (!(req = json_loadb(cn->body ? cn->body : "", cn->len, JSON_REJECT_DUPLICATES, &err)))
      keel_reply_error(&r, 400, "invalid_request_error", NULL, "malformed JSON at byte %d: %s", err.position, err.text);
    else if (chat || cmpl) keel_api_completions(s, req, chat, &r);
    else if (tokz) keel_api_tokenize(s, req, &r);
    else keel_api_detokenize(s, req, &r);
    json_decref(req);
  } else if (chat || cmpl || tokz || detok || !strcmp(url, "/v1/models")) {
    keel_reply_error(&r, 405, "invalid_request_error", NULL, "method %s is not allowed on %.100s", method, url);
  } else {
    keel_reply_error(&r, 404, "invalid_request_error", NULL, "no endpoint %.100s", url);
  }
  return send_reply(c, &r, ctype);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
  conn *cn = *con_cls;
  if (cn) free(cn->body), free(cn);
  *con_cls = NULL;
}

keel_status keel_serve_run(const keel_serve_opts *o) {
  keel_srv s;
  memset(&s, 0, sizeof s);
  s.o = o;
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)o->port);
  if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1)
    return keel_fail(KEEL_ERR_ARG, "--host %s: not an IPv4 address", o->host);
  signal(SIGPIPE, SIG_IGN);
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)o->port, NULL, NULL,
      handle, &s, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)15, MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)256 * 1024, MHD_OPTION_END);
  if (!d) return keel_fail(KEEL_ERR_IO, "cannot listen on %s:%d", o->host, o->port);
  fprintf(stderr, "keel serve: listening on http://%s:%d, loading %s\n", o->host, o->port, o->model_dir);
  const char *inj = getenv("KEEL_INJECT"); /* slowload@ms=N: a slow disk, for the tests of /health */
  if (inj && !strncmp(inj, "slowload@ms=", 12)) usleep((useconds_t)atoi(inj + 12) * 1000);
  keel_status st = keel_imodel_load(&s.m, o->model_dir, o->dtype, keel_backend_cpu());
  char *tp = keel_path_join(o->model_dir, "tokenizer.json");
  if (!st) st = keel_tokenizer_load(&s.tok, tp);
  if (!st && s.tok->n_vocab > s.m.c.vocab_size)
    st = keel_fail(KEEL_ERR_FORMAT, "%s: the tokenizer has %d ids, more than vocab_size %d", tp, s.tok->n_vocab,
                   s.m.c.vocab_size);
  free(tp);
  if (!st) st = keel_engine_start(&s.eng, &s.m, s.tok, o->parallel, o->ctx, o->queue_max);
  if (!st) {
    size_t n = strlen(o->model_dir), b = 0; /* the id: --alias, or the dir's last name ("runs/x/final/": final) */
    while (n > 1 && o->model_dir[n - 1] == '/') n--;
    for (size_t i = 0; i + 1 < n; i++)
      if (o->model_dir[i] == '/') b = i + 1;
    snprintf(s.model_id, sizeof s.model_id, "%.*s", (int)(n - b), o->model_dir + b);
    if (o->alias) snprintf(s.model_id, sizeof s.model_id, "%s", o->alias);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    s.ready = 1;
    fprintf(stderr, "keel serve: model %s ready (%d slots of %d tokens, %s weights)\n", s.model_id, o->parallel, o->ctx,
            keel_wtype_name(s.m.wtype));
    while (!quit) pause();
    fprintf(stderr, "keel serve: stopping\n");
  }
  MHD_stop_daemon(d);
  if (s.eng) keel_engine_stop(s.eng);
  if (s.tok) keel_tokenizer_free(s.tok);
  if (s.m.wm) keel_imodel_free(&s.m);
  return st;
}

#else
keel_status keel_serve_run(const keel_serve_opts *o) {
  (void)o;
  return keel_fail(KEEL_ERR_ARG, "this build has no HTTP server: install libmicrohttpd-dev and rebuild");
}
#endif
