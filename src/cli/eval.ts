// `rwkv eval`: the zero-shot tasks of the RWKV paper (lm-evaluation-harness v0.3.0's prompts and metrics)
// or the perplexity of text files, on an RWKV model or a GPT-2 checkpoint (eval/scoring-model.ts). The
// results table (markdown) goes to stdout; a progress bar (items, tokens/s, ETA) to stderr when it is a
// terminal; results.json and samples.jsonl on request.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Presets, SingleBar } from 'cli-progress';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ArgumentError, RwkvError } from '../errors.js';
import type { RwkvState } from '../generation/context.js';
import type { Rwkv } from '../generation/rwkv.js';
import { evaluate, evaluateText, type EvalResults } from '../eval/evaluate.js';
import { GptScoringModel, type ScoringModel } from '../eval/scoring-model.js';
import { resultsTable, textTable } from '../eval/report.js';
import { PAPER_PRESET, parseTasks } from '../eval/tasks.js';
import { DEFAULT_MODEL } from './default-model.js';
import { unescape } from './generate.js';
import { gptTokenizer, isGptCheckpoint } from '../models/gpt-load.js';
import { loadRwkv, openGpt, type KernelArgs } from './open-model.js';

export interface EvalArgs extends KernelArgs {
  model: string;
  tasks: string[];
  preset?: 'paper';
  text?: string[];
  stateIn?: string;
  data?: string;
  limit?: number;
  prefixToken?: string;
  out?: string;
  samples?: string;
  tokenizer?: string;
  concurrency?: number;
  progress?: boolean;
}

const int = (name: string, min: number) => (v: string): number => {
  if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
  return Number.parseInt(v, 10);
};
const collect = (v: string, previous: string[]): string[] => [...previous, v];

/** Adds eval's options and action to `cmd` (which already has --threads, --kernels, --int8). */
export function configureEvalCommand(cmd: Command): Command {
  return cmd
    .description("zero-shot tasks as lm-eval v0.3.0 scores them (the RWKV paper's table), or the perplexity of text files")
    .option('--model <file>', 'model file (.pth, .safetensors, .gguf or rwkv.cpp .bin) or GPT-2 checkpoint; default: the shipped model', DEFAULT_MODEL)
    .option('--tasks <list>', `comma-separated: ${PAPER_PRESET.tasks.join(',')}`, collect, [])
    .addOption(new Option('--preset <name>', 'paper: every task above, whole, after the "\\n" token').choices(['paper']))
    .option('--text <files...>', 'instead of tasks: perplexity and bits per byte of each whole file')
    .option('--state-in <file>', 'with --text: score each file from this saved state (e.g. a tuned one) instead of a fresh one')
    .option('--data <dir>', 'the data directory, laid out as shared/data/README.md (default: $RWKV_DATA, else ../shared/data)')
    .option('--limit <n>', 'only the first n items of each task', int('--limit', 1))
    .option('--prefix-token <text>', 'the token read before every context ("\\n" is an escape), or none', '\\n')
    .option('--out <file>', 'write the results as JSON (results.json)')
    .option('--samples <file>', 'write every item\'s log-likelihoods as JSON lines (samples.jsonl)')
    .option('--tokenizer <file>', "a World vocabulary, a tokenizer.json, or 'bytes' (default: by vocabulary size, beside the model)")
    .option('--concurrency <n>', 'items scored at once (default 16)', int('--concurrency', 1))
    .option('--no-progress', 'no progress bar')
    .action(async (opts: EvalArgs) => {
      await runEval(opts);
    });
}

/** "none" → null; anything else with \n \t \r \\ escapes read. */
export function parsePrefixToken(v: string | undefined): string | null {
  if (v === undefined) return '\n';
  if (v === 'none') return null;
  return unescape(v);
}

export async function runEval(args: EvalArgs): Promise<EvalResults | undefined> {
  const texts = args.text ?? [];
  const taskList = args.tasks.flatMap((t) => t.split(',')).filter((t) => t.trim() !== '');
  if (texts.length > 0 && (taskList.length > 0 || args.preset !== undefined)) {
    throw new ArgumentError('give either --text FILE... or tasks (--tasks / --preset), not both');
  }
  if (texts.length === 0 && args.stateIn !== undefined) throw new ArgumentError('--state-in applies to --text, not to tasks');
  if (texts.length > 0 && (args.limit !== undefined || args.samples !== undefined)) {
    throw new ArgumentError('--limit and --samples apply to tasks, not to --text');
  }
  if (args.preset !== undefined && taskList.length > 0) throw new ArgumentError('--preset paper chooses the tasks: give --tasks or --preset, not both');
  if (texts.length === 0 && taskList.length === 0 && args.preset === undefined) {
    throw new ArgumentError(`give --tasks LIST (${PAPER_PRESET.tasks.join(',')}), --preset paper, or --text FILE...`);
  }
  const tasks = args.preset === 'paper' ? [...PAPER_PRESET.tasks] : texts.length > 0 ? [] : parseTasks(taskList);
  const prefixToken = parsePrefixToken(args.prefixToken);
  if (args.threads !== undefined && (!Number.isInteger(args.threads) || args.threads < 1)) {
    throw new ArgumentError(`--threads must be an integer ≥ 1, got ${args.threads}`);
  }
  const contents = texts.map((file) => ({ name: file, content: readText(file) }));

  const opened = await openScoring(args);
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.on('SIGINT', onSigint);
  const err = process.stderr;
  const tty = args.progress !== false && err.isTTY === true;
  let bar: SingleBar | undefined;
  const t0 = performance.now();
  try {
    if (texts.length > 0) {
      let tokens = 0;
      const state = args.stateIn !== undefined ? await opened.loadState(args.stateIn) : undefined;
      const results = await evaluateText(opened.model, contents, {
        prefixToken,
        ...(state !== undefined ? { state } : {}),
        signal: controller.signal,
        onProgress: (p) => {
          tokens = p.done;
          if (!tty) return;
          bar ??= startBar(err, p.total, 'tokens');
          bar.update(p.done, { tps: rate(p.done, p.elapsedMs), task: 'text' });
        },
      });
      bar?.stop();
      process.stdout.write(textTable(texts, results));
      summary(err, tokens, t0, opened.kernels);
      if (args.out !== undefined) {
        const out = { model: args.model, prefixToken, ...(args.stateIn !== undefined ? { stateIn: args.stateIn } : {}), texts: Object.fromEntries(texts.map((f, i) => [f, results[i]!])) };
        writeAtomic(args.out, `${JSON.stringify(out, null, 2)}\n`);
      }
      return undefined;
    }

    const samples = args.samples !== undefined ? openLines(args.samples) : undefined;
    let tokens = 0;
    let results: EvalResults;
    try {
      results = await evaluate(opened.model, {
        tasks,
        data: args.data ?? (process.env.RWKV_DATA !== undefined && process.env.RWKV_DATA !== '' ? process.env.RWKV_DATA : path.resolve('..', 'shared', 'data')),
        ...(args.limit !== undefined ? { limit: args.limit } : {}),
        ...(args.concurrency !== undefined ? { concurrency: args.concurrency } : {}),
        prefixToken,
        model: args.model,
        signal: controller.signal,
        ...(samples !== undefined ? { onSample: (s) => samples.write(s) } : {}),
        onProgress: (p) => {
          tokens = p.tokens;
          if (!tty) return;
          bar ??= startBar(err, p.total, 'items');
          bar.update(p.done, { tps: rate(p.tokens, p.elapsedMs), task: p.task });
        },
      });
    } finally {
      bar?.stop();
      bar = undefined;
      await samples?.close();
    }
    process.stdout.write(resultsTable(results));
    summary(err, tokens, t0, opened.kernels);
    if (args.out !== undefined) writeAtomic(args.out, `${JSON.stringify(results, null, 2)}\n`);
    return results;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await opened.close();
  }
}

/** The model to score: a GPT-2 checkpoint (models/gpt-load.ts) or an RWKV model, as passes of up to 32 sequences and 512 rows. */
async function openScoring(args: EvalArgs): Promise<{
  model: Rwkv | ScoringModel;
  kernels: string;
  close(): Promise<void>;
  loadState(file: string): Promise<RwkvState>;
}> {
  if (isGptCheckpoint(args.model)) {
    if (args.stateIn !== undefined) throw new ArgumentError("--state-in is not supported for GPT models (it needs RWKV's fixed-size state)");
    const gpt = await openGpt(args.model, args);
    try {
      const tokenizer = await gptTokenizer(args.model, gpt.model.config.nVocab, args.tokenizer);
      const model = new GptScoringModel(gpt.model, tokenizer, { maxBatch: 32, maxRows: 512 });
      return {
        model,
        kernels: gpt.kernels,
        close: async () => {
          gpt.model.dispose();
          await gpt.close();
        },
        loadState: () => Promise.reject(new ArgumentError('--state-in is not supported for GPT models')),
      };
    } catch (e) {
      await gpt.close();
      throw e;
    }
  }
  const rwkv = await loadRwkv(args.model, args, {
    prefixCache: false,
    // A batch job: passes as large as the products like (the default keeps passes short for a responsive host).
    batch: { maxBatch: 32, maxRows: 512 },
  });
  return { model: rwkv, kernels: rwkv.kernels, close: () => rwkv.close(), loadState: (file) => rwkv.loadState(file) };
}

function rate(tokens: number, ms: number): string {
  return ms > 0 ? (tokens / (ms / 1000)).toFixed(0) : '–';
}

function startBar(err: NodeJS.WriteStream, total: number, unit: string): SingleBar {
  const bar = new SingleBar(
    { format: ` {bar} {value}/{total} ${unit} | {task} | {tps} tok/s | ETA {eta_formatted}`, hideCursor: true, stream: err, fps: 5, etaBuffer: 50 },
    Presets.shades_classic,
  );
  bar.start(total, 0, { tps: '–', task: '' });
  return bar;
}

function summary(err: NodeJS.WriteStream, tokens: number, t0: number, kernels: string): void {
  const s = (performance.now() - t0) / 1000;
  err.write(`rwkv eval: ${tokens} tokens in ${s.toFixed(1)} s (${(tokens / s).toFixed(0)} tokens/s), kernels ${kernels}\n`);
}

function readText(file: string): Uint8Array {
  try {
    if (fs.statSync(file).isDirectory()) throw new RwkvError('NOT_A_FILE', 'is a directory, not a text file', { file });
    return fs.readFileSync(file);
  } catch (e) {
    if (e instanceof RwkvError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new RwkvError('FILE_NOT_FOUND', code === 'ENOENT' ? 'no such text file' : `cannot read the text (${code ?? String(e)})`, { file });
  }
}

/** Writes `text` to `file` through a temporary file and a rename. */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new RwkvError('FILE_NOT_FOUND', `cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
}

/** A JSON Lines file written as items finish; opened now, so that a bad path fails before any work. */
function openLines(file: string): { write(value: unknown): void; close(): Promise<void> } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'w');
  } catch (e) {
    throw new RwkvError('FILE_NOT_FOUND', `cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
  let buffered: string[] = [];
  const flush = (): void => {
    if (buffered.length > 0) fs.writeSync(fd, buffered.join(''));
    buffered = [];
  };
  return {
    write(value) {
      buffered.push(`${JSON.stringify(value)}\n`);
      if (buffered.length >= 256) flush();
    },
    async close() {
      flush();
      fs.closeSync(fd);
    },
  };
}
