// Weight matrices as the kernels see them, and the reference (plain TypeScript) matrix-vector product.
// A Matrix keeps its file's encoding: f32, f16/bf16 bits, or ggml blocks; decoding happens inside the
// product, one row or one block at a time, never into a full f32 copy.
import type { DType } from '../tensor/dtype.js';
import { DTYPES, f16ToF32Table } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { reluSquared, sigmoid } from './activations.js';
import { blockDecoder } from './quant.js';
import { q8RowDot, quantizeQ8, roundActivations, type ActivationGrid } from './activation-quant.js';

/** A function applied to each result of a product: relu(y)², σ(y) or tanh(y). */
export type ResultFunction = 'relu2' | 'sigmoid' | 'tanh';

/** One product y = m·x of a batch (see `matvecs`), optionally followed by `then` on each result. */
export interface MatvecJob {
  readonly m: Matrix;
  readonly x: Float32Array;
  readonly y: Float32Array;
  readonly then?: ResultFunction;
}

/** `then` of a MatvecJob, in TypeScript (the reference and fallback). */
export function applyResultFunction(fn: ResultFunction, y: Float32Array): void {
  const f = fn === 'relu2' ? reluSquared : fn === 'sigmoid' ? sigmoid : Math.tanh;
  for (let i = 0; i < y.length; i++) y[i] = f(y[i]!);
}

/**
 * How a matrix's values are stored: a file dtype, or 'int8' — rows quantized at load time (opt-in, lossy):
 * per row, an f32 scale padded to 16 bytes, then the i8 values padded with zeros to a multiple of 16.
 */
export type MatrixDType = DType | 'int8';

/** Bytes of one int8 row of `cols` values. */
export function int8RowBytes(cols: number): number {
  return 16 + Math.ceil(cols / 16) * 16;
}

export interface Matrix {
  readonly name: string;
  readonly dtype: MatrixDType;
  /** Output size (PyTorch dim 0). */
  readonly rows: number;
  /** Input size (PyTorch dim 1); each row is contiguous. */
  readonly cols: number;
  /** Raw bytes, rows × (cols in `dtype`). */
  readonly bytes: Uint8Array;
  /** Set for f32. */
  readonly f32: Float32Array | undefined;
  /** Set for f16 and bf16 (raw bits). */
  readonly u16: Uint16Array | undefined;
  /**
   * Set by a backend that multiplies as ggml does (activation-quant.ts): the activations of every product
   * with this matrix are quantized to this grid first. Unset: exact f32 activations.
   */
  readonly activations?: ActivationGrid | undefined;
}

export function matrixFromTensor(t: Tensor, rows: number, cols: number): Matrix {
  const aligned2 = t.data.byteOffset % 2 === 0;
  const aligned4 = t.data.byteOffset % 4 === 0;
  const f32 = t.dtype === 'f32' && aligned4 ? new Float32Array(t.data.buffer, t.data.byteOffset, rows * cols) : undefined;
  const u16 =
    (t.dtype === 'f16' || t.dtype === 'bf16') && aligned2
      ? new Uint16Array(t.data.buffer, t.data.byteOffset, rows * cols)
      : undefined;
  if ((t.dtype === 'f32' && f32 === undefined) || ((t.dtype === 'f16' || t.dtype === 'bf16') && u16 === undefined)) {
    throw new TypeError(`tensor '${t.name}' is not aligned for ${t.dtype}`);
  }
  return { name: t.name, dtype: t.dtype, rows, cols, bytes: t.data, f32, u16 };
}

/**
 * The opt-in int8 mode: `m` re-encoded as int8 rows (scale = max|row| / 127, values rounded to nearest),
 * in memory from `allocate`. Lossy: about 0.4% of each row's largest weight.
 */
export function toInt8Rows(m: Matrix, allocate: (bytes: number) => Uint8Array): Matrix {
  const rb = int8RowBytes(m.cols);
  const bytes = allocate(m.rows * rb);
  const row = new Float32Array(m.cols);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let r = 0; r < m.rows; r++) {
    readRow(m, r, row);
    let max = 0;
    for (let j = 0; j < m.cols; j++) max = Math.max(max, Math.abs(row[j]!));
    const scale = max > 0 ? Math.fround(max / 127) : 1;
    view.setFloat32(r * rb, scale, true);
    const q = new Int8Array(bytes.buffer, bytes.byteOffset + r * rb + 16, rb - 16);
    q.fill(0);
    for (let j = 0; j < m.cols; j++) q[j] = Math.max(-127, Math.min(127, Math.round(row[j]! / scale)));
  }
  return { name: m.name, dtype: 'int8', rows: m.rows, cols: m.cols, bytes, f32: undefined, u16: undefined };
}

const f16 = f16ToF32Table();
const bf16Bits = new Uint32Array(1);
const bf16Value = new Float32Array(bf16Bits.buffer);

/** Row `r` of `m` as f32 values into `out` (length cols). */
export function readRow(m: Matrix, r: number, out: Float32Array): void {
  const n = m.cols;
  switch (m.dtype) {
    case 'f32':
      out.set(m.f32!.subarray(r * n, r * n + n));
      return;
    case 'f16': {
      const w = m.u16!;
      for (let j = 0; j < n; j++) out[j] = f16[w[r * n + j]!]!;
      return;
    }
    case 'bf16': {
      const w = m.u16!;
      for (let j = 0; j < n; j++) {
        bf16Bits[0] = w[r * n + j]! << 16;
        out[j] = bf16Value[0]!;
      }
      return;
    }
    case 'int8': {
      const rb = int8RowBytes(n);
      const o = m.bytes.byteOffset + r * rb;
      const scale = new DataView(m.bytes.buffer, o, 4).getFloat32(0, true);
      const q = new Int8Array(m.bytes.buffer, o + 16, n);
      for (let j = 0; j < n; j++) out[j] = q[j]! * scale;
      return;
    }
    default: {
      const decode = blockDecoder(m.dtype);
      const { blockSize: bs, blockBytes: bb } = DTYPES[m.dtype];
      const base = (r * n) / bs;
      for (let b = 0; b < n / bs; b++) decode(m.bytes, (base + b) * bb, out, b * bs);
    }
  }
}

const blockScratch = new Float32Array(256); // the largest block (a K-quant super-block)

/** y = W·x, the plain TypeScript matrix-vector product: W is rows × cols, y gets rows values (float64 sums). */
export function referenceMatvec(m: Matrix, x: Float32Array, y: Float32Array): void {
  const rows = m.rows;
  const n = m.cols;
  if (m.activations === 'q8_0' || m.activations === 'q8_1') {
    const xq = quantizeQ8(x, 0, n);
    for (let r = 0; r < rows; r++) y[r] = q8RowDot(m, r, xq);
    return;
  }
  if (m.activations === 'q8_k') {
    const rounded = new Float32Array(n);
    roundActivations('q8_k', x, 0, n, rounded, 0);
    return referenceMatvec({ ...m, activations: undefined }, rounded, y);
  }
  switch (m.dtype) {
    case 'f32': {
      const w = m.f32!;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        const o = r * n;
        for (let j = 0; j < n; j++) s += w[o + j]! * x[j]!;
        y[r] = s;
      }
      return;
    }
    case 'f16': {
      const w = m.u16!;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        const o = r * n;
        for (let j = 0; j < n; j++) s += f16[w[o + j]!]! * x[j]!;
        y[r] = s;
      }
      return;
    }
    case 'bf16': {
      const w = m.u16!;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        const o = r * n;
        for (let j = 0; j < n; j++) {
          bf16Bits[0] = w[o + j]! << 16;
          s += bf16Value[0]! * x[j]!;
        }
        y[r] = s;
      }
      return;
    }
    case 'int8': {
      const row = new Float32Array(n);
      for (let r = 0; r < rows; r++) {
        readRow(m, r, row);
        let s = 0;
        for (let j = 0; j < n; j++) s += row[j]! * x[j]!;
        y[r] = s;
      }
      return;
    }
    default: {
      const decode = blockDecoder(m.dtype);
      const { blockSize: bs, blockBytes: bb } = DTYPES[m.dtype];
      const blocksPerRow = n / bs;
      const q = blockScratch;
      for (let r = 0; r < rows; r++) {
        let s = 0;
        for (let b = 0; b < blocksPerRow; b++) {
          decode(m.bytes, (r * blocksPerRow + b) * bb, q, 0);
          const xo = b * bs;
          for (let j = 0; j < bs; j++) s += q[j]! * x[xo + j]!;
        }
        y[r] = s;
      }
    }
  }
}

let rowScratch = new Float32Array(0);

/**
 * Y = X·Wᵀ for `t` input rows (X: t × cols, Y: t × rows), the plain TypeScript matrix-matrix product:
 * float64 sums, each weight row decoded once and dotted with four input rows per load.
 */
export function referenceMatmul(m: Matrix, x: Float32Array, t: number, y: Float32Array): void {
  const rows = m.rows;
  const n = m.cols;
  if (m.activations !== undefined) {
    // Row by row, each quantized as ggml quantizes it (the reference is for checking, not speed).
    const yr = new Float32Array(rows);
    for (let i = 0; i < t; i++) {
      referenceMatvec(m, x.subarray(i * n, (i + 1) * n), yr);
      y.set(yr, i * rows);
    }
    return;
  }
  let w: Float32Array;
  let wBase = 0; // offset of row r in w
  if (m.dtype === 'f32') {
    w = m.f32!;
  } else {
    if (rowScratch.length < n) rowScratch = new Float32Array(n);
    w = rowScratch;
  }
  for (let r = 0; r < rows; r++) {
    if (m.dtype === 'f32') wBase = r * n;
    else readRow(m, r, w);
    // Four input rows at a time share each weight load.
    let i = 0;
    for (; i + 4 <= t; i += 4) {
      const x0 = i * n;
      const x1 = x0 + n;
      const x2 = x1 + n;
      const x3 = x2 + n;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < n; j++) {
        const wj = w[wBase + j]!;
        s0 += wj * x[x0 + j]!;
        s1 += wj * x[x1 + j]!;
        s2 += wj * x[x2 + j]!;
        s3 += wj * x[x3 + j]!;
      }
      y[i * rows + r] = s0;
      y[(i + 1) * rows + r] = s1;
      y[(i + 2) * rows + r] = s2;
      y[(i + 3) * rows + r] = s3;
    }
    for (; i < t; i++) {
      let s = 0;
      const xo = i * n;
      for (let j = 0; j < n; j++) s += w[wBase + j]! * x[xo + j]!;
      y[i * rows + r] = s;
    }
  }
}

/** A Matrix over values already in an f32 array (small matrices decoded at load, e.g. LoRA factors). */
export function f32Matrix(name: string, values: Float32Array, rows: number, cols: number): Matrix {
  if (values.length !== rows * cols) throw new RangeError(`${name}: ${values.length} values for ${rows} × ${cols}`);
  return {
    name,
    dtype: 'f32',
    rows,
    cols,
    bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
    f32: values,
    u16: undefined,
  };
}
