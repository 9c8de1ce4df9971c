// ggml's activation quantization, the plain TypeScript definition (the reference backend's, and the one
// the WebAssembly kernels of asm/kernels.ts are tested against bit for bit).
//
// ggml does not multiply quantized weights by exact activations: before each product it quantizes the
// activation vector per block — Q8_0 (32 values, i8 with an f16 scale) for Q4_0/Q5_0/Q8_0 weights, Q8_1
// (the same plus f16(d·Σq)) for Q4_1/Q5_1, Q8_K (256 values, f32 scale) for the K-quants — and each block
// product is an integer dot product times the scales. rwkv.cpp's and llama.cpp's logits of quantized files
// are computed that way, so matching them means doing the same. The rounding is x86's (AVX2 build): Q8_0/Q8_1
// round x·127/max|x| to nearest, ties to even, and store d = max|x|/127 as an f16 (F16C: ties to even).
import { decodeF16, DTYPES } from '../tensor/dtype.js';
import { isKQuant } from './kquants.js';
import type { Matrix, MatrixDType } from './matrix.js';

/** How a product rounds its activations first: ggml's block quantization, by weight type. */
export type ActivationGrid = 'q8_0' | 'q8_1' | 'q8_k';

/** The grid ggml uses for weights of `dtype` (undefined: activations stay f32). */
export function activationGridFor(dtype: MatrixDType): ActivationGrid | undefined {
  switch (dtype) {
    case 'q4_0':
    case 'q5_0':
    case 'q8_0':
      return 'q8_0';
    case 'q4_1':
    case 'q5_1':
      return 'q8_1';
    default:
      return isKQuant(dtype) ? 'q8_k' : undefined;
  }
}

const fround = Math.fround;

const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

/** The f32 value of the f16 nearest to the f32 value x (ties to even; subnormal halves; beyond 65504 → ±inf). */
export function roundF16(x: number): number {
  if (!Number.isFinite(x)) return x;
  if (Math.abs(x) < 2 ** -14) return nearestEven(x * 2 ** 24) * 2 ** -24;
  bitsF32[0] = x;
  const b = bitsU32[0]!;
  // Round the f32 mantissa to 10 bits, ties to even; a carry bumps the exponent.
  bitsU32[0] = ((b + 0xfff + ((b >>> 13) & 1)) & ~0x1fff) >>> 0;
  const r = bitsF32[0]!;
  return Math.abs(r) > 65504 ? Math.sign(x) * Infinity : r;
}

/** Round to the nearest integer, ties to even (x86's default rounding; Math.round rounds ties up). */
export function nearestEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** One vector quantized to Q8_0/Q8_1 blocks of 32: q (n), per block d = f16(max/127), s = f16(d·Σq), Σq. */
export interface Q8Blocks {
  readonly q: Int8Array;
  readonly d: Float32Array;
  readonly s: Float32Array;
  readonly sums: Int32Array;
}

/** ggml's x86 quantize_row_q8_0 / q8_1 of x[offset .. offset + n) (n a multiple of 32). A block with Inf or NaN gets NaN scales. */
export function quantizeQ8(x: Float32Array, offset: number, n: number): Q8Blocks {
  const blocks = n / 32;
  const out: Q8Blocks = { q: new Int8Array(n), d: new Float32Array(blocks), s: new Float32Array(blocks), sums: new Int32Array(blocks) };
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    let finite = true;
    for (let j = 0; j < 32; j++) {
      const v = x[offset + b * 32 + j]!;
      if (!Number.isFinite(v)) finite = false;
      max = Math.max(max, Math.abs(v));
    }
    const d = fround(max / 127);
    const id = finite && max !== 0 ? fround(127 / max) : 0;
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const q = finite ? nearestEven(fround(x[offset + b * 32 + j]! * id)) : 0;
      out.q[b * 32 + j] = q;
      sum += q;
    }
    out.d[b] = finite ? roundF16(d) : NaN;
    out.s[b] = finite ? roundF16(fround(d * sum)) : NaN;
    out.sums[b] = sum;
  }
  return out;
}

/**
 * x[offset .. offset + n) replaced (into out) by its ggml-quantized values: 'q8_0'/'q8_1', q·d of `quantizeQ8`;
 * 'q8_k', ggml's quantize_row_q8_K (blocks of 256: iscale = −127/x* for x* the first value of largest
 * magnitude, q = min(127, nearest(iscale·x)), d = 1/iscale in f32), as q·d.
 */
export function roundActivations(grid: ActivationGrid, x: Float32Array, offset: number, n: number, out: Float32Array, outOffset: number): void {
  if (grid !== 'q8_k') {
    const { q, d } = quantizeQ8(x, offset, n);
    for (let j = 0; j < n; j++) out[outOffset + j] = q[j]! * d[j >> 5]!;
    return;
  }
  for (let b = 0; b < n / 256; b++) {
    const o = offset + b * 256;
    let amax = 0;
    let max = 0;
    let nan = false;
    for (let j = 0; j < 256; j++) {
      const v = x[o + j]!;
      if (Number.isNaN(v)) nan = true;
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    if (amax === 0 || !Number.isFinite(amax) || nan) {
      out.fill(amax === 0 && !nan ? 0 : NaN, outOffset + b * 256, outOffset + b * 256 + 256);
      continue;
    }
    const iscale = fround(-127 / max);
    const d = fround(1 / iscale);
    for (let j = 0; j < 256; j++) out[outOffset + b * 256 + j] = fround(Math.min(127, nearestEven(fround(iscale * x[o + j]!))) * d);
  }
}

function half(b: Uint8Array, o: number): number {
  return decodeF16(b[o]! | (b[o + 1]! << 8));
}

/**
 * ggml's vec_dot of row r of a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 matrix with Q8 activations: Σ over blocks of
 * d_w·d_x·Σ q_w·q_x (+ m_w·s_x for the _1 types), the integer sums exact, the rest in float64.
 */
export function q8RowDot(m: Matrix, r: number, x: Q8Blocks): number {
  const { blockBytes: bb } = DTYPES[m.dtype as keyof typeof DTYPES];
  const blocks = m.cols / 32;
  const b = m.bytes;
  let sum = 0;
  for (let k = 0; k < blocks; k++) {
    const o = (r * blocks + k) * bb;
    const xq = k * 32;
    let isum = 0;
    let dw: number;
    let mw = 0;
    switch (m.dtype) {
      case 'q8_0':
        dw = half(b, o);
        for (let j = 0; j < 32; j++) isum += ((b[o + 2 + j]! << 24) >> 24) * x.q[xq + j]!;
        break;
      case 'q4_0':
      case 'q4_1': {
        const withMin = m.dtype === 'q4_1';
        dw = half(b, o);
        if (withMin) mw = half(b, o + 2);
        const qs = o + (withMin ? 4 : 2);
        const off = withMin ? 0 : 8;
        for (let j = 0; j < 16; j++) {
          isum += ((b[qs + j]! & 0x0f) - off) * x.q[xq + j]!;
          isum += ((b[qs + j]! >> 4) - off) * x.q[xq + j + 16]!;
        }
        break;
      }
      case 'q5_0':
      case 'q5_1': {
        const withMin = m.dtype === 'q5_1';
        dw = half(b, o);
        if (withMin) mw = half(b, o + 2);
        const ho = o + (withMin ? 4 : 2);
        const qh = (b[ho]! | (b[ho + 1]! << 8) | (b[ho + 2]! << 16) | (b[ho + 3]! << 24)) >>> 0;
        const off = withMin ? 0 : 16;
        for (let j = 0; j < 16; j++) {
          const q = b[ho + 4 + j]!;
          isum += ((q & 0x0f) + (((qh >>> j) & 1) << 4) - off) * x.q[xq + j]!;
          isum += ((q >> 4) + (((qh >>> (j + 16)) & 1) << 4) - off) * x.q[xq + j + 16]!;
        }
        break;
      }
      default:
        throw new TypeError(`${m.dtype} has no Q8 activation product`);
    }
    sum += dw * x.d[k]! * isum;
    if (m.dtype === 'q4_1' || m.dtype === 'q5_1') sum += mw * x.s[k]!;
  }
  return sum;
}
