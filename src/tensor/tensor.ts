import type { DType } from './dtype.js';

/**
 * A named tensor as stored: raw little-endian bytes in their own (8-byte aligned) buffer, never decoded
 * into JS numbers. `shape` is in PyTorch order, outermost first: a weight matrix is [out, in], and its
 * rows (length `in`) are contiguous.
 */
export interface Tensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A view of an f32 tensor's values (no copy). */
export function f32View(t: Tensor): Float32Array {
  if (t.dtype !== 'f32') throw new TypeError(`tensor '${t.name}' is ${t.dtype}, not f32`);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}

/** A view of a 16-bit tensor's raw values (no copy). */
export function u16View(t: Tensor): Uint16Array {
  return new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2);
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
