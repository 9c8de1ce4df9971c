// `npm run bench:grammar`: what a grammar costs generation. A random-weight model of the RWKV-4 169M shape
// with the World vocabulary (65536 ids: the largest trie) generates the same number of tokens from the same
// prompt and seed with no grammar, with the JSON grammar (any JSON object), and with a JSON Schema, the
// configurations taking turns (A B C A B C …), medians and min–max of --repeat runs. A random model is the
// worst case for the grammar: its draws are refused far more often than a trained model's, and each refusal
// costs a full mask (one walk of the vocabulary trie).
//   options: --tokens 64  --repeat 5  --threads 2  --out FILE.json
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { Rwkv } from '../src/generation/rwkv.js';
import { GrammarConstraint } from '../src/grammar/constraint.js';
import { parseGbnf, type Grammar } from '../src/grammar/gbnf.js';
import { JSON_OBJECT_GBNF } from '../src/grammar/json.js';
import { jsonSchemaToGbnf } from '../src/grammar/json-schema.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { modelFromSource } from '../src/models/load.js';
import { randomSource, RWKV4_169M } from '../src/models/random.js';
import { loadTokenizer } from '../src/tokenizers/load.js';

const WORLD = '../shared/fixtures/tokenizers/rwkv_vocab_v20230424.txt';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '64' },
    repeat: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
const tokens = Number(values.tokens);
const repeat = Number(values.repeat);

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 40 }, age: { type: 'integer' }, tags: { type: 'array', items: { type: 'string', maxLength: 20 }, maxItems: 5 } },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

async function main(): Promise<void> {
  if (!fs.existsSync(WORLD)) throw new Error(`the World vocabulary is needed: ${WORLD}`);
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} cores)`);
  const backend = await WasmBackend.create({ threads: Number(values.threads) });
  const tokenizer = await loadTokenizer(WORLD);
  const shape = { ...RWKV4_169M, nVocab: 65536 };
  const model = modelFromSource(randomSource(shape, { dtype: 'f32', allocate: (n) => backend.allocateBytes(n) }), backend);
  const rwkv = await Rwkv.fromModel(model, { tokenizer, prefixCache: false });
  // The trie is built once per tokenizer (≈ 0.2 s for 65536 ids), before any timing.
  const t0 = performance.now();
  new GrammarConstraint(JSON_OBJECT_GBNF, tokenizer, shape.nVocab);
  const trieMs = performance.now() - t0;

  const configs: { name: string; grammar: Grammar | undefined }[] = [
    { name: 'no grammar', grammar: undefined },
    { name: 'JSON object grammar', grammar: parseGbnf(JSON_OBJECT_GBNF) },
    { name: 'JSON Schema (3 properties)', grammar: parseGbnf(jsonSchemaToGbnf(SCHEMA)) },
  ];
  const runs = new Map<string, number[]>(configs.map((c) => [c.name, []]));
  const generated = new Map<string, number[]>(configs.map((c) => [c.name, []]));
  for (let r = 0; r < repeat + 1; r++) {
    for (const c of configs) {
      const generation = rwkv.generate('Here is the record as JSON:', { maxTokens: tokens, seed: 7 + r, topP: 0.9, ...(c.grammar !== undefined ? { grammar: c.grammar } : {}) });
      await generation.text();
      if (r === 0) continue; // warm-up
      const s = generation.stats;
      runs.get(c.name)!.push((s.generatedTokens * 1000) / s.generateMs);
      generated.get(c.name)!.push(s.generatedTokens);
    }
  }
  const base = median(runs.get('no grammar')!);
  console.log(`\nrandom RWKV-4 169M shape, f32, World vocabulary (65536), ${values.threads} threads, ${tokens} tokens per run, ${repeat} runs; trie built in ${trieMs.toFixed(0)} ms\n`);
  console.log('| configuration | tokens/s (median) | min–max | vs no grammar |');
  console.log('|---|---|---|---|');
  const rows: Record<string, unknown>[] = [];
  for (const c of configs) {
    const xs = runs.get(c.name)!;
    const m = median(xs);
    console.log(`| ${c.name} | ${m.toFixed(1)} | ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)} | ${(m / base).toFixed(3)}× |`);
    rows.push({ name: c.name, tokensPerSecond: xs, median: m, ratio: m / base, generated: generated.get(c.name) });
  }
  if (values.out !== undefined) {
    fs.writeFileSync(values.out, `${JSON.stringify({ date: new Date().toISOString(), load: os.loadavg(), threads: Number(values.threads), tokens, repeat, trieMs, rows }, null, 2)}\n`);
  }
  await rwkv.close();
  await backend.close();
}

await main();
