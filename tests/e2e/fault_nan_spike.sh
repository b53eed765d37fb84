# A NaN loss, a NaN gradient and a loss spike, injected into one run: the NaN
# steps are skipped, the spike is rolled back to the newest checkpoint and its
# batch skipped (also after a resume), and the final validation loss is within
# 2% of a clean run's.
STEPS=40
source "$(dirname "$0")/faults.bash"
vloss() { grep -o '"val_loss": [0-9.]*' "$1/metrics.jsonl" | tail -1 | awk '{print $2}'; }
run_train "$T/clean" --eval-every 40 --eval-batches 8 || fail "clean run failed"
run_train "$T/hit" --eval-every 40 --eval-batches 8 --inject nan@step=12:loss,nan@step=17:grad,spike@step=29 \
  || fail "faulty run failed: $(tail -3 "$T/stderr.log")"
e=$T/hit/events.jsonl
[ "$(grep -c '"skip_nonfinite"' "$e")" = 2 ] || fail "NaN steps not skipped: $(cat "$e")"
grep -q '"event": "rollback", "step": 29, "to": 28' "$e" || fail "spike not rolled back: $(grep -v save "$e")"
grep -q '"skipped_steps": \[' "$T/hit/ckpt/step-30/state.json" && grep -A2 '"skipped_steps"' "$T/hit/ckpt/step-30/state.json" | grep -q 29 \
  || fail "the skipped batch is not recorded in the checkpoint manifest"
c=$(vloss "$T/clean"); h=$(vloss "$T/hit")
awk -v c="$c" -v h="$h" 'BEGIN { d = (h - c) / c; if (d < 0) d = -d; exit !(d <= 0.02) }' || fail "final val loss $h vs clean $c: more than 2% apart"
"$KEEL" report "$T/hit" > "$T/report.txt"
grep -q "rollbacks             1" "$T/report.txt" && grep -q "2 non-finite steps" "$T/report.txt" || fail "report: $(cat "$T/report.txt")"
echo "nan@12 (loss), nan@17 (grad) skipped; spike@29 rolled back to 28 and skipped; final val loss $h vs clean $c"
# the same step spiking again and again: after --max-rollbacks the run stops with a clear message
set +e
run_train "$T/loop" --max-rollbacks 1 --inject spike@step=29,spike@step=29,spike@step=29 2> /dev/null; rc=$?
set -e
[ $rc = 2 ] || fail "repeated spikes: exit $rc"
grep -q "step 29: the loss spikes again after 1 rollbacks; stopping" "$T/stderr.log" || fail "no stop message: $(tail -2 "$T/stderr.log")"
grep -q '"event": "stop"' "$T/loop/events.jsonl" || fail "no stop event"
# a flipped exponent bit in a parameter or a gradient: the guards keep the run alive
run_train "$T/pflip" --eval-every 40 --inject bitflip@step=20:param,bitflip@step=25:grad || fail "run with bit flips failed"
grep -q '"val_loss"' "$T/pflip/metrics.jsonl" && ! grep -q '"val_loss": nan' "$T/pflip/metrics.jsonl" || fail "bit-flipped run ended without a finite loss"
echo "repeated spikes stop the run after --max-rollbacks; parameter and gradient bit flips survived"
