// Opens a checkpoint of any supported container format, told apart by its first bytes (never by its
// name): rwkv.cpp 'ggmf', GGUF 'GGUF', a ZIP archive 'PK\3\4' (PyTorch), or safetensors (an 8-byte
// little-endian header length followed by '{'). The checkpoint may be a path, a URL, a Blob, bytes in
// memory or any ByteSource; it is opened once and read by the reader of its format.
import { FormatError } from '../errors.js';
import type { ByteSourceInput } from './byte-source.js';
import { GGUF_MAGIC, readGgufFrom } from './gguf.js';
import { looksLikeLegacyTorch, readPthFrom } from './pth.js';
import { readRwkvCppFrom, RWKVCPP_MAGIC } from './rwkvcpp.js';
import { looksLikeSafetensors, readSafetensorsFrom } from './safetensors.js';
import { viewOf, withReader, type ReadOptions, type SourceReader } from './source-reader.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';
import { looksLikeZip } from './zip.js';

export type CheckpointFormat = 'rwkv.cpp' | 'gguf' | 'pth' | 'safetensors';

async function formatOf(reader: SourceReader): Promise<CheckpointFormat> {
  const file = reader.name;
  if (reader.size === 0) throw new FormatError('TRUNCATED', 'file is empty', { file });
  if (reader.size < 4) throw new FormatError('TRUNCATED', `file is truncated: ${reader.size} bytes`, { file });
  const head = await reader.read(0, Math.min(reader.size, 16), { field: 'magic' });
  const magic = viewOf(head).getUint32(0, true);
  if (magic === RWKVCPP_MAGIC) return 'rwkv.cpp';
  if (magic === GGUF_MAGIC) return 'gguf';
  if (looksLikeZip(head)) return 'pth';
  if (looksLikeSafetensors(head)) return 'safetensors';
  if (looksLikeLegacyTorch(head)) {
    throw new FormatError(
      'UNSUPPORTED_VERSION',
      'a PyTorch checkpoint in the legacy (pre-1.6) format; re-save it with a current torch.save (a zip archive)',
      { file },
    );
  }
  throw new FormatError(
    'BAD_MAGIC',
    `unrecognised file format (first bytes 0x${magic.toString(16).padStart(8, '0')}); supported: rwkv.cpp .bin, GGUF, PyTorch .pth, safetensors`,
    { file },
  );
}

/** The container format of a checkpoint, from its first bytes. */
export function detectFormat(source: ByteSourceInput, options: ReadOptions = {}): Promise<CheckpointFormat> {
  return withReader(source, options, formatOf);
}

/**
 * Reads a checkpoint of any supported format from a path, a URL, a Blob, an ArrayBuffer, a Uint8Array or
 * a ByteSource: every tensor into its own buffer from `allocate`. `options.onProgress` hears how many
 * bytes have been read.
 */
export function openCheckpoint(source: ByteSourceInput, allocate: TensorAllocator = defaultAllocator, options: ReadOptions = {}): Promise<TensorSource> {
  return withReader(source, options, async (reader) => {
    switch (await formatOf(reader)) {
      case 'rwkv.cpp':
        return readRwkvCppFrom(reader, allocate);
      case 'gguf':
        return readGgufFrom(reader, allocate);
      case 'pth':
        return readPthFrom(reader, allocate);
      case 'safetensors':
        return readSafetensorsFrom(reader, allocate);
    }
  });
}
