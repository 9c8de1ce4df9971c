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
// gate outputs are recomputed in the backward (O(N·C) each), never stored. LNout, the head and the loss
// (and the parameters, buffers and batch checks) are the shared TrainGraph's (graph.ts).
import { ArgumentError } from '../errors.js';
import type { ModelShape } from './architecture.js';
import type { Gemm } from './gemm.js';
import { TrainGraph } from './graph.js';
import {
  addForward,
  embeddingBackward,
  embeddingForward,
  multiplyForward,
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

// Param moved to graph.ts with the machinery every graph shares; re-exported where other files import it.
export type { Param } from './graph.js';

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

export class Rwkv4Train extends TrainGraph<Rwkv4Shape> {
  private readonly w: LayerParams[] = [];
  private readonly dw: LayerParams[] = [];

  constructor(shape: Rwkv4Shape, gemm: Gemm, options: Rwkv4TrainOptions = {}) {
    for (const [k, v] of Object.entries(shape)) {
      if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
    }
    super(shape, gemm, { params: rwkv4ParamShapes(shape), normWeight: 'ln_out.weight', normBias: 'ln_out.bias', head: 'head.weight', ...options });
    for (let l = 0; l < shape.nLayer; l++) {
      this.w.push(this.layer(l, 'data'));
      this.dw.push(this.layer(l, 'grad'));
    }
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

  /** Embedding, LN0, the layers: returns the last residual x_L (N × C), LNout's input. */
  protected bodyForward(ids: Int32Array, b: number, t: number): Vec {
    const { nLayer: L, nEmbd: C, ffnSize: F } = this.shape;
    const n = b * t;
    const gemm = this.gemm;
    const emb = this.buf('emb', n * C);
    embeddingForward(emb, ids, this.param('emb.weight').data, C);
    this.ops.layerNormForward(this.buf('x0', n * C), this.buf('m0', n), this.buf('s0', n), emb, this.param('blocks.0.ln0.weight').data, this.param('blocks.0.ln0.bias').data, n, C);
    const tmp = this.buf('tmp', n * C);
    const tmp2 = this.buf('tmp2', n * C);
    const tmpF = this.buf('tmpF', n * F);
    for (let l = 0; l < L; l++) {
      const w = this.w[l]!;
      const x = this.buf(`x${l}`, n * C);
      const xa = this.buf(`xa${l}`, n * C);
      this.ops.layerNormForward(xa, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), x, w.ln1w, w.ln1b, n, C);
      const k = this.buf(`k${l}`, n * C);
      const v = this.buf(`v${l}`, n * C);
      const r = this.buf(`r${l}`, n * C);
      this.ops.tokenShiftMixForward(tmp, xa, w.muK, b, t, C);
      gemm.forward(k, tmp, w.wk, n, C, C);
      this.ops.tokenShiftMixForward(tmp, xa, w.muV, b, t, C);
      gemm.forward(v, tmp, w.wv, n, C, C);
      this.ops.tokenShiftMixForward(tmp, xa, w.muR, b, t, C);
      gemm.forward(r, tmp, w.wr, n, C, C);
      const y = this.buf(`y${l}`, n * C);
      if (gemm.kernels?.takes(C, y, k, v) === true) gemm.kernels.wkv4Forward(y, k, v, w.decay, w.first, b, t, C);
      else wkvForward(y, k, v, w.decay, w.first, b, t, C);
      this.ops.sigmoidGateForward(tmp, r, r, y); // r becomes σ(r)
      gemm.forward(tmp2, tmp, w.wo, n, C, C);
      const xm = this.buf(`xm${l}`, n * C);
      addForward(xm, x, tmp2);
      const xf = this.buf(`xf${l}`, n * C);
      this.ops.layerNormForward(xf, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), xm, w.ln2w, w.ln2b, n, C);
      const fk = this.buf(`fk${l}`, n * F);
      this.ops.tokenShiftMixForward(tmp, xf, w.fMuK, b, t, C);
      gemm.forward(fk, tmp, w.fwk, n, F, C);
      this.ops.reluSquaredForward(tmpF, fk);
      const kv = this.buf(`kv${l}`, n * C);
      gemm.forward(kv, tmpF, w.fwv, n, C, F);
      const fr = this.buf(`fr${l}`, n * C);
      this.ops.tokenShiftMixForward(tmp, xf, w.fMuR, b, t, C);
      gemm.forward(fr, tmp, w.fwr, n, C, C);
      this.ops.sigmoidGateForward(tmp, fr, fr, kv); // fr becomes σ(fr)
      addForward(this.buf(`x${l + 1}`, n * C), xm, tmp);
    }
    return this.buf(`x${L}`, n * C);
  }

  /** The layers' backward from dx = ∂loss/∂x_L (N × C), down to the embedding. */
  protected bodyBackward(dx: Vec): void {
    const { nLayer: L, nEmbd: C, ffnSize: F } = this.shape;
    const { b, t } = this;
    const n = b * t;
    const gemm = this.gemm;
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
      this.ops.sigmoidGateBackward(dfr, dkv, dx, fr, kv);
      const dxf = this.zeroed('dxf', n * C);
      this.ops.tokenShiftMixForward(tmp, xf, w.fMuR, b, t, C);
      gemm.backwardWeight(dw.fwr, dfr, tmp, n, C, C);
      gemm.backwardInput(dtmp, dfr, w.fwr, n, C, C);
      this.ops.tokenShiftMixBackward(dxf, dw.fMuR, dtmp, xf, w.fMuR, b, t, C);
      this.ops.reluSquaredForward(tmpF, fk);
      gemm.backwardWeight(dw.fwv, dkv, tmpF, n, C, F);
      gemm.backwardInput(dtmpF, dkv, w.fwv, n, C, F);
      const dfk = this.zeroed('dfk', n * F);
      this.ops.reluSquaredBackward(dfk, dtmpF, fk);
      this.ops.tokenShiftMixForward(tmp, xf, w.fMuK, b, t, C);
      gemm.backwardWeight(dw.fwk, dfk, tmp, n, F, C);
      gemm.backwardInput(dtmp, dfk, w.fwk, n, F, C);
      this.ops.tokenShiftMixBackward(dxf, dw.fMuK, dtmp, xf, w.fMuK, b, t, C);
      // The residual: d(xm) = dx + LN2's backward of dxf.
      const dxm = this.buf('dxm', n * C);
      dxm.set(dx);
      this.ops.layerNormBackward(dxm, dw.ln2w, dw.ln2b, dxf, xm, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), w.ln2w, n, C);

      // Time mix: xm = x + (σ(r) ⊙ y)·Woᵀ.
      multiplyForward(tmp, r, y);
      gemm.backwardWeight(dw.wo, dxm, tmp, n, C, C);
      gemm.backwardInput(dtmp, dxm, w.wo, n, C, C);
      const dr = this.zeroed('dr', n * C);
      const dy = this.zeroed('dy', n * C);
      this.ops.sigmoidGateBackward(dr, dy, dtmp, r, y);
      const dk = this.zeroed('dk', n * C);
      const dv = this.zeroed('dv', n * C);
      const kernels = this.gemm.kernels;
      if (kernels?.takes(C, dk, dv, dy, k, v) === true) kernels.wkv4Backward(dk, dv, dw.decay, dw.first, dy, k, v, w.decay, w.first, b, t, C);
      else wkvBackward(dk, dv, dw.decay, dw.first, dy, k, v, w.decay, w.first, b, t, C);
      const dxa = this.zeroed('dxa', n * C);
      const projections: [Vec, Vec, Vec, Vec, Vec][] = [
        [dk, w.wk, dw.wk, w.muK, dw.muK],
        [dv, w.wv, dw.wv, w.muV, dw.muV],
        [dr, w.wr, dw.wr, w.muR, dw.muR],
      ];
      for (const [d, wt, dwt, mu, dmu] of projections) {
        this.ops.tokenShiftMixForward(tmp, xa, mu, b, t, C);
        gemm.backwardWeight(dwt, d, tmp, n, C, C);
        gemm.backwardInput(dtmp, d, wt, n, C, C);
        this.ops.tokenShiftMixBackward(dxa, dmu, dtmp, xa, mu, b, t, C);
      }
      // The residual: d(x) = dxm + LN1's backward of dxa (dx has been consumed: reuse it).
      dx.set(dxm);
      this.ops.layerNormBackward(dx, dw.ln1w, dw.ln1b, dxa, x, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), w.ln1w, n, C);
    }
    const demb = this.zeroed('demb', n * C);
    this.ops.layerNormBackward(demb, this.param('blocks.0.ln0.weight').grad, this.param('blocks.0.ln0.bias').grad, dx, this.buf('emb', n * C), this.buf('m0', n), this.buf('s0', n), this.param('blocks.0.ln0.weight').data, n, C);
    embeddingBackward(this.param('emb.weight').grad, this.ids, demb, C);
  }
}
