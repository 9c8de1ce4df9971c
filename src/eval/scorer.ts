// Log-likelihoods through a ScoringModel (scoring-model.ts): a context is read once in parallel mode from a
// fresh state (after the prefix token); each continuation continues a copy of that state, read in parallel
// mode with the logits of every position, so one pass scores all of its tokens. For an Rwkv every forward
// request goes through its Batcher (a GPT's adapter packs passes the same way), so the continuations of one
// item, and the items in flight together, share passes. A continuation of n tokens needs only its first
// n − 1 fed: its first token is scored from the context's last logits, and the logits after its last token
// are never used.
import { AbortError, ArgumentError } from '../errors.js';
import type { ScoringModel } from './scoring-model.js';

export interface ContinuationScore {
  /** Σ log p(token | everything before it), natural log. */
  loglikelihood: number;
  /** Whether greedy decoding (argmax, first maximum) reproduces every token. */
  isGreedy: boolean;
}

/** A state that has read at least one token, and the logits after its last one. */
export interface ScoredState<S> {
  readonly state: S;
  readonly logits: Float32Array;
}

export interface ScorerOptions {
  /** Token read before every context from a fresh state; undefined: none. */
  prefix?: number;
  signal?: AbortSignal;
  /**
   * Most tokens of one sequence per forward request (default 512). The Batcher packs requests into passes
   * of its own row limit and cuts longer ones; this only bounds the logits one request returns.
   */
  slice?: number;
}

export class Scorer<S = unknown> {
  readonly model: ScoringModel<S>;
  readonly prefix: number | undefined;
  /** Tokens fed to the model so far (contexts with their prefix, and continuations less their last token). */
  tokens = 0;
  private readonly signal: AbortSignal | undefined;
  private readonly slice: number;

  constructor(model: ScoringModel<S>, options: ScorerOptions = {}) {
    this.model = model;
    this.prefix = options.prefix;
    this.signal = options.signal;
    this.slice = options.slice ?? 512;
    if (!Number.isInteger(this.slice) || this.slice < 1) throw new ArgumentError(`slice must be an integer ≥ 1, got ${this.slice}`);
  }

  /** A fresh state that has read the prefix token and then `ids`; its logits are those after the last one. */
  context(ids: readonly number[]): Promise<ScoredState<S>> {
    const tokens = this.prefix === undefined ? ids : [this.prefix, ...ids];
    if (tokens.length === 0) return Promise.reject(new ArgumentError('an empty context needs a prefix token to score its continuation after (--prefix-token)'));
    return this.read(tokens);
  }

  /** A fresh state that has read `tokens` as they are (no prefix token: e.g. a window of a longer text). */
  async read(tokens: readonly number[]): Promise<ScoredState<S>> {
    if (tokens.length === 0) throw new ArgumentError('a context needs at least one token');
    const state = this.model.createState();
    let logits: Float32Array | undefined;
    try {
      // Whole requests (not the prefix cache's 64-token blocks), so that the Batcher can fill its passes.
      for (let pos = 0; pos < tokens.length; pos += this.slice) {
        if (this.signal?.aborted === true) throw new AbortError('evaluation aborted');
        const part = tokens.slice(pos, Math.min(tokens.length, pos + this.slice));
        logits = await this.model.feed(part, state, 'last', this.signal);
      }
    } catch (e) {
      this.model.disposeState(state);
      throw e;
    }
    this.tokens += tokens.length;
    return { state, logits: logits! };
  }

  /** Gives a state's memory back (a GPT's KV cache; nothing for RWKV). */
  release(scored: ScoredState<S>): void {
    this.model.disposeState(scored.state);
  }

  /**
   * The log-likelihood of `ids` after `from` (its state and last logits), which is left as it was unless
   * `consume` (then its state advances, and its logits no longer match). `onTokens` hears how many
   * tokens each forward request scored.
   */
  async continuation(from: ScoredState<S>, ids: readonly number[], options: { consume?: boolean; onTokens?: (n: number) => void } = {}): Promise<ContinuationScore> {
    if (ids.length === 0) return { loglikelihood: 0, isGreedy: true };
    if (this.signal?.aborted === true) throw new AbortError('evaluation aborted');
    let ll = 0;
    let greedy = true;
    const first = scoreRow(from.logits, ids[0]!);
    ll += first.logProb;
    greedy &&= first.isMax;
    options.onTokens?.(1);
    if (ids.length > 1) {
      const consume = options.consume === true;
      const state = consume ? from.state : await this.model.cloneState(from.state);
      try {
        const fed = ids.length - 1;
        for (let pos = 0; pos < fed; pos += this.slice) {
          const part = ids.slice(pos, Math.min(fed, pos + this.slice));
          // Each position's row is scored during the pass (no part × nVocab array of logits is made).
          await this.model.feed(
            part,
            state,
            (i, row) => {
              const r = scoreRow(row, ids[pos + i + 1]!);
              ll += r.logProb;
              greedy &&= r.isMax;
            },
            this.signal,
          );
          this.tokens += part.length;
          options.onTokens?.(part.length);
        }
      } finally {
        if (!consume) this.model.disposeState(state);
      }
    }
    return { loglikelihood: ll, isGreedy: greedy };
  }
}

/** log softmax(row)[target] in float64, and whether target is the argmax (first maximum) of the row. */
export function scoreRow(row: Float32Array, target: number): { logProb: number; isMax: boolean } {
  let max = -Infinity;
  let arg = 0;
  for (let i = 0; i < row.length; i++) {
    if (row[i]! > max) {
      max = row[i]!;
      arg = i;
    }
  }
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  return { logProb: row[target]! - max - Math.log(sum), isMax: arg === target };
}

/** Runs `work(i)` for i in [0, count) with at most `limit` running at once; stops starting new ones after a failure. */
export async function pool(count: number, limit: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        await work(i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, count) }, worker));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}
