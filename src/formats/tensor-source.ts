import type { Tensor } from '../tensor/tensor.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

/** Allocates the final home of a tensor's bytes (plain memory today; a WebAssembly.Memory later). */
export type TensorAllocator = (byteLength: number) => Uint8Array;

export const defaultAllocator: TensorAllocator = (byteLength) => new Uint8Array(byteLength);

export type ParameterEncoding = 'official' | 'rwkvcpp';

/** What every format reader returns: named tensors, plus what the container says about the model. */
export interface TensorSource {
  /** The container format, e.g. 'rwkv.cpp'. */
  readonly format: string;
  /** Where the tensors came from: the path, the URL, or the name of a buffer or Blob (ByteSource.name). */
  readonly file: string;
  readonly tensors: ReadonlyMap<string, Tensor>;
  /**
   * How parameters are stored: 'official' as RWKV-LM / ChatRWKV save them (raw time_decay, separate v7
   * x_r..x_g, LoRA factors as trained), or 'rwkvcpp' pre-transformed as rwkv.cpp writes them.
   */
  readonly encoding: ParameterEncoding;
  /** Hyper-parameters the container states outright (rwkv.cpp's header), to be checked against shapes. */
  readonly declared: { readonly nVocab?: number; readonly nEmbd?: number; readonly nLayer?: number };
  /** The tokenizer the container itself carries (GGUF's tokenizer.ggml.*), if any. */
  readonly tokenizer?: Tokenizer;
}
