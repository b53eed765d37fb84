/* keel inspect: what is in a safetensors file, a token shard, a tokenizer.json,
 * or a folder of them. keel features: what this build has. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "../data/shard.h"
#include "../data/tokenizer.h"
#include "../io/file.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../model/params.h"
#include "cli.h"

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static keel_status inspect_safetensors(const char *path) {
  keel_st_file f;
  keel_status st = keel_st_open(&f, path);
  if (st) return st;
  int64_t params = 0;
  printf("%s: safetensors, %d tensors, %zu bytes\n", path, f.n, f.map.size);
  for (int i = 0; i < f.n_meta; i++) printf("  metadata %s = %s\n", f.meta_keys[i], f.meta_values[i]);
  for (int i = 0; i < f.n; i++) {
    const keel_st_tensor *t = &f.tensors[i];
    printf("  %-48s %-8s [", t->name, keel_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
    printf("]\n");
    params += keel_st_numel(t);
  }
  printf("  %lld elements in all\n", (long long)params);
  keel_st_close(&f);
  return KEEL_OK;
}

typedef struct count {
  uint32_t id;
  uint64_t n;
} count;

static int by_count(const void *a, const void *b) {
  const count *x = a, *y = b;
  return x->n != y->n ? (x->n < y->n) - (x->n > y->n) : (x->id > y->id) - (x->id < y->id);
}

static keel_status inspect_shard(const char *path, const keel_tokenizer *tok) {
  keel_shard s;
  keel_status st = keel_shard_open(&s, path);
  if (st) return st;
  printf("%s: token shard v%u, %llu tokens of %u bytes, vocabulary %u, xxh3 %016llx (verified)\n", path, s.h.version,
         (unsigned long long)s.h.n_tokens, s.h.token_bytes, s.h.vocab_size, (unsigned long long)s.h.checksum);
  count *c = keel_xcalloc(s.h.vocab_size, sizeof *c);
  for (uint32_t i = 0; i < s.h.vocab_size; i++) c[i].id = i;
  for (uint64_t i = 0; i < s.h.n_tokens; i++) c[keel_shard_token(&s, i)].n++;
  uint32_t used = 0;
  for (uint32_t i = 0; i < s.h.vocab_size; i++) used += c[i].n > 0;
  qsort(c, s.h.vocab_size, sizeof *c, by_count);
  printf("  %u distinct tokens; most frequent:\n", used);
  for (uint32_t i = 0; i < 10 && i < s.h.vocab_size && c[i].n; i++) {
    printf("  %8u %6.2f%%", c[i].id, 100.0 * (double)c[i].n / (double)s.h.n_tokens);
    if (tok && (int32_t)c[i].id < tok->n_vocab && tok->raw[c[i].id]) {
      printf("  \"");
      for (uint32_t k = 0; k < tok->raw_len[c[i].id]; k++) {
        unsigned char ch = tok->raw[c[i].id][k];
        if (ch == '\n') printf("\\n");
        else if (ch < 32) printf("\\x%02x", ch);
        else putchar(ch);
      }
      printf("\"");
    }
    printf("\n");
  }
  free(c);
  keel_shard_close(&s);
  return KEEL_OK;
}

static keel_status inspect_tokenizer(const char *path, keel_tokenizer **keep) {
  keel_tokenizer *tok;
  double t0 = keel_now();
  keel_status st = keel_tokenizer_load(&tok, path);
  if (st) return st;
  static const char *const names[] = {"digits (\\p{N}{1,3})", "CJK runs", "DeepSeek-V3 split", "GPT-2 split"};
  printf("%s: byte-level BPE, %d ids, %zu vocabulary entries, %d merges, %d added tokens (loaded in %.3fs)\n", path,
         tok->n_vocab, tok->vocab.count, tok->n_merges, tok->n_added, keel_now() - t0);
  printf("  pre-tokenizer:");
  for (int i = 0; i < tok->n_pretok; i++) printf("%s %s", i ? "," : "", names[tok->pretok[i]]);
  printf("%s\n", tok->n_pretok ? "" : " none");
  printf("  bos %d, eos %d, add_bos %s\n", tok->bos_id, tok->eos_id, tok->add_bos ? "yes" : "no");
  if (keep) *keep = tok;
  else keel_tokenizer_free(tok);
  return KEEL_OK;
}

static keel_status inspect_config(const char *path) {
  keel_config c;
  keel_status st = keel_config_load(&c, path);
  if (st) return st;
  keel_param_table tab;
  keel_params_table(&tab, &c);
  size_t total, active;
  keel_params_count(&c, &tab, &total, &active);
  static const char *const sf[] = {"sigmoid", "softmax"}, *const tm[] = {"noaux_tc", "greedy", "group_limited_greedy"};
  printf("%s: DeepSeek-V3-style model, %zu parameters (%zu active per token, MTP excluded)\n", path, total, active);
  printf("  vocab %d, d %d, %d layers (%d dense first), %d heads, q-LoRA %d, kv latent %d, head dims nope %d rope %d v %d\n",
         c.vocab_size, c.hidden_size, c.num_hidden_layers, c.first_k_dense_replace, c.num_attention_heads, c.q_lora_rank,
         c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim);
  if (c.n_routed_experts)
    printf("  MoE: %d routed experts (top %d, %d groups keep %d, %s, %s), %d shared, width %d\n", c.n_routed_experts,
           c.num_experts_per_tok, c.n_group, c.topk_group, sf[c.scoring_func], tm[c.topk_method], c.n_shared_experts,
           c.moe_intermediate_size);
  printf("  dense FFN width %d, MTP depth %d, RoPE theta %g%s\n", c.intermediate_size, c.num_nextn_predict_layers,
         c.rope_theta, c.yarn ? " with YaRN" : "");
  keel_params_table_free(&tab);
  return KEEL_OK;
}

static keel_status inspect_path(const char *path, keel_tokenizer **tok) {
  if (ends_with(path, ".safetensors")) return inspect_safetensors(path);
  if (ends_with(path, ".json")) { /* a model config has hidden_size, a tokenizer a model */
    json_t *j;
    keel_status st = keel_json_load_file(&j, path);
    if (st) return st;
    int is_config = json_object_get(j, "hidden_size") != NULL;
    json_decref(j);
    return is_config ? inspect_config(path) : inspect_tokenizer(path, tok);
  }
  keel_mapped m;
  keel_status st = keel_file_map(&m, path);
  if (st) return st;
  int shard = m.size >= 8 && memcmp(m.data, "KEELTOK", 8) == 0;
  keel_file_unmap(&m);
  if (shard) return inspect_shard(path, tok ? *tok : NULL);
  return keel_fail(KEEL_ERR_FORMAT, "%s: not a safetensors file, token shard or tokenizer.json", path);
}

int keel_cmd_inspect(int argc, char **argv) {
  if (argc < 2) return keel_cli_usage_error("inspect", "expected a file or folder");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    printf("usage: keel inspect PATH...\n\n  PATH: a .safetensors file, a token shard (.bin), a tokenizer.json,\n"
           "        a config.json, a model dir, or a folder written by keel prepare\n");
    return 0;
  }
  int rc = 0;
  for (int i = 1; i < argc && !rc; i++) {
    keel_tokenizer *tok = NULL;
    keel_status st = KEEL_OK;
    if (keel_is_dir(argv[i])) {
      static const char *const files[] = {"config.json", "tokenizer.json", "train.bin", "val.bin", "model.safetensors"};
      for (size_t k = 0; k < sizeof files / sizeof *files && !st; k++) {
        size_t n = strlen(argv[i]) + strlen(files[k]) + 2;
        char *p = keel_xmalloc(n);
        snprintf(p, n, "%s/%s", argv[i], files[k]);
        if (keel_path_exists(p)) st = inspect_path(p, &tok);
        free(p);
      }
    } else {
      st = inspect_path(argv[i], NULL);
    }
    keel_tokenizer_free(tok);
    if (st) rc = keel_cli_error("inspect", st);
  }
  return rc;
}

int keel_cmd_features(int argc, char **argv) {
  static const struct {
    const char *name, *why;
    int have;
  } f[] = {
      {"jansson " JANSSON_VERSION, "JSON: tokenizer.json, safetensors headers, manifests", 1},
      {"xxhash", "xxh3 checksums of shards and checkpoints", 1},
      {"libmicrohttpd", "keel serve: the HTTP server", KEEL_HAVE_MHD},
      {"MPI", "multi-process training (not yet used)", KEEL_HAVE_MPI},
      {"OpenCL", "OpenCL backend (not yet used)", KEEL_HAVE_OPENCL},
      {"CUDA", "CUDA backend (not yet used)", KEEL_HAVE_CUDA},
      {"zstd", "compressed shards (not yet used)", KEEL_HAVE_ZSTD},
      {"OpenBLAS", "GEMM peer in benchmarks (not yet used)", KEEL_HAVE_OPENBLAS},
  };
  for (size_t i = 0; i < sizeof f / sizeof *f; i++)
    printf("%s %-22s %s\n", f[i].have ? "\xe2\x9c\x93" : "\xe2\x9c\x97", f[i].name, f[i].why);
  return 0;
}
