// Finding and reading tokenizers: by an explicit spec (a file, 'bytes', a URL, a Blob, bytes), or by the
// model's vocabulary size. The file format is told by content, not by name. This is the only tokenizer
// module that touches the file system, through node:fs imported when a path is read (never statically);
// world.ts and bpe.ts build from text, and tokenizerFromBytes from bytes, so they also run in a browser.
import { ArgumentError, FormatError, RwkvError } from '../errors.js';
import { filePathOf, openByteSource, type ByteSourceInput } from '../formats/byte-source.js';
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

/** A tokenizer as an option: a Tokenizer, 'bytes', or where a tokenizer file is (a path, a URL, a Blob, its bytes). */
export type TokenizerSpec = Tokenizer | ByteSourceInput;

/** Whether `x` is a Tokenizer itself (rather than where to find one). */
export function isTokenizer(x: unknown): x is Tokenizer {
  if (typeof x !== 'object' || x === null) return false;
  const t = x as Partial<Tokenizer>;
  return typeof t.encode === 'function' && typeof t.decodeBytes === 'function' && typeof t.vocabSize === 'number';
}

/**
 * `spec` is 'bytes' (the byte-level tokenizer) or a tokenizer file — a path, a URL, a Blob or File, or
 * its bytes: an RWKV World vocabulary (rwkv_vocab_v20230424.txt) or a Hugging Face tokenizer.json, told
 * apart by content. (A file that is really named `bytes` can be given as `./bytes`.)
 */
export async function loadTokenizer(spec: ByteSourceInput): Promise<Tokenizer> {
  if (spec === 'bytes') return new ByteTokenizer();
  const file = await filePathOf(spec);
  if (file !== undefined) return tokenizerFromBytes(await readFile(file), file);
  const source = await openByteSource(spec);
  try {
    return tokenizerFromBytes(await source.read(0, source.size), source.name);
  } finally {
    if (source !== spec) await source.close();
  }
}

/**
 * A tokenizer from the bytes of its file (an RWKV World vocabulary or a tokenizer.json, told apart by
 * content); `spec` names it in errors. Synchronous, and runs anywhere.
 */
export function tokenizerFromBytes(data: Uint8Array, spec = 'tokenizer'): Tokenizer {
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
 * in `searchDirs` in order (directories of the file system). Refuses, naming the file it needs, when it
 * cannot find one; `hint` is how the message says to give one (default: "give it with --tokenizer FILE").
 */
export async function tokenizerForModel(
  vocabSize: number,
  spec: TokenizerSpec | undefined,
  searchDirs: readonly string[],
  hint = 'give it with --tokenizer FILE',
): Promise<Tokenizer> {
  if (spec !== undefined) {
    const tokenizer = isTokenizer(spec) ? spec : await loadTokenizer(spec);
    if (tokenizer.vocabSize > vocabSize) {
      const name = typeof spec === 'string' ? spec : tokenizer.name;
      throw new ArgumentError(`the tokenizer ${name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${vocabSize}`);
    }
    return tokenizer;
  }
  const known = KNOWN_VOCABULARIES.find((k) => k.vocabSize === vocabSize);
  if (known === undefined) {
    throw new ArgumentError(
      `no tokenizer is known for a vocabulary of ${vocabSize} (known: 256 bytes, 65536 RWKV World, 50277 GPT-NeoX 20B); ${hint.replace(/\bit\b/, 'one')}`,
    );
  }
  if (known.file === undefined) return new ByteTokenizer();
  if (searchDirs.length > 0) {
    const fs = await import('node:fs');
    const path = await import('node:path');
    for (const dir of searchDirs) {
      const candidate = path.join(dir, known.file);
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return loadTokenizer(candidate);
    }
  }
  const where = searchDirs.length === 0 ? 'no directory was searched' : `not found in ${searchDirs.join(', ')}`;
  throw new RwkvError('FILE_NOT_FOUND', `the model has a vocabulary of ${vocabSize} (${known.name}) and needs the tokenizer file ${known.file} (${where}); ${hint}`);
}

async function readFile(file: string): Promise<Uint8Array> {
  const fs = await import('node:fs');
  let stat: import('node:fs').Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RwkvError('FILE_NOT_FOUND', code === 'ENOENT' ? 'no such tokenizer file' : `cannot open (${code ?? String(e)})`, { file });
  }
  if (!stat.isFile()) throw new RwkvError('NOT_A_FILE', 'is not a regular file, not a tokenizer file', { file });
  try {
    return await fs.promises.readFile(file);
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
