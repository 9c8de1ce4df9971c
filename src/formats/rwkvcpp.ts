// rwkv.cpp model files (`.bin`), file versions 100 and 101.
//
// Layout, all integers int32 little-endian:
//   header:  magic 0x67676d66 ("ggmf"), version, n_vocab, n_embd, n_layer, data_type
//   tensors until end of file:
//            dim_count (1..3), key_length, data_type, dims[dim_count] (ggml order: innermost first),
//            key (UTF-8, key_length bytes), data (packed, no padding)
// Type ids are rwkv.cpp's, not ggml's. Version 100 predates ggml's May 2023 change of the quantized block
// layouts; rwkv.cpp refuses quantized tensors in such files, and so do we.
import { FormatError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { DTYPES, byteSize } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import type { ByteSourceInput } from './byte-source.js';
import { SourceReader, viewOf, withReader, type ReadOptions } from './source-reader.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';

export const RWKVCPP_MAGIC = 0x67676d66;
export const RWKVCPP_VERSIONS = [100, 101] as const;

/** rwkv.cpp's type ids; the gaps are retired or unsupported ggml types. */
export const RWKVCPP_TYPE_IDS: ReadonlyMap<number, DType> = new Map<number, DType>([
  [0, 'f32'],
  [1, 'f16'],
  [2, 'q4_0'],
  [3, 'q4_1'],
  [7, 'q5_0'],
  [8, 'q5_1'],
  [9, 'q8_0'],
]);

const RETIRED_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [4, 'Q4_1_O'],
  [5, 'Q4_2'],
  [6, 'Q4_3'],
  [10, 'Q8_1'],
  [11, 'Q2_K'],
  [12, 'Q3_K'],
  [13, 'Q4_K'],
  [14, 'Q5_K'],
  [15, 'Q6_K'],
  [16, 'Q8_K'],
]);

export interface RwkvCppHeader {
  readonly version: number;
  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  /** The file's main type id (what most matrices are stored as). */
  readonly dataType: number;
}

export interface RwkvCppFile extends TensorSource {
  readonly header: RwkvCppHeader;
}

const MAX_KEY_LENGTH = 1024;
const MAX_DIM_COUNT = 3;

function describeTypeId(id: number): string {
  const dtype = RWKVCPP_TYPE_IDS.get(id);
  if (dtype !== undefined) return dtype.toUpperCase();
  return RETIRED_TYPE_NAMES.get(id) ?? `unknown type id ${id}`;
}

function dtypeOf(id: number, version: number, file: string, tensor?: string): DType {
  const where = tensor !== undefined ? { file, tensor } : { file };
  const dtype = RWKVCPP_TYPE_IDS.get(id);
  if (dtype === undefined) {
    const name = RETIRED_TYPE_NAMES.get(id);
    const what = name !== undefined ? `data type ${name} (id ${id}) is not supported` : `unknown data type id ${id}`;
    throw new FormatError('UNSUPPORTED_DTYPE', `${what}; supported: FP32, FP16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0`, where);
  }
  if (version === 100 && DTYPES[dtype].quantized) {
    throw new FormatError(
      'UNSUPPORTED_DTYPE',
      `${dtype.toUpperCase()} in a version-100 file uses ggml's old block layout; re-quantize from an FP32/FP16 file`,
      where,
    );
  }
  return dtype;
}

/**
 * Reads every tensor of an rwkv.cpp file (a path, URL, Blob, buffer or ByteSource) into its own buffer
 * from `allocate` (one copy of the weights, read straight from the source; nothing decoded). Rejects with
 * a FormatError naming the file and tensor at fault.
 */
export function readRwkvCpp(source: ByteSourceInput, allocate: TensorAllocator = defaultAllocator, options: ReadOptions = {}): Promise<RwkvCppFile> {
  return withReader(source, options, (reader) => readRwkvCppFrom(reader, allocate));
}

export async function readRwkvCppFrom(reader: SourceReader, allocate: TensorAllocator): Promise<RwkvCppFile> {
  const file = reader.name;
  if (reader.size === 0) throw new FormatError('TRUNCATED', 'file is empty', { file });
  if (reader.size < 24) {
    throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes, the header alone is 24`, { file });
  }
  const hv = viewOf(await reader.read(0, 24, { field: 'header' }));
  const magic = hv.getUint32(0, true);
  if (magic !== RWKVCPP_MAGIC) {
    throw new FormatError(
      'BAD_MAGIC',
      `not an rwkv.cpp model file (magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x${RWKVCPP_MAGIC.toString(16)})`,
      { file },
    );
  }
  const header: RwkvCppHeader = {
    version: hv.getInt32(4, true),
    nVocab: hv.getInt32(8, true),
    nEmbd: hv.getInt32(12, true),
    nLayer: hv.getInt32(16, true),
    dataType: hv.getInt32(20, true),
  };
  if (!(RWKVCPP_VERSIONS as readonly number[]).includes(header.version)) {
    throw new FormatError(
      'UNSUPPORTED_VERSION',
      `rwkv.cpp file version ${header.version} is not supported (supported: ${RWKVCPP_VERSIONS.join(', ')})`,
      { file },
    );
  }
  for (const [field, value] of [
    ['n_vocab', header.nVocab],
    ['n_embd', header.nEmbd],
    ['n_layer', header.nLayer],
  ] as const) {
    if (value <= 0) throw new FormatError('BAD_HEADER', `header field ${field} is ${value}, must be positive`, { file });
  }
  if (!RWKVCPP_TYPE_IDS.has(header.dataType)) {
    throw new FormatError('UNSUPPORTED_DTYPE', `header data type ${describeTypeId(header.dataType)} is not supported`, {
      file,
    });
  }

  const tensors = new Map<string, Tensor>();
  let pos = 24;
  while (pos < reader.size) {
    const index = tensors.size;
    const field = `tensor #${index} header`;
    const fixed = viewOf(await reader.read(pos, 12, { field }));
    const dimCount = fixed.getInt32(0, true);
    const keyLength = fixed.getInt32(4, true);
    const typeId = fixed.getInt32(8, true);
    pos += 12;
    if (dimCount < 1 || dimCount > MAX_DIM_COUNT) {
      throw new FormatError('BAD_HEADER', `${field}: dim_count ${dimCount} is outside 1..${MAX_DIM_COUNT}`, { file });
    }
    if (keyLength < 1 || keyLength > MAX_KEY_LENGTH) {
      throw new FormatError('BAD_HEADER', `${field}: key_length ${keyLength} is outside 1..${MAX_KEY_LENGTH}`, { file });
    }
    const dimBytes = viewOf(await reader.read(pos, 4 * dimCount, { field }));
    pos += 4 * dimCount;
    const ggmlDims: number[] = [];
    for (let i = 0; i < dimCount; i++) ggmlDims.push(dimBytes.getInt32(4 * i, true));
    const name = decodeKey(await reader.read(pos, keyLength, { field }), file, index);
    pos += keyLength;

    const dtype = dtypeOf(typeId, header.version, file, name);
    for (const d of ggmlDims) {
      if (d <= 0) throw new FormatError('BAD_HEADER', `dimension ${d} in shape ${ggmlDims.join('x')}`, { file, tensor: name });
    }
    const count = elementCount(ggmlDims);
    const bytes = byteSize(dtype, count);
    if (bytes === undefined || ggmlDims[0]! % DTYPES[dtype].blockSize !== 0) {
      throw new FormatError(
        'BAD_HEADER',
        `row length ${ggmlDims[0]} is not a multiple of ${dtype.toUpperCase()}'s block of ${DTYPES[dtype].blockSize}`,
        { file, tensor: name },
      );
    }
    // Check the declared size against the file before allocating anything.
    if (pos + bytes > reader.size) {
      throw new FormatError(
        'TRUNCATED',
        `file is truncated: the data needs bytes up to ${pos + bytes}, the file has ${reader.size}`,
        { file, tensor: name },
      );
    }
    if (tensors.has(name)) throw new FormatError('BAD_HEADER', 'appears twice', { file, tensor: name });
    const data = allocate(bytes);
    await reader.readInto(data, pos, { tensor: name });
    pos += bytes;
    // ggml lists dimensions innermost first; PyTorch order is the reverse.
    tensors.set(name, { name, dtype, shape: ggmlDims.slice().reverse(), data });
  }
  if (tensors.size === 0) throw new FormatError('TRUNCATED', 'the file holds a header but no tensors', { file });
  return {
    format: 'rwkv.cpp',
    file,
    encoding: 'rwkvcpp',
    header,
    tensors,
    declared: { nVocab: header.nVocab, nEmbd: header.nEmbd, nLayer: header.nLayer },
  };
}

function decodeKey(bytes: Uint8Array, file: string, index: number): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError('BAD_HEADER', `tensor #${index} has a name that is not valid UTF-8`, { file });
  }
}
