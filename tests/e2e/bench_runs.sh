# The tokenizer benchmark runs and prints its ratios (a check that it works,
# never a timing test: figures come from `make bench`).
source "$(dirname "$0")/lib.bash"
need_node
out=$(bash bench/tokenizer_speed.sh 100000)
echo "$out"
echo "$out" | grep -q "ratio keel / @huggingface/tokenizers: [0-9.]*x" || fail "no ratio line"
out=$("$KEEL" bench)
echo "$out"
echo "$out" | grep -q "FMA peak .* GFLOP/s (measured), triad bandwidth" || fail "keel bench header"
[ "$(echo "$out" | grep -c '%')" -ge 6 ] || fail "keel bench rows"
