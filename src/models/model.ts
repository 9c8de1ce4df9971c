// The shape every RWKV version shares: embed → ln0 → blocks (time mix, channel mix, each with a residual)
// → ln_out → head. A version supplies only its blocks.
import { ArgumentError } from '../errors.js';
import { matmul, matvec, readRow, type Matrix, type MatrixDType } from '../kernels/matrix.js';
import { normKernelsOf, normRows, type NormKernels } from '../kernels/norm.js';
import type { ModelConfig } from './config.js';
import { State, stateSize } from './state.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Weights } from './weights.js';

export const LN_EPS = 1e-5;

/**
 * Default chunk length of the chunked WKV. On a CPU the within-chunk term (O(L²·N) per head) costs more
 * than it saves once L passes the head size's small multiples; 16 measured fastest for v7 0.1B here.
 */
export const DEFAULT_CHUNK = 16;

/** Per-token values that flow between layers (v7's v_first). */
export interface TokenContext {
  /** v7: the first layer's value vector (C), shared by every later layer for this token. */
  vFirst: Float32Array;
}

/**
 * Reusable T × · work buffers for parallel mode, by name: one allocation per name for the model's
 * lifetime (grown when a longer sequence comes), instead of fresh arrays in every layer of every call.
 * A buffer's contents are garbage when handed out; names must be distinct among buffers in use at once.
 */
export class ScratchPool {
  private readonly f32 = new Map<string, Float32Array>();

  get(name: string, length: number): Float32Array {
    let a = this.f32.get(name);
    if (a === undefined || a.length < length) {
      a = new Float32Array(Math.max(length, Math.ceil((a?.length ?? 0) * 1.5)));
      this.f32.set(name, a);
    }
    return a.subarray(0, length);
  }
}

/** Per-sequence values that flow between layers in parallel mode. */
export interface SequenceContext {
  /** v7: the first layer's value vectors, T × C. */
  vFirst: Float32Array;
  /** Chunk length of the chunked WKV (v5/v6/v7); v4's scan ignores it. */
  chunk: number;
  /** Work buffers shared by all layers. */
  scratch: ScratchPool;
}

/**
 * One layer of a given version. `x*` inputs are already normed (ln1 / ln2); outputs have length C (RNN
 * mode) or T × C (parallel mode, rows are positions). Both modes update the layer's state identically.
 */
export interface Block {
  timeMix(xa: Float32Array, layerState: Float32Array, out: Float32Array, ctx: TokenContext): void;
  channelMix(xf: Float32Array, layerState: Float32Array, out: Float32Array): void;
  timeMixSequence?(xa: Float32Array, t: number, layerState: Float32Array, out: Float32Array, ctx: SequenceContext): void;
  channelMixSequence?(xf: Float32Array, t: number, layerState: Float32Array, out: Float32Array, ctx: SequenceContext): void;
}

export interface SequenceOptions {
  /** Return the logits of every position (T × nVocab) instead of the last one only. */
  allLogits?: boolean;
  /** Chunk length of the chunked WKV of v5/v6/v7 (default DEFAULT_CHUNK). */
  chunk?: number;
}

export interface LayerNormWeights {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

export function loadLayerNorm(w: Weights, prefix: string, c: number): LayerNormWeights {
  return { weight: w.vector(`${prefix}.weight`, c, 'n_embd'), bias: w.vector(`${prefix}.bias`, c, 'n_embd') };
}

/** A model that runs one token at a time (RNN mode). */
export interface RwkvModel {
  readonly config: ModelConfig;
  /** Where the weights came from. */
  readonly file: string;
  /** A fresh state (v4: pp = −1e30, everything else 0). */
  createState(): State;
  /**
   * Feeds one token: updates `state` in place and returns the logits (nVocab), written into `logits`
   * when given. The returned array is reused by the next call unless `logits` is passed.
   */
  forward(token: number, state: State, logits?: Float32Array): Float32Array;
  /**
   * Parallel ("transformer") mode: feeds all `tokens` at once, each projection one matrix-matrix product
   * over the T × C block. Updates `state` exactly as feeding them one by one would, and returns the
   * logits of the last position (nVocab) or, with `allLogits`, of every position (T × nVocab, row-major).
   */
  forwardSequence(tokens: readonly number[], state: State, options?: SequenceOptions): Float32Array;
  /** Bytes of weights held in memory. */
  readonly weightBytes: number;
  /** Every tensor of the file, by name, as stored. */
  readonly tensors: ReadonlyMap<string, Tensor>;
  /** Tensors held in another encoding than the file's (the opt-in int8 mode), with their bytes in memory. */
  readonly reencoded: ReadonlyMap<string, { dtype: MatrixDType; bytes: number }>;
}

export class RnnModel implements RwkvModel {
  readonly config: ModelConfig;
  readonly file: string;
  readonly weightBytes: number;
  readonly tensors: ReadonlyMap<string, Tensor>;
  readonly reencoded: ReadonlyMap<string, { dtype: MatrixDType; bytes: number }>;
  private readonly emb: Matrix;
  private readonly ln0: LayerNormWeights;
  private readonly blocks: readonly Block[];
  private readonly ln1: readonly LayerNormWeights[];
  private readonly ln2: readonly LayerNormWeights[];
  private readonly lnOut: LayerNormWeights;
  private readonly head: Matrix;
  // Scratch, length C unless noted.
  private readonly x: Float32Array;
  private readonly xn: Float32Array;
  private readonly dx: Float32Array;
  private readonly out: Float32Array;
  private readonly ctx: TokenContext;
  private readonly stateFloats: number;
  private readonly scratch = new ScratchPool();
  /** LayerNorm on the fast kernels, when the model runs on them. */
  private readonly norms: NormKernels | undefined;

  constructor(config: ModelConfig, w: Weights, blocks: readonly Block[]) {
    const c = config.nEmbd;
    this.config = config;
    this.file = w.file;
    this.emb = w.matrix('emb.weight', config.nVocab, c, 'n_vocab × n_embd');
    this.ln0 = loadLayerNorm(w, 'blocks.0.ln0', c);
    this.blocks = blocks;
    this.ln1 = blocks.map((_, i) => loadLayerNorm(w, `blocks.${i}.ln1`, c));
    this.ln2 = blocks.map((_, i) => loadLayerNorm(w, `blocks.${i}.ln2`, c));
    this.lnOut = loadLayerNorm(w, 'ln_out', c);
    this.head = w.matrix('head.weight', config.nVocab, c, 'n_vocab × n_embd');
    this.tensors = w.source.tensors;
    this.reencoded = w.reencoded;
    let bytes = 0;
    for (const [name, t] of w.source.tensors) bytes += w.reencoded.get(name)?.bytes ?? t.data.byteLength;
    this.weightBytes = bytes;
    this.x = new Float32Array(c);
    this.xn = new Float32Array(c);
    this.dx = new Float32Array(c);
    this.out = new Float32Array(config.nVocab);
    this.ctx = { vFirst: new Float32Array(c) };
    this.stateFloats = stateSize(config);
    this.norms = normKernelsOf(w.fast);
  }

  /** LayerNorm of `rows` rows of C values. */
  private layerNorm(x: Float32Array, ln: LayerNormWeights, out: Float32Array, rows: number): void {
    normRows(this.norms, x, ln.weight, ln.bias, out, rows, 1, LN_EPS);
  }

  createState(): State {
    return new State(this.config);
  }

  private checkInputs(tokens: readonly number[], state: State): void {
    const { nVocab } = this.config;
    for (const token of tokens) {
      if (!Number.isInteger(token) || token < 0 || token >= nVocab) {
        throw new ArgumentError(`token id ${token} is outside the vocabulary (0..${nVocab - 1})`);
      }
    }
    if (state.data.length !== this.stateFloats) {
      throw new ArgumentError(`the state has ${state.data.length} floats; this model's has ${this.stateFloats}`);
    }
  }

  forwardSequence(tokens: readonly number[], state: State, options: SequenceOptions = {}): Float32Array {
    const { nVocab, nLayer, nEmbd: c } = this.config;
    this.checkInputs(tokens, state);
    const t = tokens.length;
    if (t === 0) throw new ArgumentError('parallel mode needs at least one token');
    const chunk = options.chunk ?? DEFAULT_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1) throw new ArgumentError(`chunk length must be an integer ≥ 1, got ${chunk}`);
    for (const block of this.blocks) {
      if (block.timeMixSequence === undefined || block.channelMixSequence === undefined) {
        throw new ArgumentError(`parallel mode is not implemented for RWKV v${this.config.version} yet; use RNN mode`);
      }
    }
    // x: T × C residual stream; xn: its normed rows; dx: a block's output.
    const pool = this.scratch;
    const x = pool.get('model.x', t * c);
    const xn = pool.get('model.xn', t * c);
    const dx = pool.get('model.dx', t * c);
    const ctx: SequenceContext = { vFirst: pool.get('model.vFirst', t * c), chunk, scratch: pool };
    const rows = (a: Float32Array, i: number): Float32Array => a.subarray(i * c, (i + 1) * c);
    for (let i = 0; i < t; i++) readRow(this.emb, tokens[i]!, rows(x, i));
    this.layerNorm(x, this.ln0, x, t);
    for (let l = 0; l < nLayer; l++) {
      const block = this.blocks[l]!;
      const s = state.layer(l);
      this.layerNorm(x, this.ln1[l]!, xn, t);
      block.timeMixSequence!(xn, t, s, dx, ctx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
      this.layerNorm(x, this.ln2[l]!, xn, t);
      block.channelMixSequence!(xn, t, s, dx, ctx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
    }
    if (options.allLogits === true) {
      this.layerNorm(x, this.lnOut, xn, t);
      const out = new Float32Array(t * nVocab);
      matmul(this.head, xn, t, out);
      return out;
    }
    const last = rows(xn, t - 1);
    this.layerNorm(rows(x, t - 1), this.lnOut, last, 1);
    const out = new Float32Array(nVocab);
    matmul(this.head, last, 1, out);
    return out;
  }

  forward(token: number, state: State, logits?: Float32Array): Float32Array {
    const { nLayer } = this.config;
    this.checkInputs([token], state);
    const { x, xn, dx } = this;
    readRow(this.emb, token, x);
    this.layerNorm(x, this.ln0, x, 1);
    for (let l = 0; l < nLayer; l++) {
      const block = this.blocks[l]!;
      const s = state.layer(l);
      this.layerNorm(x, this.ln1[l]!, xn, 1);
      block.timeMix(xn, s, dx, this.ctx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
      this.layerNorm(x, this.ln2[l]!, xn, 1);
      block.channelMix(xn, s, dx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
    }
    this.layerNorm(x, this.lnOut, xn, 1);
    const out = logits ?? this.out;
    matvec(this.head, xn, out);
    return out;
  }
}
