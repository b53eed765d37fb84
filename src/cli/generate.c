/* keel generate, keel chat and keel eval. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/loader.h"
#include "../data/tokenizer.h"
#include "../infer/sampler.h"
#include "../infer/session.h"
#include "../model/weights.h"
#include "cli.h"

static const char USER[] = "<\xef\xbd\x9cUser\xef\xbd\x9c>", ASSISTANT[] = "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>";

typedef struct gen_ctx {
  keel_imodel m;
  keel_tokenizer *tok;
  keel_session s;
  keel_sampler smp;
  keel_ids hist;   /* every token in the context */
  char *buf;
  size_t cap;
} gen_ctx;

static keel_status open_model(gen_ctx *g, const char *dir, int ctx, int wtype, const keel_sampler_opts *so) {
  memset(g, 0, sizeof *g);
  keel_status st = keel_imodel_load(&g->m, dir, wtype, keel_backend_cpu());
  if (st) return st;
  size_t n = strlen(dir) + 32;
  char *tp = keel_xmalloc(n);
  snprintf(tp, n, "%s/tokenizer.json", dir);
  st = keel_tokenizer_load(&g->tok, tp);
  free(tp);
  if (!st && g->tok->n_vocab > g->m.c.vocab_size)
    st = keel_fail(KEEL_ERR_FORMAT, "%s: the tokenizer has %d ids, more than vocab_size %d", dir, g->tok->n_vocab,
                   g->m.c.vocab_size);
  if (!st) st = keel_session_init(&g->s, &g->m, ctx);
  if (!st) keel_sampler_init(&g->smp, so, g->m.c.vocab_size);
  return st;
}

static void close_model(gen_ctx *g) {
  keel_sampler_free(&g->smp);
  keel_session_free(&g->s);
  keel_tokenizer_free(g->tok);
  keel_imodel_free(&g->m);
  keel_ids_free(&g->hist);
  free(g->buf);
}

/* Feeds ids into the session; then samples up to n tokens, writing text to out as it comes.
 * Returns tokens generated; *prompt_s and *gen_s get the times. */
static keel_status run(gen_ctx *g, const keel_ids *prompt, int n, FILE *out, int *generated, double *prompt_s,
                       double *gen_s) {
  keel_status st = KEEL_OK;
  double t0 = keel_now();
  st = keel_session_feed(&g->s, prompt->v, (int)prompt->n); /* the prompt in chunks on the GEMM path */
  for (size_t i = 0; i < prompt->n && !st; i++) keel_ids_push(&g->hist, prompt->v[i]);
  *prompt_s = keel_now() - t0;
  t0 = keel_now();
  *generated = 0;
  for (int k = 0; k < n && !st; k++) {
    int32_t t = keel_sampler_next(&g->smp, g->s.logits, g->tok->n_vocab, g->hist.v, (int)g->hist.n);
    keel_ids_push(&g->hist, t);
    (*generated)++;
    if (t == g->tok->eos_id) break;
    size_t len = 0;
    if ((st = keel_tokenizer_decode(g->tok, &t, 1, KEEL_TOK_SKIP_SPECIAL, &g->buf, &len, &g->cap))) break;
    fwrite(g->buf, 1, len, out);
    fflush(out);
    if (g->s.len >= g->s.max_len) break;
    st = keel_session_step(&g->s, t);
  }
  *gen_s = keel_now() - t0;
  return st;
}

typedef struct gen_args {
  const char *model, *prompt;
  int n, ctx, chat, threads, wtype;
  keel_sampler_opts so;
} gen_args;

static void usage_gen(const char *cmd) {
  keel_sampler_opts d;
  keel_sampler_defaults(&d);
  printf("usage: keel %s -m DIR %s[options]\n\n"
         "  -m, --model DIR          model dir (config.json, model.safetensors, tokenizer.json)\n"
         "  -p, --prompt TEXT        the prompt%s\n"
         "  -n, --n-predict N        tokens to generate (default 128)\n"
         "  -c, --ctx-size N         context length (default 512)\n"
         "      --temp X             temperature, 0 for greedy (default %g)\n"
         "      --top-k N            (default %d, 0 off)\n"
         "      --top-p X            (default %g, 1 off)\n"
         "      --min-p X            (default %g, 0 off)\n"
         "      --repeat-penalty X   (default %g, 1 off)\n"
         "  -s, --seed N             sampling seed (default %llu)\n"
         "  -t, --threads N          threads (default: all cores)\n"
         "      --chat               wrap the prompt in the DeepSeek chat template\n"
         "      --dtype T            weights as f32, bf16, int8 or fp8 (default: as stored)\n",
         cmd, strcmp(cmd, "generate") == 0 ? "-p TEXT " : "", strcmp(cmd, "generate") == 0 ? "" : " (chat: first turn)",
         (double)d.temperature, d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repeat_penalty,
         (unsigned long long)d.seed);
}

static int parse_gen(int argc, char **argv, const char *cmd, gen_args *a) {
  enum { O_TEMP = 1000, O_TOPK, O_TOPP, O_MINP, O_REP, O_CHAT, O_DTYPE };
  static const struct option opts[] = {
      {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
      {"n-predict", required_argument, 0, 'n'}, {"ctx-size", required_argument, 0, 'c'},
      {"temp", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
      {"top-p", required_argument, 0, O_TOPP}, {"min-p", required_argument, 0, O_MINP},
      {"repeat-penalty", required_argument, 0, O_REP}, {"seed", required_argument, 0, 's'},
      {"threads", required_argument, 0, 't'}, {"chat", no_argument, 0, O_CHAT},
      {"dtype", required_argument, 0, O_DTYPE}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  memset(a, 0, sizeof *a);
  a->n = 128, a->ctx = 512, a->wtype = -1;
  keel_sampler_defaults(&a->so);
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:p:n:c:s:t:h", opts, NULL)) != -1) {
    switch (c) {
      case 'm': a->model = optarg; break;
      case 'p': a->prompt = optarg; break;
      case 'n': a->n = atoi(optarg); break;
      case 'c': a->ctx = atoi(optarg); break;
      case O_TEMP: a->so.temperature = (float)atof(optarg); break;
      case O_TOPK: a->so.top_k = atoi(optarg); break;
      case O_TOPP: a->so.top_p = (float)atof(optarg); break;
      case O_MINP: a->so.min_p = (float)atof(optarg); break;
      case O_REP: a->so.repeat_penalty = (float)atof(optarg); break;
      case 's': a->so.seed = strtoull(optarg, NULL, 10); break;
      case 't': a->threads = atoi(optarg); break;
      case O_CHAT: a->chat = 1; break;
      case O_DTYPE:
        if ((a->wtype = keel_wtype_parse(optarg)) < 0) return keel_cli_usage_error(cmd, "--dtype: f32, bf16, int8 or fp8");
        break;
      case 'h': usage_gen(cmd); return 0;
      default: return keel_cli_usage_error(cmd, "bad option");
    }
  }
  if (!a->model) return keel_cli_usage_error(cmd, "--model is required");
  if (a->n < 0 || a->ctx < 1 || a->so.temperature < 0 || a->so.top_p <= 0 || a->so.top_p > 1 || a->so.min_p < 0 ||
      a->so.min_p > 1 || a->so.repeat_penalty <= 0 || a->so.top_k < 0)
    return keel_cli_usage_error(cmd, "a sampling option is out of range");
  keel_backend_set_threads(a->threads);
  return -1;
}

static void encode_turn(gen_ctx *g, const char *text, int first, int chat, keel_ids *ids) {
  ids->n = 0;
  if (!chat) {
    keel_tokenizer_encode(g->tok, text, strlen(text), KEEL_TOK_SPECIAL | (g->tok->add_bos ? KEEL_TOK_ADD_BOS : 0), ids);
    return;
  }
  /* DeepSeek template: {bos}<｜User｜>text<｜Assistant｜>; earlier turns end with eos */
  size_t n = strlen(text) + 64;
  char *s = keel_xmalloc(n);
  snprintf(s, n, "%s%s%s", USER, text, ASSISTANT);
  keel_tokenizer_encode(g->tok, s, strlen(s), KEEL_TOK_SPECIAL | (first ? KEEL_TOK_ADD_BOS : 0), ids);
  free(s);
}

int keel_cmd_generate(int argc, char **argv) {
  gen_args a;
  int rc = parse_gen(argc, argv, "generate", &a);
  if (rc >= 0) return rc;
  if (!a.prompt) return keel_cli_usage_error("generate", "--prompt is required");
  gen_ctx g;
  keel_status st = open_model(&g, a.model, a.ctx, a.wtype, &a.so);
  if (st) {
    close_model(&g);
    return keel_cli_error("generate", st);
  }
  keel_ids ids = {0};
  encode_turn(&g, a.prompt, 1, a.chat, &ids);
  if ((int)ids.n >= a.ctx) {
    keel_ids_free(&ids);
    close_model(&g);
    return keel_cli_usage_error("generate", "the prompt is longer than the context (--ctx-size)");
  }
  if (!a.chat) fwrite(a.prompt, 1, strlen(a.prompt), stdout);
  int gen;
  double ps, gs;
  st = run(&g, &ids, a.n, stdout, &gen, &ps, &gs);
  printf("\n");
  fflush(stdout);
  fprintf(stderr, "prompt: %zu tokens, %.1f tokens/s; decode: %d tokens, %.1f tokens/s\n", ids.n,
          ps > 0 ? ids.n / ps : 0.0, gen, gs > 0 ? gen / gs : 0.0);
  keel_ids_free(&ids);
  close_model(&g);
  return st ? keel_cli_error("generate", st) : 0;
}

int keel_cmd_chat(int argc, char **argv) {
  gen_args a;
  int rc = parse_gen(argc, argv, "chat", &a);
  if (rc >= 0) return rc;
  gen_ctx g;
  keel_status st = open_model(&g, a.model, a.ctx, a.wtype, &a.so);
  if (st) {
    close_model(&g);
    return keel_cli_error("chat", st);
  }
  keel_ids ids = {0};
  char line[8192];
  int first = 1;
  fprintf(stderr, "keel chat: type a message, an empty line or Ctrl-D to end\n");
  for (;;) {
    const char *msg = NULL;
    if (first && a.prompt) msg = a.prompt;
    else {
      fprintf(stderr, "> ");
      if (!fgets(line, sizeof line, stdin)) break;
      line[strcspn(line, "\n")] = 0;
      if (!line[0]) break;
      msg = line;
    }
    if (!first) { /* close the previous assistant turn */
      keel_ids eos = {0};
      keel_ids_push(&eos, g.tok->eos_id);
      if (g.hist.n && g.hist.v[g.hist.n - 1] != g.tok->eos_id) {
        int gen;
        double ps, gs;
        run(&g, &eos, 0, stdout, &gen, &ps, &gs);
      }
      keel_ids_free(&eos);
    }
    encode_turn(&g, msg, first, 1, &ids);
    if (g.s.len + (int)ids.n >= g.s.max_len) {
      fprintf(stderr, "keel chat: the context is full\n");
      break;
    }
    int gen;
    double ps, gs;
    if ((st = run(&g, &ids, a.n, stdout, &gen, &ps, &gs))) break;
    printf("\n");
    first = 0;
  }
  keel_ids_free(&ids);
  close_model(&g);
  return st ? keel_cli_error("chat", st) : 0;
}

static double row_loss(const float *l, int V, int target) {
  double mx = l[0], sum = 0;
  for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
  for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
  return mx + log(sum) - l[target];
}

/* Validation loss through the inference path (typed weights, latent cache, prefill in chunks) for the
 * stored weights and for them converted to wtype, with how far the logits move. */
static keel_status eval_typed(const char *model, keel_shard *sh, int batches, int B, int T, int wtype) {
  keel_imodel im[2];
  keel_runner r[2];
  keel_kvcache kc[2];
  memset(im, 0, sizeof im), memset(r, 0, sizeof r), memset(kc, 0, sizeof kc);
  keel_loader l;
  keel_status st = keel_imodel_load(&im[0], model, -1, keel_backend_cpu());
  if (!st) st = keel_imodel_load(&im[1], model, wtype, keel_backend_cpu());
  if (!st && sh->h.vocab_size > (uint32_t)im[0].c.vocab_size)
    st = keel_fail(KEEL_ERR_ARG, "token ids exceed the model's vocab_size");
  int cap = T < 64 ? T : 64, V = im[0].c.vocab_size;
  for (int k = 0; k < 2 && !st; k++) {
    st = keel_runner_init(&r[k], &im[k], cap, T);
    if (!st) st = keel_kvcache_init(&kc[k], &im[k].c, T);
  }
  if (!st && !(st = keel_loader_init(&l, sh, B, T, 12345))) {
    int32_t *x = keel_xmalloc((size_t)B * T * sizeof *x), *y = keel_xmalloc((size_t)B * T * sizeof *y);
    int pos[64];
    keel_kvcache *cs[2][64];
    double loss[2] = {0, 0}, worst = 0, mean = 0;
    long rows = 0;
    for (int i = 0; i < cap; i++) cs[0][i] = &kc[0], cs[1][i] = &kc[1];
    for (int bi = 0; bi < batches && !st; bi++) {
      keel_loader_next(&l, x, y);
      for (int b = 0; b < B && !st; b++) {
        kc[0].len = kc[1].len = 0;
        for (int t0 = 0; t0 < T && !st; t0 += cap) {
          int n = T - t0 < cap ? T - t0 : cap;
          for (int i = 0; i < n; i++) pos[i] = t0 + i;
          for (int k = 0; k < 2 && !st; k++) st = keel_runner_forward(&r[k], n, x + (size_t)b * T + t0, cs[k], pos, NULL);
          for (int i = 0; i < n && !st; i++, rows++) {
            const float *a = r[0].logits + (size_t)i * V, *q = r[1].logits + (size_t)i * V;
            double mx = 0, d = 0, sum = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, fabs(a[v])), d = fmax(d, fabs(a[v] - q[v])), sum += fabs(a[v] - q[v]);
            worst = fmax(worst, d / mx), mean += sum / V;
            loss[0] += row_loss(a, V, y[(size_t)b * T + t0 + i]);
            loss[1] += row_loss(q, V, y[(size_t)b * T + t0 + i]);
          }
        }
      }
    }
    if (!st) {
      double l0 = loss[0] / rows, l1 = loss[1] / rows;
      printf("stored weights (%s): val loss %.4f, perplexity %.2f\n", keel_wtype_name(im[0].wtype), l0, exp(l0));
      printf("%s weights: val loss %.4f, perplexity %.2f (%+.3f%%), %.1f MB of weights instead of %.1f\n",
             keel_wtype_name((keel_wtype)wtype), l1, exp(l1), 100 * (exp(l1) / exp(l0) - 1), im[1].weight_bytes / 1e6,
             im[0].weight_bytes / 1e6);
      printf("logits: worst max|diff|/max|logit| %.3g, mean |diff| %.3g over %ld positions\n", worst, mean / rows,
             rows);
    }
    free(x), free(y);
    keel_loader_free(&l);
  }
  for (int k = 0; k < 2; k++) keel_runner_free(&r[k]), keel_kvcache_free(&kc[k]), keel_imodel_free(&im[k]);
  return st;
}

/* keel eval: validation loss of a model on a prepared folder, or logits of given ids. */
int keel_cmd_eval(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
                                       {"batches", required_argument, 0, 'b'}, {"batch", required_argument, 0, 'B'},
                                       {"seq", required_argument, 0, 'S'}, {"ids", required_argument, 0, 'i'},
                                       {"dump-logits", required_argument, 0, 'o'}, {"mtp", no_argument, 0, 'M'},
                                       {"threads", required_argument, 0, 't'}, {"dtype", required_argument, 0, 'q'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *model = NULL, *data = NULL, *ids_s = NULL, *dump = NULL;
  int batches = 20, B = 4, T = 256, mtp = 0, c, wtype = -1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "m:d:t:h", opts, NULL)) != -1) {
    switch (c) {
      case 'm': model = optarg; break;
      case 'd': data = optarg; break;
      case 'b': batches = atoi(optarg); break;
      case 'B': B = atoi(optarg); break;
      case 'S': T = atoi(optarg); break;
      case 'i': ids_s = optarg; break;
      case 'o': dump = optarg; break;
      case 'M': mtp = 1; break;
      case 't': keel_backend_set_threads(atoi(optarg)); break;
      case 'q':
        if ((wtype = keel_wtype_parse(optarg)) < 0) return keel_cli_usage_error("eval", "--dtype: f32, bf16, int8 or fp8");
        break;
      case 'h':
        printf("usage: keel eval -m DIR --data DIR [--batches N (20)] [--batch B (4)] [--seq T (256)] [--dtype T]\n"
               "       keel eval -m DIR --ids \"1 2 3\" --dump-logits FILE [--mtp]\n\n"
               "The first prints validation loss and perplexity; the second writes float32 little-endian\n"
               "logits (T, vocab) of the main head, then (T-k, vocab) of each MTP depth k with --mtp.\n"
               "With --dtype f32|bf16|int8|fp8 the loss is computed on the inference path for the stored\n"
               "weights and for them converted, with how far the logits move.\n\n"
               "  -t, --threads N          threads (default: all cores)\n");
        return 0;
      default: return keel_cli_usage_error("eval", "bad option");
    }
  }
  if (!model || (!data == !ids_s)) return keel_cli_usage_error("eval", "--model and one of --data or --ids are required");
  if (batches < 1 || B < 1 || T < 1) return keel_cli_usage_error("eval", "--batches, --batch and --seq must be >= 1");
  if (wtype >= 0) {
    if (!data) return keel_cli_usage_error("eval", "--dtype goes with --data");
    char *vp = keel_path_join(data, "val.bin");
    keel_shard sh;
    keel_status st = keel_shard_open(&sh, vp);
    if (!st) {
      st = eval_typed(model, &sh, batches, B, T, wtype);
      keel_shard_close(&sh);
    }
    if (st) st = keel_fail_prefix(st, vp);
    free(vp);
    return st ? keel_cli_error("eval", st) : 0;
  }
  keel_model m;
  keel_status st = keel_model_load(&m, model, keel_backend_cpu());
  if (st) return keel_cli_error("eval", st);
  int rc = 0;
  if (data) {
    size_t n = strlen(data) + 16;
    char *vp = keel_xmalloc(n);
    snprintf(vp, n, "%s/val.bin", data);
    keel_shard sh;
    keel_loader l;
    if ((st = keel_shard_open(&sh, vp))) rc = keel_cli_error("eval", st);
    else {
      if (sh.h.vocab_size > (uint32_t)m.c.vocab_size) {
        st = keel_fail(KEEL_ERR_ARG, "%s: token ids exceed the model's vocab_size", vp);
      } else if (!(st = keel_loader_init(&l, &sh, B, T, 12345))) {
        int32_t *x = keel_xmalloc((size_t)B * T * sizeof *x), *y = keel_xmalloc((size_t)B * T * sizeof *y);
        keel_model_reserve(&m, B, T);
        double sum = 0;
        for (int i = 0; i < batches; i++) {
          keel_loader_next(&l, x, y);
          keel_model_forward(&m, x, y, B, T, 0);
          sum += m.lm_loss;
        }
        printf("val loss %.4f, perplexity %.2f (%d batches of %d x %d tokens)\n", sum / batches, exp(sum / batches),
               batches, B, T);
        free(x), free(y);
        keel_loader_free(&l);
      }
      if (st) rc = keel_cli_error("eval", keel_fail_prefix(st, vp));
      keel_shard_close(&sh);
    }
    free(vp);
  } else {
    keel_ids ids = {0};
    for (const char *p = ids_s; *p;) {
      char *end;
      long v = strtol(p, &end, 10);
      if (end == p) {
        if (*p == ' ' || *p == ',') { p++; continue; }
        st = keel_fail(KEEL_ERR_ARG, "--ids: byte %ld: expected a token id", (long)(p - ids_s));
        break;
      }
      if (v < 0 || v >= m.c.vocab_size) {
        st = keel_fail(KEEL_ERR_ARG, "--ids: token %ld is outside vocab_size %d", v, m.c.vocab_size);
        break;
      }
      keel_ids_push(&ids, (int32_t)v);
      p = end;
    }
    if (!st && ids.n == 0) st = keel_fail(KEEL_ERR_ARG, "--ids is empty");
    FILE *fp = NULL;
    if (!st && !(fp = fopen(dump, "wb"))) st = keel_fail(KEEL_ERR_IO, "%s: cannot create", dump);
    if (!st) {
      int Tn = (int)ids.n, V = m.c.vocab_size;
      keel_model_reserve(&m, 1, Tn);
      keel_model_forward(&m, ids.v, NULL, 1, Tn, 0);
      fwrite(m.logits, sizeof(float), (size_t)Tn * V, fp);
      if (mtp) { /* targets only select positions; run the training forward and recompute each depth's logits */
        int32_t *y = keel_xmalloc((size_t)Tn * sizeof *y);
        for (int t = 0; t < Tn; t++) y[t] = 0;
        keel_model_forward(&m, ids.v, y, 1, Tn, 0);
        for (int k = 1; k <= m.c.num_nextn_predict_layers && Tn - k > 0; k++) {
          keel_layer_acts *A = &m.acts[m.c.num_hidden_layers + k - 1];
          m.be->matmul(m.logits, A->z, m.w.head, Tn - k, m.c.hidden_size, V, 0);
          fwrite(m.logits, sizeof(float), (size_t)(Tn - k) * V, fp);
        }
        free(y);
      }
      if (fclose(fp) != 0) st = keel_fail(KEEL_ERR_IO, "%s: write failed", dump);
      else fprintf(stderr, "keel eval: wrote logits of %d positions to %s\n", Tn, dump);
    }
    keel_ids_free(&ids);
    if (st) rc = keel_cli_error("eval", st);
  }
  keel_model_free(&m);
  return rc;
}
