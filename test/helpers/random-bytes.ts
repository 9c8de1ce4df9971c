// Random weights in every stored encoding, for the kernel and backend tests.
import type { Rng } from '../../src/util/rng.js';
import { QK } from '../../src/kernels/quant.js';
import { DTYPES, type DType } from '../../src/tensor/dtype.js';

/** Random stored bytes that decode to finite values: random f32/f16/bf16 values, random ggml blocks. */
export function randomBytes(dtype: DType, rows: number, cols: number, rng: Rng): Uint8Array {
  const info = DTYPES[dtype];
  const bytes = new Uint8Array(((rows * cols) / info.blockSize) * info.blockBytes);
  const view = new DataView(bytes.buffer);
  if (dtype === 'f32') {
    for (let i = 0; i < rows * cols; i++) view.setFloat32(4 * i, rng.next() * 2 - 1, true);
  } else if (dtype === 'f16' || dtype === 'bf16') {
    for (let i = 0; i < rows * cols; i++) {
      const f = new Float32Array([rng.next() * 2 - 1]);
      const bits = new Uint32Array(f.buffer)[0]!;
      // bf16: the top half of an f32; f16: a random finite half (exponent < 31), any sign.
      const h = dtype === 'bf16' ? bits >>> 16 : ((rng.nextU32() & 0x8000) | (rng.nextU32() % (30 << 10))) & 0xffff;
      view.setUint16(2 * i, h, true);
    }
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = rng.nextU32() & 0xff;
    // Scales (and minimums) as small finite halves: exponent field 1..16.
    for (let b = 0; b < (rows * cols) / QK; b++) {
      const o = b * info.blockBytes;
      const half = (): number => ((rng.nextU32() & 0x8000) | ((1 + (rng.nextU32() % 16)) << 10) | (rng.nextU32() & 0x3ff)) & 0xffff;
      view.setUint16(o, half(), true);
      if (dtype === 'q4_1' || dtype === 'q5_1') view.setUint16(o + 2, half(), true);
    }
  }
  return bytes;
}

