// Opens a checkpoint of any supported container format, told apart by its first bytes.
import { FormatError } from '../errors.js';
import { FileReader } from './file-reader.js';
import { readRwkvCpp, RWKVCPP_MAGIC } from './rwkvcpp.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';

export function openCheckpoint(path: string, allocate: TensorAllocator = defaultAllocator): TensorSource {
  const reader = FileReader.open(path);
  let magic: number;
  try {
    if (reader.size === 0) throw new FormatError('TRUNCATED', 'file is empty', { file: path });
    if (reader.size < 4) throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes`, { file: path });
    magic = new DataView(reader.read(0, 4, { field: 'magic' }).buffer).getUint32(0, true);
  } finally {
    reader.close();
  }
  if (magic === RWKVCPP_MAGIC) return readRwkvCpp(path, allocate);
  throw new FormatError(
    'BAD_MAGIC',
    `unrecognised file format (first bytes 0x${magic.toString(16).padStart(8, '0')}); supported: rwkv.cpp .bin`,
    { file: path },
  );
}
