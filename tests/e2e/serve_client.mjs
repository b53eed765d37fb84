// Drives a running keel serve with the official openai client and raw HTTP.
// usage: node serve_client.mjs PORT MODEL_ID API_KEY EXPECTED_TEXT_FILE
import OpenAI from 'openai';
import fs from 'node:fs';
import net from 'node:net';

const [port, modelId, apiKey, expectedFile] = process.argv.slice(2);
const base = `http://127.0.0.1:${port}`;
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
const fail = (msg) => { console.error('FAIL: ' + msg); process.exit(1); };
const check = (cond, msg) => { if (!cond) fail(msg); };

// greedy over the API equals keel generate
const expected = fs.readFileSync(expectedFile, 'utf8');
const c1 = await client.completions.create({ model: modelId, prompt: 'The jury said', max_tokens: 24, temperature: 0 });
check(c1.choices[0].text === expected, `completion ${JSON.stringify(c1.choices[0].text)} != generate ${JSON.stringify(expected)}`);
check(c1.usage.completion_tokens === 24 && c1.usage.total_tokens === c1.usage.prompt_tokens + 24, 'usage');
check(c1.choices[0].finish_reason === 'length', 'finish_reason length');

// streamed completion: the same text in pieces, one id, a usage chunk when asked
let text = '', ids = new Set(), usage = null, finish = null;
const s1 = await client.completions.create({ model: modelId, prompt: 'The jury said', max_tokens: 24, temperature: 0,
  stream: true, stream_options: { include_usage: true } });
for await (const ch of s1) {
  ids.add(ch.id);
  if (ch.usage) usage = ch.usage;
  for (const c of ch.choices) { text += c.text; if (c.finish_reason) finish = c.finish_reason; }
}
check(text === expected, 'streamed completion differs');
check(ids.size === 1 && usage && usage.completion_tokens === 24 && finish === 'length', 'stream structure');

// chat, streamed and not: the same text; the first delta carries the role
const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the jury.' }];
const ch1 = await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 16, temperature: 0 });
check(ch1.object === 'chat.completion' && ch1.choices[0].message.role === 'assistant', 'chat object');
let ctext = '', role = null, n = 0;
for await (const ch of await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 16,
  temperature: 0, stream: true })) {
  const d = ch.choices[0]?.delta ?? {};
  if (n++ === 0) role = d.role;
  ctext += d.content ?? '';
}
check(role === 'assistant' && ctext === (ch1.choices[0].message.content ?? ''), 'streamed chat differs');

// stop strings, seeds, n, logprobs
const full = c1.choices[0].text;
const stopAt = full.indexOf(' the');
if (stopAt > 0) {
  const cs = await client.completions.create({ model: modelId, prompt: 'The jury said', max_tokens: 24, temperature: 0,
    stop: [' the'] });
  check(cs.choices[0].text === full.slice(0, stopAt) && cs.choices[0].finish_reason === 'stop', 'stop string');
}
const a = await client.completions.create({ model: modelId, prompt: 'It was', max_tokens: 12, temperature: 0.9, seed: 7, n: 2 });
const b = await client.completions.create({ model: modelId, prompt: 'It was', max_tokens: 12, temperature: 0.9, seed: 7, n: 2 });
check(a.choices.length === 2 && a.choices[0].text === b.choices[0].text && a.choices[1].text === b.choices[1].text, 'seeded n=2');
const two = ['', ''];
for await (const ch of await client.completions.create({ model: modelId, prompt: 'The jury said', max_tokens: 24,
  temperature: 0, n: 2, stream: true }))
  for (const c of ch.choices) two[c.index] += c.text;
check(two[0] === expected && two[1] === expected, 'streamed n=2');
const lp = await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 4, temperature: 0,
  logprobs: true, top_logprobs: 3 });
const lc = lp.choices[0].logprobs.content;
check(lc.length === 4 && lc[0].top_logprobs.length === 3 && lc[0].logprob <= 0 &&
      lc[0].top_logprobs[0].logprob >= lc[0].logprob - 1e-6, 'logprobs');

let slp = [];
for await (const ch of await client.chat.completions.create({ model: modelId, messages: msgs, max_tokens: 4, temperature: 0,
  logprobs: true, top_logprobs: 3, stream: true }))
  for (const c of ch.choices) if (c.logprobs) slp = slp.concat(c.logprobs.content);
check(slp.length === 4 && slp.every((t, i) => t.token === lc[i].token && Math.abs(t.logprob - lc[i].logprob) < 1e-5),
  'streamed logprobs differ from the non-streamed ones');

// 16 concurrent streaming clients: each equals its own single-client run
const prompts = Array.from({ length: 16 }, (_, i) => `Number ${i} of the jury`);
const single = [];
for (const p of prompts) single.push((await client.completions.create({ model: modelId, prompt: p, max_tokens: 20, temperature: 0 })).choices[0].text);
const t0 = Date.now();
const together = await Promise.all(prompts.map(async (p) => {
  let t = '';
  for await (const ch of await client.completions.create({ model: modelId, prompt: p, max_tokens: 20, temperature: 0, stream: true }))
    for (const c of ch.choices) t += c.text;
  return t;
}));
const secs = (Date.now() - t0) / 1000;
together.forEach((t, i) => check(t === single[i], `concurrent client ${i} differs: ${JSON.stringify(t)} vs ${JSON.stringify(single[i])}`));
console.log(`16 concurrent streams: all equal their single runs; ${(16 * 20 / secs).toFixed(1)} tokens/s aggregate`);

// raw HTTP errors: 4xx with {"error": {message, type, param, code}} and code = status
async function raw(path, body, headers = {}, method = 'POST') {
  const r = await fetch(base + path, { method, body, headers: { Authorization: `Bearer ${apiKey}`, ...headers } });
  const j = await r.json().catch(() => null);
  return [r.status, j];
}
const cases = [
  ['/v1/chat/completions', '{"messages": [', 400],
  ['/v1/chat/completions', '{"messages": "hi"}', 400],
  ['/v1/chat/completions', '{"messages": []}', 400],
  ['/v1/chat/completions', JSON.stringify({ model: 'nope', messages: msgs }), 404],
  ['/v1/completions', JSON.stringify({ prompt: 'x', temperature: 'hot' }), 400],
  ['/v1/completions', JSON.stringify({ prompt: 'x', max_tokens: -3 }), 400],
  ['/v1/completions', JSON.stringify({ prompt: 'word '.repeat(2000) }), 400],
  ['/v1/completions', Buffer.concat([Buffer.from('{"prompt": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), 400],
  ['/v1/completions', 'x'.repeat(2 << 20), 413],
  ['/v1/nothing', '{}', 404],
];
for (const [path, body, want] of cases) {
  const [st, j] = await raw(path, body);
  check(st === want && j && j.error && j.error.code === want && typeof j.error.message === 'string' && 'param' in j.error,
    `${path} ${String(body).slice(0, 40)}: status ${st}, ${JSON.stringify(j)}`);
}
const [st401] = await raw('/v1/models', undefined, { Authorization: 'Bearer wrong' }, 'GET');
check(st401 === 401, 'wrong key must give 401');
const nokey = await fetch(base + '/v1/completions', { method: 'POST', body: '{"prompt": "a"}' });
check(nokey.status === 401 && (await nokey.json()).error.code === 401, 'a missing key must give 401');
const h = await fetch(base + '/health');
check(h.status === 200, '/health is not behind the key');
const [mst, models] = await raw('/v1/models', undefined, {}, 'GET');
check(mst === 200 && models.data[0].id === modelId && models.data[0].max_model_len > 0, '/v1/models');
const [, tk] = await raw('/tokenize', JSON.stringify({ content: 'The jury said' }));
const [, dt] = await raw('/detokenize', JSON.stringify({ tokens: tk.tokens }));
check(tk.tokens.length > 0 && dt.content === 'The jury said', 'tokenize/detokenize round trip');
const m = await fetch(base + '/metrics', { headers: { Authorization: `Bearer ${apiKey}` } }).then((r) => r.text());
check(/keel_generation_tokens_total \d+/.test(m) && /keel_time_to_first_token_seconds_bucket/.test(m), '/metrics');

// a client that disconnects mid-stream frees its slot: the server keeps answering
{
  const ac = new AbortController();
  const s = await client.completions.create({ model: modelId, prompt: 'It', max_tokens: 200, stream: true }, { signal: ac.signal });
  let k = 0;
  try { for await (const _ of s) if (++k === 3) ac.abort(); } catch (e) { /* aborted */ }
  let running = -1;
  for (let k = 0; k < 50 && running !== 0; k++) { // its slot is freed at the engine's next step
    const mt = await fetch(base + '/metrics', { headers: { Authorization: `Bearer ${apiKey}` } }).then((r) => r.text());
    running = Number(/keel_requests_running (\d+)/.exec(mt)[1]);
    if (running) await new Promise((r) => setTimeout(r, 20));
  }
  check(running === 0, 'the disconnected client still holds a slot');
  const after = await client.completions.create({ model: modelId, prompt: 'The jury said', max_tokens: 24, temperature: 0 });
  check(after.choices[0].text === expected, 'after a disconnect');
}
console.log('openai client: completions, chat, streams, stop, seed, n, logprobs, errors, tokenize, metrics ok');
