// `rwkv bench scaling`: the paper's Figure 7 on this engine. A random RWKV-4 and a random GPT-2 of the
// same depth and width generate greedily from position 1 to N, batch 1, at each thread count; per
// position it records the token's latency, the cumulative time, the process's RSS and the bytes of
// recurrent state (RWKV) or KV cache (GPT). Each (model, threads) runs in its own process, so that its
// RSS is its own. Writes the JSON and three SVG plots (latency, cumulative time, memory by position).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArgumentError } from '../errors.js';
import { WasmBackend } from '../kernels/wasm-backend.js';
import type { GptFileConfig } from '../models/gpt-config.js';
import { gptParameterCount, randomGptSource } from '../models/gpt-random.js';
import { gptFromSource } from '../models/gpt-weights.js';
import { modelFromSource } from '../models/load.js';
import { randomSource } from '../models/random.js';
import { lineChartSvg, type ChartSeries } from '../util/svg-chart.js';

export type ScalingModel = 'rwkv' | 'gpt';

export interface ScalingShape {
  nLayer: number;
  nEmbd: number;
  nHead: number;
  nVocab: number;
}

/** One model's series, index i for position i + 1. */
export interface ScalingSeries {
  threads: number;
  positions: number[];
  latency_ms: number[];
  cumulative_s: number[];
  rss_bytes: number[];
  state_bytes: number[];
  parameters: number;
  kernels: string;
  /**
   * RWKV only: the first and the last `window` positions' latencies measured interleaved in time (a
   * fresh state and one advanced to max_position − window, fed alternately), so that both windows see
   * the same load from the machine's other tenants; the sequential curve above cannot separate the two.
   */
  paired?: { window: number; early_ms: number[]; late_ms: number[] };
}

export interface ScalingResult {
  meta: {
    shape: ScalingShape;
    max_position: number;
    threads: number[];
    /** Tokens fed to a throwaway state before position 1 (JIT warm-up). */
    warmup_tokens: number;
    /** The models' parameter counts (GPT: tied head, learned positions of max_position rows). */
    parameters: { rwkv: number; gpt: number; rwkv_non_embedding: number; gpt_non_embedding: number };
    date: string;
    machine: string;
  };
  /** The first thread count's runs (the issue's shape). */
  rwkv: ScalingSeries;
  gpt: ScalingSeries;
  /** Runs at the other thread counts. */
  more_threads: { threads: number; rwkv: ScalingSeries; gpt: ScalingSeries }[];
}

export interface ScalingArgs {
  maxPosition: number;
  threads: string;
  layers: number;
  embd: number;
  heads: number;
  vocab: number;
  out: string;
  /** Where the SVGs go (default: beside --out). */
  plots?: string;
  /** Internal: run one model at one thread count in this process and write its series to --out. */
  only?: ScalingModel;
  /** Draw the plots and print the summary of a saved result instead of measuring. */
  from?: string;
}

/**
 * Tokens fed to a throwaway state first, so that position 1's latency is the model's and not the JIT's
 * (the measured state starts fresh after them).
 */
const WARMUP = 32;

/** RWKV-4's parameter count at these sizes (ffn 4C; emb and head untied). */
function rwkvParameters(s: ScalingShape): number {
  const c = s.nEmbd;
  return 2 * s.nVocab * c + s.nLayer * (13 * c * c + 11 * c) + 4 * c;
}

/** Greedy next token (the work a sampler adds is the same for both models and small at vocab 256). */
function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** One model at one thread count, in this process. */
async function runOne(model: ScalingModel, shape: ScalingShape, maxPosition: number, threads: number): Promise<ScalingSeries> {
  const backend = await WasmBackend.create({ threads });
  try {
    const series: ScalingSeries = { threads, positions: [], latency_ms: [], cumulative_s: [], rss_bytes: [], state_bytes: [], parameters: 0, kernels: backend.description };
    let step: (token: number) => Promise<Float32Array>;
    let stateBytes: () => number;
    let pairedRun: (() => Promise<void>) | undefined;
    if (model === 'rwkv') {
      const m = modelFromSource(randomSource({ version: '4', nLayer: shape.nLayer, nEmbd: shape.nEmbd, nVocab: shape.nVocab }, { seed: 1 }), backend);
      const state = m.createState();
      const warm = m.createState();
      for (let i = 0; i < WARMUP; i++) await m.forward(i, warm);
      step = (t) => m.forward(t, state);
      stateBytes = () => state.data.byteLength; // fixed: 5 · L · C floats
      series.parameters = rwkvParameters(shape);
      pairedRun = async () => {
        const window = Math.min(512, Math.floor(maxPosition / 2));
        const early = m.createState();
        const late = m.createState();
        const prefix = Array.from({ length: maxPosition - window }, (_, i) => (i * 7 + 3) % shape.nVocab);
        for (let i = 0; i < prefix.length; i += 512) await m.forwardSequence(prefix.slice(i, i + 512), late);
        const paired = { window, early_ms: [] as number[], late_ms: [] as number[] };
        let [a, b] = [0, 0];
        for (let i = 0; i < window; i++) {
          let t0 = performance.now();
          a = argmax(await m.forward(a, early));
          paired.early_ms.push(Number((performance.now() - t0).toPrecision(4)));
          t0 = performance.now();
          b = argmax(await m.forward(b, late));
          paired.late_ms.push(Number((performance.now() - t0).toPrecision(4)));
        }
        series.paired = paired;
      };
    } else {
      const config: GptFileConfig = { nLayer: shape.nLayer, nEmbd: shape.nEmbd, nHead: shape.nHead, nPositions: maxPosition, nVocab: shape.nVocab, layerNormEps: 1e-5, tieWordEmbeddings: true };
      const m = gptFromSource(randomGptSource(config, { seed: 1 }), config, backend);
      const warm = m.createState();
      for (let i = 0; i < WARMUP; i++) await m.forward(i, warm);
      m.disposeState(warm);
      const state = m.createState();
      step = (t) => m.forward(t, state);
      stateBytes = () => state.bytes; // 2 · L · T · C · 4
      series.parameters = gptParameterCount(config);
    }
    let token = 0;
    let total = 0;
    for (let p = 1; p <= maxPosition; p++) {
      const t0 = performance.now();
      const logits = await step(token);
      const ms = performance.now() - t0;
      token = argmax(logits);
      total += ms;
      series.positions.push(p);
      series.latency_ms.push(Number(ms.toPrecision(4)));
      series.cumulative_s.push(Number((total / 1000).toPrecision(6)));
      series.rss_bytes.push(process.memoryUsage.rss());
      series.state_bytes.push(stateBytes());
    }
    await pairedRun?.();
    return series;
  } finally {
    await backend.close();
  }
}

/** Runs `rwkv bench scaling --only MODEL --threads N` as a child process (its RSS its own). */
function runChild(model: ScalingModel, args: ScalingArgs, threads: number, out: string): Promise<ScalingSeries> {
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');
  const argv = [
    main, 'bench', 'scaling', '--only', model, '--threads', String(threads), '--max-position', String(args.maxPosition),
    '--layers', String(args.layers), '--embd', String(args.embd), '--heads', String(args.heads), '--vocab', String(args.vocab), '--out', out,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`bench scaling: the ${model} run on ${threads} thread(s) exited with ${code}`));
      else resolve(JSON.parse(fs.readFileSync(out, 'utf8')) as ScalingSeries);
    });
  });
}

/** Mean of xs[from, to). */
function mean(xs: readonly number[], from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += xs[i]!;
  return s / (to - from);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One point per window of `bin` positions (the plots' points: 8,192 raw points are noise). */
function binned(s: ScalingSeries, field: 'latency_ms' | 'cumulative_s' | 'rss_bytes' | 'state_bytes', bin: number, scale = 1): { x: number[]; y: number[] } {
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < s.positions.length; i += bin) {
    const end = Math.min(s.positions.length, i + bin);
    x.push(field === 'cumulative_s' ? s.positions[end - 1]! : (s.positions[i]! + s.positions[end - 1]!) / 2);
    // Latency: the window's median (the machine's other tenants add spikes that a mean would follow).
    const value = field === 'cumulative_s' ? s[field][end - 1]! : field === 'latency_ms' ? median(s[field].slice(i, end)) : mean(s[field], i, end);
    y.push(value * scale);
  }
  return { x, y };
}

/** The three figures, as SVG text by file name. */
export function scalingPlots(r: ScalingResult): Record<string, string> {
  const runs = [{ threads: r.rwkv.threads, rwkv: r.rwkv, gpt: r.gpt }, ...r.more_threads];
  const bin = Math.max(1, Math.round(r.meta.max_position / 128));
  const { nLayer, nEmbd } = r.meta.shape;
  const shapeText = `L${nLayer} D${nEmbd}, batch 1, wasm`;
  const lines = (field: 'latency_ms' | 'cumulative_s' | 'rss_bytes' | 'state_bytes', scale = 1, oneRun = false): ChartSeries[] =>
    (oneRun ? runs.slice(0, 1) : runs).flatMap((run, i) => [
      { label: `RWKV-4${oneRun ? '' : `, ${run.threads} thread(s)`}`, color: '#1f77b4', dashed: i > 0, ...binned(run.rwkv, field, bin, scale) },
      { label: `GPT${oneRun ? '' : `, ${run.threads} thread(s)`}`, color: '#d62728', dashed: i > 0, ...binned(run.gpt, field, bin, scale) },
    ]);
  const memory: ChartSeries[] = [
    ...lines('state_bytes', 1 / 2 ** 20, true).map((s) => ({ ...s, label: `${s.label} ${s.label.startsWith('GPT') ? 'KV cache' : 'recurrent state'}` })),
    ...lines('rss_bytes', 1 / 2 ** 20, true).map((s) => ({ ...s, label: `${s.label} process RSS`, dashed: true })),
  ];
  return {
    'scaling-latency.svg': lineChartSvg(lines('latency_ms'), { title: `Per-token latency by position (${shapeText}; medians of ${bin} positions)`, xLabel: 'position (tokens)', yLabel: 'latency per token (ms)' }),
    'scaling-cumulative.svg': lineChartSvg(lines('cumulative_s'), { title: `Cumulative generation time (${shapeText})`, xLabel: 'position (tokens)', yLabel: 'cumulative time (s)' }),
    'scaling-memory.svg': lineChartSvg(memory, { title: `Memory by position (${shapeText}, ${runs[0]!.threads} thread(s))`, xLabel: 'position (tokens)', yLabel: 'memory (MiB)' }),
  };
}

/** The headline numbers: RWKV's last-512 / first-512 latency, GPT's, state and KV bytes at the end. */
export function scalingSummary(r: ScalingResult): string {
  const lines: string[] = [];
  const { nLayer: L, nEmbd: D } = r.meta.shape;
  for (const run of [{ threads: r.rwkv.threads, rwkv: r.rwkv, gpt: r.gpt }, ...r.more_threads]) {
    for (const [name, s] of [['RWKV', run.rwkv], ['GPT', run.gpt]] as const) {
      const n = s.positions.length;
      const w = Math.min(512, Math.floor(n / 2));
      const first = mean(s.latency_ms, 0, w);
      const last = mean(s.latency_ms, n - w, n);
      const firstMed = median(s.latency_ms.slice(0, w));
      const lastMed = median(s.latency_ms.slice(n - w));
      lines.push(
        `${name} ${run.threads} thread(s): latency mean first ${w} ${first.toFixed(3)} ms, last ${w} ${last.toFixed(3)} ms (ratio ${(last / first).toFixed(3)}); ` +
          `median ${firstMed.toFixed(3)} → ${lastMed.toFixed(3)} ms (ratio ${(lastMed / firstMed).toFixed(3)}); ` +
          `minimum ${Math.min(...s.latency_ms.slice(0, w)).toFixed(3)} → ${Math.min(...s.latency_ms.slice(n - w)).toFixed(3)} ms; ` +
          `total ${s.cumulative_s[n - 1]!.toFixed(2)} s; state ${s.state_bytes[n - 1]} bytes; RSS ${(s.rss_bytes[0]! / 2 ** 20).toFixed(1)} → ${(s.rss_bytes[n - 1]! / 2 ** 20).toFixed(1)} MiB`,
      );
    }
  }
  for (const run of [{ threads: r.rwkv.threads, rwkv: r.rwkv }, ...r.more_threads]) {
    const p = run.rwkv.paired;
    if (p === undefined) continue;
    const [e, l] = [median(p.early_ms), median(p.late_ms)];
    lines.push(`RWKV ${run.threads} thread(s), interleaved: median latency at positions 1..${p.window} ${e.toFixed(3)} ms, at the last ${p.window} ${l.toFixed(3)} ms (ratio ${(l / e).toFixed(3)})`);
  }
  const T = r.meta.max_position;
  lines.push(`GPT KV cache at position ${T}: ${r.gpt.state_bytes[T - 1]} bytes; 2·L·T·D·4 = ${2 * L * T * D * 4}`);
  return lines.join('\n');
}

/** Writes the three SVGs into `dir`; returns their paths. */
function writePlots(result: ScalingResult, dir: string): string[] {
  return Object.entries(scalingPlots(result)).map(([name, svg]) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, svg);
    return file;
  });
}

export async function runBenchScaling(args: ScalingArgs): Promise<void> {
  if (args.from !== undefined) {
    const saved = JSON.parse(fs.readFileSync(args.from, 'utf8')) as ScalingResult;
    const files = writePlots(saved, args.plots ?? path.dirname(args.from));
    process.stdout.write(`${scalingSummary(saved)}\nwrote ${files.join(', ')}\n`);
    return;
  }
  const threads = args.threads.split(',').map((s) => Number(s.trim()));
  if (threads.length === 0 || threads.some((t) => !Number.isInteger(t) || t < 1)) throw new ArgumentError(`--threads takes a list of thread counts (e.g. 1,2), got '${args.threads}'`);
  for (const [flag, v] of [['--max-position', args.maxPosition], ['--layers', args.layers], ['--embd', args.embd], ['--heads', args.heads], ['--vocab', args.vocab]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${flag} must be an integer ≥ 1, got ${v}`);
  }
  if (args.embd % args.heads !== 0) throw new ArgumentError(`--embd ${args.embd} is not a multiple of --heads ${args.heads}`);
  const shape: ScalingShape = { nLayer: args.layers, nEmbd: args.embd, nHead: args.heads, nVocab: args.vocab };
  if (args.only !== undefined) {
    const series = await runOne(args.only, shape, args.maxPosition, threads[0]!);
    fs.writeFileSync(args.out, JSON.stringify(series));
    return;
  }
  const runs: { threads: number; rwkv: ScalingSeries; gpt: ScalingSeries }[] = [];
  const tmp = `${args.out}.part-${process.pid}.json`;
  try {
    for (const t of threads) {
      process.stderr.write(`bench scaling: RWKV-4, ${t} thread(s), positions 1..${args.maxPosition}\n`);
      const rwkv = await runChild('rwkv', args, t, tmp);
      process.stderr.write(`bench scaling: GPT, ${t} thread(s), positions 1..${args.maxPosition}\n`);
      const gpt = await runChild('gpt', args, t, tmp);
      runs.push({ threads: t, rwkv, gpt });
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  const gptConfig = { nLayer: shape.nLayer, nEmbd: shape.nEmbd, nVocab: shape.nVocab, nPositions: args.maxPosition };
  const c = shape.nEmbd;
  const result: ScalingResult = {
    meta: {
      shape,
      max_position: args.maxPosition,
      threads,
      warmup_tokens: WARMUP,
      parameters: {
        rwkv: rwkvParameters(shape),
        gpt: gptParameterCount(gptConfig),
        rwkv_non_embedding: rwkvParameters(shape) - 2 * shape.nVocab * c,
        gpt_non_embedding: gptParameterCount(gptConfig) - shape.nVocab * c - args.maxPosition * c,
      },
      date: new Date().toISOString(),
      machine: `${process.platform} ${process.arch}, node ${process.version}`,
    },
    rwkv: runs[0]!.rwkv,
    gpt: runs[0]!.gpt,
    more_threads: runs.slice(1),
  };
  fs.writeFileSync(args.out, `${JSON.stringify(result)}\n`);
  const files = writePlots(result, args.plots ?? path.dirname(args.out));
  process.stdout.write(`${scalingSummary(result)}\nwrote ${args.out} and ${files.join(', ')}\n`);
}
