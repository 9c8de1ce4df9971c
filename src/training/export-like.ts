// A fine-tuned model saved as its --init file was: the same container format and the same storage of the
// big matrices (f16, bf16, f32, or the ggml block type of a quantized rwkv.cpp / GGUF file), so that the
// result drops into whatever read the original (ChatRWKV reads .pth, rwkv.cpp its .bin, llama.cpp GGUF).
// Training itself runs in f32 and keeps its f32 model.safetensors for resuming and for exact inference;
// this file is the one to ship. A GGUF output carries the --init file's own tokenizer.
import * as path from 'node:path';
import { writeCheckpoint, type FloatType, type OutputFormat, type WriteOptions } from '../formats/convert.js';
import { openCheckpoint } from '../formats/open.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { isKQuant } from '../kernels/kquants.js';
import { QUANT_TYPES, type QuantType } from '../kernels/quantize.js';
import { f32Tensor } from '../formats/values.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Param } from './graph.js';

/** How the --init file stores its weights: its container and the type of its largest matrix. */
export interface StorageOf {
  format: OutputFormat;
  /** The file extension written: the --init file's own. */
  extension: string;
  dtype: FloatType | undefined;
  quantize: QuantType | undefined;
  /** Said when the storage cannot be matched (K-quants are written as f16). */
  note: string | undefined;
  tokenizer: TensorSource['tokenizer'];
}

export async function storageOf(file: string): Promise<StorageOf> {
  const source = await openCheckpoint(file);
  let largest: { n: number; dtype: string } = { n: 0, dtype: 'f32' };
  for (const [name, t] of source.tensors) {
    if (name === 'emb.weight' || name === 'head.weight' || t.shape.length !== 2) continue;
    const n = t.shape[0]! * t.shape[1]!;
    if (n > largest.n) largest = { n, dtype: t.dtype };
  }
  const format: OutputFormat = source.format === 'rwkv.cpp' ? 'rwkv.cpp' : source.format === 'gguf' ? 'gguf' : source.format === 'pth' ? 'pth' : 'safetensors';
  const d = largest.dtype;
  const quant = (QUANT_TYPES as readonly string[]).includes(d) ? (d as QuantType) : undefined;
  const float = d === 'f16' || d === 'bf16' || d === 'f32' ? (d as FloatType) : undefined;
  // K-quants are written as llama-quantize writes them only through `rwkv quantize --type`; here the nearest
  // float type (f16) keeps the fine-tune's precision, and the note says how to requantize.
  const note = isKQuant(d) ? `the --init file's ${d} matrices are written as f16; requantize with rwkv quantize --type` : undefined;
  return {
    format,
    extension: path.extname(file) || '.safetensors',
    dtype: float ?? ('f16' as FloatType),
    quantize: quant,
    note,
    tokenizer: source.tokenizer,
  };
}

/** The exported file's name: model.<type>.<ext>, e.g. model.bf16.pth, model.q5_1.bin, model.f16.safetensors. */
export function exportName(like: StorageOf): string {
  return `model.${like.quantize ?? like.dtype ?? 'f32'}${like.extension}`;
}

/** Whether the f32 model.safetensors already is the --init file's storage (nothing to export). */
export function sameAsTrained(like: StorageOf): boolean {
  return like.format === 'safetensors' && like.quantize === undefined && (like.dtype === undefined || like.dtype === 'f32');
}

/** Writes the trained parameters (official names and shapes, f32) to `out`, stored as `like` says (atomically). */
export function exportLike(params: readonly Param[], out: string, like: StorageOf): void {
  const tensors = new Map<string, Tensor>();
  for (const p of params) tensors.set(p.name, f32Tensor(p.name, p.shape, p.data instanceof Float32Array ? p.data : Float32Array.from(p.data)));
  const source: TensorSource = { format: 'safetensors', file: out, encoding: 'official', tensors, declared: {} };
  const opts: WriteOptions = {
    format: like.format,
    ...(like.quantize !== undefined ? { quantize: like.quantize } : {}),
    ...(like.dtype !== undefined && like.dtype !== 'f32' ? { dtype: like.dtype } : {}),
    ...(like.tokenizer !== undefined ? { tokenizer: like.tokenizer } : {}),
  };
  writeCheckpoint(source, out, opts);
}
