// Pieces shared by several versions: token-shift interpolation and the channel mix (the FFN).
import { reluSquared, sigmoid } from '../kernels/activations.js';
import { matmul, matvec, matvecs, type Matrix, type MatvecJob } from '../kernels/matrix.js';
import type { ScratchPool } from './model.js';
import type { KernelProvider, Weights } from './weights.js';

/** v4/v5 token shift: out = x·μ + prev·(1−μ). */
export function mixLerp(x: Float32Array, prev: Float32Array, mu: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * mu[i]! + prev[i]! * (1 - mu[i]!);
}

/** v6/v7 token shift: out = x + (prev − x)·μ. */
export function shiftLerp(x: Float32Array, prev: Float32Array, mu: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i]! + (prev[i]! - x[i]!) * mu[i]!;
}

/**
 * Token shift over a T × C block: `prevRows` gets row t−1 of `x` for t ≥ 1 and `first` (the state's
 * previous token) for t = 0. The state's slot is then updated to x's last row.
 */
export function shiftRows(x: Float32Array, t: number, first: Float32Array, prevRows: Float32Array): void {
  const c = first.length;
  prevRows.set(first, 0);
  prevRows.set(x.subarray(0, (t - 1) * c), c);
  first.set(x.subarray((t - 1) * c, t * c));
}

/** Applies a per-channel interpolation (`mixLerp` or `shiftLerp`) row by row over T × C blocks. */
export function lerpRows(
  lerp: typeof mixLerp,
  x: Float32Array,
  prev: Float32Array,
  mu: Float32Array,
  out: Float32Array,
): void {
  const c = mu.length;
  const n = x.length;
  if (lerp === mixLerp) {
    for (let o = 0; o < n; o += c) {
      for (let i = 0; i < c; i++) out[o + i] = x[o + i]! * mu[i]! + prev[o + i]! * (1 - mu[i]!);
    }
  } else {
    for (let o = 0; o < n; o += c) {
      for (let i = 0; i < c; i++) out[o + i] = x[o + i]! + (prev[o + i]! - x[o + i]!) * mu[i]!;
    }
  }
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
  /** relu(Wk·xk)² and σ(Wr·xr): independent, run as one batch. */
  private readonly keyAndReceptance: MatvecJob[];

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
    this.keyAndReceptance = [{ m: this.key, x: this.xk, y: this.k, then: 'relu2' }];
    if (this.receptance !== undefined) this.keyAndReceptance.push({ m: this.receptance, x: this.xr, y: this.r, then: 'sigmoid' });
  }

  /** Parallel mode: `xf` is T × C (ln2-normed rows), `out` T × C; `prev` is the state's ffn_x. */
  runSequence(xf: Float32Array, t: number, prev: Float32Array, out: Float32Array, scratch: ScratchPool): void {
    const c = this.muK.length;
    const f = this.k.length;
    const lerp = this.style === 'mix' ? mixLerp : shiftLerp;
    const shifted = scratch.get('ffn.shifted', t * c);
    shiftRows(xf, t, prev, shifted);
    const xk = scratch.get('ffn.xk', t * c);
    lerpRows(lerp, xf, shifted, this.muK, xk);
    const k = scratch.get('ffn.k', t * f);
    matmul(this.key, xk, t, k);
    for (let i = 0; i < k.length; i++) k[i] = reluSquared(k[i]!);
    matmul(this.value, k, t, out);
    if (this.receptance !== undefined) {
      const xr = xk; // reuse
      lerpRows(lerp, xf, shifted, this.muR!, xr);
      const r = shifted; // reuse: the shifted rows are no longer needed
      matmul(this.receptance, xr, t, r);
      for (let i = 0; i < out.length; i++) out[i] = out[i]! * sigmoid(r[i]!);
    }
  }

  /** `xf`: ln2-normed input (C). `prev`: the state's ffn_x (C), updated to `xf`. */
  run(xf: Float32Array, prev: Float32Array, out: Float32Array): void {
    const lerp = this.style === 'mix' ? mixLerp : shiftLerp;
    lerp(xf, prev, this.muK, this.xk);
    if (this.receptance !== undefined) lerp(xf, prev, this.muR!, this.xr);
    prev.set(xf);
    matvecs(this.keyAndReceptance);
    matvec(this.value, this.k, out);
    if (this.receptance !== undefined) {
      const r = this.r;
      for (let i = 0; i < out.length; i++) out[i] = out[i]! * r[i]!;
    }
  }
}

/**
 * ln_x's eps for v5, v6 and v7. The training code normalises x / head_size_divisor (8) with eps 1e-5, the
 * same as normalising x with eps 1e-5·8² — ChatRWKV's 64e-5. (rwkv.cpp uses 1e-5, hence its logits.)
 */
export const LN_X_EPS = 64e-5;

/**
 * The v5/v6 WKV of one token over all heads, in place on `heads` (H × N × N, S[h][key i][value j]):
 *   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij
 * on the fast kernels when there are some, else in TypeScript (sums of one head in `acc`, N doubles).
 */
export function wkv5Step(
  fast: KernelProvider | undefined,
  heads: Float32Array,
  r: Float32Array,
  k: Float32Array,
  v: Float32Array,
  w: Float32Array,
  u: Float32Array,
  y: Float32Array,
  nHead: number,
  n: number,
  acc: Float64Array,
): void {
  if (fast?.wkv5 !== undefined && n % 4 === 0) {
    fast.wkv5(heads, r, k, v, w, u, y, nHead, n);
    return;
  }
  for (let h = 0; h < nHead; h++) {
    const o = h * n; // this head's channels
    acc.fill(0);
    for (let i = 0; i < n; i++) {
      const ki = k[o + i]!;
      const ri = r[o + i]!;
      const ui = u[o + i]!;
      const wi = w[o + i]!;
      const row = (o + i) * n; // S[h][i][·]
      for (let j = 0; j < n; j++) {
        const kv = ki * v[o + j]!;
        const sij = heads[row + j]!;
        acc[j] = acc[j]! + ri * (ui * kv + sij);
        heads[row + j] = kv + wi * sij;
      }
    }
    for (let j = 0; j < n; j++) y[o + j] = acc[j]!;
  }
}
