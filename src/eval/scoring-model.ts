// What the evaluation engine needs of a model (ScoringModel), and its two implementations: an Rwkv (its
// Batcher's forward over the recurrent state, unchanged) and a GPT-2 (models/gpt.ts, over its KV cache,
// with passes packed the same way). The scorer (scorer.ts) and evaluate.ts work on a ScoringModel only.
import { AbortError, ArgumentError } from '../errors.js';
import type { RwkvState } from '../generation/context.js';
import type { Rwkv } from '../generation/rwkv.js';
import type { GptModel, GptSequenceInput, GptState } from '../models/gpt.js';
import type { State } from '../models/state.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { yieldToHost } from '../util/host.js';

/** Hears the logits of every position fed (i counted from the first token of the request) during the pass. */
export type RowSink = (i: number, row: Float32Array) => void;

/**
 * A language model as scoring sees it: text ↔ token ids, and per-sequence states that read tokens and
 * give back logits. `S` is the model's state of one sequence (RWKV: the recurrent state; GPT: the KV cache).
 */
export interface ScoringModel<S = unknown> {
  /** What results.json's `model` says by default (the model's file). */
  readonly name: string;
  /** The logits' length. */
  readonly vocabSize: number;
  /**
   * Most tokens one state can read (GPT's n_positions); Infinity for a recurrent model. Requests longer
   * than this are truncated from the left, texts scored in rolling windows (evaluate.ts), as lm-eval does.
   */
  readonly maxLength: number;
  readonly tokenizer: Tokenizer;
  encode(text: string): number[];
  /** A fresh state: nothing read (or the start state it was made with). */
  createState(): S;
  /** An independent copy: feeding one does not change the other. */
  cloneState(state: S): Promise<S>;
  /** Gives a state's memory back (it is not used again). */
  disposeState(state: S): void;
  /**
   * Feeds `tokens` after what `state` has read (it advances in place). 'last': resolves with the logits
   * after the last token; a RowSink hears every position's row during the pass (and it resolves with an
   * empty array).
   */
  feed(tokens: readonly number[], state: S, logits: 'last' | RowSink, signal?: AbortSignal): Promise<Float32Array>;
}

/** An Rwkv as a ScoringModel: every request goes through its Batcher, so concurrent requests share passes. */
export class RwkvScoringModel implements ScoringModel<State> {
  readonly rwkv: Rwkv;
  readonly maxLength = Infinity;
  private readonly start: RwkvState | undefined;

  /** `start`: the state every sequence starts from instead of a fresh one (e.g. a tuned one); left unchanged. */
  constructor(rwkv: Rwkv, start?: RwkvState) {
    this.rwkv = rwkv;
    this.start = start;
  }

  get name(): string {
    return this.rwkv.model.file;
  }

  get vocabSize(): number {
    return this.rwkv.model.config.nVocab;
  }

  get tokenizer(): Tokenizer {
    return this.rwkv.tokenizer;
  }

  encode(text: string): number[] {
    return this.rwkv.encode(text);
  }

  createState(): State {
    return (this.start?.clone() ?? this.rwkv.createState()).state;
  }

  async cloneState(state: State): Promise<State> {
    return state.clone();
  }

  disposeState(): void {
    // Host memory: the garbage collector takes it.
  }

  feed(tokens: readonly number[], state: State, logits: 'last' | RowSink, signal?: AbortSignal): Promise<Float32Array> {
    return this.rwkv.batcher.forward(tokens, state, logits, signal);
  }
}

export interface GptScoringOptions {
  /** Most sequences in one pass (default 32). */
  maxBatch?: number;
  /** Most token rows in one pass (default 512); a longer request runs alone. */
  maxRows?: number;
  /** What results say as the model (default the model's file). */
  name?: string;
}

interface GptRequest {
  tokens: readonly number[];
  state: GptState;
  logits: 'last' | RowSink;
  signal: AbortSignal | undefined;
  resolve: (logits: Float32Array) => void;
  reject: (e: unknown) => void;
}

/**
 * A GptModel (with its tokenizer) as a ScoringModel. Requests made while a pass runs wait and go together
 * into the next pass (up to maxBatch sequences and maxRows rows), as the RWKV Batcher packs them.
 */
export class GptScoringModel implements ScoringModel<GptState> {
  readonly model: GptModel;
  readonly tokenizer: Tokenizer;
  readonly name: string;
  private readonly maxBatch: number;
  private readonly maxRows: number;
  private pending: GptRequest[] = [];
  private running = false;

  constructor(model: GptModel, tokenizer: Tokenizer, options: GptScoringOptions = {}) {
    if (tokenizer.vocabSize > model.config.nVocab) {
      throw new ArgumentError(`the tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${model.config.nVocab}`);
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.name = options.name ?? model.file;
    this.maxBatch = options.maxBatch ?? 32;
    this.maxRows = options.maxRows ?? 512;
    for (const [k, v] of [['maxBatch', this.maxBatch], ['maxRows', this.maxRows]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
    }
  }

  get vocabSize(): number {
    return this.model.config.nVocab;
  }

  get maxLength(): number {
    return this.model.config.nPositions;
  }

  encode(text: string): number[] {
    if (typeof text !== 'string') throw new ArgumentError('encode takes a string');
    return this.tokenizer.encode(text);
  }

  createState(): GptState {
    return this.model.createState();
  }

  cloneState(state: GptState): Promise<GptState> {
    return this.model.cloneState(state);
  }

  disposeState(state: GptState): void {
    this.model.disposeState(state);
  }

  feed(tokens: readonly number[], state: GptState, logits: 'last' | RowSink, signal?: AbortSignal): Promise<Float32Array> {
    if (signal?.aborted === true) return Promise.reject(new AbortError('evaluation aborted'));
    return new Promise<Float32Array>((resolve, reject) => {
      this.pending.push({ tokens, state, logits, signal, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.running || this.pending.length === 0) return;
    this.running = true;
    // On the host's next turn, so that requests made together share the pass.
    void yieldToHost().then(() => this.drain());
  }

  private async drain(): Promise<void> {
    const batch: GptRequest[] = [];
    let rows = 0;
    const rest: GptRequest[] = [];
    for (const r of this.pending) {
      if (r.signal?.aborted === true) {
        r.reject(new AbortError('evaluation aborted'));
        continue;
      }
      const fits = batch.length === 0 || (batch.length < this.maxBatch && rows + r.tokens.length <= this.maxRows && !batch.some((b) => b.state === r.state));
      if (fits) {
        batch.push(r);
        rows += r.tokens.length;
      } else rest.push(r);
    }
    this.pending = rest;
    try {
      if (batch.length > 0) {
        const inputs: GptSequenceInput[] = batch.map((r) => ({ tokens: r.tokens, state: r.state, logits: r.logits === 'last' ? 'last' : 'all' }));
        let outs: Float32Array[];
        try {
          outs = await this.model.run(inputs);
        } catch (e) {
          for (const r of batch) r.reject(e);
          return;
        }
        const nVocab = this.model.config.nVocab;
        batch.forEach((r, b) => {
          const out = outs[b]!;
          try {
            if (r.logits === 'last') {
              r.resolve(out.slice());
              return;
            }
            for (let i = 0; i < r.tokens.length; i++) r.logits(i, out.subarray(i * nVocab, (i + 1) * nVocab));
            r.resolve(new Float32Array(0));
          } catch (e) {
            r.reject(e);
          }
        });
      }
    } finally {
      this.running = false;
      this.pump();
    }
  }
}

/** The model behind `model`: an Rwkv is wrapped (with `start`, if given); a ScoringModel is itself. */
export function scoringModel(model: Rwkv | ScoringModel, start?: RwkvState): ScoringModel {
  if (isScoringModel(model)) {
    if (start !== undefined) throw new ArgumentError('a start state applies to RWKV models only');
    return model;
  }
  return new RwkvScoringModel(model, start) as ScoringModel<State> as ScoringModel;
}

function isScoringModel(model: Rwkv | ScoringModel): model is ScoringModel {
  return typeof (model as Partial<ScoringModel>).feed === 'function' && typeof (model as Partial<ScoringModel>).cloneState === 'function';
}
