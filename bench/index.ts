// `npm run bench`: the speed of rwkv-ts on this machine (a benchmark, not a test).
//  - the machine's read bandwidth, measured by a WASM SIMD read loop with 1 and 2 threads;
//  - random-weight models of RWKV-4 169M and RWKV-7 0.1B shape in f32, bf16, Q8_0, Q5_1 and Q4_0, 1 and 2
//    threads, each both built in memory and loaded from an rwkv.cpp file holding the same weights (as users
//    load a model), and rwkv.cpp itself on that file when given (--rwkvcpp): generation tokens/s (RNN
//    mode) and its % of the bandwidth floor, prompt tokens/s (parallel mode, logits of the last position),
//    peak RSS of the file-loaded run;
//  - the fixture models, parallel vs RNN prompt processing.
// Each configuration runs in its own process, right after a read-bandwidth probe in another process; the
// sources of one configuration (memory, file, rwkv.cpp) run interleaved, A B C A B C, --repeat times
// (default 3), and the table gives the median with the spread (min–max) of the runs. The machine's other
// tenants only ever slow a run down, so the bench also reports the best 16-token window, and measures the
// floor against the median bandwidth of all the run's probes with that many threads.
// `npm run bench -- --out FILE.json` writes every figure, every run included.
//   options: --out FILE  --quick (fewer tokens)  --models 169m,v7-0.1b  --dtypes f32,q8_0  --threads 1,2
//            --repeat N  --sources memory,file,exact (exact: the file with --exact-activations)  --rwkvcpp /path/to/librwkv.so (or RWKV_CPP_LIB)
//            --files DIR (keep the random model files there and reuse them; default: a temporary folder,
//            each file deleted after its configuration)
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
import { buildRwkvCppDriver, runRwkvCpp, type RwkvCppResult } from './rwkvcpp.js';

/** The dtypes an rwkv.cpp file can hold; int8 rows load the f32 file in the lossy int8 mode. */
const FILE_DTYPES = new Set(['f32', 'f16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0']);

/** The median of `xs` (the mean of the middle two for an even count). */
function median(xs: readonly number[]): number {
  const s = xs.slice().sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One configuration and source over its runs: medians, spreads and every run. */
export interface BenchRow extends RunResult {
  /** The model's name (169m, v7-0.1b), whatever the source. */
  model: string;
  /** Median of the bandwidth probes taken before this configuration's runs. */
  probeBytesPerSecond: number;
  /** The 1-minute load average before each repeat (the machine's other tenants). */
  loadAverages: number[];
  /** generateTokensPerSecond, promptTokensPerSecond, peakRssBytes: medians of these runs; best window: the best. */
  runs: RunResult[];
  generateSpread: [number, number];
  promptSpread: [number, number];
  /** The file the 'file' runs loaded (deleted afterwards unless --files was given). */
  file?: string;
  /** rwkv.cpp on the same file, interleaved with the runs above ('file' rows only). */
  rwkvCpp?: {
    generateTokensPerSecond: number;
    generateSpread: [number, number];
    generateBestWindowTokensPerSecond: number;
    promptTokensPerSecond: number;
    promptSpread: [number, number];
    peakRssBytes: number;
    runs: RwkvCppResult[];
  };
}

function spread(xs: readonly number[]): [number, number] {
  return [Math.min(...xs), Math.max(...xs)];
}

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
      repeat: { type: 'string', default: '3' },
      sources: { type: 'string', default: 'memory,file' },
      rwkvcpp: { type: 'string', default: process.env.RWKV_CPP_LIB ?? '' },
      files: { type: 'string' },
      fixtures: { type: 'string', default: process.env.RWKV_FIXTURES ?? path.resolve('..', 'shared', 'fixtures') },
    },
  });
  const loadAtStart = os.loadavg();
  console.log(`load average (1, 5, 15 min): ${loadAtStart.map((x) => x.toFixed(2)).join(', ')} on ${os.cpus().length} cores`);
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

  // 2. Model shapes × dtypes × threads, each next to a bandwidth probe; the sources of a configuration
  // interleaved (memory, file, rwkv.cpp, memory, file, …), `repeat` times; medians and spreads.
  const repeat = Math.max(1, Number(values.repeat));
  const sources = values.sources!.split(',').filter((x) => x === 'memory' || x === 'file' || x === 'exact');
  const cpp = buildRwkvCppDriver(values.rwkvcpp);
  if (cpp.ok) console.log(`rwkv.cpp: ${cpp.library} (driver built against ${cpp.header})`);
  else console.log(`rwkv.cpp column skipped: ${cpp.reason}`);
  const keepFiles = values.files !== undefined;
  const filesDir = path.resolve(values.files ?? path.join(os.tmpdir(), 'rwkv-ts-bench', `models-${process.pid}`));
  fs.mkdirSync(filesDir, { recursive: true });
  /** The random model as an rwkv.cpp file: written by bench/write-random.js unless --files already holds a fresh one. */
  const modelFile = (model: string, dtype: string): string | undefined => {
    const file = path.join(filesDir, `random-${model}-${dtype}.bin`);
    const writer = path.join(here, 'write-random.js');
    const inputs = [writer, path.join(here, '..', 'src', 'models', 'random.js'), path.join(here, '..', 'src', 'formats', 'convert.js')];
    const newest = Math.max(...inputs.map((f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0)));
    if (fs.existsSync(file) && fs.statSync(file).mtimeMs > newest) return file;
    const r = spawnSync(process.execPath, [writer, '--model', model, '--dtype', dtype, '--out', file], { encoding: 'utf8' });
    if (r.status !== 0) {
      process.stderr.write(`# writing ${file} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);
      return undefined;
    }
    return file;
  };
  const results: BenchRow[] = [];
  const aggregate = (model: string, runs: RunResult[], probes: number[], loads: number[], extra: Partial<BenchRow> = {}): BenchRow => {
    const gen = runs.map((r) => r.generateTokensPerSecond);
    const prompt = runs.map((r) => r.promptTokensPerSecond);
    return {
      ...runs[0]!,
      model,
      generateTokensPerSecond: median(gen),
      generateBestWindowTokensPerSecond: Math.max(...runs.map((r) => r.generateBestWindowTokensPerSecond)),
      promptTokensPerSecond: median(prompt),
      peakRssBytes: median(runs.map((r) => r.peakRssBytes)),
      rssAfterLoadBytes: median(runs.map((r) => r.rssAfterLoadBytes)),
      loadSeconds: median(runs.map((r) => r.loadSeconds)),
      probeBytesPerSecond: median(probes),
      loadAverages: loads,
      runs,
      generateSpread: spread(gen),
      promptSpread: spread(prompt),
      ...extra,
    };
  };
  for (const model of values.models!.split(',')) {
    for (const dtype of values.dtypes!.split(',')) {
      const fileDtype = dtype === 'int8' ? 'f32' : dtype;
      const file = sources.includes('file') && FILE_DTYPES.has(fileDtype) ? modelFile(model, fileDtype) : undefined;
      // rwkv.cpp runs the file as it is stored (not the int8 rows rwkv-ts makes of an f32 file).
      const withCpp = cpp.ok && file !== undefined && fileDtype === dtype;
      for (const t of threadCounts) {
        const runs: Record<string, RunResult[]> = { memory: [], file: [], exact: [] };
        const cppRuns: RwkvCppResult[] = [];
        const probes: number[] = [];
        const loads: number[] = [];
        for (let i = 0; i < repeat; i++) {
          loads.push(os.loadavg()[0]!);
          probes.push(probeBandwidth(t) ?? bandwidth[t]!);
          for (const source of sources) {
            if (source !== 'memory' && file === undefined) continue;
            const exact = source === 'exact' ? ['--exact-activations'] : [];
            const run = runOne(['--model', source === 'memory' ? model : file!, '--dtype', dtype, '--threads', String(t), '--gen', String(gen), '--prompt', String(prompt), ...exact]);
            if (run !== undefined) runs[source]!.push(run);
          }
          if (withCpp) {
            const r = runRwkvCpp(cpp.driver, file!, t, gen, prompt);
            if (r !== undefined) cppRuns.push(r);
          }
        }
        for (const source of sources) {
          if (runs[source]!.length === 0) continue;
          const extra: Partial<BenchRow> = {};
          if (source === 'file') {
            extra.file = file;
            if (cppRuns.length > 0) {
              const g = cppRuns.map((r) => r.generateTokensPerSecond);
              const p = cppRuns.map((r) => r.promptTokensPerSecond);
              extra.rwkvCpp = {
                generateTokensPerSecond: median(g),
                generateSpread: spread(g),
                generateBestWindowTokensPerSecond: Math.max(...cppRuns.map((r) => r.generateBestWindowTokensPerSecond)),
                promptTokensPerSecond: median(p),
                promptSpread: spread(p),
                peakRssBytes: median(cppRuns.map((r) => r.peakRssBytes)),
                runs: cppRuns,
              };
            }
          }
          const row = aggregate(model, runs[source]!, probes, loads, extra);
          results.push(row);
          const vs = row.rwkvCpp !== undefined ? `, rwkv.cpp ${row.rwkvCpp.generateTokensPerSecond.toFixed(1)}` : '';
          console.error(`# ${model} ${dtype} ×${t} ${source}: ${row.generateTokensPerSecond.toFixed(1)} tok/s generating${vs}, ${row.promptTokensPerSecond.toFixed(1)} tok/s prompt`);
        }
      }
      if (file !== undefined && !keepFiles) fs.rmSync(file, { force: true });
    }
  }
  if (!keepFiles) fs.rmSync(filesDir, { recursive: true, force: true });
  // The machine's bandwidth: the median of every probe with that many threads.
  const typicalBandwidth: Record<number, number> = {};
  for (const t of threadCounts) {
    const probes = [bandwidth[t]!, ...results.filter((r) => r.threads === t).map((r) => r.probeBytesPerSecond)].sort((a, b) => a - b);
    typicalBandwidth[t] = probes[Math.floor(probes.length / 2)]!;
  }
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
  const range = ([lo, hi]: [number, number]): string => `${lo.toFixed(0)}–${hi.toFixed(0)}`;
  const hasFile = (r: BenchRow): boolean => results.some((o) => o.source === 'file' && o.model === r.model && o.dtype === r.dtype && o.threads === r.threads);
  const rows = results.map((r) => {
    const floor = typicalBandwidth[r.threads]! / r.bytesPerToken;
    const c = r.rwkvCpp;
    // Peak RSS: the file-loaded run's (a model built in memory also holds the random values it is made of).
    const rss = r.source === 'file' ? mib(r.peakRssBytes) : hasFile(r) ? '—' : `(${mib(r.peakRssBytes)})`;
    return [
      r.model,
      r.dtype,
      String(r.threads),
      r.source,
      (r.bytesPerToken / 2 ** 20).toFixed(1),
      (r.probeBytesPerSecond / 1e9).toFixed(1),
      median(r.loadAverages).toFixed(1),
      r.generateTokensPerSecond.toFixed(1),
      range(r.generateSpread),
      r.generateBestWindowTokensPerSecond.toFixed(1),
      `${((100 * r.generateTokensPerSecond) / floor).toFixed(0)}%`,
      c !== undefined ? `${c.generateTokensPerSecond.toFixed(1)} (${range(c.generateSpread)})` : '—',
      c !== undefined ? `${(r.generateTokensPerSecond / c.generateTokensPerSecond).toFixed(2)}×` : '—',
      r.promptTokensPerSecond.toFixed(1),
      c !== undefined ? c.promptTokensPerSecond.toFixed(1) : '—',
      c !== undefined ? `${(r.promptTokensPerSecond / c.promptTokensPerSecond).toFixed(2)}×` : '—',
      rss,
      c !== undefined ? mib(c.peakRssBytes) : '—',
    ];
  });
  console.log(
    table(
      ['model', 'dtype', 'thr', 'source', 'MiB/token', 'GB/s now', 'load', 'gen tok/s', 'spread', 'best 16', '% floor', 'rwkv.cpp tok/s', 'ratio', 'prompt tok/s', 'rwkv.cpp prompt', 'ratio', 'peak RSS MiB', 'rwkv.cpp RSS'],
      rows,
    ),
  );
  console.log(
    `\nmedians of ${repeat} run(s) per source, interleaved (memory, file${cpp.ok ? ', rwkv.cpp' : ''}); spread: the slowest–fastest run. ` +
      `source: memory = the random model built in the bench process, file = the same weights loaded from an rwkv.cpp file, exact = that file with --exact-activations (quantized weights times f32 activations).\n` +
      `GB/s now: the median of the probes just before each repeat; load: the median 1-minute load average then (${os.cpus().length} cores). best 16: the best 16-token window of any run. ` +
      `floor = the median bandwidth of the run's probes (${threadCounts.map((t) => `${t} thread(s) ${(typicalBandwidth[t]! / 1e9).toFixed(1)} GB/s`).join(', ')}) ÷ bytes read per generated token.\n` +
      `rwkv.cpp: ${cpp.ok ? `${cpp.library}, rwkv_eval per token (state and logits out), rwkv_eval_sequence_in_chunks(64) for the prompt, on the same file; ratio = rwkv-ts ÷ rwkv.cpp` : `skipped (${cpp.reason})`}.\n` +
      `peak RSS: the file-loaded run's; memory rows show it in parentheses only where there is no file (bf16): it includes the random values the model is built from.`,
  );

  // 2b. Batched generation: B sequences in one pass per step (f32, the batch sizes the engine issue
  // names), aggregate tokens/s against one sequence of the same run measured the same way; and N
  // concurrent generate calls through the library (the Batcher, sampling included).
  const batchRows: string[][] = [];
  const concurrentRows: string[][] = [];
  const batchResults: RunResult[] = [];
  if (values.models!.split(',').includes('169m')) {
    for (const t of threadCounts) {
      const r = runOne(['--model', '169m', '--dtype', 'f32', '--threads', String(t), '--gen', String(gen), '--prompt', '16', '--batches', '1,2,4,8', '--concurrent', '1,4,8']);
      if (r === undefined) continue;
      batchResults.push(r);
      const one = r.batchTokensPerSecond['1']!;
      batchRows.push([String(t), one.toFixed(1), ...['2', '4', '8'].map((b) => `${r.batchTokensPerSecond[b]!.toFixed(1)} (${(r.batchTokensPerSecond[b]! / one).toFixed(2)}×)`)]);
      const alone = r.concurrentTokensPerSecond['1']!;
      concurrentRows.push([String(t), alone.toFixed(1), ...['4', '8'].map((n) => `${r.concurrentTokensPerSecond[n]!.toFixed(1)} (${(r.concurrentTokensPerSecond[n]! / alone).toFixed(2)}×)`)]);
    }
    console.log('\nbatched generation, 169M f32, aggregate tokens/s (× one sequence), the engine (RwkvModel.run):');
    console.log(table(['thr', 'B = 1', 'B = 2', 'B = 4', 'B = 8'], batchRows));
    console.log('\nconcurrent Rwkv.generate calls (sampling included), aggregate tokens/s (× one call):');
    console.log(table(['thr', 'N = 1', 'N = 4', 'N = 8'], concurrentRows));
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
      rwkvCpp: cpp.ok ? { library: cpp.library, header: cpp.header, systemInfo: results.find((r) => r.rwkvCpp !== undefined)?.rwkvCpp?.runs[0]?.systemInfo } : { skipped: cpp.reason },
      repeat,
      uptimeLoadAverage: { start: loadAtStart, end: os.loadavg() },
      results,
      fixtures: fixtureResults,
      batched: batchResults,
    };
    fs.writeFileSync(values.out, JSON.stringify(json, null, 2) + '\n');
    console.log(`\nwrote ${values.out}`);
  }
}

await main();
