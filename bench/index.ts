// `npm run bench`: the speed of rwkv-ts on this machine (a benchmark, not a test).
//  - the machine's read bandwidth, measured by a WASM SIMD read loop with 1 and 2 threads;
//  - random-weight models of RWKV-4 169M and RWKV-7 0.1B shape in f32, bf16, Q8_0, Q5_1 and Q4_0, 1 and 2
//    threads: generation tokens/s (RNN mode) and its % of the bandwidth floor, prompt tokens/s (parallel
//    mode, logits of the last position), peak RSS;
//  - the fixture models, parallel vs RNN prompt processing.
// Each configuration runs in its own process, right after a read-bandwidth probe in another process. The
// machine's other tenants only ever slow a run down, and two-thread figures move by ±30 % within minutes,
// so the bench reports both the mean rate and the best 16-token window, and measures the floor against
// the median bandwidth of all the run's probes with that many threads (single probes stray by ±30 %).
// With --repeat N each configuration runs N times and the fastest counts.
// `npm run bench -- --out FILE.json` writes every figure.
//   options: --out FILE  --quick (fewer tokens)  --models 169m,v7-0.1b  --dtypes f32,q8_0  --threads 1,2
//            --repeat N
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { WasmKernels } from '../src/kernels/wasm-kernels.js';
import { loadModel } from '../src/models/load.js';
import type { CeilingResult } from './kernel-ceiling.js';
import type { RunResult } from './run-one.js';

/** Figures measured on this machine by others (../shared/DESIGN.md §4, issue 5), RWKV-4 169M. */
const PEERS = {
  rwkvCppGenerate: {
    f32: [45, 70],
    f16: [80, 100],
    q8_0: [105, 115],
    q5_1: [113, 110],
  } as Record<string, [number, number]>,
  rwkvCppPromptF32: [200, 290] as [number, number],
  pytorchPromptF32: [385, 400] as [number, number],
};

const here = path.dirname(fileURLToPath(import.meta.url));

function runOne(args: string[]): RunResult | undefined {
  const r = spawnSync(process.execPath, [path.join(here, 'run-one.js'), ...args], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) {
    process.stderr.write(`# ${args.join(' ')} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as RunResult;
}

/** The read bandwidth with `threads` threads right now, in bytes/s (a probe in its own process). */
function probeBandwidth(threads: number): number | undefined {
  const r = spawnSync(process.execPath, [path.join(here, 'bandwidth-probe.js'), '--threads', String(threads)], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { bytesPerSecond: number }).bytesPerSecond;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      models: { type: 'string', default: '169m,v7-0.1b' },
      dtypes: { type: 'string', default: 'f32,bf16,int8,q8_0,q5_1,q4_0' },
      threads: { type: 'string', default: '1,2' },
      repeat: { type: 'string', default: '1' },
      fixtures: { type: 'string', default: process.env.RWKV_FIXTURES ?? path.resolve('..', 'shared', 'fixtures') },
    },
  });
  const threadCounts = values.threads!.split(',').map(Number);
  const gen = values.quick ? 16 : 128;
  const prompt = values.quick ? 64 : 512;

  // 1. Read bandwidth.
  const bandwidth: Record<number, number> = {};
  for (const t of threadCounts) {
    const b = await WasmKernels.create({ threads: t });
    bandwidth[t] = b.measureReadBandwidth();
    await b.close();
  }
  console.log(`read bandwidth (WASM SIMD read loop): ${threadCounts.map((t) => `${t} thread(s) ${(bandwidth[t]! / 1e9).toFixed(1)} GB/s`).join(', ')}\n`);

  // 1b. Each kernel's in-cache ceiling on one thread (is it memory- or compute-bound?).
  const ceilingRun = spawnSync(process.execPath, [path.join(here, 'kernel-ceiling.js')], { encoding: 'utf8' });
  const ceilings: CeilingResult[] =
    ceilingRun.status === 0 ? ceilingRun.stdout.trim().split('\n').map((l) => JSON.parse(l) as CeilingResult) : [];
  if (ceilings.length > 0) {
    console.log('kernel ceilings (in cache, 1 thread):');
    console.log(
      table(
        ['dtype', 'G values/s', 'GB/s of weights', '× 1-thread bandwidth'],
        ceilings.map((c) => [c.dtype, (c.valuesPerSecond / 1e9).toFixed(2), (c.bytesPerSecond / 1e9).toFixed(1), (c.bytesPerSecond / bandwidth[threadCounts[0]!]!).toFixed(2)]),
      ),
    );
    console.log('');
  }

  // 2. Model shapes × dtypes × threads, each next to a bandwidth probe; the fastest of `repeat` runs.
  const repeat = Math.max(1, Number(values.repeat));
  const results: (RunResult & { probeBytesPerSecond: number })[] = [];
  for (const model of values.models!.split(',')) {
    for (const dtype of values.dtypes!.split(',')) {
      for (const t of threadCounts) {
        let best: (RunResult & { probeBytesPerSecond: number }) | undefined;
        for (let i = 0; i < repeat; i++) {
          const probe = probeBandwidth(t) ?? bandwidth[t]!;
          const run = runOne(['--model', model, '--dtype', dtype, '--threads', String(t), '--gen', String(gen), '--prompt', String(prompt)]);
          if (run === undefined) continue;
          const previous = best;
          if (previous === undefined || run.generateTokensPerSecond > previous.generateTokensPerSecond) best = { ...run, probeBytesPerSecond: probe };
          if (previous !== undefined) {
            // Each figure is the best any run gave.
            best!.promptTokensPerSecond = Math.max(run.promptTokensPerSecond, previous.promptTokensPerSecond);
            best!.generateBestWindowTokensPerSecond = Math.max(run.generateBestWindowTokensPerSecond, previous.generateBestWindowTokensPerSecond);
          }
        }
        const r = best;
        if (r === undefined) continue;
        results.push(r);
        console.error(`# ${model} ${dtype} ×${t}: ${r.generateTokensPerSecond.toFixed(1)} tok/s generating, ${r.promptTokensPerSecond.toFixed(1)} tok/s prompt`);
      }
    }
  }
  // The machine's bandwidth: the median of every probe with that many threads.
  const typicalBandwidth: Record<number, number> = {};
  for (const t of threadCounts) {
    const probes = [bandwidth[t]!, ...results.filter((r) => r.threads === t).map((r) => r.probeBytesPerSecond)].sort((a, b) => a - b);
    typicalBandwidth[t] = probes[Math.floor(probes.length / 2)]!;
  }
  const rows = results.map((r) => {
    const floor = typicalBandwidth[r.threads]! / r.bytesPerToken;
    const best = r.generateBestWindowTokensPerSecond;
    const peer = r.model === '169m' ? PEERS.rwkvCppGenerate[r.dtype]?.[r.threads - 1] : undefined;
    const promptPeer = r.model === '169m' && r.dtype === 'f32' ? PEERS.rwkvCppPromptF32[r.threads - 1] : undefined;
    return [
      r.model,
      r.dtype,
      String(r.threads),
      (r.bytesPerToken / 2 ** 20).toFixed(1),
      (r.probeBytesPerSecond / 1e9).toFixed(1),
      r.generateTokensPerSecond.toFixed(1),
      best.toFixed(1),
      floor.toFixed(1),
      `${((100 * r.generateTokensPerSecond) / floor).toFixed(0)}%`,
      `${((100 * best) / floor).toFixed(0)}%`,
      peer !== undefined ? `${((100 * r.generateTokensPerSecond) / peer).toFixed(0)}%` : '—',
      r.promptTokensPerSecond.toFixed(1),
      promptPeer !== undefined ? `${((100 * r.promptTokensPerSecond) / promptPeer).toFixed(0)}%` : '—',
      (r.peakRssBytes / 2 ** 20).toFixed(0),
    ];
  });
  console.log(
    table(
      ['model', 'dtype', 'thr', 'MiB/token', 'GB/s now', 'gen tok/s', 'best 16', 'floor tok/s', '% floor', 'best 16 %', 'vs rwkv.cpp', 'prompt tok/s', 'vs rwkv.cpp', 'peak RSS MiB'],
      rows,
    ),
  );
  console.log(
    `\nGB/s now: a bandwidth probe just before the run. gen tok/s: mean over the generated tokens; best 16: the best 16-token window.\n` +
      `floor = the median bandwidth of the run's probes (${threadCounts.map((t) => `${t} thread(s) ${(typicalBandwidth[t]! / 1e9).toFixed(1)} GB/s`).join(', ')}) ÷ bytes read per generated token; ` +
      `% floor and vs rwkv.cpp use the mean rate, best 16 % the best window; best of ${repeat} run(s); rwkv.cpp figures from DESIGN.md / issue 5 (169M only).`,
  );

  // 2b. Batched generation: B sequences in one pass per step (f32, the batch sizes the engine issue
  // names), aggregate tokens/s against one sequence of the same run.
  const batchRows: string[][] = [];
  const batchResults: RunResult[] = [];
  if (values.models!.split(',').includes('169m')) {
    for (const t of threadCounts) {
      const r = runOne(['--model', '169m', '--dtype', 'f32', '--threads', String(t), '--gen', String(gen), '--prompt', '16', '--batches', '2,4,8']);
      if (r === undefined) continue;
      batchResults.push(r);
      const one = r.generateTokensPerSecond;
      batchRows.push([String(t), one.toFixed(1), ...['2', '4', '8'].map((b) => `${r.batchTokensPerSecond[b]!.toFixed(1)} (${(r.batchTokensPerSecond[b]! / one).toFixed(2)}×)`)]);
    }
    console.log('\nbatched generation, 169M f32, aggregate tokens/s (× one sequence):');
    console.log(table(['thr', 'B = 1', 'B = 2', 'B = 4', 'B = 8'], batchRows));
  }

  // 3. Fixture models: parallel vs RNN prompt processing.
  const fixtureRows: string[][] = [];
  const fixtureResults: RunResult[] = [];
  for (const m of ['4v0-660K', '5v2-730K', '6v0-1m', '7v0-834K']) {
    const file = path.join(values.fixtures!, `tiny-rwkv-${m}-FP32.bin`);
    if (!fs.existsSync(file)) continue;
    const r = runOne(['--model', file, '--threads', '1', '--gen', '64', '--prompt', '512', '--rnn-prompt', '512']);
    if (r === undefined) continue;
    fixtureResults.push(r);
    fixtureRows.push([m, r.promptRnnTokensPerSecond!.toFixed(0), r.promptTokensPerSecond.toFixed(0)]);
  }
  if (fixtureRows.length > 0) {
    console.log('\nfixture models, 512-token prompt, 1 thread:');
    console.log(table(['model', 'RNN tok/s', 'parallel tok/s'], fixtureRows));
  }

  // 4. What the lossy int8 mode does to the logits of the fixture models (128 positions of input-1024.txt).
  const lossRows: string[][] = [];
  const loss: { model: string; maxAbsDiff: number; argmaxAgreement: number }[] = [];
  const input = path.join(values.fixtures!, 'input-1024.txt');
  if (fs.existsSync(input)) {
    const ids = Array.from(fs.readFileSync(input)).slice(0, 128);
    const backend = await WasmBackend.create({ threads: 1 });
    for (const m of ['4v0-660K', '5v2-730K', '6v0-1m', '7v0-834K']) {
      const file = path.join(values.fixtures!, `tiny-rwkv-${m}-FP32.bin`);
      if (!fs.existsSync(file)) continue;
      const exact = await loadModel(file, { backend });
      const lossy = await loadModel(file, { backend, int8: true });
      const se = exact.createState();
      const sl = lossy.createState();
      let worst = 0;
      let agree = 0;
      for (const id of ids) {
        const a = await exact.forward(id, se);
        const b = await lossy.forward(id, sl);
        let ia = 0;
        let ib = 0;
        for (let i = 0; i < a.length; i++) {
          worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
          if (a[i]! > a[ia]!) ia = i;
          if (b[i]! > b[ib]!) ib = i;
        }
        if (ia === ib) agree++;
      }
      loss.push({ model: m, maxAbsDiff: worst, argmaxAgreement: agree / ids.length });
      lossRows.push([m, worst.toFixed(4), `${((100 * agree) / ids.length).toFixed(1)}%`]);
    }
    await backend.close();
    console.log('\nint8 mode vs exact weights, fixture models (FP32 files), 128 positions:');
    console.log(table(['model', 'max |Δ logit|', 'same argmax'], lossRows));
  }

  if (values.out !== undefined) {
    const json = {
      int8Effect: loss,
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, totalMemory: os.totalmem() },
      readBandwidthBytesPerSecond: bandwidth,
      medianProbeBytesPerSecond: typicalBandwidth,
      kernelCeilings: ceilings,
      peers: PEERS,
      results,
      fixtures: fixtureResults,
      batched: batchResults,
    };
    fs.writeFileSync(values.out, JSON.stringify(json, null, 2) + '\n');
    console.log(`\nwrote ${values.out}`);
  }
}

await main();
