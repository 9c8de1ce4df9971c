// Writing PyTorch checkpoints (Node only: through the formats layer's atomic file writer): the zip
// layout torch.save produces, holding the pickle stateDictPickle (pth.ts) writes. The reader is pth.ts,
// which runs anywhere.
import { FormatError } from '../errors.js';
import { stateDictPickle, STORAGE_OF } from './pth.js';
import { FileWriter, type OutTensor } from './writer.js';
import { ZipWriter } from './zip.js';

/** Writes tensors (f32, f16, bf16) as a PyTorch checkpoint. */
export function writePth(path: string, tensors: readonly OutTensor[], archiveName = 'archive'): void {
  for (const t of tensors) {
    if (STORAGE_OF[t.dtype] === undefined) {
      throw new FormatError('UNSUPPORTED_DTYPE', `${t.dtype} cannot be stored in a .pth (f32, f16, bf16 only)`, { file: path, tensor: t.name });
    }
  }
  const out = FileWriter.create(path);
  try {
    const zip = new ZipWriter(out, 64);
    zip.add(`${archiveName}/data.pkl`, [stateDictPickle(tensors)]);
    zip.add(`${archiveName}/byteorder`, [new TextEncoder().encode('little')]);
    tensors.forEach((t, i) => zip.add(`${archiveName}/data/${i}`, [t.bytes()]));
    zip.add(`${archiveName}/version`, [new TextEncoder().encode('3\n')]);
    zip.finish();
    out.close();
  } catch (e) {
    out.abort();
    throw e;
  }
}
