# A hung step under --supervise: the watchdog kills the worker, the supervisor
# restarts it from the newest checkpoint, and the run ends with the reference's
# final weights; keel report counts the restart.
source "$(dirname "$0")/faults.bash"
run_train "$T/hang" --supervise --watchdog 2 --max-restarts 2 --inject hang@step=7 || fail "supervised run failed: $(tail -5 "$T/stderr.log")"
e=$T/hang/events.jsonl
grep -q '"watchdog_timeout"' "$e" && grep -q '"restart"' "$e" && grep -q '"worker_done"' "$e" || fail "events: $(cat "$e")"
same_weights "$T/ref" "$T/hang" || fail "final weights differ after the restart"
run_train "$T/crash" --supervise --max-restarts 2 --inject kill@step=5 || fail "supervised run after a crash failed"
grep -q '"reason": "killed by signal 9"' "$T/crash/events.jsonl" || fail "crash not recorded"
same_weights "$T/ref" "$T/crash" || fail "final weights differ after the crash restart"
"$KEEL" report "$T/hang" | grep -q "restarts              1 (1 after a watchdog timeout)" || fail "report"
echo "hang@step=7: watchdog fired, restarted, identical final weights; kill@step=5 under --supervise: restarted"
