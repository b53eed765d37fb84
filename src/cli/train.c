/* keel train and keel init. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/tokenizer.h"
#include "../model/weights.h"
#include "../train/checkpoint.h"
#include "../train/supervisor.h"
#include "../train/trainer.h"
#include "cli.h"

static void usage(const keel_train_opts *d) {
  printf("usage: keel train --data DIR --out RUN (--model DIR | --config C.json) [options]\n\n"
         "  -d, --data DIR          folder written by keel prepare (train.bin, val.bin, tokenizer.json)\n"
         "  -o, --out RUN           run folder: metrics.jsonl, ckpt/step-N/, final/\n"
         "  -m, --model DIR         start from this model dir\n"
         "  -c, --config FILE       or from a fresh model of this config.json (std 0.006 init)\n"
         "      --steps N           optimizer steps (default %ld)\n"
         "  -b, --batch N           sequences per micro-batch (default %d)\n"
         "      --seq N             tokens per sequence (default %d)\n"
         "      --grad-accum N      micro-batches per step (default %d)\n"
         "      --lr X              peak learning rate (default %g)\n"
         "      --min-lr X          final learning rate (default %g)\n"
         "      --warmup N          linear warm-up steps (default %ld)\n"
         "      --schedule S        cosine, wsd or constant (default cosine)\n"
         "      --wd X              weight decay on matrices (default %g)\n"
         "      --clip X            global gradient-norm clip, 0 for none (default %g)\n"
         "      --beta1 X, --beta2 X  AdamW betas (default %g, %g)\n"
         "      --bf16-moments      keep the AdamW moments in bf16 (4 bytes per parameter instead of 8)\n"
         "      --recompute         keep only each block's output and recompute the block in backward\n"
         "                          (activation memory of one block instead of all; same results)\n"
         "      --bias-gamma X      balancing-bias update speed (default %g)\n"
         "      --balance-alpha X   sequence-wise balance loss weight (default: config aux_loss_alpha)\n"
         "      --mtp-lambda X      MTP loss weight (default %g)\n"
         "  -s, --seed N            seed of init and data order (default %llu)\n"
         "  -t, --threads N         threads (default: all cores)\n"
         "      --eval-every N      validation every N steps, 0 for never (default %ld)\n"
         "      --eval-batches N    validation batches (default %d)\n"
         "      --ckpt-every N      checkpoint every N steps, 0 for only at the end (default %ld)\n"
         "      --keep-last K       keep the newest K checkpoints (default %d, 0 keeps all)\n"
         "      --keep-every M      and every M-th step forever (default 0: none)\n"
         "      --spike-z Z         a loss Z standard deviations over the recent mean is a spike: roll back\n"
         "                          to the newest good checkpoint and skip that batch (default %g, 0 off)\n"
         "      --spike-window N    steps in the recent mean (default %d)\n"
         "      --max-rollbacks N   stop if the same step spikes after N rollbacks (default %d)\n"
         "      --abft              check every GEMM with checksums, recompute a step on a mismatch\n"
         "      --abft-every N      the same on every N-th step only\n"
         "      --replay-every N    every N steps replay the step on the reference kernels and compare\n"
         "      --inject SPEC       fault injection (also KEEL_INJECT): kill@step=N, nan@step=N[:loss|grad],\n"
         "                          spike@step=N, bitflip@step=N:gemm|param|grad, enospc@save=N, torn@save=N,\n"
         "                          slow@step=N:MS, hang@step=N (comma-separated)\n"
         "      --supervise         run in a worker process; restart it when it crashes or hangs\n"
         "      --max-restarts N    restart budget of --supervise (default 5)\n"
         "      --watchdog S        seconds without a finished step before the worker counts as hung (default 300)\n"
         "  -q, --quiet             no progress line\n\n"
         "Rerunning the same command resumes from the newest good checkpoint in RUN.\n",
         d->steps, d->batch, d->seq, d->grad_accum, (double)d->lr, (double)d->min_lr, d->warmup, (double)d->wd,
         (double)d->clip, (double)d->beta1, (double)d->beta2, (double)d->bias_gamma, (double)d->mtp_lambda,
         (unsigned long long)d->seed, d->eval_every, d->eval_batches, d->ckpt_every, d->keep_last, (double)d->spike_z,
         d->spike_window, d->max_rollbacks);
}

static int num(const char *s, double lo, double hi, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v >= lo && v <= hi)) return 0;
  *out = v;
  return 1;
}

int keel_cmd_train(int argc, char **argv) {
  enum { O_STEPS = 1000, O_SEQ, O_ACCUM, O_LR, O_MINLR, O_WARM, O_SCHED, O_WD, O_CLIP, O_B1, O_B2, O_GAMMA, O_ALPHA,
         O_LAMBDA, O_EVAL, O_EVALB, O_CKPT, O_KEEPL, O_KEEPE, O_SPIKEZ, O_SPIKEW, O_MAXRB, O_ABFT, O_REPLAY, O_INJECT,
         O_SUPER, O_MAXRS, O_WATCH, O_ABFTN, O_BF16M, O_RECOMP };
  static const struct option opts[] = {
      {"data", required_argument, 0, 'd'},        {"out", required_argument, 0, 'o'},
      {"model", required_argument, 0, 'm'},       {"config", required_argument, 0, 'c'},
      {"steps", required_argument, 0, O_STEPS},   {"batch", required_argument, 0, 'b'},
      {"seq", required_argument, 0, O_SEQ},       {"grad-accum", required_argument, 0, O_ACCUM},
      {"lr", required_argument, 0, O_LR},         {"min-lr", required_argument, 0, O_MINLR},
      {"warmup", required_argument, 0, O_WARM},   {"schedule", required_argument, 0, O_SCHED},
      {"wd", required_argument, 0, O_WD},         {"clip", required_argument, 0, O_CLIP},
      {"beta1", required_argument, 0, O_B1},      {"beta2", required_argument, 0, O_B2},
      {"bias-gamma", required_argument, 0, O_GAMMA}, {"balance-alpha", required_argument, 0, O_ALPHA},
      {"mtp-lambda", required_argument, 0, O_LAMBDA}, {"seed", required_argument, 0, 's'},
      {"threads", required_argument, 0, 't'},     {"eval-every", required_argument, 0, O_EVAL},
      {"eval-batches", required_argument, 0, O_EVALB}, {"ckpt-every", required_argument, 0, O_CKPT},
      {"keep-last", required_argument, 0, O_KEEPL}, {"keep-every", required_argument, 0, O_KEEPE},
      {"spike-z", required_argument, 0, O_SPIKEZ}, {"spike-window", required_argument, 0, O_SPIKEW},
      {"max-rollbacks", required_argument, 0, O_MAXRB}, {"abft", no_argument, 0, O_ABFT},
      {"replay-every", required_argument, 0, O_REPLAY}, {"inject", required_argument, 0, O_INJECT},
      {"supervise", no_argument, 0, O_SUPER}, {"max-restarts", required_argument, 0, O_MAXRS},
      {"watchdog", required_argument, 0, O_WATCH}, {"abft-every", required_argument, 0, O_ABFTN},
      {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
      {"bf16-moments", no_argument, 0, O_BF16M},  {"recompute", no_argument, 0, O_RECOMP},
      {0, 0, 0, 0}};
  keel_train_opts o;
  keel_train_defaults(&o);
  keel_supervise_opts so = {5, 300, 1.0};
  int c, supervise = 0;
  double v;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:o:m:c:b:s:t:qh", opts, NULL)) != -1) {
    const char *bad = NULL;
    switch (c) {
      case 'd': o.data = optarg; break;
      case 'o': o.out = optarg; break;
      case 'm': o.model_dir = optarg; break;
      case 'c': o.config_path = optarg; break;
      case 'q': o.quiet = 1; break;
      case O_BF16M: o.bf16_moments = 1; break;
      case O_RECOMP: o.recompute = 1; break;
      case 'h': usage(&o); return 0;
      case O_SCHED: if (!keel_schedule_parse(optarg, &o.schedule)) bad = "--schedule is cosine, wsd or constant"; break;
      case O_STEPS: if (num(optarg, 1, 1e12, &v)) o.steps = (long)v; else bad = "--steps must be >= 1"; break;
      case 'b': if (num(optarg, 1, 1 << 20, &v)) o.batch = (int)v; else bad = "--batch must be >= 1"; break;
      case O_SEQ: if (num(optarg, 1, 1 << 20, &v)) o.seq = (int)v; else bad = "--seq must be >= 1"; break;
      case O_ACCUM: if (num(optarg, 1, 1 << 20, &v)) o.grad_accum = (int)v; else bad = "--grad-accum must be >= 1"; break;
      case O_LR: if (num(optarg, 0, 10, &v)) o.lr = (float)v; else bad = "--lr must be in [0, 10]"; break;
      case O_MINLR: if (num(optarg, 0, 10, &v)) o.min_lr = (float)v; else bad = "--min-lr must be in [0, 10]"; break;
      case O_WARM: if (num(optarg, 0, 1e12, &v)) o.warmup = (long)v; else bad = "--warmup must be >= 0"; break;
      case O_WD: if (num(optarg, 0, 10, &v)) o.wd = (float)v; else bad = "--wd must be in [0, 10]"; break;
      case O_CLIP: if (num(optarg, 0, 1e9, &v)) o.clip = (float)v; else bad = "--clip must be >= 0"; break;
      case O_B1: if (num(optarg, 0, 0.999999, &v)) o.beta1 = (float)v; else bad = "--beta1 must be in [0, 1)"; break;
      case O_B2: if (num(optarg, 0, 0.999999, &v)) o.beta2 = (float)v; else bad = "--beta2 must be in [0, 1)"; break;
      case O_GAMMA: if (num(optarg, 0, 1, &v)) o.bias_gamma = (float)v; else bad = "--bias-gamma must be in [0, 1]"; break;
      case O_ALPHA: if (num(optarg, 0, 10, &v)) o.balance_alpha = (float)v; else bad = "--balance-alpha must be in [0, 10]"; break;
      case O_LAMBDA: if (num(optarg, 0, 10, &v)) o.mtp_lambda = (float)v; else bad = "--mtp-lambda must be in [0, 10]"; break;
      case 's': if (num(optarg, 0, 1.8e19, &v)) o.seed = (uint64_t)v; else bad = "--seed must be >= 0"; break;
      case 't': if (num(optarg, 0, 4096, &v)) o.threads = (int)v; else bad = "--threads must be >= 0"; break;
      case O_EVAL: if (num(optarg, 0, 1e12, &v)) o.eval_every = (long)v; else bad = "--eval-every must be >= 0"; break;
      case O_EVALB: if (num(optarg, 1, 1e6, &v)) o.eval_batches = (int)v; else bad = "--eval-batches must be >= 1"; break;
      case O_CKPT: if (num(optarg, 0, 1e12, &v)) o.ckpt_every = (long)v; else bad = "--ckpt-every must be >= 0"; break;
      case O_KEEPL: if (num(optarg, 0, 1e6, &v)) o.keep_last = (int)v; else bad = "--keep-last must be >= 0"; break;
      case O_KEEPE: if (num(optarg, 0, 1e12, &v)) o.keep_every = (int)v; else bad = "--keep-every must be >= 0"; break;
      case O_SPIKEZ: if (num(optarg, 0, 1e6, &v)) o.spike_z = (float)v; else bad = "--spike-z must be >= 0"; break;
      case O_SPIKEW: if (num(optarg, 2, 1e6, &v)) o.spike_window = (int)v; else bad = "--spike-window must be >= 2"; break;
      case O_MAXRB: if (num(optarg, 0, 1e6, &v)) o.max_rollbacks = (int)v; else bad = "--max-rollbacks must be >= 0"; break;
      case O_ABFT: o.abft_every = 1; break;
      case O_ABFTN: if (num(optarg, 0, 1e12, &v)) o.abft_every = (long)v; else bad = "--abft-every must be >= 0"; break;
      case O_REPLAY: if (num(optarg, 0, 1e12, &v)) o.replay_every = (long)v; else bad = "--replay-every must be >= 0"; break;
      case O_INJECT: o.inject = optarg; break;
      case O_SUPER: supervise = 1; break;
      case O_MAXRS: if (num(optarg, 0, 1e6, &v)) so.max_restarts = (int)v; else bad = "--max-restarts must be >= 0"; break;
      case O_WATCH: if (num(optarg, 0.1, 1e7, &v)) so.watchdog_s = v; else bad = "--watchdog must be > 0"; break;
      default: bad = "bad option";
    }
    if (bad) return keel_cli_usage_error("train", bad);
  }
  if (!o.data || !o.out) return keel_cli_usage_error("train", "--data and --out are required");
  if (!o.model_dir == !o.config_path) return keel_cli_usage_error("train", "give exactly one of --model and --config");
  keel_inject check;
  keel_status st = keel_inject_parse(&check, o.inject ? o.inject : getenv("KEEL_INJECT"));
  if (st) return keel_cli_error("train", st);
  st = supervise ? keel_supervise(&o, &so) : keel_train_run(&o);
  return st ? keel_cli_error("train", st) : 0;
}

int keel_cmd_init(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
                                       {"seed", required_argument, 0, 's'}, {"tokenizer", required_argument, 0, 'T'},
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  const char *cfg = NULL, *out = NULL, *tok = NULL;
  unsigned long long seed = 1;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "c:o:s:h", opts, NULL)) != -1) {
    switch (c) {
      case 'c': cfg = optarg; break;
      case 'o': out = optarg; break;
      case 's': seed = strtoull(optarg, NULL, 10); break;
      case 'T': tok = optarg; break;
      case 'h':
        printf("usage: keel init --config C.json --out DIR [--seed S (default 1)] [--tokenizer tokenizer.json]\n\n"
               "Writes a randomly initialised model (std 0.006, norms 1, balancing bias 0) as an HF model dir.\n");
        return 0;
      default: return keel_cli_usage_error("init", "bad option");
    }
  }
  if (!cfg || !out) return keel_cli_usage_error("init", "--config and --out are required");
  keel_config conf;
  keel_status st = keel_config_load(&conf, cfg);
  if (st) return keel_cli_error("init", st);
  keel_model m;
  keel_model_init(&m, &conf, keel_backend_cpu());
  keel_params_init(m.params, &m.tab, seed, 0.006f);
  st = keel_model_save(&m, out);
  if (!st && tok) {
    keel_tokenizer *t;
    if (!(st = keel_tokenizer_load(&t, tok))) {
      if (t->n_vocab > conf.vocab_size)
        st = keel_fail(KEEL_ERR_ARG, "%s: %d token ids do not fit vocab_size %d", tok, t->n_vocab, conf.vocab_size);
      keel_tokenizer_free(t);
    }
    char *dir = keel_xstrdup(tok), *slash = strrchr(dir, '/');
    if (!st) st = keel_copy_tokenizer(slash ? (*slash = 0, dir) : ".", out);
    free(dir);
  }
  size_t total, active;
  keel_params_count(&m.c, &m.tab, &total, &active);
  if (!st) printf("%s: %zu parameters (%zu active per token)\n", out, total, active);
  keel_model_free(&m);
  return st ? keel_cli_error("init", st) : 0;
}
