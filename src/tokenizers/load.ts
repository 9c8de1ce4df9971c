// Finding and reading tokenizers: by an explicit spec (a file, or 'bytes'), or by the model's vocabulary
// size. The file format is told by content, not by name. This is the only tokenizer module that touches
// the file system; world.ts and bpe.ts build from text, so they also run in a browser.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, FormatError, RwkvError } from '../errors.js';
import { BpeTokenizer } from './bpe.js';
import { ByteTokenizer } from './bytes.js';
import type { Tokenizer } from './tokenizer.js';
import { WorldTokenizer } from './world.js';

/** The tokenizers a model's vocabulary size implies, and the file each needs. */
export const KNOWN_VOCABULARIES: readonly { vocabSize: number; name: string; file: string | undefined }[] = [
  { vocabSize: 256, name: 'byte-level', file: undefined },
  { vocabSize: 65536, name: 'RWKV World', file: 'rwkv_vocab_v20230424.txt' },
  { vocabSize: 50277, name: 'GPT-NeoX 20B', file: '20B_tokenizer.json' },
];

/**
 * `spec` is 'bytes' (the byte-level tokenizer) or the path of a tokenizer file: an RWKV World vocabulary
 * (rwkv_vocab_v20230424.txt) or a Hugging Face tokenizer.json, told apart by content. (A file that is
 * really named `bytes` can be given as `./bytes`.)
 */
export function loadTokenizer(spec: string): Tokenizer {
  if (spec === 'bytes') return new ByteTokenizer();
  const data = readFile(spec);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    if (looksLikeWorld(data)) {
      throw new FormatError('BAD_HEADER', `line ${firstInvalidUtf8Line(data)}: not valid UTF-8`, { file: spec });
    }
    throw new FormatError('BAD_MAGIC', 'not a tokenizer: neither an RWKV World vocabulary nor a tokenizer.json (not UTF-8 text)', { file: spec });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (/^\s*\{/.test(text)) return BpeTokenizer.fromJson(text, spec);
  if (/^\d+ /.test(text)) return WorldTokenizer.fromVocabText(text, spec);
  throw new FormatError(
    'BAD_MAGIC',
    "not a tokenizer: neither an RWKV World vocabulary (lines like \"1 '\\x00' 1\") nor a Hugging Face tokenizer.json",
    { file: spec },
  );
}

/**
 * The tokenizer for a model with `vocabSize` ids: `spec` when given (checked to fit the model), otherwise
 * chosen by the vocabulary size (256 → bytes, 65536 → World, 50277 → GPT-NeoX 20B), its file looked for
 * in `searchDirs` in order. Refuses, naming the file it needs, when it cannot find one.
 */
export function tokenizerForModel(vocabSize: number, spec: string | undefined, searchDirs: readonly string[]): Tokenizer {
  if (spec !== undefined) {
    const tokenizer = loadTokenizer(spec);
    if (tokenizer.vocabSize > vocabSize) {
      throw new ArgumentError(
        `the tokenizer ${spec} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${vocabSize}`,
      );
    }
    return tokenizer;
  }
  const known = KNOWN_VOCABULARIES.find((k) => k.vocabSize === vocabSize);
  if (known === undefined) {
    throw new ArgumentError(
      `no tokenizer is known for a vocabulary of ${vocabSize} (known: 256 bytes, 65536 RWKV World, 50277 GPT-NeoX 20B); give one with --tokenizer FILE`,
    );
  }
  if (known.file === undefined) return new ByteTokenizer();
  for (const dir of searchDirs) {
    const candidate = path.join(dir, known.file);
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return loadTokenizer(candidate);
  }
  const where = searchDirs.length === 0 ? 'no directory was searched' : `not found in ${searchDirs.join(', ')}`;
  throw new RwkvError(
    'FILE_NOT_FOUND',
    `the model has a vocabulary of ${vocabSize} (${known.name}) and needs the tokenizer file ${known.file} (${where}); give it with --tokenizer FILE`,
  );
}

function readFile(file: string): Uint8Array {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RwkvError('FILE_NOT_FOUND', code === 'ENOENT' ? 'no such tokenizer file' : `cannot open (${code ?? String(e)})`, { file });
  }
  if (!stat.isFile()) throw new RwkvError('NOT_A_FILE', 'is not a regular file, not a tokenizer file', { file });
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new RwkvError('FILE_NOT_FOUND', `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
  }
}

function looksLikeWorld(data: Uint8Array): boolean {
  return data.length > 0 && data[0]! >= 0x30 && data[0]! <= 0x39;
}

function firstInvalidUtf8Line(data: Uint8Array): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  let start = 0;
  for (let i = 0; i <= data.length; i++) {
    if (i === data.length || data[i] === 0x0a) {
      try {
        decoder.decode(data.subarray(start, i));
      } catch {
        return line;
      }
      line++;
      start = i + 1;
    }
  }
  return line;
}
