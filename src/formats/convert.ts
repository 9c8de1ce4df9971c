// Writes a loaded checkpoint in any supported format: picks the parameter encoding the format uses
// (official for safetensors/.pth, rwkv.cpp's for .bin and GGUF), the element type of each tensor, and
// hands the tensors to that format's writer. Converted bytes are produced one tensor at a time.
//
// Element types:
//   safetensors, .pth  every tensor in --dtype (default: as stored; ggml blocks are dequantized to f32).
//   rwkv.cpp, GGUF     rwkv.cpp's rules. --dtype f16/bf16 converts only matrices (≥ 2 dimensions longer
//                      than 1), never time_* parameters or v7's x_rwkvag: vectors stay f32, as rwkv.cpp's
//                      converter does. Quantizing (`quantize`) converts exactly the tensors rwkv.cpp's
//                      quantizer does: 2-D, not emb.weight / head.weight, not v7's small LoRA factors
//                      (att.w1/w2/a1/a2/g1/g2/v1/v2) or r_k — the rest keep their type.
//   GGUF, K-quant mix  llama-quantize's rules instead (`kquant`, see kquant-mix.ts), applied to llama.cpp's
//                      names and shapes after the layout.
import { ArgumentError, FormatError } from '../errors.js';
import type { QuantType } from '../kernels/quantize.js';
import { byteSize, DTYPES, type DType } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import { ggufLayout, mainType, type GgufKv } from './gguf.js';
import { llamaTensorType, MIX_FILE_TYPE, type KQuantMix } from './kquant-mix.js';
import { writeGguf } from './gguf-writer.js';
import { writePth } from './pth-writer.js';
import { writeRwkvCpp } from './rwkvcpp-writer.js';
import { writeSafetensors } from './safetensors-writer.js';
import type { TensorSource } from './tensor-source.js';
import { toEncoding } from './transform.js';
import { detectVersion } from './version.js';
import { convertedOut, decodeF32, encodeF32, rowsFitBlocks } from './values.js';
import type { OutTensor } from './writer.js';
import { ByteTokenizer } from '../tokenizers/bytes.js';
import { ggufTokenizerKvs } from '../tokenizers/gguf-vocab.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export type OutputFormat = 'safetensors' | 'pth' | 'gguf' | 'rwkv.cpp';
export type FloatType = 'f32' | 'f16' | 'bf16';

const EXTENSIONS: ReadonlyArray<readonly [string, OutputFormat]> = [
  ['.safetensors', 'safetensors'],
  ['.pth', 'pth'],
  ['.pt', 'pth'],
  ['.gguf', 'gguf'],
  ['.bin', 'rwkv.cpp'],
];

/** The output format named by a file's extension. */
export function outputFormatOf(path: string): OutputFormat {
  const lower = path.toLowerCase();
  for (const [ext, f] of EXTENSIONS) if (lower.endsWith(ext)) return f;
  throw new ArgumentError(
    `cannot tell the output format of '${path}' from its extension (use ${EXTENSIONS.map(([e]) => e).join(', ')})`,
  );
}

export interface WriteOptions {
  /** Default: from the file extension. */
  readonly format?: OutputFormat;
  /** Float type for the converted tensors (see the rules above). */
  readonly dtype?: FloatType;
  /** ggml block type for rwkv.cpp's quantizable tensors (rwkv.cpp and GGUF outputs only). */
  readonly quantize?: QuantType;
  /** GGUF only: a llama-quantize K-quant mix, each tensor typed as llama-quantize types it (kquant-mix.ts). */
  readonly kquant?: KQuantMix;
  /** safetensors __metadata__ entries. */
  readonly metadata?: Readonly<Record<string, string>>;
  /**
   * GGUF only: the tokenizer written into the file (llama.cpp loads no GGUF without one). Default: the
   * source's own (a GGUF's), else byte-level for a 256-id model; any other model needs it given.
   */
  readonly tokenizer?: Tokenizer;
}

export interface WriteSummary {
  readonly format: OutputFormat;
  readonly tensors: number;
  /** Tensors per stored type. */
  readonly types: ReadonlyMap<DType, number>;
}

const V7_SMALL_LORA = /\.att\.(v1|v2|g1|g2|a1|a2|w1|w2|r_k)$/;

/** rwkv.cpp's quantizer: which tensors it quantizes (rwkv_tensor_needs_quant plus its 2-D test). */
export function rwkvCppQuantizes(name: string, shape: readonly number[]): boolean {
  return shape.length === 2 && name !== 'emb.weight' && name !== 'head.weight' && !V7_SMALL_LORA.test(name);
}

/** rwkv.cpp's FP16 converter: which tensors become 16-bit (matrices, not time_* or x_rwkvag). */
export function rwkvCppHalves(name: string, shape: readonly number[]): boolean {
  return shape.filter((d) => d > 1).length >= 2 && !name.includes('.time_') && !name.endsWith('.x_rwkvag');
}

function ggmlTypeFor(t: Tensor, opts: WriteOptions, canBf16: boolean): DType {
  if (opts.quantize !== undefined && rwkvCppQuantizes(t.name, t.shape) && rowsFitBlocks(t.shape, opts.quantize)) return opts.quantize;
  if (opts.dtype !== undefined) {
    return opts.dtype !== 'f32' && rwkvCppHalves(t.name, t.shape) ? opts.dtype : 'f32';
  }
  if (t.dtype === 'bf16' && !canBf16) return 'f32';
  // Already-quantized tensors that the requested quantization would not touch stay as they are.
  return t.dtype;
}

/** An OutTensor re-encoded as `dtype` when written (unchanged when dtype is undefined or its own). */
function retyped(t: OutTensor, dtype: DType | undefined): OutTensor {
  if (dtype === undefined || dtype === t.dtype) return t;
  const byteLength = byteSize(dtype, elementCount(t.shape));
  if (byteLength === undefined) throw new RangeError(`tensor '${t.name}': [${t.shape.join(', ')}] is not a whole number of ${dtype} blocks`);
  return { ...t, dtype, byteLength, bytes: () => encodeF32(decodeF32({ dtype: t.dtype, shape: t.shape, data: t.bytes() }), dtype) };
}

/** Writes `source` to `path` in the format of its extension (or opts.format). */
export function writeCheckpoint(source: TensorSource, path: string, opts: WriteOptions = {}): WriteSummary {
  const format = opts.format ?? outputFormatOf(path);
  if (opts.dtype === 'bf16' && format === 'rwkv.cpp') {
    throw new ArgumentError('rwkv.cpp files cannot hold bf16; use --dtype f16 or f32');
  }
  if (opts.kquant !== undefined && (format !== 'gguf' || opts.quantize !== undefined)) {
    throw new ArgumentError(
      format !== 'gguf' ? `K-quant mixes are written as GGUF only (.gguf), not ${format}` : 'a K-quant mix and a legacy quantization type cannot both be given',
    );
  }
  let out: OutTensor[];
  if (format === 'safetensors' || format === 'pth') {
    if (opts.quantize !== undefined) throw new ArgumentError(`${format} files cannot hold ggml quantized tensors; write .bin or .gguf`);
    const official = toEncoding(source, 'official');
    out = [...official.tensors.values()].map((t) => {
      const dtype: DType = opts.dtype ?? (DTYPES[t.dtype].quantized ? 'f32' : t.dtype);
      return convertedOut(t, dtype);
    });
    if (format === 'safetensors') writeSafetensors(path, out, { ...(opts.metadata ?? {}) });
    else writePth(path, out);
  } else {
    const cpp = toEncoding(source, 'rwkvcpp');
    out = [...cpp.tensors.values()].map((t) => convertedOut(t, ggmlTypeFor(t, opts, format === 'gguf')));
    const emb = cpp.tensors.get('emb.weight');
    if (emb === undefined || emb.shape.length !== 2) {
      throw new FormatError('BAD_SHAPE', 'emb.weight is missing or not 2-D', { file: source.file, tensor: 'emb.weight' });
    }
    if (format === 'rwkv.cpp') {
      let nLayer = 0;
      while (cpp.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
      const dataType: DType = opts.quantize ?? (opts.dtype === 'f16' ? 'f16' : opts.dtype === 'f32' ? 'f32' : mainType(out));
      writeRwkvCpp(path, { nVocab: emb.shape[0]!, nEmbd: emb.shape[1]!, nLayer, dataType }, out);
    } else {
      const version = detectVersion(cpp);
      if (version !== '6' && version !== '7') {
        throw new ArgumentError(`llama.cpp's GGUF has no architecture for RWKV v${version} (only rwkv6 and rwkv7); write .bin, .pth or .safetensors`);
      }
      const nVocab = emb.shape[0]!;
      const tokenizer = opts.tokenizer ?? source.tokenizer ?? (nVocab === 256 ? new ByteTokenizer() : undefined);
      if (tokenizer === undefined) {
        throw new ArgumentError(`a GGUF file needs the model's tokenizer (llama.cpp loads none without), and none is known for a vocabulary of ${nVocab}; give one`);
      }
      const vocabKvs = ggufTokenizerKvs(tokenizer, nVocab);
      const layout = ggufLayout(out, version, source.file);
      out = layout.tensors;
      let kvs: GgufKv[] = layout.kvs;
      if (opts.kquant !== undefined) {
        // The mix is chosen by llama.cpp's names and shapes, so it applies after the layout.
        const mix = opts.kquant;
        out = out.map((t) => retyped(t, llamaTensorType(mix, t.name, t.shape)));
        kvs = kvs.map((kv) => (kv.key === 'general.file_type' ? { ...kv, type: 'u32', value: MIX_FILE_TYPE[mix] } : kv));
      }
      // llama.cpp's quantized files say which revision of the block formats they hold (ggml's GGML_QNT_VERSION, 2).
      if (out.some((t) => t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') && !kvs.some((kv) => kv.key === 'general.quantization_version')) {
        kvs = [...kvs, { key: 'general.quantization_version', type: 'u32', value: 2 }];
      }
      writeGguf(path, [...kvs, ...vocabKvs], out);
    }
  }
  const types = new Map<DType, number>();
  for (const t of out) types.set(t.dtype, (types.get(t.dtype) ?? 0) + 1);
  return { format, tensors: out.length, types };
}
