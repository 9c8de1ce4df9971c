// RWKV v5, RNN and parallel mode: rwkv.cpp's "5.1" (ChatRWKV's v5.0) and "5.2" (Eagle).
//
// Time mix per head h (H heads of size N, C = H·N), with r, k, v the head's slices of Wr·xr, Wk·xk, Wv·xv
// (no σ on r, unlike v4) and a matrix state S (N × N, row i = key channel, column j = value channel):
//   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij)
//   S_ij ← k_i·v_j + w_i·S_ij
// then y = GroupNorm over the H heads (ln_x, eps 64e-5), 5.2 multiplies by silu(Wg·xg), and out = Wo·y.
// The decay is w = exp(−exp(time_decay)); the bonus u is exp(time_first) in 5.1 and time_faaaa as is in
// 5.2. 5.1 has one decay and one bonus per head, 5.2 one per channel. rwkv.cpp files store time_decay
// already as exp(−exp(·)) and 5.1's time_first already as exp(·); official checkpoints store them raw.
//
// Parallel mode computes the same WKV in chunks (see `wkvChunked`), each projection one matrix-matrix
// product over the T × C block.
import { silu } from '../kernels/activations.js';
import { matmul, matvec, matvecs, type Matrix, type MatvecJob } from '../kernels/matrix.js';
import { normKernelsOf, normRows } from '../kernels/norm.js';
import { elementCount } from '../tensor/tensor.js';
import { ChannelMix, LN_X_EPS, lerpRows, mixLerp, shiftRows, wkv5Step } from './blocks.js';
import type { ModelConfig } from './config.js';
import { loadLayerNorm, RnnModel, type Block, type LayerNormWeights, type SequenceContext } from './model.js';
import type { KernelProvider, Weights } from './weights.js';

/** `rwkvcpp`: parameters stored pre-transformed as rwkv.cpp does; `official`: as RWKV-LM / ChatRWKV store them. */
export type V5Encoding = 'rwkvcpp' | 'official';


/**
 * Floor of the log-decay. A decay of exactly 0 has log −Infinity, and −Inf·0 or −Inf − (−Inf) is NaN;
 * any exponent this negative already gives exp(d·lw) = 0 for d ≥ 1 and exactly 1 for d = 0.
 */
const LOG_DECAY_FLOOR = -1e4;

/**
 * A per-head or per-channel parameter (H or C values, any shape) as C values: a per-head value is repeated
 * over its head's N channels so that the WKV loop indexes every parameter by channel.
 */
function perChannel(w: Weights, name: string, config: ModelConfig): Float32Array {
  const { nEmbd: c, nHead: h, headSize: n } = config;
  const perHead = elementCount(w.tensor(name).shape) === h && h !== c;
  const values = w.vector(name, perHead ? h : c, perHead ? 'n_head' : 'n_embd');
  if (!perHead) return values;
  const out = new Float32Array(c);
  for (let i = 0; i < c; i++) out[i] = values[Math.floor(i / n)]!;
  return out;
}

class V5Block implements Block {
  private readonly c: number;
  private readonly nHead: number;
  private readonly headSize: number;
  private readonly decay: Float32Array; // w = exp(−exp(time_decay)), C
  private readonly bonus: Float32Array; // u, C
  private readonly muK: Float32Array;
  private readonly muV: Float32Array;
  private readonly muR: Float32Array;
  private readonly muG: Float32Array | undefined; // 5.2 only
  private readonly key: Matrix; // C × C
  private readonly value: Matrix; // C × C
  private readonly receptance: Matrix; // C × C
  private readonly gate: Matrix | undefined; // C × C, 5.2 only
  private readonly output: Matrix; // C × C
  private readonly lnX: LayerNormWeights;
  private readonly ffn: ChannelMix;
  // Scratch, C each unless noted.
  private readonly xk: Float32Array;
  private readonly xv: Float32Array;
  private readonly xr: Float32Array;
  private readonly xg: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly r: Float32Array;
  private readonly g: Float32Array;
  private readonly y: Float32Array;
  private readonly acc: Float64Array; // N: one head's y, summed in doubles
  /** k, v, r (and g): independent products, run as one batch. */
  private readonly projections: MatvecJob[];

  /** The fast kernels, when the model runs on them: the WKV step goes there too. */
  private readonly fast: KernelProvider | undefined;

  constructor(w: Weights, layer: number, config: ModelConfig, encoding: V5Encoding) {
    this.fast = w.fast;
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    this.headSize = config.headSize;
    const gated = config.version === '5.2';

    const decay = perChannel(w, `${p}.time_decay`, config);
    if (encoding === 'official') for (let i = 0; i < c; i++) decay[i] = Math.exp(-Math.exp(decay[i]!));
    this.decay = decay;
    if (gated) {
      this.bonus = perChannel(w, `${p}.time_faaaa`, config);
    } else {
      const bonus = perChannel(w, `${p}.time_first`, config);
      if (encoding === 'official') for (let i = 0; i < c; i++) bonus[i] = Math.exp(bonus[i]!);
      this.bonus = bonus;
    }

    this.muK = w.vector(`${p}.time_mix_k`, c, 'n_embd');
    this.muV = w.vector(`${p}.time_mix_v`, c, 'n_embd');
    this.muR = w.vector(`${p}.time_mix_r`, c, 'n_embd');
    this.muG = gated ? w.vector(`${p}.time_mix_g`, c, 'n_embd') : undefined;
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.gate = gated ? w.matrix(`${p}.gate.weight`, c, c, 'n_embd × n_embd') : undefined;
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnX = loadLayerNorm(w, `${p}.ln_x`, c);
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, {
      muK: 'time_mix_k',
      muR: 'time_mix_r',
      style: 'mix',
    });

    this.xk = new Float32Array(c);
    this.xv = new Float32Array(c);
    this.xr = new Float32Array(c);
    this.xg = new Float32Array(c);
    this.k = new Float32Array(c);
    this.v = new Float32Array(c);
    this.r = new Float32Array(c);
    this.g = new Float32Array(c);
    this.y = new Float32Array(c);
    this.acc = new Float64Array(config.headSize);
    this.projections = [
      { m: this.key, x: this.xk, y: this.k },
      { m: this.value, x: this.xv, y: this.v },
      { m: this.receptance, x: this.xr, y: this.r },
    ];
    if (this.gate !== undefined) this.projections.push({ m: this.gate, x: this.xg, y: this.g });
  }

  // Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][key i][value j] as rwkv.cpp lays it out.
  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array): void {
    const { c, nHead, headSize: n } = this;
    const prev = s.subarray(c, 2 * c);
    mixLerp(xa, prev, this.muK, this.xk);
    mixLerp(xa, prev, this.muV, this.xv);
    mixLerp(xa, prev, this.muR, this.xr);
    if (this.gate !== undefined) mixLerp(xa, prev, this.muG!, this.xg);
    prev.set(xa);
    matvecs(this.projections);
    const { k, v, r, y, acc, decay, bonus } = this;
    wkv5Step(this.fast, s.subarray(2 * c), r, k, v, decay, bonus, y, nHead, n, acc);
    normRows(normKernelsOf(this.fast), y, this.lnX.weight, this.lnX.bias, y, 1, nHead, LN_X_EPS);
    if (this.gate !== undefined) {
      const g = this.g;
      for (let i = 0; i < c; i++) y[i] = y[i]! * silu(g[i]!);
    }
    matvec(this.output, y, out);
  }

  channelMix(xf: Float32Array, s: Float32Array, out: Float32Array): void {
    this.ffn.run(xf, s.subarray(0, this.c), out);
  }

  // Parallel mode: xa and out are T × C (rows = positions). Token shift as a shifted copy, the
  // projections as matrix-matrix products, the WKV chunked, then GroupNorm, gate and output row-wise.
  timeMixSequence(xa: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    const { c, nHead, headSize: n } = this;
    const shifted = ctx.scratch.get('v5.shifted', t * c); // T × C: row p = x of position p − 1 (row 0 = the state's att_x)
    shiftRows(xa, t, s.subarray(c, 2 * c), shifted);
    const xk = ctx.scratch.get('v5.xk', t * c);
    const xv = ctx.scratch.get('v5.xv', t * c);
    const xr = ctx.scratch.get('v5.xr', t * c);
    lerpRows(mixLerp, xa, shifted, this.muK, xk);
    lerpRows(mixLerp, xa, shifted, this.muV, xv);
    lerpRows(mixLerp, xa, shifted, this.muR, xr);
    let xg: Float32Array | undefined;
    if (this.gate !== undefined) {
      xg = shifted; // reuse: the shifted rows are not needed after this mix
      lerpRows(mixLerp, xa, shifted, this.muG!, xg);
    }
    const k = ctx.scratch.get('v5.k', t * c); // T × C each
    const v = ctx.scratch.get('v5.v', t * c);
    const r = ctx.scratch.get('v5.r', t * c);
    matmul(this.key, xk, t, k);
    matmul(this.value, xv, t, v);
    matmul(this.receptance, xr, t, r);
    const y = xk; // reuse: the WKV output, T × C
    if (this.fast?.wkv5Sequence !== undefined && n % 4 === 0) {
      this.fast.wkv5Sequence(s.subarray(2 * c), r, k, v, this.decay, this.bonus, y, nHead, n, t);
    } else {
      this.wkvChunked(r, k, v, t, s.subarray(2 * c), y, ctx.chunk);
    }
    normRows(normKernelsOf(this.fast), y, this.lnX.weight, this.lnX.bias, y, t, nHead, LN_X_EPS);
    if (this.gate !== undefined) {
      const g = xv; // reuse: T × C
      matmul(this.gate, xg!, t, g);
      for (let i = 0; i < y.length; i++) y[i] = y[i]! * silu(g[i]!);
    }
    matmul(this.output, y, t, out);
  }

  /**
   * The WKV over T positions in chunks of `chunk` (the last may be shorter); r, k, v, y are T × C and
   * `heads` is the state's S (H × N × N, S[h][key i][value j]), updated in place. Per head, within a chunk
   * of length L starting from state S0, with lw_i = log w_i and positions p, q = 0..L−1:
   *   y_p,j = Σ_i r_p,i·u_i·k_p,i·v_p,j                                    (bonus)
   *         + Σ_{q<p} [Σ_i r_p,i·k_q,i·w_i^(p−1−q)]·v_q,j                  (inside the chunk)
   *         + Σ_i r_p,i·w_i^p·S0_ij                                        (from earlier chunks)
   *   S_ij  = w_i^L·S0_ij + Σ_q w_i^(L−1−q)·k_q,i·v_q,j
   * Every power is exp(d·lw_i) with d ≥ 0, so its exponent is ≤ 0: decays that compound below f32's range
   * (0.28^1024) underflow to 0 harmlessly, where dividing by a cumulative decay would overflow. Sums are
   * in float64 and S is stored back as f32 at each chunk's end, as RNN mode stores it every token.
   */
  private wkvChunked(
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    t: number,
    heads: Float32Array,
    y: Float32Array,
    chunk: number,
  ): void {
    const { c, nHead, headSize: n, decay, bonus } = this;
    const maxL = Math.min(chunk, t);
    const pow = new Float64Array((maxL + 1) * n); // row d: w_i^d = exp(d·lw_i) for this head, (L+1) × N
    const rc = new Float64Array(maxL * n); // this chunk's slices of one head, L × N each
    const kc = new Float64Array(maxL * n);
    const vc = new Float64Array(maxL * n);
    const s0 = new Float64Array(n * n); // S at the chunk's start, N × N
    const acc = new Float64Array(n); // one position's y, N
    for (let h = 0; h < nHead; h++) {
      const base = h * n; // this head's first channel
      const hs = h * n * n; // this head's S in `heads`
      for (let i = 0; i < n; i++) {
        const lw = Math.max(Math.log(decay[base + i]!), LOG_DECAY_FLOOR);
        for (let d = 0; d <= maxL; d++) pow[d * n + i] = Math.exp(d * lw);
      }
      for (let p0 = 0; p0 < t; p0 += chunk) {
        const len = Math.min(chunk, t - p0);
        for (let p = 0; p < len; p++) {
          const o = (p0 + p) * c + base;
          for (let i = 0; i < n; i++) {
            rc[p * n + i] = r[o + i]!;
            kc[p * n + i] = k[o + i]!;
            vc[p * n + i] = v[o + i]!;
          }
        }
        for (let x = 0; x < n * n; x++) s0[x] = heads[hs + x]!;
        for (let p = 0; p < len; p++) {
          const rp = p * n;
          // Bonus: the current token's own k·v, weighted by u.
          let bonusDot = 0;
          for (let i = 0; i < n; i++) bonusDot += rc[rp + i]! * bonus[base + i]! * kc[rp + i]!;
          for (let j = 0; j < n; j++) acc[j] = bonusDot * vc[rp + j]!;
          // Earlier positions of this chunk: attention weight a_pq, then a_pq·v_q.
          for (let q = 0; q < p; q++) {
            const qn = q * n;
            const dn = (p - 1 - q) * n;
            let a = 0;
            for (let i = 0; i < n; i++) a += rc[rp + i]! * kc[qn + i]! * pow[dn + i]!;
            if (a === 0) continue;
            for (let j = 0; j < n; j++) acc[j] = acc[j]! + a * vc[qn + j]!;
          }
          // The state carried in from earlier chunks, decayed p times.
          const dn = p * n;
          for (let i = 0; i < n; i++) {
            const ri = rc[rp + i]! * pow[dn + i]!;
            if (ri === 0) continue;
            const row = i * n;
            for (let j = 0; j < n; j++) acc[j] = acc[j]! + ri * s0[row + j]!;
          }
          const yo = (p0 + p) * c + base;
          for (let j = 0; j < n; j++) y[yo + j] = acc[j]!;
        }
        // S after the chunk, rounded to f32 as it is stored.
        for (let i = 0; i < n; i++) {
          const row = i * n;
          const wl = pow[len * n + i]!;
          for (let j = 0; j < n; j++) acc[j] = wl * s0[row + j]!;
          for (let q = 0; q < len; q++) {
            const kq = kc[q * n + i]! * pow[(len - 1 - q) * n + i]!;
            if (kq === 0) continue;
            const qn = q * n;
            for (let j = 0; j < n; j++) acc[j] = acc[j]! + kq * vc[qn + j]!;
          }
          for (let j = 0; j < n; j++) heads[hs + row + j] = acc[j]!;
        }
      }
    }
  }

  channelMixSequence(xf: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    this.ffn.runSequence(xf, t, s.subarray(0, this.c), out, ctx.scratch);
  }
}

export function buildV5(w: Weights, config: ModelConfig, encoding: V5Encoding): RnnModel {
  const blocks: Block[] = [];
  for (let l = 0; l < config.nLayer; l++) blocks.push(new V5Block(w, l, config, encoding));
  return new RnnModel(config, w, blocks);
}
