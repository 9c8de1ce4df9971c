// Training data: text files (or directories of them) → token ids → one binary token file, reused by
// later runs while its sources and tokenizer are unchanged; a held-out split at the end of the stream;
// random windows drawn by a seeded generator (saved with a checkpoint, so a resumed run draws the same).
//
// Token file (little-endian):
//   "RWKVTOKS" | u32 JSON length J | J bytes of JSON header | zero padding to a multiple of 4 | tokens
//   [| mask: one byte per token, 1 = the token is a training target, 0 = not (version 2, when header.mask)]
// The header: { version: 2, tokenizer, vocabSize, dtype: 'u16' | 'u32', count, sources: [{ path, size,
// mtimeMs }], mask: boolean, chatTemplate: { user, assistant, system } | null }. Each source file is
// tokenized on its own and the ids concatenated in path order. Text files are tokenized as they are (every
// token trained); .jsonl files are read by chat-data.ts ({"text"} lines trained, {"messages"} lines
// trained on the assistant's answers only), and the file then carries a mask (over all its tokens, text
// files' included) and the chat template it was rendered with (so that another template re-tokenizes).
// Version 1 (no mask, no template) still reads.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, FormatError, RwkvError } from '../errors.js';
import { FileWriter } from '../formats/writer.js';
import { CHAT_TEMPLATES, type ChatTemplate } from '../generation/chat-template.js';
import type { Rng } from '../util/rng.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { isBlank, isJsonlFile, tokenizeJsonl } from './chat-data.js';

const MAGIC = 'RWKVTOKS';

export interface TokenSource {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface TokenFileHeader {
  version: 1 | 2;
  tokenizer: string;
  vocabSize: number;
  dtype: 'u16' | 'u32';
  count: number;
  sources: TokenSource[];
  /** Version 2: whether a mask section (one byte per token) follows the tokens. */
  mask?: boolean;
  /** Version 2: the chat template .jsonl conversations were rendered with; null when no source was .jsonl. */
  chatTemplate?: { user: string; assistant: string; system: string | null } | null;
}

export interface TokenData {
  header: TokenFileHeader;
  tokens: Uint16Array | Uint32Array;
  /** Per token, 1 when it is a training target, 0 when not; absent: every token is. */
  mask?: Uint8Array;
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
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw bad('the JSON header is not an object');
  if (header.version !== 1 && header.version !== 2) {
    throw new FormatError('UNSUPPORTED_VERSION', `token file version ${JSON.stringify(header.version)}; this build reads versions 1 and 2`, { file });
  }
  if ((header.dtype !== 'u16' && header.dtype !== 'u32') || !Number.isSafeInteger(header.count) || header.count < 0) {
    throw bad('unsupported header');
  }
  if (header.mask !== undefined && typeof header.mask !== 'boolean') throw bad('"mask" must be true or false');
  const hasMask = header.version === 2 && header.mask === true;
  const start = Math.ceil((12 + j) / 4) * 4;
  const size = header.dtype === 'u16' ? 2 : 4;
  const end = start + header.count * size;
  if (end + (hasMask ? header.count : 0) !== buf.length) {
    const held = Math.floor(Math.max(0, buf.length - start) / (size + (hasMask ? 1 : 0)));
    throw new FormatError('TRUNCATED', `the header says ${header.count} tokens${hasMask ? ' and a mask' : ''}; the file holds ${held}`, { file });
  }
  // Copy into an aligned buffer of its own.
  const bytes = new Uint8Array(header.count * size);
  bytes.set(buf.subarray(start, end));
  const tokens = header.dtype === 'u16' ? new Uint16Array(bytes.buffer) : new Uint32Array(bytes.buffer);
  if (!hasMask) return { header, tokens, file, reused: true };
  const mask = new Uint8Array(buf.subarray(end, end + header.count));
  const badAt = mask.findIndex((m) => m > 1);
  if (badAt >= 0) throw new FormatError('BAD_HEADER', `the mask of token ${badAt} is ${mask[badAt]}, not 0 or 1`, { file });
  return { header, tokens, mask, file, reused: true };
}

function templateKey(template: ChatTemplate): { user: string; assistant: string; system: string | null } {
  return { user: template.user, assistant: template.assistant, system: template.system ?? null };
}

function sameTemplate(a: TokenFileHeader['chatTemplate'], b: TokenFileHeader['chatTemplate']): boolean {
  if (a === undefined || a === null || b === undefined || b === null) return (a ?? null) === (b ?? null);
  return a.user === b.user && a.assistant === b.assistant && (a.system ?? null) === (b.system ?? null);
}

/**
 * One data file's ids, and their mask when it is .jsonl (see chat-data.ts). An empty file (no bytes, or
 * only whitespace) is an error naming it; so is a bad JSONL line (naming the file and the line).
 */
export function tokenizeDataFile(
  file: string,
  tokenizer: Tokenizer,
  chatTemplate: ChatTemplate = CHAT_TEMPLATES.world!,
): { ids: number[]; mask: Uint8Array | undefined } {
  const bytes = fs.readFileSync(file);
  if (isJsonlFile(file)) return tokenizeJsonl(bytes, file, tokenizer, chatTemplate);
  if (isBlank(bytes)) throw new FormatError('BAD_DATA', 'the file is empty: no text to train on', { file });
  return { ids: tokenizer.encodeBytes(bytes), mask: undefined };
}

/** Tokenizes `files` one by one into a token file at `out` (atomically: temp file + rename). */
export function writeTokenFile(
  files: readonly string[],
  tokenizer: Tokenizer,
  tokenizerSpec: string,
  out: string,
  onFile?: (file: string, tokens: number) => void,
  chatTemplate: ChatTemplate = CHAT_TEMPLATES.world!,
): TokenData {
  const dtype = tokenizer.vocabSize <= 65536 ? 'u16' : 'u32';
  const chunks: (Uint16Array | Uint32Array)[] = [];
  const masks: (Uint8Array | undefined)[] = [];
  let count = 0;
  // The sources as they are before reading, so that a file changed meanwhile is re-read next time.
  const sources = sourcesOf(files);
  const withMask = files.some(isJsonlFile);
  for (const f of files) {
    const { ids, mask } = tokenizeDataFile(f, tokenizer, chatTemplate);
    const a = dtype === 'u16' ? Uint16Array.from(ids) : Uint32Array.from(ids);
    chunks.push(a);
    masks.push(mask);
    count += a.length;
    onFile?.(f, a.length);
  }
  const header: TokenFileHeader = {
    version: 2,
    tokenizer: tokenizerSpec,
    vocabSize: tokenizer.vocabSize,
    dtype,
    count,
    sources,
    mask: withMask,
    chatTemplate: withMask ? templateKey(chatTemplate) : null,
  };
  let allMask: Uint8Array | undefined;
  if (withMask) {
    allMask = new Uint8Array(count).fill(1); // text files: every token trained
    let o = 0;
    chunks.forEach((c, i) => {
      if (masks[i] !== undefined) allMask!.set(masks[i]!, o);
      o += c.length;
    });
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const head = Buffer.alloc(Math.ceil((12 + json.length) / 4) * 4);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  json.copy(head, 12);
  const w = FileWriter.create(out);
  try {
    w.write(head);
    for (const c of chunks) w.write(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    if (allMask !== undefined) w.write(allMask);
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
  return allMask !== undefined ? { header, tokens, mask: allMask, file: out, reused: false } : { header, tokens, file: out, reused: false };
}

function sameSources(a: readonly TokenSource[], b: readonly TokenSource[]): boolean {
  return a.length === b.length && a.every((s, i) => s.path === b[i]!.path && s.size === b[i]!.size && s.mtimeMs === b[i]!.mtimeMs);
}

/**
 * The tokens of `data`: a token file given as the only entry is read as is (with its mask, if any);
 * otherwise the data files (less `cache` and `exclude`) are tokenized into `cache` — text files as they
 * are, .jsonl files as chat-data.ts reads them, rendering conversations with `chatTemplate` — or `cache` is
 * reused when it was made from the same files (path, size, mtime) with the same tokenizer (and, when a
 * source is .jsonl, the same chat template). `mask` is set when a source was .jsonl.
 */
export function prepareTokens(
  data: readonly string[],
  tokenizer: Tokenizer,
  tokenizerSpec: string,
  cache: string,
  onFile?: (file: string, tokens: number) => void,
  exclude: readonly string[] = [],
  chatTemplate: ChatTemplate = CHAT_TEMPLATES.world!,
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
    const withMask = files.some(isJsonlFile);
    if (
      d.header.tokenizer === tokenizerSpec &&
      d.header.vocabSize === tokenizer.vocabSize &&
      sameSources(d.header.sources, sourcesOf(files)) &&
      (d.mask !== undefined) === withMask &&
      sameTemplate(d.header.chatTemplate ?? null, withMask ? templateKey(chatTemplate) : null)
    ) {
      return d;
    }
  }
  return writeTokenFile(files, tokenizer, tokenizerSpec, cache, onFile, chatTemplate);
}

function checkVocab(d: TokenData, tokenizer: Tokenizer): void {
  if (d.header.vocabSize > tokenizer.vocabSize) {
    throw new ArgumentError(`${d.file} was made with a vocabulary of ${d.header.vocabSize}, more than the tokenizer's ${tokenizer.vocabSize}`);
  }
}

export interface Split {
  train: Uint16Array | Uint32Array;
  val: Uint16Array | Uint32Array;
  /** The mask's halves, aligned with `train` and `val`, when splitTokens was given a mask. */
  trainMask?: Uint8Array;
  valMask?: Uint8Array;
}

/**
 * The last `valFraction` of the stream is held out (at least one window's worth when there is room).
 * With `mask` (one entry per token), the split carries its halves as `trainMask` and `valMask`.
 */
export function splitTokens(tokens: Uint16Array | Uint32Array, valFraction: number, context: number, mask?: Uint8Array): Split {
  if (mask !== undefined && mask.length !== tokens.length) {
    throw new ArgumentError(`the mask has ${mask.length} entries for ${tokens.length} tokens`);
  }
  if (!(valFraction >= 0 && valFraction < 1)) throw new ArgumentError(`the held-out fraction must be in [0, 1), got ${valFraction}`);
  let nVal = Math.floor(tokens.length * valFraction);
  if (valFraction > 0 && nVal < context + 1 && tokens.length >= 3 * (context + 1)) nVal = context + 1;
  const train = tokens.subarray(0, tokens.length - nVal);
  if (train.length < context + 1) {
    throw new ArgumentError(`the training split has ${train.length} tokens, fewer than one window of --context ${context} + 1`);
  }
  const val = tokens.subarray(tokens.length - nVal);
  if (mask === undefined) return { train, val };
  // The first token is never a target; the rest of the training split must hold at least one that is.
  if (mask.subarray(1, train.length).indexOf(1) < 0) {
    throw new ArgumentError(`the training split (${train.length} tokens) has no token the loss mask trains on (no assistant answer)`);
  }
  return { train, val, trainMask: mask.subarray(0, train.length), valMask: mask.subarray(train.length) };
}

export interface Batch {
  /** b × t input ids (row-major) */
  ids: Int32Array;
  /** the same shifted by one: the ids to predict; -1 where the mask says the token is not a target (no loss) */
  targets: Int32Array;
}

function checkMask(tokens: Uint16Array | Uint32Array, mask: Uint8Array | undefined): void {
  if (mask !== undefined && mask.length !== tokens.length) {
    throw new ArgumentError(`the mask has ${mask.length} entries for ${tokens.length} tokens`);
  }
}

/**
 * The windows of `t + 1` tokens at `starts` as one batch (row s from starts[s]): ids and targets, a target
 * -1 where `mask` (aligned with `tokens`) is 0 at the target token.
 */
export function windowBatch(tokens: Uint16Array | Uint32Array, starts: ArrayLike<number>, t: number, mask?: Uint8Array): Batch {
  checkMask(tokens, mask);
  const rows = starts.length;
  const ids = new Int32Array(rows * t);
  const targets = new Int32Array(rows * t);
  for (let s = 0; s < rows; s++) {
    const start = starts[s]!;
    for (let p = 0; p < t; p++) {
      ids[s * t + p] = tokens[start + p]!;
      targets[s * t + p] = mask !== undefined && mask[start + p + 1] === 0 ? -1 : tokens[start + p + 1]!;
    }
  }
  return { ids, targets };
}

/**
 * `b` windows of `t + 1` tokens at uniformly random starts, drawn with `rng` (the same draws with or
 * without a mask). With `mask` (aligned with `tokens`), a target whose token is not trained is -1.
 */
export function randomBatch(tokens: Uint16Array | Uint32Array, b: number, t: number, rng: Rng, mask?: Uint8Array): Batch {
  checkMask(tokens, mask);
  const n = tokens.length - t; // start ∈ [0, len − t − 1]
  const starts = new Array<number>(b);
  for (let s = 0; s < b; s++) starts[s] = rng.nextU32() % n;
  return windowBatch(tokens, starts, t, mask);
}

/**
 * Fixed evaluation batches: consecutive non-overlapping windows from the start of `tokens`, at most
 * `maxBatches` batches of `b` windows (the last batch may be smaller). With `mask` (aligned with
 * `tokens`), a target whose token is not trained is -1.
 */
export function evalBatches(
  tokens: Uint16Array | Uint32Array,
  b: number,
  t: number,
  maxBatches: number,
  mask?: Uint8Array,
): { batch: Batch; rows: number }[] {
  checkMask(tokens, mask);
  const windows = Math.min(Math.floor((tokens.length - 1) / t), b * maxBatches);
  const out: { batch: Batch; rows: number }[] = [];
  for (let w0 = 0; w0 < windows; w0 += b) {
    const rows = Math.min(b, windows - w0);
    const starts = Array.from({ length: rows }, (_, s) => (w0 + s) * t);
    out.push({ batch: windowBatch(tokens, starts, t, mask), rows });
  }
  return out;
}
