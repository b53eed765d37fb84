# Bad input gives one line on stderr naming the file (and offset where it
# applies) and exit status 2; nothing crashes. Run with the ASan build too.
source "$(dirname "$0")/lib.bash"
expect() { # expected-substring, command...
  local want=$1; shift
  set +e
  "$@" > "$T/out" 2> "$T/err" < "${STDIN:-/dev/null}"
  local rc=$?
  set -e
  [ $rc = 2 ] || fail "$*: exit $rc, stderr: $(cat "$T/err")"
  [ "$(wc -l < "$T/err")" = 1 ] || fail "$*: expected one line, got: $(cat "$T/err")"
  grep -qF -- "$want" "$T/err" || fail "$*: message lacks '$want': $(cat "$T/err")"
}
printf '{"model": {"vocab": {"a": 0}, "merges": [' > "$T/trunc.json"
expect "trunc.json: invalid JSON at line 1" "$KEEL" tokenize -t "$T/trunc.json"
printf '{"model":{"type":"Unigram","vocab":[]}}' > "$T/uni.json"
expect 'uni.json: model.type "Unigram" is not supported' "$KEEL" tokenize -t "$T/uni.json"
printf '{"model":{"vocab":{"a":0},"merges":["a b"]}}' > "$T/merge.json"
expect "merge.json: model.merges[0]" "$KEEL" tokenize -t "$T/merge.json"
printf 'KEELTOK\0junk' > "$T/short.bin"
expect "short.bin: 12 bytes is shorter" "$KEEL" inspect "$T/short.bin"
printf '\xff\xff\x00\x00\x00\x00\x00\x00{}' > "$T/big.safetensors"
expect "big.safetensors: byte 0: header length" "$KEEL" inspect "$T/big.safetensors"
printf '\x02\x00\x00\x00\x00\x00\x00\x00[]' > "$T/arr.safetensors"
expect "arr.safetensors: byte 8" "$KEEL" inspect "$T/arr.safetensors"
printf 'hello' > "$T/what.txt"
expect "what.txt: not a safetensors file" "$KEEL" inspect "$T/what.txt"
expect "unknown command" "$KEEL" frobnicate
expect "--tokenizer is required" "$KEEL" tokenize
expect "--vocab-size must be" "$KEEL" prepare --input "$T/what.txt" --out "$T/o" --vocab-size 10
printf '{"model":{"vocab":{"a":0},"merges":[]}}' > "$T/ok.json"
echo "0 1 x" > "$T/ids.txt"
STDIN="$T/ids.txt" expect "stdin: byte 4: expected a token id" "$KEEL" tokenize -t "$T/ok.json" --decode
echo "0 5" > "$T/ids.txt"
STDIN="$T/ids.txt" expect "token id 5 at position 1 is not in the vocabulary" "$KEEL" tokenize -t "$T/ok.json" --decode
set +e
"$KEEL" tokenize -t "$T/nope.json" < /dev/null 2> "$T/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "nope.json: cannot open" "$T/err" || fail "missing file: exit $rc $(cat "$T/err")"
echo "cli errors: one line each, exit 2"
