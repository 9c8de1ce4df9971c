// What every training graph (RWKV-4 model.ts, GPT gpt.ts, RWKV-7 rwkv7.ts) shares, so that each
// architecture's file holds only its own parameter list, body forward, body backward and FLOP count:
// the parameters (allocated from the official (name, shape) list), the named activation buffers, the
// batch checks, and the end of the graph — the final LayerNorm, the head and the cross-entropy:
//
//   xo = LN(body(ids));  logits = xo·Headᵀ (N × V);  loss = mean over counted targets of −log softmax
//
// Targets of IGNORE_TARGET (−1) carry no loss (chat fine-tuning: only the assistant's tokens count): the
// loss is the mean over the others and its gradient is exactly that mean's; a batch with none counted has
// loss 0 and zero gradients. The logits are computed in row chunks under a budget and, when they do not
// fit, recomputed in the backward.
import { ArgumentError } from '../errors.js';
import type { ModelShape, TrainModel } from './architecture.js';
import type { Gemm } from './gemm.js';
import { crossEntropy, IGNORE_TARGET, type Vec } from './ops.js';
import { TYPESCRIPT_OPS, type TrainingOps } from './kernels.js';

export interface Param {
  /** Official name, e.g. 'blocks.0.att.key.weight'. */
  readonly name: string;
  /** Official (PyTorch) shape, e.g. [1, 1, C] for time_mix_*. */
  readonly shape: readonly number[];
  readonly data: Vec;
  readonly grad: Vec;
  /** Whether weight decay applies: matrices (two dimensions longer than 1). */
  readonly decay: boolean;
}

/** How an architecture's graph ends and allocates: what differs between them around the shared head. */
export interface GraphSpec {
  /** The official parameter list, in checkpoint order. */
  readonly params: readonly { readonly name: string; readonly shape: readonly number[] }[];
  /** The final LayerNorm's weight and bias ([C] each), e.g. 'ln_out.weight' (RWKV), 'ln_f.weight' (GPT). */
  readonly normWeight: string;
  readonly normBias: string;
  /** The head matrix [V, C]: 'head.weight' (RWKV), 'wte.weight' (GPT tied) or 'lm_head.weight'. */
  readonly head: string;
  /** Whether weight decay applies (default: at least two dimensions longer than 1). */
  readonly decay?: (name: string, shape: readonly number[]) => boolean;
  /** A parameter's gradient length (default its size; 0 for a frozen matrix, whose gradient is never made). */
  readonly gradLength?: (name: string, size: number) => number;
  /** Frozen weights (state tuning): the head's weight gradient is skipped too. */
  readonly frozen?: boolean;
  /**
   * Logits of more than this many values (rows × vocab) are not kept for the backward but computed in
   * row chunks of a quarter of it, and recomputed there (default 2^24: 64 MiB in f32).
   */
  readonly logitBudget?: number;
}

const matrixDecay = (_name: string, shape: readonly number[]): boolean => shape.filter((d) => d > 1).length >= 2;

export abstract class TrainGraph<S extends ModelShape> implements TrainModel {
  readonly shape: S;
  readonly gemm: Gemm;
  /** In official order. */
  readonly params: readonly Param[];
  /** Frozen weights: no weight gradient is computed (subclasses skip theirs too). */
  protected readonly frozen: boolean;
  private readonly byName = new Map<string, Param>();
  private readonly buffers = new Map<string, Vec>();
  private readonly normW: Param;
  private readonly normB: Param;
  private readonly headW: Param;
  private readonly logitBudget: number;
  // The last forward's batch (b = 0: none to backpropagate).
  protected ids: Int32Array = new Int32Array(0);
  protected b = 0;
  protected t = 0;
  private targets: Int32Array = new Int32Array(0);
  /** How many of `targets` count (are not IGNORE_TARGET): the loss's denominator. */
  private counted = 0;
  /** The body's output, the final LayerNorm's input (N × C), from the last forward. */
  private residual: Vec = new Float64Array(0);
  private logitsKept = false;

  protected constructor(shape: S, gemm: Gemm, spec: GraphSpec) {
    this.shape = shape;
    this.gemm = gemm;
    this.frozen = spec.frozen === true;
    this.logitBudget = spec.logitBudget ?? 1 << 24;
    const decay = spec.decay ?? matrixDecay;
    const params: Param[] = [];
    for (const { name, shape: s } of spec.params) {
      const n = s.reduce((a, d) => a * d, 1);
      const p: Param = { name, shape: s, data: gemm.allocate(n), grad: this.vec(spec.gradLength?.(name, n) ?? n), decay: decay(name, s) };
      params.push(p);
      this.byName.set(name, p);
    }
    this.params = params;
    this.normW = this.param(spec.normWeight);
    this.normB = this.param(spec.normBias);
    this.headW = this.param(spec.head);
  }

  param(name: string): Param {
    const p = this.byName.get(name);
    if (p === undefined) throw new ArgumentError(`no parameter named '${name}'`);
    return p;
  }

  /** Number of parameters. */
  get size(): number {
    return this.params.reduce((a, p) => a + p.data.length, 0);
  }

  /** FLOPs of the matrix products per token of one training step (forward 2·, backward 4· per weight). */
  abstract get matmulFlopsPerToken(): number;

  /**
   * The layers from the embedding up: reads `ids` (b sequences of t tokens) and returns the residual
   * stream the final LayerNorm reads (N × C, a named buffer), keeping what `bodyBackward` needs.
   */
  protected abstract bodyForward(ids: Int32Array, b: number, t: number): Vec;

  /** Accumulates the body's gradients from dx = ∂loss/∂(bodyForward's output) (N × C; may be overwritten). */
  protected abstract bodyBackward(dx: Vec): void;

  /** Architecture-specific limits of a window of t tokens (GPT: its positions); throws ArgumentError. */
  protected checkWindow(_t: number): void {}

  /** A fresh array of the Gemm's precision. */
  /** The element-wise operations: the Gemm's kernels where it has them, else ops.ts's TypeScript. */
  protected get ops(): TrainingOps {
    return this.gemm.kernels ?? TYPESCRIPT_OPS;
  }

  protected vec(length: number): Vec {
    return this.gemm.precision === 'f64' ? new Float64Array(length) : new Float32Array(length);
  }

  /**
   * A named activation buffer of `length` values (contents undefined), kept for the model's lifetime. From
   * the Gemm's own storage: with the WebAssembly kernels, their memory, so products and scans read and
   * write it in place instead of through copies.
   */
  protected buf(name: string, length: number): Vec {
    let a = this.buffers.get(name);
    if (a === undefined || a.length < length) {
      a = this.gemm.allocate(length);
      this.buffers.set(name, a);
    }
    return a.subarray(0, length);
  }

  protected zeroed(name: string, length: number): Vec {
    const a = this.buf(name, length);
    a.fill(0);
    return a;
  }

  /**
   * Checks the batch's size and its values: token ids in [0, V), or with `targets`, in [−1, V) (−1:
   * ignored). Returns how many values count (are not ignored).
   */
  private checkBatch(ids: Int32Array, b: number, t: number, targets: boolean): number {
    if (!Number.isInteger(b) || !Number.isInteger(t) || b < 1 || t < 1 || ids.length !== b * t) {
      throw new ArgumentError(`a batch of ${b} × ${t} tokens needs ${b * t} ids, got ${ids.length}`);
    }
    this.checkWindow(t);
    const v = this.shape.nVocab;
    let counted = 0;
    for (const id of ids) {
      if (id >= 0 && id < v) counted++;
      else if (!(targets && id === IGNORE_TARGET)) {
        throw new ArgumentError(targets ? `target id ${id} is outside the vocabulary (0..${v - 1}) and not ${IGNORE_TARGET} (ignored)` : `token id ${id} is outside the vocabulary (0..${v - 1})`);
      }
    }
    return counted;
  }

  /**
   * Forward over `ids` (b sequences of t tokens, row-major) and the mean cross-entropy against `targets`
   * (same shape; IGNORE_TARGET positions left out of the mean, 0 when none counts). Keeps what `backward`
   * needs.
   */
  forward(ids: Int32Array, targets: Int32Array, b: number, t: number): number {
    this.checkBatch(ids, b, t, false);
    this.counted = this.checkBatch(targets, b, t, true);
    this.ids = ids;
    this.targets = targets;
    this.b = b;
    this.t = t;
    this.body(ids, b, t);
    return this.head();
  }

  /** The logits of every position (b·t × vocab, a fresh array), for evaluation and tests. */
  logits(ids: Int32Array, b: number, t: number): Vec {
    this.checkBatch(ids, b, t, false);
    this.body(ids, b, t);
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = b * t;
    const out = this.vec(n * V);
    this.gemm.forward(out, this.buf('xo', n * C), this.headW.data, n, V, C);
    this.b = 0; // nothing to backpropagate
    return out;
  }

  /** The body and the final LayerNorm: leaves the normed output in 'xo' (N × C). */
  private body(ids: Int32Array, b: number, t: number): void {
    const C = this.shape.nEmbd;
    const n = b * t;
    this.residual = this.bodyForward(ids, b, t);
    this.ops.layerNormForward(this.buf('xo', n * C), this.buf('mo', n), this.buf('so', n), this.residual, this.normW.data, this.normB.data, n, C);
  }

  /** Row chunks of the head: all rows at once when their logits fit the budget. */
  private headChunks(n: number): number {
    const V = this.shape.nVocab;
    return n * V <= this.logitBudget ? n : Math.max(1, Math.floor(this.logitBudget / 4 / V));
  }

  /** The head and the loss of the last forward's targets; keeps the logits (when they fit) for the backward. */
  private head(): number {
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = this.b * this.t;
    const xo = this.buf('xo', n * C);
    const head = this.headW.data;
    const rows = this.headChunks(n);
    this.logitsKept = rows === n;
    let loss = 0;
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const lg = logits.subarray(0, (r1 - r0) * V);
      this.gemm.forward(lg, xo.subarray(r0 * C, r1 * C), head, r1 - r0, V, C);
      loss += crossEntropy(lg, this.targets.subarray(r0, r1), r1 - r0, V, this.counted);
    }
    return loss;
  }

  /** Zeroes every gradient, then fills them with ∂loss/∂param of the last `forward`. */
  backward(): void {
    if (this.b === 0) throw new ArgumentError('backward needs a forward with targets first');
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = this.b * this.t;
    const gemm = this.gemm;
    for (const p of this.params) p.grad.fill(0);

    // Head and cross-entropy, in row chunks (logits recomputed when they were not kept). A tied head's
    // gradient is the embedding's: the body's embedding backward adds its share afterwards.
    const xo = this.buf('xo', n * C);
    const head = this.headW;
    const dxo = this.buf('dxo', n * C);
    const rows = this.headChunks(n);
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const m = r1 - r0;
      const lg = logits.subarray(0, m * V);
      const xc = xo.subarray(r0 * C, r1 * C);
      if (!this.logitsKept) gemm.forward(lg, xc, head.data, m, V, C);
      crossEntropy(lg, this.targets.subarray(r0, r1), m, V, this.counted, lg); // in place: dlogits (m × V)
      gemm.backwardInput(dxo.subarray(r0 * C, r1 * C), lg, head.data, m, V, C);
      if (!this.frozen) gemm.backwardWeight(head.grad, lg, xc, m, V, C);
    }
    this.logitsKept = false;
    // dx: the gradient of the body's output, carried down through the layers.
    const dx = this.zeroed('dx', n * C);
    this.ops.layerNormBackward(dx, this.normW.grad, this.normB.grad, dxo, this.residual, this.buf('mo', n), this.buf('so', n), this.normW.data, n, C);
    this.bodyBackward(dx);
  }
}
