// `rwkv experiment scaling-law`: the paper's Figure 4 at small scale — RWKV runs over model sizes × token
// budgets, the compute of each C = 6·N·D (N: non-embedding parameters, D: training tokens), the held-out
// loss at its end; a power law, log L = a + b·log C, fitted by least squares in log–log space to the Pareto
// frontier of (C, L) over every run but the largest-compute one, which is held out and predicted.
// Every run is an ordinary resumable run directory under --dir (parity's machinery, experiment.ts): run
// the command again to skip finished runs and resume unfinished ones.
import * as path from 'node:path';
import { ArgumentError } from '../errors.js';
import { architecture } from '../training/architecture.js';
import { logTicks, niceTicks } from '../training/plot.js';
import {
  countParameters,
  experimentData,
  fmt,
  openRunner,
  parseSize,
  readRunProgress,
  summarizeData,
  type DataSummary,
  writeFile,
} from './experiment.js';
import { formatDuration } from './train.js';

export interface ScalingArgs {
  /** Root of the run directories (and the token file). */
  dir?: string;
  arch?: string;
  /** LAYERSxWIDTH or L4xD128. */
  sizes?: string[];
  /** Training-token budgets; each size runs each. */
  tokens?: number[];
  context?: number;
  batch?: number;
  lr?: number;
  /** Batches per held-out evaluation (batch × context tokens each), at the end of each run. */
  evalBatches?: number;
  valFraction?: number;
  seed?: number;
  /** Text files or directories (default: the State of the Union corpus). */
  data?: string[];
  /** Writes PREFIX.json, PREFIX.svg, PREFIX.md. */
  outPrefix?: string;
  threads?: number;
  progress?: boolean;
}

type Resolved = Required<Omit<ScalingArgs, 'data' | 'threads'>> & Pick<ScalingArgs, 'data' | 'threads'>;

export const SCALING_DEFAULTS: Omit<Resolved, 'data' | 'threads'> = {
  dir: 'runs/scaling',
  arch: 'rwkv4',
  sizes: ['L2xD32', 'L2xD64', 'L4xD64', 'L4xD128', 'L4xD256'],
  tokens: [16_384, 32_768, 65_536, 131_072],
  context: 128,
  batch: 4,
  lr: 8e-3,
  evalBatches: 32,
  valFraction: 0.05,
  seed: 42,
  outPrefix: 'docs/results/scaling-law',
  progress: true,
};

export interface ScalingRun {
  name: string;
  size: string;
  layers: number;
  width: number;
  /** Non-embedding parameters (N of C = 6·N·D): all but the token embedding and the output head. */
  nonEmbeddingParameters: number;
  parameters: number;
  /** Training tokens (D). */
  tokens: number;
  steps: number;
  /** 6·N·D, FLOPs. */
  compute: number;
  step: number;
  done: boolean;
  /** Held-out loss at the end, bits per byte. */
  bitsPerByte: number | null;
  wallSeconds: number;
  /** On the Pareto frontier the power law is fitted to. */
  frontier: boolean;
  /** The largest-compute run, left out of the fit and predicted by it. */
  heldOut: boolean;
}

export interface PowerLawFit {
  /** log L = a + b·log C, natural logs; L = exp(a)·C^b. */
  a: number;
  b: number;
  r2: number;
  points: number;
}

export interface ScalingResults {
  experiment: 'scaling-law';
  description: string;
  arch: string;
  data: DataSummary;
  context: number;
  batch: number;
  lr: number;
  seed: number;
  kernels: string;
  parameterCount: string;
  runs: ScalingRun[];
  /** Names of the frontier runs, by compute. */
  frontier: string[];
  fit: PowerLawFit | null;
  prediction: { run: string; compute: number; predicted: number | null; measured: number | null; relativeError: number | null } | null;
  /** Every run's wall seconds, summed. */
  wallSeconds: number;
  /** Whether every planned run had finished when this was written. */
  complete: boolean;
  commands: string[];
}

/**
 * The Pareto frontier of (compute, loss): the points no other point beats with no more compute — each
 * lower in loss than every point of less compute. Indices into `points`, by increasing compute.
 */
export function paretoFrontier(points: readonly { compute: number; loss: number }[]): number[] {
  const order = points.map((_, i) => i).sort((i, j) => points[i]!.compute - points[j]!.compute || points[i]!.loss - points[j]!.loss);
  const out: number[] = [];
  let best = Number.POSITIVE_INFINITY;
  for (const i of order) {
    if (points[i]!.loss < best) {
      out.push(i);
      best = points[i]!.loss;
    }
  }
  return out;
}

/** Least squares of log y = a + b·log x (natural logs), and r² of that line in log–log space. Null with fewer than 2 distinct x. */
export function fitPowerLaw(points: readonly { compute: number; loss: number }[]): PowerLawFit | null {
  const xs = points.map((p) => Math.log(p.compute));
  const ys = points.map((p) => Math.log(p.loss));
  const n = xs.length;
  if (n < 2) return null;
  const mx = xs.reduce((s, v) => s + v, 0) / n;
  const my = ys.reduce((s, v) => s + v, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    syy += (ys[i]! - my) ** 2;
  }
  if (!(sxx > 0)) return null;
  const b = sxy / sxx;
  const a = my - b * mx;
  let ssRes = 0;
  for (let i = 0; i < n; i++) ssRes += (ys[i]! - (a + b * xs[i]!)) ** 2;
  return { a, b, r2: syy > 0 ? 1 - ssRes / syy : 1, points: n };
}

export function predictLoss(fit: PowerLawFit, compute: number): number {
  return Math.exp(fit.a + fit.b * Math.log(compute));
}

/** The fit and prediction of a set of runs: frontier of the finished runs but the held-out one, its fit, the held-out run predicted. */
export function analyse(runs: ScalingRun[]): Pick<ScalingResults, 'frontier' | 'fit' | 'prediction'> {
  for (const r of runs) {
    r.frontier = false;
    r.heldOut = false;
  }
  if (runs.length === 0) return { frontier: [], fit: null, prediction: null };
  const held = runs.reduce((m, r) => (r.compute > m.compute ? r : m));
  held.heldOut = true;
  const rest = runs.filter((r) => r !== held && r.bitsPerByte !== null);
  const front = paretoFrontier(rest.map((r) => ({ compute: r.compute, loss: r.bitsPerByte! }))).map((i) => rest[i]!);
  for (const r of front) r.frontier = true;
  const fit = fitPowerLaw(front.map((r) => ({ compute: r.compute, loss: r.bitsPerByte! })));
  const predicted = fit === null ? null : predictLoss(fit, held.compute);
  const measured = held.bitsPerByte;
  return {
    frontier: front.map((r) => r.name),
    fit,
    prediction: {
      run: held.name,
      compute: held.compute,
      predicted,
      measured,
      relativeError: predicted !== null && measured !== null ? (predicted - measured) / measured : null,
    },
  };
}

export async function runScalingLaw(args: ScalingArgs = {}): Promise<ScalingResults> {
  const o = { ...SCALING_DEFAULTS, ...Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)) } as Resolved;
  architecture(o.arch);
  const sizes = o.sizes.map(parseSize);
  for (const [k, v] of [
    ['--context', o.context],
    ['--batch', o.batch],
    ['--eval-batches', o.evalBatches],
    ...o.tokens.map((t) => ['--tokens', t] as const),
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
  }
  if (!(o.lr > 0)) throw new ArgumentError(`--lr must be > 0, got ${o.lr}`);
  const tokensPerStep = o.batch * o.context;
  const budgets = [...new Set(o.tokens.map((t) => Math.max(1, Math.round(t / tokensPerStep))))].sort((x, y) => x - y);
  const say = (s: string): void => {
    if (o.progress !== false) process.stderr.write(s);
  };
  const dir = path.resolve(o.dir);
  const prefix = path.resolve(o.outPrefix);
  const data = experimentData(dir, o.data, o.valFraction, o.context);

  // The plan: every size × every budget, cheapest first (a study stopped early has its small runs).
  const plan = sizes
    .flatMap((size) => {
      const n = countParameters(o.arch, size.layers, size.width, o.context);
      return budgets.map((steps) => {
        const tokens = steps * tokensPerStep;
        return { size, n, steps, tokens, compute: 6 * n.nonEmbedding * tokens, name: `${o.arch}-L${size.layers}-D${size.width}-T${tokens}` };
      });
    })
    .sort((x, y) => x.compute - y.compute);
  if (new Set(plan.map((p) => p.name)).size !== plan.length) throw new ArgumentError('--sizes: a size is given twice');
  say(
    `rwkv experiment scaling-law: ${plan.length} runs (${sizes.length} sizes × ${budgets.length} budgets), ${data.tokens} bytes (${data.train} training, ${data.val} held out)\n`,
  );
  const runner = await openRunner(
    { dir, tokenFile: data.tokenFile, context: o.context, batch: o.batch, valFraction: o.valFraction, evals: 1, evalBatches: o.evalBatches, seed: o.seed },
    { ...(o.threads !== undefined ? { threads: o.threads } : {}), say },
  );
  try {
    for (const [i, p] of plan.entries()) {
      if (runner.stopped) break;
      await runner.run({ name: p.name, arch: o.arch, layers: p.size.layers, width: p.size.width, lr: o.lr, steps: p.steps }, `[${i + 1}/${plan.length}]`);
    }
  } finally {
    await runner.close();
  }

  const runs: ScalingRun[] = plan.map((p) => {
    const pr = readRunProgress(path.join(dir, p.name), p.steps, tokensPerStep);
    return {
      name: p.name,
      size: p.size.label,
      layers: p.size.layers,
      width: p.size.width,
      nonEmbeddingParameters: p.n.nonEmbedding,
      parameters: p.n.total,
      tokens: p.tokens,
      steps: p.steps,
      compute: p.compute,
      step: pr.step,
      done: pr.done,
      bitsPerByte: pr.bitsPerByte,
      wallSeconds: pr.wallSeconds,
      frontier: false,
      heldOut: false,
    };
  });
  const rel = (f: string): string => path.relative(process.cwd(), f) || '.';
  const command =
    `rwkv experiment scaling-law --dir ${rel(dir)} --arch ${o.arch} --sizes ${o.sizes.join(',')} --tokens ${o.tokens.join(',')}` +
    ` --context ${o.context} --batch ${o.batch} --lr ${o.lr} --eval-batches ${o.evalBatches} --seed ${o.seed} --out-prefix ${rel(prefix)}` +
    (o.threads !== undefined ? ` --threads ${o.threads}` : '') +
    (o.data !== undefined ? ` --data ${o.data.map(rel).join(' ')}` : '');
  const results: ScalingResults = {
    experiment: 'scaling-law',
    description:
      'Held-out loss (bits/byte) at the end of each run against compute C = 6·N·D; power law log L = a + b·log C (natural logs) fitted in log–log space to the Pareto frontier of all finished runs but the largest-compute one, which is predicted',
    arch: o.arch,
    data: summarizeData(data, o.data, o),
    context: o.context,
    batch: o.batch,
    lr: o.lr,
    seed: o.seed,
    kernels: runner.kernels,
    parameterCount: 'N: non-embedding parameters, all but the token embedding and the output head (256 × D each); parameters: all',
    runs,
    ...analyse(runs),
    wallSeconds: Math.round(runs.reduce((s, r) => s + r.wallSeconds, 0) * 10) / 10,
    complete: runs.every((r) => r.done),
    commands: [`nohup nice -n 10 ${command} > ${rel(dir)}/experiment.log 2>&1 &`],
  };
  writeScalingResults(prefix, results);
  say(`wrote ${prefix}.json, ${prefix}.svg, ${prefix}.md\n`);
  return results;
}

export function writeScalingResults(prefix: string, results: ScalingResults): void {
  writeFile(`${prefix}.json`, `${JSON.stringify(results, null, 1)}\n`);
  writeFile(`${prefix}.svg`, scalingSvg(results));
  writeFile(`${prefix}.md`, scalingMarkdown(results));
}

/** 1.2e9 → "1.2e9" (FLOPs). */
function sci(v: number): string {
  const e = Math.floor(Math.log10(v));
  return `${Number((v / 10 ** e).toPrecision(3))}e${e}`;
}

function thousands(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
}

export function scalingMarkdown(r: ScalingResults): string {
  const lines = [
    `${architecture(r.arch).title}, byte-level, context ${r.context}, batch ${r.batch}, lr ${r.lr}; held-out: ${r.data.evalTokens} bytes of the ${r.data.valTokens} held out; kernels ${r.kernels}.` +
      ` N: non-embedding parameters; C = 6·N·D.${r.complete ? '' : ' **Partial: not every planned run has finished.**'}`,
    '',
    '| run | size | N (non-emb.) | parameters | D (tokens) | C (FLOPs) | held-out bits/byte | | wall time |',
    '|---|---|---:|---:|---:|---:|---:|---|---:|',
    ...r.runs.map(
      (x) =>
        `| ${x.name} | ${x.size} | ${thousands(x.nonEmbeddingParameters)} | ${thousands(x.parameters)} | ${thousands(x.tokens)} | ${sci(x.compute)} | ` +
        `${x.done ? fmt(x.bitsPerByte) : `(step ${x.step}/${x.steps})`} | ${x.heldOut ? 'held out' : x.frontier ? 'frontier' : ''} | ${formatDuration(x.wallSeconds)} |`,
    ),
    '',
  ];
  if (r.fit !== null) {
    lines.push(
      `Fit on the ${r.fit.points} frontier runs: log L = ${r.fit.a.toFixed(4)} ${r.fit.b < 0 ? '−' : '+'} ${Math.abs(r.fit.b).toFixed(4)}·log C (natural logs), ` +
        `i.e. L = ${Math.exp(r.fit.a).toFixed(3)}·C^${r.fit.b.toFixed(4)} bits/byte; r² = ${r.fit.r2.toFixed(4)}.`,
    );
  } else lines.push('No fit: fewer than two frontier runs.');
  const p = r.prediction;
  if (p !== null) {
    lines.push(
      '',
      `Held out: ${p.run} (C = ${sci(p.compute)}): predicted ${fmt(p.predicted)}, measured ${fmt(p.measured)} bits/byte` +
        (p.relativeError !== null ? ` (${p.relativeError >= 0 ? '+' : '−'}${(Math.abs(p.relativeError) * 100).toFixed(1)}%).` : '.'),
    );
  }
  lines.push('', `Wall time, all runs: ${formatDuration(r.wallSeconds)}.`, '');
  return lines.join('\n');
}

const SIZE_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Ticks of a log axis; within less than a decade, round linear values placed on it. */
function logAxisTicks(lo: number, hi: number): number[] {
  const t = logTicks(lo, hi);
  return t.length >= 3 ? t : niceTicks(lo, hi, 8).filter((v) => v > 0);
}

/** Loss against compute, both log axes: every run coloured by size, the frontier, the fit, the held-out run and its prediction. */
export function scalingSvg(r: ScalingResults): string {
  const W = 940;
  const H = 540;
  const m = { left: 70, right: 240, top: 44, bottom: 56 };
  const done = r.runs.filter((x) => x.bitsPerByte !== null);
  const p = r.prediction;
  const cs = r.runs.map((x) => x.compute);
  const ls = [...done.map((x) => x.bitsPerByte!), ...(p?.predicted != null ? [p.predicted] : [])];
  if (ls.length === 0) ls.push(1, 2);
  const cLo = Math.min(...cs) / 1.3;
  const cHi = Math.max(...cs) * 1.3;
  const lLo = Math.min(...ls) / 1.03;
  const lHi = Math.max(...ls) * 1.03;
  const px = (c: number): number => m.left + ((Math.log(c) - Math.log(cLo)) / (Math.log(cHi) - Math.log(cLo))) * (W - m.left - m.right);
  const py = (l: number): number => H - m.bottom - ((Math.log(l) - Math.log(lLo)) / (Math.log(lHi) - Math.log(lLo))) * (H - m.top - m.bottom);
  const f = (v: number): string => v.toFixed(1);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${(m.left + W - m.right) / 2}" y="24" text-anchor="middle" font-size="15">${esc(`Held-out loss vs compute: ${architecture(r.arch).title}, byte-level, context ${r.context}${r.complete ? '' : ' (partial)'}`)}</text>`,
  );
  for (const t of logAxisTicks(cLo, cHi)) {
    const x = f(px(t));
    out.push(`<line x1="${x}" y1="${m.top}" x2="${x}" y2="${H - m.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${H - m.bottom + 16}" text-anchor="middle">${esc(sci(t))}</text>`);
  }
  for (const t of logAxisTicks(lLo, lHi)) {
    const y = f(py(t));
    out.push(`<line x1="${m.left}" y1="${y}" x2="${W - m.right}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(String(Number(t.toPrecision(3))))}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 14}" text-anchor="middle">compute C = 6·N·D (FLOPs, N non-embedding parameters, D training tokens; log scale)</text>`);
  out.push(`<text transform="translate(18 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">held-out loss (bits/byte, log scale)</text>`);
  // The fit, over the frontier's compute range and on (dashed) to the held-out run's compute.
  const front = r.runs.filter((x) => x.frontier);
  if (r.fit !== null && front.length > 0) {
    const c0 = front[0]!.compute;
    const c1 = front.at(-1)!.compute;
    out.push(`<line x1="${f(px(c0))}" y1="${f(py(predictLoss(r.fit, c0)))}" x2="${f(px(c1))}" y2="${f(py(predictLoss(r.fit, c1)))}" stroke="#333" stroke-width="1.5"/>`);
    if (p !== null && p.compute > c1) {
      out.push(`<line x1="${f(px(c1))}" y1="${f(py(predictLoss(r.fit, c1)))}" x2="${f(px(p.compute))}" y2="${f(py(p.predicted!))}" stroke="#333" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    }
  }
  // The frontier: a grey band through its points.
  if (front.length > 1) {
    out.push(`<polyline fill="none" stroke="#bbb" stroke-width="7" stroke-opacity="0.6" stroke-linejoin="round" points="${front.map((x) => `${f(px(x.compute))},${f(py(x.bitsPerByte!))}`).join(' ')}"/>`);
  }
  const sizes = [...new Set(r.runs.map((x) => x.size))];
  const color = (size: string): string => SIZE_COLORS[sizes.indexOf(size) % SIZE_COLORS.length]!;
  for (const x of done) {
    const cx = f(px(x.compute));
    const cy = f(py(x.bitsPerByte!));
    if (x.heldOut) {
      out.push(`<rect x="${f(px(x.compute) - 6)}" y="${f(py(x.bitsPerByte!) - 6)}" width="12" height="12" transform="rotate(45 ${cx} ${cy})" fill="${color(x.size)}" stroke="#000" stroke-width="1.5"/>`);
    } else {
      out.push(`<circle cx="${cx}" cy="${cy}" r="5" fill="${color(x.size)}"${x.frontier ? ' stroke="#000" stroke-width="2"' : ' stroke="white" stroke-width="1"'}/>`);
    }
  }
  if (p !== null && p.predicted !== null) {
    const cx = px(p.compute);
    const cy = py(p.predicted);
    if (p.measured !== null) out.push(`<line x1="${f(cx)}" y1="${f(cy)}" x2="${f(cx)}" y2="${f(py(p.measured))}" stroke="#000" stroke-dasharray="2 2"/>`);
    out.push(`<path d="M${f(cx - 6)},${f(cy - 6)}L${f(cx + 6)},${f(cy + 6)}M${f(cx - 6)},${f(cy + 6)}L${f(cx + 6)},${f(cy - 6)}" stroke="#000" stroke-width="2"/>`);
  }
  // Legend.
  const lx = W - m.right + 16;
  let ly = m.top + 8;
  const row = (mark: string, label: string): void => {
    out.push(mark.replaceAll('LX', f(lx + 10)).replaceAll('LY', f(ly)));
    out.push(`<text x="${f(lx + 24)}" y="${f(ly)}" dominant-baseline="middle">${esc(label)}</text>`);
    ly += 18;
  };
  for (const s of sizes) {
    const n = r.runs.find((x) => x.size === s)!.nonEmbeddingParameters;
    row(`<circle cx="LX" cy="LY" r="5" fill="${color(s)}"/>`, `${s} (N ${n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(1)}k`})`);
  }
  ly += 6;
  row(`<circle cx="LX" cy="LY" r="5" fill="#fff" stroke="#000" stroke-width="2"/>`, 'Pareto frontier (fitted)');
  if (r.fit !== null) row(`<line x1="${f(lx)}" y1="LY" x2="${f(lx + 20)}" y2="LY" stroke="#333" stroke-width="1.5"/>`, `fit: L ∝ C^${r.fit.b.toFixed(3)}, r² ${r.fit.r2.toFixed(3)}`);
  row(`<rect x="${f(lx + 5)}" y="${f(ly - 5)}" width="10" height="10" transform="rotate(45 ${f(lx + 10)} ${f(ly)})" fill="#fff" stroke="#000" stroke-width="1.5"/>`, 'held out: the largest C');
  if (p?.predicted != null) row(`<path d="M${f(lx + 5)},${f(ly - 5)}L${f(lx + 15)},${f(ly + 5)}M${f(lx + 5)},${f(ly + 5)}L${f(lx + 15)},${f(ly - 5)}" stroke="#000" stroke-width="2"/>`, `its prediction: ${p.predicted.toFixed(3)}`);
  if (p?.measured != null) {
    ly += 6;
    out.push(`<text x="${f(lx)}" y="${f(ly)}" dominant-baseline="middle">measured ${p.measured.toFixed(3)} bits/byte</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
