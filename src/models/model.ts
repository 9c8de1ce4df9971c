// The shape every RWKV version shares: embed → ln0 → blocks (time mix, channel mix, each with a residual)
// → ln_out → head, as one ordered list of backend calls over a batch of sequences. A version supplies only
// its blocks. There is one forward path: T tokens per sequence; RNN mode is T = 1, and B sequences of
// different lengths run in one pass (their rows concatenated into every product; token shift and the WKV
// per sequence).
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { ArgumentError, NonFiniteError } from '../errors.js';
import { rowLayout, type Backend, type DeviceMatrix, type DeviceTensor } from '../kernels/backend.js';
import type { MatrixDType } from '../kernels/matrix.js';
import type { Tensor } from '../tensor/tensor.js';
import { LN_EPS, Workspace, type Block, type Pass } from './blocks.js';
import type { ModelConfig } from './config.js';
import { State, stateSize } from './state.js';
import { pace } from '../util/host.js';
import type { Weights } from './weights.js';

/**
 * Called with every position's logits in order, during the pass, instead of returning them: `logits` is a
 * view of the engine's scratch (nVocab), valid only during the call — copy what must outlive it. The pass
 * gives the host its turn between calls, so a sink may do O(nVocab) work per row (a log-softmax).
 */
export type LogitsSink = (position: number, logits: Float32Array) => void;

/**
 * Which logits a pass returns, per sequence: its last position's (nVocab), every position's (T × nVocab),
 * none, or every position's handed to a sink (scoring: no T × nVocab array is made).
 */
export type LogitsWanted = 'last' | 'all' | 'none' | LogitsSink;

/** One sequence of a batch: the tokens to feed, the state they continue (updated in place), the logits wanted. */
export interface SequenceInput {
  readonly tokens: readonly number[];
  readonly state: State;
  /** Default 'last'. */
  readonly logits?: LogitsWanted;
  /**
   * Called during the pass with every position's final hidden row (after ln_out: the vector the head
   * multiplies, nEmbd wide), in order; `row` is a view of scratch valid only during the call. Rows wanted
   * only here skip the head product (logits 'none' with `hidden`: no head at all).
   */
  readonly hidden?: HiddenSink;
}

/** Receives one position's final hidden row (see SequenceInput.hidden). */
export type HiddenSink = (position: number, row: Float32Array) => void;

export interface SequenceOptions {
  /** Return the logits of every position (T × nVocab) instead of the last one only. */
  allLogits?: boolean;
}

export interface LayerNormWeights {
  readonly weight: DeviceTensor;
  readonly bias: DeviceTensor;
}

export function loadLayerNorm(w: Weights, prefix: string, c: number): LayerNormWeights {
  return { weight: w.param(`${prefix}.weight`, c, 'n_embd'), bias: w.param(`${prefix}.bias`, c, 'n_embd') };
}

/** Rows of logits computed per head product (8 rows of the 169M head: ≈ 0.3 G multiply-adds, a few ms). */
export const HEAD_ROWS = 8;

export class RwkvModel {
  readonly config: ModelConfig;
  /** Where the weights came from. */
  readonly file: string;
  readonly backend: Backend;
  /** Bytes of weights held in memory. */
  readonly weightBytes: number;
  /** Every tensor of the file, by name, as stored. */
  readonly tensors: ReadonlyMap<string, Tensor>;
  /** Tensors held in another encoding than the file's (the opt-in int8 mode), with their bytes in memory. */
  readonly reencoded: ReadonlyMap<string, { dtype: MatrixDType; bytes: number }>;
  /** The tokenizer the file carries (a GGUF's tokenizer.ggml.*), if any. */
  readonly tokenizer: Tokenizer | undefined;
  private readonly emb: DeviceMatrix;
  private readonly ln0: LayerNormWeights;
  private readonly blocks: readonly Block[];
  private readonly ln1: readonly LayerNormWeights[];
  private readonly ln2: readonly LayerNormWeights[];
  private readonly lnOut: LayerNormWeights;
  private readonly head: DeviceMatrix;
  private readonly work: Workspace;
  private readonly stateFloats: number;
  /** Rows of logits read back for sinks (HEAD_ROWS × nVocab), reused by every pass. */
  private sinkRows: Float32Array | undefined;
  /** Passes run one at a time (they share the work tensors); each waits for the one before. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(config: ModelConfig, w: Weights, blocks: readonly Block[]) {
    const c = config.nEmbd;
    this.config = config;
    this.file = w.file;
    this.backend = w.backend;
    this.emb = w.matrix('emb.weight', config.nVocab, c, 'n_vocab × n_embd');
    this.ln0 = loadLayerNorm(w, 'blocks.0.ln0', c);
    this.blocks = blocks;
    this.ln1 = blocks.map((_, i) => loadLayerNorm(w, `blocks.${i}.ln1`, c));
    this.ln2 = blocks.map((_, i) => loadLayerNorm(w, `blocks.${i}.ln2`, c));
    this.lnOut = loadLayerNorm(w, 'ln_out', c);
    this.head = w.matrix('head.weight', config.nVocab, c, 'n_vocab × n_embd');
    this.tensors = w.original.tensors;
    this.reencoded = w.reencoded;
    this.tokenizer = w.original.tokenizer;
    let bytes = 0;
    for (const [name, t] of w.original.tensors) bytes += w.reencoded.get(name)?.bytes ?? t.data.byteLength;
    this.weightBytes = bytes;
    this.work = new Workspace(this.backend);
    this.stateFloats = stateSize(config);
  }

  /** A fresh state (v4: pp = −1e30, everything else 0). */
  createState(): State {
    return new State(this.config);
  }

  /** Feeds one token (RNN mode): updates `state` and returns the logits (nVocab). */
  async forward(token: number, state: State): Promise<Float32Array> {
    return (await this.run([{ tokens: [token], state }]))[0]!;
  }

  /**
   * Feeds all `tokens` at once (parallel mode: each projection one matrix-matrix product over the T × C
   * block). Updates `state` exactly as feeding them one by one would, and returns the logits of the last
   * position (nVocab) or, with `allLogits`, of every position (T × nVocab, row-major).
   */
  async forwardSequence(tokens: readonly number[], state: State, options: SequenceOptions = {}): Promise<Float32Array> {
    if (tokens.length === 0) throw new ArgumentError('parallel mode needs at least one token');
    return (await this.run([{ tokens, state, logits: options.allLogits === true ? 'all' : 'last' }]))[0]!;
  }

  /**
   * One pass over a batch: every sequence's tokens, each continuing its own state (updated in place).
   * Returns, per sequence, the logits it wants (an empty array for 'none').
   */
  run(batch: readonly SequenceInput[]): Promise<Float32Array[]> {
    // Bad input rejects the promise like any other failure of a pass (never a synchronous throw).
    try {
      this.checkInputs(batch);
    } catch (e) {
      return Promise.reject(e);
    }
    const result = this.queue.then(() => this.pass(batch));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Frees the work tensors (the weights stay until the backend closes). */
  dispose(): void {
    this.work.clear();
  }

  private checkInputs(batch: readonly SequenceInput[]): void {
    const { nVocab } = this.config;
    if (batch.length === 0) throw new ArgumentError('a pass needs at least one sequence');
    const states = new Set<State>();
    for (const { tokens, state, hidden } of batch) {
      if (tokens.length === 0) throw new ArgumentError('every sequence of a pass needs at least one token');
      for (const token of tokens) {
        if (!Number.isInteger(token) || token < 0 || token >= nVocab) {
          throw new ArgumentError(`token id ${token} is outside the vocabulary (0..${nVocab - 1})`);
        }
      }
      if (hidden !== undefined && typeof hidden !== 'function') throw new ArgumentError('hidden must be a function');
      if (!(state instanceof State) || state.data.length !== this.stateFloats) {
        throw new ArgumentError(`the state has ${state.data?.length} floats; this model's has ${this.stateFloats}`);
      }
      if (states.has(state)) throw new ArgumentError('two sequences of one pass share a state');
      states.add(state);
    }
  }

  /**
   * Rejects a row of logits holding a NaN or ±inf (corrupt weights or state), before anyone samples or
   * scores from it. ≈ 20–30 µs per 50,277-wide row here, against milliseconds for the head product.
   */
  private checkFinite(row: Float32Array, position: number, what = 'logits'): void {
    // A float64 sum of f32 values cannot overflow, so it is finite exactly when every value is; four
    // sums keep the adds independent (twice as fast as one).
    let a = 0;
    let b = 0;
    let c = 0;
    let d = 0;
    const n = row.length;
    let i = 0;
    for (; i + 4 <= n; i += 4) {
      a += row[i]!;
      b += row[i + 1]!;
      c += row[i + 2]!;
      d += row[i + 3]!;
    }
    for (; i < n; i++) a += row[i]!;
    if (Number.isFinite(a + b + c + d)) return;
    const at = row.findIndex((v) => !Number.isFinite(v));
    throw new NonFiniteError(
      `the ${what} at position ${position} are not finite (${what === 'logits' ? 'token id' : 'index'} ${at}: ${row[at]}); the weights or the state are probably corrupt (check the model with \`rwkv info --check\`)`,
      position,
      { file: this.file },
    );
  }

  private async pass(batch: readonly SequenceInput[]): Promise<Float32Array[]> {
    const { nVocab, nLayer, nEmbd: c } = this.config;
    const backend = this.backend;
    const work = this.work;
    const layout = rowLayout(batch.map((s) => s.tokens.length));
    const rows = layout.rows;
    const b = batch.length;
    const s = this.stateFloats;
    const state = work.get('model.state', b, s);
    batch.forEach((seq, i) => backend.write(state, seq.state.data, i * s));
    const pass: Pass = { backend, layout, state, work };

    // x: the residual stream; xn: its normed rows; dx: a block's output. rows × C each.
    const x = work.get('model.x', rows, c);
    const xn = work.get('model.xn', rows, c);
    const dx = work.get('model.dx', rows, c);
    backend.embed(this.emb, batch.flatMap((seq) => seq.tokens), x);
    backend.norm(x, this.ln0.weight, this.ln0.bias, x, 1, LN_EPS);
    const layerFloats = s / nLayer;
    for (let l = 0; l < nLayer; l++) {
      const block = this.blocks[l]!;
      const base = l * layerFloats;
      backend.norm(x, this.ln1[l]!.weight, this.ln1[l]!.bias, xn, 1, LN_EPS);
      await block.timeMix(pass, base, xn, dx);
      backend.add(x, dx, x);
      await pace(); // the host's turn once its budget is spent (util/host.ts)
      backend.norm(x, this.ln2[l]!.weight, this.ln2[l]!.bias, xn, 1, LN_EPS);
      await block.channelMix(pass, base, xn, dx);
      backend.add(x, dx, x);
      await pace();
    }

    // Hidden rows (embeddings): every position of the sequences that want them, through ln_out only.
    for (let i = 0; i < b; i++) {
      const sink = batch[i]!.hidden;
      if (sink === undefined) continue;
      const start = layout.starts[i]!;
      const len = layout.lengths[i]!;
      for (let g = 0; g < len; g += HEAD_ROWS) {
        const n = Math.min(HEAD_ROWS, len - g);
        const normed = work.get('model.hidden', n, c);
        backend.gatherRows(x, Array.from({ length: n }, (_, j) => start + g + j), normed);
        backend.norm(normed, this.lnOut.weight, this.lnOut.bias, normed, 1, LN_EPS);
        const rows = await backend.read(normed);
        for (let j = 0; j < n; j++) {
          const row = rows.subarray(j * c, (j + 1) * c);
          this.checkFinite(row, g + j, 'hidden values'); // an embedding of NaN is as corrupt as such logits
          sink(g + j, row);
        }
      }
      await pace();
    }

    // Only the rows whose logits are wanted go through ln_out and the head, HEAD_ROWS at a time: the
    // head is the largest product (nVocab × C), and the host gets the thread back between groups.
    // Rows for a sink are read into one reused scratch (fresh memory costs a page fault per 4 KiB);
    // the others into the array returned, of which each sequence gets a view.
    const picked: number[] = []; // row of the pass
    const sinkOf: (LogitsSink | undefined)[] = [];
    const positionOf: number[] = []; // position within its sequence
    const slotOf: number[] = []; // row of `values` (−1: to a sink)
    let kept = 0;
    batch.forEach((seq, i) => {
      const start = layout.starts[i]!;
      const len = layout.lengths[i]!;
      const wanted = seq.logits ?? 'last';
      const first = wanted === 'none' ? len : wanted === 'last' ? len - 1 : 0;
      for (let p = first; p < len; p++) {
        picked.push(start + p);
        positionOf.push(p);
        sinkOf.push(typeof wanted === 'function' ? wanted : undefined);
        slotOf.push(typeof wanted === 'function' ? -1 : kept++);
      }
    });
    const values = new Float32Array(kept * nVocab);
    for (let g = 0; g < picked.length; g += HEAD_ROWS) {
      const n = Math.min(HEAD_ROWS, picked.length - g);
      // Names by size: a pass has at most two group sizes, so the work tensors are not reallocated.
      const normed = work.get(`model.headIn.${n}`, n, c);
      backend.gatherRows(x, picked.slice(g, g + n), normed);
      backend.norm(normed, this.lnOut.weight, this.lnOut.bias, normed, 1, LN_EPS);
      const logits = work.get(`model.logits.${n}`, n, nVocab);
      await backend.matmul([{ m: this.head, x: normed, y: logits }]);
      const direct = slotOf[g]! >= 0 && slotOf[g + n - 1]! === slotOf[g]! + n - 1;
      if (direct) {
        // The group's rows are consecutive rows of `values`: read straight into them.
        await backend.read(logits, values.subarray(slotOf[g]! * nVocab, (slotOf[g]! + n) * nVocab));
        for (let j = 0; j < n; j++) {
          this.checkFinite(values.subarray((slotOf[g]! + j) * nVocab, (slotOf[g]! + j + 1) * nVocab), positionOf[g + j]!);
        }
      } else {
        const rows = (this.sinkRows ??= new Float32Array(HEAD_ROWS * nVocab)).subarray(0, n * nVocab);
        await backend.read(logits, rows);
        for (let j = 0; j < n; j++) {
          const row = rows.subarray(j * nVocab, (j + 1) * nVocab);
          this.checkFinite(row, positionOf[g + j]!);
          const sink = sinkOf[g + j];
          if (sink === undefined) values.set(row, slotOf[g + j]! * nVocab);
          else {
            sink(positionOf[g + j]!, row);
            await pace();
          }
        }
      }
      await pace();
    }
    const states = await backend.read(state);
    batch.forEach((seq, i) => seq.state.data.set(states.subarray(i * s, (i + 1) * s)));
    let at = 0;
    return batch.map((seq) => {
      const wanted = seq.logits ?? 'last';
      const n = wanted === 'all' ? seq.tokens.length : wanted === 'last' ? 1 : 0;
      // Views of this pass's own array: no copy of the (possibly T × nVocab) logits.
      const out = values.subarray(at * nVocab, (at + n) * nVocab);
      at += n;
      return out;
    });
  }
}
