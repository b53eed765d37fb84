// Writes a varied, deterministic test text for tokenizer parity: fixed samples
// (English, code, CJK, kana, emoji, digit runs, whitespace and CR/LF runs,
// special tokens inside text) and seeded random mixtures of all of them.
// usage: node gen_text.mjs OUT [N_RANDOM_LINES] [SEED]
import fs from 'node:fs';

const out = process.argv[2];
const nRandom = Number(process.argv[3] || 3000);
let seed = BigInt(process.argv[4] || 1234);
function rnd(n) { // xorshift64*
  seed ^= seed << 13n; seed &= (1n << 64n) - 1n;
  seed ^= seed >> 7n;
  seed ^= seed << 17n; seed &= (1n << 64n) - 1n;
  return Number(seed % BigInt(n));
}
const fixed = [
  'Hello, world! This is a test of the tokenizer.',
  "It's John's book; they'll say we've done it, I'm sure he'd agree.",
  'The year 2024 had 366 days; pi is 3.14159265358979 and 1234567890123.',
  'int main(void) { printf("%d\\n", x[i] + 42); return 0; } // comment',
  'def f(x):\n    return {"a": [1, 2, 3], \'b\': None}\n\n\tif x >= 10: pass',
  'foo.com bar_id a.b.c __init__ @user #tag $var 50% a&b x*y',
  '深度求索是一家人工智能公司。我们训练大型语言模型，例如 DeepSeek-V3。',
  'こんにちは、世界！カタカナとひらがなの混合テキストです。東京タワー',
  '한국어 텍스트도 포함합니다. Ελληνικά κείμενα. Русский текст здесь.',
  'Emoji: 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇯🇵🇺🇸 and ✨ sparkles ✔︎',
  'Digits: 1 12 123 1234 12345 123456 ١٢٣٤ ①②③ ½ Ⅻ 0x1F600',
  'Spaces:  two   three    four\tTab\t\tTabs   \n  \n\n\n   trailing   ',
  'CRLF line\r\nnext line\r\n\r\nlone CR\rend\n\r\n\r',
  'Special <｜begin▁of▁sentence｜>inside<｜end▁of▁sentence｜> text <｜User｜>hi<｜Assistant｜><think>ok</think>',
  'Mixed: naïve café résumé Ångström coöperate e\u0301 combining ǅ ﬁ ligature',
  'Punctuation runs: !!! ??? ... --- ... ;;; ::: "quoted" «guillemets» „Anführungszeichen“',
  'Symbols: © ® ™ € £ ¥ ₿ ∑ ∫ √ ∞ ≠ ≤ ≥ → ⇒ ∀ ∃ ∈ ∉ ⊂ ⊃',
  'Arabic: مرحبا بالعالم Hebrew: שלום עולם Thai: สวัสดีชาวโลก Hindi: नमस्ते दुनिया',
  'Zero width: a\u200bb\u200cc\u200dd\ufeffe NBSP:\u00a0x\u2003y\u3000z',
  'URL https://example.com/path?q=1&r=2#frag and email someone@example.org',
];
const pools = [
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ',
  '0123456789', ' ', ' ', '  ', '\t', '\n', '\r\n', '\r',
  '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
  '的一是不了人我在有他这为之大来以个中上们到说时地也子就道',
  'あいうえおかきくけこアイウエオカキクケコーッ',
  'éèêëàâäôöûüçñßøåæœ', '😀😂🎉👍🔥✨❤️‍🔥', '١٢٣٤٥٦٧٨٩٠', '©®™€£¥∑∫√∞',
  '\u0301\u0308\u0327', '\u00a0\u2003\u3000\u200b\ufeff', 'абвгдежзийклмнопрст',
];
const words = ["the", "of", "and", "token", "model", "'s", "'re", "'ll", "don't", " ", "\n\n",
  "<｜begin▁of▁sentence｜>", "<｜User｜>", "<think>", "3.14", "2048", "fn()", "...", "—"];
const lines = [...fixed];
for (let i = 0; i < nRandom; i++) {
  let s = '';
  const len = 1 + rnd(60);
  for (let k = 0; k < len; k++) {
    if (rnd(4) === 0) { s += words[rnd(words.length)]; continue; }
    const p = [...pools[rnd(pools.length)]];
    const run = 1 + rnd(6);
    for (let r = 0; r < run; r++) s += p[rnd(p.length)];
  }
  lines.push(s.replace(/\n/g, ' ')); // one test case per line
}
fs.writeFileSync(out, lines.map((l) => l.replace(/\n/g, '\\n')).join('\n') + '\n');
