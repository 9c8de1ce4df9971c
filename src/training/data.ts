// Training data: text files (or directories of them) → token ids → one binary token file, reused by
// later runs while its sources and tokenizer are unchanged; a held-out split at the end of the stream;
// random windows drawn by a seeded generator (saved with a checkpoint, so a resumed run draws the same).
//
// Token file (little-endian):
//   "RWKVTOKS" | u32 JSON length J | J bytes of JSON header | zero padding to a multiple of 4 | tokens
// The header: { version: 1, tokenizer, vocabSize, dtype: 'u16' | 'u32', count, sources: [{ path, size,
// mtimeMs }] }. Each source file is tokenized on its own and the ids concatenated in path order.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, FormatError, RwkvError } from '../errors.js';
import { FileWriter } from '../formats/writer.js';
import type { Rng } from '../util/rng.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

const MAGIC = 'RWKVTOKS';

export interface TokenSource {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface TokenFileHeader {
  version: 1;
  tokenizer: string;
  vocabSize: number;
  dtype: 'u16' | 'u32';
  count: number;
  sources: TokenSource[];
}

export interface TokenData {
  header: TokenFileHeader;
  tokens: Uint16Array | Uint32Array;
  /** The token file. */
  file: string;
  /** Whether it was reused rather than made now. */
  reused: boolean;
}

/** Whether `file` is a token file (by its magic). */
export function isTokenFile(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(8);
      return fs.readSync(fd, b, 0, 8, 0) === 8 && b.toString('latin1') === MAGIC;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The files named by `paths`: files as given, directories walked (sorted, hidden entries skipped). */
export function collectFiles(paths: readonly string[]): string[] {
  if (paths.length === 0) throw new ArgumentError('no training data given (--data FILE_OR_DIRECTORY ...)');
  const out: string[] = [];
  const walk = (p: string): void => {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new RwkvError('FILE_NOT_FOUND', 'no such file or directory', { file: p });
    }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) if (!e.startsWith('.')) walk(path.join(p, e));
    } else if (st.isFile()) out.push(path.resolve(p));
  };
  for (const p of paths) walk(p);
  if (out.length === 0) throw new ArgumentError(`no files found in ${paths.join(', ')}`);
  return out;
}

function sourcesOf(files: readonly string[]): TokenSource[] {
  return files.map((f) => {
    const st = fs.statSync(f);
    return { path: f, size: st.size, mtimeMs: st.mtimeMs };
  });
}

/** Reads a token file. */
export function readTokenFile(file: string): TokenData {
  const buf = fs.readFileSync(file);
  const bad = (msg: string): FormatError => new FormatError('BAD_HEADER', msg, { file });
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw new FormatError('BAD_MAGIC', 'not a token file', { file });
  const j = buf.readUInt32LE(8);
  if (12 + j > buf.length) throw new FormatError('TRUNCATED', 'the header runs past the end of the file', { file });
  let header: TokenFileHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + j)) as TokenFileHeader;
  } catch {
    throw bad('the JSON header does not parse');
  }
  if (header.version !== 1 || (header.dtype !== 'u16' && header.dtype !== 'u32') || !Number.isSafeInteger(header.count)) {
    throw bad('unsupported header');
  }
  const start = Math.ceil((12 + j) / 4) * 4;
  const size = header.dtype === 'u16' ? 2 : 4;
  if (start + header.count * size !== buf.length) {
    throw new FormatError('TRUNCATED', `the header says ${header.count} tokens; the file holds ${Math.floor((buf.length - start) / size)}`, { file });
  }
  // Copy into an aligned buffer of its own.
  const bytes = new Uint8Array(header.count * size);
  bytes.set(buf.subarray(start));
  const tokens = header.dtype === 'u16' ? new Uint16Array(bytes.buffer) : new Uint32Array(bytes.buffer);
  return { header, tokens, file, reused: true };
}

/** Tokenizes `files` one by one into a token file at `out` (atomically: temp file + rename). */
export function writeTokenFile(
  files: readonly string[],
  tokenizer: Tokenizer,
  tokenizerSpec: string,
  out: string,
  onFile?: (file: string, tokens: number) => void,
): TokenData {
  const dtype = tokenizer.vocabSize <= 65536 ? 'u16' : 'u32';
  const chunks: (Uint16Array | Uint32Array)[] = [];
  let count = 0;
  for (const f of files) {
    const ids = tokenizer.encodeBytes(fs.readFileSync(f));
    const a = dtype === 'u16' ? Uint16Array.from(ids) : Uint32Array.from(ids);
    chunks.push(a);
    count += a.length;
    onFile?.(f, a.length);
  }
  const header: TokenFileHeader = { version: 1, tokenizer: tokenizerSpec, vocabSize: tokenizer.vocabSize, dtype, count, sources: sourcesOf(files) };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const head = Buffer.alloc(Math.ceil((12 + json.length) / 4) * 4);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  json.copy(head, 12);
  const w = FileWriter.create(out);
  try {
    w.write(head);
    for (const c of chunks) w.write(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  const tokens = dtype === 'u16' ? new Uint16Array(count) : new Uint32Array(count);
  let o = 0;
  for (const c of chunks) {
    tokens.set(c, o);
    o += c.length;
  }
  return { header, tokens, file: out, reused: false };
}

function sameSources(a: readonly TokenSource[], b: readonly TokenSource[]): boolean {
  return a.length === b.length && a.every((s, i) => s.path === b[i]!.path && s.size === b[i]!.size && s.mtimeMs === b[i]!.mtimeMs);
}

/**
 * The tokens of `data`: a token file given as the only entry is read as is; otherwise the text files
 * (less `cache` and `exclude`) are tokenized into `cache`, or `cache` is reused when it was made from the
 * same files (path, size, mtime) with the same tokenizer.
 */
export function prepareTokens(
  data: readonly string[],
  tokenizer: Tokenizer,
  tokenizerSpec: string,
  cache: string,
  onFile?: (file: string, tokens: number) => void,
  exclude: readonly string[] = [],
): TokenData {
  if (data.length === 1 && isTokenFile(data[0]!)) {
    const d = readTokenFile(data[0]!);
    checkVocab(d, tokenizer);
    return d;
  }
  // Never the cache or the run's other files (a --data directory may hold the --out one).
  const skip = new Set([cache, ...exclude].map((f) => path.resolve(f)));
  const files = collectFiles(data).filter((f) => !skip.has(path.resolve(f)));
  if (files.length === 0) throw new ArgumentError(`no data files in ${data.join(', ')}`);
  if (fs.existsSync(cache) && isTokenFile(cache)) {
    const d = readTokenFile(cache);
    if (d.header.tokenizer === tokenizerSpec && d.header.vocabSize === tokenizer.vocabSize && sameSources(d.header.sources, sourcesOf(files))) return d;
  }
  return writeTokenFile(files, tokenizer, tokenizerSpec, cache, onFile);
}

function checkVocab(d: TokenData, tokenizer: Tokenizer): void {
  if (d.header.vocabSize > tokenizer.vocabSize) {
    throw new ArgumentError(`${d.file} was made with a vocabulary of ${d.header.vocabSize}, more than the tokenizer's ${tokenizer.vocabSize}`);
  }
}

export interface Split {
  train: Uint16Array | Uint32Array;
  val: Uint16Array | Uint32Array;
}

/** The last `valFraction` of the stream is held out (at least one window's worth when there is room). */
export function splitTokens(tokens: Uint16Array | Uint32Array, valFraction: number, context: number): Split {
  if (!(valFraction >= 0 && valFraction < 1)) throw new ArgumentError(`the held-out fraction must be in [0, 1), got ${valFraction}`);
  let nVal = Math.floor(tokens.length * valFraction);
  if (valFraction > 0 && nVal < context + 1 && tokens.length >= 3 * (context + 1)) nVal = context + 1;
  const train = tokens.subarray(0, tokens.length - nVal);
  if (train.length < context + 1) {
    throw new ArgumentError(`the training split has ${train.length} tokens, fewer than one window of --context ${context} + 1`);
  }
  return { train, val: tokens.subarray(tokens.length - nVal) };
}

export interface Batch {
  /** b × t input ids (row-major) */
  ids: Int32Array;
  /** the same shifted by one: the ids to predict */
  targets: Int32Array;
}

/** `b` windows of `t + 1` tokens at uniformly random starts, drawn with `rng`. */
export function randomBatch(tokens: Uint16Array | Uint32Array, b: number, t: number, rng: Rng): Batch {
  const ids = new Int32Array(b * t);
  const targets = new Int32Array(b * t);
  const starts = tokens.length - t; // start ∈ [0, len − t − 1]
  for (let s = 0; s < b; s++) {
    const start = rng.nextU32() % starts;
    for (let p = 0; p < t; p++) {
      ids[s * t + p] = tokens[start + p]!;
      targets[s * t + p] = tokens[start + p + 1]!;
    }
  }
  return { ids, targets };
}

/**
 * Fixed evaluation batches: consecutive non-overlapping windows from the start of `tokens`, at most
 * `maxBatches` batches of `b` windows (the last batch may be smaller).
 */
export function evalBatches(tokens: Uint16Array | Uint32Array, b: number, t: number, maxBatches: number): { batch: Batch; rows: number }[] {
  const windows = Math.min(Math.floor((tokens.length - 1) / t), b * maxBatches);
  const out: { batch: Batch; rows: number }[] = [];
  for (let w0 = 0; w0 < windows; w0 += b) {
    const rows = Math.min(b, windows - w0);
    const ids = new Int32Array(rows * t);
    const targets = new Int32Array(rows * t);
    for (let s = 0; s < rows; s++) {
      const start = (w0 + s) * t;
      for (let p = 0; p < t; p++) {
        ids[s * t + p] = tokens[start + p]!;
        targets[s * t + p] = tokens[start + p + 1]!;
      }
    }
    out.push({ batch: { ids, targets }, rows });
  }
  return out;
}
