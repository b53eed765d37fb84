# A save that fails (ENOSPC) is reported and training goes on; a save torn by
# the process dying mid-write leaves the previous checkpoint intact and the
# rerun resumes from it. Both end with the reference's final weights.
source "$(dirname "$0")/faults.bash"
run_train "$T/enospc" --inject enospc@save=3 || fail "enospc: training stopped"
grep -q '"event": "save_failed", "step": 6' "$T/enospc/events.jsonl" || fail "enospc: no save_failed event"
[ ! -e "$T/enospc/ckpt/step-6" ] && [ -d "$T/enospc/ckpt/step-4" ] || fail "enospc: checkpoints wrong"
"$KEEL" verify "$T/enospc" > /dev/null || fail "enospc: a checkpoint is damaged"
same_weights "$T/ref" "$T/enospc" || fail "enospc: final weights differ"
set +e
run_train "$T/torn" --inject torn@save=3; rc=$?
set -e
[ $rc = 137 ] || fail "torn: the process did not die mid-save (exit $rc)"
ls -a "$T/torn/ckpt" | grep -q '^\.step-6\.tmp$' || fail "torn: no half-written checkpoint left behind"
"$KEEL" verify "$T/torn" > /dev/null || fail "torn: a complete checkpoint is damaged"
run_train "$T/torn" 2> "$T/torn.log" || fail "torn: rerun failed"
grep -q "resuming .* from step 4" "$T/stderr.log" || fail "torn: did not resume from step 4"
same_weights "$T/ref" "$T/torn" || fail "torn: final weights differ"
echo "enospc@save: reported, training continued; torn@save: previous checkpoint intact, resumed; same final weights"
# retention: the newest 2 checkpoints plus every 4th step
run_train "$T/keep" --keep-last 2 --keep-every 4 || fail "retention run failed"
[ "$(ls "$T/keep/ckpt" | sort -t- -k2 -n | tr '\n' ' ')" = "step-4 step-8 step-10 step-12 " ] || fail "retention kept: $(ls "$T/keep/ckpt")"
echo "retention: kept step-4 step-8 step-10 step-12"
