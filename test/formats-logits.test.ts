// Every way of storing the same model gives the same logits: the official-format fixtures (.pth and
// .safetensors) against the rwkv.cpp FP32 files they were derived from, and the files our writers produce
// (.pth, .safetensors, .bin, .gguf) against their source — within 1e-5 (they are in fact bit-identical,
// as the parameter transforms invert each other exactly on these files).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { loadModel } from '../src/models/load.js';
import { fixture, maxAbsDiff, readF32 } from './helpers/fixtures.js';
import { fp32, GGUF_MODELS, logitsAfterIn, MODELS, tempDir } from './helpers/formats.js';

const SAME = 1e-5;
const OFFICIAL = 1e-4;
const dir = tempDir('logits');

for (const m of MODELS) {
  for (const ext of ['pth', 'safetensors']) {
    test(`converted/${m}.${ext}: logits equal the rwkv.cpp FP32 file's (≤ ${SAME}) and the official expectation (≤ ${OFFICIAL})`, async (t) => {
      const conv = fixture(t, `converted/tiny-rwkv-${m}-FP32.${ext}`);
      const bin = fixture(t, fp32(m));
      const expected = fixture(t, `expected-logits-official-${m}.bin`);
      if (conv === undefined || bin === undefined || expected === undefined) return;
      const got = await logitsAfterIn(await loadModel(conv));
      const diff = maxAbsDiff(got, await logitsAfterIn(await loadModel(bin)));
      assert.ok(diff <= SAME, `max abs difference ${diff} > ${SAME}`);
      const off = maxAbsDiff(got, readF32(expected));
      assert.ok(off <= OFFICIAL, `vs official: ${off} > ${OFFICIAL}`);
    });
  }

  test(`${m}: files written from the FP32 fixture (.pth, .safetensors, .bin${(GGUF_MODELS as readonly string[]).includes(m) ? ', .gguf' : ''}) give its logits`, async (t) => {
    const bin = fixture(t, fp32(m));
    if (bin === undefined) return;
    const source = await openCheckpoint(bin);
    const want = await logitsAfterIn(await loadModel(bin));
    const exts = ['pth', 'safetensors', 'bin', ...((GGUF_MODELS as readonly string[]).includes(m) ? ['gguf'] : [])];
    for (const ext of exts) {
      const out = path.join(dir, `${m}-from-fp32.${ext}`);
      writeCheckpoint(source, out);
      const diff = maxAbsDiff(await logitsAfterIn(await loadModel(out)), want);
      assert.ok(diff <= SAME, `${ext}: max abs difference ${diff} > ${SAME}`);
    }
  });
}

for (const m of GGUF_MODELS) {
  for (const fmt of ['FP16', 'Q5_1']) {
    test(`${m} ${fmt}: written as GGUF (16-bit and quantized tensors kept as they are) gives the .bin's logits`, async (t) => {
      const bin = fixture(t, `tiny-rwkv-${m}-${fmt}.bin`);
      if (bin === undefined) return;
      const out = path.join(dir, `${m}-${fmt}.gguf`);
      writeCheckpoint(await openCheckpoint(bin), out);
      const back = await openCheckpoint(out);
      const types = new Set([...back.tensors.values()].map((x) => x.dtype));
      assert.ok(types.has(fmt === 'FP16' ? 'f16' : 'q5_1'), `stored types: ${[...types].join(', ')}`);
      const diff = maxAbsDiff(await logitsAfterIn(await loadModel(out)), await logitsAfterIn(await loadModel(bin)));
      assert.ok(diff <= SAME, `max abs difference ${diff} > ${SAME}`);
    });
  }
}

test('a quantized rwkv.cpp file written as .safetensors holds its exactly dequantized weights (same logits)', async (t) => {
  const bin = fixture(t, 'quantized/tiny-rwkv-5v2-730K-FP32-to-Q4_1.bin');
  const expected = fixture(t, 'expected-logits-official-5v2-730K-Q4_1.bin');
  if (bin === undefined || expected === undefined) return;
  const out = path.join(dir, '5v2-q4_1.safetensors');
  writeCheckpoint(await openCheckpoint(bin), out);
  const got = await logitsAfterIn(await loadModel(out));
  // The .bin's Q4_1 weights times exact activations (not ggml's 8-bit ones) are the f32 file's products.
  assert.ok(maxAbsDiff(got, await logitsAfterIn(await loadModel(bin, { backend: new ReferenceBackend({ exactActivations: true }) }))) <= SAME);
  assert.ok(maxAbsDiff(got, readF32(expected)) <= OFFICIAL);
});

for (const m of ['5v2-730K', '7v0-834K']) {
  test(`${m}: bf16 .pth and f16 .safetensors checkpoints load and give the logits of their values widened to f32 (≤ ${SAME})`, async (t) => {
    const conv = fixture(t, `converted/tiny-rwkv-${m}-FP32.safetensors`);
    if (conv === undefined) return;
    for (const [dtype, ext] of [
      ['bf16', 'pth'],
      ['f16', 'safetensors'],
    ] as const) {
      const half = path.join(dir, `${m}-${dtype}.${ext}`);
      writeCheckpoint(await openCheckpoint(conv), half, { dtype });
      assert.ok([...(await openCheckpoint(half)).tensors.values()].every((x) => x.dtype === dtype));
      const widened = path.join(dir, `${m}-${dtype}-widened.safetensors`);
      writeCheckpoint(await openCheckpoint(half), widened, { dtype: 'f32' });
      const diff = maxAbsDiff(await logitsAfterIn(await loadModel(half)), await logitsAfterIn(await loadModel(widened)));
      assert.ok(diff <= SAME, `${dtype}: max abs difference ${diff} > ${SAME}`);
    }
  });
}
