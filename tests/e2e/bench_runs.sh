# The tokenizer benchmark runs and prints its ratios (a check that it works,
# never a timing test: figures come from `make bench`).
source "$(dirname "$0")/lib.bash"
need_node
out=$(bash bench/tokenizer_speed.sh 100000)
echo "$out"
echo "$out" | grep -q "ratio keel / @huggingface/tokenizers: [0-9.]*x" || fail "no ratio line"
out=$("$KEEL" bench)
echo "$out"
echo "$out" | grep -q "kernels, FMA peak [0-9]* GFLOP/s (measured: best of short bursts; [1-9][0-9]* held for 2 s on every thread), triad bandwidth [0-9.]* GB/s" ||
  fail "keel bench header"
[ "$(echo "$out" | grep -c '%')" -ge 6 ] || fail "keel bench rows"
