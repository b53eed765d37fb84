/* data/: BPE training, token shards, the loader, corpus text. */
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "data/bpe_train.h"
#include "data/corpus.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "io/file.h"

static const char text[] =
    "the cat sat on the mat. the cat ate the rat.\n\nThe rat ran; the cat ran after the rat 12345 times.\n"
    "low lower lowest newer newest wider widest 日本語のテキスト。\n";


static void test_train(void) {
  char *p1 = check_path("t1.json"), *p2 = check_path("t2.json");
  keel_bpe_result r1, r2;
  for (int k = 0; k < 2; k++) {
    keel_bpe_trainer tr;
    keel_bpe_trainer_init(&tr, 0);
    for (int rep = 0; rep < 3; rep++) keel_bpe_trainer_feed(&tr, text, sizeof text - 1);
    CHECK(keel_bpe_trainer_save(&tr, 300, k ? p2 : p1, k ? &r2 : &r1) == KEEL_OK);
    keel_bpe_trainer_free(&tr);
  }
  CHECK(r1.vocab_size == 300 && r1.n_merges == 300 - 263);
  char *a, *b;
  size_t na, nb;
  CHECK(keel_file_read(p1, &a, &na) == KEEL_OK && keel_file_read(p2, &b, &nb) == KEEL_OK);
  CHECK(na == nb && memcmp(a, b, na) == 0); /* deterministic */
  free(a), free(b);
  keel_tokenizer *tok;
  CHECK(keel_tokenizer_load(&tok, p1) == KEEL_OK);
  if (!tok) return;
  CHECK(tok->n_vocab == 300 && tok->bos_id == 0 && tok->eos_id == 1 && tok->add_bos);
  CHECK(keel_tokenizer_token_id(tok, "\xc4\xa0the") >= 263); /* " the" was learned */
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, text, sizeof text - 1, KEEL_TOK_SPECIAL, &ids);
  CHECK(ids.n < (sizeof text - 1) / 2); /* it compresses its own training text */
  char *out = NULL;
  size_t len = 0, cap = 0;
  CHECK(keel_tokenizer_decode(tok, ids.v, ids.n, 0, &out, &len, &cap) == KEEL_OK);
  CHECK(len == sizeof text - 1 && memcmp(out, text, len) == 0);
  free(out);
  keel_ids_free(&ids);
  keel_tokenizer_free(tok);
  keel_bpe_trainer tr;
  keel_bpe_trainer_init(&tr, 0);
  CHECK(keel_bpe_trainer_save(&tr, 100, p1, NULL) == KEEL_ERR_ARG);
  keel_bpe_trainer_free(&tr);
}

static void write_shard(const char *path, uint32_t vocab, int n) {
  keel_shard_writer w;
  CHECK(keel_shard_writer_open(&w, path, vocab) == KEEL_OK);
  for (int i = 0; i < n; i++) {
    int32_t id = (int32_t)((uint32_t)i * 7919u % vocab);
    CHECK(keel_shard_writer_put(&w, &id, 1) == KEEL_OK);
  }
  CHECK(keel_shard_writer_close(&w) == KEEL_OK);
}

static void corrupt(const char *path, long off, int byte) {
  FILE *fp = fopen(path, "r+b");
  fseek(fp, off, SEEK_SET);
  fputc(byte, fp);
  fclose(fp);
}

static void test_shard(void) {
  char *p = check_path("s.bin"), *q = check_path("big.bin");
  write_shard(p, 1000, 5001);
  write_shard(q, 100000, 300);
  keel_shard s;
  CHECK(keel_shard_open(&s, p) == KEEL_OK);
  CHECK(s.h.n_tokens == 5001 && s.h.token_bytes == 2 && s.h.vocab_size == 1000);
  CHECK(keel_shard_token(&s, 10) == 79190 % 1000);
  keel_shard_close(&s);
  CHECK(keel_shard_open(&s, q) == KEEL_OK && s.h.token_bytes == 4 && keel_shard_token(&s, 299) == 299u * 7919u % 100000u);
  keel_shard_close(&s);
  keel_shard_writer w;
  CHECK(keel_shard_writer_open(&w, check_path("x.bin"), 10) == KEEL_OK);
  int32_t bad = 10;
  CHECK(keel_shard_writer_put(&w, &bad, 1) == KEEL_ERR_ARG);
  keel_shard_writer_abort(&w);
  CHECK(!keel_path_exists(check_path("x.bin")));

  /* corruptions are caught with the file name and offset */
  corrupt(q, 100, 0x55);
  CHECK(keel_shard_open(&s, q) == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "checksum"));
  corrupt(q, 0, 'X');
  CHECK(keel_shard_open(&s, q) == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "byte 0"));
  CHECK(truncate(p, 1000) == 0);
  CHECK(keel_shard_open(&s, p) == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "byte 16"));
  uint8_t hdr[KEEL_SHARD_HEADER];
  keel_shard_header h = {1, 3, 0, 0, 5};
  keel_shard_header_encode(hdr, &h);
  CHECK(keel_shard_header_decode(&h, hdr, sizeof hdr, "h") == KEEL_ERR_FORMAT && strstr(keel_errmsg(), "byte 12"));
}

static void test_loader(void) {
  char *p = check_path("l.bin");
  write_shard(p, 1000, 1001);
  keel_shard s;
  if (keel_shard_open(&s, p)) {
    CHECK(0);
    return;
  }
  keel_loader a, b;
  enum { B = 3, T = 10 };
  int32_t xa[B * T], ya[B * T], xb[B * T], yb[B * T];
  CHECK(keel_loader_init(&a, &s, B, T, 5) == KEEL_OK && a.n_windows == 100);
  int seen[100] = {0};
  keel_loader_state saved = {0};
  for (int step = 0; step < 80; step++) {
    if (step == 50) saved = a.state;
    keel_loader_next(&a, xa, ya);
    for (int bb = 0; bb < B; bb++) {
      for (int t = 0; t + 1 < T; t++) CHECK(ya[bb * T + t] == xa[bb * T + t + 1]); /* targets are next tokens */
    }
    if (step < 33)
      for (int bb = 0; bb < B; bb++) {
        /* recover the window index from its first token: tokens are i*7919 mod 1000 */
        for (int w = 0; w < 100; w++)
          if ((int32_t)((uint32_t)(w * T) * 7919u % 1000u) == xa[bb * T] &&
              (int32_t)((uint32_t)(w * T + 1) * 7919u % 1000u) == xa[bb * T + 1])
            seen[w]++;
      }
  }
  int distinct = 0;
  for (int w = 0; w < 100; w++) distinct += seen[w] > 0;
  CHECK_MSG(distinct == 99, "%d distinct windows in the first 99 of an epoch", distinct); /* no repeats within an epoch */
  CHECK(a.state.epoch == 2 && a.state.position == 40);
  /* a restored loader replays exactly */
  CHECK(keel_loader_init(&b, &s, B, T, 5) == KEEL_OK && keel_loader_restore(&b, &saved) == KEEL_OK);
  keel_loader_restore(&a, &saved);
  for (int step = 0; step < 40; step++) {
    keel_loader_next(&a, xa, ya);
    keel_loader_next(&b, xb, yb);
    CHECK(memcmp(xa, xb, sizeof xa) == 0 && memcmp(ya, yb, sizeof ya) == 0);
  }
  keel_loader_state bad = {5, 0, 101};
  CHECK(keel_loader_restore(&b, &bad) == KEEL_ERR_FORMAT);
  keel_loader c;
  CHECK(keel_loader_init(&c, &s, B, 1001, 5) == KEEL_ERR_ARG);
  keel_loader_free(&a);
  keel_loader_free(&b);
  keel_shard_close(&s);
}

static int n_docs;
static char docs[8][64];
static void on_doc(const char *d, size_t n, void *ctx) {
  (void)ctx;
  if (n_docs < 8) snprintf(docs[n_docs], sizeof docs[0], "%.*s", (int)n, d);
  n_docs++;
}

static void test_corpus(void) {
  const char *brown = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, he/pps said/vbd ./.\n\n\n"
                      "\tIt's/pps+bez over/rp ./.\n";
  size_t n;
  char *t = keel_brown_to_text(brown, strlen(brown), &n);
  CHECK_MSG(strcmp(t, "The jury said \"no evidence\", he said.\n\nIt's over.\n\n") == 0, "%s", t);
  free(t);
  const char *s = "a\nb\n\n\nc\n  \nd";
  keel_split_documents(s, strlen(s), on_doc, NULL);
  CHECK(n_docs == 3 && strcmp(docs[0], "a\nb\n") == 0 && strcmp(docs[1], "c\n") == 0 && strcmp(docs[2], "d") == 0);
}

int main(void) {
  test_train();
  test_shard();
  test_loader();
  test_corpus();
  return check_done("test_data");
}
