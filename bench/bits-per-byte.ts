// Bits per byte of a model on a text it did not train on (the shipped model's card reports this).
//   node dist/bench/bits-per-byte.js --model FILE --text FILE [--bytes 100000] [--offset 0]
// For a byte-level model, bits per byte = −Σ log2 p(byte) / bytes; for other tokenizers the sum over the
// tokens is divided by the text's UTF-8 bytes.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Rwkv } from '../src/generation/rwkv.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      text: { type: 'string' },
      bytes: { type: 'string', default: '100000' },
      offset: { type: 'string', default: '0' },
      threads: { type: 'string' },
    },
  });
  if (values.model === undefined || values.text === undefined) throw new Error('--model and --text are required');
  const all = fs.readFileSync(values.text);
  const start = Number(values.offset);
  // Cut on a UTF-8 boundary so the text decodes as it is.
  let end = Math.min(all.length, start + Number(values.bytes));
  while (end < all.length && (all[end]! & 0xc0) === 0x80) end++;
  const text = all.subarray(start, end).toString('utf8');
  const rwkv = await Rwkv.load(values.model, values.threads !== undefined ? { threads: Number(values.threads) } : {});
  const t0 = performance.now();
  const r = await rwkv.score(text);
  const seconds = (performance.now() - t0) / 1000;
  const bytes = Buffer.byteLength(text, 'utf8');
  const bpb = -r.total / Math.LN2 / bytes;
  console.log(JSON.stringify({ model: values.model, text: values.text, offset: start, bytes, tokens: r.ids.length, bitsPerByte: bpb, seconds }));
  await rwkv.close();
}

await main();
