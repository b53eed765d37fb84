#!/usr/bin/env bash
# Runs every test of `make test` (already built) and ends with one line
# "N passed, N failed, N skipped". Exit status is non-zero on any failure.
# A test that exits 77 is skipped (a missing optional tool).
set -u
cd "$(dirname "$0")/.."
LOGS=build/test-logs
mkdir -p "$LOGS"
passed=0 failed=0 skipped=0
FUZZ_RUNS=${KEEL_FUZZ_RUNS:-20000}

run() { # name, command...
  local name=$1; shift
  local log="$LOGS/${name//\//_}.log" t0=$SECONDS rc
  timeout 600 "$@" >"$log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    passed=$((passed + 1)); printf 'ok    %-40s %3ds\n' "$name" $((SECONDS - t0))
  elif [ $rc = 77 ]; then
    skipped=$((skipped + 1)); printf 'skip  %-40s %s\n' "$name" "$(tail -n 1 "$log")"
  else
    failed=$((failed + 1)); printf 'FAIL  %-40s (exit %d, log %s)\n' "$name" $rc "$log"
    tail -n 20 "$log" | sed 's/^/      /'
  fi
}

for t in build/tests/test_*; do [ -x "$t" ] && run "unit/$(basename "$t")" "$t"; done
# the kernels written per vector width, each width forced (a CPU without it runs its best):
# in the one-ISA builds (make isa), which also hold that ISA's copy of the kernels the CPU
# picks at load time; also under ASan/UBSan
for isa in avx2 portable; do
  for t in test_backend test_ops test_model; do
    bin="build/$isa/tests/$t"
    [ -x "$bin" ] || bin="build/tests/$t"
    run "unit-$isa/$t" env KEEL_CPU=$isa "$bin"
    [ -x "build/asan/tests/$t" ] && run "asan-$isa/$t" env KEEL_CPU=$isa "build/asan/tests/$t"
  done
done
for t in build/asan/tests/test_*; do [ -x "$t" ] && run "asan/$(basename "$t")" "$t"; done
for s in tests/e2e/*.sh; do run "e2e/$(basename "$s" .sh)" bash "$s"; done
if [ -x build/asan/keel ]; then
  KEEL=build/asan/keel run "e2e-asan/cli_errors" bash tests/e2e/cli_errors.sh
  KEEL=build/asan/keel run "e2e-asan/serve" bash tests/e2e/serve.sh
fi
for f in build/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  work=build/fuzz/corpus-$name
  mkdir -p "$work"
  run "fuzz/$name" "$f" -runs="$FUZZ_RUNS" -max_len=4096 -timeout=10 "$work" "tests/fuzz/seeds/${name#fuzz_}"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
