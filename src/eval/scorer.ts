// Log-likelihoods through the engine's prompt path: a context is read once in parallel mode from a fresh
// state (after the prefix token); each continuation continues a copy of that state, read in parallel mode
// with the logits of every position, so one pass scores all of its tokens. Every forward request goes
// through the model's Batcher, so the continuations of one item, and the items in flight together, share
// passes. A continuation of n tokens needs only its first n − 1 fed: its first token is scored from the
// context's last logits, and the logits after its last token are never used.
import { AbortError, ArgumentError } from '../errors.js';
import type { RwkvState } from '../generation/context.js';
import type { Rwkv } from '../generation/rwkv.js';

export interface ContinuationScore {
  /** Σ log p(token | everything before it), natural log. */
  loglikelihood: number;
  /** Whether greedy decoding (argmax, first maximum) reproduces every token. */
  isGreedy: boolean;
}

export interface ScorerOptions {
  /** Token read before every context from a fresh state; undefined: none. */
  prefix?: number;
  /** The state every context starts from instead of a fresh one (e.g. a tuned initial state); left unchanged. */
  start?: RwkvState;
  signal?: AbortSignal;
  /**
   * Most tokens of one sequence per forward request (default 512). The Batcher packs requests into passes
   * of its own row limit and cuts longer ones; this only bounds the logits one request returns.
   */
  slice?: number;
}

export class Scorer {
  readonly rwkv: Rwkv;
  readonly prefix: number | undefined;
  private readonly start: RwkvState | undefined;
  /** Tokens fed to the model so far (contexts with their prefix, and continuations less their last token). */
  tokens = 0;
  private readonly signal: AbortSignal | undefined;
  private readonly slice: number;

  constructor(rwkv: Rwkv, options: ScorerOptions = {}) {
    this.rwkv = rwkv;
    this.prefix = options.prefix;
    this.start = options.start;
    this.signal = options.signal;
    this.slice = options.slice ?? 512;
    if (!Number.isInteger(this.slice) || this.slice < 1) throw new ArgumentError(`slice must be an integer ≥ 1, got ${this.slice}`);
  }

  /** A fresh state that has read the prefix token and then `ids`; its logits are those after the last one. */
  async context(ids: readonly number[]): Promise<RwkvState> {
    const tokens = this.prefix === undefined ? ids : [this.prefix, ...ids];
    if (tokens.length === 0) throw new ArgumentError('an empty context needs a prefix token to score its continuation after (--prefix-token)');
    const state = this.start?.clone() ?? this.rwkv.createState();
    // Whole requests (not the prefix cache's 64-token blocks), so that the Batcher can fill its passes.
    for (let pos = 0; pos < tokens.length; pos += this.slice) {
      if (this.signal?.aborted === true) throw new AbortError('evaluation aborted');
      const part = tokens.slice(pos, Math.min(tokens.length, pos + this.slice));
      state.advance(part.length, await this.rwkv.batcher.forward(part, state.state, 'last', this.signal));
    }
    this.tokens += tokens.length;
    return state;
  }

  /**
   * The log-likelihood of `ids` after `from` (its state and last logits), which is left as it was unless
   * `consume` (then its recurrent state advances, and its logits no longer match). `onTokens` hears how many
   * tokens each forward request scored.
   */
  async continuation(from: RwkvState, ids: readonly number[], options: { consume?: boolean; onTokens?: (n: number) => void } = {}): Promise<ContinuationScore> {
    if (ids.length === 0) return { loglikelihood: 0, isGreedy: true };
    if (from.logits === undefined) throw new ArgumentError('the state has no logits: read a context (at least one token) first');
    if (this.signal?.aborted === true) throw new AbortError('evaluation aborted');
    let ll = 0;
    let greedy = true;
    const first = scoreRow(from.logits, ids[0]!);
    ll += first.logProb;
    greedy &&= first.isMax;
    options.onTokens?.(1);
    if (ids.length > 1) {
      const state = options.consume === true ? from.state : from.state.clone();
      const fed = ids.length - 1;
      for (let pos = 0; pos < fed; pos += this.slice) {
        const part = ids.slice(pos, Math.min(fed, pos + this.slice));
        // Each position's row is scored during the pass (no part × nVocab array of logits is made).
        await this.rwkv.batcher.forward(
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
