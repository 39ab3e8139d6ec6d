// tiktoken_ref.js: the reference GPT-2 encoder for the tokenizer tests and the benchmark.
// usage: node tiktoken_ref.js IN OUT   -- reads IN as UTF-8 (invalid bytes become U+FFFD, as
// TextDecoder does), encodes it with js-tiktoken@1.0.21's gpt2 ranks, special tokens treated
// as plain text, and writes the ids to OUT as little-endian uint16. Prints "tokens seconds".
'use strict';
const fs = require('fs');
const { Tiktoken } = require('js-tiktoken/lite');
const enc = new Tiktoken(require('js-tiktoken/ranks/gpt2'));
const [inPath, outPath] = process.argv.slice(2);
const text = fs.readFileSync(inPath, 'utf8');
const t0 = process.hrtime.bigint();
const ids = enc.encode(text, [], []);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
fs.writeFileSync(outPath, Buffer.from(Uint16Array.from(ids).buffer));
console.log(`${ids.length} ${seconds}`);
