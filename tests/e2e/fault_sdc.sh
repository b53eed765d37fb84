# Silent data corruption: with --abft, a bit flipped in a GEMM output
# (bitflip@step=3:gemm) is caught by the checksums and the step recomputed, so
# the run ends with the same weights as a clean one; clean --abft runs raise no
# alarm; --replay-every compares fast and reference kernels.
source "$(dirname "$0")/faults.bash"
run_train "$T/abft" --abft || fail "clean ABFT run failed"
! grep -q sdc_detected "$T/abft/events.jsonl" || fail "false alarm in a clean run: $(grep sdc "$T/abft/events.jsonl")"
same_weights "$T/ref" "$T/abft" || fail "ABFT changed the results of a clean run"
run_train "$T/flip" --abft --inject bitflip@step=3:gemm || fail "ABFT run with a flip failed"
grep -q '"event": "sdc_detected", "step": 3, "check": "abft"' "$T/flip/events.jsonl" || fail "flip not detected: $(cat "$T/flip/events.jsonl")"
same_weights "$T/ref" "$T/flip" || fail "the recomputed step left different weights"
run_train "$T/replay" --replay-every 4 || fail "replay run failed"
[ "$(grep -c '"event": "replay".*"ok": true' "$T/replay/events.jsonl")" = 3 ] || fail "replays: $(grep replay "$T/replay/events.jsonl")"
"$KEEL" report "$T/flip" | grep -q "SDC detections        1" || fail "report does not count the detection"
echo "ABFT: clean runs silent, a GEMM bit flip detected and recomputed (identical weights); 3 reference replays agree"
