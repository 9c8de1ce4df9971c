// Opens a checkpoint of any supported container format, told apart by its first bytes (never by its
// name): rwkv.cpp 'ggmf', GGUF 'GGUF', a ZIP archive 'PK\3\4' (PyTorch), or safetensors (an 8-byte
// little-endian header length followed by '{').
import { FormatError } from '../errors.js';
import { FileReader } from './file-reader.js';
import { GGUF_MAGIC, readGguf } from './gguf.js';
import { looksLikeLegacyTorch, readPth } from './pth.js';
import { readRwkvCpp, RWKVCPP_MAGIC } from './rwkvcpp.js';
import { looksLikeSafetensors, readSafetensors } from './safetensors.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';
import { looksLikeZip } from './zip.js';

export type CheckpointFormat = 'rwkv.cpp' | 'gguf' | 'pth' | 'safetensors';

/** The container format of a file, from its first bytes. */
export function detectFormat(path: string): CheckpointFormat {
  const reader = FileReader.open(path);
  let head: Uint8Array;
  try {
    if (reader.size === 0) throw new FormatError('TRUNCATED', 'file is empty', { file: path });
    if (reader.size < 4) throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes`, { file: path });
    head = reader.read(0, Math.min(reader.size, 16), { field: 'magic' });
  } finally {
    reader.close();
  }
  const magic = new DataView(head.buffer).getUint32(0, true);
  if (magic === RWKVCPP_MAGIC) return 'rwkv.cpp';
  if (magic === GGUF_MAGIC) return 'gguf';
  if (looksLikeZip(head)) return 'pth';
  if (looksLikeSafetensors(head)) return 'safetensors';
  if (looksLikeLegacyTorch(head)) {
    throw new FormatError(
      'UNSUPPORTED_VERSION',
      'a PyTorch checkpoint in the legacy (pre-1.6) format; re-save it with a current torch.save (a zip archive)',
      { file: path },
    );
  }
  throw new FormatError(
    'BAD_MAGIC',
    `unrecognised file format (first bytes 0x${magic.toString(16).padStart(8, '0')}); supported: rwkv.cpp .bin, GGUF, PyTorch .pth, safetensors`,
    { file: path },
  );
}

export function openCheckpoint(path: string, allocate: TensorAllocator = defaultAllocator): TensorSource {
  switch (detectFormat(path)) {
    case 'rwkv.cpp':
      return readRwkvCpp(path, allocate);
    case 'gguf':
      return readGguf(path, allocate);
    case 'pth':
      return readPth(path, allocate);
    case 'safetensors':
      return readSafetensors(path, allocate);
  }
}
