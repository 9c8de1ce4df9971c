// Byte-level BPE from a Hugging Face tokenizer.json (GPT-2 style; the GPT-NeoX 20B tokenizer of the RWKV-4
// Pile models). Written by hand because the light JS library (@huggingface/tokenizers) gives other ids
// than the reference (Rust `tokenizers`) on some text: see docs/tokenizers.md. It follows the Rust crate
// step for step:
//   1. added tokens with normalized=false (<|endoftext|>) are cut out of the raw text, leftmost-longest;
//   2. each remaining piece is normalized (NFC), then added tokens with normalized=true (runs of spaces)
//      are cut out of it, leftmost-longest;
//   3. each remaining piece is split by GPT-2's regex, with the reference's \s, \p{L}, \p{N};
//   4. each chunk's UTF-8 bytes become symbols, merged by BPE in (rank, position) order.
// Only the configurations this needs are accepted; anything else is refused by name, never half-run.
import { ArgumentError, FormatError } from '../errors.js';
import type { Tokenizer } from './tokenizer.js';
import { LETTER, NFC_OPAQUE, NUMBER, WHITESPACE } from './unicode-tables.js';

/**
 * GPT-2's pre-tokenizer regex (tokenizers' ByteLevel), with the character classes pinned to the
 * reference's: JavaScript's own \s differs from Oniguruma's (U+0085, U+FEFF), and its \p{L} and \p{N}
 * follow whatever Unicode version the engine has.
 */
const L = `[${LETTER}]`;
const N = `[${NUMBER}]`;
const GPT2_SPLIT = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?${L}+| ?${N}+| ?[^${WHITESPACE}${LETTER}${NUMBER}]+|[${WHITESPACE}]+(?![^${WHITESPACE}])|[${WHITESPACE}]+`,
  'gu',
);

/** Characters the reference's normalizer does not know; normalization must leave them and not cross them. */
const OPAQUE = new RegExp(`[${NFC_OPAQUE}]`, 'u');
const OPAQUE_SPLIT = new RegExp(`([${NFC_OPAQUE}])`, 'u');

/**
 * String.normalize as the reference does it. The reference's Unicode tables are older than the engine's;
 * by Unicode's stability policy the two agree on text made only of characters both know, and a character
 * the reference does not know is inert there (a starter that composes with nothing), so the text is
 * normalized piecewise around such characters.
 */
function normalizeLikeReference(text: string, form: Normalization): string {
  if (!OPAQUE.test(text)) return text.normalize(form);
  return text
    .split(OPAQUE_SPLIT)
    .map((part, i) => (i % 2 === 1 ? part : part.normalize(form)))
    .join('');
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** GPT-2's bytes_to_unicode: every byte gets a printable character; printable ASCII and Latin-1 keep theirs. */
function bytesToUnicode(): string[] {
  const chars: string[] = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return chars;
}

// Compatibility forms (NFKC, NFKD) are not supported: their tables were not checked against the reference.
type Normalization = 'NFC' | 'NFD';

interface AddedToken {
  id: number;
  content: string;
}

/** Cuts added tokens out of text, leftmost-longest (the aho-corasick match kind tokenizers uses). */
class AddedTokenSplitter {
  private readonly byFirstUnit = new Map<number, AddedToken[]>();
  readonly empty: boolean;

  constructor(tokens: readonly AddedToken[]) {
    for (const t of tokens) {
      if (t.content === '') continue;
      const key = t.content.charCodeAt(0);
      const list = this.byFirstUnit.get(key) ?? [];
      list.push(t);
      this.byFirstUnit.set(key, list);
    }
    for (const list of this.byFirstUnit.values()) list.sort((a, b) => b.content.length - a.content.length);
    this.empty = this.byFirstUnit.size === 0;
  }

  /** Pieces of text (strings, never empty) and added-token ids (numbers), in order. */
  split(text: string): (string | number)[] {
    if (this.empty) return text === '' ? [] : [text];
    const out: (string | number)[] = [];
    let from = 0;
    for (let i = 0; i < text.length; ) {
      const candidates = this.byFirstUnit.get(text.charCodeAt(i));
      const hit = candidates?.find((t) => text.startsWith(t.content, i));
      if (hit === undefined) {
        i++;
        continue;
      }
      if (i > from) out.push(text.slice(from, i));
      out.push(hit.id);
      i += hit.content.length;
      from = i;
    }
    if (from < text.length) out.push(text.slice(from));
    return out;
  }
}

/** A binary min-heap of non-negative numbers (rank · 2^32 + position packs the merge order in one key). */
class MinHeap {
  private readonly a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }

  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1]! < a[c]!) c++;
        if (a[c]! >= last) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

const TWO32 = 2 ** 32;
const CACHE_LIMIT = 50_000;
const CACHE_MAX_CHUNK = 256;

export class BpeTokenizer implements Tokenizer {
  readonly name = 'bpe';
  /** One more than the largest id (50277 for the GPT-NeoX 20B tokenizer). */
  readonly vocabSize: number;
  readonly file: string | undefined;
  private readonly vocab: Map<string, number>;
  /** Bytes of each id (model vocabulary and added tokens), undefined for gaps. */
  private readonly idBytes: (Uint8Array | undefined)[];
  /** Vocabulary id of each byte's byte-level character. */
  private readonly byteSymbol: Int32Array;
  private readonly byteChar: string[];
  private readonly pairRank = new Map<number, number>();
  private readonly mergeResult: Int32Array;
  private readonly pairBase: number;
  private readonly normalization: Normalization | undefined;
  private readonly addPrefixSpace: boolean;
  private readonly useRegex: boolean;
  private readonly ignoreMerges: boolean;
  private readonly rawAdded: AddedTokenSplitter;
  private readonly normalizedAdded: AddedTokenSplitter;
  private readonly cache = new Map<string, number[]>();

  private constructor(json: unknown, file: string | undefined) {
    this.file = file;
    const bad = (message: string): FormatError =>
      new FormatError('UNSUPPORTED_VERSION', message, file === undefined ? {} : { file });
    const root = asObject(json, 'tokenizer.json', bad);

    for (const key of ['truncation', 'padding'] as const) {
      if (root[key] !== undefined && root[key] !== null) throw bad(`${key} is set; only tokenizers without ${key} are supported`);
    }

    const normalizer = root.normalizer;
    if (normalizer === undefined || normalizer === null) this.normalization = undefined;
    else {
      const type = asObject(normalizer, 'normalizer', bad).type;
      if (type !== 'NFC' && type !== 'NFD') {
        throw bad(`normalizer ${JSON.stringify(type)} is not supported (only NFC, NFD or none)`);
      }
      this.normalization = type;
    }

    const pre = asObject(root.pre_tokenizer, 'pre_tokenizer', bad);
    if (pre.type !== 'ByteLevel') throw bad(`pre_tokenizer ${JSON.stringify(pre.type)} is not supported (only ByteLevel)`);
    this.addPrefixSpace = pre.add_prefix_space === true;
    this.useRegex = pre.use_regex !== false;
    for (const key of ['decoder', 'post_processor'] as const) {
      const v = root[key];
      // A ByteLevel post-processor only adjusts offsets; any other (templates) would add ids.
      if (v !== undefined && v !== null && asObject(v, key, bad).type !== 'ByteLevel') {
        throw bad(`${key} ${JSON.stringify(asObject(v, key, bad).type)} is not supported (only ByteLevel or none)`);
      }
    }

    const model = asObject(root.model, 'model', bad);
    if (model.type !== undefined && model.type !== 'BPE') throw bad(`model ${JSON.stringify(model.type)} is not supported (only BPE)`);
    if (model.dropout !== undefined && model.dropout !== null) throw bad('BPE dropout is not supported');
    for (const key of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      if (model[key] !== undefined && model[key] !== null && model[key] !== '') throw bad(`BPE ${key} is not supported`);
    }
    if (model.byte_fallback === true) throw bad('BPE byte_fallback is not supported');
    this.ignoreMerges = model.ignore_merges === true;

    this.vocab = new Map();
    const tokenOfId = new Map<number, string>();
    for (const [token, id] of Object.entries(asObject(model.vocab, 'model.vocab', bad))) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffff) {
        throw bad(`model.vocab: ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not an integer in 0..16777215`);
      }
      const other = tokenOfId.get(id);
      if (other !== undefined) throw bad(`model.vocab: id ${id} is given to both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
      this.vocab.set(token, id);
      tokenOfId.set(id, token);
    }

    const added: (AddedToken & { normalized: boolean })[] = [];
    const addedList = root.added_tokens ?? [];
    if (!Array.isArray(addedList)) throw bad('added_tokens is not an array');
    for (const [i, entry] of addedList.entries()) {
      const t = asObject(entry, `added_tokens[${i}]`, bad);
      if (typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0 || t.id > 0xffffff || typeof t.content !== 'string') {
        throw bad(`added_tokens[${i}] needs an integer id and a string content`);
      }
      for (const flag of ['lstrip', 'rstrip', 'single_word'] as const) {
        if (t[flag] === true) throw bad(`added_tokens[${i}] (${JSON.stringify(t.content)}): ${flag} is not supported`);
      }
      // tokenizers' default for `normalized` is !special.
      const normalized = typeof t.normalized === 'boolean' ? t.normalized : t.special !== true;
      added.push({ id: t.id, content: t.content, normalized });
    }

    let maxId = -1;
    for (const id of tokenOfId.keys()) maxId = Math.max(maxId, id);
    for (const t of added) maxId = Math.max(maxId, t.id);
    this.vocabSize = maxId + 1;
    this.pairBase = maxId + 1;

    this.byteChar = bytesToUnicode();
    const charByte = new Map<string, number>();
    this.byteSymbol = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const c = this.byteChar[b]!;
      charByte.set(c, b);
      const id = this.vocab.get(c);
      // Every byte of UTF-8 text must be a symbol, or some text could not be encoded. (0xC0, 0xC1 and
      // 0xF5..0xFF never occur in UTF-8, and the 20B vocabulary lacks them.)
      const inUtf8 = b < 0xc0 || (b >= 0xc2 && b <= 0xf4);
      if (id === undefined && inUtf8) {
        throw bad(`model.vocab has no token for byte 0x${b.toString(16).padStart(2, '0')} (${JSON.stringify(c)}); not a byte-level BPE`);
      }
      this.byteSymbol[b] = id ?? -1;
    }

    // As tokenizers' ByteLevel decoder: a token made only of byte-level characters is those bytes, any
    // other (an added token such as '  ') is its own UTF-8.
    const tokenBytes = (token: string): Uint8Array => {
      const out = new Uint8Array(token.length);
      for (let i = 0; i < token.length; i++) {
        const b = charByte.get(token[i]!);
        if (b === undefined) return new TextEncoder().encode(token);
        out[i] = b;
      }
      return out;
    };
    this.idBytes = new Array<Uint8Array | undefined>(this.vocabSize);
    for (const [id, token] of tokenOfId) this.idBytes[id] = tokenBytes(token);
    for (const t of added) this.idBytes[t.id] = tokenBytes(t.content);

    const merges = model.merges ?? [];
    if (!Array.isArray(merges)) throw bad('model.merges is not an array');
    this.mergeResult = new Int32Array(merges.length);
    for (const [rank, m] of merges.entries()) {
      let pair: unknown[];
      if (typeof m === 'string') pair = m.split(' ');
      else if (Array.isArray(m)) pair = m;
      else throw bad(`model.merges[${rank}] is neither "a b" nor ["a", "b"]`);
      const [a, b] = pair;
      if (pair.length !== 2 || typeof a !== 'string' || typeof b !== 'string') throw bad(`model.merges[${rank}] is not a pair of tokens`);
      const ia = this.vocab.get(a);
      const ib = this.vocab.get(b);
      const ir = this.vocab.get(a + b);
      if (ia === undefined || ib === undefined || ir === undefined) {
        throw bad(`model.merges[${rank}] (${JSON.stringify(a)} ${JSON.stringify(b)}) uses a token that is not in model.vocab`);
      }
      // A repeated pair takes its later rank, as tokenizers' HashMap does.
      this.pairRank.set(ia * this.pairBase + ib, rank);
      this.mergeResult[rank] = ir;
    }

    const normalize = (s: string): string => (this.normalization === undefined ? s : normalizeLikeReference(s, this.normalization));
    this.rawAdded = new AddedTokenSplitter(added.filter((t) => !t.normalized));
    this.normalizedAdded = new AddedTokenSplitter(
      added.filter((t) => t.normalized).map((t) => ({ id: t.id, content: normalize(t.content) })),
    );
  }

  /** Builds the tokenizer from the text (or parsed JSON) of a tokenizer.json. */
  static fromJson(json: string | object, file?: string): BpeTokenizer {
    let parsed: unknown = json;
    if (typeof json === 'string') {
      try {
        parsed = JSON.parse(json);
      } catch (e) {
        throw new FormatError('BAD_MAGIC', `not valid JSON (${(e as Error).message})`, file === undefined ? {} : { file });
      }
    }
    return new BpeTokenizer(parsed, file);
  }

  encode(text: string): number[] {
    // Lone surrogates become U+FFFD, as TextEncoder (and so every other tokenizer here) makes them.
    const input = text.replace(LONE_SURROGATE, '\ufffd');
    const out: number[] = [];
    for (const piece of this.rawAdded.split(input)) {
      if (typeof piece === 'number') {
        out.push(piece);
        continue;
      }
      const normalized = this.normalization === undefined ? piece : normalizeLikeReference(piece, this.normalization);
      for (const part of this.normalizedAdded.split(normalized)) {
        if (typeof part === 'number') out.push(part);
        else this.encodePiece(part, out);
      }
    }
    return out;
  }

  /** The bytes must be valid UTF-8: BPE tokenizers work on text (the reference takes only str). */
  encodeBytes(bytes: Uint8Array): number[] {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      throw new ArgumentError(`the input is not valid UTF-8; the ${this.name} tokenizer${this.file === undefined ? '' : ` ${this.file}`} encodes text only`);
    }
    return this.encode(text);
  }

  decodeBytes(ids: readonly number[]): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of ids) {
      const bytes = Number.isInteger(id) && id >= 0 ? this.idBytes[id] : undefined;
      if (bytes === undefined) {
        throw new ArgumentError(`token id ${id} is not in the vocabulary${this.file === undefined ? '' : ` of ${this.file}`}`);
      }
      parts.push(bytes);
      total += bytes.length;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  private encodePiece(piece: string, out: number[]): void {
    // tokenizers' ByteLevel prepends a space to each piece that does not start with one.
    const text = this.addPrefixSpace && !piece.startsWith(' ') ? ` ${piece}` : piece;
    if (!this.useRegex) {
      this.encodeChunk(text, out);
      return;
    }
    GPT2_SPLIT.lastIndex = 0;
    for (let m = GPT2_SPLIT.exec(text); m !== null; m = GPT2_SPLIT.exec(text)) this.encodeChunk(m[0], out);
  }

  private encodeChunk(chunk: string, out: number[]): void {
    const cached = this.cache.get(chunk);
    if (cached !== undefined) {
      for (const id of cached) out.push(id);
      return;
    }
    const symbols = this.utf8Symbols(chunk);
    let ids: number[] | undefined;
    if (this.ignoreMerges) {
      let s = '';
      for (const b of new TextEncoder().encode(chunk)) s += this.byteChar[b]!;
      const whole = this.vocab.get(s);
      if (whole !== undefined) ids = [whole];
    }
    ids ??= this.merge(symbols);
    if (chunk.length <= CACHE_MAX_CHUNK) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(chunk, ids);
    }
    for (const id of ids) out.push(id);
  }

  /** The byte symbols of a chunk's UTF-8 encoding (encoded here: no per-chunk TextEncoder allocation). */
  private utf8Symbols(s: string): number[] {
    const sym = this.byteSymbol;
    const out: number[] = [];
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const lo = s.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
          i++;
        }
      }
      if (c < 0x80) out.push(sym[c]!);
      else if (c < 0x800) out.push(sym[0xc0 | (c >> 6)]!, sym[0x80 | (c & 0x3f)]!);
      else if (c < 0x10000) out.push(sym[0xe0 | (c >> 12)]!, sym[0x80 | ((c >> 6) & 0x3f)]!, sym[0x80 | (c & 0x3f)]!);
      else {
        out.push(sym[0xf0 | (c >> 18)]!, sym[0x80 | ((c >> 12) & 0x3f)]!, sym[0x80 | ((c >> 6) & 0x3f)]!, sym[0x80 | (c & 0x3f)]!);
      }
    }
    return out;
  }

  /**
   * BPE as tokenizers' Word::merge_all: repeatedly apply the pending merge of lowest (rank, position);
   * a pending merge whose pair has since changed is skipped unless the pair still yields the same token.
   */
  private merge(symbols: number[]): number[] {
    const n = symbols.length;
    if (n < 2) return symbols;
    const sym = Int32Array.from(symbols);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    const heap = new MinHeap();
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
      if (i + 1 < n) {
        const r = this.rank(sym[i]!, sym[i + 1]!);
        if (r >= 0) heap.push(r * TWO32 + i);
      }
    }
    while (heap.size > 0) {
      const key = heap.pop();
      const rank = Math.floor(key / TWO32);
      const pos = key - rank * TWO32;
      if (alive[pos] === 0) continue;
      const right = next[pos]!;
      if (right < 0) continue;
      const newId = this.mergeResult[rank]!;
      const current = this.rank(sym[pos]!, sym[right]!);
      if (current < 0 || this.mergeResult[current] !== newId) continue;
      sym[pos] = newId;
      alive[right] = 0;
      const after = next[right]!;
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos]!;
      if (before >= 0) {
        const r = this.rank(sym[before]!, newId);
        if (r >= 0) heap.push(r * TWO32 + before);
      }
      if (after >= 0) {
        const r = this.rank(newId, sym[after]!);
        if (r >= 0) heap.push(r * TWO32 + pos);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]!);
    return out;
  }

  private rank(a: number, b: number): number {
    return this.pairRank.get(a * this.pairBase + b) ?? -1;
  }
}

function asObject(v: unknown, what: string, bad: (message: string) => Error): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} is missing or not an object`);
  return v as Record<string, unknown>;
}
