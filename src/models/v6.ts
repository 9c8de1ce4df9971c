// RWKV v6 (Finch) in RNN mode and in parallel ("transformer") mode.
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
//
// Parallel mode computes the same quantities over a T × C block (rows = positions): every projection and
// LoRA factor is one matrix-matrix product, and the WKV runs in chunks of ctx.chunk positions. Within a
// chunk of length L (per head, state S0, log-decays lw_m = −exp(d_m) ≤ 0, A_t = Σ_{m≤t} lw_m, A_0 = 0):
//   y_t,j = Σ_i r_t,i·u_i·k_t,i·v_t,j + Σ_{s<t} [Σ_i r_t,i·k_s,i·e^(A_{t−1,i} − A_{s,i})]·v_s,j
//           + Σ_i r_t,i·e^(A_{t−1,i})·S0_ij
//   S_L,ij = e^(A_{L,i})·S0_ij + Σ_{s≤L} e^(A_{L,i} − A_{s,i})·k_s,i·v_s,j
// Every exponent is ≤ 0: a decay product is never formed by dividing by a cumulative decay, which would
// overflow once the cumulative decay leaves f32/f64 range (0.28^1024 ≈ 1e−566).
import { ModelError } from '../errors.js';
import { silu } from '../kernels/activations.js';
import { matmul, matvec, matvecs, type Matrix, type MatvecJob } from '../kernels/matrix.js';
import { normKernelsOf, normRows } from '../kernels/norm.js';
import { shapeString, type Tensor } from '../tensor/tensor.js';
import { ChannelMix, LN_X_EPS, shiftRows, wkv5Step } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RnnModel, type Block, type SequenceContext } from './model.js';
import { toF32, type KernelProvider, type Weights } from './weights.js';

export type V6Encoding = 'rwkvcpp' | 'official';

/** The token-shift interpolations the mix LoRA produces, in its chunk order. */
const MIX_CHUNKS = 5;

/**
 * Parallel mode's floor for a log-decay −exp(d). exp(d) overflows to Infinity for d > 709, and −Infinity
 * in a cumulative sum gives NaN (−∞ − −∞); huge finite values would swamp the small decays summed after
 * them. Any log-decay below −746 already makes e^(·) exactly 0 in float64 (and w = 0 in f32 RNN mode), so
 * clamping there changes no result.
 */
const LOG_DECAY_MIN = -1000;

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
  return w.derivedMatrix(name, transpose(toF32(t), inp, out), out, inp);
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
    out.push(w.derivedMatrix(`${name}[${i}]`, encoding === 'rwkvcpp' ? chunk.slice() : transpose(chunk, d, c), c, d));
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
  private readonly mixes: Float32Array[]; // 5 × C: each chunk's W2_c·tanh(W1·xxx)_c
  /** The five mix LoRA outputs; then r, k, v, g and the decay LoRA's first half: two batches. */
  private readonly mixJobs: MatvecJob[];
  private readonly projections: MatvecJob[];
  private readonly xs: Float32Array[]; // 5 × C: xw, xk, xv, xr, xg
  private readonly d2: Float32Array; // D2
  private readonly w: Float32Array; // C: decay for this token
  private readonly r: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly g: Float32Array;
  private readonly y: Float32Array; // C
  private readonly acc: Float64Array; // N: one head's y, summed in doubles

  /** The fast kernels, when the model runs on them: the WKV step goes there too. */
  private readonly fast: KernelProvider | undefined;

  constructor(w: Weights, layer: number, config: ModelConfig, encoding: V6Encoding) {
    this.fast = w.fast;
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
    this.mixes = Array.from({ length: MIX_CHUNKS }, () => new Float32Array(c));
    this.xs = Array.from({ length: MIX_CHUNKS }, () => new Float32Array(c));
    this.d2 = new Float32Array(d2);
    this.w = new Float32Array(c);
    this.r = new Float32Array(c);
    this.k = new Float32Array(c);
    this.v = new Float32Array(c);
    this.g = new Float32Array(c);
    this.y = new Float32Array(c);
    this.acc = new Float64Array(config.headSize);
    this.mixJobs = this.maaW2.map((m, ch) => ({ m, x: this.mChunks[ch]!, y: this.mixes[ch]! }));
    const [xw, xk, xv, xr, xg] = this.xs as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    this.projections = [
      { m: this.receptance, x: xr, y: this.r },
      { m: this.key, x: xk, y: this.k },
      { m: this.value, x: xv, y: this.v },
      { m: this.gate, x: xg, y: this.g },
      { m: this.decayW1, x: xw, y: this.d2 },
    ];
  }

  // Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][key i][value j] as rwkv.cpp keeps it.
  timeMix(xa: Float32Array, s: Float32Array, out: Float32Array): void {
    const c = this.c;
    const prev = s.subarray(c, 2 * c);
    const { dx, xxx, m, xs } = this;
    for (let i = 0; i < c; i++) {
      dx[i] = prev[i]! - xa[i]!;
      xxx[i] = xa[i]! + dx[i]! * this.maaX[i]!;
    }
    prev.set(xa);

    // Data-dependent token shift: x_c = x + dx·(maa_c + W2_c·tanh(W1·xxx)_c).
    matvec(this.maaW1, xxx, m);
    for (let i = 0; i < m.length; i++) m[i] = Math.tanh(m[i]!);
    matvecs(this.mixJobs);
    for (let ch = 0; ch < MIX_CHUNKS; ch++) {
      const mix = this.mixes[ch]!;
      const mu = this.maa[ch]!;
      const x = xs[ch]!;
      for (let i = 0; i < c; i++) x[i] = xa[i]! + dx[i]! * (mu[i]! + mix[i]!);
    }
    const [xw, xk, xv, xr, xg] = xs as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];

    // r, k, v, g, and the first half of the decay for this token: w = exp(−exp(time_decay + Wd2·tanh(Wd1·xw))).
    matvecs(this.projections);
    const d2 = this.d2;
    for (let i = 0; i < d2.length; i++) d2[i] = Math.tanh(d2[i]!);
    matvec(this.decayW2, d2, this.w);
    for (let i = 0; i < c; i++) this.w[i] = Math.exp(-Math.exp(this.decay[i]! + this.w[i]!));

    this.wkv(s);
    normRows(normKernelsOf(this.fast), this.y, this.lnXWeight, this.lnXBias, this.y, 1, this.nHead, LN_X_EPS);
    const { y, g } = this;
    for (let i = 0; i < c; i++) y[i] = y[i]! * silu(g[i]!);
    matvec(this.output, y, out);
  }

  /** Reads r, k, v, w; updates the heads' state in `s` and writes the per-head outputs into y. */
  private wkv(s: Float32Array): void {
    // The v5 recurrence, with this token's decay.
    const { r, k, v, w, y, acc } = this;
    wkv5Step(this.fast, s.subarray(2 * this.c), r, k, v, w, this.bonus, y, this.nHead, this.headSize, acc);
  }


  // Parallel mode: xa and out are T × C (rows = positions). Same state layout and final state as RNN mode.
  timeMixSequence(xa: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    const c = this.c;
    const tc = t * c;
    // dx = prev − x per row, prev being the row above (the state's att_x for row 0; shiftRows then leaves
    // att_x = the last row). xxx = x + dx·maa_x. All T × C.
    const dx = ctx.scratch.get('v6.dx', tc);
    shiftRows(xa, t, s.subarray(c, 2 * c), dx);
    const xxx = ctx.scratch.get('v6.xxx', tc);
    for (let o = 0; o < tc; o += c) {
      for (let i = 0; i < c; i++) {
        const d = dx[o + i]! - xa[o + i]!;
        dx[o + i] = d;
        xxx[o + i] = xa[o + i]! + d * this.maaX[i]!;
      }
    }

    // Data-dependent token shift: m = tanh(xxx·W1ᵀ) (T × 5D); each D-wide column chunk, gathered into a
    // contiguous T × D block, goes through its W2_c (C × D) in one product: mix = T × C.
    const d5 = this.maaW1.rows;
    const d = d5 / MIX_CHUNKS;
    const m = ctx.scratch.get('v6.m', t * d5);
    matmul(this.maaW1, xxx, t, m);
    for (let i = 0; i < m.length; i++) m[i] = Math.tanh(m[i]!);
    const mc = ctx.scratch.get('v6.mc', t * d);
    const mix = xxx; // reuse: xxx is consumed
    const xs: Float32Array[] = [];
    for (let ch = 0; ch < MIX_CHUNKS; ch++) {
      for (let p = 0; p < t; p++) mc.set(m.subarray(p * d5 + ch * d, p * d5 + (ch + 1) * d), p * d);
      matmul(this.maaW2[ch]!, mc, t, mix);
      const mu = this.maa[ch]!;
      const x = ctx.scratch.get(`v6.x${ch}`, tc);
      for (let o = 0; o < tc; o += c) {
        for (let i = 0; i < c; i++) x[o + i] = xa[o + i]! + dx[o + i]! * (mu[i]! + mix[o + i]!);
      }
      xs.push(x);
    }
    const [xw, xk, xv, xr, xg] = xs as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];

    // Projections: T × C each.
    const r = ctx.scratch.get('v6.r', tc);
    const k = ctx.scratch.get('v6.k', tc);
    const v = ctx.scratch.get('v6.v', tc);
    const g = ctx.scratch.get('v6.g', tc);
    matmul(this.receptance, xr, t, r);
    matmul(this.key, xk, t, k);
    matmul(this.value, xv, t, v);
    matmul(this.gate, xg, t, g);

    // Log-decay per position and channel: lw = −exp(time_decay + tanh(xw·Wd1ᵀ)·Wd2ᵀ) (T × C, float64),
    // computed directly rather than as log(w), and clamped (see LOG_DECAY_MIN).
    const d2 = this.decayW1.rows;
    const dd = ctx.scratch.get('v6.dd', t * d2);
    matmul(this.decayW1, xw, t, dd);
    for (let i = 0; i < dd.length; i++) dd[i] = Math.tanh(dd[i]!);
    const wd = xw; // reuse: xw is consumed
    matmul(this.decayW2, dd, t, wd);
    const lw = new Float64Array(tc);
    for (let o = 0; o < tc; o += c) {
      for (let i = 0; i < c; i++) lw[o + i] = Math.max(-Math.exp(this.decay[i]! + wd[o + i]!), LOG_DECAY_MIN);
    }

    const y = xr; // reuse: T × C WKV output
    if (this.fast?.wkv5Sequence !== undefined && this.headSize % 4 === 0) {
      // The one-token recurrence stepped along the sequence, with w = e^lw as RNN mode computes it.
      const w = wd; // reuse: T × C
      for (let q = 0; q < tc; q++) w[q] = Math.exp(lw[q]!);
      this.fast.wkv5Sequence(s.subarray(2 * c), r, k, v, w, this.bonus, y, this.nHead, this.headSize, t);
    } else {
      const chunk = ctx.chunk;
      for (let p0 = 0; p0 < t; p0 += chunk) this.wkvChunk(r, k, v, lw, s, y, p0, Math.min(chunk, t - p0));
    }

    normRows(normKernelsOf(this.fast), y, this.lnXWeight, this.lnXBias, y, t, this.nHead, LN_X_EPS);
    for (let o = 0; o < tc; o += c) {
      const row = y.subarray(o, o + c);
      for (let i = 0; i < c; i++) row[i] = row[i]! * silu(g[o + i]!);
    }
    matmul(this.output, y, t, out);
  }

  /**
   * The WKV over positions p0 .. p0+len−1 in the closed form of the header, every head: reads r, k, v
   * (T × C, f32) and lw (T × C, float64), writes y's rows (T × C) and replaces each head's S in `s` with
   * the state after the chunk. Works in float64; S is rounded to f32 once, at the chunk's end.
   */
  private wkvChunk(
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    lw: Float64Array,
    s: Float32Array,
    y: Float32Array,
    p0: number,
    len: number,
  ): void {
    const c = this.c;
    const n = this.headSize;
    const u = this.bonus;
    // Per head, chunk-local: R, K, V are len × N; A is (len+1) × N with A[m] = Σ_{q<m} lw_q (A[0] = 0),
    // so position q (0-based) reads A_{t−1} as A[q] and its own A_s as A[q+1].
    const R = new Float64Array(len * n);
    const K = new Float64Array(len * n);
    const V = new Float64Array(len * n);
    const A = new Float64Array((len + 1) * n);
    const S0 = new Float64Array(n * n); // S0[key i][value j]
    const S = new Float64Array(n * n);
    const rq = new Float64Array(n); // r_t,i·e^(A_{t−1,i})
    const score = new Float64Array(len); // Σ_i r_t,i·k_s,i·e^(A_{t−1,i} − A_{s,i}) for s < t
    const acc = new Float64Array(n);
    for (let h = 0; h < this.nHead; h++) {
      const ho = h * n;
      const base = 2 * c + h * n * n;
      for (let q = 0; q < len; q++) {
        const src = (p0 + q) * c + ho;
        for (let i = 0; i < n; i++) {
          R[q * n + i] = r[src + i]!;
          K[q * n + i] = k[src + i]!;
          V[q * n + i] = v[src + i]!;
          A[(q + 1) * n + i] = A[q * n + i]! + lw[src + i]!;
        }
      }
      for (let i = 0; i < n * n; i++) S0[i] = s[base + i]!;

      for (let q = 0; q < len; q++) {
        const aq = q * n; // A_{t−1}
        // Bonus (current token): (Σ_i r_i·u_i·k_i)·v_t.
        let bonus = 0;
        for (let i = 0; i < n; i++) bonus += R[aq + i]! * u[ho + i]! * K[aq + i]!;
        for (let j = 0; j < n; j++) acc[j] = bonus * V[aq + j]!;
        // Earlier positions of the chunk: exponent A_{t−1} − A_s ≤ 0 since s ≤ t−1.
        for (let sp = 0; sp < q; sp++) {
          const as = (sp + 1) * n;
          const ks = sp * n;
          let sc = 0;
          for (let i = 0; i < n; i++) sc += R[aq + i]! * K[ks + i]! * Math.exp(A[aq + i]! - A[as + i]!);
          score[sp] = sc;
        }
        for (let sp = 0; sp < q; sp++) {
          const sc = score[sp]!;
          const vs = sp * n;
          for (let j = 0; j < n; j++) acc[j] = acc[j]! + sc * V[vs + j]!;
        }
        // The chunk's initial state, decayed through positions 1..t−1.
        for (let i = 0; i < n; i++) rq[i] = R[aq + i]! * Math.exp(A[aq + i]!);
        for (let i = 0; i < n; i++) {
          const ri = rq[i]!;
          if (ri === 0) continue;
          const row = i * n;
          for (let j = 0; j < n; j++) acc[j] = acc[j]! + ri * S0[row + j]!;
        }
        const dst = (p0 + q) * c + ho;
        for (let j = 0; j < n; j++) y[dst + j] = acc[j]!;
      }

      // State after the chunk: S_L = e^(A_L)·S0 + Σ_s e^(A_L − A_s)·k_s ⊗ v_s (decay on key rows).
      const al = len * n;
      for (let i = 0; i < n; i++) {
        const e = Math.exp(A[al + i]!);
        const row = i * n;
        for (let j = 0; j < n; j++) S[row + j] = e * S0[row + j]!;
      }
      for (let sp = 0; sp < len; sp++) {
        const as = (sp + 1) * n;
        const ks = sp * n;
        for (let i = 0; i < n; i++) {
          const f = Math.exp(A[al + i]! - A[as + i]!) * K[ks + i]!;
          if (f === 0) continue;
          const row = i * n;
          for (let j = 0; j < n; j++) S[row + j] = S[row + j]! + f * V[ks + j]!;
        }
      }
      for (let i = 0; i < n * n; i++) s[base + i] = S[i]!;
    }
  }

  channelMixSequence(xf: Float32Array, t: number, s: Float32Array, out: Float32Array, ctx: SequenceContext): void {
    this.ffn.runSequence(xf, t, s.subarray(0, this.c), out, ctx.scratch);
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
