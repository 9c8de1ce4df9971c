// RWKV-4, the paper's architecture, in RNN mode.
//
// Time mix per channel, with the WKV in the numerically stable form (state aa, bb, pp: numerator,
// denominator, and the exponent they are scaled by):
//   ww = u + k;  q = max(pp, ww)
//   wkv = (e^(pp−q)·aa + e^(ww−q)·v) / (e^(pp−q)·bb + e^(ww−q))
//   ww = w + pp; q = max(ww, k)
//   aa ← e^(ww−q)·aa + e^(k−q)·v;  bb ← e^(ww−q)·bb + e^(k−q);  pp ← q
// with the decay w = −exp(time_decay) and the bonus u = time_first. rwkv.cpp files store time_decay
// already as −exp(·); official checkpoints store the raw parameter (the loader's `decayStored` says which).
import { sigmoid } from '../kernels/activations.js';
import { matmul, matvec, matvecs, type Matrix, type MatvecJob } from '../kernels/matrix.js';
import { ChannelMix, lerpRows, mixLerp, shiftRows } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RnnModel, type Block, type SequenceContext } from './model.js';
import type { KernelProvider, Weights } from './weights.js';

/** How a file stores v4's time_decay: the raw parameter, or rwkv.cpp's −exp(parameter). */
export type V4DecayEncoding = 'raw' | 'negexp';

class V4Block implements Block {
  private readonly c: number;
  private readonly decay: Float32Array; // w = −exp(time_decay), C
  private readonly bonus: Float32Array; // u = time_first, C
  private readonly muK: Float32Array;
  private readonly muV: Float32Array;
  private readonly muR: Float32Array;
  private readonly key: Matrix;
  private readonly value: Matrix;
  private readonly receptance: Matrix;
  private readonly output: Matrix;
  private readonly ffn: ChannelMix;
  private readonly xk: Float32Array;
  private readonly xv: Float32Array;
  private readonly xr: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly r: Float32Array;
  /** k, v and r: independent products, run as one batch. */
  private readonly kvr: MatvecJob[];
  /** The fast kernels, when the model runs on them and C is a multiple of 4: the WKV goes there too. */
  private readonly fast: KernelProvider | undefined;

  constructor(w: Weights, layer: number, config: ModelConfig, decayEncoding: V4DecayEncoding) {
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.fast = w.fast?.wkv4 !== undefined && c % 4 === 0 ? w.fast : undefined;
    const decay = w.vector(`${p}.time_decay`, c, 'n_embd');
    if (decayEncoding === 'raw') for (let i = 0; i < c; i++) decay[i] = -Math.exp(decay[i]!);
    this.decay = decay;
    this.bonus = w.vector(`${p}.time_first`, c, 'n_embd');
    this.muK = w.vector(`${p}.time_mix_k`, c, 'n_embd');
    this.muV = w.vector(`${p}.time_mix_v`, c, 'n_embd');
    this.muR = w.vector(`${p}.time_mix_r`, c, 'n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, {
      muK: 'time_mix_k',
      muR: 'time_mix_r',
      style: 'mix',
    });
    this.xk = new Float32Array(c);
    this.xv = new Float32Array(c);
    this.xr = new Float32Array(c);
    this.k = new Float32Array(c);
    this.v = new Float32Array(c);
    this.r = new Float32Array(c);
    this.kvr = [
      { m: this.key, x: this.xk, y: this.k },
      { m: this.value, x: this.xv, y: this.v },
      { m: this.receptance, x: this.xr, y: this.r },
    ];
  }

  // Layer state: [ffn_x, att_x, aa, bb, pp], C each.
  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array): void {
    const c = this.c;
    const prev = s.subarray(c, 2 * c);
    mixLerp(xa, prev, this.muK, this.xk);
    mixLerp(xa, prev, this.muV, this.xv);
    mixLerp(xa, prev, this.muR, this.xr);
    prev.set(xa);
    matvecs(this.kvr);
    const { k, v, r } = this;
    const rwkv = this.xk; // reuse: r ⊙ wkv
    if (this.fast !== undefined) {
      this.fast.wkv4!(s.subarray(2 * c, 5 * c), k, v, r, this.decay, this.bonus, rwkv, c, 1);
      matvec(this.output, rwkv, out);
      return;
    }
    for (let i = 0; i < c; i++) {
      const aa = s[2 * c + i]!;
      const bb = s[3 * c + i]!;
      const pp = s[4 * c + i]!;
      const ki = k[i]!;
      const vi = v[i]!;
      let ww = this.bonus[i]! + ki;
      let q = Math.max(pp, ww);
      let e1 = Math.exp(pp - q);
      let e2 = Math.exp(ww - q);
      const wkv = (e1 * aa + e2 * vi) / (e1 * bb + e2);
      ww = this.decay[i]! + pp;
      q = Math.max(ww, ki);
      e1 = Math.exp(ww - q);
      e2 = Math.exp(ki - q);
      s[2 * c + i] = e1 * aa + e2 * vi;
      s[3 * c + i] = e1 * bb + e2;
      s[4 * c + i] = q;
      rwkv[i] = sigmoid(r[i]!) * wkv;
    }
    matvec(this.output, rwkv, out);
  }

  channelMix(xf: Float32Array, s: Float32Array, out: Float32Array): void {
    this.ffn.run(xf, s.subarray(0, this.c), out);
  }

  // Parallel mode: xa and out are T × C. The projections are matrix-matrix products over the block; the
  // WKV is the same stable recurrence, scanned over time channel by channel.
  timeMixSequence(xa: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    const c = this.c;
    const pool = ctx.scratch;
    const shifted = pool.get('v4.shifted', t * c);
    shiftRows(xa, t, s.subarray(c, 2 * c), shifted);
    const xk = pool.get('v4.xk', t * c);
    const xv = pool.get('v4.xv', t * c);
    const xr = pool.get('v4.xr', t * c);
    lerpRows(mixLerp, xa, shifted, this.muK, xk);
    lerpRows(mixLerp, xa, shifted, this.muV, xv);
    lerpRows(mixLerp, xa, shifted, this.muR, xr);
    const k = shifted; // reuse: T × C each
    const v = pool.get('v4.v', t * c);
    const r = pool.get('v4.r', t * c);
    matmul(this.key, xk, t, k);
    matmul(this.value, xv, t, v);
    matmul(this.receptance, xr, t, r);
    const rwkv = xk; // reuse: σ(r) ⊙ wkv, T × C
    if (this.fast !== undefined) {
      this.fast.wkv4!(s.subarray(2 * c, 5 * c), k, v, r, this.decay, this.bonus, rwkv, c, t);
      matmul(this.output, rwkv, t, out);
      return;
    }
    for (let i = 0; i < c; i++) {
      let aa = s[2 * c + i]!;
      let bb = s[3 * c + i]!;
      let pp = s[4 * c + i]!;
      const u = this.bonus[i]!;
      const w = this.decay[i]!;
      for (let p = 0; p < t; p++) {
        const o = p * c + i;
        const ki = k[o]!;
        const vi = v[o]!;
        let ww = u + ki;
        let q = Math.max(pp, ww);
        let e1 = Math.exp(pp - q);
        let e2 = Math.exp(ww - q);
        rwkv[o] = sigmoid(r[o]!) * ((e1 * aa + e2 * vi) / (e1 * bb + e2));
        ww = w + pp;
        q = Math.max(ww, ki);
        e1 = Math.exp(ww - q);
        e2 = Math.exp(ki - q);
        // The state is f32: round as the RNN path does when it stores, so both modes agree exactly.
        aa = Math.fround(e1 * aa + e2 * vi);
        bb = Math.fround(e1 * bb + e2);
        pp = Math.fround(q);
      }
      s[2 * c + i] = aa;
      s[3 * c + i] = bb;
      s[4 * c + i] = pp;
    }
    matmul(this.output, rwkv, t, out);
  }

  channelMixSequence(xf: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    this.ffn.runSequence(xf, t, s.subarray(0, this.c), out, ctx.scratch);
  }
}

export function buildV4(w: Weights, config: ModelConfig, decayEncoding: V4DecayEncoding): RnnModel {
  const blocks: Block[] = [];
  for (let l = 0; l < config.nLayer; l++) blocks.push(new V4Block(w, l, config, decayEncoding));
  return new RnnModel(config, w, blocks);
}
