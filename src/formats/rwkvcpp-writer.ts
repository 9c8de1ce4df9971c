// Writes rwkv.cpp model files (version 101; the layout is described in rwkvcpp.ts). Tensors are written
// in the order given, with their shapes reversed into ggml order. The caller supplies rwkv.cpp-encoded
// tensors (transform.ts) in a type rwkv.cpp knows: FP32, FP16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
import { FormatError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { RWKVCPP_MAGIC, RWKVCPP_TYPE_IDS } from './rwkvcpp.js';
import { FileWriter, type OutTensor } from './writer.js';

export interface RwkvCppWriteHeader {
  readonly nVocab: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  /** The file's main type (rwkv.cpp records it; quantized files name their quantization). */
  readonly dataType: DType;
}

function typeId(dtype: DType, file: string, tensor?: string): number {
  for (const [id, d] of RWKVCPP_TYPE_IDS) if (d === dtype) return id;
  throw new FormatError('UNSUPPORTED_DTYPE', `${dtype} cannot be stored in an rwkv.cpp file (FP32, FP16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)`, {
    file,
    ...(tensor !== undefined ? { tensor } : {}),
  });
}

export function writeRwkvCpp(path: string, header: RwkvCppWriteHeader, tensors: readonly OutTensor[]): void {
  const mainType = typeId(header.dataType, path);
  const enc = new TextEncoder();
  const w = FileWriter.create(path);
  try {
    const h = new DataView(new ArrayBuffer(24));
    h.setUint32(0, RWKVCPP_MAGIC, true);
    h.setInt32(4, 101, true);
    h.setInt32(8, header.nVocab, true);
    h.setInt32(12, header.nEmbd, true);
    h.setInt32(16, header.nLayer, true);
    h.setInt32(20, mainType, true);
    w.write(new Uint8Array(h.buffer));
    for (const t of tensors) {
      const id = typeId(t.dtype, path, t.name);
      if (t.shape.length < 1 || t.shape.length > 3) {
        throw new FormatError('BAD_SHAPE', `has ${t.shape.length} dimensions; rwkv.cpp files hold 1 to 3`, { file: path, tensor: t.name });
      }
      const key = enc.encode(t.name);
      const th = new DataView(new ArrayBuffer(12 + 4 * t.shape.length));
      th.setInt32(0, t.shape.length, true);
      th.setInt32(4, key.byteLength, true);
      th.setInt32(8, id, true);
      t.shape
        .slice()
        .reverse()
        .forEach((d, i) => th.setInt32(12 + 4 * i, d, true));
      w.write(new Uint8Array(th.buffer));
      w.write(key);
      w.writeTensor(t);
    }
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}
