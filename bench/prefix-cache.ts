// The prefix-state cache's effect: two prompts that share a long prefix, the second read with and without
// the cache (a benchmark, not a test). Also the sampler's cost per token at the model's vocabulary size.
//   node dist/bench/prefix-cache.js [--model 169m|v7-0.1b|FILE] [--dtype f32] [--threads 2]
//                                   [--prefix 1024] [--suffix 32] [--repeat 3] [--json]
import { parseArgs } from 'node:util';
import { Rwkv } from '../src/generation/rwkv.js';
import { Rng } from '../src/util/rng.js';
import { TokenSampler, validateGenerateOptions } from '../src/generation/generate.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { loadModel, modelFromSource } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { randomSource, RWKV4_169M, RWKV7_0B1 } from '../src/models/random.js';
import type { DType } from '../src/tensor/dtype.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: '169m' },
      dtype: { type: 'string', default: 'f32' },
      threads: { type: 'string', default: '2' },
      prefix: { type: 'string', default: '1024' },
      suffix: { type: 'string', default: '32' },
      repeat: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
    },
  });
  const threads = Number(values.threads);
  const backend = await WasmBackend.create({ threads });
  let model: RwkvModel;
  if (values.model === '169m' || values.model === 'v7-0.1b') {
    const shape = values.model === '169m' ? RWKV4_169M : RWKV7_0B1;
    model = modelFromSource(randomSource(shape, { dtype: values.dtype as DType, allocate: (n) => backend.allocateBytes(n) }), backend);
  } else {
    model = await loadModel(values.model!, { backend });
  }
  const vocab = model.config.nVocab;
  const ids = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729 + 13) % vocab);
  const prefix = ids(Number(values.prefix), 1);
  const suffixes = Array.from({ length: Number(values.repeat) + 2 }, (_, k) => ids(Number(values.suffix), 100 + k));
  const prompt = (k: number): number[] => [...prefix, ...suffixes[k]!];
  // Token-id prompts: the byte tokenizer only stands in for text output.
  const cached = await Rwkv.fromModel(model, { tokenizer: 'bytes' });
  const uncached = await Rwkv.fromModel(model, { tokenizer: 'bytes', prefixCache: false });
  const promptMs = async (rwkv: Rwkv, p: number[]): Promise<{ ms: number; reused: number }> => {
    const g = rwkv.generate(p, { maxTokens: 1, seed: 1 });
    await g.text();
    return { ms: g.stats.promptMs, reused: g.stats.reusedTokens };
  };

  await promptMs(uncached, ids(64, 7)); // warm-up: compile and touch the weights
  await promptMs(cached, prompt(0)); // fills the cache with the prefix's snapshots
  const rows: { what: string; ms: number; reused: number; read: number }[] = [];
  const n = Number(values.repeat);
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const without: number[] = [];
  const withCache: number[] = [];
  let reused = 0;
  for (let k = 1; k <= n; k++) {
    without.push((await promptMs(uncached, prompt(k))).ms);
    const r = await promptMs(cached, prompt(k));
    withCache.push(r.ms);
    reused = r.reused;
  }
  const total = prompt(1).length;
  rows.push({ what: 'no cache', ms: median(without), reused: 0, read: total });
  rows.push({ what: 'cache, shared prefix', ms: median(withCache), reused, read: total - reused });
  const exact = await promptMs(cached, prompt(1));
  rows.push({ what: 'cache, same prompt again', ms: exact.ms, reused: exact.reused, read: total - exact.reused });

  // The sampler alone: top-p, top-k, penalties on this vocabulary.
  const rng = new Rng(1);
  const logits = Float32Array.from({ length: vocab }, () => 10 * rng.next() ** 4);
  const sampler = new TokenSampler(
    validateGenerateOptions({ topP: 0.85, topK: 40, presencePenalty: 0.5, frequencyPenalty: 0.5 }, vocab).sampler,
    1,
  );
  const draws = 200;
  let t = performance.now();
  for (let i = 0; i < draws; i++) sampler.accept(sampler.draw(logits));
  const samplerMs = (performance.now() - t) / draws;
  t = performance.now();
  const s = model.createState();
  for (let i = 0; i < 16; i++) await model.forward(i, s);
  const forwardMs = (performance.now() - t) / 16;

  const label = `${values.model} ${values.dtype}, ${threads} thread(s), ${backend.description}`;
  if (values.json) {
    console.log(JSON.stringify({ model: label, prefix: prefix.length, suffix: Number(values.suffix), rows, samplerMs, forwardMs, cacheBytes: cached.cache!.bytes }));
  } else {
    console.log(`prefix cache — ${label}; prompts: ${prefix.length}-token shared prefix + ${values.suffix} tokens (median of ${n})`);
    for (const r of rows) {
      console.log(`  ${r.what.padEnd(26)} ${r.ms.toFixed(1).padStart(9)} ms   read ${String(r.read).padStart(5)} tokens, reused ${String(r.reused).padStart(5)}`);
    }
    console.log(`  time saved on the second prompt: ${(rows[0]!.ms - rows[1]!.ms).toFixed(1)} ms (${(rows[0]!.ms / rows[1]!.ms).toFixed(1)}× faster)`);
    console.log(`  cache holds ${cached.cache!.size} snapshots, ${(cached.cache!.bytes / 2 ** 20).toFixed(1)} MiB`);
    console.log(`sampler (top-p 0.85, top-k 40, penalties) on ${vocab} logits: ${samplerMs.toFixed(2)} ms/token; one RNN forward: ${forwardMs.toFixed(1)} ms`);
  }
  await backend.close();
}

await main();
