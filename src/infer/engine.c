/* Continuous batching over a runner with one latent cache per slot. */
#include "engine.h"

#include "../core/clock.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double keel_engine_buckets[12] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, INFINITY};

enum { CHUNK_ROWS = 64 }; /* rows per forward: decoding slots plus prompt chunks */

typedef struct slot {
  keel_req *r;
  keel_kvcache cache;
  keel_sampler smp;
  keel_ids hist;   /* prompt + generated */
  int fed;         /* prompt tokens in the cache */
  int32_t pending; /* the last sampled token, fed on the next step */
} slot;

struct keel_engine {
  const keel_imodel *m;
  const keel_tokenizer *tok;
  keel_runner run;
  slot *slots;
  int n_slots, ctx, queue_max, n_wait, stop;
  keel_req *head, *tail;
  pthread_mutex_t mu;
  pthread_cond_t changed, work;
  pthread_t thread;
  keel_engine_stats st;
  int fail_after; /* fault injection (KEEL_INJECT=fail@token=N): a request fails at its N-th token */
  char *dec;
  size_t dec_cap;
};

keel_req *keel_req_new(void) {
  keel_req *r = keel_xcalloc(1, sizeof *r);
  r->refs = 1;
  r->slot = -1;
  r->top_logprobs = -1;
  keel_sampler_defaults(&r->so);
  return r;
}

static void req_unref(keel_req *r) {
  if (--r->refs > 0) return;
  keel_ids_free(&r->prompt);
  for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
  free(r->stop), free(r->text), free(r->lp), free(r);
}

static double now_s(void) { return keel_now(); }

static void observe(long *hist, double *sum, long *n, double v) {
  int b = 0;
  while (b < 11 && v > keel_engine_buckets[b]) b++;
  hist[b]++, *sum += v, (*n)++;
}

/* How many bytes at the end of text start a UTF-8 character that is not complete yet. */
static size_t utf8_incomplete_tail(const char *t, size_t n) {
  for (size_t back = 1; back <= 3 && back <= n; back++) {
    unsigned char c = (unsigned char)t[n - back];
    if ((c & 0xc0) == 0x80) continue; /* continuation byte */
    size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

int keel_req_settle(keel_req *r) {
  size_t from = r->ready;
  for (int i = 0; i < r->n_stop; i++) {
    size_t sl = strlen(r->stop[i]);
    if (!sl || r->len < sl) continue;
    size_t s0 = from >= sl ? from - sl + 1 : 0;
    for (size_t p = s0; p + sl <= r->len; p++)
      if (!memcmp(r->text + p, r->stop[i], sl)) {
        r->len = p;
        r->ready = p;
        return 1;
      }
  }
  size_t safe = r->len - utf8_incomplete_tail(r->text, r->len);
  for (int i = 0; i < r->n_stop; i++) { /* hold back a suffix that may grow into a stop string */
    size_t sl = strlen(r->stop[i]);
    for (size_t k = sl > 1 ? sl - 1 : 0; k > 0; k--)
      if (k <= r->len && !memcmp(r->text + r->len - k, r->stop[i], k)) {
        if (r->len - k < safe) safe = r->len - k;
        break;
      }
  }
  if (safe > r->ready) r->ready = safe;
  return 0;
}

static void append(keel_req *r, const char *b, size_t n) {
  if (r->len + n + 1 > r->cap) {
    r->cap = (r->len + n + 1) * 2;
    r->text = keel_xrealloc(r->text, r->cap);
  }
  memcpy(r->text + r->len, b, n);
  r->len += n;
  r->text[r->len] = 0;
}

static void logprobs(keel_logprob *o, const float *l, int V, int32_t chosen, int k) {
  double mx = l[0], sum = 0;
  for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
  for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
  float lse = (float)(mx + log(sum));
  o->id = chosen;
  o->logprob = l[chosen] - lse;
  for (int i = 0; i < k && i < 20; i++) { /* the k largest, ties to the lower id */
    int best = -1;
    for (int v = 0; v < V; v++) {
      int taken = 0;
      for (int j = 0; j < i && !taken; j++) taken = o->top_id[j] == v;
      if (!taken && (best < 0 || l[v] > l[best])) best = v;
    }
    o->top_id[i] = best;
    o->top_lp[i] = l[best] - lse;
  }
}

static void finish(keel_engine *e, int s, const char *why) {
  slot *sl = &e->slots[s];
  keel_req *r = sl->r;
  if (!r) return;
  r->finish = why;
  r->len -= utf8_incomplete_tail(r->text ? r->text : "", r->len);
  r->ready = r->len;
  r->done = 1;
  r->slot = -1;
  sl->r = NULL;
  keel_sampler_free(&sl->smp);
  e->st.running--;
  req_unref(r);
}

static void admit(keel_engine *e) {
  for (int s = 0; s < e->n_slots && e->head; s++) {
    slot *sl = &e->slots[s];
    if (sl->r) continue;
    keel_req *r = e->head;
    e->head = r->next;
    if (!e->head) e->tail = NULL;
    e->n_wait--;
    if (r->cancelled) { /* gone before it started */
      r->done = 1;
      req_unref(r);
      s--;
      continue;
    }
    sl->r = r;
    r->slot = s;
    sl->cache.len = 0;
    sl->fed = 0;
    sl->hist.n = 0;
    for (size_t i = 0; i < r->prompt.n; i++) keel_ids_push(&sl->hist, r->prompt.v[i]);
    keel_sampler_init(&sl->smp, &r->so, e->tok->n_vocab);
    e->st.running++;
    e->st.prompt_tokens += (long)r->prompt.n;
  }
}

/* Samples the next token of slot s from its logits; appends text; ends the request when due. */
static void advance(keel_engine *e, int s, const float *logits) {
  slot *sl = &e->slots[s];
  keel_req *r = sl->r;
  int32_t t = keel_sampler_next(&sl->smp, logits, e->tok->n_vocab, sl->hist.v, (int)sl->hist.n);
  if (r->top_logprobs >= 0) {
    r->lp = keel_xrealloc(r->lp, (size_t)(r->n_gen + 1) * sizeof *r->lp);
    logprobs(&r->lp[r->n_gen], logits, e->tok->n_vocab, t, r->top_logprobs);
  }
  double now = now_s();
  if (!r->n_gen) r->t_first = now, observe(e->st.ttft_hist, &e->st.ttft_sum, &e->st.ttft_n, now - r->t_submit);
  else observe(e->st.tpot_hist, &e->st.tpot_sum, &e->st.tpot_n, (now - r->t_first) / r->n_gen);
  r->n_gen++;
  e->st.gen_tokens++;
  keel_ids_push(&sl->hist, t);
  sl->pending = t;
  if (t == e->tok->eos_id) {
    finish(e, s, "stop");
    return;
  }
  size_t n = 0;
  if (!keel_tokenizer_decode(e->tok, &t, 1, KEEL_TOK_SKIP_SPECIAL, &e->dec, &n, &e->dec_cap)) append(r, e->dec, n);
  if (r->lp) r->lp[r->n_gen - 1].end = r->len;
  if (e->fail_after > 0 && r->n_gen == e->fail_after) {
    snprintf(r->err, sizeof r->err, "injected failure at token %d", r->n_gen);
    finish(e, s, "stop");
  } else if (keel_req_settle(r)) finish(e, s, "stop");
  else if (r->n_gen >= r->max_tokens || sl->cache.len >= e->ctx) finish(e, s, "length");
}

static void *loop(void *arg) {
  keel_engine *e = arg;
  int32_t tok[CHUNK_ROWS];
  int pos[CHUNK_ROWS], owner[CHUNK_ROWS];
  keel_kvcache *caches[CHUNK_ROWS];
  unsigned char want[CHUNK_ROWS];
  pthread_mutex_lock(&e->mu);
  while (!e->stop) {
    for (int s = 0; s < e->n_slots; s++)
      if (e->slots[s].r && e->slots[s].r->cancelled) finish(e, s, "stop");
    admit(e);
    int n = 0;
    for (int s = 0; s < e->n_slots && n < CHUNK_ROWS; s++) { /* decoding slots first: one row each */
      slot *sl = &e->slots[s];
      if (!sl->r || sl->fed < (int)sl->r->prompt.n) continue;
      tok[n] = sl->pending, pos[n] = sl->cache.len, caches[n] = &sl->cache, want[n] = 1, owner[n++] = s;
    }
    for (int s = 0; s < e->n_slots && n < CHUNK_ROWS; s++) { /* then prompt chunks in the rows left */
      slot *sl = &e->slots[s];
      if (!sl->r || sl->fed >= (int)sl->r->prompt.n) continue;
      while (n < CHUNK_ROWS && sl->fed < (int)sl->r->prompt.n) {
        tok[n] = sl->r->prompt.v[sl->fed], pos[n] = sl->fed, caches[n] = &sl->cache, owner[n] = s;
        want[n] = ++sl->fed == (int)sl->r->prompt.n;
        n++;
      }
    }
    long used = 0;
    for (int s = 0; s < e->n_slots; s++) used += e->slots[s].r ? e->slots[s].cache.len : 0;
    e->st.kv_used = used;
    if (!n) {
      pthread_cond_wait(&e->work, &e->mu);
      continue;
    }
    pthread_mutex_unlock(&e->mu); /* the forward runs without the lock: the HTTP side only queues */
    keel_status st = keel_runner_forward(&e->run, n, tok, caches, pos, want);
    pthread_mutex_lock(&e->mu);
    int k = 0;
    for (int i = 0; i < n; i++) {
      if (!want[i]) continue;
      const float *logits = e->run.logits + (size_t)k++ * e->m->c.vocab_size;
      int s = owner[i];
      if (!e->slots[s].r) continue;
      if (st) {
        snprintf(e->slots[s].r->err, sizeof e->slots[s].r->err, "%s", keel_errmsg());
        finish(e, s, "stop");
      } else if (!e->slots[s].r->cancelled) {
        advance(e, s, logits);
      }
    }
    pthread_cond_broadcast(&e->changed);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

keel_status keel_engine_start(keel_engine **out, const keel_imodel *m, const keel_tokenizer *tok, int slots, int ctx,
                              int queue_max) {
  keel_engine *e = keel_xcalloc(1, sizeof *e);
  e->m = m, e->tok = tok, e->n_slots = slots, e->ctx = ctx, e->queue_max = queue_max;
  const char *inj = getenv("KEEL_INJECT");
  if (inj && !strncmp(inj, "fail@token=", 11)) e->fail_after = atoi(inj + 11);
  keel_status st = keel_runner_init(&e->run, m, CHUNK_ROWS, ctx);
  e->slots = keel_xcalloc((size_t)slots, sizeof *e->slots);
  for (int s = 0; s < slots && !st; s++) st = keel_kvcache_init(&e->slots[s].cache, &m->c, ctx);
  e->st.kv_total = (long)slots * ctx;
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->changed, NULL);
  pthread_cond_init(&e->work, NULL);
  if (!st && pthread_create(&e->thread, NULL, loop, e) != 0) st = keel_fail(KEEL_ERR_IO, "cannot start the engine thread");
  if (st) {
    for (int s = 0; s < slots; s++) keel_kvcache_free(&e->slots[s].cache);
    keel_runner_free(&e->run);
    free(e->slots), free(e);
    return st;
  }
  *out = e;
  return KEEL_OK;
}

void keel_engine_stop(keel_engine *e) {
  pthread_mutex_lock(&e->mu);
  e->stop = 1;
  pthread_cond_broadcast(&e->work);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->thread, NULL);
  for (int s = 0; s < e->n_slots; s++) {
    finish(e, s, "stop");
    keel_kvcache_free(&e->slots[s].cache);
    keel_ids_free(&e->slots[s].hist);
  }
  while (e->head) {
    keel_req *r = e->head;
    e->head = r->next;
    r->done = 1;
    req_unref(r);
  }
  keel_runner_free(&e->run);
  free(e->slots), free(e->dec), free(e);
}

int keel_engine_submit(keel_engine *e, keel_req **rs, int n) {
  pthread_mutex_lock(&e->mu);
  if (e->n_wait + n > e->queue_max + (e->n_slots - e->st.running)) { /* free slots take requests at once */
    pthread_mutex_unlock(&e->mu);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    keel_req *r = rs[i];
    r->refs++;
    r->t_submit = now_s();
    r->next = NULL;
    if (e->tail) e->tail->next = r;
    else e->head = r;
    e->tail = r;
    e->n_wait++;
    e->st.requests++;
  }
  pthread_cond_signal(&e->work);
  pthread_mutex_unlock(&e->mu);
  return 0;
}

void keel_engine_release(keel_engine *e, keel_req *r) {
  pthread_mutex_lock(&e->mu);
  if (!r->done && r->slot < 0) { /* still waiting: out of the queue now */
    for (keel_req **p = &e->head, *prev = NULL; *p; prev = *p, p = &(*p)->next)
      if (*p == r) {
        *p = r->next;
        if (e->tail == r) e->tail = prev;
        e->n_wait--;
        r->done = 1;
        req_unref(r); /* the queue's reference */
        break;
      }
  }
  if (!r->done) r->cancelled = 1; /* running: the engine drops it at its next step */
  pthread_cond_signal(&e->work);
  req_unref(r);
  pthread_mutex_unlock(&e->mu);
}

void keel_engine_wait(keel_engine *e, int timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)timeout_ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(&e->changed, &e->mu, &ts);
}

void keel_engine_lock(keel_engine *e) { pthread_mutex_lock(&e->mu); }
void keel_engine_unlock(keel_engine *e) { pthread_mutex_unlock(&e->mu); }

void keel_engine_get_stats(keel_engine *e, keel_engine_stats *s) {
  pthread_mutex_lock(&e->mu);
  *s = e->st;
  s->waiting = e->n_wait;
  pthread_mutex_unlock(&e->mu);
}

