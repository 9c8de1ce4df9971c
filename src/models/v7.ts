// RWKV v7 (Goose), RNN and parallel mode.
//
// Time mix, per token (x = ln1-normed input, prev = the previous token's x, C = H·N):
//   x? = x + (prev − x)·μ?                     for ? in r, w, k, v, a, g
//   r = Wr·xr;  k = Wk·xk;  v = Wv·xv
//   w = exp(−e^(−0.5)·σ(w0 + W2·tanh(W1·xw)))   decay, in (e^(−e^−0.5), 1)
//   a = σ(a0 + A2·A1·xa)                         in-context learning rate
//   g = G2·σ(G1·xg)                              output gate (no σ after G2)
//   kk = L2-normalised per head (k ⊙ k_k)        taken before k is rescaled
//   k ← k ⊙ (1 + (a − 1) ⊙ k_a)
//   layer 0: v_first = v;  later layers: v ← v + (v_first − v) ⊙ σ(v0 + V2·V1·xv)
//   per head, S (value × key):  S ← S·diag(w) − (S·kk)(kk ⊙ a)ᵀ + v·kᵀ;  y = S·r
//   y = GroupNorm_H(y) (eps 64e-5) + (Σ_i r_i·k_i·r_k_i)·v per head;  out = Wo·(y ⊙ g)
// Channel mix: Wv·relu(Wk·(x + (prev − x)·x_k))², no receptance.
// Parallel mode (timeMixSequence) computes the same over a T × C block: every projection and LoRA factor
// as one matmul, the WKV in chunks (wkvChunk) in float64 with the state stored back as f32 per chunk.
//
// How the two encodings store the time-mix parameters (shapes in PyTorch order, D = LoRA rank):
//   official (RWKV-LM, ChatRWKV): x_r, x_w, x_k, x_v, x_a, x_g each [1, 1, C]; W1, A1, V1, G1 as
//     [C, D] and W2, A2, V2, G2 as [D, C] (applied as x @ W1 @ W2).
//   rwkvcpp: the six μ concatenated in that order as x_rwkvag [6, 1, C]; every LoRA factor transposed
//     (W1 [D, C], W2 [C, D]), i.e. already [out, in] like the big matrices. Nothing else is transformed.
// Layer state (rwkv.cpp's flat layout): [ffn_x (C), att_x (C), S (H × N × N)], S[h][value i][key j]
// at 2C + h·N² + i·N + j — the official orientation, the transpose of v5/v6's.
import { ModelError } from '../errors.js';
import { sigmoid } from '../kernels/activations.js';
import { matmul, matvec, matvecs, type Matrix, type MatvecJob } from '../kernels/matrix.js';
import { normKernelsOf, normRows } from '../kernels/norm.js';
import { shapeString } from '../tensor/tensor.js';
import { ChannelMix, LN_X_EPS, lerpRows, shiftLerp, shiftRows } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RnnModel, type Block, type SequenceContext, type TokenContext } from './model.js';
import { toF32, type KernelProvider, type Weights } from './weights.js';

export type V7Encoding = 'rwkvcpp' | 'official';

const L2_EPS = 1e-12;
/** w = exp(DECAY_SCALE·σ(·)): the decay's exponent lies in (−e^(−0.5), 0). */
const DECAY_SCALE = -Math.exp(-0.5);

/** A LoRA pair: `down` [D, C] then `up` [C, D], both as [out, in]. */
interface Lora {
  readonly down: Matrix;
  readonly up: Matrix;
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[j * rows + r] = data[r * cols + j]!;
  return out;
}

/**
 * Loads `${p}.${tag}1` / `${p}.${tag}2` as [out, in] f32 matrices, inferring the rank D from the first.
 * rwkv.cpp stores them transposed relative to the official [C, D] / [D, C].
 */
function loadLora(w: Weights, p: string, tag: string, c: number, encoding: V7Encoding): Lora {
  const downName = `${p}.${tag}1`;
  const upName = `${p}.${tag}2`;
  const down = w.tensor(downName);
  const up = w.tensor(upName);
  const official = encoding === 'official';
  const bad = (name: string, shape: readonly number[], expected: string): ModelError =>
    new ModelError('BAD_SHAPE', `has shape ${shapeString(shape)}, expected ${expected} (LoRA factor)`, {
      file: w.file,
      tensor: name,
    });
  if (down.shape.length !== 2 || down.shape[official ? 0 : 1] !== c) {
    throw bad(downName, down.shape, official ? `[${c}, rank]` : `[rank, ${c}]`);
  }
  const d = down.shape[official ? 1 : 0]!;
  const upShape = official ? [d, c] : [c, d];
  if (up.shape.length !== 2 || up.shape[0] !== upShape[0] || up.shape[1] !== upShape[1]) {
    throw bad(upName, up.shape, shapeString(upShape));
  }
  const downData = toF32(down);
  const upData = toF32(up);
  // f32 Matrix objects, so RNN mode (matvec) and parallel mode (matmul) share one kernel path.
  return {
    down: w.derivedMatrix(downName, official ? transpose(downData, c, d) : downData, d, c),
    up: w.derivedMatrix(upName, official ? transpose(upData, d, c) : upData, c, d),
  };
}

class V7Block implements Block {
  private readonly c: number;
  private readonly nHead: number;
  private readonly headSize: number;
  private readonly first: boolean;
  // Token-shift coefficients, C each.
  private readonly muR: Float32Array;
  private readonly muW: Float32Array;
  private readonly muK: Float32Array;
  private readonly muV: Float32Array;
  private readonly muA: Float32Array;
  private readonly muG: Float32Array;
  // Biases and per-channel factors, C each.
  private readonly w0: Float32Array;
  private readonly a0: Float32Array;
  private readonly v0: Float32Array | undefined; // absent in layer 0
  private readonly kK: Float32Array;
  private readonly kA: Float32Array;
  private readonly rK: Float32Array; // [H, N] flattened
  private readonly wLora: Lora;
  private readonly aLora: Lora;
  private readonly vLora: Lora | undefined; // absent in layer 0
  private readonly gLora: Lora;
  private readonly receptance: Matrix; // C × C
  private readonly key: Matrix; // C × C
  private readonly value: Matrix; // C × C
  private readonly output: Matrix; // C × C
  private readonly lnxWeight: Float32Array;
  private readonly lnxBias: Float32Array;
  private readonly ffn: ChannelMix;
  // Scratch, C each unless noted.
  private readonly xr: Float32Array;
  private readonly xw: Float32Array;
  private readonly xk: Float32Array;
  private readonly xv: Float32Array;
  private readonly xa: Float32Array;
  private readonly xg: Float32Array;
  private readonly r: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly w: Float32Array;
  private readonly a: Float32Array;
  private readonly g: Float32Array;
  private readonly kk: Float32Array;
  private readonly y: Float32Array;
  // LoRA results: down-projections (rank each) and up-projections (C each) of w, a and v.
  private readonly lowW: Float32Array;
  private readonly lowA: Float32Array;
  private readonly lowG: Float32Array;
  private readonly lowV: Float32Array;
  private readonly upW: Float32Array;
  private readonly upA: Float32Array;
  private readonly upV: Float32Array;
  /** r, k, v and the LoRA down-projections; then the LoRA up-projections: two batches of independent products. */
  private readonly downJobs: MatvecJob[];
  private readonly upJobs: MatvecJob[];

  /** The fast kernels, when the model runs on them: the WKV step goes there too. */
  private readonly fast: KernelProvider | undefined;

  constructor(w: Weights, layer: number, config: ModelConfig, encoding: V7Encoding) {
    this.fast = w.fast;
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    this.headSize = config.headSize;
    this.first = layer === 0;

    if (encoding === 'rwkvcpp') {
      // [6, 1, C]: row i is the i-th of x_r, x_w, x_k, x_v, x_a, x_g.
      const mu = w.vector(`${p}.x_rwkvag`, 6 * c, '6 × n_embd: x_r, x_w, x_k, x_v, x_a, x_g');
      const row = (i: number): Float32Array => mu.subarray(i * c, (i + 1) * c);
      this.muR = row(0);
      this.muW = row(1);
      this.muK = row(2);
      this.muV = row(3);
      this.muA = row(4);
      this.muG = row(5);
    } else {
      this.muR = w.vector(`${p}.x_r`, c, 'n_embd');
      this.muW = w.vector(`${p}.x_w`, c, 'n_embd');
      this.muK = w.vector(`${p}.x_k`, c, 'n_embd');
      this.muV = w.vector(`${p}.x_v`, c, 'n_embd');
      this.muA = w.vector(`${p}.x_a`, c, 'n_embd');
      this.muG = w.vector(`${p}.x_g`, c, 'n_embd');
    }
    this.w0 = w.vector(`${p}.w0`, c, 'n_embd');
    this.a0 = w.vector(`${p}.a0`, c, 'n_embd');
    this.kK = w.vector(`${p}.k_k`, c, 'n_embd');
    this.kA = w.vector(`${p}.k_a`, c, 'n_embd');
    this.rK = w.vector(`${p}.r_k`, c, 'n_head × head_size');
    this.wLora = loadLora(w, p, 'w', c, encoding);
    this.aLora = loadLora(w, p, 'a', c, encoding);
    this.gLora = loadLora(w, p, 'g', c, encoding);
    if (this.first) {
      this.v0 = undefined;
      this.vLora = undefined;
    } else {
      this.v0 = w.vector(`${p}.v0`, c, 'n_embd');
      this.vLora = loadLora(w, p, 'v', c, encoding);
    }
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnxWeight = w.vector(`${p}.ln_x.weight`, c, 'n_embd');
    this.lnxBias = w.vector(`${p}.ln_x.bias`, c, 'n_embd');
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, {
      muK: 'x_k',
      muR: undefined,
      style: 'shift',
    });

    this.xr = new Float32Array(c);
    this.xw = new Float32Array(c);
    this.xk = new Float32Array(c);
    this.xv = new Float32Array(c);
    this.xa = new Float32Array(c);
    this.xg = new Float32Array(c);
    this.r = new Float32Array(c);
    this.k = new Float32Array(c);
    this.v = new Float32Array(c);
    this.w = new Float32Array(c);
    this.a = new Float32Array(c);
    this.g = new Float32Array(c);
    this.kk = new Float32Array(c);
    this.y = new Float32Array(c);
    this.lowW = new Float32Array(this.wLora.down.rows);
    this.lowA = new Float32Array(this.aLora.down.rows);
    this.lowG = new Float32Array(this.gLora.down.rows);
    this.lowV = new Float32Array(this.vLora?.down.rows ?? 0);
    this.upW = new Float32Array(c);
    this.upA = new Float32Array(c);
    this.upV = new Float32Array(c);
    this.downJobs = [
      { m: this.receptance, x: this.xr, y: this.r },
      { m: this.key, x: this.xk, y: this.k },
      { m: this.value, x: this.xv, y: this.v },
      { m: this.wLora.down, x: this.xw, y: this.lowW, then: 'tanh' },
      { m: this.aLora.down, x: this.xa, y: this.lowA },
      { m: this.gLora.down, x: this.xg, y: this.lowG, then: 'sigmoid' },
    ];
    this.upJobs = [
      { m: this.wLora.up, x: this.lowW, y: this.upW },
      { m: this.aLora.up, x: this.lowA, y: this.upA },
      { m: this.gLora.up, x: this.lowG, y: this.g },
    ];
    if (this.vLora !== undefined) {
      this.downJobs.push({ m: this.vLora.down, x: this.xv, y: this.lowV });
      this.upJobs.push({ m: this.vLora.up, x: this.lowV, y: this.upV });
    }
  }

  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array, ctx: TokenContext): void {
    const c = this.c;
    const { r, k, v, w, a, g, kk, y } = this;

    // Token shift; att_x becomes this token's input.
    const prev = s.subarray(c, 2 * c);
    for (let i = 0; i < c; i++) {
      const x = xa[i]!;
      const d = prev[i]! - x;
      this.xr[i] = x + d * this.muR[i]!;
      this.xw[i] = x + d * this.muW[i]!;
      this.xk[i] = x + d * this.muK[i]!;
      this.xv[i] = x + d * this.muV[i]!;
      this.xa[i] = x + d * this.muA[i]!;
      this.xg[i] = x + d * this.muG[i]!;
    }
    prev.set(xa);

    matvecs(this.downJobs); // tanh on the w LoRA's and σ on the g LoRA's hidden values
    matvecs(this.upJobs);

    // Decay: w = exp(−e^(−0.5)·σ(w0 + W2·tanh(W1·xw))).
    for (let i = 0; i < c; i++) w[i] = Math.exp(DECAY_SCALE * sigmoid(this.w0[i]! + this.upW[i]!));
    // In-context learning rate: a = σ(a0 + A2·A1·xa). Gate: g = G2·σ(G1·xg) (already in g).
    for (let i = 0; i < c; i++) a[i] = sigmoid(this.a0[i]! + this.upA[i]!);

    // Value residual: layer 0 publishes its raw v; later layers lerp towards it.
    if (this.first) {
      ctx.vFirst.set(v);
    } else {
      const vFirst = ctx.vFirst;
      for (let i = 0; i < c; i++) v[i] = v[i]! + (vFirst[i]! - v[i]!) * sigmoid(this.v0![i]! + this.upV[i]!);
    }

    // kk from the unscaled k, then k's own rescaling by a.
    const n = this.headSize;
    for (let i = 0; i < c; i++) kk[i] = k[i]! * this.kK[i]!;
    for (let h = 0; h < this.nHead; h++) {
      const o = h * n;
      let sq = 0;
      for (let i = 0; i < n; i++) sq += kk[o + i]! * kk[o + i]!;
      const inv = 1 / Math.max(Math.sqrt(sq), L2_EPS);
      for (let i = 0; i < n; i++) kk[o + i] = kk[o + i]! * inv;
    }
    for (let i = 0; i < c; i++) k[i] = k[i]! * (1 + (a[i]! - 1) * this.kA[i]!);

    // WKV: per head, row i of S (value i) over keys j:
    //   S_ij ← S_ij·w_j − (Σ_j' S_ij'·kk_j')·kk_j·a_j + v_i·k_j;  y_i = Σ_j S_ij·r_j.
    const base = 2 * c;
    if (this.fast?.wkv7 !== undefined && n % 4 === 0) {
      this.fast.wkv7(s.subarray(base), r, w, k, v, kk, a, y, this.nHead, n);
    } else for (let h = 0; h < this.nHead; h++) {
      const o = h * n;
      const sh = base + h * n * n;
      for (let i = 0; i < n; i++) {
        const row = sh + i * n;
        let sa = 0;
        for (let j = 0; j < n; j++) sa += s[row + j]! * kk[o + j]!;
        const vi = v[o + i]!;
        let acc = 0;
        for (let j = 0; j < n; j++) {
          const q = o + j;
          const sij = s[row + j]! * w[q]! - sa * kk[q]! * a[q]! + vi * k[q]!;
          s[row + j] = sij;
          acc += sij * r[q]!;
        }
        y[o + i] = acc;
      }
    }

    normRows(normKernelsOf(this.fast), y, this.lnxWeight, this.lnxBias, y, 1, this.nHead, LN_X_EPS);

    // Per-head bonus (Σ r·k·r_k)·v, then the gate.
    for (let h = 0; h < this.nHead; h++) {
      const o = h * n;
      let rk = 0;
      for (let i = 0; i < n; i++) rk += r[o + i]! * k[o + i]! * this.rK[o + i]!;
      for (let i = 0; i < n; i++) y[o + i] = (y[o + i]! + rk * v[o + i]!) * g[o + i]!;
    }
    matvec(this.output, y, out);
  }

  channelMix(xf: Float32Array, s: Float32Array, out: Float32Array): void {
    this.ffn.run(xf, s.subarray(0, this.c), out);
  }

  /** The chunked WKV, head by head (the TypeScript path of parallel mode): y is T × C. */
  private wkvChunkedHeads(
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    kk: Float32Array,
    a: Float32Array,
    lw: Float64Array,
    s: Float32Array,
    y: Float32Array,
    t: number,
    chunk: number,
  ): void {
    const { c, nHead, headSize: n } = this;
    const scratch = new WkvScratch(Math.min(chunk, t), n);
    for (let h = 0; h < nHead; h++) {
      const state = s.subarray(2 * c + h * n * n, 2 * c + (h + 1) * n * n);
      for (let p0 = 0; p0 < t; p0 += chunk) {
        const len = Math.min(chunk, t - p0);
        scratch.load(p0, len, h * n, c, r, k, v, kk, a, lw);
        wkvChunk(scratch, len, n, state, y, p0, h * n, c);
      }
    }
  }

  channelMixSequence(xf: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    this.ffn.runSequence(xf, t, s.subarray(0, this.c), out, ctx.scratch);
  }

  /**
   * Parallel mode: `xa` and `out` are T × C (rows are positions). Every projection, LoRA factors included,
   * is one matrix-matrix product over the block; the WKV runs in chunks of `ctx.chunk` positions (see
   * `wkvChunk`). Leaves the state exactly as T calls of `timeMix` would, up to rounding.
   */
  timeMixSequence(xa: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    const c = this.c;
    const n = this.headSize;
    const nHead = this.nHead;
    const tc = t * c;

    // Token shift as a shifted copy (T × C); att_x becomes the last row of xa.
    const shifted = ctx.scratch.get('v7.shifted', tc);
    shiftRows(xa, t, s.subarray(c, 2 * c), shifted);
    const lerp = (mu: Float32Array, name: string): Float32Array => {
      const o = ctx.scratch.get(`v7.x${name}`, tc);
      lerpRows(shiftLerp, xa, shifted, mu, o);
      return o;
    };
    const xr = lerp(this.muR, 'r');
    const xw = lerp(this.muW, 'w');
    const xk = lerp(this.muK, 'k');
    const xv = lerp(this.muV, 'v');
    const xA = lerp(this.muA, 'a');
    const xg = lerp(this.muG, 'g');

    // Projections, T × C each.
    const r = ctx.scratch.get('v7.r', tc);
    const k = ctx.scratch.get('v7.k', tc);
    const v = ctx.scratch.get('v7.v', tc);
    matmul(this.receptance, xr, t, r);
    matmul(this.key, xk, t, k);
    matmul(this.value, xv, t, v);

    // LoRA: down-projection into T × D, then up-projection into T × C (`up`, reused).
    const maxRank = Math.max(...[this.wLora, this.aLora, this.gLora, this.vLora].map((l) => l?.down.rows ?? 0));
    const low = ctx.scratch.get('v7.low', t * maxRank);
    const up = ctx.scratch.get('v7.up', tc);
    const lora = (l: Lora, x: Float32Array, act: ((z: number) => number) | undefined, y: Float32Array): void => {
      const lo = low.subarray(0, t * l.down.rows);
      matmul(l.down, x, t, lo);
      if (act !== undefined) for (let i = 0; i < lo.length; i++) lo[i] = act(lo[i]!);
      matmul(l.up, lo, t, y);
    };

    // Log-decay, T × C in float64, taken directly: log w = −e^(−0.5)·σ(w0 + W2·tanh(W1·xw)) ∈ (−0.61, 0).
    // Never log(w) of a rounded w: the chunked WKV sums these exponents.
    lora(this.wLora, xw, Math.tanh, up);
    const lw = new Float64Array(tc);
    for (let p = 0; p < t; p++) {
      for (let i = 0; i < c; i++) lw[p * c + i] = DECAY_SCALE * sigmoid(this.w0[i]! + up[p * c + i]!);
    }

    // a = σ(a0 + A2·A1·xa), T × C.
    const a = ctx.scratch.get('v7.a', tc);
    lora(this.aLora, xA, undefined, up);
    for (let p = 0; p < t; p++) for (let i = 0; i < c; i++) a[p * c + i] = sigmoid(this.a0[i]! + up[p * c + i]!);

    // g = G2·σ(G1·xg), T × C.
    const g = ctx.scratch.get('v7.g', tc);
    lora(this.gLora, xg, sigmoid, g);

    // Value residual: layer 0 publishes its raw v rows (T × C); later layers lerp towards them.
    if (this.first) {
      ctx.vFirst.set(v);
    } else {
      lora(this.vLora!, xv, undefined, up);
      const vFirst = ctx.vFirst;
      for (let p = 0; p < t; p++) {
        for (let i = 0; i < c; i++) {
          const q = p * c + i;
          v[q] = v[q]! + (vFirst[q]! - v[q]!) * sigmoid(this.v0![i]! + up[q]!);
        }
      }
    }

    // kk (T × C) from the unscaled k, L2-normalised per row and head; then k's rescaling by a.
    const kk = ctx.scratch.get('v7.kk', tc);
    for (let p = 0; p < t; p++) {
      for (let i = 0; i < c; i++) kk[p * c + i] = k[p * c + i]! * this.kK[i]!;
      for (let h = 0; h < nHead; h++) {
        const o = p * c + h * n;
        let sq = 0;
        for (let i = 0; i < n; i++) sq += kk[o + i]! * kk[o + i]!;
        const inv = 1 / Math.max(Math.sqrt(sq), L2_EPS);
        for (let i = 0; i < n; i++) kk[o + i] = kk[o + i]! * inv;
      }
      for (let i = 0; i < c; i++) {
        const q = p * c + i;
        k[q] = k[q]! * (1 + (a[q]! - 1) * this.kA[i]!);
      }
    }

    // WKV: y (T × C). On the fast kernels, the one-token recurrence stepped along the sequence (w = e^lw,
    // as RNN mode computes it); otherwise the chunked form, head by head.
    const y = ctx.scratch.get('v7.y', tc);
    if (this.fast?.wkv7Sequence !== undefined && n % 4 === 0) {
      const w = ctx.scratch.get('v7.w', tc);
      for (let q = 0; q < tc; q++) w[q] = Math.exp(lw[q]!);
      this.fast.wkv7Sequence(s.subarray(2 * c), r, w, k, v, kk, a, y, nHead, n, t);
    } else {
      this.wkvChunkedHeads(r, k, v, kk, a, lw, s, y, t, ctx.chunk);
    }

    // GroupNorm per row, the per-head bonus (Σ r·k·r_k)·v, the gate; then the output projection.
    normRows(normKernelsOf(this.fast), y, this.lnxWeight, this.lnxBias, y, t, nHead, LN_X_EPS);
    for (let p = 0; p < t; p++) {
      for (let h = 0; h < nHead; h++) {
        const o = p * c + h * n;
        let rk = 0;
        for (let i = 0; i < n; i++) rk += r[o + i]! * k[o + i]! * this.rK[h * n + i]!;
        for (let i = 0; i < n; i++) y[o + i] = (y[o + i]! + rk * v[o + i]!) * g[o + i]!;
      }
    }
    matmul(this.output, y, t, out);
  }
}

/**
 * One head's inputs over one chunk, in float64, L × N row-major (row = position within the chunk), and
 * the chunk's working arrays. Sized once per call for the longest chunk.
 */
class WkvScratch {
  readonly r: Float64Array;
  readonly k: Float64Array;
  readonly v: Float64Array;
  readonly alpha: Float64Array; // α = −kk
  readonly beta: Float64Array; // β = kk ⊙ a
  readonly cum: Float64Array; // (L + 1) × N: cum[t] = Σ_{m<t} log w_m (A_t in 1-based positions), cum[0] = 0
  readonly u: Float64Array; // L × N: u_t = S_{t−1}·α_t (over values)
  readonly s0: Float64Array; // N × N: the chunk's initial state, S0[value][key]
  readonly e: Float64Array; // N: decay factors of one (s, t) pair
  readonly sv: Float64Array; // N: u_t being accumulated
  readonly sy: Float64Array; // N: y_t being accumulated
  readonly wt: Float64Array; // N: w_t of one position (first S0·(exp(A_t) ⊙ r_t)'s factor)

  constructor(l: number, n: number) {
    this.r = new Float64Array(l * n);
    this.k = new Float64Array(l * n);
    this.v = new Float64Array(l * n);
    this.alpha = new Float64Array(l * n);
    this.beta = new Float64Array(l * n);
    this.cum = new Float64Array((l + 1) * n);
    this.u = new Float64Array(l * n);
    this.s0 = new Float64Array(n * n);
    this.e = new Float64Array(n);
    this.sv = new Float64Array(n);
    this.sy = new Float64Array(n);
    this.wt = new Float64Array(n);
  }

  /** Gathers positions p0 … p0+len−1 of channels ho … ho+N−1 from the T × C arrays. */
  load(
    p0: number,
    len: number,
    ho: number,
    c: number,
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    kk: Float32Array,
    a: Float32Array,
    lw: Float64Array,
  ): void {
    const n = this.e.length;
    for (let t = 0; t < len; t++) {
      const src = (p0 + t) * c + ho;
      const dst = t * n;
      for (let i = 0; i < n; i++) {
        const q = src + i;
        this.r[dst + i] = r[q]!;
        this.k[dst + i] = k[q]!;
        this.v[dst + i] = v[q]!;
        this.alpha[dst + i] = -kk[q]!;
        this.beta[dst + i] = kk[q]! * a[q]!;
        this.cum[dst + n + i] = this.cum[dst + i]! + lw[q]!;
      }
    }
  }
}

/**
 * The WKV of one head over one chunk of `len` positions (1-based t = 1 … L below), from the initial state
 * S0 = `state` (N × N f32, S[value][key]); writes y rows into `y` (T × C, at row p0 + t − 1, channel ho)
 * and the chunk's final state back into `state`.
 *
 * The RNN step S_t = S_{t−1}·D_t + u_t·β_tᵀ + v_t·k_tᵀ with D_t = diag(w_t), u_t = S_{t−1}·α_t unrolls,
 * with λ(s, t) = exp(A_t − A_s) (the decay from after step s through step t, elementwise over keys), to
 *   S_t = S0·diag(exp(A_t)) + Σ_{s≤t} (u_s·(β_s ⊙ λ(s,t))ᵀ + v_s·(k_s ⊙ λ(s,t))ᵀ),
 * so u_t = S_{t−1}·α_t is a lower-triangular system in u_1 … u_{t−1} (forward substitution), and
 * y_t = S_t·r_t follows from the same sum. Decay products are always exp of a difference A_t − A_s ≤ 0
 * (or such a factor times w_t ≤ 1), never a division by a cumulative decay: over a long chunk exp(A_t)
 * underflows (0.28^1024 is 0 in float32), and exp(A_t)/exp(A_s) would be 0/0 or inf. Cost per chunk:
 * O(L²·N + L·N²).
 */
function wkvChunk(
  sc: WkvScratch,
  len: number,
  n: number,
  state: Float32Array,
  y: Float32Array,
  p0: number,
  ho: number,
  c: number,
): void {
  const { r, k, v, alpha, beta, cum, u, s0, e, sv, sy, wt } = sc;
  for (let i = 0; i < n * n; i++) s0[i] = state[i]!;
  for (let t = 0; t < len; t++) {
    // Local row t is 1-based position t+1: A_{t} = cum[t], A_{t+1} = cum[t+1]; source s has A = cum[s+1].
    const to = t * n;
    // S0 terms: sv = S0·(exp(A_{t−1}) ⊙ α_t) for u_t, sy = S0·(exp(A_t) ⊙ r_t) for y_t.
    for (let j = 0; j < n; j++) {
      e[j] = Math.exp(cum[to + j]!) * alpha[to + j]!;
      wt[j] = Math.exp(cum[to + n + j]!) * r[to + j]!;
    }
    for (let i = 0; i < n; i++) {
      let au = 0;
      let ay = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) {
        au += s0[row + j]! * e[j]!;
        ay += s0[row + j]! * wt[j]!;
      }
      sv[i] = au;
      sy[i] = ay;
    }
    // w_t = exp(log w_t) ≤ 1, so λ(s, t) = λ(s, t−1)·w_t: a product of factors ≤ 1, no division.
    for (let i = 0; i < n; i++) wt[i] = Math.exp(cum[to + n + i]! - cum[to + i]!);
    // Earlier positions s < t: u_t += cu·u_s + cv·v_s (decay λ(s, t−1)), y_t += du·u_s + dv·v_s (λ(s, t)).
    for (let s = 0; s < t; s++) {
      const so = s * n;
      const ao = (s + 1) * n;
      let cu = 0;
      let cv = 0;
      let du = 0;
      let dv = 0;
      for (let i = 0; i < n; i++) {
        const lam = Math.exp(cum[to + i]! - cum[ao + i]!); // λ(s, t−1) ≤ 1
        const ea = lam * alpha[to + i]!;
        const er = lam * wt[i]! * r[to + i]!; // λ(s, t)·r
        cu += beta[so + i]! * ea;
        cv += k[so + i]! * ea;
        du += beta[so + i]! * er;
        dv += k[so + i]! * er;
      }
      for (let i = 0; i < n; i++) {
        const us = u[so + i]!;
        const vs = v[so + i]!;
        sv[i] = sv[i]! + cu * us + cv * vs;
        sy[i] = sy[i]! + du * us + dv * vs;
      }
    }
    // u_t solved (forward substitution); then the s = t terms of y_t (λ(t, t) = 1).
    let du = 0;
    let dv = 0;
    for (let i = 0; i < n; i++) {
      u[to + i] = sv[i]!;
      du += beta[to + i]! * r[to + i]!;
      dv += k[to + i]! * r[to + i]!;
    }
    const yo = (p0 + t) * c + ho;
    for (let i = 0; i < n; i++) y[yo + i] = sy[i]! + du * sv[i]! + dv * v[to + i]!;
  }

  // S_L = S0·diag(exp(A_L)) + Σ_s (u_s·(β_s ⊙ λ(s,L))ᵀ + v_s·(k_s ⊙ λ(s,L))ᵀ), stored back as f32.
  const lo = len * n;
  for (let j = 0; j < n; j++) e[j] = Math.exp(cum[lo + j]!);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s0[i * n + j] = s0[i * n + j]! * e[j]!;
  const bl = sv; // β_s ⊙ λ(s, L), N
  for (let s = 0; s < len; s++) {
    const so = s * n;
    const ao = (s + 1) * n;
    for (let j = 0; j < n; j++) {
      const lam = Math.exp(cum[lo + j]! - cum[ao + j]!);
      bl[j] = beta[so + j]! * lam;
      e[j] = k[so + j]! * lam;
    }
    for (let i = 0; i < n; i++) {
      const ui = u[so + i]!;
      const vi = v[so + i]!;
      const row = i * n;
      for (let j = 0; j < n; j++) s0[row + j] = s0[row + j]! + ui * bl[j]! + vi * e[j]!;
    }
  }
  for (let i = 0; i < n * n; i++) state[i] = s0[i]!;
}

/** `rwkvcpp`: parameters stored as rwkv.cpp's converter writes them; `official`: as RWKV-LM / ChatRWKV store them. */
export function buildV7(w: Weights, config: ModelConfig, encoding: V7Encoding): RnnModel {
  const blocks: Block[] = [];
  for (let l = 0; l < config.nLayer; l++) blocks.push(new V7Block(w, l, config, encoding));
  return new RnnModel(config, w, blocks);
}
