// Hostile traffic against a running keel serve: every request must get a 4xx
// JSON error and the server must stay up. usage: node serve_fuzz.mjs PORT API_KEY COUNT
import net from 'node:net';

const [port, apiKey, countArg] = process.argv.slice(2);
const count = Number(countArg);
const base = `http://127.0.0.1:${port}`;
let seed = 12345;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const badValues = [null, true, -1, 1e308, -1e308, 3.5, 'x', '', [], {}, [1, 'a'], { a: 1 }, 2 ** 53, -(2 ** 62)];

function hostile(i) {
  const kind = i % 9;
  const path = ['/v1/completions', '/v1/chat/completions', '/tokenize', '/detokenize'][rnd(4)];
  if (kind === 0) return [path, Buffer.from(Array.from({ length: rnd(300) }, () => rnd(256)))];
  if (kind === 1) { const s = JSON.stringify({ prompt: 'hello there', max_tokens: 4 }); return [path, s.slice(0, rnd(s.length - 1))]; }
  if (kind === 2) return [path, '['.repeat(3000 + rnd(3000)) + ']'.repeat(rnd(10))];
  if (kind === 3) return [path, '{"max_tokens": 1' + '0'.repeat(400) + ', "prompt": "a"}'];
  if (kind === 4) return [path, ['[]', '1', 'null', '"s"', 'true', ''][rnd(6)]];
  if (kind === 5) { // one invalid field in an otherwise good request
    const invalid = [['temperature', 'hot'], ['temperature', 9], ['max_tokens', -1], ['max_tokens', 3.5],
      ['max_tokens', '5'], ['top_p', 5], ['top_p', 'x'], ['n', 0], ['n', 99], ['stop', 5], ['stop', [1]],
      ['stop', ['a', 'b', 'c', 'd', 'e']], ['stream', 'yes'], ['stream_options', 5], ['frequency_penalty', 9],
      ['presence_penalty', -9], ['top_k', 'x'], ['min_p', 2], ['seed', 'x'], ['model', 'no-such-model'],
      ['model', 5], ['repetition_penalty', -1]];
    if (path === '/tokenize') return [path, JSON.stringify({ content: badValues[rnd(6)] })];
    if (path === '/detokenize') return [path, JSON.stringify({ tokens: [[-1], 'x', [1e9], {}][rnd(4)] })];
    const body = path.includes('chat') ? { messages: [{ role: 'user', content: 'hi' }] } : { prompt: 'hi' };
    if (rnd(4) === 0) { // the prompt itself is wrong
      if (path.includes('chat')) body.messages = [5, [], [{}], [{ role: 'user', content: 5 }], 'hi'][rnd(5)];
      else body.prompt = [5, {}, [], [-4], null][rnd(5)];
    } else {
      const [f, v] = invalid[rnd(invalid.length)];
      body[f] = v;
    }
    return [path, JSON.stringify(body)];
  }
  if (kind === 6) return [path, '{"messages": [{"role": "wizard", "content": "x"}], "prompt": 3}'];
  if (kind === 7) return ['/v1/' + 'z'.repeat(rnd(50)), '{}'];
  return [path, Buffer.concat([Buffer.from('{"prompt": "'), Buffer.from([0xc3, 0x28, 0xa0, 0xa1]), Buffer.from('"}')])];
}

let done = 0, bad = 0;
async function worker(k) {
  for (let i = k; i < count; i += 32) {
    const [path, body] = hostile(i);
    const r = await fetch(base + path, { method: 'POST', body, headers: { Authorization: `Bearer ${apiKey}` } });
    const t = await r.text();
    let j = null;
    try { j = JSON.parse(t); } catch (e) { /* checked below */ }
    if (r.status < 400 || r.status >= 500 || !j || !j.error || j.error.code !== r.status) {
      if (bad++ < 5) console.error(`request ${i} ${path} ${String(body).slice(0, 60)}: ${r.status} ${t.slice(0, 200)}`);
    }
    done++;
  }
}

// slow senders: connections that dribble a few header bytes and stall
const slow = Array.from({ length: 20 }, () => {
  const s = net.connect(Number(port), '127.0.0.1');
  s.on('error', () => {});
  s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"prompt": "');
  return s;
});
const t0 = Date.now();
await Promise.all(Array.from({ length: 32 }, (_, k) => worker(k)));
const h = await fetch(base + '/health');
slow.forEach((s) => s.destroy());
if (bad || h.status !== 200) { console.error(`FAIL: ${bad} of ${done} requests not answered with a 4xx JSON error; health ${h.status}`); process.exit(1); }
console.log(`${done} hostile requests, each answered with a 4xx JSON error, in ${((Date.now() - t0) / 1000).toFixed(1)} s; 20 stalled senders; server healthy`);
