// ggml's quantized block formats, decoded exactly as ggml's reference dequantizers do: every value is
// an f16 scale times a small integer (plus an f16 minimum for the _1 types), rounded once to f32.
// Each block holds 32 values; the low nibbles of the 16 packed bytes are values 0..15, the high nibbles
// values 16..31, and Q5's 32-bit `qh` holds the fifth bit of value j at bit j.
// K-quants (256-value super-blocks) are decoded in kquants.ts and dispatched from here as well.
import type { DType } from '../tensor/dtype.js';
import { DTYPES, f16ToF32Table } from '../tensor/dtype.js';
import { K_DECODERS } from './kquants.js';

export const QK = 32;

const f16 = f16ToF32Table();
const fround = Math.fround;

function half(b: Uint8Array, o: number): number {
  return f16[b[o]! | (b[o + 1]! << 8)]!;
}

function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** Decodes the values of one block (DTYPES[dtype].blockSize: 32, or 256 for a K-quant) starting at byte `o` of `b` into `out[outOffset ..]`. */
export type BlockDecoder = (b: Uint8Array, o: number, out: Float32Array, outOffset: number) => void;

// block_q4_0 { f16 d; u8 qs[16] }: x = (q − 8)·d
const decodeQ4_0: BlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 2 + j]!;
    out[p + j] = ((q & 0x0f) - 8) * d;
    out[p + j + 16] = ((q >> 4) - 8) * d;
  }
};

// block_q4_1 { f16 d; f16 m; u8 qs[16] }: x = q·d + m
const decodeQ4_1: BlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  const m = half(b, o + 2);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 4 + j]!;
    out[p + j] = fround((q & 0x0f) * d + m);
    out[p + j + 16] = fround((q >> 4) * d + m);
  }
};

// block_q5_0 { f16 d; u32 qh; u8 qs[16] }: x = (q | high bit << 4 − 16)·d
const decodeQ5_0: BlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  const qh = u32(b, o + 2);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 6 + j]!;
    const h0 = ((qh >>> j) & 1) << 4;
    const h1 = ((qh >>> (j + 16)) & 1) << 4;
    out[p + j] = ((q & 0x0f) + h0 - 16) * d;
    out[p + j + 16] = ((q >> 4) + h1 - 16) * d;
  }
};

// block_q5_1 { f16 d; f16 m; u32 qh; u8 qs[16] }: x = (q | high bit << 4)·d + m
const decodeQ5_1: BlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  const m = half(b, o + 2);
  const qh = u32(b, o + 4);
  for (let j = 0; j < 16; j++) {
    const q = b[o + 8 + j]!;
    const h0 = ((qh >>> j) & 1) << 4;
    const h1 = ((qh >>> (j + 16)) & 1) << 4;
    out[p + j] = fround(((q & 0x0f) + h0) * d + m);
    out[p + j + 16] = fround(((q >> 4) + h1) * d + m);
  }
};

// block_q8_0 { f16 d; i8 qs[32] }: x = q·d
const decodeQ8_0: BlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  for (let j = 0; j < 32; j++) out[p + j] = ((b[o + 2 + j]! << 24) >> 24) * d;
};

const DECODERS: Partial<Record<DType, BlockDecoder>> = {
  q4_0: decodeQ4_0,
  q4_1: decodeQ4_1,
  q5_0: decodeQ5_0,
  q5_1: decodeQ5_1,
  q8_0: decodeQ8_0,
  ...K_DECODERS,
};

export function blockDecoder(dtype: DType): BlockDecoder {
  const d = DECODERS[dtype];
  if (d === undefined) throw new TypeError(`${dtype} is not a block-quantized type`);
  return d;
}

/** Decodes `count` values (a whole number of blocks) of a quantized buffer starting at block `firstBlock`. */
export function dequantize(
  dtype: DType,
  bytes: Uint8Array,
  firstBlock: number,
  count: number,
  out: Float32Array,
  outOffset = 0,
): void {
  const { blockSize: bs, blockBytes: bb } = DTYPES[dtype];
  if (count % bs !== 0) throw new RangeError(`dequantize: count ${count} is not a multiple of ${bs}`);
  const decode = blockDecoder(dtype);
  for (let i = 0; i < count / bs; i++) decode(bytes, (firstBlock + i) * bb, out, outOffset + i * bs);
}
