// The shape every RWKV version shares: embed → ln0 → blocks (time mix, channel mix, each with a residual)
// → ln_out → head. A version supplies only its blocks.
import { ArgumentError } from '../errors.js';
import { matvec, readRow, type Matrix } from '../kernels/matrix.js';
import { layerNorm } from '../kernels/norm.js';
import type { ModelConfig } from './config.js';
import { State, stateSize } from './state.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Weights } from './weights.js';

export const LN_EPS = 1e-5;

/** Per-token values that flow between layers (v7's v_first). */
export interface TokenContext {
  /** v7: the first layer's value vector (C), shared by every later layer for this token. */
  vFirst: Float32Array;
}

/** One layer of a given version. `x*` inputs are already normed (ln1 / ln2); outputs have length C. */
export interface Block {
  timeMix(xa: Float32Array, layerState: Float32Array, out: Float32Array, ctx: TokenContext): void;
  channelMix(xf: Float32Array, layerState: Float32Array, out: Float32Array): void;
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
  /** Bytes of weights held in memory. */
  readonly weightBytes: number;
  /** Every tensor of the file, by name, as stored. */
  readonly tensors: ReadonlyMap<string, Tensor>;
}

export class RnnModel implements RwkvModel {
  readonly config: ModelConfig;
  readonly file: string;
  readonly weightBytes: number;
  readonly tensors: ReadonlyMap<string, Tensor>;
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
    let bytes = 0;
    for (const t of w.source.tensors.values()) bytes += t.data.byteLength;
    this.weightBytes = bytes;
    this.x = new Float32Array(c);
    this.xn = new Float32Array(c);
    this.dx = new Float32Array(c);
    this.out = new Float32Array(config.nVocab);
    this.ctx = { vFirst: new Float32Array(c) };
    this.stateFloats = stateSize(config);
  }

  createState(): State {
    return new State(this.config);
  }

  forward(token: number, state: State, logits?: Float32Array): Float32Array {
    const { nVocab, nLayer } = this.config;
    if (!Number.isInteger(token) || token < 0 || token >= nVocab) {
      throw new ArgumentError(`token id ${token} is outside the vocabulary (0..${nVocab - 1})`);
    }
    if (state.data.length !== this.stateFloats) {
      throw new ArgumentError(`the state has ${state.data.length} floats; this model's has ${this.stateFloats}`);
    }
    const { x, xn, dx } = this;
    readRow(this.emb, token, x);
    layerNorm(x, this.ln0.weight, this.ln0.bias, x, LN_EPS);
    for (let l = 0; l < nLayer; l++) {
      const block = this.blocks[l]!;
      const s = state.layer(l);
      layerNorm(x, this.ln1[l]!.weight, this.ln1[l]!.bias, xn, LN_EPS);
      block.timeMix(xn, s, dx, this.ctx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
      layerNorm(x, this.ln2[l]!.weight, this.ln2[l]!.bias, xn, LN_EPS);
      block.channelMix(xn, s, dx);
      for (let i = 0; i < x.length; i++) x[i] = x[i]! + dx[i]!;
    }
    layerNorm(x, this.lnOut.weight, this.lnOut.bias, xn, LN_EPS);
    const out = logits ?? this.out;
    matvec(this.head, xn, out);
    return out;
  }
}
