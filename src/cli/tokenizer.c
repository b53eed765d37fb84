/* keel tokenizer train: learn a byte-level BPE vocabulary from text files. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/bpe_train.h"
#include "../io/file.h"
#include "cli.h"

static void usage(void) {
  printf(
      "usage: keel tokenizer train --input PATH... --vocab-size N -o tokenizer.json [options]\n\n"
      "  -i, --input PATH       text file or folder (repeatable; folders are read recursively)\n"
      "  -v, --vocab-size N     total tokens: %d specials + 256 bytes + merges (default 8192)\n"
      "  -o, --output FILE      where to write tokenizer.json (tokenizer_config.json goes beside it)\n"
      "      --pretokenizer P   deepseek (default) or gpt2\n"
      "      --default-corpus   add the default English corpus (Brown)\n",
      keel_bpe_n_specials);
}

/* Feeds every file to the trainer with a progress line. */
keel_status keel_train_tokenizer(char **files, int n, int32_t vocab_size, int gpt2, const char *out,
                                 keel_bpe_result *res) {
  keel_bpe_trainer tr;
  keel_bpe_trainer_init(&tr, gpt2);
  double total = keel_files_bytes(files, n), done = 0;
  keel_progress pg;
  keel_progress_begin(&pg, "tokenizer: counting pieces", total);
  keel_status st = KEEL_OK;
  for (int i = 0; i < n && !st; i++) {
    char *text;
    size_t len;
    if ((st = keel_file_read(files[i], &text, &len))) break;
    keel_bpe_trainer_feed(&tr, text, len);
    free(text);
    done += (double)len;
    keel_progress_update(&pg, done, NULL);
  }
  if (!st) {
    char extra[64];
    snprintf(extra, sizeof extra, "%zu distinct pieces", tr.words.count);
    keel_progress_end(&pg, done, extra);
    double t0 = keel_now();
    st = keel_bpe_trainer_save(&tr, vocab_size, out, res);
    if (!st)
      fprintf(stderr, "tokenizer: %d merges, vocabulary %d, in %.2fs -> %s\n", res->n_merges, res->vocab_size,
              keel_now() - t0, out);
  }
  keel_bpe_trainer_free(&tr);
  return st;
}

int keel_cmd_tokenizer(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "train") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      usage();
      return 0;
    }
    return keel_cli_usage_error("tokenizer", "expected 'train'");
  }
  static const struct option opts[] = {{"input", required_argument, 0, 'i'},
                                       {"vocab-size", required_argument, 0, 'v'},
                                       {"output", required_argument, 0, 'o'},
                                       {"pretokenizer", required_argument, 0, 'p'},
                                       {"default-corpus", no_argument, 0, 'D'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  char **inputs = keel_xcalloc((size_t)argc + 1, sizeof *inputs);
  int n_in = 0, gpt2 = 0, c, rc = 0;
  long vocab = 8192;
  const char *out = NULL;
  char *corpus = NULL;
  optind = 1;
  argc--, argv++;
  while ((c = getopt_long(argc, argv, "i:v:o:h", opts, NULL)) != -1) {
    switch (c) {
      case 'i': inputs[n_in++] = optarg; break;
      case 'v': vocab = strtol(optarg, NULL, 10); break;
      case 'o': out = optarg; break;
      case 'p':
        if (strcmp(optarg, "gpt2") == 0) gpt2 = 1;
        else if (strcmp(optarg, "deepseek") != 0) rc = keel_cli_usage_error("tokenizer", "--pretokenizer is deepseek or gpt2");
        break;
      case 'D': {
        keel_status st = keel_default_corpus(&corpus);
        if (st) rc = keel_cli_error("tokenizer", st);
        else inputs[n_in++] = corpus;
        break;
      }
      case 'h': usage(); free(inputs); free(corpus); return 0;
      default: rc = keel_cli_usage_error("tokenizer", "bad option");
    }
    if (rc) break;
  }
  if (!rc && (!n_in || !out)) rc = keel_cli_usage_error("tokenizer", "--input and --output are required");
  if (!rc && (vocab < keel_bpe_n_specials + 256 || vocab > (1 << 24)))
    rc = keel_cli_usage_error("tokenizer", "--vocab-size must be between 263 and 16777216");
  char **files = NULL;
  int n = 0;
  keel_status st;
  if (!rc && (st = keel_list_inputs(inputs, n_in, &files, &n))) rc = keel_cli_error("tokenizer", st);
  keel_bpe_result res;
  if (!rc && (st = keel_train_tokenizer(files, n, (int32_t)vocab, gpt2, out, &res))) rc = keel_cli_error("tokenizer", st);
  keel_free_list(files, n);
  free(inputs);
  free(corpus);
  return rc;
}
