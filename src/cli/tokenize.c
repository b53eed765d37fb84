/* keel tokenize: text on stdin -> token ids on stdout, or ids -> text with --decode. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/tokenizer.h"
#include "cli.h"

static void usage(void) {
  printf(
      "usage: keel tokenize -t tokenizer.json [options] < input\n\n"
      "  -t, --tokenizer FILE  tokenizer.json (tokenizer_config.json beside it is read too)\n"
      "      --lines           one line of ids per input line (default: the whole input)\n"
      "      --decode          read ids, write text\n"
      "      --special         recognise special-token strings in the text (default)\n"
      "      --no-special      treat special-token strings as plain text\n"
      "      --bos / --no-bos  prepend BOS (default: add_bos_token of tokenizer_config.json, else no)\n"
      "      --skip-special    with --decode: drop special tokens\n"
      "      --pieces          print one token a line: id, tab, its text (escaped)\n");
}

static void print_pieces(const keel_tokenizer *tok, const keel_ids *ids) {
  for (size_t i = 0; i < ids->n; i++) {
    int32_t id = ids->v[i];
    printf("%d\t", id);
    for (uint32_t k = 0; k < tok->raw_len[id]; k++) {
      unsigned char c = tok->raw[id][k];
      if (c == '\n') printf("\\n");
      else if (c == '\r') printf("\\r");
      else if (c == '\t') printf("\\t");
      else if (c < 32 || c == 127) printf("\\x%02x", c);
      else putchar(c);
    }
    putchar('\n');
  }
}

static void print_ids(const keel_ids *ids) {
  for (size_t i = 0; i < ids->n; i++) {
    if (i) putchar(' ');
    printf("%d", ids->v[i]);
  }
  putchar('\n');
}

/* Parses whitespace-separated ids from s[0..n); error names the byte offset. */
static keel_status parse_ids(const char *s, size_t n, size_t base, keel_ids *ids) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ',')) i++;
    if (i >= n) break;
    size_t start = i;
    long v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && v < (1L << 31)) v = v * 10 + (s[i++] - '0');
    if (i == start || v >= (1L << 31) || (i < n && !strchr(" \t\n\r,", s[i])))
      return keel_fail(KEEL_ERR_FORMAT, "stdin: byte %zu: expected a token id", base + start);
    keel_ids_push(ids, (int32_t)v);
  }
  return KEEL_OK;
}

int keel_cmd_tokenize(int argc, char **argv) {
  static const struct option opts[] = {
      {"tokenizer", required_argument, 0, 't'}, {"lines", no_argument, 0, 'l'},
      {"decode", no_argument, 0, 'd'},          {"special", no_argument, 0, 'S'},
      {"no-special", no_argument, 0, 'N'},      {"bos", no_argument, 0, 'b'},
      {"no-bos", no_argument, 0, 'B'},          {"skip-special", no_argument, 0, 'k'},
      {"pieces", no_argument, 0, 'p'},          {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *path = NULL;
  int lines = 0, decode = 0, special = 1, bos = -1, skip = 0, pieces = 0, c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
    switch (c) {
      case 't': path = optarg; break;
      case 'l': lines = 1; break;
      case 'd': decode = 1; break;
      case 'S': special = 1; break;
      case 'N': special = 0; break;
      case 'b': bos = 1; break;
      case 'B': bos = 0; break;
      case 'k': skip = 1; break;
      case 'p': pieces = 1; break;
      case 'h': usage(); return 0;
      default: return keel_cli_usage_error("tokenize", "bad option");
    }
  }
  if (!path) return keel_cli_usage_error("tokenize", "--tokenizer is required");
  keel_tokenizer *tok;
  keel_status st = keel_tokenizer_load(&tok, path);
  if (st) return keel_cli_error("tokenize", st);
  int flags = (special ? KEEL_TOK_SPECIAL : 0) | ((bos < 0 ? tok->add_bos : bos) ? KEEL_TOK_ADD_BOS : 0);
  size_t len;
  char *in = keel_read_stdin(&len);
  keel_ids ids = {0};
  int rc = 0;
  size_t pos = 0;
  char *out = NULL;
  size_t olen = 0, ocap = 0;
  while (pos < len || (pos == 0 && len == 0)) {
    size_t end = len;
    if (lines) {
      char *nl = memchr(in + pos, '\n', len - pos);
      end = nl ? (size_t)(nl - in) : len;
    }
    ids.n = 0;
    if (decode) {
      if ((st = parse_ids(in + pos, end - pos, pos, &ids)) ||
          (olen = 0, st = keel_tokenizer_decode(tok, ids.v, ids.n, skip ? KEEL_TOK_SKIP_SPECIAL : 0,
                                                &out, &olen, &ocap))) {
        rc = keel_cli_error("tokenize", st);
        break;
      }
      fwrite(out, 1, olen, stdout);
      if (lines) putchar('\n');
    } else {
      keel_tokenizer_encode(tok, in + pos, end - pos, flags, &ids);
      if (pieces) print_pieces(tok, &ids);
      else print_ids(&ids);
    }
    pos = end + 1;
    if (!lines || pos >= len) break;
  }
  if (fflush(stdout) != 0) {
    fprintf(stderr, "keel tokenize: writing stdout failed: %s\n", strerror(errno));
    rc = 1;
  }
  free(out);
  free(in);
  keel_ids_free(&ids);
  keel_tokenizer_free(tok);
  return rc;
}
