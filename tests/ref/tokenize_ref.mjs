// Reference tokenizer for keel's parity tests and speed benchmark.
// usage: node tokenize_ref.mjs IMPL tokenizer.json INPUT [--lines] [--bench]
//   IMPL: lenml (@lenml/tokenizers, the DeepSeek package's own implementation)
//         hf    (@huggingface/tokenizers, the Tokenizers.js port)
// Prints the ids of INPUT without special tokens added (one line per input
// line with --lines). With --bench prints "MB/s" of encoding the whole input.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.resolve('package.json'));
const [impl, tokPath, input, ...flags] = process.argv.slice(2);
const json = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
const cfgPath = path.join(path.dirname(tokPath), 'tokenizer_config.json');
const config = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, 'utf8')) : {};
let encode;
if (impl === 'lenml') {
  const { TokenizerLoader } = require('@lenml/tokenizers');
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config });
  encode = (s) => tok.encode(s, { add_special_tokens: false });
} else {
  const m = await import(require.resolve('@huggingface/tokenizers'));
  const Tokenizer = m.Tokenizer ?? m.default.Tokenizer;
  const tok = new Tokenizer(json, config);
  encode = (s) => tok.encode(s, { add_special_tokens: false }).ids;
}
const text = fs.readFileSync(input, 'utf8');
if (flags.includes('--bench')) {
  encode(text.slice(0, 1000)); // warm up
  const t0 = process.hrtime.bigint();
  const n = encode(text).length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${impl} ${(Buffer.byteLength(text) / 1e6 / s).toFixed(3)} MB/s ${n} tokens ${s.toFixed(3)} s`);
} else if (flags.includes('--lines')) {
  const out = text.split('\n').map((l) => encode(l).join(' '));
  if (text.endsWith('\n')) out.pop();
  process.stdout.write(out.join('\n') + '\n');
} else {
  process.stdout.write(encode(text).join(' ') + '\n');
}
