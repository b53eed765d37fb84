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
# thread scaling: training steps on 1 thread and 2 in turn, each pair and the median printed
out=$("$KEEL" bench -t 2 --no-gemm --scaling configs/tiny-moe.json --pairs 2)
echo "$out"
[ "$(echo "$out" | grep -c '^pair [12]: 1 thread [0-9.]* s, 2 threads [0-9.]* s a step: [0-9.]*x$')" -eq 2 ] ||
  fail "keel bench --scaling pairs"
echo "$out" | grep -q "^2 threads over 1, median of 2 pairs: [0-9.]*x (range " || fail "keel bench --scaling median"
"$KEEL" bench -t 1 --scaling configs/tiny-moe.json 2> "$T/err" && fail "--scaling on one thread accepted"
grep -q "needs 2 threads" "$T/err" || fail "--scaling one-thread message"
