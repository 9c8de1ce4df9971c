// The tokenizer inside GGUF files (tokenizer.ggml.*), both ways: llama.cpp's own files (../shared/fixtures/gguf,
// made by its converter from a 255-line byte-level World vocabulary) are read as the byte-level tokenizer;
// the files rwkv-ts writes carry the tokenizer keys exactly as those files do (checked with an independent
// parser, key by key, type by type); a World vocabulary survives the trip through a GGUF id for id; and
// malformed keys are FormatErrors that name the key. (Whether llama.cpp itself loads our files is not
// checked here: that needs a llama.cpp build.)
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/formats/convert.js';
import { readGguf, type GgufKv } from '../src/formats/gguf.js';
import { writeGguf } from '../src/formats/gguf-writer.js';
import { openCheckpoint } from '../src/formats/open.js';
import type { OutTensor } from '../src/formats/writer.js';
import { loadModel } from '../src/models/load.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { escapeRwkvToken, ggufTokenizerKvs, unescapeRwkvToken } from '../src/tokenizers/gguf-vocab.js';
import { loadTokenizer } from '../src/tokenizers/load.js';
import { WorldTokenizer } from '../src/tokenizers/world.js';
import { fixture } from './helpers/fixtures.js';
import { expectRwkvRejection, fp32, tempDir } from './helpers/formats.js';

const dir = tempDir('gguf-tokenizer');
let n = 0;
const tmp = (name: string): string => path.join(dir, `${++n}-${name}`);

/** Metadata of a GGUF v3 file, each value with its GGUF type (arrays: their item type), read independently. */
function rawMetadata(file: string): Map<string, { type: number; value: unknown }> {
  const b = fs.readFileSync(file);
  let p = 8;
  const u32 = (): number => ((p += 4), b.readUInt32LE(p - 4));
  const u64 = (): number => ((p += 8), Number(b.readBigUInt64LE(p - 8)));
  const str = (): string => {
    const len = u64();
    p += len;
    return b.subarray(p - len, p).toString('utf8');
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 4:
        return u32();
      case 5:
        return ((p += 4), b.readInt32LE(p - 4));
      case 6:
        return ((p += 4), b.readFloatLE(p - 4));
      case 7:
        return b[p++] !== 0;
      case 8:
        return str();
      case 10:
        return u64();
      default:
        throw new Error(`value type ${t} not expected in these files`);
    }
  };
  u64();
  const count = u64();
  const out = new Map<string, { type: number; value: unknown }>();
  for (let i = 0; i < count; i++) {
    const key = str();
    const type = u32();
    if (type === 9) {
      const itemType = u32();
      const len = u64();
      const values: unknown[] = [];
      for (let j = 0; j < len; j++) values.push(scalar(itemType));
      out.set(key, { type: 900 + itemType, value: values });
    } else out.set(key, { type, value: scalar(type) });
  }
  return out;
}

const tokenizerKeys = (m: Map<string, { type: number; value: unknown }>): [string, { type: number; value: unknown }][] =>
  [...m].filter(([k]) => k.startsWith('tokenizer.'));

const LLAMA_FILES = ['rwkv6-1m-F32.gguf', 'rwkv6-1m-Q8_0.gguf', 'rwkv7-834k-F32.gguf', 'rwkv7-834k-Q8_0.gguf', 'rwkv7-834k-Q4_K_M.gguf', 'rwkv7-834k-Q6_K.gguf'];

test('escaping a World token is Python repr without b\'…\', and llama.cpp\'s unescaping undoes it', () => {
  assert.equal(escapeRwkvToken(Uint8Array.of(0x27)), "'");
  assert.equal(escapeRwkvToken(Uint8Array.of(0x22)), '"');
  assert.equal(escapeRwkvToken(Uint8Array.of(0x27, 0x22)), '\\\'"');
  assert.equal(escapeRwkvToken(Uint8Array.of(0x5c, 0x09, 0x0a, 0x0d, 0x00, 0x7f, 0xe4, 0x41)), '\\\\\\t\\n\\r\\x00\\x7f\\xe4A');
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0), seed >>> 24);
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: 1 + (rand() % 12) }, rand);
    assert.deepEqual(unescapeRwkvToken(escapeRwkvToken(bytes)), bytes);
  }
  for (const bad of ['\\', '\\x4', '\\x4G', '\\xAB']) assert.equal(unescapeRwkvToken(bad), undefined, bad);
});

test("llama.cpp's GGUF files: their tokenizer is read, and their 256 tokens stand for the 256 bytes", async (t) => {
  for (const name of LLAMA_FILES) {
    const file = fixture(t, `gguf/${name}`);
    if (file === undefined) return;
    const g = await readGguf(file);
    assert.ok(g.tokenizer instanceof ByteTokenizer, name);
    const tokens = g.metadata.get('tokenizer.ggml.tokens');
    assert.ok(typeof tokens === 'object' && tokens.values !== undefined && tokens.values.length === 256, name);
    assert.equal(tokens.values[0], '<s>');
    for (let id = 1; id < 256; id++) assert.deepEqual(unescapeRwkvToken(String(tokens.values[id])), Uint8Array.of(id), `${name} token ${id}`);
    assert.deepEqual([...g.tokenizer.decodeBytes([72, 105, 0, 255])], [72, 105, 0, 255]);
    // The model takes the file's tokenizer; an explicit one would still win (rwkv.ts resolveTokenizer).
    const model = await loadModel(file);
    assert.ok(model.tokenizer instanceof ByteTokenizer, name);
  }
});

test('a GGUF written by rwkv-ts carries the same tokenizer keys as llama.cpp\'s, and reads back', async (t) => {
  const pairs = [
    ['7v0-834K', 'rwkv7-834k-F32.gguf'],
    ['6v0-1m', 'rwkv6-1m-F32.gguf'],
  ] as const;
  for (const [m, ref] of pairs) {
    const bin = fixture(t, fp32(m));
    const refFile = fixture(t, `gguf/${ref}`);
    if (bin === undefined || refFile === undefined) return;
    const expected = tokenizerKeys(rawMetadata(refFile));
    assert.equal(expected.length, 7);
    for (const [label, opts] of [['f32', {}], ['q8_0', { quantize: 'q8_0' }]] as const) {
      const out = tmp(`${m}-${label}.gguf`);
      writeCheckpoint(await openCheckpoint(bin), out, opts);
      assert.deepEqual(tokenizerKeys(rawMetadata(out)), expected, `${m} ${label}`);
      assert.ok((await readGguf(out)).tokenizer instanceof ByteTokenizer);
    }
    // llama.cpp's file → rwkv-ts's file: the tokenizer passes through unchanged.
    const again = tmp(`${m}-from-llama.gguf`);
    writeCheckpoint(await openCheckpoint(refFile), again);
    assert.deepEqual(tokenizerKeys(rawMetadata(again)), expected, `${m} from ${ref}`);
  }
});

/** The smallest GGUF the reader takes: an rwkv7 header, head size 1 and a [nVocab, 1] embedding. */
function tinyGguf(file: string, nVocab: number, tokenizerKvs: readonly GgufKv[]): void {
  const data = new Uint8Array(4 * nVocab);
  const emb: OutTensor = { name: 'token_embd.weight', dtype: 'f32', shape: [nVocab, 1], byteLength: data.byteLength, bytes: () => data };
  const kvs: GgufKv[] = [
    { key: 'general.architecture', type: 'string', value: 'rwkv7' },
    { key: 'rwkv7.wkv.head_size', type: 'u32', value: 1 },
    ...tokenizerKvs,
  ];
  writeGguf(file, kvs, [emb]);
}

test('a World vocabulary written into a GGUF reads back id for id (the reference cases, multilingual text)', async (t) => {
  const vocabFile = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  const casesFile = fixture(t, 'tokenizers/cases.jsonl');
  if (vocabFile === undefined || casesFile === undefined) return;
  const world = await loadTokenizer(vocabFile);
  assert.ok(world instanceof WorldTokenizer);
  const kvs = ggufTokenizerKvs(world, 65536);
  const tokens = kvs.find((kv) => kv.key === 'tokenizer.ggml.tokens');
  const types = kvs.find((kv) => kv.key === 'tokenizer.ggml.token_type');
  assert.ok(tokens?.type === 'string[]' && types?.type === 'i32[]');
  // As the converter lays it out: "<s>" CONTROL, the file's 65529 tokens NORMAL, "[PAD<id>]" UNUSED up to 65536.
  assert.equal(tokens.value.length, 65536);
  assert.deepEqual([tokens.value[0], tokens.value[1], tokens.value[65529], tokens.value[65530], tokens.value[65535]], ['<s>', '\\x00', tokens.value[65529], '[PAD65530]', '[PAD65535]']);
  assert.deepEqual([types.value[0], types.value[1], types.value[65529], types.value[65530], types.value[65535]], [3, 1, 1, 5, 5]);
  const file = tmp('world.gguf');
  tinyGguf(file, 65536, kvs);
  const back = (await readGguf(file)).tokenizer;
  assert.ok(back instanceof WorldTokenizer);
  assert.equal(back.vocabSize, world.vocabSize);
  for (let id = 1; id < world.vocabSize; id++) assert.deepEqual(back.bytesOf(id), world.bytesOf(id), `token ${id}`);
  const cases = fs
    .readFileSync(casesFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { name: string; text: string; world: number[] });
  const multilingual = 'Hello, 世界! Привет, мир. مرحبا بالعالم. こんにちは 🌍 — naïve café, 안녕하세요\n\n\tend';
  for (const c of [...cases, { name: 'multilingual', text: multilingual, world: world.encode(multilingual) }]) {
    assert.deepEqual(back.encode(c.text), c.world, c.name);
    assert.deepEqual(back.encode(c.text), world.encode(c.text), c.name);
  }
});

test('malformed tokenizer keys are FormatErrors that name the key', async () => {
  const good = ggufTokenizerKvs(new ByteTokenizer(), 256);
  const replace = (key: string, kv: GgufKv | undefined): GgufKv[] =>
    good.flatMap((x) => (x.key === key ? (kv === undefined ? [] : [kv]) : [x]));
  const tokens = good.find((kv) => kv.key === 'tokenizer.ggml.tokens');
  assert.ok(tokens?.type === 'string[]');
  const cases: [string, GgufKv[], string][] = [
    ['short token list', replace('tokenizer.ggml.tokens', { ...tokens, value: tokens.value.slice(0, 255) }), 'tokenizer.ggml.tokens'],
    ['tokens of the wrong type', replace('tokenizer.ggml.tokens', { key: 'tokenizer.ggml.tokens', type: 'i32[]', value: new Array<number>(256).fill(1) }), 'tokenizer.ggml.tokens'],
    ['tokens missing', replace('tokenizer.ggml.tokens', undefined), 'tokenizer.ggml.tokens'],
    ['token types too long', replace('tokenizer.ggml.token_type', { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: new Array<number>(257).fill(1) }), 'tokenizer.ggml.token_type'],
    ['token types as strings', replace('tokenizer.ggml.token_type', { key: 'tokenizer.ggml.token_type', type: 'string[]', value: new Array<string>(256).fill('1') }), 'tokenizer.ggml.token_type'],
    ['model not a string', replace('tokenizer.ggml.model', { key: 'tokenizer.ggml.model', type: 'u32', value: 1 }), 'tokenizer.ggml.model'],
    ['eos not an integer', replace('tokenizer.ggml.eos_token_id', { key: 'tokenizer.ggml.eos_token_id', type: 'string', value: '0' }), 'tokenizer.ggml.eos_token_id'],
    ['a malformed escape', replace('tokenizer.ggml.tokens', { ...tokens, value: tokens.value.map((v, i) => (i === 65 ? '\\x4' : v)) }), 'tokenizer.ggml.tokens'],
    ['two tokens with the same bytes', replace('tokenizer.ggml.tokens', { ...tokens, value: tokens.value.map((v, i) => (i === 66 ? 'A' : v)) }), 'tokenizer.ggml.tokens'],
    ['gpt2 without merges', replace('tokenizer.ggml.model', { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' }), 'tokenizer.ggml.merges'],
  ];
  for (const [label, kvs, key] of cases) {
    const file = tmp('bad.gguf');
    tinyGguf(file, 256, kvs);
    await expectRwkvRejection(() => readGguf(file), 'BAD_HEADER', [key]).catch((e: unknown) => {
      throw new Error(`${label}: ${(e as Error).message}`);
    });
  }
  const file = tmp('llama.gguf');
  tinyGguf(file, 256, replace('tokenizer.ggml.model', { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' }));
  await expectRwkvRejection(() => readGguf(file), 'UNSUPPORTED_VERSION', ["tokenizer.ggml.model 'llama'"]);
});

test('a GPT-2 style BPE vocabulary in a GGUF (tokens, merges) is read as a byte-level BPE tokenizer', async () => {
  // A toy byte-level vocabulary: the 256 byte characters, then "ab", "abc" and an end-of-text CONTROL token.
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(String.fromCharCode(printable ? b : 256 + extra++));
  }
  const tokens = [...chars, 'ab', 'abc', '<|endoftext|>'];
  const types = tokens.map((_, i) => (i === 258 ? 3 : 1));
  const file = tmp('gpt2.gguf');
  tinyGguf(file, tokens.length, [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    { key: 'tokenizer.ggml.tokens', type: 'string[]', value: tokens },
    { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: types },
    { key: 'tokenizer.ggml.merges', type: 'string[]', value: ['a b', 'ab c'] },
  ]);
  const tok = (await readGguf(file)).tokenizer;
  assert.ok(tok !== undefined);
  assert.equal(tok.name, 'bpe');
  assert.deepEqual(tok.encode('abc ab<|endoftext|>'), [257, 0x20, 256, 258]);
  assert.equal(new TextDecoder().decode(tok.decodeBytes(tok.encode('abc ab<|endoftext|>'))), 'abc ab<|endoftext|>');
});
