// Pieces shared by several versions: token-shift interpolation and the channel mix (the FFN).
import { reluSquared, sigmoid } from '../kernels/activations.js';
import { matvec, type Matrix } from '../kernels/matrix.js';
import type { Weights } from './weights.js';

/** v4/v5 token shift: out = x·μ + prev·(1−μ). */
export function mixLerp(x: Float32Array, prev: Float32Array, mu: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * mu[i]! + prev[i]! * (1 - mu[i]!);
}

/** v6/v7 token shift: out = x + (prev − x)·μ. */
export function shiftLerp(x: Float32Array, prev: Float32Array, mu: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i]! + (prev[i]! - x[i]!) * mu[i]!;
}

/** Which interpolation a version's channel mix uses. */
export type ShiftStyle = 'mix' | 'shift';

/**
 * Channel mix of v4, v5 and v6: σ(Wr·xr) ⊙ Wv·relu(Wk·xk)². v7 drops the receptance (`receptance`
 * undefined). Layer state slot: ffn_x at [0, C).
 */
export class ChannelMix {
  private readonly key: Matrix; // F × C
  private readonly value: Matrix; // C × F
  private readonly receptance: Matrix | undefined; // C × C
  private readonly muK: Float32Array;
  private readonly muR: Float32Array | undefined;
  private readonly style: ShiftStyle;
  private readonly xk: Float32Array;
  private readonly xr: Float32Array;
  private readonly k: Float32Array; // F
  private readonly r: Float32Array;

  constructor(
    w: Weights,
    prefix: string,
    c: number,
    f: number,
    names: { muK: string; muR: string | undefined; style: ShiftStyle },
  ) {
    this.key = w.matrix(`${prefix}.key.weight`, f, c, 'ffn size × n_embd');
    this.value = w.matrix(`${prefix}.value.weight`, c, f, 'n_embd × ffn size');
    this.muK = w.vector(`${prefix}.${names.muK}`, c, 'n_embd');
    if (names.muR !== undefined) {
      this.receptance = w.matrix(`${prefix}.receptance.weight`, c, c, 'n_embd × n_embd');
      this.muR = w.vector(`${prefix}.${names.muR}`, c, 'n_embd');
    } else {
      this.receptance = undefined;
      this.muR = undefined;
    }
    this.style = names.style;
    this.xk = new Float32Array(c);
    this.xr = new Float32Array(c);
    this.k = new Float32Array(f);
    this.r = new Float32Array(c);
  }

  /** `xf`: ln2-normed input (C). `prev`: the state's ffn_x (C), updated to `xf`. */
  run(xf: Float32Array, prev: Float32Array, out: Float32Array): void {
    const lerp = this.style === 'mix' ? mixLerp : shiftLerp;
    lerp(xf, prev, this.muK, this.xk);
    if (this.receptance !== undefined) lerp(xf, prev, this.muR!, this.xr);
    prev.set(xf);
    matvec(this.key, this.xk, this.k);
    const k = this.k;
    for (let i = 0; i < k.length; i++) k[i] = reluSquared(k[i]!);
    matvec(this.value, k, out);
    if (this.receptance !== undefined) {
      matvec(this.receptance, this.xr, this.r);
      for (let i = 0; i < out.length; i++) out[i] = out[i]! * sigmoid(this.r[i]!);
    }
  }
}
