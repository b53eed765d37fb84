#!/usr/bin/env bash
# Aggregate decode throughput of keel serve at 1, 4 and 16 concurrent
# streaming clients (curl, which leaves the CPU to the server; 64 tokens each,
# temperature 0.8). usage: bench/serve_bench.sh MODEL_DIR [PORT (18090)]
set -euo pipefail
cd "$(dirname "$0")/.."
M=$1; PORT=${2:-18090}
build/keel serve -m "$M" --port "$PORT" -c 256 -np 16 --alias bench 2>/dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for i in $(seq 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { echo "keel serve exited"; exit 1; }
  sleep 0.1
done
req() { curl -sN "http://127.0.0.1:$PORT/v1/completions" -d "{\"prompt\": \"Story $1: The jury said\", \"max_tokens\": 64,
  \"temperature\": 0.8, \"seed\": $1, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" |
  grep -o '"completion_tokens":[0-9]*' | cut -d: -f2; }
req 0 >/dev/null # warm up
for n in 1 4 16; do
  t0=$(date +%s.%N)
  total=$(for i in $(seq "$n"); do req "$i" & done | awk '{s += $1} END {print s}')
  t1=$(date +%s.%N)
  awk -v n="$n" -v t="$total" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "%d concurrent streams: %d tokens in %.2f s, %.1f tokens/s aggregate\n", n, t, b - a, t / (b - a) }'
done
