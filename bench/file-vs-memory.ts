// The bench's random 169M-shaped model built in memory against the same weights loaded from an rwkv.cpp file
// (bench/write-random.ts), in one process: blocks of generated tokens alternate between the two, so both
// see the same moments of a shared machine. Checks that both give the same logits, then reports the median
// of the paired ratios file ÷ memory with its quartiles.
//   node dist/bench/write-random.js --dtype q8_0 --out /tmp/169m-q8_0.bin
//   node dist/bench/file-vs-memory.js --file /tmp/169m-q8_0.bin --dtype q8_0 [--threads 2] [--blocks 30]
import { parseArgs } from 'node:util';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { loadModel, modelFromSource } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import type { State } from '../src/models/state.js';
import { randomSource, RWKV4_169M } from '../src/models/random.js';
import type { DType } from '../src/tensor/dtype.js';

interface Side {
  name: string;
  model: RwkvModel;
  state: State;
  backend: WasmBackend;
  rates: number[];
}

const median = (xs: readonly number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      file: { type: 'string' },
      dtype: { type: 'string', default: 'f32' },
      threads: { type: 'string', default: '2' },
      blocks: { type: 'string', default: '30' },
      tokens: { type: 'string', default: '24' },
    },
  });
  if (values.file === undefined) throw new Error('--file FILE.bin (from bench/write-random.ts with the same --dtype) is required');
  const threads = Number(values.threads);
  const make = async (name: string): Promise<Side> => {
    const backend = await WasmBackend.create({ threads });
    const model =
      name === 'memory'
        ? modelFromSource(randomSource(RWKV4_169M, { dtype: values.dtype as DType, allocate: (n) => backend.allocateBytes(n) }), backend)
        : await loadModel(values.file!, { backend });
    const state = model.createState();
    for (let i = 0; i < 8; i++) await model.forward(i + 1, state);
    return { name, model, state, backend, rates: [] };
  };
  const [memory, file] = [await make('memory'), await make('file')] as [Side, Side];
  const a = await memory.model.forward(5, memory.model.createState());
  const b = await file.model.forward(5, file.model.createState());
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  const tokens = Number(values.tokens);
  for (let k = 0; k < Number(values.blocks); k++) {
    for (const s of k % 2 === 0 ? [memory, file] : [file, memory]) {
      const t = performance.now();
      for (let i = 0; i < tokens; i++) await s.model.forward((i * 7919 + k) % 50277, s.state);
      s.rates.push(tokens / ((performance.now() - t) / 1000));
    }
  }
  const ratios = file.rates.map((r, i) => r / memory.rates[i]!).sort((x, y) => x - y);
  const q = (p: number): string => ratios[Math.floor(p * (ratios.length - 1))]!.toFixed(3);
  console.log(
    `${values.dtype} × ${threads} threads: memory ${median(memory.rates).toFixed(1)} tok/s, file ${median(file.rates).toFixed(1)} tok/s, ` +
      `file ÷ memory ${median(ratios).toFixed(3)} (q25 ${q(0.25)}, q75 ${q(0.75)}); max |Δ logit| ${diff}`,
  );
  for (const s of [memory, file]) await s.backend.close();
}

await main();
