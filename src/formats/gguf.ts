// GGUF v3 (llama.cpp), for its `rwkv6` and `rwkv7` architectures.
//
// Layout, little-endian: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count; kv_count × (string
// key, u32 type, value); tensor_count × (string name, u32 n_dims, u64 ne[n_dims] (innermost first), u32
// ggml type, u64 offset); padding to `general.alignment` (32); the data, each tensor at its offset
// (relative to the data start, a multiple of the alignment). Strings are u64 length + UTF-8 bytes.
//
// What llama.cpp's converter (convert_hf_to_gguf.py) does to the official tensors, and so what this
// module undoes on read and redoes on write (names in names.ts):
//   both:  LoRA factors transposed to [out, in] — the same as rwkv.cpp's encoding, so a GGUF file is read
//          as encoding 'rwkvcpp' (quantized LoRA factors stay quantized); every [1, 1, C] vector squeezed.
//   rwkv6: time_maa_w, _k, _v, _r, _g stacked as time_mix_lerp_fused [5, 1, 1, C]; time_faaaa kept [H, N];
//          time_decay squeezed to [C]; and when rescale_every_n_layers = n > 0, att.output and ffn.value of
//          layer i divided by 2^⌊i/n⌋ (llama.cpp then halves x every n layers) — undone here on read; we
//          write n = 0.
//   rwkv7: x_r, x_w, x_k, x_v, x_a, x_g stacked as time_mix_lerp_fused [6, 1, 1, C]; r_k flattened to [C];
//          layer 0's v0/v1/v2 are dummies (copies of a0/a1/a2) — dropped on read, written on write.
import { isKQuant, K_SCALE_OFFSETS } from '../kernels/kquants.js';
import { FormatError, ModelError } from '../errors.js';
import { decodeBF16, DTYPES, f16ToF32Table, byteSize, type DType } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import { f32ToBF16Bits, f32ToF16Bits } from '../kernels/quantize.js';
import type { ByteSourceInput } from './byte-source.js';
import { FUSED_LERP_PARTS, GGUF_LERP_FUSED, ggufFromOfficial, officialFromGguf, type GgufArch } from './names.js';
import { SourceReader, withReader, type ReadOptions } from './source-reader.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';
import type { OutTensor } from './writer.js';
import { tokenizerFromGguf } from '../tokenizers/gguf-vocab.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF"
export const GGUF_DEFAULT_ALIGNMENT = 32;
const DEFAULT_ALIGNMENT = GGUF_DEFAULT_ALIGNMENT;
export const GGUF_MAX_DIMS = 4;
const MAX_DIMS = GGUF_MAX_DIMS;

/** ggml type ids we read and write. */
const GGML_TYPES: ReadonlyMap<number, DType> = new Map<number, DType>([
  [0, 'f32'],
  [1, 'f16'],
  [2, 'q4_0'],
  [3, 'q4_1'],
  [6, 'q5_0'],
  [7, 'q5_1'],
  [8, 'q8_0'],
  [10, 'q2_k'],
  [11, 'q3_k'],
  [12, 'q4_k'],
  [13, 'q5_k'],
  [14, 'q6_k'],
  [30, 'bf16'],
]);
export const GGML_ID: Readonly<Record<DType, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q5_0: 6,
  q5_1: 7,
  q8_0: 8,
  q2_k: 10,
  q3_k: 11,
  q4_k: 12,
  q5_k: 13,
  q6_k: 14,
  bf16: 30,
};

const GGML_OTHER_NAMES: Readonly<Record<number, string>> = {
  4: 'Q4_2 (removed)',
  5: 'Q4_3 (removed)',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  34: 'TQ1_0',
  35: 'TQ2_0',
  39: 'MXFP4',
};

/** llama_ftype values for general.file_type. */
// (a K-quant names its usual mix: MOSTLY_Q2_K 10, Q3_K_M 12, Q4_K_M 15, Q5_K_M 17, Q6_K 18)
const FILE_TYPE: Readonly<Record<DType, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  q2_k: 10,
  q3_k: 12,
  q4_k: 15,
  q5_k: 17,
  q6_k: 18,
  bf16: 32,
};

// GGUF value types.
const T_U8 = 0;
const T_I8 = 1;
const T_U16 = 2;
const T_I16 = 3;
export const T_U32 = 4;
export const T_I32 = 5;
export const T_F32 = 6;
export const T_BOOL = 7;
export const T_STRING = 8;
export const T_ARRAY = 9;
const T_U64 = 10;
const T_I64 = 11;
const T_F64 = 12;
const SCALAR_SIZE: Readonly<Record<number, number>> = {
  [T_U8]: 1,
  [T_I8]: 1,
  [T_U16]: 2,
  [T_I16]: 2,
  [T_U32]: 4,
  [T_I32]: 4,
  [T_F32]: 4,
  [T_BOOL]: 1,
  [T_U64]: 8,
  [T_I64]: 8,
  [T_F64]: 8,
};

export type GgufScalar = number | bigint | boolean | string;
export type GgufMetaValue = GgufScalar | { readonly arrayType: number; readonly length: number; readonly values?: readonly GgufScalar[] };

export interface GgufFile extends TensorSource {
  readonly version: number;
  readonly arch: GgufArch;
  /** Metadata; arrays keep their type and length (and their values when they are short, or tokenizer.*). */
  readonly metadata: ReadonlyMap<string, GgufMetaValue>;
}

/** Thrown by the cursor when a value runs past its window: bytes up to `end` are needed. */
class NeedMore {
  constructor(readonly end: number) {}
}

/**
 * Reads the header sequentially from a window of the file, checking every length against the file. The
 * value readers are synchronous; `step` runs a parse step and, when it runs past the window, reads a
 * larger window from the step's start and runs it again (so a header of many small values costs a few
 * reads, not one await per value).
 */
class Cursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  private readonly dec = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly reader: SourceReader,
    private readonly bad: (msg: string) => FormatError,
  ) {}

  /** Runs `parse` from the current position, with as large a window as it needs. */
  async step<T>(parse: () => T): Promise<T> {
    for (;;) {
      const start = this.pos;
      try {
        return parse();
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        this.pos = start;
        const had = this.bufStart + this.buf.byteLength - start;
        const len = Math.min(Math.max(e.end - start, 1 << 20, 2 * had), this.reader.size - start);
        this.buf = await this.reader.read(start, len, { field: 'GGUF header' });
        this.bufStart = start;
      }
    }
  }

  private bytes(n: number, what: string): Uint8Array {
    if (n < 0 || this.pos + n > this.reader.size) {
      throw new FormatError('TRUNCATED', `file is truncated: ${what} needs bytes up to ${this.pos + n}, the file has ${this.reader.size}`, {
        file: this.reader.name,
      });
    }
    const o = this.pos - this.bufStart;
    if (o < 0 || o + n > this.buf.byteLength) throw new NeedMore(this.pos + n);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }

  private view(n: number, what: string): DataView {
    const b = this.bytes(n, what);
    return new DataView(b.buffer, b.byteOffset, n);
  }

  u32(what: string): number {
    return this.view(4, what).getUint32(0, true);
  }

  u64(what: string): number {
    const v = this.view(8, what).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.bad(`${what} ${v} is out of range`);
    return Number(v);
  }

  string(what: string): string {
    const n = this.u64(`${what} length`);
    const b = this.bytes(n, what);
    try {
      return this.dec.decode(b);
    } catch {
      throw this.bad(`${what} is not valid UTF-8`);
    }
  }

  scalar(type: number, what: string): GgufScalar {
    if (type === T_STRING) return this.string(what);
    const size = SCALAR_SIZE[type];
    if (size === undefined) throw this.bad(`${what} has unknown value type ${type}`);
    const dv = this.view(size, what);
    switch (type) {
      case T_U8:
        return dv.getUint8(0);
      case T_I8:
        return dv.getInt8(0);
      case T_U16:
        return dv.getUint16(0, true);
      case T_I16:
        return dv.getInt16(0, true);
      case T_U32:
        return dv.getUint32(0, true);
      case T_I32:
        return dv.getInt32(0, true);
      case T_F32:
        return dv.getFloat32(0, true);
      case T_BOOL:
        return dv.getUint8(0) !== 0;
      case T_U64:
        return dv.getBigUint64(0, true);
      case T_I64:
        return dv.getBigInt64(0, true);
      default:
        return dv.getFloat64(0, true);
    }
  }

  /** Skips `n` fixed-size values without reading them one by one. */
  skip(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.reader.size) {
      throw new FormatError('TRUNCATED', `file is truncated: ${what} needs bytes up to ${this.pos + n}, the file has ${this.reader.size}`, {
        file: this.reader.name,
      });
    }
    this.pos += n;
  }
}

const SHORT_ARRAY = 64;

function readValue(c: Cursor, type: number, key: string, bad: (m: string) => FormatError): GgufMetaValue {
  if (type !== T_ARRAY) return c.scalar(type, `value of '${key}'`);
  const itemType = c.u32(`array type of '${key}'`);
  const length = c.u64(`array length of '${key}'`);
  if (itemType === T_ARRAY) throw bad(`'${key}' is an array of arrays`);
  const size = SCALAR_SIZE[itemType];
  if (itemType !== T_STRING && size === undefined) throw bad(`'${key}' has unknown array type ${itemType}`);
  // The tokenizer's arrays (tokens, token types, merges) are kept whole: the file's tokenizer is built from them.
  const whole = key.startsWith('tokenizer.');
  if (itemType !== T_STRING && length > SHORT_ARRAY && !whole) {
    c.skip(length * size!, `array '${key}'`);
    return { arrayType: itemType, length };
  }
  const values: GgufScalar[] = [];
  // Each string costs at least its 8-byte length, so `length` strings cannot outrun the file unchecked.
  for (let i = 0; i < length; i++) {
    const v = c.scalar(itemType, `item ${i} of '${key}'`);
    if (i < SHORT_ARRAY || whole) values.push(v);
  }
  return length <= SHORT_ARRAY || whole ? { arrayType: itemType, length, values } : { arrayType: itemType, length };
}

function asNumber(v: GgufMetaValue | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return undefined;
}

interface Info {
  name: string;
  dtype: DType;
  shape: number[]; // PyTorch order
  offset: number;
  bytes: number;
}

/** Reads a GGUF file (a path, URL, Blob, buffer or ByteSource), each tensor into a buffer from `allocate`. */
export function readGguf(source: ByteSourceInput, allocate: TensorAllocator = defaultAllocator, options: ReadOptions = {}): Promise<GgufFile> {
  return withReader(source, options, (reader) => readGgufFrom(reader, allocate));
}

export async function readGgufFrom(reader: SourceReader, allocate: TensorAllocator): Promise<GgufFile> {
  const file = reader.name;
  const bad = (msg: string, tensor?: string): FormatError =>
    new FormatError('BAD_HEADER', msg, tensor !== undefined ? { file, tensor } : { file });
  const c = new Cursor(reader, bad);
  if (reader.size < 24) throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes, the GGUF header alone is 24`, { file });
  const magic = await c.step(() => c.u32('magic'));
  if (magic !== GGUF_MAGIC) throw new FormatError('BAD_MAGIC', `not a GGUF file (magic 0x${magic.toString(16).padStart(8, '0')})`, { file });
  const version = await c.step(() => c.u32('version'));
  if (version !== 3) {
    // A big-endian GGUF has its version byte-swapped; a value like 100 is not GGUF at all.
    if (version === 1 || version === 2) {
      throw new FormatError('UNSUPPORTED_VERSION', `GGUF version ${version} is not supported (version 3 only); re-convert the model`, { file });
    }
    if (version > 3 && version < 16) throw new FormatError('UNSUPPORTED_VERSION', `GGUF version ${version} is not supported (version 3 only)`, { file });
    if ((version & 0xffff) === 0) throw new FormatError('UNSUPPORTED_VERSION', 'a big-endian GGUF file; only little-endian files are supported', { file });
    throw new FormatError('BAD_MAGIC', `has the GGUF magic but version ${version}: not a GGUF file`, { file });
  }
  const [tensorCount, kvCount] = await c.step(() => [c.u64('tensor count'), c.u64('metadata count')] as const);
  // Each metadata entry takes ≥ 13 bytes and each tensor info ≥ 28: refuse counts the file cannot hold.
  if (kvCount * 13 + tensorCount * 28 > reader.size) {
    throw new FormatError('TRUNCATED', `file is truncated: ${tensorCount} tensors and ${kvCount} metadata entries cannot fit in ${reader.size} bytes`, {
      file,
    });
  }
  const metadata = new Map<string, GgufMetaValue>();
  for (let i = 0; i < kvCount; i++) {
    const [key, value] = await c.step(() => {
      const k = c.string(`metadata key #${i}`);
      const type = c.u32(`type of '${k}'`);
      return [k, readValue(c, type, k, bad)] as const;
    });
    metadata.set(key, value);
  }
  const archValue = metadata.get('general.architecture');
  if (archValue !== 'rwkv6' && archValue !== 'rwkv7') {
    throw new ModelError(
      'UNKNOWN_MODEL',
      typeof archValue === 'string'
        ? `GGUF architecture '${archValue}' is not an RWKV model this library runs (rwkv6, rwkv7)`
        : 'GGUF file without general.architecture',
      { file },
    );
  }
  const arch: GgufArch = archValue;
  const alignment = asNumber(metadata.get('general.alignment')) ?? DEFAULT_ALIGNMENT;
  if (alignment < 1 || alignment > 1 << 16 || (alignment & (alignment - 1)) !== 0) throw bad(`general.alignment ${alignment} is not a power of two`);

  const infos: Info[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const { name, ne, typeId, offset } = await c.step(() => {
      const n = c.string(`tensor #${i} name`);
      const nDims = c.u32(`dims of '${n}'`);
      if (nDims < 1 || nDims > MAX_DIMS) throw bad(`has ${nDims} dimensions (1..${MAX_DIMS})`, n);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) dims.push(c.u64(`dimension of '${n}'`));
      return { name: n, ne: dims, typeId: c.u32(`type of '${n}'`), offset: c.u64(`offset of '${n}'`) };
    });
    const dtype = GGML_TYPES.get(typeId);
    if (dtype === undefined) {
      const what = GGML_OTHER_NAMES[typeId];
      throw new FormatError(
        'UNSUPPORTED_DTYPE',
        `${what !== undefined ? `ggml type ${what}` : `unknown ggml type ${typeId}`} is not supported; supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K`,
        { file, tensor: name },
      );
    }
    for (const d of ne) if (d < 1 || d > 2 ** 40) throw bad(`dimension ${d} in shape ${ne.join('x')}`, name);
    const count = elementCount(ne);
    const bytes = byteSize(dtype, count);
    if (!Number.isSafeInteger(count) || bytes === undefined || ne[0]! % DTYPES[dtype].blockSize !== 0) {
      throw bad(`row length ${ne[0]} is not a multiple of ${dtype.toUpperCase()}'s block of ${DTYPES[dtype].blockSize}`, name);
    }
    if (offset % alignment !== 0) throw bad(`offset ${offset} is not a multiple of the alignment ${alignment}`, name);
    infos.push({ name, dtype, shape: ne.slice().reverse(), offset, bytes });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  for (const t of infos) {
    if (dataStart + t.offset + t.bytes > reader.size) {
      throw new FormatError('TRUNCATED', `file is truncated: the data needs bytes up to ${dataStart + t.offset + t.bytes}, the file has ${reader.size}`, {
        file,
        tensor: t.name,
      });
    }
  }
  const sorted = infos.slice().sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.offset < sorted[i - 1]!.offset + sorted[i - 1]!.bytes) throw bad(`data overlaps that of '${sorted[i - 1]!.name}'`, sorted[i]!.name);
  }
  const seen = new Set<string>();
  for (const t of infos) {
    if (seen.has(t.name)) throw bad('appears twice', t.name);
    seen.add(t.name);
  }

  const headSize = asNumber(metadata.get(`${arch}.wkv.head_size`));
  const emb = infos.find((t) => t.name === 'token_embd.weight');
  const nEmbd = emb?.shape[1];
  if (headSize === undefined || headSize < 1 || (nEmbd !== undefined && nEmbd % headSize !== 0)) {
    throw bad(`${arch}.wkv.head_size is ${String(headSize)}; it must divide n_embd ${String(nEmbd)}`);
  }
  const rescale = arch === 'rwkv6' ? (asNumber(metadata.get('rwkv6.rescale_every_n_layers')) ?? 0) : 0;

  const tensors = new Map<string, Tensor>();
  const put = (name: string, dtype: DType, shape: readonly number[], data: Uint8Array, from: string): void => {
    if (tensors.has(name)) throw bad(`maps to '${name}', which another tensor also maps to`, from);
    tensors.set(name, { name, dtype, shape, data });
  };
  const read = async (t: Info): Promise<Uint8Array> => {
    const data = allocate(t.bytes);
    await reader.readInto(data, dataStart + t.offset, { tensor: t.name });
    return data;
  };
  for (const t of infos) {
    const m = /^blk\.(\d+)\.(.+)$/.exec(t.name);
    const layer = m !== null ? Number(m[1]) : -1;
    const suffix = m !== null ? m[2]! : t.name;
    if (suffix === GGUF_LERP_FUSED) {
      // [k, 1, 1, C] → k tensors of C values (small; one copy each).
      const parts = FUSED_LERP_PARTS[arch];
      const c = t.shape[t.shape.length - 1]!;
      if (elementCount(t.shape) !== parts.length * c || DTYPES[t.dtype].quantized) {
        throw bad(`has shape [${t.shape.join(', ')}] (${t.dtype}), expected [${parts.length}, 1, 1, C] of floats`, t.name);
      }
      if (arch === 'rwkv7') {
        put(`blocks.${layer}.att.x_rwkvag`, t.dtype, [parts.length, 1, c], await read(t), t.name);
      } else {
        // Staged through a scratch buffer: only the five parts are allocated.
        const all = await reader.read(dataStart + t.offset, t.bytes, { tensor: t.name });
        const each = all.byteLength / parts.length;
        parts.forEach((p, i) => {
          const data = allocate(each);
          data.set(all.subarray(i * each, (i + 1) * each));
          put(`blocks.${layer}.${p}`, t.dtype, [c], data, t.name);
        });
      }
      continue;
    }
    const official = officialFromGguf(t.name, arch);
    if (official === undefined) {
      // Not part of the model as we know it: kept under its own name for tools, ignored by the models.
      put(t.name, t.dtype, t.shape, await read(t), t.name);
      continue;
    }
    const tail = official.slice(official.indexOf('.', official.indexOf('.') + 1) + 1);
    if (arch === 'rwkv7' && layer === 0 && (tail === 'att.v0' || tail === 'att.v1' || tail === 'att.v2')) continue; // dummies
    let shape = t.shape;
    const c = elementCount(t.shape);
    const perHead = (arch === 'rwkv6' && (tail === 'att.time_decay' || tail === 'att.time_faaaa')) || (arch === 'rwkv7' && tail === 'att.r_k');
    if (perHead && c % headSize !== 0) throw bad(`has ${c} values, not a whole number of heads of ${headSize}`, t.name);
    const data = await read(t);
    if (arch === 'rwkv6' && (tail === 'att.time_decay' || tail === 'att.time_faaaa')) shape = [c / headSize, headSize, 1];
    if (arch === 'rwkv7') {
      if (['att.w0', 'att.a0', 'att.v0', 'att.k_k', 'att.k_a', 'ffn.x_k'].includes(tail)) shape = [1, 1, c];
      if (tail === 'att.r_k') shape = [c / headSize, headSize];
    }
    if (rescale > 0 && layer >= 0 && (tail === 'att.output.weight' || tail === 'ffn.value.weight')) {
      scaleInPlace({ name: official, dtype: t.dtype, shape, data }, 2 ** Math.floor(layer / rescale));
    }
    put(official, t.dtype, shape, data, t.name);
  }
  if (tensors.size === 0) throw new FormatError('TRUNCATED', 'the file holds no tensors', { file });
  const nLayer = asNumber(metadata.get(`${arch}.block_count`));
  const tokenizer = tokenizerFromGguf(metadata, emb?.shape[0], file);
  return {
    format: 'gguf',
    file,
    encoding: 'rwkvcpp',
    version,
    arch,
    metadata,
    tensors,
    declared: { ...(nLayer !== undefined ? { nLayer } : {}), ...(nEmbd !== undefined ? { nEmbd } : {}) },
    ...(tokenizer !== undefined ? { tokenizer } : {}),
  };
}

/** Multiplies a tensor's values by a power of two in place (exact barring overflow); block types scale d (and m). */
export function scaleInPlace(t: Tensor, factor: number): void {
  const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const n = elementCount(t.shape);
  const f16 = f16ToF32Table();
  switch (t.dtype) {
    case 'f32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, dv.getFloat32(4 * i, true) * factor, true);
      return;
    case 'f16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToF16Bits(f16[dv.getUint16(2 * i, true)]! * factor), true);
      return;
    case 'bf16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToBF16Bits(decodeBF16(dv.getUint16(2 * i, true)) * factor), true);
      return;
    default: {
      // Every value of a block is linear in its f16 factors (d, and the min's where there is one), which sit
      // at the block's start for ggml's 32-blocks and at type-specific offsets in the K-quants' super-blocks.
      const bb = DTYPES[t.dtype].blockBytes;
      const factors = isKQuant(t.dtype) ? K_SCALE_OFFSETS[t.dtype] : t.dtype === 'q4_1' || t.dtype === 'q5_1' ? [0, 2] : [0];
      for (let b = 0; b < t.data.byteLength; b += bb) {
        for (const o of factors) dv.setUint16(b + o, f32ToF16Bits(f16[dv.getUint16(b + o, true)]! * factor), true);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Writing.

export type GgufKv =
  | { readonly key: string; readonly type: 'u32'; readonly value: number }
  | { readonly key: string; readonly type: 'f32'; readonly value: number }
  | { readonly key: string; readonly type: 'string'; readonly value: string }
  | { readonly key: string; readonly type: 'bool'; readonly value: boolean }
  | { readonly key: string; readonly type: 'string[]'; readonly value: readonly string[] }
  | { readonly key: string; readonly type: 'i32[]'; readonly value: readonly number[] };

/**
 * Maps rwkv.cpp-encoded tensors with official names (any dtypes, already converted) onto llama.cpp's
 * rwkv6/rwkv7 names and shapes, and computes the hyper-parameter metadata llama.cpp reads.
 */
export function ggufLayout(
  tensors: readonly OutTensor[],
  version: '6' | '7',
  file: string,
): { arch: GgufArch; kvs: GgufKv[]; tensors: OutTensor[] } {
  const arch: GgufArch = version === '6' ? 'rwkv6' : 'rwkv7';
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const need = (name: string): OutTensor => {
    const t = byName.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    return t;
  };
  const emb = need('emb.weight');
  const [nVocab, nEmbd] = emb.shape as [number, number];
  let nLayer = 0;
  while (byName.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  const ffn = need('blocks.0.ffn.key.weight').shape[0]!;
  const out: OutTensor[] = [];
  const rename = (t: OutTensor, name: string, shape: readonly number[] = t.shape): OutTensor => ({ ...t, name, shape, bytes: () => t.bytes() });
  const fuse = (name: string, parts: OutTensor[]): OutTensor => {
    const dtype = parts[0]!.dtype;
    for (const p of parts) {
      if (p.dtype !== dtype || elementCount(p.shape) !== nEmbd) {
        throw new ModelError('BAD_SHAPE', `cannot be fused into ${name}: ${p.dtype} [${p.shape.join(', ')}]`, { file, tensor: p.name });
      }
    }
    const each = parts[0]!.byteLength;
    return {
      name,
      dtype,
      shape: [parts.length, 1, 1, nEmbd],
      byteLength: each * parts.length,
      bytes: () => {
        const b = new Uint8Array(each * parts.length);
        parts.forEach((p, i) => b.set(p.bytes(), i * each));
        return b;
      },
    };
  };
  let headSize: number;
  const kvs: GgufKv[] = [{ key: 'general.architecture', type: 'string', value: arch }];
  if (version === '6') {
    headSize = need('blocks.0.att.time_faaaa').shape[1]!;
    for (const t of tensors) {
      const lerp = /^blocks\.(\d+)\.(att\.time_maa_[wkvrg])$/.exec(t.name);
      if (lerp !== null) {
        // The fused tensor takes time_maa_w's place in the order; the other four are in it.
        if (lerp[2] === 'att.time_maa_w') {
          const l = lerp[1]!;
          out.push(fuse(`blk.${l}.${GGUF_LERP_FUSED}`, FUSED_LERP_PARTS.rwkv6.map((p) => need(`blocks.${l}.${p}`))));
        }
        continue;
      }
      const g = ggufFromOfficial(t.name, arch);
      if (g === undefined) throw new ModelError('UNKNOWN_MODEL', `has no counterpart in llama.cpp's ${arch}`, { file, tensor: t.name });
      const tail = t.name.replace(/^blocks\.\d+\./, '');
      const n = elementCount(t.shape);
      if (tail === 'att.time_decay') out.push(rename(t, g, [n]));
      else if (tail === 'att.time_faaaa') out.push(rename(t, g, [n / headSize, headSize]));
      else if (/^(att\.time_maa_x|ffn\.time_maa_[kr])$/.test(tail)) out.push(rename(t, g, [n]));
      else out.push(rename(t, g));
    }
    const d = need('blocks.0.att.time_maa_w1').shape[0]! / 5;
    const d2 = need('blocks.0.att.time_decay_w1').shape[0]!;
    kvs.push(
      { key: 'rwkv6.time_mix_extra_dim', type: 'u32', value: d },
      { key: 'rwkv6.time_decay_extra_dim', type: 'u32', value: d2 },
      { key: 'rwkv6.rescale_every_n_layers', type: 'u32', value: 0 },
    );
  } else {
    headSize = need('blocks.0.att.r_k').shape[1]!;
    for (const t of tensors) {
      const m = /^blocks\.(\d+)\.(.+)$/.exec(t.name);
      const layer = m !== null ? Number(m[1]) : -1;
      const tail = m !== null ? m[2]! : t.name;
      if (tail === 'att.x_rwkvag') {
        if (elementCount(t.shape) !== 6 * nEmbd) throw new ModelError('BAD_SHAPE', `has shape [${t.shape.join(', ')}], expected [6, 1, C]`, { file, tensor: t.name });
        out.push(rename(t, `blk.${layer}.${GGUF_LERP_FUSED}`, [6, 1, 1, nEmbd]));
        continue;
      }
      if (layer === 0 && (tail === 'att.v0' || tail === 'att.v1' || tail === 'att.v2')) continue;
      const g = ggufFromOfficial(t.name, arch);
      if (g === undefined) throw new ModelError('UNKNOWN_MODEL', `has no counterpart in llama.cpp's ${arch}`, { file, tensor: t.name });
      const n = elementCount(t.shape);
      if (['att.w0', 'att.a0', 'att.v0', 'att.k_k', 'att.k_a', 'att.r_k', 'ffn.x_k'].includes(tail)) out.push(rename(t, g, [n]));
      else out.push(rename(t, g));
      // llama.cpp wants v0/v1/v2 in layer 0 too (unused there): copies of a0/a1/a2, as its converter writes.
      if (layer === 0 && ['att.a0', 'att.a1', 'att.a2'].includes(tail)) {
        out.push(rename(t, g.replace('time_mix_a', 'time_mix_v'), tail === 'att.a0' ? [n] : t.shape));
      }
    }
    const v1 = byName.get('blocks.1.att.v1') ?? need('blocks.0.att.a1');
    kvs.push(
      { key: 'rwkv7.attention.decay_lora_rank', type: 'u32', value: need('blocks.0.att.w1').shape[0]! },
      { key: 'rwkv7.attention.iclr_lora_rank', type: 'u32', value: need('blocks.0.att.a1').shape[0]! },
      { key: 'rwkv7.attention.value_residual_mix_lora_rank', type: 'u32', value: v1.shape[0]! },
      { key: 'rwkv7.attention.gate_lora_rank', type: 'u32', value: need('blocks.0.att.g1').shape[0]! },
    );
  }
  const main = mainType(out);
  kvs.push(
    { key: 'general.name', type: 'string', value: `RWKV v${version} (n_embd ${nEmbd}, n_layer ${nLayer}, n_vocab ${nVocab})` },
    { key: 'general.file_type', type: 'u32', value: FILE_TYPE[main] },
    { key: `${arch}.context_length`, type: 'u32', value: 1048576 },
    { key: `${arch}.embedding_length`, type: 'u32', value: nEmbd },
    { key: `${arch}.block_count`, type: 'u32', value: nLayer },
    { key: `${arch}.feed_forward_length`, type: 'u32', value: ffn },
    { key: `${arch}.attention.layer_norm_epsilon`, type: 'f32', value: 1e-5 },
    { key: `${arch}.attention.head_count`, type: 'u32', value: 0 },
    { key: `${arch}.wkv.head_size`, type: 'u32', value: headSize },
  );
  return { arch, kvs, tensors: out };
}

/**
 * The type a file is said to be in (general.file_type, rwkv.cpp's header): its block type if it has one,
 * else its 16-bit type if a matrix has one, else f32 (vectors stay f32 in every such file).
 */
export function mainType(tensors: readonly OutTensor[]): DType {
  const quantized = tensors.find((t) => DTYPES[t.dtype].quantized);
  if (quantized !== undefined) return quantized.dtype;
  return tensors.find((t) => t.dtype === 'f16' || t.dtype === 'bf16')?.dtype ?? 'f32';
}
