// GGUF (llama.cpp rwkv6 / rwkv7): our files have llama.cpp's names, shapes and hyper-parameters (checked
// with an independent parser below), read back to exactly the rwkv.cpp-encoded tensors they were written
// from, undo llama.cpp's rescaling of output weights, and every malformed header is a typed error.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/formats/convert.js';
import { ggufLayout, readGguf } from '../src/formats/gguf.js';
import { writeGguf } from '../src/formats/gguf-writer.js';
import { openCheckpoint } from '../src/formats/open.js';
import { readRwkvCpp } from '../src/formats/rwkvcpp.js';
import { toEncoding } from '../src/formats/transform.js';
import { outTensor } from '../src/formats/writer.js';
import { loadModel } from '../src/models/load.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';
import { assertSameTensors, expectRwkvRejection, fp32, logitsAfterIn, tempDir } from './helpers/formats.js';

const dir = tempDir('gguf');
let n = 0;
const tmp = (name: string): string => path.join(dir, `${++n}-${name}`);

// ---------------------------------------------------------------------------------------------------
// An independent GGUF v3 parser (header, metadata scalars and strings, tensor infos) and builder.

interface RawInfo {
  name: string;
  ne: number[];
  type: number;
  offset: number;
}

function parseGguf(b: Buffer): { kv: Map<string, unknown>; infos: RawInfo[]; dataStart: number } {
  let p = 0;
  const u32 = (): number => ((p += 4), b.readUInt32LE(p - 4));
  const u64 = (): number => ((p += 8), Number(b.readBigUInt64LE(p - 8)));
  const str = (): string => {
    const len = u64();
    p += len;
    return b.subarray(p - len, p).toString('utf8');
  };
  assert.equal(b.toString('latin1', 0, 4), 'GGUF');
  p = 4;
  assert.equal(u32(), 3);
  const nt = u64();
  const nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const type = u32();
    if (type === 4) kv.set(key, u32());
    else if (type === 6) kv.set(key, ((p += 4), b.readFloatLE(p - 4)));
    else if (type === 8) kv.set(key, str());
    else if (type === 9) {
      // Arrays (the tokenizer's tokens and token types): strings or int32s.
      const itemType = u32();
      const values: unknown[] = [];
      for (let j = u64(); j > 0; j--) {
        if (itemType === 8) values.push(str());
        else if (itemType === 5) values.push(((p += 4), b.readInt32LE(p - 4)));
        else throw new Error(`test parser: array of type ${itemType}`);
      }
      kv.set(key, values);
    } else throw new Error(`test parser: type ${type}`);
  }
  const infos: RawInfo[] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(u64());
    infos.push({ name, ne, type: u32(), offset: u64() });
  }
  const align = (kv.get('general.alignment') as number | undefined) ?? 32;
  return { kv, infos, dataStart: Math.ceil(p / align) * align };
}

type Kv = [string, 'u32' | 'f32' | 'str', number | string];

function buildGguf(kvs: readonly Kv[], infos: readonly RawInfo[], data: Uint8Array, opts: { version?: number; tensorCount?: bigint } = {}): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => void parts.push(Buffer.from(new Uint32Array([v]).buffer));
  const u64 = (v: bigint | number): void => {
    const x = Buffer.alloc(8);
    x.writeBigUInt64LE(BigInt(v));
    parts.push(x);
  };
  const str = (s: string): void => {
    u64(Buffer.byteLength(s));
    parts.push(Buffer.from(s));
  };
  parts.push(Buffer.from('GGUF', 'latin1'));
  u32(opts.version ?? 3);
  u64(opts.tensorCount ?? BigInt(infos.length));
  u64(kvs.length);
  for (const [k, type, v] of kvs) {
    str(k);
    if (type === 'u32') u32(4), u32(v as number);
    else if (type === 'f32') u32(6), parts.push(Buffer.from(new Float32Array([v as number]).buffer));
    else u32(8), str(v as string);
  }
  for (const t of infos) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(t.offset);
  }
  const head = Buffer.concat(parts);
  const pad = Buffer.alloc((32 - (head.byteLength % 32)) % 32);
  return Buffer.concat([head, pad, Buffer.from(data)]);
}

const BASE_KV: Kv[] = [
  ['general.architecture', 'str', 'rwkv7'],
  ['rwkv7.wkv.head_size', 'u32', 4],
];

// ---------------------------------------------------------------------------------------------------

test('rwkv7 file: llama.cpp names, ggml shapes and hyper-parameters; layer 0 carries copies of a0/a1/a2 as v0/v1/v2', async (t) => {
  const bin = fixture(t, fp32('7v0-834K'));
  if (bin === undefined) return;
  const out = tmp('7v0.gguf');
  writeCheckpoint(await openCheckpoint(bin), out);
  const raw = fs.readFileSync(out);
  const g = parseGguf(raw);
  assert.equal(g.kv.get('general.architecture'), 'rwkv7');
  for (const [k, v] of [
    ['rwkv7.embedding_length', 64],
    ['rwkv7.block_count', 12],
    ['rwkv7.feed_forward_length', 256],
    ['rwkv7.wkv.head_size', 64],
    ['rwkv7.attention.decay_lora_rank', 32],
    ['rwkv7.attention.head_count', 0],
    ['general.file_type', 0],
  ] as const) {
    assert.equal(g.kv.get(k), v, k);
  }
  assert.ok(Math.abs((g.kv.get('rwkv7.attention.layer_norm_epsilon') as number) - 1e-5) < 1e-9);
  const info = new Map(g.infos.map((i) => [i.name, i]));
  const ne = (name: string): number[] => info.get(name)?.ne ?? [];
  assert.deepEqual(ne('token_embd.weight'), [64, 256]);
  assert.deepEqual(ne('blk.0.time_mix_lerp_fused.weight'), [64, 1, 1, 6]);
  assert.deepEqual(ne('blk.3.time_mix_w1.weight'), [64, 32]); // {n_embd, n_lora_decay}
  assert.deepEqual(ne('blk.3.time_mix_w2.weight'), [32, 64]);
  assert.deepEqual(ne('blk.3.time_mix_r_k.weight'), [64]);
  assert.deepEqual(ne('blk.3.time_mix_w0.weight'), [64]);
  assert.deepEqual(ne('blk.3.channel_mix_lerp_k.weight'), [64]);
  assert.deepEqual(ne('blk.3.channel_mix_key.weight'), [64, 256]);
  assert.deepEqual(ne('output.weight'), [64, 256]);
  for (const i of g.infos) assert.equal(i.offset % 32, 0, i.name);
  const bytes = (name: string): Buffer => {
    const i = info.get(name)!;
    const count = i.ne.reduce((a, b) => a * b, 1);
    return raw.subarray(g.dataStart + i.offset, g.dataStart + i.offset + 4 * count);
  };
  for (const k of ['0', '1', '2']) assert.ok(bytes(`blk.0.time_mix_v${k}.weight`).equals(bytes(`blk.0.time_mix_a${k}.weight`)), `v${k} = a${k}`);
  // Read back: exactly the rwkv.cpp-encoded tensors (the dummies dropped).
  const back = await readGguf(out);
  assert.equal(back.encoding, 'rwkvcpp');
  assertSameTensors(back.tensors, (await readRwkvCpp(bin)).tensors, 'GGUF → rwkv.cpp encoding');
});

test('rwkv6 file: fused token-shift [5,1,1,C], LoRA factors as llama.cpp lays them out; reads back to the rwkv.cpp tensors', async (t) => {
  const bin = fixture(t, fp32('6v0-1m'));
  if (bin === undefined) return;
  const out = tmp('6v0.gguf');
  writeCheckpoint(await openCheckpoint(bin), out);
  const g = parseGguf(fs.readFileSync(out));
  const ne = (name: string): number[] => g.infos.find((i) => i.name === name)?.ne ?? [];
  assert.equal(g.kv.get('rwkv6.time_mix_extra_dim'), 32);
  assert.equal(g.kv.get('rwkv6.time_decay_extra_dim'), 64);
  assert.equal(g.kv.get('rwkv6.rescale_every_n_layers'), 0);
  assert.equal(g.kv.get('rwkv6.wkv.head_size'), 8);
  assert.deepEqual(ne('blk.0.time_mix_lerp_fused.weight'), [64, 1, 1, 5]);
  assert.deepEqual(ne('blk.0.time_mix_lerp_x.weight'), [64]);
  assert.deepEqual(ne('blk.0.time_mix_w1.weight'), [64, 160]); // {n_embd, extra_dim·5}
  assert.deepEqual(ne('blk.0.time_mix_w2.weight'), [32, 64, 5]); // {extra_dim, n_embd, 5}
  assert.deepEqual(ne('blk.0.time_mix_decay.weight'), [64]);
  assert.deepEqual(ne('blk.0.time_mix_decay_w1.weight'), [64, 64]);
  assert.deepEqual(ne('blk.0.time_mix_first.weight'), [8, 8]); // {head_size, n_head}
  assert.deepEqual(ne('blk.0.channel_mix_receptance.weight'), [64, 64]);
  assert.ok(!g.infos.some((i) => i.name.includes('time_mix_lerp_w')));
  assertSameTensors((await readGguf(out)).tensors, (await readRwkvCpp(bin)).tensors, 'GGUF → rwkv.cpp encoding');
});

test('rwkv6 rescale_every_n_layers: output weights divided by 2^⌊i/n⌋ (f32 and Q8_0) are restored on read', async (t) => {
  const bin = fixture(t, fp32('6v0-1m'));
  if (bin === undefined) return;
  for (const quant of [undefined, 'q8_0'] as const) {
    const plain = tmp(`6v0-${quant ?? 'f32'}.gguf`);
    writeCheckpoint(await openCheckpoint(bin), plain, quant !== undefined ? { quantize: quant } : {});
    const src = await readGguf(plain);
    const every = 6; // as RWKV-6 World models ship
    const tensors = [...src.tensors.values()].map((x) => {
      const m = /^blocks\.(\d+)\.(att\.output|ffn\.value)\.weight$/.exec(x.name);
      if (m === null) return outTensor(x);
      const k = Math.floor(Number(m[1]) / every);
      const data = new Uint8Array(x.data);
      const dv = new DataView(data.buffer);
      if (x.dtype === 'f32') for (let i = 0; i < data.byteLength; i += 4) dv.setFloat32(i, dv.getFloat32(i, true) / 2 ** k, true);
      else for (let b = 0; b < data.byteLength; b += 34) dv.setUint16(b, dv.getUint16(b, true) - (k << 10), true); // f16 exponent − k
      return outTensor({ ...x, data });
    });
    const layout = ggufLayout(tensors, '6', bin);
    const kvs = layout.kvs.map((kv) => (kv.key === 'rwkv6.rescale_every_n_layers' && kv.type === 'u32' ? { ...kv, value: every } : kv));
    const scaled = tmp(`6v0-${quant ?? 'f32'}-rescaled.gguf`);
    writeGguf(scaled, kvs, layout.tensors);
    assertSameTensors((await readGguf(scaled)).tensors, src.tensors, `rescaled ${quant ?? 'f32'}`);
  }
});

test('Q8_0 GGUF from the FP32 fixture: the same blocks as rwkv.cpp\'s Q8_0 file, and the same logits', async (t) => {
  const bin = fixture(t, fp32('7v0-834K'));
  const q8 = fixture(t, 'quantized/tiny-rwkv-7v0-834K-FP32-to-Q8_0.bin');
  if (bin === undefined || q8 === undefined) return;
  const out = tmp('7v0-q8.gguf');
  writeCheckpoint(await openCheckpoint(bin), out, { quantize: 'q8_0' });
  assertSameTensors((await readGguf(out)).tensors, (await readRwkvCpp(q8)).tensors, 'Q8_0 GGUF vs rwkv.cpp Q8_0');
  assert.equal(maxAbsDiff(await logitsAfterIn(await loadModel(out)), await logitsAfterIn(await loadModel(q8))), 0);
  assert.equal(parseGguf(fs.readFileSync(out)).kv.get('general.file_type'), 7); // LLAMA_FTYPE_MOSTLY_Q8_0
});

test('GGUF → .bin gives back the rwkv.cpp FP32 file byte for byte', async (t) => {
  for (const m of ['6v0-1m', '7v0-834K']) {
    const bin = fixture(t, fp32(m));
    if (bin === undefined) return;
    const g = tmp(`${m}.gguf`);
    writeCheckpoint(await openCheckpoint(bin), g);
    const b = tmp(`${m}.bin`);
    writeCheckpoint(await openCheckpoint(g), b);
    assert.ok(fs.readFileSync(b).equals(fs.readFileSync(bin)), m);
  }
});

test('malformed GGUF headers are typed errors naming the file (and the tensor at fault)', async () => {
  const f32x4 = (name: string, offset = 0): RawInfo => ({ name, ne: [4], type: 0, offset });
  const write = (label: string, b: Buffer): string => {
    const p = tmp(`${label}.gguf`);
    fs.writeFileSync(p, b);
    return p;
  };
  const data = new Uint8Array(64);
  const good = write('good', buildGguf(BASE_KV, [f32x4('blk.0.time_mix_k_k.weight')], data));
  assert.equal((await readGguf(good)).tensors.get('blocks.0.att.k_k')!.shape.join(','), '1,1,4');
  await expectRwkvRejection(() => readGguf(write('v2', buildGguf(BASE_KV, [], data, { version: 2 }))), 'UNSUPPORTED_VERSION', ['version 2']);
  await expectRwkvRejection(() => readGguf(write('v100', buildGguf(BASE_KV, [], data, { version: 100 }))), 'BAD_MAGIC');
  await expectRwkvRejection(() => readGguf(write('be', buildGguf(BASE_KV, [], data, { version: 3 << 24 }))), 'UNSUPPORTED_VERSION', ['big-endian']);
  await expectRwkvRejection(() => readGguf(write('count', buildGguf(BASE_KV, [], data, { tensorCount: 1n << 50n }))), 'TRUNCATED');
  await expectRwkvRejection(() => readGguf(write('llama', buildGguf([['general.architecture', 'str', 'llama']], [], data))), 'UNKNOWN_MODEL', ['llama']);
  await expectRwkvRejection(() => readGguf(write('noarch', buildGguf([], [], data))), 'UNKNOWN_MODEL', ['architecture']);
  await expectRwkvRejection(() => readGguf(write('i-quant', buildGguf(BASE_KV, [{ name: 'output.weight', ne: [256, 1], type: 16, offset: 0 }], data))), 'UNSUPPORTED_DTYPE', [
    "'output.weight'",
    'IQ2_XXS',
  ]);
  // A K-quant is read (test/kquants.test.ts): one Q4_K super-block needs 144 bytes, more than the file has.
  await expectRwkvRejection(() => readGguf(write('k-quant', buildGguf(BASE_KV, [{ name: 'output.weight', ne: [256, 1], type: 12, offset: 0 }], data))), 'TRUNCATED', [
    "'output.weight'",
  ]);
  await expectRwkvRejection(() => readGguf(write('align', buildGguf(BASE_KV, [f32x4('a', 4)], data))), 'BAD_HEADER', ["'a'", 'alignment']);
  await expectRwkvRejection(() => readGguf(write('past', buildGguf(BASE_KV, [f32x4('a', 64)], data))), 'TRUNCATED', ["'a'"]);
  await expectRwkvRejection(() => readGguf(write('overlap', buildGguf(BASE_KV, [{ name: 'a', ne: [8], type: 0, offset: 0 }, f32x4('b', 0)], data))), 'BAD_HEADER', ['overlaps']);
  await expectRwkvRejection(() => readGguf(write('dims', buildGguf(BASE_KV, [{ name: 'a', ne: [1, 1, 1, 1, 4], type: 0, offset: 0 }], data))), 'BAD_HEADER', ["'a'"]);
  await expectRwkvRejection(() => readGguf(write('block', buildGguf(BASE_KV, [{ name: 'a', ne: [16], type: 8, offset: 0 }], data))), 'BAD_HEADER', ["'a'", 'block']);
  await expectRwkvRejection(() => readGguf(write('nohead', buildGguf([['general.architecture', 'str', 'rwkv7']], [], data))), 'BAD_HEADER', ['head_size']);
  // a string length far past the end of the file
  const b = buildGguf(BASE_KV, [], data);
  b.writeBigUInt64LE(1n << 40n, 24);
  await expectRwkvRejection(() => readGguf(write('strlen', b)), 'TRUNCATED');
  // v4/v5 cannot be written: llama.cpp has no such architecture
  assert.throws(() => ggufLayout([], '7', 'x'), /emb\.weight/);
});

test('GGUF → official formats: the rwkv.cpp-encoded tensors are transformed back to the official ones', async (t) => {
  const bin = fixture(t, fp32('7v0-834K'));
  const conv = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  if (bin === undefined || conv === undefined) return;
  const g = tmp('7v0-b.gguf');
  writeCheckpoint(await openCheckpoint(bin), g);
  assertSameTensors(toEncoding(await readGguf(g), 'official').tensors, (await openCheckpoint(conv)).tensors, 'GGUF → official');
});
