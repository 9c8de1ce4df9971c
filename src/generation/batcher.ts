// Continuous batching: every forward request of every concurrent generate/score call on one model goes
// through here, and the requests waiting at the moment a pass starts run together in that pass (rows of
// all sequences concatenated into each product). A sequence joins or leaves between passes; a long
// prompt arrives in slices (generate.ts `prefill`), so it holds the others up for one slice at most.
import { AbortError, ArgumentError, NonFiniteError } from '../errors.js';
import type { HiddenSink, LogitsWanted, RwkvModel } from '../models/model.js';
import type { State } from '../models/state.js';
import { yieldToHost } from '../util/host.js';

interface Request {
  readonly tokens: readonly number[];
  readonly state: State;
  readonly logits: LogitsWanted;
  readonly hidden: HiddenSink | undefined;
  readonly resolve: (logits: Float32Array) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal | undefined;
}

export interface BatcherOptions {
  /** Most sequences in one pass. Default 8. */
  maxBatch?: number;
  /**
   * Most rows (tokens) in one pass. A longer request is fed in pieces of this many, in successive passes,
   * so no pass runs long enough to hold the host's thread (64 rows of the 169M shape: ≈ 8 ms a half-layer
   * on two threads). Default 64.
   */
  maxRows?: number;
}

export class Batcher {
  readonly model: RwkvModel;
  private readonly maxBatch: number;
  private readonly maxRows: number;
  private pending: Request[] = [];
  private draining = false;
  /** Passes run and sequences they carried (for benchmarks and tests). */
  readonly stats = { passes: 0, sequences: 0 };

  /** Requests waiting for the next pass (a server's queue length). */
  get queued(): number {
    return this.pending.length;
  }

  constructor(model: RwkvModel, options: BatcherOptions = {}) {
    this.model = model;
    this.maxBatch = options.maxBatch ?? 8;
    this.maxRows = options.maxRows ?? 64;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new ArgumentError(`maxBatch must be an integer ≥ 1, got ${this.maxBatch}`);
    if (!Number.isInteger(this.maxRows) || this.maxRows < 1) throw new ArgumentError(`maxRows must be an integer ≥ 1, got ${this.maxRows}`);
  }

  /**
   * Feeds `tokens` into `state` in coming passes; resolves to the logits wanted (an empty array when they
   * go to a sink, which hears positions counted from the first of `tokens`). `hidden` hears every
   * position's final hidden row (SequenceInput.hidden), positions counted the same way.
   */
  async forward(tokens: readonly number[], state: State, logits: LogitsWanted = 'last', signal?: AbortSignal, hidden?: HiddenSink): Promise<Float32Array> {
    if (tokens.length <= this.maxRows) return this.enqueue(tokens, state, logits, signal, hidden);
    // Pieces in order, each in its own pass; only the last one's logits are wanted unless all are.
    const parts: Float32Array[] = [];
    for (let at = 0; at < tokens.length; at += this.maxRows) {
      const end = Math.min(tokens.length, at + this.maxRows);
      const offset = at;
      const wanted: LogitsWanted =
        typeof logits === 'function'
          ? (p, row) => logits(offset + p, row)
          : logits === 'all'
            ? 'all'
            : end === tokens.length
              ? logits
              : 'none';
      try {
        const pieceHidden: HiddenSink | undefined = hidden === undefined ? undefined : (p, row) => hidden(offset + p, row);
        parts.push(await this.enqueue(tokens.slice(at, end), state, wanted, signal, pieceHidden));
      } catch (e) {
        // The pass counts positions within its piece; the caller counts them from the first of `tokens`.
        if (e instanceof NonFiniteError && offset > 0) {
          const message = e.message.slice((e.file === undefined ? 0 : e.file.length + 2)).replace(`position ${e.position}`, `position ${e.position + offset}`);
          throw new NonFiniteError(message, e.position + offset, e.file === undefined ? {} : { file: e.file });
        }
        throw e;
      }
    }
    if (parts.length === 1 || logits !== 'all') return parts[parts.length - 1]!;
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  private enqueue(
    tokens: readonly number[],
    state: State,
    logits: LogitsWanted,
    signal: AbortSignal | undefined,
    hidden?: HiddenSink,
  ): Promise<Float32Array> {
    if (signal?.aborted === true) return Promise.reject(new AbortError('aborted'));
    return new Promise((resolve, reject) => {
      this.pending.push({ tokens, state, logits, hidden, resolve, reject, signal });
      if (!this.draining) {
        this.draining = true;
        // Start on a later turn, so that requests issued together (e.g. by Promise.all) share the pass.
        void yieldToHost().then(() => this.drain());
      }
    });
  }

  private take(): Request[] {
    const batch: Request[] = [];
    const states = new Set<State>();
    const rest: Request[] = [];
    let rows = 0;
    for (const r of this.pending) {
      if (r.signal?.aborted === true) {
        r.reject(new AbortError('aborted'));
        continue;
      }
      const fits = batch.length < this.maxBatch && rows + r.tokens.length <= this.maxRows;
      // One state appears at most once per pass; its later requests wait for the next one, in order.
      if (fits && !states.has(r.state)) {
        batch.push(r);
        states.add(r.state);
        rows += r.tokens.length;
      } else rest.push(r);
    }
    this.pending = rest;
    return batch;
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        const batch = this.take();
        if (batch.length === 0) break;
        try {
          const out = await this.model.run(batch.map(({ tokens, state, logits, hidden }) => ({ tokens, state, logits, ...(hidden !== undefined ? { hidden } : {}) })));
          this.stats.passes++;
          this.stats.sequences += batch.length;
          batch.forEach((r, i) => r.resolve(out[i]!));
        } catch (e) {
          for (const r of batch) r.reject(e);
        }
        // Between passes the host runs its callbacks, and the callers whose logits came back submit
        // their next token in time for the next pass.
        await yieldToHost();
      }
    } finally {
      this.draining = false;
      if (this.pending.length > 0) {
        this.draining = true;
        void yieldToHost().then(() => this.drain());
      }
    }
  }
}
