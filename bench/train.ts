// `node dist/bench/train.js`: training speed on this machine (a benchmark, not a test), of any architecture
// of the trainer's registry (--arch rwkv4 (default), rwkv7, gpt).
// A 4-layer, 256-wide model (vocab 256, ffn 1024), context 256, batch 8, on 1 and 2 threads: tokens/s of
// whole training steps (forward, backward, clipping, AdamW), the time in the matrix products and in the
// rest, and the GFLOP/s of the products against the kernel's own peak on a large product of the same
// backend. Each thread count runs in its own process.
//   options: --arch rwkv4|rwkv7|gpt  --threads 1,2  --steps 6  --layers 4 --width 256 --context 256 --batch 8  --out FILE.json
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Rng } from '../src/util/rng.js';
import { WasmKernels } from '../src/kernels/wasm-kernels.js';
import { AdamW, clipGradNorm } from '../src/training/adamw.js';
import { WasmGemm, type Gemm } from '../src/training/gemm.js';
import { architecture } from '../src/training/architecture.js';
import type { Vec } from '../src/training/ops.js';

/** A Gemm that times its calls. */
class TimedGemm implements Gemm {
  readonly precision: 'f32' | 'f64';
  readonly name: string;
  seconds = 0;
  flops = 0;
  constructor(private readonly inner: Gemm) {
    this.precision = inner.precision;
    this.name = inner.name;
  }
  // The recurrences and element-wise kernels are not products: they count in "the rest".
  get kernels(): Gemm['kernels'] {
    return this.inner.kernels;
  }
  allocate(length: number): Vec {
    return this.inner.allocate(length);
  }
  private time(flops: number, f: () => void): void {
    const t0 = performance.now();
    f();
    this.seconds += (performance.now() - t0) / 1000;
    this.flops += flops;
  }
  forward(y: Vec, x: Vec, w: Vec, n: number, o: number, i: number): void {
    this.time(2 * n * o * i, () => this.inner.forward(y, x, w, n, o, i));
  }
  backwardInput(dx: Vec, dy: Vec, w: Vec, n: number, o: number, i: number): void {
    this.time(2 * n * o * i, () => this.inner.backwardInput(dx, dy, w, n, o, i));
  }
  backwardWeight(dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void {
    this.time(2 * n * o * i, () => this.inner.backwardWeight(dw, dy, x, n, o, i));
  }
}

export interface TrainBenchResult {
  threads: number;
  kernels: string;
  tokensPerSecond: number;
  stepSeconds: number;
  matmulSeconds: number;
  otherSeconds: number;
  /** Matrix-product FLOP/s over whole steps, and inside the products only. */
  gflopsOverall: number;
  gflopsInProducts: number;
  /** The kernel's Y = X·Wᵀ on a large product (n × 1024 × 256 and n × 256 × 1024), best of 5. */
  gflopsPeak: number;
  parameters: number;
}

async function runOne(threads: number, o: { arch: string; steps: number; layers: number; width: number; context: number; batch: number }): Promise<TrainBenchResult> {
  const backend = await WasmKernels.create({ threads });
  const wasm = new WasmGemm(backend);
  // Peak of the kernel on the training's own shapes, as large products (best of several, measured before
  // and after the steps: the machine may be shared).
  const n = o.batch * o.context;
  const shapes = [
    [4 * o.width, o.width],
    [o.width, 4 * o.width],
  ] as const;
  const probes = shapes.map(([out, inp]) => {
    const w = wasm.allocate(out * inp);
    w.fill(0.01);
    return { out, inp, w, x: new Float32Array(n * inp).map((_, i) => Math.sin(i)), y: new Float32Array(n * out) };
  });
  let peak = 0;
  const measurePeak = (): void => {
    for (const { out, inp, w, x, y } of probes) {
      for (let r = 0; r < 6; r++) {
        const t0 = performance.now();
        wasm.forward(y, x, w, n, out, inp);
        peak = Math.max(peak, (2 * n * out * inp) / ((performance.now() - t0) / 1000) / 1e9);
      }
    }
  };
  measurePeak();
  const gemm = new TimedGemm(wasm);
  const arch = architecture(o.arch);
  const shape = arch.shapeFor({ layers: o.layers, width: o.width, nVocab: 256, context: o.context, heads: undefined, untiedHead: false });
  const model = arch.create(shape, gemm);
  arch.init(model, { seed: 1, embScale: 1e-4 });
  const opt = new AdamW(model.params);
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: n }, () => rng.nextU32() % 256);
  const targets = Int32Array.from({ length: n }, () => rng.nextU32() % 256);
  const step = (): void => {
    model.forward(ids, targets, o.batch, o.context);
    model.backward();
    clipGradNorm(model.params, 1);
    opt.step(1e-4);
  };
  step(); // warm-up (JIT, buffers)
  gemm.seconds = 0;
  gemm.flops = 0;
  const t0 = performance.now();
  for (let s = 0; s < o.steps; s++) step();
  const seconds = (performance.now() - t0) / 1000;
  measurePeak();
  await backend.close();
  const flopsPerStep = model.matmulFlopsPerToken * n;
  return {
    threads,
    kernels: wasm.name,
    tokensPerSecond: (o.steps * n) / seconds,
    stepSeconds: seconds / o.steps,
    matmulSeconds: gemm.seconds / o.steps,
    otherSeconds: (seconds - gemm.seconds) / o.steps,
    gflopsOverall: (flopsPerStep * o.steps) / seconds / 1e9,
    gflopsInProducts: gemm.flops / gemm.seconds / 1e9,
    gflopsPeak: peak,
    parameters: model.size,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      arch: { type: 'string', default: 'rwkv4' },
      threads: { type: 'string', default: '1,2' },
      steps: { type: 'string', default: '6' },
      layers: { type: 'string', default: '4' },
      width: { type: 'string', default: '256' },
      context: { type: 'string', default: '256' },
      batch: { type: 'string', default: '8' },
      out: { type: 'string' },
      one: { type: 'string' }, // internal: run one thread count in this process
    },
  });
  const o = { arch: values.arch!, steps: Number(values.steps), layers: Number(values.layers), width: Number(values.width), context: Number(values.context), batch: Number(values.batch) };
  architecture(o.arch); // an unknown --arch fails here, naming the known ones
  if (values.one !== undefined) {
    process.stdout.write(`${JSON.stringify(await runOne(Number(values.one), o))}\n`);
    return;
  }
  const here = fileURLToPath(import.meta.url);
  const results: TrainBenchResult[] = [];
  console.log(`${architecture(o.arch).title} training: ${o.layers} layers × ${o.width}, context ${o.context}, batch ${o.batch} (${o.batch * o.context} tokens/step), ${o.steps} timed steps`);
  for (const th of values.threads!.split(',').map(Number)) {
    const args = [here, '--one', String(th), ...['arch', 'steps', 'layers', 'width', 'context', 'batch'].flatMap((k) => [`--${k}`, String(o[k as keyof typeof o])])];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    if (r.status !== 0) {
      console.error(`threads ${th} failed: ${r.stderr}`);
      continue;
    }
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as TrainBenchResult;
    results.push(res);
    console.log(
      `threads ${th}: ${res.tokensPerSecond.toFixed(0)} tokens/s, ${res.stepSeconds.toFixed(2)} s/step ` +
        `(products ${res.matmulSeconds.toFixed(2)} s, rest ${res.otherSeconds.toFixed(2)} s); ` +
        `${res.gflopsOverall.toFixed(1)} GFLOP/s overall, ${res.gflopsInProducts.toFixed(1)} inside the products, kernel peak ${res.gflopsPeak.toFixed(1)} ` +
        `(${((100 * res.gflopsOverall) / res.gflopsPeak).toFixed(0)}% of peak overall) [${res.kernels}]`,
    );
  }
  if (values.out !== undefined) fs.writeFileSync(values.out, JSON.stringify({ config: o, results }, null, 2));
}

await main();
