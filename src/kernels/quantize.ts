// Encoders from f32 values: IEEE half and bfloat16 (round to nearest even, as F16C's vcvtps2ph and
// torch's .half()/.bfloat16() do), and ggml's block quantizers with the exact arithmetic of its
// reference `quantize_row_q*_reference`: every step is an f32 operation (hence the Math.fround after
// each), scales are found from the block's f32 values, the f32 scale's reciprocal is used for every value,
// and only the stored scale is rounded to f16. Block layouts are the decoders' in quant.ts.
import { ArgumentError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { DTYPES } from '../tensor/dtype.js';

const fround = Math.fround;
const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** f32 → IEEE binary16 bits, round to nearest even (overflow to ±Inf; NaN stays NaN). */
export function f32ToF16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is correct
  return sign | h;
}

/** f32 → bfloat16 bits, round to nearest even (NaN → quiet NaN). */
export function f32ToBF16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encodes f32 values as f16 or bf16 into `out` (little-endian bytes, 2 per value). */
export function encodeHalf(dtype: 'f16' | 'bf16', src: Float32Array, out: Uint8Array): void {
  const enc = dtype === 'f16' ? f32ToF16Bits : f32ToBF16Bits;
  for (let i = 0; i < src.length; i++) {
    const h = enc(src[i]!);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
}

export type QuantType = 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q8_0';

export const QUANT_TYPES: readonly QuantType[] = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'];

export function isQuantType(d: string): d is QuantType {
  return (QUANT_TYPES as readonly string[]).includes(d);
}

function putHalf(out: Uint8Array, o: number, v: number): void {
  const h = f32ToF16Bits(v);
  out[o] = h & 0xff;
  out[o + 1] = h >>> 8;
}

function putU32(out: Uint8Array, o: number, v: number): void {
  out[o] = v & 0xff;
  out[o + 1] = (v >>> 8) & 0xff;
  out[o + 2] = (v >>> 16) & 0xff;
  out[o + 3] = (v >>> 24) & 0xff;
}

/** C's (int8_t) cast of a float in range: truncation toward zero. */
const trunc = Math.trunc;

// Symmetric types (q4_0, q5_0): the scale is the value of largest magnitude (with its sign) over −2^(bits−1).
function absMaxSigned(x: Float32Array, o: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[o + j]!;
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function minMax(x: Float32Array, o: number): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (let j = 0; j < 32; j++) {
    const v = x[o + j]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  // ggml starts from ±FLT_MAX; identical for finite input.
  return [min, max];
}

// block_q4_0 { f16 d; u8 qs[16] }
function q4_0(x: Float32Array, o: number, out: Uint8Array, b: number): void {
  const max = absMaxSigned(x, o);
  const d = fround(max / -8);
  const id = d !== 0 ? fround(1 / d) : 0;
  putHalf(out, b, d);
  for (let j = 0; j < 16; j++) {
    const x0 = fround(x[o + j]! * id);
    const x1 = fround(x[o + 16 + j]! * id);
    const xi0 = Math.min(15, trunc(fround(x0 + 8.5)));
    const xi1 = Math.min(15, trunc(fround(x1 + 8.5)));
    out[b + 2 + j] = xi0 | (xi1 << 4);
  }
}

// block_q4_1 { f16 d; f16 m; u8 qs[16] }
function q4_1(x: Float32Array, o: number, out: Uint8Array, b: number): void {
  const [min, max] = minMax(x, o);
  const d = fround(fround(max - min) / 15);
  const id = d !== 0 ? fround(1 / d) : 0;
  putHalf(out, b, d);
  putHalf(out, b + 2, min);
  for (let j = 0; j < 16; j++) {
    const x0 = fround(fround(x[o + j]! - min) * id);
    const x1 = fround(fround(x[o + 16 + j]! - min) * id);
    const xi0 = Math.min(15, trunc(fround(x0 + 0.5)));
    const xi1 = Math.min(15, trunc(fround(x1 + 0.5)));
    out[b + 4 + j] = xi0 | (xi1 << 4);
  }
}

// block_q5_0 { f16 d; u32 qh; u8 qs[16] }: bit 4 of value j goes to bit j of qh
function q5_0(x: Float32Array, o: number, out: Uint8Array, b: number): void {
  const max = absMaxSigned(x, o);
  const d = fround(max / -16);
  const id = d !== 0 ? fround(1 / d) : 0;
  putHalf(out, b, d);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const x0 = fround(x[o + j]! * id);
    const x1 = fround(x[o + 16 + j]! * id);
    const xi0 = Math.min(31, trunc(fround(x0 + 16.5)));
    const xi1 = Math.min(31, trunc(fround(x1 + 16.5)));
    out[b + 6 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
    qh |= ((xi0 & 0x10) >>> 4) << j;
    qh |= ((xi1 & 0x10) >>> 4) << (j + 16);
  }
  putU32(out, b + 2, qh >>> 0);
}

// block_q5_1 { f16 d; f16 m; u32 qh; u8 qs[16] }
function q5_1(x: Float32Array, o: number, out: Uint8Array, b: number): void {
  const [min, max] = minMax(x, o);
  const d = fround(fround(max - min) / 31);
  const id = d !== 0 ? fround(1 / d) : 0;
  putHalf(out, b, d);
  putHalf(out, b + 2, min);
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const x0 = fround(fround(x[o + j]! - min) * id);
    const x1 = fround(fround(x[o + 16 + j]! - min) * id);
    const xi0 = trunc(fround(x0 + 0.5));
    const xi1 = trunc(fround(x1 + 0.5));
    out[b + 8 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
    qh |= ((xi0 & 0x10) >>> 4) << j;
    qh |= ((xi1 & 0x10) >>> 4) << (j + 16);
  }
  putU32(out, b + 4, qh >>> 0);
}

// block_q8_0 { f16 d; i8 qs[32] }: q = roundf(x / d), halves away from zero
function q8_0(x: Float32Array, o: number, out: Uint8Array, b: number): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]!));
  const d = fround(amax / 127);
  const id = d !== 0 ? fround(1 / d) : 0;
  putHalf(out, b, d);
  for (let j = 0; j < 32; j++) {
    const v = fround(x[o + j]! * id);
    const q = v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
    out[b + 2 + j] = q & 0xff;
  }
}

const QUANTIZERS: Record<QuantType, (x: Float32Array, o: number, out: Uint8Array, b: number) => void> = {
  q4_0,
  q4_1,
  q5_0,
  q5_1,
  q8_0,
};

/** Quantizes `src` (a multiple of 32 values) into `out` (count/32 blocks). */
export function quantizeInto(dtype: QuantType, src: Float32Array, out: Uint8Array): void {
  if (src.length % 32 !== 0) throw new RangeError(`quantize: ${src.length} values is not a multiple of 32`);
  const q = QUANTIZERS[dtype];
  const bb = DTYPES[dtype].blockBytes;
  if (out.byteLength < (src.length / 32) * bb) throw new RangeError('quantize: output too small');
  for (let i = 0; i < src.length / 32; i++) q(src, 32 * i, out, i * bb);
}

export function quantize(dtype: QuantType, src: Float32Array): Uint8Array {
  const out = new Uint8Array((src.length / 32) * DTYPES[dtype].blockBytes);
  quantizeInto(dtype, src, out);
  return out;
}

/** Whether `d` is a 32-value block type encoded here; a K-quant (encoded by kquantize.ts, not here) is refused with an error saying so. */
export function isBlockType(d: DType): d is QuantType {
  if (DTYPES[d].quantized && !isQuantType(d)) {
    throw new ArgumentError(`values cannot be encoded as ${d.toUpperCase()} here (K-quants are encoded by kquantize.ts); use one of ${QUANT_TYPES.join(', ')}`);
  }
  return DTYPES[d].quantized;
}
