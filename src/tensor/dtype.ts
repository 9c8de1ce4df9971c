// Element types of stored tensors. Block types are ggml's: `blockSize` values share one block of
// `blockBytes` bytes (a scale, maybe a minimum, and packed integers).

export type DType = 'f32' | 'f16' | 'bf16' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q8_0' | KQuantDType;

/** ggml's K-quants: super-blocks of 256 values (read and run; not written). */
export type KQuantDType = 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k';

export interface DTypeInfo {
  /** Elements per block (1 for plain floats). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  readonly quantized: boolean;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  f32: { blockSize: 1, blockBytes: 4, quantized: false },
  f16: { blockSize: 1, blockBytes: 2, quantized: false },
  bf16: { blockSize: 1, blockBytes: 2, quantized: false },
  // ggml block layouts (32 values a block):
  q4_0: { blockSize: 32, blockBytes: 18, quantized: true }, // f16 d, 16 B nibbles
  q4_1: { blockSize: 32, blockBytes: 20, quantized: true }, // f16 d, f16 m, 16 B nibbles
  q5_0: { blockSize: 32, blockBytes: 22, quantized: true }, // f16 d, u32 high bits, 16 B nibbles
  q5_1: { blockSize: 32, blockBytes: 24, quantized: true }, // f16 d, f16 m, u32 high bits, 16 B nibbles
  q8_0: { blockSize: 32, blockBytes: 34, quantized: true }, // f16 d, 32 int8
  // K-quants, 256 values a super-block (byte layouts in src/kernels/kquants.ts):
  q2_k: { blockSize: 256, blockBytes: 84, quantized: true }, // 16 B scales/mins, 64 B 2-bit quants, f16 d, f16 dmin
  q3_k: { blockSize: 256, blockBytes: 110, quantized: true }, // 32 B high bits, 64 B 2-bit quants, 12 B scales, f16 d
  q4_k: { blockSize: 256, blockBytes: 144, quantized: true }, // f16 d, f16 dmin, 12 B scales/mins, 128 B nibbles
  q5_k: { blockSize: 256, blockBytes: 176, quantized: true }, // f16 d, f16 dmin, 12 B scales/mins, 32 B high bits, 128 B nibbles
  q6_k: { blockSize: 256, blockBytes: 210, quantized: true }, // 128 B low nibbles, 64 B high 2 bits, 16 i8 scales, f16 d
};

/** Bytes taken by `count` elements of `dtype`, or undefined when `count` is not a whole number of blocks. */
export function byteSize(dtype: DType, count: number): number | undefined {
  const info = DTYPES[dtype];
  if (count % info.blockSize !== 0) return undefined;
  return (count / info.blockSize) * info.blockBytes;
}

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values as f32, so that decoding an f16 is one table load. */
export function f16ToF32Table(): Float32Array {
  if (f16Table === undefined) {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = decodeF16(h);
    f16Table = table;
  }
  return f16Table;
}

/** IEEE 754 binary16 bits → number (exact). */
export function decodeF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal or zero
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const bf16Scratch = new Uint32Array(1);
const bf16ScratchF = new Float32Array(bf16Scratch.buffer);

/** bfloat16 bits → number (exact: bf16 is the top half of an f32). */
export function decodeBF16(h: number): number {
  bf16Scratch[0] = h << 16;
  return bf16ScratchF[0]!;
}
