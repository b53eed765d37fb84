/* The keel binary: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "../../include/keel.h"
#include "cli.h"

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} commands[] = {
    {"prepare", keel_cmd_prepare, "text files -> tokenizer + token shards"},
    {"init", keel_cmd_init, "write a randomly initialised model from a config.json"},
    {"train", keel_cmd_train, "train a model on prepared shards"},
    {"generate", keel_cmd_generate, "generate text from a prompt"},
    {"chat", keel_cmd_chat, "interactive chat with the DeepSeek template"},
    {"eval", keel_cmd_eval, "validation loss, or logits of given ids"},
    {"serve", keel_cmd_serve, "an OpenAI-compatible HTTP server with continuous batching"},
    {"convert", keel_cmd_convert, "store a model's weights as bf16, int8 or fp8"},
    {"verify", keel_cmd_verify, "check checkpoints against their manifests"},
    {"report", keel_cmd_report, "what happened in a training run"},
    {"tokenize", keel_cmd_tokenize, "text <-> token ids with a tokenizer.json"},
    {"tokenizer", keel_cmd_tokenizer, "tokenizer tools: train a BPE vocabulary"},
    {"inspect", keel_cmd_inspect, "what is in a safetensors file, token shard or tokenizer"},
    {"plan", keel_cmd_plan, "time, memory, energy and goodput of a run on a named cluster"},
    {"bench", keel_cmd_bench, "GEMM and memory figures against this machine's measured limits"},
    {"features", keel_cmd_features, "which optional parts this build has"},
};

static void usage(FILE *fp) {
  fprintf(fp, "keel %s - train, serve and plan DeepSeek-style models\n\nusage: keel <command> [options]\n\ncommands:\n",
          KEEL_VERSION);
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(fp, "\nkeel <command> --help shows a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
    printf("keel %s\n", KEEL_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "keel: unknown command '%s' (see keel --help)\n", argv[1]);
  return 2;
}
