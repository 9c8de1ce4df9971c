// The RWKV World tokenizer: greedy longest match over UTF-8 bytes (not BPE), as RWKV-LM's
// rwkv_tokenizer.py TRIE_TOKENIZER does. The vocabulary file has one token per line:
//   <id> <Python str or bytes literal> <byte length>
// Tokens may end in the middle of a UTF-8 character, so decoding gives bytes, not text.
import { ArgumentError, FormatError } from '../errors.js';
import { parsePythonLiteral } from './python-literal.js';
import type { Tokenizer } from './tokenizer.js';

/** The id RWKV World models use for end of text; it is not in the vocabulary file and decodes to nothing. */
export const WORLD_END_OF_TEXT = 0;

const EMPTY_SLOT = -1;

/**
 * A byte trie. Children live in one open-addressing hash table keyed by (node << 8 | byte): a 256-way
 * array per node would take ~120 MB for the ~116k nodes of the World vocabulary; this takes ~4 MB.
 */
class ByteTrie {
  private keys: Int32Array;
  private children: Int32Array;
  private mask: number;
  private shift: number;
  private count = 0;
  /** Token id ending at each node, or -1. */
  tokenAt: Int32Array;
  nodeCount = 1;

  constructor(expectedNodes: number) {
    let cap = 1024;
    while (cap < expectedNodes * 2) cap *= 2;
    this.keys = new Int32Array(cap).fill(EMPTY_SLOT);
    this.children = new Int32Array(cap);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.tokenAt = new Int32Array(Math.max(16, expectedNodes + 1)).fill(-1);
  }

  child(node: number, byte: number): number {
    const key = (node << 8) | byte;
    // Fibonacci hashing (top bits of key × 2^32/φ): keys are dense, so plain masking would cluster.
    let slot = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const k = this.keys[slot]!;
      if (k === key) return this.children[slot]!;
      if (k === EMPTY_SLOT) return -1;
      slot = (slot + 1) & this.mask;
    }
  }

  insert(bytes: Uint8Array, id: number): number {
    let node = 0;
    for (const b of bytes) {
      let next = this.child(node, b);
      if (next < 0) {
        next = this.nodeCount++;
        this.setChild(node, b, next);
      }
      node = next;
    }
    if (node >= this.tokenAt.length) {
      const grown = new Int32Array(Math.max(node + 1, this.tokenAt.length * 2)).fill(-1);
      grown.set(this.tokenAt);
      this.tokenAt = grown;
    }
    const previous = this.tokenAt[node]!;
    this.tokenAt[node] = id;
    return previous;
  }

  private setChild(node: number, byte: number, child: number): void {
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    const key = (node << 8) | byte;
    let slot = Math.imul(key, 0x9e3779b1) >>> this.shift;
    while (this.keys[slot] !== EMPTY_SLOT) slot = (slot + 1) & this.mask;
    this.keys[slot] = key;
    this.children[slot] = child;
    this.count++;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldChildren = this.children;
    this.keys = new Int32Array(oldKeys.length * 2).fill(EMPTY_SLOT);
    this.children = new Int32Array(oldKeys.length * 2);
    this.mask = this.keys.length - 1;
    this.shift--;
    for (let s = 0; s < oldKeys.length; s++) {
      const key = oldKeys[s]!;
      if (key === EMPTY_SLOT) continue;
      let slot = Math.imul(key, 0x9e3779b1) >>> this.shift;
      while (this.keys[slot] !== EMPTY_SLOT) slot = (slot + 1) & this.mask;
      this.keys[slot] = key;
      this.children[slot] = oldChildren[s]!;
    }
  }
}

/** Every byte must be a token of its own, or some inputs could not be encoded. */
function checkEveryByte(trie: ByteTrie, prefix: string, where: { file?: string }): void {
  for (let b = 0; b < 256; b++) {
    const node = trie.child(0, b);
    if (node < 0 || trie.tokenAt[node]! < 0) {
      throw new FormatError('BAD_HEADER', `${prefix}the vocabulary has no token for the single byte 0x${b.toString(16).padStart(2, '0')}`, where);
    }
  }
}

export class WorldTokenizer implements Tokenizer {
  readonly name = 'world';
  /** One more than the largest id in the file (65530 for rwkv_vocab_v20230424); World models have 65536. */
  readonly vocabSize: number;
  /** The file it was read from, for messages. */
  readonly file: string | undefined;
  private readonly trie: ByteTrie;
  /** Bytes of token id: tokenBytes.subarray(tokenStart[id], tokenStart[id + 1]); tokenKnown[id] = 0 for gaps. */
  private readonly tokenBytes: Uint8Array;
  private readonly tokenStart: Int32Array;
  private readonly tokenKnown: Uint8Array;

  private constructor(tokens: ReadonlyMap<number, Uint8Array>, trie: ByteTrie, file: string | undefined) {
    this.file = file;
    this.trie = trie;
    let maxId = 0;
    let total = 0;
    for (const [id, bytes] of tokens) {
      if (id > maxId) maxId = id;
      total += bytes.length;
    }
    this.vocabSize = maxId + 1;
    this.tokenStart = new Int32Array(maxId + 2);
    this.tokenKnown = new Uint8Array(maxId + 1);
    this.tokenBytes = new Uint8Array(total);
    let at = 0;
    for (let id = 0; id <= maxId; id++) {
      this.tokenStart[id] = at;
      const bytes = tokens.get(id);
      if (bytes !== undefined) {
        this.tokenBytes.set(bytes, at);
        at += bytes.length;
        this.tokenKnown[id] = 1;
      }
    }
    this.tokenStart[maxId + 1] = at;
  }

  /**
   * Parses the text of a vocabulary file (rwkv_vocab_v20230424.txt). A malformed line is refused with a
   * FormatError naming the file and line.
   */
  static fromVocabText(text: string, file?: string): WorldTokenizer {
    const where = file === undefined ? {} : { file };
    const tokens = new Map<number, Uint8Array>();
    const lineOfId = new Map<number, number>();
    const trie = new ByteTrie(text.length >> 3);
    const lines = text.split('\n');
    // One final newline is normal; an empty line anywhere else is an error.
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    const bad = (lineNo: number, message: string): FormatError => new FormatError('BAD_HEADER', `line ${lineNo}: ${message}`, where);
    for (let n = 0; n < lines.length; n++) {
      const lineNo = n + 1;
      let line = lines[n]!;
      if (line.endsWith('\r')) line = line.slice(0, -1);
      const first = line.indexOf(' ');
      const last = line.lastIndexOf(' ');
      if (first <= 0 || last <= first) throw bad(lineNo, 'expected "<id> <Python literal> <byte length>"');
      const idText = line.slice(0, first);
      const lengthText = line.slice(last + 1);
      if (!/^\d+$/.test(idText)) throw bad(lineNo, `the id ${JSON.stringify(idText)} is not a number`);
      if (!/^\d+$/.test(lengthText)) throw bad(lineNo, `the byte length ${JSON.stringify(lengthText)} is not a number`);
      const id = Number(idText);
      if (id === WORLD_END_OF_TEXT || id > 0xffffff) throw bad(lineNo, `id ${id} is out of range (1..16777215)`);
      let bytes: Uint8Array;
      try {
        bytes = parsePythonLiteral(line.slice(first + 1, last));
      } catch (e) {
        throw bad(lineNo, (e as Error).message);
      }
      if (bytes.length !== Number(lengthText)) {
        throw bad(lineNo, `the literal has ${bytes.length} bytes but the line says ${lengthText}`);
      }
      if (bytes.length === 0) throw bad(lineNo, 'empty token');
      const seenLine = lineOfId.get(id);
      if (seenLine !== undefined) throw bad(lineNo, `id ${id} is already defined on line ${seenLine}`);
      // Two ids for the same bytes would make the longest match ambiguous.
      const sameBytes = trie.insert(bytes, id);
      if (sameBytes >= 0) throw bad(lineNo, `same bytes as id ${sameBytes} (line ${lineOfId.get(sameBytes)})`);
      tokens.set(id, bytes);
      lineOfId.set(id, lineNo);
    }
    if (tokens.size === 0) throw new FormatError('BAD_HEADER', 'the vocabulary is empty', where);
    checkEveryByte(trie, '', where);
    return new WorldTokenizer(tokens, trie, file);
  }

  /**
   * A vocabulary from each id's bytes (undefined: no token; id 0 must be undefined, it is end of text), as a
   * GGUF file lists them; `what` names the list in errors (e.g. a GGUF key). The same checks as a file.
   */
  static fromTokens(tokens: readonly (Uint8Array | undefined)[], what: string, file?: string): WorldTokenizer {
    const where = file === undefined ? {} : { file };
    const bad = (message: string): FormatError => new FormatError('BAD_HEADER', `${what}: ${message}`, where);
    if (tokens.length > 0xffffff) throw bad(`${tokens.length} tokens, more than 16777215`);
    if (tokens[WORLD_END_OF_TEXT] !== undefined) throw bad(`id ${WORLD_END_OF_TEXT} is end of text, not a token`);
    const map = new Map<number, Uint8Array>();
    let total = 0;
    for (const t of tokens) total += t?.length ?? 0;
    const trie = new ByteTrie(total);
    tokens.forEach((bytes, id) => {
      if (bytes === undefined) return;
      if (bytes.length === 0) throw bad(`token ${id} is empty`);
      const same = trie.insert(bytes, id);
      if (same >= 0) throw bad(`token ${id} has the same bytes as token ${same}`);
      map.set(id, bytes);
    });
    if (map.size === 0) throw bad('the vocabulary is empty');
    checkEveryByte(trie, `${what}: `, where);
    return new WorldTokenizer(map, trie, file);
  }

  /** The bytes of token `id`, or undefined for end of text and ids that are not tokens. */
  bytesOf(id: number): Uint8Array | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.tokenKnown[id] === 0) return undefined;
    return this.tokenBytes.subarray(this.tokenStart[id]!, this.tokenStart[id + 1]!);
  }

  encode(text: string): number[] {
    return this.encodeBytes(new TextEncoder().encode(text));
  }

  encodeBytes(bytes: Uint8Array): number[] {
    const trie = this.trie;
    const tokenAt = trie.tokenAt;
    const out: number[] = [];
    const n = bytes.length;
    let i = 0;
    while (i < n) {
      // Walk as deep as the trie allows and keep the last node that ends a token.
      let node = 0;
      let best = -1;
      let bestEnd = i;
      for (let j = i; j < n; j++) {
        node = trie.child(node, bytes[j]!);
        if (node < 0) break;
        const id = tokenAt[node]!;
        if (id >= 0) {
          best = id;
          bestEnd = j + 1;
        }
      }
      // Cannot happen: every single byte is a token (checked when the vocabulary was read).
      if (best < 0) throw new Error(`no token for byte 0x${bytes[i]!.toString(16)}`);
      out.push(best);
      i = bestEnd;
    }
    return out;
  }

  decodeBytes(ids: readonly number[]): Uint8Array {
    let total = 0;
    for (const id of ids) total += this.tokenLength(id);
    const out = new Uint8Array(total);
    let at = 0;
    for (const id of ids) {
      if (id === WORLD_END_OF_TEXT) continue;
      const start = this.tokenStart[id]!;
      const end = this.tokenStart[id + 1]!;
      out.set(this.tokenBytes.subarray(start, end), at);
      at += end - start;
    }
    return out;
  }

  private tokenLength(id: number): number {
    if (id === WORLD_END_OF_TEXT) return 0;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.tokenKnown[id] === 0) {
      throw new ArgumentError(`token id ${id} is not in the World vocabulary${this.file === undefined ? '' : ` ${this.file}`}`);
    }
    return this.tokenStart[id + 1]! - this.tokenStart[id]!;
  }
}
