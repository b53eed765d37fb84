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
# a crash that recurs after every restart ('!'): two failed restarts from the same checkpoint set it aside
set +e
run_train "$T/stuck" --supervise --max-restarts 3 --inject 'kill@step=7!'; rc=$?
set -e
[ $rc != 0 ] || fail "a recurring crash cannot succeed"
grep -q '"event": "checkpoint_set_aside", "step": 6' "$T/stuck/events.jsonl" || fail "no set-aside: $(grep -v save "$T/stuck/events.jsonl")"
[ -d "$T/stuck/ckpt/bad-step-6" ] && grep -q '"event": "give_up"' "$T/stuck/events.jsonl" || fail "set-aside or give-up missing"
echo "recurring crash: checkpoint step-6 set aside after two failed restarts, then the restart budget ran out"
