// safetensors: the fixtures, Hugging Face names, 8-bit integer tensors, our writer's layout, and every
// malformed header refused with a typed error naming the file (and the tensor, when one is at fault).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { f32View } from '../src/tensor/tensor.js';
import { fixture } from './helpers/fixtures.js';
import { assertSameTensors, expectRwkvRejection, logitsAfterIn, tempDir } from './helpers/formats.js';

const dir = tempDir('safetensors');
let n = 0;
const tmp = (name: string): string => path.join(dir, `${++n}-${name}`);

/** An independent safetensors builder: `header` as JSON (any value), then `data`. */
function stFile(header: unknown, data: Uint8Array = new Uint8Array(0), label = 'x', lengthField?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.byteLength));
  const p = tmp(`${label}.safetensors`);
  fs.writeFileSync(p, Buffer.concat([len, json, Buffer.from(data)]));
  return p;
}

test('the fixtures: official names in file order, all f32, metadata kept, encoding official', async (t) => {
  const p = fixture(t, 'converted/tiny-rwkv-6v0-1m-FP32.safetensors');
  if (p === undefined) return;
  const s = await readSafetensors(p);
  assert.equal(s.format, 'safetensors');
  assert.equal(s.encoding, 'official');
  assert.equal(s.tensors.size, 342);
  assert.equal([...s.tensors.keys()][0], 'emb.weight');
  assert.deepEqual(s.tensors.get('blocks.0.att.time_maa_w2')!.shape, [5, 32, 64]);
  assert.equal(s.metadata.get('rwkv_version'), '6');
  assert.ok([...s.tensors.values()].every((x) => x.dtype === 'f32'));
});

test('our writer: JSON padded to 8 bytes, __metadata__.format = pt, contiguous offsets in order; reads back the same', async (t) => {
  const p = fixture(t, 'converted/tiny-rwkv-5v1-730K-FP32.safetensors');
  if (p === undefined) return;
  const out = tmp('w.safetensors');
  writeCheckpoint(await openCheckpoint(p), out, { metadata: { note: 'hello' } });
  const b = fs.readFileSync(out);
  const len = Number(b.readBigUInt64LE(0));
  assert.equal(len % 8, 0);
  const header = JSON.parse(b.subarray(8, 8 + len).toString()) as Record<string, { data_offsets: [number, number] }>;
  assert.deepEqual(header.__metadata__, { format: 'pt', note: 'hello' });
  let end = 0;
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    assert.equal(v.data_offsets[0], end, k);
    end = v.data_offsets[1];
  }
  assert.equal(8 + len + end, b.byteLength);
  assertSameTensors((await readSafetensors(out)).tensors, (await readSafetensors(p)).tensors, 'round trip');
});

test('Hugging Face RWKV-4 names map to the official ones, and the model runs the same', async (t) => {
  const p = fixture(t, 'converted/tiny-rwkv-4v0-660K-FP32.safetensors');
  if (p === undefined) return;
  const src = fs.readFileSync(p);
  const len = Number(src.readBigUInt64LE(0));
  const header = JSON.parse(src.subarray(8, 8 + len).toString()) as Record<string, unknown>;
  const renamed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(header)) {
    const hf = k
      .replace(/^emb\.weight$/, 'rwkv.embeddings.weight')
      .replace(/^ln_out\./, 'rwkv.ln_out.')
      .replace(/^blocks\.0\.ln0\./, 'rwkv.blocks.0.pre_ln.')
      .replace(/^blocks\.(\d+)\.(ln[12])\./, 'rwkv.blocks.$1.$2.')
      .replace(/^blocks\.(\d+)\.att\.time_mix_k$/, 'rwkv.blocks.$1.attention.time_mix_key')
      .replace(/^blocks\.(\d+)\.att\.time_mix_v$/, 'rwkv.blocks.$1.attention.time_mix_value')
      .replace(/^blocks\.(\d+)\.att\.time_mix_r$/, 'rwkv.blocks.$1.attention.time_mix_receptance')
      .replace(/^blocks\.(\d+)\.att\./, 'rwkv.blocks.$1.attention.')
      .replace(/^blocks\.(\d+)\.ffn\.time_mix_k$/, 'rwkv.blocks.$1.feed_forward.time_mix_key')
      .replace(/^blocks\.(\d+)\.ffn\.time_mix_r$/, 'rwkv.blocks.$1.feed_forward.time_mix_receptance')
      .replace(/^blocks\.(\d+)\.ffn\./, 'rwkv.blocks.$1.feed_forward.');
    renamed[hf] = v;
  }
  assert.ok('rwkv.blocks.3.feed_forward.time_mix_receptance' in renamed && 'rwkv.blocks.0.pre_ln.bias' in renamed);
  const hfFile = stFile(renamed, src.subarray(8 + len), 'hf');
  assertSameTensors((await readSafetensors(hfFile)).tensors, (await readSafetensors(p)).tensors, 'HF → official');
  assert.deepEqual(await logitsAfterIn(await loadModel(hfFile)), await logitsAfterIn(await loadModel(p)));
});

test('I8 and U8 tensors are widened to f32 exactly; F16 and BF16 are kept as stored', async () => {
  const data = new Uint8Array([0x80, 0xff, 0x00, 0x7f, 0x80, 0xff, 0x00, 0x3c, 0x80, 0x3f]);
  const p = stFile(
    {
      i: { dtype: 'I8', shape: [2, 2], data_offsets: [0, 4] },
      u: { dtype: 'U8', shape: [3], data_offsets: [4, 7] },
      h: { dtype: 'F16', shape: [1], data_offsets: [6, 8] },
      b: { dtype: 'BF16', shape: [1], data_offsets: [8, 10] },
    },
    data,
    'ints',
  );
  await expectRwkvRejection(() => readSafetensors(p), 'BAD_HEADER', ["'h'", 'overlaps']);
  const q = stFile(
    {
      i: { dtype: 'I8', shape: [2, 2], data_offsets: [0, 4] },
      u: { dtype: 'U8', shape: [3], data_offsets: [4, 7] },
      h: { dtype: 'F16', shape: [1], data_offsets: [8, 10] },
      b: { dtype: 'BF16', shape: [1], data_offsets: [10, 12] },
    },
    new Uint8Array([0x80, 0xff, 0x00, 0x7f, 0x80, 0xff, 0x00, 0, 0x00, 0x3c, 0x80, 0x3f]),
    'ints2',
  );
  const s = await readSafetensors(q);
  assert.deepEqual([...f32View(s.tensors.get('i')!)], [-128, -1, 0, 127]);
  assert.deepEqual(s.tensors.get('i')!.shape, [2, 2]);
  assert.deepEqual([...f32View(s.tensors.get('u')!)], [128, 255, 0]);
  assert.equal(s.tensors.get('h')!.dtype, 'f16');
  assert.equal(s.tensors.get('b')!.dtype, 'bf16');
});

test('malformed headers are typed errors naming the file and, where one is at fault, the tensor', async () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const eight = new Uint8Array(8);
  await expectRwkvRejection(() => readSafetensors(stFile(ok, eight, 'length', 1n << 40n)), 'BAD_HEADER', ['exceeds']);
  await expectRwkvRejection(() => readSafetensors(stFile(ok, eight, 'length2', 100000n)), 'TRUNCATED', ['JSON header']);
  await expectRwkvRejection(() => readSafetensors(stFile('{"w": ', eight, 'json')), 'BAD_HEADER', ['does not parse']);
  await expectRwkvRejection(() => readSafetensors(stFile('[1, 2]', eight, 'array')), 'BAD_HEADER', ['not an object']);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, eight, 'f64')), 'UNSUPPORTED_DTYPE', ["'w'", 'F64']);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight, 'count')), 'BAD_HEADER', ["'w'"]);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, eight, 'neg')), 'BAD_HEADER', ["'w'", 'shape']);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, eight, 'past')), 'TRUNCATED', ["'w'"]);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, eight, 'rev')), 'BAD_HEADER', ["'w'"]);
  await expectRwkvRejection(() => readSafetensors(stFile({ w: { shape: [2], data_offsets: [0, 8] } }, eight, 'nodtype')), 'BAD_HEADER', ['no dtype']);
  await expectRwkvRejection(() => readSafetensors(stFile({ __metadata__: {} }, eight, 'empty')), 'TRUNCATED', ['no tensors']);
  // the same tensor twice after name mapping
  const twice = { 'emb.weight': { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, 'rwkv.embeddings.weight': { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
  await expectRwkvRejection(() => readSafetensors(stFile(twice, eight, 'twice')), 'BAD_HEADER', ['twice']);
  const p = stFile(ok, eight, 'fine');
  assert.deepEqual([...f32View((await readSafetensors(p)).tensors.get('w')!)], [0, 0]);
});
