import type { Tensor } from '../tensor/tensor.js';

/** Allocates the final home of a tensor's bytes (plain memory today; a WebAssembly.Memory later). */
export type TensorAllocator = (byteLength: number) => Uint8Array;

export const defaultAllocator: TensorAllocator = (byteLength) => new Uint8Array(byteLength);

/** What every format reader returns: named tensors, plus what the container says about the model. */
export interface TensorSource {
  /** The container format, e.g. 'rwkv.cpp'. */
  readonly format: string;
  /** The file the tensors came from. */
  readonly file: string;
  readonly tensors: ReadonlyMap<string, Tensor>;
  /** Hyper-parameters the container states outright (rwkv.cpp's header), to be checked against shapes. */
  readonly declared: { readonly nVocab?: number; readonly nEmbd?: number; readonly nLayer?: number };
}
