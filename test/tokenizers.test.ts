// Tokenizers: byte, RWKV World (trie) and GPT-NeoX 20B (BPE) against the reference ids in
// ../shared/fixtures/tokenizers/cases.jsonl; round trips; streaming; vocabulary-file errors; loading.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ArgumentError, FormatError, RwkvError } from '../src/errors.js';
import { BpeTokenizer } from '../src/tokenizers/bpe.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { loadTokenizer, tokenizerForModel, tokenizerFromBytes } from '../src/tokenizers/load.js';
import { parsePythonLiteral } from '../src/tokenizers/python-literal.js';
import { decodeText, StreamDecoder, type Tokenizer } from '../src/tokenizers/tokenizer.js';
import { WorldTokenizer } from '../src/tokenizers/world.js';
import { fixture, FIXTURES_DIR } from './helpers/fixtures.js';

const WORLD_FILE = 'tokenizers/rwkv_vocab_v20230424.txt';
const NEOX_FILE = 'tokenizers/20B_tokenizer.json';

interface Case {
  name: string;
  text: string;
  world: number[];
  neox20b: number[];
}

// Loading a real vocabulary takes a good fraction of a second: load each once for the whole file.
const loaded = new Map<string, Tokenizer>();
function load(t: TestContext, name: string): Tokenizer | undefined {
  const p = fixture(t, name);
  if (p === undefined) return undefined;
  let tok = loaded.get(p);
  if (tok === undefined) {
    tok = tokenizerFromBytes(fs.readFileSync(p), p);
    loaded.set(p, tok);
  }
  return tok;
}

function readCases(t: TestContext): Case[] | undefined {
  const p = fixture(t, 'tokenizers/cases.jsonl');
  if (p === undefined) return undefined;
  return fs
    .readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Case);
}

/** xorshift32: reproducible random tests. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** A random string of `n` code points spread over ASCII, Latin, CJK, emoji and the astral planes. */
function randomText(rand: () => number, n: number, keep: (cp: number) => boolean = () => true): string {
  const ranges: [number, number][] = [
    [0x00, 0x7f],
    [0x80, 0x7ff],
    [0x800, 0xd7ff],
    [0xe000, 0xffff],
    [0x4e00, 0x9fff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ];
  let s = '';
  while (s.length < n) {
    const [lo, hi] = ranges[Math.floor(rand() * ranges.length)]!;
    const cp = lo + Math.floor(rand() * (hi - lo + 1));
    if (keep(cp)) s += String.fromCodePoint(cp);
  }
  return s;
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder('utf-8', { ignoreBOM: true }).decode(b);

test('World: every case in cases.jsonl gives exactly the reference ids, and decodes back to its text', async (t) => {
  const cases = readCases(t);
  const world = load(t, WORLD_FILE);
  if (cases === undefined || world === undefined) return;
  assert.ok(cases.length >= 18);
  for (const c of cases) {
    assert.deepEqual(world.encode(c.text), c.world, c.name);
    assert.deepEqual(world.encodeBytes(utf8(c.text)), c.world, c.name);
    assert.equal(text(world.decodeBytes(c.world)), c.text, c.name);
    assert.equal(decodeText(world, c.world), c.text, c.name);
  }
});

test('GPT-NeoX 20B: every case in cases.jsonl gives exactly the reference ids, and decodes back to its text', async (t) => {
  const cases = readCases(t);
  const neox = load(t, NEOX_FILE);
  if (cases === undefined || neox === undefined) return;
  assert.equal(neox.vocabSize, 50277);
  for (const c of cases) {
    assert.deepEqual(neox.encode(c.text), c.neox20b, c.name);
    assert.deepEqual(neox.encodeBytes(utf8(c.text)), c.neox20b, c.name);
    assert.equal(text(neox.decodeBytes(c.neox20b)), c.text, c.name);
  }
});

test('GPT-NeoX 20B: the places where JavaScript and the reference (Rust tokenizers 0.23.2) differ', async (t) => {
  const neox = load(t, NEOX_FILE);
  if (neox === undefined) return;
  // Ids from the reference. \s in its regex includes U+0085 and not U+FEFF (JavaScript's is the opposite);
  // U+328CB (CJK Extension J, Unicode 17) is not a letter in its Unicode 16 tables; its NFC tables are
  // older still: U+07FD U+031B is not reordered, U+105D2 U+0307 not composed to U+105C9.
  assert.deepEqual(neox.encode("\u0085'll"), [16643, 1833]);
  assert.deepEqual(neox.encode("\ufeff'd"), [41497, 8, 69]);
  assert.deepEqual(neox.encode("\u{328cb}'ll"), [172, 112, 98, 222, 8, 620]);
  assert.deepEqual(neox.encode('\u07fd\u031b'), [155, 123, 136, 238]);
  assert.deepEqual(neox.encode('\u{105d2}\u0307'), [172, 227, 234, 229, 136, 218]);
  assert.deepEqual(neox.encode('\u{105c9}'), [172, 227, 234, 220]);
  // Added tokens: special ones match anywhere in the raw text; runs of 2..24 spaces are tokens of their own.
  assert.deepEqual(neox.encode('a<|endoftext|>b'), [66, 0, 67]);
  assert.deepEqual(neox.encode(' '.repeat(30)), [50254, 50272]);
  // NFC: a decomposed é encodes as the composed one.
  assert.deepEqual(neox.encode('e\u0301'), neox.encode('\u00e9'));
});

test('World: decode(encode(x)) == x for random valid UTF-8 and for arbitrary bytes', async (t) => {
  const world = load(t, WORLD_FILE);
  if (world === undefined) return;
  const rand = rng(7);
  for (let i = 0; i < 300; i++) {
    const bytes = utf8(randomText(rand, 1 + Math.floor(rand() * 80)));
    assert.deepEqual(world.decodeBytes(world.encodeBytes(bytes)), bytes);
  }
  for (let i = 0; i < 100; i++) {
    const bytes = Uint8Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
    assert.deepEqual(world.decodeBytes(world.encodeBytes(bytes)), bytes);
  }
});

test('GPT-NeoX 20B: decode(encode(x)) == x for random text already in NFC', async (t) => {
  const neox = load(t, NEOX_FILE);
  if (neox === undefined) return;
  const rand = rng(11);
  // No combining marks and nothing with a canonical decomposition: NFC leaves such text alone in every
  // Unicode version, so the 20B tokenizer (which normalizes to NFC) must give it back exactly.
  const stable = (cp: number): boolean => {
    const s = String.fromCodePoint(cp);
    return !/\p{M}/u.test(s) && s.normalize('NFD') === s;
  };
  for (let i = 0; i < 300; i++) {
    const s = randomText(rand, 1 + Math.floor(rand() * 80), stable);
    assert.equal(text(neox.decodeBytes(neox.encode(s))), s);
  }
});

test('BPE refuses bytes that are not UTF-8 (the reference encodes text only)', async (t) => {
  const neox = load(t, NEOX_FILE);
  if (neox === undefined) return;
  assert.throws(() => neox.encodeBytes(Uint8Array.of(0x61, 0xff)), ArgumentError);
  assert.throws(() => neox.decodeBytes([50277]), ArgumentError);
  assert.throws(() => neox.decodeBytes([-1]), ArgumentError);
});

test('StreamDecoder: a valid stream split at every byte never emits U+FFFD and gives the text back', async () => {
  const bytesTok = new ByteTokenizer();
  const rand = rng(3);
  for (let i = 0; i < 200; i++) {
    const s = (i % 10 === 0 ? '\ufeff' : '') + randomText(rand, 1 + Math.floor(rand() * 40));
    const decoder = new StreamDecoder(bytesTok);
    let out = '';
    for (const b of utf8(s)) {
      const piece = decoder.push(b);
      assert.ok(!piece.includes('\ufffd'), `U+FFFD emitted for ${JSON.stringify(s)}`);
      out += piece;
    }
    out += decoder.flush();
    assert.equal(out, s);
  }
});

test('StreamDecoder over World tokens that end inside a character', async (t) => {
  const cases = readCases(t);
  const world = load(t, WORLD_FILE);
  if (cases === undefined || world === undefined) return;
  const rand = rng(5);
  const texts = cases.map((c) => c.text);
  for (let i = 0; i < 100; i++) texts.push(randomText(rand, 1 + Math.floor(rand() * 60)));
  let splitInside = 0;
  for (const s of texts) {
    const decoder = new StreamDecoder(world);
    let out = '';
    for (const id of world.encode(s)) {
      const piece = decoder.push(id);
      if (piece === '') splitInside++;
      assert.ok(!piece.includes('\ufffd'), `U+FFFD emitted for ${JSON.stringify(s)}`);
      out += piece;
    }
    out += decoder.flush();
    assert.equal(out, s);
  }
  assert.ok(splitInside > 0, 'no token ended inside a character: the test would prove nothing');
});

test('decodeText and StreamDecoder keep a leading U+FEFF (TextDecoder drops it by default)', async () => {
  const tok = new ByteTokenizer();
  const ids = tok.encode('\ufeffhi');
  assert.equal(decodeText(tok, ids), '\ufeffhi');
  const d = new StreamDecoder(tok);
  assert.equal(ids.map((id) => d.push(id)).join('') + d.flush(), '\ufeffhi');
});

test('Python literal parser: str and bytes literals with every escape the vocabulary uses', async () => {
  const hex = (s: string): string => Buffer.from(parsePythonLiteral(s)).toString('hex');
  assert.equal(hex("'abc'"), '616263');
  assert.equal(hex('"it\'s"'), '69742773');
  assert.equal(hex("'it\\'s'"), '69742773');
  assert.equal(hex('"say \\"hi\\""'), '73617920226869' + '22');
  assert.equal(hex("'\\n\\t\\r\\\\'"), '0a090d5c');
  assert.equal(hex("'\\a\\b\\f\\v'"), '07080c0b');
  // In a str, \xe4 is the character U+00E4 (two bytes of UTF-8); in bytes it is the byte 0xE4.
  assert.equal(hex("'\\xe4'"), 'c3a4');
  assert.equal(hex("b'\\xe4'"), 'e4');
  assert.equal(hex("'\\u4f60'"), 'e4bda0');
  assert.equal(hex("'\\U0001F680'"), 'f09f9a80');
  assert.equal(hex("'\\0\\12\\101'"), '000a41');
  assert.equal(hex("b'\\377'"), 'ff');
  assert.equal(hex("'你好'"), 'e4bda0e5a5bd');
  assert.equal(hex("''"), '');
  assert.equal(hex("b'\\x00\\x80'"), '0080');
  for (const bad of [
    'abc',
    "'abc",
    "'abc' x",
    "'\\q'",
    "'\\x4'",
    "'\\xZZ'",
    "'\\ud800'",
    "'\\U00110000'",
    "b'\\u0041'",
    "b'é'",
    "b'\\400'",
    "'''x'''",
    "r'x'",
    "'\\N{BULLET}'",
    "'a\\'",
  ]) {
    assert.throws(() => parsePythonLiteral(bad), Error, bad);
  }
});

/** A minimal World vocabulary: the 256 single bytes (ids 1..256) plus `extra` lines. */
function tinyVocab(extra: string[]): string {
  const lines: string[] = [];
  for (let b = 0; b < 256; b++) lines.push(`${b + 1} b'\\x${b.toString(16).padStart(2, '0')}' 1`);
  return [...lines, ...extra].join('\n') + '\n';
}

test('World: greedy longest match over bytes, on a small vocabulary', async () => {
  const w = WorldTokenizer.fromVocabText(tinyVocab(["257 'ab' 2", "258 'abcd' 4", "259 '你' 3", "260 b'\\xe4\\xbd' 2"]));
  assert.equal(w.vocabSize, 261);
  // 'abc' is not a token: longest match takes 'ab', then 'c'.
  assert.deepEqual(w.encode('abc'), [257, 100]);
  assert.deepEqual(w.encode('abcd'), [258]);
  assert.deepEqual(w.encode('abcabcd'), [257, 100, 258]);
  assert.deepEqual(w.encode('你'), [259]);
  // A prefix of a character is a token of its own.
  assert.deepEqual(w.encodeBytes(Uint8Array.of(0xe4, 0xbd, 0x61)), [260, 98]);
  assert.deepEqual(w.decodeBytes([257, 0, 100]), utf8('abc'));
  assert.throws(() => w.decodeBytes([261]), ArgumentError);
  assert.throws(() => w.decodeBytes([1.5]), ArgumentError);
});

test('World: a vocabulary file with a malformed line is refused with its line number', async () => {
  const cases: [string, RegExp][] = [
    ["257 'ab' 3", /line 257: the literal has 2 bytes but the line says 3/],
    ["257 'ab 2", /line 257: unterminated literal/],
    ["257 'a\\qb' 3", /line 257: unsupported escape \\q/],
    ["x7 'ab' 2", /line 257: the id "x7" is not a number/],
    ["257 'ab' two", /line 257: the byte length "two" is not a number/],
    ["257'ab'2", /line 257: expected/],
    ['', /line 257: expected/],
    ["12 'ab' 2", /line 257: id 12 is already defined on line 12/],
    ["257 b'\\x61' 1", /line 257: same bytes as id 98/],
    ["257 eval('1') 1", /line 257: expected a quoted Python str or bytes literal/],
    ["0 'ab' 2", /line 257: id 0 is out of range/],
  ];
  for (const [line, message] of cases) {
    const vocab = tinyVocab([line, "999 'zz' 2"]);
    assert.throws(
      () => WorldTokenizer.fromVocabText(vocab, 'v.txt'),
      (e: unknown) => e instanceof FormatError && message.test(e.message) && e.message.startsWith('v.txt: '),
      line,
    );
  }
  // Every single byte must be a token.
  const missing = tinyVocab([]).split('\n').slice(1).join('\n');
  assert.throws(() => WorldTokenizer.fromVocabText(missing), /no token for the single byte 0x00/);
});

test('loadTokenizer: refuses malformed files naming the file and line, and tells formats by content', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-tok-'));
  try {
    const bad = path.join(dir, 'vocab.txt');
    fs.writeFileSync(bad, tinyVocab(["257 'ab' 3"]));
    await assert.rejects(() => loadTokenizer(bad), (e: unknown) => e instanceof FormatError && e.message.includes(`${bad}: line 257:`));

    const invalidUtf8 = path.join(dir, 'latin1.txt');
    fs.writeFileSync(invalidUtf8, Buffer.concat([Buffer.from(tinyVocab([])), Buffer.from([0x32, 0x35, 0x37, 0x20, 0x27, 0xe9, 0x27, 0x20, 0x31, 0x0a])]));
    await assert.rejects(() => loadTokenizer(invalidUtf8), /line 257: not valid UTF-8/);

    // A World vocabulary named .json is still a World vocabulary; a tokenizer.json named .txt is BPE.
    const worldAsJson = path.join(dir, 'world.json');
    fs.writeFileSync(worldAsJson, tinyVocab(["257 'ab' 2"]));
    assert.ok(await loadTokenizer(worldAsJson) instanceof WorldTokenizer);
    const bpeAsTxt = path.join(dir, 'bpe.txt');
    fs.writeFileSync(bpeAsTxt, JSON.stringify(tinyBpeJson()));
    assert.ok(await loadTokenizer(bpeAsTxt) instanceof BpeTokenizer);

    const neither = path.join(dir, 'notes.txt');
    fs.writeFileSync(neither, 'hello\n');
    await assert.rejects(() => loadTokenizer(neither), (e: unknown) => e instanceof FormatError && e.code === 'BAD_MAGIC');
    await assert.rejects(() => loadTokenizer(path.join(dir, 'absent.txt')), (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND');
    await assert.rejects(() => loadTokenizer(dir), (e: unknown) => e instanceof RwkvError && e.code === 'NOT_A_FILE');
    assert.ok(await loadTokenizer('bytes') instanceof ByteTokenizer);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

/** A byte-level BPE tokenizer.json with the 256 byte symbols (ids 0..255) and a few merges. */
function tinyBpeJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    vocab[String.fromCharCode(printable ? b : 256 + n++)] = b;
  }
  vocab.aa = 256;
  vocab.ab = 257;
  vocab.abc = 258;
  vocab['Ġa'] = 259;
  return {
    version: '1.0',
    added_tokens: [{ id: 260, content: '<|end|>', special: true, normalized: false }],
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true },
    post_processor: { type: 'ByteLevel' },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', vocab, merges: ['a a', 'a b', ['ab', 'c'], 'Ġ a'] },
  };
}

test('BPE: merges by rank, leftmost first; added tokens; refuses what it does not implement', async () => {
  const bpe = BpeTokenizer.fromJson(tinyBpeJson());
  assert.equal(bpe.vocabSize, 261);
  assert.deepEqual(bpe.encode('abc'), [258]);
  assert.deepEqual(bpe.encode('aaa'), [256, 97]);
  assert.deepEqual(bpe.encode('aab'), [256, 98]);
  assert.deepEqual(bpe.encode('x a'), [120, 259]);
  assert.deepEqual(bpe.encode('ab<|end|>abc'), [257, 260, 258]);
  assert.equal(text(bpe.decodeBytes([259, 260, 258])), ' a<|end|>abc');

  const refuse = (patch: (j: Record<string, unknown>) => void, message: RegExp): void => {
    const j = tinyBpeJson();
    patch(j);
    assert.throws(() => BpeTokenizer.fromJson(JSON.stringify(j), 'tok.json'), (e: unknown) => e instanceof FormatError && message.test(e.message));
  };
  refuse((j) => (j.model = { ...(j.model as object), type: 'WordPiece' }), /tok\.json: model "WordPiece" is not supported/);
  refuse((j) => (j.normalizer = { type: 'NFKC' }), /normalizer "NFKC" is not supported/);
  refuse((j) => (j.pre_tokenizer = { type: 'Metaspace' }), /pre_tokenizer "Metaspace" is not supported/);
  refuse((j) => (j.post_processor = { type: 'TemplateProcessing' }), /post_processor "TemplateProcessing" is not supported/);
  refuse((j) => (j.model = { ...(j.model as object), merges: ['a z'] }), /merges\[0\].*not in model.vocab/);
  refuse((j) => (j.added_tokens = [{ id: 261, content: 'x', lstrip: true }]), /lstrip is not supported/);
  assert.throws(() => BpeTokenizer.fromJson('{ nope'), (e: unknown) => e instanceof FormatError && e.code === 'BAD_MAGIC');
});

test('tokenizerForModel: chooses by vocabulary size, and names the file it needs when it is missing', async (t) => {
  assert.ok(await tokenizerForModel(256, undefined, []) instanceof ByteTokenizer);
  await assert.rejects(() => tokenizerForModel(65536, undefined, [os.tmpdir()]),
    (e: unknown) =>
      e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes('rwkv_vocab_v20230424.txt') && e.message.includes('--tokenizer'),
  );
  await assert.rejects(() => tokenizerForModel(50277, undefined, []),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes('20B_tokenizer.json'),
  );
  await assert.rejects(() => tokenizerForModel(1234, undefined, []), (e: unknown) => e instanceof ArgumentError && e.message.includes('1234'));
  // An explicit tokenizer must fit the model.
  assert.ok(await tokenizerForModel(65536, 'bytes', []) instanceof ByteTokenizer);
  await assert.rejects(() => tokenizerForModel(100, 'bytes', []), ArgumentError);

  if (fixture(t, WORLD_FILE) === undefined || fixture(t, NEOX_FILE) === undefined) return;
  const dirs = [os.tmpdir(), path.join(FIXTURES_DIR, 'tokenizers')];
  assert.ok(await tokenizerForModel(65536, undefined, dirs) instanceof WorldTokenizer);
  assert.ok(await tokenizerForModel(50277, undefined, dirs) instanceof BpeTokenizer);
  await assert.rejects(() => tokenizerForModel(50277, path.join(FIXTURES_DIR, WORLD_FILE), dirs), /more than the model's vocabulary/);
});

test('World: 1 MiB of text encodes correctly (time printed; speed is for benchmarks, not asserted)', async (t) => {
  const world = load(t, WORLD_FILE);
  const cases = readCases(t);
  if (world === undefined || cases === undefined) return;
  let s = '';
  for (let i = 0; s.length < 1 << 20; i++) s += cases[i % cases.length]!.text + '\n';
  const bytes = utf8(s).subarray(0, 1 << 20);
  world.encodeBytes(bytes.subarray(0, 65536)); // warm up the JIT
  const t0 = performance.now();
  const ids = world.encodeBytes(bytes);
  const ms = performance.now() - t0;
  console.log(`# World encode: 1 MiB in ${ms.toFixed(1)} ms (${ids.length} tokens)`);
  assert.deepEqual(world.decodeBytes(ids), bytes);
  // The trie against a naive greedy longest match over a map of all tokens, on the first 32 KiB.
  const byBytes = new Map<string, number>();
  let maxLen = 0;
  for (let id = 1; id < world.vocabSize; id++) {
    const b = world.decodeBytes([id]);
    byBytes.set(Buffer.from(b).toString('latin1'), id);
    maxLen = Math.max(maxLen, b.length);
  }
  const prefix = Buffer.from(bytes.subarray(0, 32768));
  const naive: number[] = [];
  for (let i = 0; i < prefix.length; ) {
    for (let len = Math.min(maxLen, prefix.length - i); len > 0; len--) {
      const id = byBytes.get(prefix.toString('latin1', i, i + len));
      if (id !== undefined) {
        naive.push(id);
        i += len;
        break;
      }
    }
  }
  assert.deepEqual(world.encodeBytes(prefix), naive);
});
