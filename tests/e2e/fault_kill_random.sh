# 20 runs, each killed with SIGKILL at a random instant (during steps, saves or
# renames) and rerun: every one resumes to the reference's final weights, and
# at no point does a run hold a checkpoint that fails verification.
source "$(dirname "$0")/faults.bash"
t0=$(date +%s%N); run_train "$T/timing"; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 )); [ $ms -gt 5 ] || ms=5
killed=0
for i in $(seq 1 20); do
  out="$T/r$i"
  "$KEEL" train $(train_args) --out "$out" 2>/dev/null &
  pid=$!
  sleep "$(awk -v r=$RANDOM -v ms=$ms 'BEGIN { printf "%.4f", r / 32768 * ms / 1000 }')"
  kill -9 $pid 2>/dev/null && killed=$((killed + 1))
  wait $pid 2>/dev/null || true
  if [ -d "$out/ckpt" ] && ls "$out/ckpt" | grep -q '^step-'; then
    "$KEEL" verify "$out" > "$T/verify.txt" || fail "run $i: a checkpoint fails verification after the kill: $(cat "$T/verify.txt")"
  fi
  run_train "$out" || fail "run $i: resume failed: $(tail -3 "$T/stderr.log")"
  same_weights "$T/ref" "$out" || fail "run $i: final weights differ from the uninterrupted run"
done
echo "20 runs killed at random instants within ~${ms} ms ($killed before they finished): all resumed to identical final weights"
