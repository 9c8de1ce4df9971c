// Plain float64 definitions of the Backend operations, written from the formulas (backend.ts, ggml's block
// layouts, the RWKV papers) without sharing code with src/: the backend conformance suite uses them to
// check ReferenceBackend itself and to size each comparison's tolerance (the magnitude of the terms a
// result is summed from). Also the suite's seeded random numbers and weight matrices in every encoding.
import type { RowLayout } from '../../src/kernels/backend.js';
import { int8RowBytes, toInt8Rows, type Matrix, type MatrixDType } from '../../src/kernels/matrix.js';
import { encodeHalf, quantizeInto, type QuantType } from '../../src/kernels/quantize.js';

// ── random numbers ──────────────────────────────────────────────────────────────────────────────────

/** mulberry32: a small seeded generator, so that every run sees the same inputs. */
export class SeededRandom {
  private s: number;
  constructor(seed: number) {
    this.s = (seed ^ 0x5bd1e995) >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 2 ** 32;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(n: number): number {
    return this.u32() % n;
  }
  /** `n` values uniform in [lo, hi), as f32. */
  values(n: number, lo = -1, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniform(lo, hi);
    return out;
  }
}

/** Seeds derived from a test's name, so that each case has its own inputs whatever runs before it. */
export function seedOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

// ── weight matrices ─────────────────────────────────────────────────────────────────────────────────

export const ENCODINGS: readonly MatrixDType[] = ['f32', 'f16', 'bf16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0', 'int8'];

export function isBlockEncoding(d: MatrixDType): d is QuantType {
  return d === 'q4_0' || d === 'q4_1' || d === 'q5_0' || d === 'q5_1' || d === 'q8_0';
}

const BLOCK_BYTES: Readonly<Record<QuantType, number>> = { q4_0: 18, q4_1: 20, q5_0: 22, q5_1: 24, q8_0: 34 };

/** Bytes of a rows × cols matrix in `dtype`. */
export function matrixBytes(dtype: MatrixDType, rows: number, cols: number): number {
  if (dtype === 'f32') return rows * cols * 4;
  if (dtype === 'f16' || dtype === 'bf16') return rows * cols * 2;
  if (dtype === 'int8') return rows * int8RowBytes(cols);
  if (!isBlockEncoding(dtype)) throw new RangeError(`${dtype} is not one of the conformance encodings`);
  return ((rows * cols) / 32) * BLOCK_BYTES[dtype];
}

/** A Matrix over `bytes` (which must be 4-byte aligned), with the f32/u16 views its dtype needs. */
export function matrixOver(name: string, dtype: MatrixDType, rows: number, cols: number, bytes: Uint8Array): Matrix {
  const n = rows * cols;
  return {
    name,
    dtype,
    rows,
    cols,
    bytes,
    f32: dtype === 'f32' ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : undefined,
    u16: dtype === 'f16' || dtype === 'bf16' ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : undefined,
  };
}

/**
 * A random rows × cols matrix stored in `dtype`, in host memory: values uniform in [−1, 1] with a few
 * tiny ones (f16 subnormals); block types quantized from values whose scale changes from block to block
 * (1e-3 … 4), so that scales and minimums of many sizes occur; int8 rows from an f32 matrix.
 */
export function randomMatrix(name: string, dtype: MatrixDType, rows: number, cols: number, rnd: SeededRandom): Matrix {
  const n = rows * cols;
  const values = rnd.values(n);
  for (let i = 0; i < n; i += 7) if (rnd.next() < 0.1) values[i] = values[i]! * 1e-5;
  const bytes = new Uint8Array(matrixBytes(dtype, rows, cols));
  if (dtype === 'f32') {
    new Float32Array(bytes.buffer).set(values);
  } else if (dtype === 'f16' || dtype === 'bf16') {
    encodeHalf(dtype, values, bytes);
  } else if (dtype === 'int8') {
    return toInt8Rows(matrixOver(name, 'f32', rows, cols, new Uint8Array(values.buffer)), (b) => {
      if (b !== bytes.byteLength) throw new Error('int8 size');
      return bytes;
    });
  } else {
    if (!isBlockEncoding(dtype)) throw new RangeError(`${dtype} is not one of the conformance encodings`);
    if (cols % 32 !== 0) throw new RangeError(`${dtype} needs cols a multiple of 32, got ${cols}`);
    for (let b = 0; b < n / 32; b++) {
      const scale = Math.exp(rnd.uniform(Math.log(1e-3), Math.log(4)));
      for (let j = 0; j < 32; j++) values[b * 32 + j] = values[b * 32 + j]! * scale;
    }
    quantizeInto(dtype, values, bytes);
  }
  return matrixOver(name, dtype, rows, cols, bytes);
}

/** A copy of `m` whose bytes come from `allocate` (a backend's own memory: the zero-copy placement). */
export function copyMatrix(m: Matrix, allocate: (byteLength: number) => Uint8Array): Matrix {
  const bytes = allocate(m.bytes.byteLength);
  bytes.set(m.bytes);
  return matrixOver(m.name, m.dtype, m.rows, m.cols, bytes);
}

// ── decoding, from the format definitions ───────────────────────────────────────────────────────────

/** IEEE binary16 bits → value. */
export function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f !== 0 ? NaN : sign * Infinity;
  return sign * (1024 + f) * 2 ** (e - 25);
}

/**
 * Every value of `m` (rows × cols, row-major), decoded per element:
 *   f32; f16; bf16 (the top half of an f32); per row of int8: f32 scale, 12 bytes of padding, i8 values;
 *   ggml blocks of 32 (value j < 16 in the low nibble of byte j, value j + 16 in its high nibble, bit j of
 *   the little-endian u32 qh the fifth bit of value j):
 *   q4_0 {d, qs[16]} (q − 8)·d   q4_1 {d, m, qs[16]} q·d + m   q5_0 {d, qh, qs[16]} (q − 16)·d
 *   q5_1 {d, m, qh, qs[16]} q·d + m   q8_0 {d, i8[32]} q·d;  each value rounded to f32 once, as ggml does.
 */
export function decodeMatrix(m: Matrix): Float64Array {
  const { rows, cols } = m;
  const out = new Float64Array(rows * cols);
  const dv = new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
  const f = Math.fround;
  switch (m.dtype) {
    case 'f32':
      for (let i = 0; i < rows * cols; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case 'f16':
      for (let i = 0; i < rows * cols; i++) out[i] = halfValue(dv.getUint16(2 * i, true));
      return out;
    case 'bf16': {
      const tmp = new DataView(new ArrayBuffer(4));
      for (let i = 0; i < rows * cols; i++) {
        tmp.setUint32(0, dv.getUint16(2 * i, true) * 65536, true);
        out[i] = tmp.getFloat32(0, true);
      }
      return out;
    }
    case 'int8': {
      const rb = int8RowBytes(cols);
      for (let r = 0; r < rows; r++) {
        const scale = dv.getFloat32(r * rb, true);
        for (let j = 0; j < cols; j++) out[r * cols + j] = f(dv.getInt8(r * rb + 16 + j) * scale);
      }
      return out;
    }
    default: {
      const dtype = m.dtype;
      if (!isBlockEncoding(dtype)) throw new RangeError(`${dtype} is not one of the conformance encodings`);
      const bb = BLOCK_BYTES[dtype];
      for (let blk = 0; blk < (rows * cols) / 32; blk++) {
        const o = blk * bb;
        const d = halfValue(dv.getUint16(o, true));
        for (let j = 0; j < 32; j++) {
          let v: number;
          if (dtype === 'q8_0') {
            v = dv.getInt8(o + 2 + j) * d;
          } else {
            const withMin = dtype === 'q4_1' || dtype === 'q5_1';
            const five = dtype === 'q5_0' || dtype === 'q5_1';
            const qsAt = o + 2 + (withMin ? 2 : 0) + (five ? 4 : 0);
            const byte = dv.getUint8(qsAt + (j % 16));
            let q = j < 16 ? byte & 15 : byte >> 4;
            if (five) q += ((dv.getUint32(o + (withMin ? 4 : 2), true) >>> j) & 1) * 16;
            if (withMin) v = q * d + halfValue(dv.getUint16(o + 2, true));
            else v = (q - (five ? 16 : 8)) * d;
          }
          out[blk * 32 + j] = f(v);
        }
      }
      return out;
    }
  }
}

// ── operations ──────────────────────────────────────────────────────────────────────────────────────

export type Fn = 'relu2' | 'sigmoid' | 'tanh' | 'silu' | 'exp';

export function unaryF64(f: Fn, x: number): number {
  switch (f) {
    case 'relu2':
      return x > 0 ? x * x : 0;
    case 'sigmoid':
      return 1 / (1 + Math.exp(-x));
    case 'tanh':
      return Math.tanh(x);
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'exp':
      return Math.exp(x);
  }
}

/** A result and, per value, the magnitude its rounding error scales with (Σ|terms|). */
export interface WithMagnitude {
  y: Float64Array;
  mag: Float64Array;
}

/** Y = X·Wᵀ (X: t × cols, W: rows × cols decoded) and Σ_j |w·x| per output. */
export function matmulF64(w: Float64Array, rows: number, cols: number, x: Float32Array, t: number): WithMagnitude {
  const y = new Float64Array(t * rows);
  const mag = new Float64Array(t * rows);
  for (let i = 0; i < t; i++) {
    for (let r = 0; r < rows; r++) {
      let s = 0;
      let a = 0;
      for (let j = 0; j < cols; j++) {
        const p = w[r * cols + j]! * x[i * cols + j]!;
        s += p;
        a += Math.abs(p);
      }
      y[i * rows + r] = s;
      mag[i * rows + r] = a;
    }
  }
  return { y, mag };
}

/**
 * GroupNorm per row (groups = 1: LayerNorm), biased variance; magnitude |w|·(|x − μ| + |μ|)/σ + |b| with
 * σ = sqrt(var + eps): rounding x − μ costs ε·|μ| before the division by σ.
 */
export function normF64(x: Float32Array, w: Float32Array, b: Float32Array, rows: number, c: number, groups: number, eps: number): WithMagnitude {
  const y = new Float64Array(rows * c);
  const mag = new Float64Array(rows * c);
  const g = c / groups;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < groups; k++) {
      const o = r * c + k * g;
      let mean = 0;
      for (let i = 0; i < g; i++) mean += x[o + i]!;
      mean /= g;
      let v = 0;
      for (let i = 0; i < g; i++) v += (x[o + i]! - mean) ** 2;
      const sd = Math.sqrt(v / g + eps);
      for (let i = 0; i < g; i++) {
        const ch = k * g + i;
        y[o + i] = ((x[o + i]! - mean) / sd) * w[ch]! + b[ch]!;
        mag[o + i] = (Math.abs(w[ch]!) * (Math.abs(x[o + i]! - mean) + Math.abs(mean))) / sd + Math.abs(b[ch]!);
      }
    }
  }
  return { y, mag };
}

/** Each head's N values divided by max(‖·‖₂, eps). */
export function l2NormF64(x: Float32Array, rows: number, heads: number, eps: number): Float64Array {
  const c = x.length / rows;
  const n = c / heads;
  const y = new Float64Array(x.length);
  for (let h = 0; h < rows * heads; h++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[h * n + i]! ** 2;
    const d = Math.max(Math.sqrt(s), eps);
    for (let i = 0; i < n; i++) y[h * n + i] = x[h * n + i]! / d;
  }
  return y;
}

/** Where a sequence's slot starts in a state tensor of `width` floats per row. */
const slotAt = (b: number, width: number, offset: number): number => b * width + offset;

export interface Wkv4F64 extends WithMagnitude {
  /** Per sequence and channel after the last token: wkv's numerator/denominator and ln(denominator). */
  ratio: Float64Array;
  logDen: Float64Array;
  /** Per sequence and channel: the largest |v| (and |aa/bb| of the initial state) it averaged. */
  maxV: Float64Array;
}

/**
 * RWKV-4's WKV written directly (not in the stable form): per channel,
 *   y_t = σ(r_t)·(num + e^(u+k_t)·v_t)/(den + e^(u+k_t)),  num ← e^w·num + e^(k_t)·v_t,  den ← e^w·den + e^(k_t),
 * starting from num = aa·e^pp, den = bb·e^pp (the stable state's meaning). float64 holds e^±60 and
 * e^(−1100·T) (as 0) without trouble. Magnitude of y: σ(r)·max|v| over the values it averages.
 */
export function wkv4F64(
  layout: RowLayout,
  state: Float32Array,
  width: number,
  offset: number,
  k: Float32Array,
  v: Float32Array,
  r: Float32Array,
  w: Float32Array,
  u: Float32Array,
): Wkv4F64 {
  const c = w.length;
  const y = new Float64Array(k.length);
  const mag = new Float64Array(k.length);
  const ratio = new Float64Array(layout.lengths.length * c);
  const logDen = new Float64Array(layout.lengths.length * c);
  const maxVs = new Float64Array(layout.lengths.length * c);
  layout.lengths.forEach((len, b) => {
    const at = slotAt(b, width, offset);
    for (let i = 0; i < c; i++) {
      const aa = state[at + i]!;
      const bb = state[at + c + i]!;
      const pp = state[at + 2 * c + i]!;
      let num = aa * Math.exp(pp);
      let den = bb * Math.exp(pp);
      let maxV = bb > 0 ? Math.abs(aa / bb) : 0;
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        const o = p * c + i;
        const e = Math.exp(u[i]! + k[o]!);
        maxV = Math.max(maxV, Math.abs(v[o]!));
        const sig = 1 / (1 + Math.exp(-r[o]!));
        y[o] = (sig * (num + e * v[o]!)) / (den + e);
        mag[o] = sig * maxV;
        const d = Math.exp(w[i]!);
        const ek = Math.exp(k[o]!);
        num = d * num + ek * v[o]!;
        den = d * den + ek;
      }
      ratio[b * c + i] = num / den;
      logDen[b * c + i] = Math.log(den);
      maxVs[b * c + i] = maxV;
    }
  });
  return { y, mag, ratio, logDen, maxV: maxVs };
}

export interface MatrixStateF64 extends WithMagnitude {
  /** The state tensor after the call (every row, the slot updated). */
  state: Float64Array;
  /** Per state value: the largest |S| its head held during the call (its rounding scale). */
  stateMag: Float64Array;
}

/**
 * The v5/v6 WKV, per head with S[i][j] (key i, value j):
 *   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij.
 * w: rows × C or 1 × C. Magnitude of y_j: Σ_i |r_i|·(|u_i·k_i·v_j| + max|S|).
 */
export function wkv5F64(
  layout: RowLayout,
  state0: Float32Array,
  width: number,
  offset: number,
  heads: number,
  r: Float32Array,
  k: Float32Array,
  v: Float32Array,
  w: Float32Array,
  u: Float32Array,
): MatrixStateF64 {
  const c = u.length;
  const n = c / heads;
  const state = Float64Array.from(state0);
  const stateMag = new Float64Array(state.length);
  const y = new Float64Array(r.length);
  const mag = new Float64Array(r.length);
  const wStep = w.length === c ? 0 : c;
  layout.lengths.forEach((len, b) => {
    for (let h = 0; h < heads; h++) {
      const s0 = slotAt(b, width, offset) + h * n * n;
      let maxS = 0;
      for (let q = 0; q < n * n; q++) maxS = Math.max(maxS, Math.abs(state[s0 + q]!));
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        const o = p * c + h * n;
        for (let j = 0; j < n; j++) {
          let s = 0;
          let a = 0;
          for (let i = 0; i < n; i++) {
            const kv = k[o + i]! * v[o + j]!;
            s += r[o + i]! * (u[h * n + i]! * kv + state[s0 + i * n + j]!);
            a += Math.abs(r[o + i]!) * (Math.abs(u[h * n + i]! * kv) + maxS);
          }
          y[o + j] = s;
          mag[o + j] = a;
        }
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            const q = s0 + i * n + j;
            state[q] = k[o + i]! * v[o + j]! + w[p * wStep + h * n + i]! * state[q]!;
            maxS = Math.max(maxS, Math.abs(state[q]!));
          }
        }
      }
      stateMag.fill(maxS, s0, s0 + n * n);
    }
  });
  return { y, mag, state, stateMag };
}

/**
 * The v7 WKV, per head with S[i][j] (value i, key j):
 *   sa_i = Σ_j S_ij·kk_j;  S_ij ← S_ij·w_j − sa_i·kk_j·a_j + v_i·k_j;  y_i = Σ_j S_ij·r_j (the new S).
 * Magnitude of y_i: max|S|·Σ_j |r_j|.
 */
export function wkv7F64(
  layout: RowLayout,
  state0: Float32Array,
  width: number,
  offset: number,
  heads: number,
  r: Float32Array,
  w: Float32Array,
  k: Float32Array,
  v: Float32Array,
  kk: Float32Array,
  a: Float32Array,
): MatrixStateF64 {
  const c = r.length / layout.rows;
  const n = c / heads;
  const state = Float64Array.from(state0);
  const stateMag = new Float64Array(state.length);
  const y = new Float64Array(r.length);
  const mag = new Float64Array(r.length);
  layout.lengths.forEach((len, b) => {
    for (let h = 0; h < heads; h++) {
      const s0 = slotAt(b, width, offset) + h * n * n;
      let maxS = 0;
      for (let q = 0; q < n * n; q++) maxS = Math.max(maxS, Math.abs(state[s0 + q]!));
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        const o = p * c + h * n;
        let sumR = 0;
        for (let j = 0; j < n; j++) sumR += Math.abs(r[o + j]!);
        for (let i = 0; i < n; i++) {
          const row = s0 + i * n;
          let sa = 0;
          for (let j = 0; j < n; j++) sa += state[row + j]! * kk[o + j]!;
          let acc = 0;
          for (let j = 0; j < n; j++) {
            const s = state[row + j]! * w[o + j]! - sa * kk[o + j]! * a[o + j]! + v[o + i]! * k[o + j]!;
            state[row + j] = s;
            maxS = Math.max(maxS, Math.abs(s));
            acc += s * r[o + j]!;
          }
          y[o + i] = acc;
        }
        for (let i = 0; i < n; i++) mag[o + i] = maxS * sumR;
      }
      stateMag.fill(maxS, s0, s0 + n * n);
    }
  });
  return { y, mag, state, stateMag };
}

/** v7's bonus: y_i + (Σ_{j ∈ head} r_j·k_j·rk_j)·v_i; magnitude |y_i| + Σ|r·k·rk|·|v_i|. */
export function bonusF64(heads: number, r: Float32Array, k: Float32Array, rk: Float32Array, v: Float32Array, y0: Float32Array): WithMagnitude {
  const c = rk.length;
  const n = c / heads;
  const y = new Float64Array(y0.length);
  const mag = new Float64Array(y0.length);
  for (let p = 0; p < y0.length / c; p++) {
    for (let h = 0; h < heads; h++) {
      const o = p * c + h * n;
      let dot = 0;
      let a = 0;
      for (let j = 0; j < n; j++) {
        const t = r[o + j]! * k[o + j]! * rk[h * n + j]!;
        dot += t;
        a += Math.abs(t);
      }
      for (let i = 0; i < n; i++) {
        y[o + i] = y0[o + i]! + dot * v[o + i]!;
        mag[o + i] = Math.abs(y0[o + i]!) + a * Math.abs(v[o + i]!);
      }
    }
  }
  return { y, mag };
}
