// `npm run bench:serve`: `rwkv serve` at full scale on loopback (a benchmark, not a test).
//  - batching: aggregate tokens/s of 1 streaming client vs 8 concurrent ones (runs interleaved 1, 8, 1, 8…,
//    medians and min–max spread, the ratio); the same through the library alone (N concurrent
//    Rwkv.generate calls in the server's process, no HTTP), to tell the server's own cost from the batching's;
//  - time to first token (p50/p99) and tokens/s for 1, 8 and 50 clients;
//  - the fault load (bench/serve-load.ts): 50 clients, a fifth leaving mid-stream, a fifth malformed; zero
//    violations expected, the server up after, memory (after forced GCs) back to its level before.
// The server runs in its own process (this file, forked with --child), so that the clients' parsing does
// not share its thread and its memory is its own. Every client's text is forced (one biased token each,
// see serve-load.ts), so every run is also checked.
//   options: --out FILE.json  --model 169m|default|FILE  --tokenizer FILE|bytes  --threads N  --max-batch 8
//            --tokens 64 (per stream, batching runs)  --repeat 5  --clients 50  --fault-tokens 32  --quick
// 169m: random weights of the RWKV-4 169M shape (f32) built in the server's process, with the GPT-NeoX 20B
// tokenizer of ../shared/fixtures/tokenizers (or --tokenizer); without that file, the same layers with a
// 256-id head and the byte tokenizer (the head is then 200× smaller, and byte prompts are ~3× as many
// tokens, so prefill weighs more in every figure: not comparable with the 20B runs).
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { WasmBackend } from '../src/kernels/wasm-backend.js';
import { modelFromSource } from '../src/models/load.js';
import { randomSource, RWKV4_169M } from '../src/models/random.js';
import { RwkvServer } from '../src/server/app.js';
import { median, planServeLoad, runPlannedLoad, scrapeMetrics, waitIdle, type ServeLoadOptions, type ServeLoadResult } from './serve-load.js';

const TOKENIZER_20B = '../shared/fixtures/tokenizers/20B_tokenizer.json';

interface ChildOptions {
  model: string;
  tokenizer: string | undefined;
  threads: number;
  maxBatch: number;
}

interface Memory {
  heapUsed: number;
  arrayBuffers: number;
  rss: number;
  /** The prefix cache's bytes before it was emptied for the measurement. */
  cacheBytes: number;
}

type ToChild = { type: 'memory' } | { type: 'library'; n: number; tokens: number; seed: number } | { type: 'exit' };
type FromChild =
  | { type: 'ready'; url: string; model: string; kernels: string; nVocab: number; loadSeconds: number }
  | { type: 'memory'; memory: Memory }
  | { type: 'library'; tokensPerSecond: number; meanBatch: number }
  | { type: 'error'; message: string };

// ---------------------------------------------------------------- the server's process

async function child(options: ChildOptions): Promise<void> {
  const t0 = performance.now();
  let rwkv: Rwkv;
  let backend: WasmBackend | undefined;
  let name = options.model;
  if (options.model === '169m') {
    backend = await WasmBackend.create({ threads: options.threads });
    const b = backend;
    const tokenizer = options.tokenizer ?? (fs.existsSync(TOKENIZER_20B) ? TOKENIZER_20B : 'bytes');
    // A byte tokenizer on a 50277-id head would leave 50021 ids undecodable (banned at every draw): the
    // layers keep the 169M shape and the head shrinks to 256 ids instead.
    const shape = tokenizer === 'bytes' ? { ...RWKV4_169M, nVocab: 256 } : RWKV4_169M;
    const model = modelFromSource(randomSource(shape, { dtype: 'f32', allocate: (n) => b.allocateBytes(n) }), b);
    rwkv = await Rwkv.fromModel(model, { tokenizer, batch: { maxBatch: options.maxBatch } });
    name = `random RWKV-4 169M shape (${shape.nLayer}×${shape.nEmbd}, vocab ${shape.nVocab}), f32, tokenizer ${tokenizer === 'bytes' ? 'bytes' : path.basename(tokenizer)}`;
  } else {
    const file = options.model === 'default' ? defaultModelPath() : options.model;
    rwkv = await Rwkv.load(file, { threads: options.threads, batch: { maxBatch: options.maxBatch }, ...(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {}) });
    name = options.model === 'default' ? 'the shipped 3.5M byte-level RWKV-4' : path.basename(file);
  }
  const server = await RwkvServer.create({ model: rwkv });
  const url = await server.listen(0);
  const gc = (globalThis as { gc?: () => void }).gc;
  const send = (m: FromChild): void => void process.send!(m);
  send({ type: 'ready', url, model: name, kernels: rwkv.kernels, nVocab: rwkv.config.nVocab, loadSeconds: (performance.now() - t0) / 1000 });
  process.on('message', (m: ToChild) => {
    void (async () => {
      try {
        if (m.type === 'memory') {
          // The prefix cache keeps every distinct prompt's state by design (up to its budget): emptied, so
          // that what remains is what the requests left behind.
          const cacheBytes = rwkv.cache?.bytes ?? 0;
          rwkv.cache?.clear();
          for (let i = 0; i < 4; i++) {
            gc?.();
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          const u = process.memoryUsage();
          send({ type: 'memory', memory: { heapUsed: u.heapUsed, arrayBuffers: u.arrayBuffers, rss: u.rss, cacheBytes } });
        } else if (m.type === 'library') {
          send({ type: 'library', ...(await libraryRun(rwkv, m.n, m.tokens, m.seed)) });
        } else {
          await server.close();
          await rwkv.close();
          await backend?.close();
          process.exit(0);
        }
      } catch (e) {
        send({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
      }
    })();
  });
}

/** N concurrent Rwkv.generate calls (the Batcher joins them), each forced to one token as the clients are. */
async function libraryRun(rwkv: Rwkv, n: number, tokens: number, seed: number): Promise<{ tokensPerSecond: number; meanBatch: number }> {
  const ids = 'abcdefgh'.split('').map((c) => rwkv.encode(c)[0]!);
  const s0 = { ...rwkv.batcher.stats };
  const t0 = performance.now();
  const counts = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      let count = 0;
      const g = rwkv.generate(`Library client ${i} (seed ${seed}) says:`, { maxTokens: tokens, seed: seed * 1000 + i, temperature: 1, logitBias: new Map([[ids[i % ids.length]!, 100]]) });
      for await (const piece of g) count += piece.tokens.length;
      return count;
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const passes = rwkv.batcher.stats.passes - s0.passes;
  return { tokensPerSecond: counts.reduce((a, b) => a + b, 0) / seconds, meanBatch: passes > 0 ? (rwkv.batcher.stats.sequences - s0.sequences) / passes : 0 };
}

// ---------------------------------------------------------------- the clients' process

class Server {
  private readonly proc: ChildProcess;
  private readonly waiting: ((m: FromChild) => void)[] = [];

  constructor(options: ChildOptions) {
    this.proc = fork(fileURLToPath(import.meta.url), ['--child', JSON.stringify(options)], { execArgv: [...process.execArgv, '--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromChild) => {
      if (m.type === 'error') {
        process.stderr.write(`server process: ${m.message}\n`);
        process.exit(1);
      }
      this.waiting.shift()?.(m);
    });
    this.proc.on('exit', (code) => {
      if (code !== 0) {
        process.stderr.write(`the server process exited (${code})\n`);
        process.exit(1);
      }
    });
  }

  next(): Promise<FromChild> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async ask(m: ToChild): Promise<FromChild> {
    const reply = this.next();
    this.proc.send(m);
    return reply;
  }

  async memory(): Promise<Memory> {
    const r = await this.ask({ type: 'memory' });
    if (r.type !== 'memory') throw new Error(`expected memory, got ${r.type}`);
    return r.memory;
  }

  async library(n: number, tokens: number, seed: number): Promise<{ tokensPerSecond: number; meanBatch: number }> {
    const r = await this.ask({ type: 'library', n, tokens, seed });
    if (r.type !== 'library') throw new Error(`expected library, got ${r.type}`);
    return r;
  }

  async exit(): Promise<void> {
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.send({ type: 'exit' } satisfies ToChild);
    await gone;
  }
}

interface RunSummary {
  clients: number;
  tokensPerStream: number;
  aggregateTokensPerSecond: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  streamTokensPerSecondP50: number;
  /** Sequences per forward pass over the run (rwkv_batch_sequences_total ÷ rwkv_batch_passes_total). */
  meanBatch: number;
  violations: number;
  loadAverage1m: number;
}

function summarize(r: ServeLoadResult, meanBatch: number, tokensPerStream: number): RunSummary {
  return {
    clients: r.clients.length,
    tokensPerStream,
    aggregateTokensPerSecond: r.aggregateTokensPerSecond,
    ttftP50Ms: r.ttft?.p50 ?? NaN,
    ttftP99Ms: r.ttft?.p99 ?? NaN,
    streamTokensPerSecondP50: r.streamRate?.p50 ?? NaN,
    meanBatch,
    violations: r.wellFormedViolations.length + r.crossTalkViolations.length,
    loadAverage1m: os.loadavg()[0]!,
  };
}

/** One load on the server: planned (not timed), run, with the passes' mean batch from /metrics. */
async function measure(url: string, options: ServeLoadOptions): Promise<{ result: ServeLoadResult; meanBatch: number }> {
  const plans = await planServeLoad(url, options);
  const m0 = await scrapeMetrics(url);
  const result = await runPlannedLoad(url, plans, options);
  const m1 = await waitIdle(url);
  const d = (k: string): number => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
  const passes = d('rwkv_batch_passes_total');
  for (const v of [...result.wellFormedViolations, ...result.crossTalkViolations]) process.stderr.write(`VIOLATION ${v}\n`);
  return { result, meanBatch: passes > 0 ? d('rwkv_batch_sequences_total') / passes : 0 };
}

const spread = (xs: readonly number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];
const f0 = (x: number): string => x.toFixed(0);
const f1 = (x: number): string => x.toFixed(1);
const mib = (x: number): string => `${(x / 2 ** 20).toFixed(2)} MiB`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      model: { type: 'string', default: '169m' },
      tokenizer: { type: 'string' },
      threads: { type: 'string', default: String(os.availableParallelism()) },
      'max-batch': { type: 'string', default: '8' },
      tokens: { type: 'string' },
      repeat: { type: 'string' },
      clients: { type: 'string', default: '50' },
      'fault-tokens': { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  const tokens = Number(values.tokens ?? (quick ? 32 : 64));
  const repeat = Number(values.repeat ?? (quick ? 2 : 5));
  const clients = Number(values.clients);
  const faultTokens = Number(values['fault-tokens'] ?? (quick ? 16 : 32));
  const childOptions: ChildOptions = { model: values.model!, tokenizer: values.tokenizer, threads: Number(values.threads), maxBatch: Number(values['max-batch']) };
  const loadAtStart = os.loadavg();
  process.stdout.write(`# load average at start: ${loadAtStart.map(f1).join(' ')} (${os.cpus().length} cores: ${os.cpus()[0]?.model ?? '?'})\n`);

  const server = new Server(childOptions);
  const ready = await server.next();
  if (ready.type !== 'ready') throw new Error('the server process did not start');
  const url = ready.url;
  process.stdout.write(`# ${ready.model}; ${ready.kernels}; built in ${f1(ready.loadSeconds)} s; serving on ${url}\n`);

  const streams = (n: number, seed: number, maxTokens = tokens): ServeLoadOptions => ({ clients: n, maxTokens, disconnectFraction: 0, malformedFraction: 0, chatFraction: 0, seed, timeoutMs: 600_000 });
  // Warm-up: compiled code, the 8-row pass's work tensors, pooled connections, the library path too.
  await measure(url, streams(8, 900, 8));
  await measure(url, streams(1, 901, 8));
  await server.library(8, 8, 902);

  // Batching: 1 and 8 streams taking turns, so that both see the same moments of a shared machine.
  process.stdout.write(`# batching: ${repeat} × (1 stream, 8 streams, library 1, library 8), ${tokens} tokens each\n`);
  const runs: Record<'1' | '8', RunSummary[]> = { '1': [], '8': [] };
  const library: Record<'1' | '8', { tokensPerSecond: number; meanBatch: number }[]> = { '1': [], '8': [] };
  for (let i = 0; i < repeat; i++) {
    for (const n of [1, 8] as const) {
      const { result, meanBatch } = await measure(url, streams(n, 10 + 2 * i + (n === 8 ? 1 : 0)));
      runs[n].push(summarize(result, meanBatch, tokens));
    }
    for (const n of [1, 8] as const) library[n].push(await server.library(n, tokens, 100 + i));
    process.stdout.write(
      `#   ${i + 1}: server 1 → ${f1(runs['1'][i]!.aggregateTokensPerSecond)}, 8 → ${f1(runs['8'][i]!.aggregateTokensPerSecond)} tokens/s (mean batch ${f1(runs['8'][i]!.meanBatch)}); ` +
        `library 1 → ${f1(library['1'][i]!.tokensPerSecond)}, 8 → ${f1(library['8'][i]!.tokensPerSecond)} (mean batch ${f1(library['8'][i]!.meanBatch)}); load ${f1(os.loadavg()[0]!)}\n`,
    );
  }
  const agg = (n: '1' | '8'): number[] => runs[n].map((r) => r.aggregateTokensPerSecond);
  const lib = (n: '1' | '8'): number[] => library[n].map((r) => r.tokensPerSecond);
  // Each repeat's own ratio (its 8 over its 1): the spread of the ratio, not a ratio of spreads.
  const ratios = runs['8'].map((r, i) => r.aggregateTokensPerSecond / runs['1'][i]!.aggregateTokensPerSecond);
  const libRatios = library['8'].map((r, i) => r.tokensPerSecond / library['1'][i]!.tokensPerSecond);

  // 50 clients, all completing: time to first token when six times more streams than a pass carries.
  process.stdout.write(`# ${clients} clients, all completing, ${faultTokens} tokens each (${Math.max(2, Math.ceil(repeat / 2))} runs)\n`);
  const many: RunSummary[] = [];
  for (let i = 0; i < Math.max(2, Math.ceil(repeat / 2)); i++) {
    const { result, meanBatch } = await measure(url, { ...streams(clients, 50 + i, faultTokens), chatFraction: 0.5 });
    many.push(summarize(result, meanBatch, faultTokens));
  }

  // The fault load: two rounds, memory before and after.
  process.stdout.write(`# fault load: ${clients} clients (a fifth leaving, a fifth malformed), ${faultTokens} tokens; 2 rounds\n`);
  const memoryBefore = await server.memory();
  const m0 = await scrapeMetrics(url);
  const faults: ServeLoadResult[] = [];
  let violations = 0;
  for (let i = 0; i < 2; i++) {
    const { result } = await measure(url, { clients, maxTokens: faultTokens, disconnectFraction: 0.2, malformedFraction: 0.2, seededFraction: 0.2, seed: 70 + i, timeoutMs: 600_000 });
    faults.push(result);
    violations += result.wellFormedViolations.length + result.crossTalkViolations.length;
    violations += result.clients.filter((c) => c.kind === 'disconnect' && c.leftMidStream !== true).length;
  }
  const m1 = await waitIdle(url);
  const health = (await fetch(`${url}/health`)).status;
  const memoryAfter = await server.memory();
  const d = (k: string): number => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
  const leaving = faults.reduce((a, r) => a + r.disconnected, 0);
  const fault = {
    rounds: faults.map((r) => ({
      completed: r.completed,
      disconnected: r.disconnected,
      malformed: r.malformed,
      wellFormedViolations: r.wellFormedViolations,
      crossTalkViolations: r.crossTalkViolations,
      nearTieDivergences: r.nearTieDivergences,
      ttftP50Ms: r.ttft?.p50,
      ttftP99Ms: r.ttft?.p99,
      aggregateTokensPerSecond: r.aggregateTokensPerSecond,
      wallMs: r.wallMs,
    })),
    violations,
    healthAfter: health,
    abortedCounted: d('rwkv_requests_aborted_total'),
    clientsLeft: leaving,
    // Less every token the clients read, and the seeded clients' solo runs (planned after m0: as many again).
    generatedAfterLeaving: d('rwkv_generated_tokens_total') - faults.reduce((a, r) => a + r.completedTokens + r.disconnectedTokens, 0) - faults.reduce((a, r) => a + r.clients.filter((c) => c.mode === 'seeded').reduce((x, c) => x + c.tokens, 0), 0),
    inFlightAfter: m1.get('rwkv_requests_in_flight') ?? 0,
    queueAfter: m1.get('rwkv_queue_length') ?? 0,
    memoryBefore,
    memoryAfter,
    heapGrowthBytes: memoryAfter.heapUsed - memoryBefore.heapUsed,
    bufferGrowthBytes: memoryAfter.arrayBuffers - memoryBefore.arrayBuffers,
    rssGrowthBytes: memoryAfter.rss - memoryBefore.rss,
  };
  await server.exit();

  const row = (label: string, rs: readonly RunSummary[]): string => {
    const a = rs.map((r) => r.aggregateTokensPerSecond);
    const [lo, hi] = spread(a);
    return `| ${label} | ${f1(median(a))} (${f1(lo)}–${f1(hi)}) | ${f1(median(rs.map((r) => r.streamTokensPerSecondP50)))} | ${f0(median(rs.map((r) => r.ttftP50Ms)))} | ${f0(median(rs.map((r) => r.ttftP99Ms)))} | ${f1(median(rs.map((r) => r.meanBatch)))} |`;
  };
  const lines = [
    '',
    '| clients | aggregate tokens/s, median (min–max) | per-stream tokens/s p50 | TTFT p50 ms | TTFT p99 ms | mean batch |',
    '|---|---|---|---|---|---|',
    row(`1 (${tokens} tokens, ${repeat} runs)`, runs['1']),
    row(`8 (${tokens} tokens, ${repeat} runs)`, runs['8']),
    row(`${clients} (${faultTokens} tokens, ${many.length} runs)`, many),
    '',
    `8 vs 1 stream through the server: ×${median(ratios).toFixed(2)} (per-repeat ratios ${spread(ratios).map((x) => x.toFixed(2)).join('–')}); target ≥ ×2.5`,
    `library alone (same process, no HTTP): 1 → ${f1(median(lib('1')))} (${spread(lib('1')).map(f1).join('–')}), 8 → ${f1(median(lib('8')))} (${spread(lib('8')).map(f1).join('–')}) tokens/s: ×${median(libRatios).toFixed(2)} (${spread(libRatios).map((x) => x.toFixed(2)).join('–')})`,
    `fault load: ${fault.rounds.map((r) => `${r.completed} completed, ${r.disconnected} left, ${r.malformed} malformed`).join('; ')}; violations ${violations}; /health ${health} after; ` +
      `aborted counted ${fault.abortedCounted} of ${leaving}; in flight ${fault.inFlightAfter}, queue ${fault.queueAfter} after`,
    `fault load TTFT p50/p99: ${fault.rounds.map((r) => `${f0(r.ttftP50Ms ?? NaN)}/${f0(r.ttftP99Ms ?? NaN)} ms`).join(', ')}; tokens generated after their client left: ${fault.generatedAfterLeaving} (${leaving} clients)`,
    `memory (server, after forced GCs, prefix cache emptied): heap ${mib(memoryBefore.heapUsed)} → ${mib(memoryAfter.heapUsed)}, buffers ${mib(memoryBefore.arrayBuffers)} → ${mib(memoryAfter.arrayBuffers)}, RSS ${mib(memoryBefore.rss)} → ${mib(memoryAfter.rss)}; ` +
      `the prefix cache held ${mib(memoryBefore.cacheBytes)} before the fault load, ${mib(memoryAfter.cacheBytes)} after it`,
    `near-tie divergences of seeded clients (reported, not violations): ${fault.rounds.flatMap((r) => r.nearTieDivergences).length}`,
    `load average at start ${loadAtStart.map(f1).join(' ')}, at end ${os.loadavg().map(f1).join(' ')}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  if (values.out !== undefined) {
    const json = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg() },
      model: ready.model,
      kernels: ready.kernels,
      options: { ...childOptions, tokens, repeat, clients, faultTokens },
      batching: {
        server: runs,
        library,
        medianTokensPerSecond: { '1': median(agg('1')), '8': median(agg('8')) },
        spread: { '1': spread(agg('1')), '8': spread(agg('8')) },
        ratio: median(ratios),
        ratioSpread: spread(ratios),
        libraryRatio: median(libRatios),
        libraryRatioSpread: spread(libRatios),
      },
      clients50: many,
      fault,
    };
    fs.mkdirSync(path.dirname(values.out), { recursive: true });
    fs.writeFileSync(values.out, JSON.stringify(json, null, 1) + '\n');
    process.stdout.write(`# wrote ${values.out}\n`);
  }
  if (violations > 0 || health !== 200) process.exitCode = 1;
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]!) as ChildOptions);
else await main();
