// Files over 4 GiB: tensors stored past the 32-bit boundary are found and read positionally. The files are
// sparse (a hole of 4.5 GiB, no disk used), so the test is quick; it is skipped where the file system
// cannot make sparse files. The .pth case exercises ZIP64 (records and offsets past 4 GiB) in both our
// writer and our reader; the GGUF case 64-bit tensor offsets.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { readGguf } from '../src/formats/gguf.js';
import { openCheckpoint } from '../src/formats/open.js';
import { stateDictPickle } from '../src/formats/pth.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { FileWriter, outTensor } from '../src/formats/writer.js';
import { ZipWriter } from '../src/formats/zip.js';
import { loadModel } from '../src/models/load.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';
import { assertSameTensors, fp32, logitsAfterIn, tempDir } from './helpers/formats.js';

const GAP = 4.5 * 2 ** 30;
const dir = tempDir('big');

function sparseSupported(t: TestContext): boolean {
  const p = path.join(dir, 'probe');
  const fd = fs.openSync(p, 'w');
  fs.writeSync(fd, Buffer.from('x'), 0, 1, GAP);
  fs.closeSync(fd);
  const st = fs.statSync(p);
  fs.rmSync(p);
  if (st.blocks * 512 < 1 << 24) return true;
  t.skip('the temporary file system does not make sparse files');
  return false;
}

test('a .pth over 4 GiB (ZIP64; storages past the 32-bit boundary) loads and runs', async (t) => {
  const st = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  if (st === undefined || !sparseSupported(t)) return;
  const src = await openCheckpoint(st);
  const tensors = [...src.tensors.values()].map((x) => outTensor(x));
  const p = path.join(dir, 'big.pth');
  const w = FileWriter.create(p);
  const zip = new ZipWriter(w);
  zip.add('archive/.data/serialization_id', [Buffer.from('sparse-test')]);
  w.position += GAP; // a hole between two entries: zip readers go by the central directory
  zip.add('archive/data.pkl', [stateDictPickle(tensors)]);
  tensors.forEach((x, i) => zip.add(`archive/data/${i}`, [x.bytes()]));
  zip.add('archive/version', [Buffer.from('3\n')]);
  zip.finish();
  w.close();
  const size = fs.statSync(p).size;
  assert.ok(size > GAP, `${size} bytes`);
  // The classic end record defers to the ZIP64 one.
  const tail = Buffer.alloc(22);
  const fd = fs.openSync(p, 'r');
  fs.readSync(fd, tail, 0, 22, size - 22);
  fs.closeSync(fd);
  assert.equal(tail.readUInt32LE(16), 0xffffffff);
  const back = await openCheckpoint(p);
  assert.equal(back.format, 'pth');
  assertSameTensors(back.tensors, src.tensors, '> 4 GiB .pth');
  assert.equal(maxAbsDiff(await logitsAfterIn(await loadModel(p)), await logitsAfterIn(await loadModel(st))), 0);
});

test('a GGUF whose tensor data starts past 4 GiB loads and runs', async (t) => {
  const bin = fixture(t, fp32('6v0-1m'));
  if (bin === undefined || !sparseSupported(t)) return;
  const small = path.join(dir, 'small.gguf');
  writeCheckpoint(await openCheckpoint(bin), small, { quantize: 'q5_1' });
  const b = fs.readFileSync(small);
  // Walk to the tensor infos and move every offset up by GAP (a multiple of the 32-byte alignment).
  let p = 24;
  const skipStr = (): void => void (p += 8 + Number(b.readBigUInt64LE(p)));
  const nt = Number(b.readBigUInt64LE(8));
  const nkv = Number(b.readBigUInt64LE(16));
  // Value sizes by GGUF type: u8 i8 u16 i16 u32 i32 f32 bool (string) (array) u64 i64 f64.
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skipValue = (type: number): void => {
    if (type === 8) skipStr();
    else if (type === 9) {
      // An array (the tokenizer's tokens and token types): element type, count, elements.
      const elem = b.readUInt32LE(p);
      const count = Number(b.readBigUInt64LE(p + 4));
      p += 12;
      for (let j = 0; j < count; j++) skipValue(elem);
    } else p += SIZES[type]!;
  };
  for (let i = 0; i < nkv; i++) {
    skipStr();
    const type = b.readUInt32LE(p);
    p += 4;
    skipValue(type);
  }
  const head = Buffer.from(b);
  for (let i = 0; i < nt; i++) {
    skipStr();
    p += 4 + 8 * b.readUInt32LE(p) + 4;
    head.writeBigUInt64LE(b.readBigUInt64LE(p) + BigInt(GAP), p);
    p += 8;
  }
  const dataStart = Math.ceil(p / 32) * 32;
  const big = path.join(dir, 'big.gguf');
  const fd = fs.openSync(big, 'w');
  fs.writeSync(fd, head, 0, dataStart, 0);
  fs.writeSync(fd, b, dataStart, b.byteLength - dataStart, dataStart + GAP);
  fs.closeSync(fd);
  assert.ok(fs.statSync(big).size > GAP);
  assertSameTensors((await readGguf(big)).tensors, (await readGguf(small)).tensors, '> 4 GiB GGUF');
  assert.equal(maxAbsDiff(await logitsAfterIn(await loadModel(big)), await logitsAfterIn(await loadModel(small))), 0);
});
