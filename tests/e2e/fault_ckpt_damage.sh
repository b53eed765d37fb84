# The newest checkpoint truncated, bit-flipped, missing a file, or holding an
# extra file: keel verify names the file and fails; a rerun falls back to the
# previous checkpoint, says so, and ends with the reference's final weights.
source "$(dirname "$0")/faults.bash"
damage() { # KIND DIR
  case $1 in
    truncate) f="$2/model.safetensors"; truncate -s -100 "$f" ;;
    bitflip) f="$2/optimizer.safetensors"; printf '\x5a' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null ;;
    delete) f="$2/config.json"; rm "$f" ;;
    extra) f="$2/stray.bin"; echo junk > "$f" ;;
  esac
  echo "$f"
}
for kind in truncate bitflip delete extra; do
  out="$T/$kind"
  cp -r "$T/ref" "$out"
  rm -rf "$out/final"
  newest="$out/ckpt/step-$STEPS"
  file=$(damage $kind "$newest")
  set +e
  "$KEEL" verify "$out" > "$T/verify.txt"; rc=$?
  set -e
  [ $rc = 1 ] || fail "$kind: verify exit $rc"
  grep -q "BAD  $newest: $file" "$T/verify.txt" || fail "$kind: verify does not name $file: $(cat "$T/verify.txt")"
  "$KEEL" train $(train_args) --out "$out" 2> "$T/resume.log" || fail "$kind: rerun failed: $(cat "$T/resume.log")"
  grep -q "checkpoint step-$STEPS is not usable: $file" "$T/resume.log" || fail "$kind: no fallback message: $(cat "$T/resume.log")"
  grep -q "resuming .* from step $((STEPS - 2))" "$T/resume.log" || fail "$kind: did not resume from the previous checkpoint"
  same_weights "$T/ref" "$out" || fail "$kind: final weights differ"
done
echo "truncated, bit-flipped, deleted and extra files: detected with the file named, previous checkpoint used, same final weights"
