// Writing safetensors files (Node only: through the formats layer's atomic file writer). The reader is
// safetensors.ts, which runs anywhere.
import { FormatError } from '../errors.js';
import { ST_NAMES } from './safetensors.js';
import { FileWriter, type OutTensor } from './writer.js';

/**
 * Writes tensors (f32, f16 or bf16) as safetensors, in the order given, with `metadata` as __metadata__
 * (`format: pt` is added, as transformers expects). The header is padded with spaces to a multiple of 8 so
 * that the data is aligned.
 */
export function writeSafetensors(path: string, tensors: readonly OutTensor[], metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  let offset = 0;
  for (const t of tensors) {
    const dt = ST_NAMES[t.dtype];
    if (dt === undefined) {
      throw new FormatError('UNSUPPORTED_DTYPE', `${t.dtype} cannot be stored in safetensors (F32, F16, BF16 only)`, {
        file: path,
        tensor: t.name,
      });
    }
    if (Object.prototype.hasOwnProperty.call(header, t.name)) throw new FormatError('BAD_HEADER', 'appears twice', { file: path, tensor: t.name });
    header[t.name] = { dtype: dt, shape: t.shape, data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const w = FileWriter.create(path);
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(json.byteLength), true);
    w.write(len);
    w.write(json);
    for (const t of tensors) w.writeTensor(t);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}
