// One benchmark configuration, in its own process so that its peak RSS is its own. Prints one JSON line.
//   node dist/bench/run-one.js --model 169m|v7-0.1b|FILE --dtype f32 --threads 2 --gen 128 --prompt 512
// 169m and v7-0.1b are random models built in memory; FILE is loaded as users load a model (loadModel,
// weights read straight into the backend's memory), with --dtype int8 turning on the lossy int8 mode.
import { parseArgs } from 'node:util';
import { Rwkv } from '../src/generation/rwkv.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { loadModel, modelFromSource } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { summarize } from '../src/models/describe.js';
import { randomSource, RWKV4_169M, RWKV7_0B1 } from '../src/models/random.js';
import type { DType } from '../src/tensor/dtype.js';

export interface RunResult {
  model: string;
  /** 'memory': a random model built in this process; 'file': loaded from a file with loadModel. */
  /** 'exact': 'file' with quantized weights times exact activations (--exact-activations), for comparison. */
  source: 'memory' | 'file' | 'exact';
  dtype: string;
  threads: number;
  kernels: string;
  bytesPerToken: number;
  weightBytes: number;
  loadSeconds: number;
  /** RNN mode, tokens/s after warm-up. */
  generateTokensPerSecond: number;
  /**
   * The best rate over any 16 consecutive generated tokens: what the machine gives when its other
   * tenants leave the cores alone (two-thread rates here move by ±30 % within a run).
   */
  generateBestWindowTokensPerSecond: number;
  generateTokens: number;
  /** Parallel mode over the prompt, logits of the last position only. */
  promptTokensPerSecond: number;
  promptTokens: number;
  /** Prompt fed one token at a time (RNN mode), for comparison. */
  promptRnnTokensPerSecond: number | null;
  /** B sequences generating together (one pass per step, B rows per product): aggregate tokens/s by B. */
  batchTokensPerSecond: Record<string, number>;
  /**
   * N concurrent `Rwkv.generate` calls (the library's API: the Batcher joins them, sampling included):
   * aggregate tokens/s by N.
   */
  concurrentTokensPerSecond: Record<string, number>;
  peakRssBytes: number;
  /** Resident memory right after loading (a random model's peak includes the values it was built from). */
  rssAfterLoadBytes: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: '169m' },
      dtype: { type: 'string', default: 'f32' },
      threads: { type: 'string', default: '1' },
      gen: { type: 'string', default: '128' },
      prompt: { type: 'string', default: '512' },
      'rnn-prompt': { type: 'string', default: '0' },
      batches: { type: 'string', default: '' },
      concurrent: { type: 'string', default: '' },
      'exact-activations': { type: 'boolean', default: false },
    },
  });
  const threads = Number(values.threads);
  const exact = values['exact-activations'] === true;
  const backend = await WasmBackend.create({ threads, exactActivations: exact });
  const allocate = (n: number): Uint8Array => backend.allocateBytes(n);
  const t0 = performance.now();
  let model: RwkvModel;
  const dtype = values.dtype as DType;
  const source = values.model === '169m' || values.model === 'v7-0.1b' ? 'memory' : exact ? 'exact' : 'file';
  if (source === 'memory') {
    const shape = values.model === '169m' ? RWKV4_169M : RWKV7_0B1;
    model =
      values.dtype === 'int8'
        ? modelFromSource(randomSource(shape, { dtype: 'f32' }), backend, true)
        : modelFromSource(randomSource(shape, { dtype, allocate }), backend);
  } else {
    model = await loadModel(values.model!, { backend, int8: values.dtype === 'int8' });
  }
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  const vocab = model.config.nVocab;
  const ids = (n: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);

  // Warm-up: compile and touch everything once in each mode.
  const warm = model.createState();
  for (const id of ids(4)) await model.forward(id, warm);
  await model.forwardSequence(ids(Number(values.prompt)), model.createState());

  const genTokens = Number(values.gen);
  const state = model.createState();
  const stamps = [performance.now()];
  for (const id of ids(genTokens)) {
    await model.forward(id, state);
    stamps.push(performance.now());
  }
  const genSeconds = (stamps[genTokens]! - stamps[0]!) / 1000;
  const window = Math.min(16, genTokens);
  let bestWindow = Infinity;
  for (let i = 0; i + window <= genTokens; i++) bestWindow = Math.min(bestWindow, stamps[i + window]! - stamps[i]!);
  let t: number;

  const promptTokens = Number(values.prompt);
  t = performance.now();
  await model.forwardSequence(ids(promptTokens), model.createState());
  const promptSeconds = (performance.now() - t) / 1000;

  const rnnPrompt = Number(values['rnn-prompt']);
  let promptRnn: number | null = null;
  if (rnnPrompt > 0) {
    const s = model.createState();
    t = performance.now();
    for (const id of ids(rnnPrompt)) await model.forward(id, s);
    promptRnn = rnnPrompt / ((performance.now() - t) / 1000);
  }
  // Batched generation: B sequences, each its own state, one token each per pass. The batch sizes take
  // turns in rounds of a few steps each (B = 1, 2, 4, 8, 1, 2, …), so that every size sees the same
  // moments of a shared machine; each size's rate is the median of its rounds.
  const batchTokensPerSecond: Record<string, number> = {};
  const sizes = values.batches!.split(',').filter((x) => x !== '').map(Number);
  if (sizes.length > 0) {
    const states = new Map(sizes.map((b) => [b, Array.from({ length: b }, () => model.createState())]));
    for (const b of sizes) await model.run(states.get(b)!.map((st, i) => ({ tokens: [i + 1], state: st })));
    const rates = new Map<number, number[]>(sizes.map((b) => [b, []]));
    const steps = 6;
    for (let round = 0; round < Math.max(6, Math.round(genTokens / 8)); round++) {
      for (const b of round % 2 === 0 ? sizes : [...sizes].reverse()) {
        t = performance.now();
        for (let k = 0; k < steps; k++) await model.run(states.get(b)!.map((st, i) => ({ tokens: [(round * 131 + k * 31 + i * 7) % vocab], state: st })));
        rates.get(b)!.push((b * steps) / ((performance.now() - t) / 1000));
      }
    }
    for (const b of sizes) {
      const r = rates.get(b)!.sort((x, y) => x - y);
      batchTokensPerSecond[String(b)] = r[r.length >> 1]!;
    }
  }
  // Concurrent generate calls through the library's API: batched automatically, each with its own sampler.
  const concurrentTokensPerSecond: Record<string, number> = {};
  const concurrency = values.concurrent!.split(',').filter((x) => x !== '').map(Number);
  if (concurrency.length > 0) {
    const rwkv = await Rwkv.fromModel(model, { tokenizer: 'bytes', prefixCache: false });
    const each = Math.max(16, Math.round(genTokens / 2));
    const run = async (n: number): Promise<number> => {
      const t0 = performance.now();
      const counts = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          let tokens = 0;
          for await (const piece of rwkv.generate([i + 1], { maxTokens: each, seed: i, temperature: 1 })) tokens += piece.tokens.length;
          return tokens;
        }),
      );
      return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);
    };
    await run(Math.max(...concurrency)); // warm-up: the largest pass's work tensors, the samplers
    for (const n of concurrency) concurrentTokensPerSecond[String(n)] = await run(n);
  }
  const summary = summarize(model);
  const result: RunResult = {
    model: values.model!,
    source,
    dtype: values.dtype!,
    threads,
    kernels: backend.description,
    bytesPerToken: summary.bytesPerToken,
    weightBytes: summary.weightBytes,
    loadSeconds,
    generateTokensPerSecond: genTokens / genSeconds,
    generateBestWindowTokensPerSecond: window / (bestWindow / 1000),
    generateTokens: genTokens,
    promptTokensPerSecond: promptTokens / promptSeconds,
    promptTokens,
    promptRnnTokensPerSecond: promptRnn,
    batchTokensPerSecond,
    concurrentTokensPerSecond,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    rssAfterLoadBytes,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  await backend.close();
}

await main();
