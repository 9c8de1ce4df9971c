// Tensor values in another element type, one tensor at a time: decoding any stored dtype to f32 (exact:
// f16, bf16 and ggml blocks all widen losslessly) and encoding f32 as f16, bf16 or a ggml block type.
import { dequantize } from '../kernels/quant.js';
import { kQuantizeInto } from '../kernels/kquantize.js';
import { isKQuant } from '../kernels/kquants.js';
import { encodeHalf, isBlockType, quantizeInto } from '../kernels/quantize.js';
import { byteSize, decodeBF16, DTYPES, f16ToF32Table, type DType } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import type { OutTensor } from './writer.js';

/** A tensor's values as a fresh f32 array (a copy, even for f32). */
export function decodeF32(t: Pick<Tensor, 'dtype' | 'shape' | 'data'>): Float32Array {
  const n = elementCount(t.shape);
  const out = new Float32Array(n);
  const b = t.data;
  switch (t.dtype) {
    case 'f32':
      out.set(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + 4 * n)));
      return out;
    case 'f16': {
      const table = f16ToF32Table();
      for (let i = 0; i < n; i++) out[i] = table[b[2 * i]! | (b[2 * i + 1]! << 8)]!;
      return out;
    }
    case 'bf16':
      for (let i = 0; i < n; i++) out[i] = decodeBF16(b[2 * i]! | (b[2 * i + 1]! << 8));
      return out;
    default:
      dequantize(t.dtype, b, 0, n, out);
      return out;
  }
}

/** f32 values as the bytes of `dtype`. */
export function encodeF32(values: Float32Array, dtype: DType): Uint8Array {
  const n = values.length;
  if (dtype === 'f32') return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + 4 * n));
  const bytes = byteSize(dtype, n);
  if (bytes === undefined) throw new RangeError(`${n} values are not a whole number of ${dtype} blocks`);
  const out = new Uint8Array(bytes);
  if (dtype === 'f16' || dtype === 'bf16') encodeHalf(dtype, values, out);
  else if (isKQuant(dtype)) kQuantizeInto(dtype, values, out);
  else if (isBlockType(dtype)) quantizeInto(dtype, values, out);
  return out;
}

/** A new f32 tensor from values. */
export function f32Tensor(name: string, shape: readonly number[], values: Float32Array): Tensor {
  return { name, dtype: 'f32', shape, data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/**
 * `t` to be written as `dtype`: its bytes as they are when the dtype is unchanged, else converted when
 * written (so that only one converted tensor exists at a time).
 */
export function convertedOut(t: Tensor, dtype: DType, name = t.name, shape: readonly number[] = t.shape): OutTensor {
  const n = elementCount(t.shape);
  if (dtype === t.dtype) return { name, dtype, shape, byteLength: t.data.byteLength, bytes: () => t.data };
  const byteLength = byteSize(dtype, n);
  if (byteLength === undefined) throw new RangeError(`tensor '${t.name}': ${n} values are not a whole number of ${dtype} blocks`);
  return { name, dtype, shape, byteLength, bytes: () => encodeF32(decodeF32(t), dtype) };
}

/** Whether a row of `t` (its innermost dimension) splits into whole blocks of `dtype`. */
export function rowsFitBlocks(shape: readonly number[], dtype: DType): boolean {
  return shape.length > 0 && shape[shape.length - 1]! % DTYPES[dtype].blockSize === 0;
}
