// Benchmark (not a test): prompt processing in parallel mode vs RNN mode, tokens/s, for the fixture models
// and a random-weight RWKV-4 of the 169M shape. Prints a table; `--out FILE.json` saves every figure.
//   npm run bench -- [--out results.json] [--tokens-169m N] [--skip-169m]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel, modelFromSource } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { randomV4Source, RWKV4_169M } from '../src/models/random.js';
import { summarize } from '../src/models/describe.js';

/** Reference figures measured on this machine (../shared/DESIGN.md §4 and the speed issues). */
const DESIGN = {
  readBandwidthOneCore: 30e9, // bytes/s, C/AVX2 read loop, one core
  rwkvCpp169mPromptF32OneThread: 200, // tokens/s
  pytorch169mPromptF32OneThread: 385, // tokens/s
};

interface Row {
  model: string;
  mode: 'rnn' | 'parallel';
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  /** For RNN mode: the time per token if it were bound by memory bandwidth (bytes read ÷ 30 GB/s). */
  bandwidthFloorTokensPerSecond: number;
}

function time(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

function measure(name: string, model: RwkvModel, ids: number[], rnnTokens: number, rows: Row[]): void {
  const floor = DESIGN.readBandwidthOneCore / summarize(model).bytesPerToken;
  // Warm-up: one short run of each mode so that the JIT has compiled the kernels.
  model.forwardSequence(ids.slice(0, Math.min(8, ids.length)), model.createState());
  for (let i = 0; i < Math.min(4, rnnTokens); i++) model.forward(ids[i]!, model.createState());
  const rnnIds = ids.slice(0, rnnTokens);
  const rnnState = model.createState();
  const rnnSeconds = time(() => {
    for (const id of rnnIds) model.forward(id, rnnState);
  });
  rows.push({
    model: name,
    mode: 'rnn',
    tokens: rnnIds.length,
    seconds: rnnSeconds,
    tokensPerSecond: rnnIds.length / rnnSeconds,
    bandwidthFloorTokensPerSecond: floor,
  });
  const parSeconds = time(() => model.forwardSequence(ids, model.createState(), { chunk: 64 }));
  rows.push({
    model: name,
    mode: 'parallel',
    tokens: ids.length,
    seconds: parSeconds,
    tokensPerSecond: ids.length / parSeconds,
    bandwidthFloorTokensPerSecond: floor,
  });
}

function main(): void {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      'tokens-169m': { type: 'string', default: '64' },
      'skip-169m': { type: 'boolean', default: false },
      fixtures: { type: 'string', default: process.env.RWKV_FIXTURES ?? path.resolve('..', 'shared', 'fixtures') },
    },
  });
  const rows: Row[] = [];
  const fixtures = values.fixtures!;
  const input = path.join(fixtures, 'input-1024.txt');
  if (fs.existsSync(input)) {
    const ids = Array.from(fs.readFileSync(input)).slice(0, 512);
    for (const m of ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K']) {
      const file = path.join(fixtures, `tiny-rwkv-${m}-FP32.bin`);
      try {
        measure(`${m} FP32`, loadModel(file), ids, 512, rows);
      } catch (e) {
        console.error(`# ${m}: ${(e as Error).message}`);
      }
    }
  } else {
    console.error(`# fixtures not found at ${fixtures}; only the random 169M model is measured`);
  }
  if (!values['skip-169m']) {
    const n = Number(values['tokens-169m']);
    const model = modelFromSource(randomV4Source(RWKV4_169M));
    const ids = Array.from({ length: n }, (_, i) => (i * 7919) % RWKV4_169M.nVocab);
    measure('RWKV-4 169M shape, random, FP32', model, ids, Math.min(n, 16), rows);
  }

  const header = ['model', 'mode', 'tokens', 'tokens/s', 'bandwidth floor tok/s', '% of floor'];
  const table = rows.map((r) => [
    r.model,
    r.mode,
    String(r.tokens),
    r.tokensPerSecond.toFixed(1),
    r.bandwidthFloorTokensPerSecond.toFixed(1),
    r.mode === 'rnn' ? `${((100 * r.tokensPerSecond) / r.bandwidthFloorTokensPerSecond).toFixed(1)}%` : '—',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of table) console.log(line(row));
  const big = rows.find((r) => r.model.startsWith('RWKV-4 169M') && r.mode === 'parallel');
  if (big !== undefined) {
    console.log(
      `\n169M-shape prompt, 1 thread: ${big.tokensPerSecond.toFixed(1)} tokens/s = ` +
        `${((100 * big.tokensPerSecond) / DESIGN.rwkvCpp169mPromptF32OneThread).toFixed(1)}% of rwkv.cpp (${DESIGN.rwkvCpp169mPromptF32OneThread}), ` +
        `${((100 * big.tokensPerSecond) / DESIGN.pytorch169mPromptF32OneThread).toFixed(1)}% of PyTorch (${DESIGN.pytorch169mPromptF32OneThread}).`,
    );
  }
  console.log('(floor: bytes read per token ÷ 30 GB/s, the one-core read bandwidth in DESIGN.md §4; kernels: plain TypeScript, 1 thread)');
  if (values.out !== undefined) {
    const result = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, design: DESIGN, rows };
    fs.writeFileSync(values.out, JSON.stringify(result, null, 2));
    console.log(`wrote ${values.out}`);
  }
}

main();
