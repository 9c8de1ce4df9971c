// safetensors (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON, then the data.
//   { "__metadata__": {string: string}?, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, … }
// Offsets are relative to the first byte after the header. The JSON is capped at 100 MB (as the reference
// library does) and every declared range is checked against the file size before anything is allocated.
import { FormatError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import type { ByteSourceInput } from './byte-source.js';
import { isHuggingFaceNames, officialFromHuggingFace } from './names.js';
import { SourceReader, viewOf, withReader, type ReadOptions } from './source-reader.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';

const MAX_HEADER = 100_000_000;

/** safetensors dtype → our dtype and bytes per element. I8/U8 are widened to f32 on load (see below). */
const ST_DTYPES: ReadonlyMap<string, { dtype: DType; size: number; widen?: 'i8' | 'u8' }> = new Map([
  ['F32', { dtype: 'f32', size: 4 }],
  ['F16', { dtype: 'f16', size: 2 }],
  ['BF16', { dtype: 'bf16', size: 2 }],
  ['I8', { dtype: 'f32', size: 1, widen: 'i8' }],
  ['U8', { dtype: 'f32', size: 1, widen: 'u8' }],
]);

/** Our dtype → the safetensors name, for the types safetensors can hold. */
export const ST_NAMES: Partial<Record<DType, string>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

export interface SafetensorsFile extends TensorSource {
  /** The `__metadata__` strings. */
  readonly metadata: ReadonlyMap<string, string>;
}

/**
 * Whether the first bytes look like safetensors: a JSON object after the 8-byte header length. The length
 * itself is not judged here, so that a bad one gets the reader's precise error rather than "unrecognised".
 */
export function looksLikeSafetensors(head: Uint8Array): boolean {
  return head.byteLength >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0;
}

/** Reads a safetensors file (a path, URL, Blob, buffer or ByteSource), each tensor into a buffer from `allocate`. */
export function readSafetensors(source: ByteSourceInput, allocate: TensorAllocator = defaultAllocator, options: ReadOptions = {}): Promise<SafetensorsFile> {
  return withReader(source, options, (reader) => readSafetensorsFrom(reader, allocate));
}

interface Entry {
  name: string;
  dtype: DType;
  widen: 'i8' | 'u8' | undefined;
  shape: number[];
  begin: number;
  end: number;
}

export async function readSafetensorsFrom(reader: SourceReader, allocate: TensorAllocator): Promise<SafetensorsFile> {
  const file = reader.name;
  const bad = (msg: string, tensor?: string): FormatError =>
    new FormatError('BAD_HEADER', msg, tensor !== undefined ? { file, tensor } : { file });
  if (reader.size < 8) throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes, the header length alone is 8`, { file });
  const n64 = viewOf(await reader.read(0, 8, { field: 'header length' })).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) throw bad(`header length ${n64} exceeds the ${MAX_HEADER}-byte limit`);
  const n = Number(n64);
  if (8 + n > reader.size) {
    throw new FormatError('TRUNCATED', `file is truncated: the JSON header needs bytes up to ${8 + n}, the file has ${reader.size}`, { file });
  }
  const headerBytes = await reader.read(8, n, { field: 'JSON header' });
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw bad(`the JSON header does not parse (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('the JSON header is not an object');
  const dataStart = 8 + n;
  const dataSize = reader.size - dataStart;
  const metadata = new Map<string, string>();
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (typeof v === 'string') metadata.set(k, v);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('entry is not an object', name);
    const v = value as Record<string, unknown>;
    const dt = typeof v.dtype === 'string' ? v.dtype : undefined;
    if (dt === undefined) throw bad('has no dtype', name);
    const info = ST_DTYPES.get(dt);
    if (info === undefined) {
      throw new FormatError('UNSUPPORTED_DTYPE', `dtype ${dt} is not supported (supported: ${[...ST_DTYPES.keys()].join(', ')})`, {
        file,
        tensor: name,
      });
    }
    const shape = v.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw bad(`shape ${JSON.stringify(shape)} is not a list of at most 8 non-negative integers`, name);
    }
    const offs = v.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw bad(`data_offsets ${JSON.stringify(offs)} is not [begin, end]`, name);
    }
    const [begin, end] = offs as [number, number];
    const count = elementCount(shape as number[]);
    if (end < begin || end - begin !== count * info.size) {
      throw bad(`data_offsets [${begin}, ${end}] do not hold ${count} ${dt} values (${count * info.size} bytes)`, name);
    }
    if (end > dataSize) {
      throw new FormatError('TRUNCATED', `file is truncated: the data needs bytes up to ${dataStart + end}, the file has ${reader.size}`, {
        file,
        tensor: name,
      });
    }
    entries.push({ name, dtype: info.dtype, widen: info.widen, shape: shape as number[], begin, end });
  }
  // Overlapping ranges would let a small file declare many tensors over the same bytes, so that the
  // allocations add up to more than the file holds.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const cur = entries[i]!;
    if (cur.begin < prev.end) throw bad(`data overlaps that of '${prev.name}'`, cur.name);
  }
  const hf = isHuggingFaceNames(entries.map((e) => e.name));
  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const name = hf ? officialFromHuggingFace(e.name) : e.name;
    if (tensors.has(name)) throw bad(`appears twice (as '${e.name}')`, name);
    tensors.set(name, await readEntry(reader, e, dataStart, allocate, name));
  }
  if (tensors.size === 0) throw new FormatError('TRUNCATED', 'the file holds no tensors', { file });
  return { format: 'safetensors', file, encoding: 'official', tensors, declared: {}, metadata };
}

async function readEntry(reader: SourceReader, e: Entry, dataStart: number, allocate: TensorAllocator, name: string): Promise<Tensor> {
  const bytes = e.end - e.begin;
  if (e.widen === undefined) {
    const data = allocate(bytes);
    await reader.readInto(data, dataStart + e.begin, { tensor: e.name });
    return { name, dtype: e.dtype, shape: e.shape, data };
  }
  // 8-bit integers have no dtype of their own yet: they are widened to f32 (exact), through a 1-byte-per-
  // value staging buffer — the only tensors read through a second buffer.
  const raw = await reader.read(dataStart + e.begin, bytes, { tensor: e.name });
  const data = allocate(bytes * 4);
  const out = new Float32Array(data.buffer, data.byteOffset, bytes);
  out.set(e.widen === 'i8' ? new Int8Array(raw.buffer, raw.byteOffset, bytes) : raw);
  return { name, dtype: 'f32', shape: e.shape, data };
}
