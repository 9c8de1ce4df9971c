// RWKV v7 (Goose) in RNN mode.
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
import { matvec, type Matrix } from '../kernels/matrix.js';
import { groupNorm } from '../kernels/norm.js';
import { shapeString } from '../tensor/tensor.js';
import { ChannelMix } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RnnModel, type Block, type TokenContext } from './model.js';
import { toF32, type Weights } from './weights.js';

export type V7Encoding = 'rwkvcpp' | 'official';

const GROUP_NORM_EPS = 64e-5;
const L2_EPS = 1e-12;
/** w = exp(DECAY_SCALE·σ(·)): the decay's exponent lies in (−e^(−0.5), 0). */
const DECAY_SCALE = -Math.exp(-0.5);

/** A small f32 matrix, [out, in] row-major (a LoRA factor, decoded once at load). */
interface SmallMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/** y = M·x, summed in doubles. (A candidate for blocks.ts if v6 wants the same.) */
function smallMatvec(m: SmallMatrix, x: Float32Array, y: Float32Array): void {
  const { rows, cols, data } = m;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * cols;
    for (let j = 0; j < cols; j++) s += data[o + j]! * x[j]!;
    y[r] = s;
  }
}

/** A LoRA pair: `down` [D, C] then `up` [C, D], both as [out, in]. */
interface Lora {
  readonly down: SmallMatrix;
  readonly up: SmallMatrix;
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
  return {
    down: { rows: d, cols: c, data: official ? transpose(downData, c, d) : downData },
    up: { rows: c, cols: d, data: official ? transpose(upData, d, c) : upData },
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
  private readonly t: Float32Array; // LoRA up-projection result
  private readonly low: Float32Array; // max rank: LoRA down-projection result

  constructor(w: Weights, layer: number, config: ModelConfig, encoding: V7Encoding) {
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

    const ranks = [this.wLora, this.aLora, this.gLora, this.vLora].map((l) => l?.down.rows ?? 0);
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
    this.t = new Float32Array(c);
    this.low = new Float32Array(Math.max(...ranks));
  }

  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array, ctx: TokenContext): void {
    const c = this.c;
    const { r, k, v, w, a, g, kk, y, t, low } = this;

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

    matvec(this.receptance, this.xr, r);
    matvec(this.key, this.xk, k);
    matvec(this.value, this.xv, v);

    // Decay: w = exp(−e^(−0.5)·σ(w0 + W2·tanh(W1·xw))).
    const lw = low.subarray(0, this.wLora.down.rows);
    smallMatvec(this.wLora.down, this.xw, lw);
    for (let i = 0; i < lw.length; i++) lw[i] = Math.tanh(lw[i]!);
    smallMatvec(this.wLora.up, lw, t);
    for (let i = 0; i < c; i++) w[i] = Math.exp(DECAY_SCALE * sigmoid(this.w0[i]! + t[i]!));

    // In-context learning rate: a = σ(a0 + A2·A1·xa).
    const la = low.subarray(0, this.aLora.down.rows);
    smallMatvec(this.aLora.down, this.xa, la);
    smallMatvec(this.aLora.up, la, t);
    for (let i = 0; i < c; i++) a[i] = sigmoid(this.a0[i]! + t[i]!);

    // Gate: g = G2·σ(G1·xg).
    const lg = low.subarray(0, this.gLora.down.rows);
    smallMatvec(this.gLora.down, this.xg, lg);
    for (let i = 0; i < lg.length; i++) lg[i] = sigmoid(lg[i]!);
    smallMatvec(this.gLora.up, lg, g);

    // Value residual: layer 0 publishes its raw v; later layers lerp towards it.
    if (this.first) {
      ctx.vFirst.set(v);
    } else {
      const vLora = this.vLora!;
      const lv = low.subarray(0, vLora.down.rows);
      smallMatvec(vLora.down, this.xv, lv);
      smallMatvec(vLora.up, lv, t);
      const vFirst = ctx.vFirst;
      for (let i = 0; i < c; i++) v[i] = v[i]! + (vFirst[i]! - v[i]!) * sigmoid(this.v0![i]! + t[i]!);
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
    for (let h = 0; h < this.nHead; h++) {
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

    groupNorm(y, this.lnxWeight, this.lnxBias, y, this.nHead, GROUP_NORM_EPS);

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
}

/** `rwkvcpp`: parameters stored as rwkv.cpp's converter writes them; `official`: as RWKV-LM / ChatRWKV store them. */
export function buildV7(w: Weights, config: ModelConfig, encoding: V7Encoding): RnnModel {
  const blocks: Block[] = [];
  for (let l = 0; l < config.nLayer; l++) blocks.push(new V7Block(w, l, config, encoding));
  return new RnnModel(config, w, blocks);
}
