#!/usr/bin/env bash
# Training throughput of keel vs the PyTorch reference model of the same
# config, same batch and threads, measured in one run. PyTorch runs at its
# best here: OPENBLAS_CORETYPE=SkylakeX (Debian's OpenBLAS misdetects newer
# CPUs) and OMP_WAIT_POLICY=PASSIVE, for its command only.
# usage: [ROUNDS=N] bench/compare.sh [STEPS (3)] [THREADS (2)] [CONFIG...]
# With ROUNDS > 1 each config's pair runs N times back to back (this machine's
# load moves either side by 15% or more) and the median ratio is printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-3}; THREADS=${2:-2}; shift $(( $# > 2 ? 2 : $# )) || true
CONFIGS=("${@:-configs/bench-a.json configs/bench-b.json}")
B=4; T=256
[ -f data/brown/train.bin ] || build/keel prepare --default-corpus --out data/brown --vocab-size 8192 > /dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads $THREADS, batch $B x $T"
ROUNDS=${ROUNDS:-1}
for cfg in ${CONFIGS[@]}; do
  ratios=()
  for round in $(seq "$ROUNDS"); do
    run=$(mktemp -d)
    build/keel train --data data/brown --out "$run" --config "$cfg" --steps $((STEPS + 1)) --batch $B --seq $T \
      --threads "$THREADS" --eval-every 0 --ckpt-every 0 -q 2> "$run/log"
    k=$(python3 -c "
import json
r = [json.loads(l) for l in open('$run/metrics.jsonl') if 'tokens_per_s' in l][1:]
print('%.1f %.4f' % (sum(x['tokens_per_s'] for x in r) / len(r), sum(x['mfu'] for x in r) / len(r)))")
    p=$(OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/compare.py "$cfg" $B $T "$STEPS" "$THREADS")
    rss=$(grep -o 'measured peak [0-9]*' "$run/log" | awk '{print $3}')
    kt=${k% *}; mfu=${k#* }
    pt=$(echo "$p" | awk '{print $2}')
    printf '%s: keel %s tokens/s (MFU %.1f%% of %s GFLOP/s measured); %s; ratio keel / pytorch %.2fx\n' \
      "$cfg" "$kt" "$(awk -v m="$mfu" 'BEGIN{print 100*m}')" "$rss" "$p" "$(awk -v a="$kt" -v b="$pt" 'BEGIN{print a/b}')"
    ratios+=("$(awk -v a="$kt" -v b="$pt" 'BEGIN{print a/b}')")
    rm -rf "$run"
  done
  if [ "$ROUNDS" -gt 1 ]; then
    printf '%s: median ratio of %d rounds %.2fx (%s)\n' "$cfg" "$ROUNDS" \
      "$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END{print NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')" \
      "$(printf '%.2f ' "${ratios[@]}" | sed 's/ $//')"
  fi
done
