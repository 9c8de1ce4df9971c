// The RWKV-4 training graph: forward in parallel mode over a batch of B sequences of T tokens (N = B·T
// rows), each from an empty state, keeping what the backward needs; then the backward, op by op in
// reverse. Parameters carry their official (RWKV-LM) names and shapes, so a checkpoint is the parameter
// list as it is.
//
//   x₀ = LN0(emb[ids])
//   per layer:  xa = LN1(x);  k, v, r = mix(xa, μk|μv|μr)·W{k,v,r}ᵀ;  x += (σ(r) ⊙ WKV(k, v))·Woᵀ
//               xf = LN2(x);  x += σ(mix(xf, μr')·Wr'ᵀ) ⊙ (relu(mix(xf, μk')·Wk'ᵀ)²·Wv'ᵀ)
//   logits = LNout(x)·Headᵀ;  loss = mean cross-entropy
//
// Saved per layer: the LN inputs' statistics, xa, k, v, σ(r), WKV's y, the mid-layer residual, xf, the
// channel mix's key pre-activation, its value output and its receptance σ(r'). The mixes and
// gate outputs are recomputed in the backward (O(N·C) each), never stored.
import { ArgumentError } from '../errors.js';
import type { ModelShape, TrainModel } from './architecture.js';
import type { Gemm } from './gemm.js';
import {
  addForward,
  crossEntropy,
  embeddingBackward,
  embeddingForward,
  layerNormBackward,
  layerNormForward,
  multiplyForward,
  reluSquaredBackward,
  reluSquaredForward,
  sigmoidGateBackward,
  sigmoidGateForward,
  tokenShiftMixBackward,
  tokenShiftMixForward,
  type Vec,
  wkvBackward,
  wkvForward,
} from './ops.js';

export interface Rwkv4Shape extends ModelShape {
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nVocab: number;
  /** The channel mix's hidden size (RWKV-4: 4·nEmbd). */
  readonly ffnSize: number;
}

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

/** The official parameter list of an RWKV-4 model, in RWKV-LM's state_dict order. */
export function rwkv4ParamShapes(s: Rwkv4Shape): { name: string; shape: number[] }[] {
  const { nLayer: L, nEmbd: C, nVocab: V, ffnSize: F } = s;
  const out: { name: string; shape: number[] }[] = [{ name: 'emb.weight', shape: [V, C] }];
  for (let l = 0; l < L; l++) {
    const p = `blocks.${l}`;
    out.push({ name: `${p}.ln1.weight`, shape: [C] }, { name: `${p}.ln1.bias`, shape: [C] });
    out.push({ name: `${p}.ln2.weight`, shape: [C] }, { name: `${p}.ln2.bias`, shape: [C] });
    if (l === 0) out.push({ name: `${p}.ln0.weight`, shape: [C] }, { name: `${p}.ln0.bias`, shape: [C] });
    for (const n of ['time_decay', 'time_first']) out.push({ name: `${p}.att.${n}`, shape: [C] });
    for (const n of ['k', 'v', 'r']) out.push({ name: `${p}.att.time_mix_${n}`, shape: [1, 1, C] });
    for (const n of ['key', 'value', 'receptance', 'output']) out.push({ name: `${p}.att.${n}.weight`, shape: [C, C] });
    for (const n of ['k', 'r']) out.push({ name: `${p}.ffn.time_mix_${n}`, shape: [1, 1, C] });
    out.push({ name: `${p}.ffn.key.weight`, shape: [F, C] });
    out.push({ name: `${p}.ffn.receptance.weight`, shape: [C, C] });
    out.push({ name: `${p}.ffn.value.weight`, shape: [C, F] });
  }
  out.push({ name: 'ln_out.weight', shape: [C] }, { name: 'ln_out.bias', shape: [C] }, { name: 'head.weight', shape: [V, C] });
  return out;
}

interface LayerParams {
  ln1w: Vec;
  ln1b: Vec;
  ln2w: Vec;
  ln2b: Vec;
  decay: Vec;
  first: Vec;
  muK: Vec;
  muV: Vec;
  muR: Vec;
  wk: Vec;
  wv: Vec;
  wr: Vec;
  wo: Vec;
  fMuK: Vec;
  fMuR: Vec;
  fwk: Vec;
  fwr: Vec;
  fwv: Vec;
}

export interface Rwkv4TrainOptions {
  /**
   * Logits of more than this many values (rows × vocab) are not kept for the backward but computed in
   * row chunks of a quarter of it, and recomputed there (default 2^24: 64 MiB in f32).
   */
  logitBudget?: number;
}

export class Rwkv4Train implements TrainModel {
  readonly shape: Rwkv4Shape;
  readonly gemm: Gemm;
  /** In official order. */
  readonly params: readonly Param[];
  private readonly byName = new Map<string, Param>();
  private readonly w: LayerParams[] = [];
  private readonly dw: LayerParams[] = [];
  private readonly buffers = new Map<string, Vec>();
  // The last forward's batch.
  private ids: Int32Array = new Int32Array(0);
  private targets: Int32Array = new Int32Array(0);
  private b = 0;
  private t = 0;
  private logitsKept = false;
  private readonly logitBudget: number;

  constructor(shape: Rwkv4Shape, gemm: Gemm, options: Rwkv4TrainOptions = {}) {
    this.logitBudget = options.logitBudget ?? 1 << 24;
    for (const [k, v] of Object.entries(shape)) {
      if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
    }
    this.shape = shape;
    this.gemm = gemm;
    const params: Param[] = [];
    for (const { name, shape: s } of rwkv4ParamShapes(shape)) {
      const n = s.reduce((a, d) => a * d, 1);
      const p: Param = {
        name,
        shape: s,
        data: gemm.allocate(n),
        grad: gemm.precision === 'f64' ? new Float64Array(n) : new Float32Array(n),
        decay: s.filter((d) => d > 1).length >= 2,
      };
      params.push(p);
      this.byName.set(name, p);
    }
    this.params = params;
    for (let l = 0; l < shape.nLayer; l++) {
      this.w.push(this.layer(l, 'data'));
      this.dw.push(this.layer(l, 'grad'));
    }
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
  get matmulFlopsPerToken(): number {
    const { nLayer: L, nEmbd: C, nVocab: V, ffnSize: F } = this.shape;
    return 6 * (L * (5 * C * C + 2 * C * F) + V * C);
  }

  private layer(l: number, which: 'data' | 'grad'): LayerParams {
    const g = (n: string): Vec => this.param(`blocks.${l}.${n}`)[which];
    return {
      ln1w: g('ln1.weight'),
      ln1b: g('ln1.bias'),
      ln2w: g('ln2.weight'),
      ln2b: g('ln2.bias'),
      decay: g('att.time_decay'),
      first: g('att.time_first'),
      muK: g('att.time_mix_k'),
      muV: g('att.time_mix_v'),
      muR: g('att.time_mix_r'),
      wk: g('att.key.weight'),
      wv: g('att.value.weight'),
      wr: g('att.receptance.weight'),
      wo: g('att.output.weight'),
      fMuK: g('ffn.time_mix_k'),
      fMuR: g('ffn.time_mix_r'),
      fwk: g('ffn.key.weight'),
      fwr: g('ffn.receptance.weight'),
      fwv: g('ffn.value.weight'),
    };
  }

  /** A named activation buffer of `length` values (contents undefined), kept for the model's lifetime. */
  private buf(name: string, length: number): Vec {
    let a = this.buffers.get(name);
    if (a === undefined || a.length < length) {
      a = this.gemm.precision === 'f64' ? new Float64Array(length) : new Float32Array(length);
      this.buffers.set(name, a);
    }
    return a.subarray(0, length);
  }

  private zeroed(name: string, length: number): Vec {
    const a = this.buf(name, length);
    a.fill(0);
    return a;
  }

  private checkBatch(ids: Int32Array, b: number, t: number): void {
    if (!Number.isInteger(b) || !Number.isInteger(t) || b < 1 || t < 1 || ids.length !== b * t) {
      throw new ArgumentError(`a batch of ${b} × ${t} tokens needs ${b * t} ids, got ${ids.length}`);
    }
    const v = this.shape.nVocab;
    for (const id of ids) if (!(id >= 0 && id < v)) throw new ArgumentError(`token id ${id} is outside the vocabulary (0..${v - 1})`);
  }

  /**
   * Forward over `ids` (b sequences of t tokens, row-major) and the mean cross-entropy against `targets`
   * (same shape). Keeps what `backward` needs.
   */
  forward(ids: Int32Array, targets: Int32Array, b: number, t: number): number {
    this.checkBatch(ids, b, t);
    this.checkBatch(targets, b, t);
    this.ids = ids;
    this.targets = targets;
    this.b = b;
    this.t = t;
    this.body(ids, b, t);
    return this.head(targets, true);
  }

  /** The logits of every position (b·t × vocab, a fresh array), for evaluation and tests. */
  logits(ids: Int32Array, b: number, t: number): Vec {
    this.checkBatch(ids, b, t);
    this.body(ids, b, t);
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = b * t;
    const xo = this.buf('xo', n * C);
    const out = this.gemm.precision === 'f64' ? new Float64Array(n * V) : new Float32Array(n * V);
    this.gemm.forward(out, xo, this.param('head.weight').data, n, V, C);
    this.b = 0; // nothing to backpropagate
    return out;
  }

  /** Embedding, LN0, the layers, LNout: leaves the normed output in 'xo'. */
  private body(ids: Int32Array, b: number, t: number): void {
    const { nLayer: L, nEmbd: C, ffnSize: F } = this.shape;
    const n = b * t;
    const gemm = this.gemm;
    const emb = this.buf('emb', n * C);
    embeddingForward(emb, ids, this.param('emb.weight').data, C);
    layerNormForward(this.buf('x0', n * C), this.buf('m0', n), this.buf('s0', n), emb, this.param('blocks.0.ln0.weight').data, this.param('blocks.0.ln0.bias').data, n, C);
    const tmp = this.buf('tmp', n * C);
    const tmp2 = this.buf('tmp2', n * C);
    const tmpF = this.buf('tmpF', n * F);
    for (let l = 0; l < L; l++) {
      const w = this.w[l]!;
      const x = this.buf(`x${l}`, n * C);
      const xa = this.buf(`xa${l}`, n * C);
      layerNormForward(xa, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), x, w.ln1w, w.ln1b, n, C);
      const k = this.buf(`k${l}`, n * C);
      const v = this.buf(`v${l}`, n * C);
      const r = this.buf(`r${l}`, n * C);
      tokenShiftMixForward(tmp, xa, w.muK, b, t, C);
      gemm.forward(k, tmp, w.wk, n, C, C);
      tokenShiftMixForward(tmp, xa, w.muV, b, t, C);
      gemm.forward(v, tmp, w.wv, n, C, C);
      tokenShiftMixForward(tmp, xa, w.muR, b, t, C);
      gemm.forward(r, tmp, w.wr, n, C, C);
      const y = this.buf(`y${l}`, n * C);
      wkvForward(y, k, v, w.decay, w.first, b, t, C);
      sigmoidGateForward(tmp, r, r, y); // r becomes σ(r)
      gemm.forward(tmp2, tmp, w.wo, n, C, C);
      const xm = this.buf(`xm${l}`, n * C);
      addForward(xm, x, tmp2);
      const xf = this.buf(`xf${l}`, n * C);
      layerNormForward(xf, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), xm, w.ln2w, w.ln2b, n, C);
      const fk = this.buf(`fk${l}`, n * F);
      tokenShiftMixForward(tmp, xf, w.fMuK, b, t, C);
      gemm.forward(fk, tmp, w.fwk, n, F, C);
      reluSquaredForward(tmpF, fk);
      const kv = this.buf(`kv${l}`, n * C);
      gemm.forward(kv, tmpF, w.fwv, n, C, F);
      const fr = this.buf(`fr${l}`, n * C);
      tokenShiftMixForward(tmp, xf, w.fMuR, b, t, C);
      gemm.forward(fr, tmp, w.fwr, n, C, C);
      sigmoidGateForward(tmp, fr, fr, kv); // fr becomes σ(fr)
      addForward(this.buf(`x${l + 1}`, n * C), xm, tmp);
    }
    layerNormForward(this.buf('xo', n * C), this.buf('mo', n), this.buf('so', n), this.buf(`x${L}`, n * C), this.param('ln_out.weight').data, this.param('ln_out.bias').data, n, C);
  }

  /** Row chunks of the head: all rows at once when their logits fit the budget. */
  private headChunks(n: number): number {
    const V = this.shape.nVocab;
    return n * V <= this.logitBudget ? n : Math.max(1, Math.floor(this.logitBudget / 4 / V));
  }

  /** The head and the loss; with `training`, keeps the logits (when they fit) for the backward. */
  private head(targets: Int32Array, training: boolean): number {
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = this.b * this.t;
    const xo = this.buf('xo', n * C);
    const head = this.param('head.weight').data;
    const rows = this.headChunks(n);
    this.logitsKept = training && rows === n;
    let loss = 0;
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const lg = logits.subarray(0, (r1 - r0) * V);
      this.gemm.forward(lg, xo.subarray(r0 * C, r1 * C), head, r1 - r0, V, C);
      loss += crossEntropy(lg, targets.subarray(r0, r1), r1 - r0, V, n);
    }
    return loss;
  }

  /** Zeroes every gradient, then fills them with ∂loss/∂param of the last `forward`. */
  backward(): void {
    if (this.b === 0) throw new ArgumentError('backward needs a forward with targets first');
    const { nLayer: L, nEmbd: C, nVocab: V, ffnSize: F } = this.shape;
    const { b, t } = this;
    const n = b * t;
    const gemm = this.gemm;
    for (const p of this.params) p.grad.fill(0);

    // Head and cross-entropy, in row chunks (logits recomputed when they were not kept).
    const xo = this.buf('xo', n * C);
    const head = this.param('head.weight');
    const dxo = this.buf('dxo', n * C);
    const rows = this.headChunks(n);
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const m = r1 - r0;
      const lg = logits.subarray(0, m * V);
      const xc = xo.subarray(r0 * C, r1 * C);
      if (!this.logitsKept) gemm.forward(lg, xc, head.data, m, V, C);
      crossEntropy(lg, this.targets.subarray(r0, r1), m, V, n, lg); // in place: dlogits
      gemm.backwardInput(dxo.subarray(r0 * C, r1 * C), lg, head.data, m, V, C);
      gemm.backwardWeight(head.grad, lg, xc, m, V, C);
    }
    this.logitsKept = false;
    const dx = this.zeroed('dx', n * C);
    layerNormBackward(dx, this.param('ln_out.weight').grad, this.param('ln_out.bias').grad, dxo, this.buf(`x${L}`, n * C), this.buf('mo', n), this.buf('so', n), this.param('ln_out.weight').data, n, C);

    const tmp = this.buf('tmp', n * C);
    const dtmp = this.buf('dtmp', n * C);
    const tmpF = this.buf('tmpF', n * F);
    const dtmpF = this.buf('dtmpF', n * F);
    for (let l = L - 1; l >= 0; l--) {
      const w = this.w[l]!;
      const dw = this.dw[l]!;
      const x = this.buf(`x${l}`, n * C);
      const xa = this.buf(`xa${l}`, n * C);
      const k = this.buf(`k${l}`, n * C);
      const v = this.buf(`v${l}`, n * C);
      const r = this.buf(`r${l}`, n * C);
      const y = this.buf(`y${l}`, n * C);
      const xm = this.buf(`xm${l}`, n * C);
      const xf = this.buf(`xf${l}`, n * C);
      const fk = this.buf(`fk${l}`, n * F);
      const kv = this.buf(`kv${l}`, n * C);
      const fr = this.buf(`fr${l}`, n * C);

      // Channel mix: out = σ(fr) ⊙ kv, with dx the gradient of the layer's output.
      const dfr = this.zeroed('dfr', n * C);
      const dkv = this.zeroed('dkv', n * C);
      sigmoidGateBackward(dfr, dkv, dx, fr, kv);
      const dxf = this.zeroed('dxf', n * C);
      tokenShiftMixForward(tmp, xf, w.fMuR, b, t, C);
      gemm.backwardWeight(dw.fwr, dfr, tmp, n, C, C);
      gemm.backwardInput(dtmp, dfr, w.fwr, n, C, C);
      tokenShiftMixBackward(dxf, dw.fMuR, dtmp, xf, w.fMuR, b, t, C);
      reluSquaredForward(tmpF, fk);
      gemm.backwardWeight(dw.fwv, dkv, tmpF, n, C, F);
      gemm.backwardInput(dtmpF, dkv, w.fwv, n, C, F);
      const dfk = this.zeroed('dfk', n * F);
      reluSquaredBackward(dfk, dtmpF, fk);
      tokenShiftMixForward(tmp, xf, w.fMuK, b, t, C);
      gemm.backwardWeight(dw.fwk, dfk, tmp, n, F, C);
      gemm.backwardInput(dtmp, dfk, w.fwk, n, F, C);
      tokenShiftMixBackward(dxf, dw.fMuK, dtmp, xf, w.fMuK, b, t, C);
      // The residual: d(xm) = dx + LN2's backward of dxf.
      const dxm = this.buf('dxm', n * C);
      dxm.set(dx);
      layerNormBackward(dxm, dw.ln2w, dw.ln2b, dxf, xm, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), w.ln2w, n, C);

      // Time mix: xm = x + (σ(r) ⊙ y)·Woᵀ.
      multiplyForward(tmp, r, y);
      gemm.backwardWeight(dw.wo, dxm, tmp, n, C, C);
      gemm.backwardInput(dtmp, dxm, w.wo, n, C, C);
      const dr = this.zeroed('dr', n * C);
      const dy = this.zeroed('dy', n * C);
      sigmoidGateBackward(dr, dy, dtmp, r, y);
      const dk = this.zeroed('dk', n * C);
      const dv = this.zeroed('dv', n * C);
      wkvBackward(dk, dv, dw.decay, dw.first, dy, k, v, w.decay, w.first, b, t, C);
      const dxa = this.zeroed('dxa', n * C);
      const projections: [Vec, Vec, Vec, Vec, Vec][] = [
        [dk, w.wk, dw.wk, w.muK, dw.muK],
        [dv, w.wv, dw.wv, w.muV, dw.muV],
        [dr, w.wr, dw.wr, w.muR, dw.muR],
      ];
      for (const [d, wt, dwt, mu, dmu] of projections) {
        tokenShiftMixForward(tmp, xa, mu, b, t, C);
        gemm.backwardWeight(dwt, d, tmp, n, C, C);
        gemm.backwardInput(dtmp, d, wt, n, C, C);
        tokenShiftMixBackward(dxa, dmu, dtmp, xa, mu, b, t, C);
      }
      // The residual: d(x) = dxm + LN1's backward of dxa (dx has been consumed: reuse it).
      dx.set(dxm);
      layerNormBackward(dx, dw.ln1w, dw.ln1b, dxa, x, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), w.ln1w, n, C);
    }
    const demb = this.zeroed('demb', n * C);
    layerNormBackward(demb, this.param('blocks.0.ln0.weight').grad, this.param('blocks.0.ln0.bias').grad, dx, this.buf('emb', n * C), this.buf('m0', n), this.buf('s0', n), this.param('blocks.0.ln0.weight').data, n, C);
    embeddingBackward(this.param('emb.weight').grad, this.ids, demb, C);
  }
}
