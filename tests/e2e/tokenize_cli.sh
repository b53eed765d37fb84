# keel tokenize as a user drives it: --lines, --decode, --special/--no-special,
# --bos, and byte-exact round trips of awkward input through the CLI.
source "$(dirname "$0")/lib.bash"
[ -f "$DEEPSEEK" ] || fail "$DEEPSEEK missing: run scripts/setup.sh"
tok() { "$KEEL" tokenize -t "$DEEPSEEK" "$@"; }
[ "$(printf 'Hello <｜begin▁of▁sentence｜> world' | tok --no-bos)" = "19923 223 0 2058" ] || fail "test vector"
[ "$(printf '<｜User｜>' | tok --no-bos --special)" = "128803" ] || fail "added token"
[ "$(printf '<｜begin▁of▁sentence｜>' | tok --no-bos --no-special | wc -w)" -gt 1 ] || fail "--no-special still matched a special token"
[ "$(printf 'a\nb\n' | tok --lines --bos | wc -l)" = 2 ] || fail "--lines"
[ "$(printf 'a\nb\n' | tok --lines --bos | head -1 | cut -d' ' -f1)" = 0 ] || fail "--bos"
# bytes that are not UTF-8, NUL, lone CR, CRLF runs: decode(encode(x)) == x
printf 'caf\xc3\xa9 \xff\xfe\x00 nul\r lone CR\r\n\r\n\xe4\xb8 cut \xf0\x9f\x98\x80<think>' > "$T/raw"
tok --no-bos < "$T/raw" > "$T/ids"
tok --decode < "$T/ids" > "$T/back"
cmp "$T/raw" "$T/back" || fail "round trip of raw bytes"
tok --decode --skip-special < <(printf '0 19923 1') > "$T/skip"
[ "$(cat "$T/skip")" = "Hello" ] || fail "--skip-special"
echo "tokenize CLI ok"
