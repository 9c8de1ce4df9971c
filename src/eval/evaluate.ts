// evaluate(): the zero-shot tasks of the RWKV paper, as lm-evaluation-harness v0.3.0 computes them, on an
// Rwkv or any ScoringModel (a GPT-2: GptScoringModel); evaluateText(): perplexity and bits per byte of any
// text. Items run concurrently (a pool of `concurrency`), so the Batcher packs the contexts and
// continuations of several items into each pass.
//
// A model with a bounded context (GPT's n_positions = M; RWKV's is unbounded) is scored as lm-eval v0.3.0
// scores its HF models:
// - a request (prefix token + context + continuation) of more than M + 1 tokens is cut from the left:
//   the last M + 1 tokens are kept and all but the last are fed (lm-eval's `(context_enc +
//   continuation_enc)[-(max_length + 1):][:-1]`), so the continuation is scored whole after as much of
//   its context as fits; a continuation longer than M is refused;
// - a text (--text, wikitext) of more than M tokens is scored in lm-eval's rolling windows
//   (loglikelihood_rolling: get_rolling_token_windows with context_len 1, then make_disjoint_window):
//   disjoint windows of M predicted tokens, the first after the prefix token, each later one after as much
//   of the text before it as fits (M tokens fed per window); every token is predicted exactly once.
import { AbortError, ArgumentError } from '../errors.js';
import type { RwkvState } from '../generation/context.js';
import type { Rwkv } from '../generation/rwkv.js';
import { scoringModel, type ScoringModel } from './scoring-model.js';
import { DataFiles, type DataSource } from './data.js';
import {
  choiceMetrics,
  lambadaMetrics,
  perplexityMetrics,
  weightedPerplexity,
  bitsPerByte,
  type ChoiceMetrics,
  type ChoiceOutcome,
  type LambadaMetrics,
  type PerplexityMetrics,
} from './metrics.js';
import { pool, Scorer, type ContinuationScore } from './scorer.js';
import { loadTask, parseTasks, type ChoiceItem, type DocumentItem, type LoadedTask, type TaskName } from './tasks.js';
import { pySplitCount } from './text.js';

export interface EvaluateOptions {
  /** Task names (see TASK_NAMES); an unknown one is an ArgumentError. */
  tasks: readonly string[];
  /**
   * The data directory (laid out as shared/data/README.md) or a function returning a file's bytes. Default
   * (Node): $RWKV_DATA, else ../shared/data from the working directory.
   */
  data?: DataSource;
  /** Only the first `limit` items of each task (lm-eval's --limit). Default: all. */
  limit?: number;
  /** Text of the one token read before every context; null for none. Default "\n" (RWKV's own lm-eval script). */
  prefixToken?: string | null;
  /** Items scored at once (their requests share the Batcher's passes). Default 16. */
  concurrency?: number;
  /** Stops the evaluation (it rejects with an AbortError). */
  signal?: AbortSignal;
  /** Once when scoring starts (done 0, after the data is read), then after every item. */
  onProgress?: (progress: EvalProgress) => void;
  /** Every item's details, in the order of the tasks and of each task's file. */
  onSample?: (sample: EvalSample) => void;
  /** What `model` in the results says. Default: the model's file. */
  model?: string;
}

export interface EvalProgress {
  /** The task of the item just finished. */
  task: TaskName;
  /** Items finished, over all tasks, and how many there are. */
  done: number;
  total: number;
  /** Tokens fed to the model so far. */
  tokens: number;
  elapsedMs: number;
}

/** One line of samples.jsonl for a multiple-choice (or LAMBADA) item. */
export interface ChoiceSample {
  task: Exclude<TaskName, 'wikitext'>;
  /** 0-based index in the file's order. */
  doc: number;
  gold: number;
  loglikelihoods: number[];
  is_greedy: boolean[];
}

/** One line of samples.jsonl for a WikiText document. */
export interface DocumentSample {
  task: 'wikitext';
  doc: number;
  loglikelihood: number;
  words: number;
  bytes: number;
}

export type EvalSample = ChoiceSample | DocumentSample;

/** Each task's metrics, by its kind. */
export type EvalTaskResults = {
  [K in TaskName]?: K extends 'lambada' ? LambadaMetrics : K extends 'wikitext' ? PerplexityMetrics : ChoiceMetrics;
};

/** results.json (docs/evaluation.md). */
export interface EvalResults {
  model: string;
  /** The prefix token's text, or null for none. */
  prefixToken: string | null;
  limit: number | null;
  tasks: EvalTaskResults;
}

const DEFAULT_CONCURRENCY = 16;

/** The default data directory: $RWKV_DATA, else ../shared/data from the working directory (Node only). */
export async function defaultDataDir(): Promise<string> {
  if (typeof process === 'undefined' || typeof process.cwd !== 'function') {
    throw new ArgumentError('give the data: options.data (a directory, or a function returning a file\'s bytes)');
  }
  const env = process.env.RWKV_DATA;
  if (env !== undefined && env !== '') return env;
  const path = await import('node:path');
  return path.resolve('..', 'shared', 'data');
}

/** The id of the prefix token's text, or undefined for null; refuses text that is not exactly one token. */
export function prefixTokenId(model: { encode(text: string): number[] }, prefixToken: string | null): number | undefined {
  if (prefixToken === null) return undefined;
  if (typeof prefixToken !== 'string') throw new ArgumentError('the prefix token must be a string (its text) or null');
  const ids = model.encode(prefixToken);
  if (ids.length !== 1) {
    throw new ArgumentError(`the prefix token ${JSON.stringify(prefixToken)} is ${ids.length} tokens for this tokenizer, not one (give one token's text, or none)`);
  }
  return ids[0];
}

function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new ArgumentError(`limit must be an integer ≥ 1, got ${limit}`);
}

function checkConcurrency(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`concurrency must be an integer ≥ 1, got ${n}`);
}

/**
 * Scores `tasks` on `model` (an Rwkv, or a ScoringModel such as a GptScoringModel) and returns lm-eval's
 * metrics for each. All data files are read (and checked) before the first item is scored.
 */
export async function evaluate(model: Rwkv | ScoringModel, options: EvaluateOptions): Promise<EvalResults> {
  const scoring = scoringModel(model);
  const names = parseTasks(options.tasks);
  checkLimit(options.limit);
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  checkConcurrency(concurrency);
  const prefixToken = options.prefixToken === undefined ? '\n' : options.prefixToken;
  const prefix = prefixTokenId(scoring, prefixToken);
  const files = new DataFiles(options.data ?? (await defaultDataDir()));
  const tasks: LoadedTask[] = [];
  for (const name of names) tasks.push(await loadTask(name, files, options.limit ?? Infinity));

  const signal = options.signal;
  if (signal?.aborted === true) throw new AbortError('evaluation aborted');
  const scorer = new Scorer(scoring, { ...(prefix !== undefined ? { prefix } : {}), ...(signal !== undefined ? { signal } : {}) });
  const work: { task: number; item: number }[] = [];
  tasks.forEach((t, task) => t.items.forEach((_, item) => work.push({ task, item })));
  const samples: (EvalSample | undefined)[] = new Array(work.length);
  const choiceOutcomes = tasks.map((t) => new Array<ChoiceOutcome>(t.items.length));
  const docOutcomes = tasks.map((t) => new Array<DocumentSample>(t.items.length));
  let done = 0;
  let emitted = 0;
  const start = performance.now();
  if (work.length > 0) options.onProgress?.({ task: tasks[work[0]!.task]!.name, done: 0, total: work.length, tokens: 0, elapsedMs: 0 });

  await pool(work.length, concurrency, async (w) => {
    if (signal?.aborted === true) throw new AbortError('evaluation aborted');
    const { task: ti, item: ii } = work[w]!;
    const task = tasks[ti]!;
    if (task.kind === 'perplexity') {
      const item = task.items[ii]!;
      const loglikelihood = await scoreDocument(scorer, item);
      const sample: DocumentSample = { task: 'wikitext', doc: item.doc, loglikelihood, words: item.words, bytes: item.bytes };
      docOutcomes[ti]![ii] = sample;
      samples[w] = sample;
    } else {
      const item = task.items[ii]!;
      const { loglikelihoods, isGreedy } = await scoreChoiceItem(scorer, item);
      choiceOutcomes[ti]![ii] = { loglikelihoods, isGreedy, gold: item.gold, ...(item.normLengths !== undefined ? { normLengths: item.normLengths } : {}) };
      samples[w] = { task: task.name as Exclude<TaskName, 'wikitext'>, doc: item.doc, gold: item.gold, loglikelihoods, is_greedy: isGreedy };
    }
    done++;
    while (emitted < work.length && samples[emitted] !== undefined) {
      options.onSample?.(samples[emitted]!);
      samples[emitted] = undefined;
      emitted++;
    }
    options.onProgress?.({ task: task.name, done, total: work.length, tokens: scorer.tokens, elapsedMs: performance.now() - start });
  });

  const results: EvalTaskResults = {};
  tasks.forEach((t, ti) => {
    if (t.kind === 'perplexity') results.wikitext = perplexityMetrics(docOutcomes[ti]!);
    else if (t.kind === 'lambada') results.lambada = lambadaMetrics(choiceOutcomes[ti]!);
    else (results as Record<string, ChoiceMetrics>)[t.name] = choiceMetrics(choiceOutcomes[ti]!, t.kind === 'choice_norm');
  });
  return { model: options.model ?? scoring.name, prefixToken, limit: options.limit ?? null, tasks: results };
}

/**
 * One item's requests: each distinct context read once, its continuations scored from copies of its state.
 * A request longer than the model's context (prefix + context + continuation − 1 > maxLength) is scored on
 * its own, cut from the left as lm-eval does (see the top of this file).
 */
export async function scoreChoiceItem<S>(scorer: Scorer<S>, item: ChoiceItem): Promise<{ loglikelihoods: number[]; isGreedy: boolean[] }> {
  const model = scorer.model;
  const n = item.requests.length;
  const loglikelihoods = new Array<number>(n);
  const isGreedy = new Array<boolean>(n);
  const byContext = new Map<string, number[]>();
  item.requests.forEach((r, i) => {
    const list = byContext.get(r.context);
    if (list === undefined) byContext.set(r.context, [i]);
    else list.push(i);
  });
  const record = (i: number, s: ContinuationScore): void => {
    loglikelihoods[i] = s.loglikelihood;
    isGreedy[i] = s.isGreedy;
  };
  await Promise.all(
    [...byContext].map(async ([context, indices]) => {
      const ctx = model.encode(context);
      const head = scorer.prefix === undefined ? ctx : [scorer.prefix, ...ctx];
      const conts = indices.map((i) => model.encode(item.requests[i]!.continuation));
      const fits = conts.map((c) => head.length + c.length - 1 <= model.maxLength);
      const shared = indices.filter((_, j) => fits[j]!);
      await Promise.all([
        (async () => {
          if (shared.length === 0) return;
          const base = await scorer.context(ctx);
          try {
            await Promise.all(indices.map(async (i, j) => (fits[j]! ? record(i, await scorer.continuation(base, conts[j]!)) : undefined)));
          } finally {
            scorer.release(base);
          }
        })(),
        ...indices.map(async (i, j) => {
          if (fits[j]!) return;
          record(i, await truncatedRequest(scorer, head, conts[j]!));
        }),
      ]);
    }),
  );
  return { loglikelihoods, isGreedy };
}

/** lm-eval's left truncation: the last maxLength + 1 tokens of head + continuation, all but the last fed. */
async function truncatedRequest<S>(scorer: Scorer<S>, head: readonly number[], continuation: readonly number[]): Promise<ContinuationScore> {
  const max = scorer.model.maxLength;
  if (continuation.length > max) {
    throw new ArgumentError(`a continuation of ${continuation.length} tokens is longer than the model's context of ${max} positions`);
  }
  const whole = [...head, ...continuation];
  const window = await scorer.read(whole.slice(Math.max(0, whole.length - max - 1), whole.length - continuation.length));
  try {
    return await scorer.continuation(window, continuation, { consume: true });
  } finally {
    scorer.release(window);
  }
}

/** One window of a text scored in rolling windows: the tokens read first, then the tokens it predicts. */
export interface RollingWindow {
  readonly context: number[];
  readonly predicted: number[];
}

/**
 * lm-eval v0.3.0's rolling windows over `tokens` (utils.get_rolling_token_windows(tokens, first, maxLength,
 * context_len = 1), each made disjoint by make_disjoint_window): the first window reads `first` (the prefix
 * token) and predicts tokens[0, min(M, N)); each later one predicts the next min(M, rest) tokens after the M + 1 −
 * (tokens it predicts) tokens before them, so that every window feeds M tokens and every token is predicted
 * exactly once. An unbounded model (maxLength Infinity) gets one window: the whole text after `first`.
 */
export function rollingWindows(first: number, tokens: readonly number[], maxLength: number): RollingWindow[] {
  if (!(maxLength >= 1)) throw new ArgumentError(`maxLength must be ≥ 1, got ${maxLength}`);
  const n = tokens.length;
  if (n === 0) return [];
  const firstLength = Math.min(maxLength, n);
  const windows: RollingWindow[] = [{ context: [first], predicted: tokens.slice(0, firstLength) }];
  let predicted = firstLength;
  while (predicted < n) {
    const length = Math.min(n - predicted, maxLength);
    const end = predicted + length;
    windows.push({ context: tokens.slice(end - maxLength - 1, end - length), predicted: tokens.slice(end - length, end) });
    predicted = end;
  }
  return windows;
}

/**
 * A whole text from a fresh state after the prefix token: Σ log p of its tokens (with no prefix token, its
 * first token is read unscored), in rolling windows when it is longer than the model's context.
 * `onTokens` hears progress in tokens.
 */
async function scoreTokens<S>(scorer: Scorer<S>, ids: readonly number[], onTokens?: (n: number) => void): Promise<number> {
  if (ids.length === 0) return 0;
  const headless = scorer.prefix === undefined;
  const first = headless ? ids[0]! : scorer.prefix!;
  const rest = headless ? ids.slice(1) : ids;
  if (headless) onTokens?.(1);
  let ll = 0;
  for (const w of rollingWindows(first, rest, scorer.model.maxLength)) {
    const base = await scorer.read(w.context);
    try {
      const s = await scorer.continuation(base, w.predicted, { consume: true, ...(onTokens !== undefined ? { onTokens } : {}) });
      ll += s.loglikelihood;
    } finally {
      scorer.release(base);
    }
  }
  return ll;
}

async function scoreDocument<S>(scorer: Scorer<S>, item: DocumentItem): Promise<number> {
  return scoreTokens(scorer, scorer.model.encode(item.text));
}

/** A text to score with evaluateText: its name, and its content as text or as raw bytes. */
export interface TextInput {
  name: string;
  content: string | Uint8Array;
}

export interface TextOptions {
  /** As in evaluate (default "\n"). */
  prefixToken?: string | null;
  /** Score each text from this state (e.g. a tuned one, `rwkv.loadState(file)`) instead of a fresh one (RWKV only). */
  state?: RwkvState;
  signal?: AbortSignal;
  /** Tokens scored so far over all texts, of how many. */
  onProgress?: (progress: { done: number; total: number; elapsedMs: number }) => void;
}

/** What evaluateText reports for one text. */
export interface TextResult {
  tokens: number;
  /** UTF-8 bytes (the raw bytes given). */
  bytes: number;
  /** len(re.split(r"\s+", text)), as lm-eval counts words. */
  words: number;
  /** Σ log p over the tokens scored (natural log). */
  loglikelihood: number;
  /** exp(−Σll ÷ tokens scored). */
  token_perplexity: number;
  word_perplexity: number;
  byte_perplexity: number;
  bits_per_byte: number;
}

/**
 * Perplexity and bits per byte of whole texts, each scored from a fresh state (or `options.state`) after the prefix token and
 * streamed through the model in slices (the texts run side by side, batched); in rolling windows where a
 * text is longer than the model's context (a GPT's n_positions).
 */
export async function evaluateText(model: Rwkv | ScoringModel, texts: readonly TextInput[], options: TextOptions = {}): Promise<TextResult[]> {
  const scoring = scoringModel(model, options.state);
  const prefixToken = options.prefixToken === undefined ? '\n' : options.prefixToken;
  const prefix = prefixTokenId(scoring, prefixToken);
  const scorer = new Scorer(scoring, {
    ...(prefix !== undefined ? { prefix } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  const prepared = texts.map((t) => {
    const bytes = typeof t.content === 'string' ? new TextEncoder().encode(t.content) : t.content;
    const text = typeof t.content === 'string' ? t.content : new TextDecoder('utf-8', { ignoreBOM: true }).decode(t.content);
    const ids = typeof t.content === 'string' ? scoring.encode(t.content) : scoring.tokenizer.encodeBytes(t.content);
    return { ids, bytes: bytes.length, words: pySplitCount(text) };
  });
  const total = prepared.reduce((a, p) => a + p.ids.length, 0);
  let done = 0;
  const start = performance.now();
  const onTokens = (n: number): void => {
    done += n;
    options.onProgress?.({ done, total, elapsedMs: performance.now() - start });
  };
  const results = new Array<TextResult>(texts.length);
  await pool(prepared.length, 8, async (i) => {
    const p = prepared[i]!;
    const ll = await scoreTokens(scorer, p.ids, onTokens);
    const scored = prefix === undefined ? Math.max(0, p.ids.length - 1) : p.ids.length;
    results[i] = {
      tokens: p.ids.length,
      bytes: p.bytes,
      words: p.words,
      loglikelihood: ll,
      token_perplexity: Math.exp(-ll / scored),
      word_perplexity: weightedPerplexity([ll], [p.words]),
      byte_perplexity: weightedPerplexity([ll], [p.bytes]),
      bits_per_byte: bitsPerByte([ll], [p.bytes]),
    };
  });
  return results;
}
