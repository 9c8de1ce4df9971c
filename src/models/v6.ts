// RWKV v6 (Finch) in RNN mode.
//
// Time mix for one token (x: the ln1-normed input, prev: the previous token's; C = H·N; D, D2: the ranks of
// the token-shift and decay LoRAs):
//   dx = prev − x;  xxx = x + dx·maa_x
//   m = tanh(W1·xxx) (5D), cut into 5 chunks of D; m_c = W2_c·chunk_c (C) for c = w, k, v, r, g (that order)
//   x_c = x + dx·(maa_c + m_c)
//   r = Wr·xr;  k = Wk·xk;  v = Wv·xv;  g = silu(Wg·xg)
//   w = exp(−exp(time_decay + Wd2·tanh(Wd1·xw)))            per channel, different for every token
//   per head, key i, value j (u = time_faaaa):
//     y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);   S_ij ← w_i·S_ij + k_i·v_j
//   out = Wo·((GroupNorm_H(y; eps 64e-5)·ln_x.weight + ln_x.bias) ⊙ g)
// The channel mix is v4's with the v6 lerp (x + (prev − x)·μ).
//
// The two encodings differ only in the LoRA layouts. Official checkpoints (RWKV-LM) multiply a row vector
// from the left: time_maa_w1 (C, 5D), time_maa_w2 (5, D, C), time_decay_w1 (C, D2), time_decay_w2 (D2, C).
// rwkv.cpp's converter stores each transposed — (5D, C), (5, C, D), (D2, C), (C, D2) — which is already
// our [out, in] matrix order. Both store time_decay raw (rwkv.cpp applies exp(−exp(·)) in its graph) and
// time_faaaa as is. rwkv.cpp files may hold the 2-D LoRA matrices quantized; they are kept so here.
import { ModelError } from '../errors.js';
import { silu } from '../kernels/activations.js';
import { matrixFromTensor, matvec, type Matrix } from '../kernels/matrix.js';
import { groupNorm } from '../kernels/norm.js';
import { shapeString, type Tensor } from '../tensor/tensor.js';
import { ChannelMix } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RnnModel, type Block } from './model.js';
import { toF32, type Weights } from './weights.js';

export type V6Encoding = 'rwkvcpp' | 'official';

/** ln_x's epsilon in the official code (rwkv.cpp gets the same by scaling y by 1/8 and using 1e-5). */
const LN_X_EPS = 64e-5;

/** The token-shift interpolations the mix LoRA produces, in its chunk order. */
const MIX_CHUNKS = 5;

/** An f32 rows × cols matrix over `values` (row-major, [out, in]). */
function f32Matrix(name: string, rows: number, cols: number, values: Float32Array): Matrix {
  const data = new Uint8Array(values.buffer, values.byteOffset, rows * cols * 4);
  const t: Tensor = { name, dtype: 'f32', shape: [rows, cols], data };
  return matrixFromTensor(t, rows, cols);
}

/** `a` (rows × cols, row-major) transposed. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}

function badShape(w: Weights, t: Tensor, expected: string): ModelError {
  return new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${expected}`, {
    file: w.file,
    tensor: t.name,
  });
}

/**
 * A 2-D LoRA factor as an [out, in] matrix. rwkv.cpp stores it that way (kept in its encoding); official
 * checkpoints store [in, out], decoded and transposed here (they are small).
 */
function loraMatrix(w: Weights, name: string, out: number, inp: number, encoding: V6Encoding): Matrix {
  if (encoding === 'rwkvcpp') return w.matrix(name, out, inp);
  const t = w.tensor(name);
  if (t.shape.length !== 2 || t.shape[0] !== inp || t.shape[1] !== out) throw badShape(w, t, `[${inp}, ${out}]`);
  return f32Matrix(name, out, inp, transpose(toF32(t), inp, out));
}

/** The rank of a LoRA whose first factor `name` maps C to rank·`multiple` values. */
function loraRank(w: Weights, name: string, c: number, multiple: number, encoding: V6Encoding): number {
  const t = w.tensor(name);
  // rwkv.cpp: [rank·multiple, C]; official: [C, rank·multiple].
  const [outDim, inDim] = encoding === 'rwkvcpp' ? [0, 1] : [1, 0];
  const expected = encoding === 'rwkvcpp' ? `[${multiple}·rank, ${c}]` : `[${c}, ${multiple}·rank]`;
  if (t.shape.length !== 2 || t.shape[inDim] !== c || t.shape[outDim]! % multiple !== 0 || t.shape[outDim] === 0) {
    throw badShape(w, t, expected);
  }
  return t.shape[outDim]! / multiple;
}

/** time_maa_w2 as 5 matrices [C, D], one per chunk (w, k, v, r, g). */
function mixLoraOut(w: Weights, name: string, c: number, d: number, encoding: V6Encoding): Matrix[] {
  const t = w.tensor(name);
  // rwkv.cpp: (5, C, D), each chunk already [out, in]; official: (5, D, C).
  const inner = encoding === 'rwkvcpp' ? [c, d] : [d, c];
  if (t.shape.length !== 3 || t.shape[0] !== MIX_CHUNKS || t.shape[1] !== inner[0] || t.shape[2] !== inner[1]) {
    throw badShape(w, t, `[${MIX_CHUNKS}, ${inner[0]}, ${inner[1]}]`);
  }
  const all = toF32(t);
  const out: Matrix[] = [];
  for (let i = 0; i < MIX_CHUNKS; i++) {
    const chunk = all.subarray(i * c * d, (i + 1) * c * d);
    out.push(f32Matrix(`${name}[${i}]`, c, d, encoding === 'rwkvcpp' ? chunk : transpose(chunk, d, c)));
  }
  return out;
}

class V6Block implements Block {
  private readonly c: number;
  private readonly nHead: number;
  private readonly headSize: number;
  private readonly maaX: Float32Array; // C
  private readonly maa: Float32Array[]; // 5 × C: maa_w, maa_k, maa_v, maa_r, maa_g
  private readonly maaW1: Matrix; // 5D × C
  private readonly maaW2: Matrix[]; // 5 × (C × D)
  private readonly decay: Float32Array; // time_decay (raw), C
  private readonly decayW1: Matrix; // D2 × C
  private readonly decayW2: Matrix; // C × D2
  private readonly bonus: Float32Array; // u = time_faaaa, C (H × N)
  private readonly receptance: Matrix; // C × C
  private readonly key: Matrix;
  private readonly value: Matrix;
  private readonly gate: Matrix;
  private readonly output: Matrix;
  private readonly lnXWeight: Float32Array;
  private readonly lnXBias: Float32Array;
  private readonly ffn: ChannelMix;
  // Scratch.
  private readonly dx: Float32Array; // C
  private readonly xxx: Float32Array; // C
  private readonly m: Float32Array; // 5D
  private readonly mChunks: Float32Array[]; // 5 views of `m`, D each
  private readonly mix: Float32Array; // C: one chunk's m_c
  private readonly xs: Float32Array[]; // 5 × C: xw, xk, xv, xr, xg
  private readonly d2: Float32Array; // D2
  private readonly w: Float32Array; // C: decay for this token
  private readonly r: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly g: Float32Array;
  private readonly y: Float32Array; // C
  private readonly acc: Float64Array; // N: one head's y, summed in doubles

  constructor(w: Weights, layer: number, config: ModelConfig, encoding: V6Encoding) {
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    this.headSize = config.headSize;
    this.maaX = w.vector(`${p}.time_maa_x`, c, 'n_embd');
    this.maa = ['w', 'k', 'v', 'r', 'g'].map((n) => w.vector(`${p}.time_maa_${n}`, c, 'n_embd'));
    const d = loraRank(w, `${p}.time_maa_w1`, c, MIX_CHUNKS, encoding);
    this.maaW1 = loraMatrix(w, `${p}.time_maa_w1`, MIX_CHUNKS * d, c, encoding);
    this.maaW2 = mixLoraOut(w, `${p}.time_maa_w2`, c, d, encoding);
    const d2 = loraRank(w, `${p}.time_decay_w1`, c, 1, encoding);
    this.decay = w.vector(`${p}.time_decay`, c, 'n_embd');
    this.decayW1 = loraMatrix(w, `${p}.time_decay_w1`, d2, c, encoding);
    this.decayW2 = loraMatrix(w, `${p}.time_decay_w2`, c, d2, encoding);
    this.bonus = w.vector(`${p}.time_faaaa`, c, 'n_head × head_size');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.gate = w.matrix(`${p}.gate.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnXWeight = w.vector(`${p}.ln_x.weight`, c, 'n_embd');
    this.lnXBias = w.vector(`${p}.ln_x.bias`, c, 'n_embd');
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, {
      muK: 'time_maa_k',
      muR: 'time_maa_r',
      style: 'shift',
    });
    this.dx = new Float32Array(c);
    this.xxx = new Float32Array(c);
    this.m = new Float32Array(MIX_CHUNKS * d);
    this.mChunks = Array.from({ length: MIX_CHUNKS }, (_, i) => this.m.subarray(i * d, (i + 1) * d));
    this.mix = new Float32Array(c);
    this.xs = Array.from({ length: MIX_CHUNKS }, () => new Float32Array(c));
    this.d2 = new Float32Array(d2);
    this.w = new Float32Array(c);
    this.r = new Float32Array(c);
    this.k = new Float32Array(c);
    this.v = new Float32Array(c);
    this.g = new Float32Array(c);
    this.y = new Float32Array(c);
    this.acc = new Float64Array(config.headSize);
  }

  // Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][key i][value j] as rwkv.cpp keeps it.
  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array): void {
    const c = this.c;
    const prev = s.subarray(c, 2 * c);
    const { dx, xxx, m, mix, xs } = this;
    for (let i = 0; i < c; i++) {
      dx[i] = prev[i]! - xa[i]!;
      xxx[i] = xa[i]! + dx[i]! * this.maaX[i]!;
    }
    prev.set(xa);

    // Data-dependent token shift: x_c = x + dx·(maa_c + W2_c·tanh(W1·xxx)_c).
    matvec(this.maaW1, xxx, m);
    for (let i = 0; i < m.length; i++) m[i] = Math.tanh(m[i]!);
    for (let ch = 0; ch < MIX_CHUNKS; ch++) {
      matvec(this.maaW2[ch]!, this.mChunks[ch]!, mix);
      const mu = this.maa[ch]!;
      const x = xs[ch]!;
      for (let i = 0; i < c; i++) x[i] = xa[i]! + dx[i]! * (mu[i]! + mix[i]!);
    }
    const [xw, xk, xv, xr, xg] = xs as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];

    matvec(this.receptance, xr, this.r);
    matvec(this.key, xk, this.k);
    matvec(this.value, xv, this.v);
    matvec(this.gate, xg, this.g);

    // Decay for this token: w = exp(−exp(time_decay + Wd2·tanh(Wd1·xw))).
    const d2 = this.d2;
    matvec(this.decayW1, xw, d2);
    for (let i = 0; i < d2.length; i++) d2[i] = Math.tanh(d2[i]!);
    matvec(this.decayW2, d2, this.w);
    for (let i = 0; i < c; i++) this.w[i] = Math.exp(-Math.exp(this.decay[i]! + this.w[i]!));

    this.wkv(s);
    groupNorm(this.y, this.lnXWeight, this.lnXBias, this.y, this.nHead, LN_X_EPS);
    const { y, g } = this;
    for (let i = 0; i < c; i++) y[i] = y[i]! * silu(g[i]!);
    matvec(this.output, y, out);
  }

  /** Reads r, k, v, w; updates the heads' state in `s` and writes the per-head outputs into y. */
  private wkv(s: Float32Array): void {
    const n = this.headSize;
    const { r, k, v, w, y, acc } = this;
    const u = this.bonus;
    for (let h = 0; h < this.nHead; h++) {
      const o = h * n; // this head's channels
      const base = 2 * this.c + h * n * n; // this head's state S[i][j]
      acc.fill(0);
      for (let i = 0; i < n; i++) {
        const ki = k[o + i]!;
        const ri = r[o + i]!;
        const ui = u[o + i]!;
        const wi = w[o + i]!;
        const row = base + i * n;
        for (let j = 0; j < n; j++) {
          const kv = ki * v[o + j]!;
          const sij = s[row + j]!;
          acc[j] = acc[j]! + ri * (ui * kv + sij);
          s[row + j] = wi * sij + kv;
        }
      }
      for (let j = 0; j < n; j++) y[o + j] = acc[j]!;
    }
  }

  channelMix(xf: Float32Array, s: Float32Array, out: Float32Array): void {
    this.ffn.run(xf, s.subarray(0, this.c), out);
  }
}

/** `rwkvcpp`: parameters stored pre-transformed as rwkv.cpp does; `official`: as RWKV-LM / ChatRWKV store them. */
export function buildV6(w: Weights, config: ModelConfig, encoding: V6Encoding): RnnModel {
  const blocks: Block[] = [];
  for (let l = 0; l < config.nLayer; l++) blocks.push(new V6Block(w, l, config, encoding));
  return new RnnModel(config, w, blocks);
}
