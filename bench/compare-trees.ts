// Old code against new, side by side in one process: the random 169M-shaped model built by each of two
// builds of rwkv-ts (this one and another checkout's dist/, e.g. a `git worktree` of an older commit),
// then blocks of generation (RNN mode) and prompt passes (parallel mode) alternating between them, A B B A
// …, so both see the same moments of a shared machine. Reports medians of each and the median of the
// paired ratios (new ÷ old, block by block) with its quartiles.
//   node dist/bench/compare-trees.js --old ../old/dist [--dtypes f32,q8_0] [--threads 1,2] [--blocks 40]
//        [--tokens 24] [--prompt 512] [--prompt-blocks 6] [--out FILE.json]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** What the bench needs of a build, old or new (the older API was synchronous, which `await` accepts). */
interface AnyModel {
  createState(): unknown;
  forward(token: number, state: unknown): unknown;
  forwardSequence(tokens: readonly number[], state: unknown): unknown;
}
interface AnyBackend {
  allocateBytes?: (n: number) => Uint8Array;
  allocate?: (n: number) => Uint8Array;
  close(): Promise<void>;
}
interface Side {
  name: 'old' | 'new';
  model: AnyModel;
  backend: AnyBackend;
  state: unknown;
  generate: number[];
  prompt: number[];
}

const median = (xs: readonly number[]): number => {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const quantile = (xs: readonly number[], q: number): number => xs.slice().sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;

async function build(name: Side['name'], dist: string, dtype: string, threads: number): Promise<Side> {
  const at = (p: string): string => path.join(path.resolve(dist), p);
  const { WasmBackend } = (await import(at('src/kernels/wasm-backend.js'))) as { WasmBackend: { create(o: { threads: number }): Promise<AnyBackend> } };
  const { modelFromSource } = (await import(at('src/models/load.js'))) as { modelFromSource(s: unknown, b: AnyBackend): AnyModel };
  const { randomSource, RWKV4_169M } = (await import(at('src/models/random.js'))) as { randomSource(shape: unknown, o: unknown): unknown; RWKV4_169M: unknown };
  const backend = await WasmBackend.create({ threads });
  const allocate = backend.allocateBytes?.bind(backend) ?? backend.allocate!;
  const model = modelFromSource(randomSource(RWKV4_169M, { dtype, allocate }), backend);
  const state = model.createState();
  for (let i = 0; i < 8; i++) await model.forward(i + 1, state);
  return { name, model, backend, state, generate: [], prompt: [] };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      old: { type: 'string' },
      new: { type: 'string', default: path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..') },
      dtypes: { type: 'string', default: 'f32' },
      threads: { type: 'string', default: '1,2' },
      blocks: { type: 'string', default: '40' },
      tokens: { type: 'string', default: '24' },
      prompt: { type: 'string', default: '512' },
      'prompt-blocks': { type: 'string', default: '6' },
      out: { type: 'string' },
    },
  });
  if (values.old === undefined) throw new Error('--old DIST (another build of rwkv-ts: its dist/ folder) is required');
  const blocks = Number(values.blocks);
  const tokens = Number(values.tokens);
  const promptTokens = Array.from({ length: Number(values.prompt) }, (_, i) => (i * 7919 + 13) % 50277);
  const rows: Record<string, unknown>[] = [];
  console.log(`# old: ${values.old}  new: ${values.new}  load ${os.loadavg()[0]!.toFixed(2)}`);
  console.log('| dtype | threads | gen old tok/s | gen new tok/s | paired new/old (q25–q75) | prompt old tok/s | prompt new tok/s | paired new/old (q25–q75) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const dtype of values.dtypes!.split(',')) {
    for (const threads of values.threads!.split(',').map(Number)) {
      const sides = [await build('old', values.old, dtype, threads), await build('new', values.new!, dtype, threads)];
      for (let b = 0; b < blocks; b++) {
        for (const s of b % 2 === 0 ? sides : [sides[1]!, sides[0]!]) {
          const t = performance.now();
          for (let i = 0; i < tokens; i++) await s.model.forward((i * 7919 + b) % 50277, s.state);
          s.generate.push(tokens / ((performance.now() - t) / 1000));
        }
      }
      for (let b = 0; b < Number(values['prompt-blocks']); b++) {
        for (const s of b % 2 === 0 ? sides : [sides[1]!, sides[0]!]) {
          const t = performance.now();
          await s.model.forwardSequence(promptTokens, s.model.createState());
          s.prompt.push(promptTokens.length / ((performance.now() - t) / 1000));
        }
      }
      const [o, n] = sides as [Side, Side];
      const genRatios = n.generate.map((r, i) => r / o.generate[i]!);
      const promptRatios = n.prompt.map((r, i) => r / o.prompt[i]!);
      const f = (x: number): string => x.toFixed(1);
      const r = (xs: number[]): string => `${median(xs).toFixed(3)} (${quantile(xs, 0.25).toFixed(3)}–${quantile(xs, 0.75).toFixed(3)})`;
      console.log(`| ${dtype} | ${threads} | ${f(median(o.generate))} | ${f(median(n.generate))} | ${r(genRatios)} | ${f(median(o.prompt))} | ${f(median(n.prompt))} | ${r(promptRatios)} |`);
      rows.push({ dtype, threads, blocks, tokens, promptTokens: promptTokens.length, old: { generate: o.generate, prompt: o.prompt }, new: { generate: n.generate, prompt: n.prompt } });
      for (const s of sides) await s.backend.close();
    }
  }
  if (values.out !== undefined) {
    fs.writeFileSync(values.out, JSON.stringify({ date: new Date().toISOString(), old: values.old, new: values.new, cpus: os.cpus().length, rows }, null, 1));
    console.log(`# wrote ${values.out}`);
  }
}

await main();
