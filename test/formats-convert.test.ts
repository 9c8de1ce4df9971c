// Converting and quantizing: our quantizer's files are byte-identical to rwkv.cpp's (which tensors it
// quantizes, the ggml reference rounding, the file layout), FP32 → FP16 matches rwkv.cpp's converter, the
// official ↔ rwkv.cpp parameter transforms invert each other exactly on the fixtures, and every f32
// conversion round-trips losslessly. Also the `rwkv convert` / `rwkv quantize` entry points.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runConvert } from '../src/cli/convert.js';
import { runQuantize } from '../src/cli/quantize.js';
import { outputFormatOf, writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { readRwkvCpp } from '../src/formats/rwkvcpp.js';
import { toEncoding } from '../src/formats/transform.js';
import { decodeF32 } from '../src/formats/values.js';
import { f32ToBF16Bits, f32ToF16Bits, quantize, type QuantType } from '../src/kernels/quantize.js';
import { dequantize } from '../src/kernels/quant.js';
import { decodeBF16, decodeF16 } from '../src/tensor/dtype.js';
import { f32View } from '../src/tensor/tensor.js';
import { fixture } from './helpers/fixtures.js';
import { assertSameTensors, expectRwkvRejection, fp32, MODELS, tempDir } from './helpers/formats.js';

const dir = tempDir('convert');
let n = 0;
const tmp = (name: string): string => path.join(dir, `${++n}-${name}`);

/** Equal bytes, except the rwkv.cpp header's version field (bytes 4..8): we always write 101. */
function sameRwkvCppBytes(a: Buffer, b: Buffer, what: string): void {
  assert.equal(a.byteLength, b.byteLength, `${what}: ${a.byteLength} bytes vs ${b.byteLength}`);
  const x = Buffer.from(a);
  x.writeInt32LE(b.readInt32LE(4), 4);
  if (!x.equals(b)) {
    let first = 0;
    while (x[first] === b[first]) first++;
    assert.fail(`${what}: files differ, first at byte ${first}`);
  }
}

// --- Quantization --------------------------------------------------------------------------------------

const QUANT_CASES: { model: string; type: QuantType; expected: string }[] = [];
for (const m of MODELS) {
  for (const q of ['Q4_0', 'Q4_1', 'Q8_0'] as const) {
    QUANT_CASES.push({ model: m, type: q.toLowerCase() as QuantType, expected: `quantized/tiny-rwkv-${m}-FP32-to-${q}.bin` });
  }
  for (const q of ['Q5_0', 'Q5_1'] as const) {
    // 6v0-1m's shipped Q5_0 predates a ggml change in Q5_0 rounding; rwkv.cpp no longer produces it.
    if (m === '6v0-1m' && q === 'Q5_0') continue;
    QUANT_CASES.push({ model: m, type: q.toLowerCase() as QuantType, expected: `tiny-rwkv-${m}-${q}.bin` });
  }
}

for (const c of QUANT_CASES) {
  test(`quantize ${fp32(c.model)} to ${c.type.toUpperCase()}: byte-identical to rwkv.cpp's ${c.expected}`, async (t) => {
    const src = fixture(t, fp32(c.model));
    const expected = fixture(t, c.expected);
    if (src === undefined || expected === undefined) return;
    const out = tmp(`${c.model}-${c.type}.bin`);
    writeCheckpoint(await openCheckpoint(src), out, { quantize: c.type });
    const a = fs.readFileSync(out);
    const b = fs.readFileSync(expected);
    assert.equal(a.byteLength, b.byteLength);
    assert.ok(a.equals(b), `${out} differs from ${expected}`);
  });
}

test('6v0-1m Q5_0: every tensor rwkv.cpp kept unquantized matches; the quantized ones differ only in rare blocks (old ggml rounding)', async (t) => {
  const src = fixture(t, fp32('6v0-1m'));
  const old = fixture(t, 'tiny-rwkv-6v0-1m-Q5_0.bin');
  if (src === undefined || old === undefined) return;
  const out = tmp('6v0-q5_0.bin');
  writeCheckpoint(await openCheckpoint(src), out, { quantize: 'q5_0' });
  const mine = await readRwkvCpp(out);
  const theirs = await readRwkvCpp(old);
  assert.deepEqual([...mine.tensors.keys()], [...theirs.tensors.keys()]);
  let differingBlocks = 0;
  let blocks = 0;
  for (const [name, a] of mine.tensors) {
    const b = theirs.tensors.get(name)!;
    assert.equal(a.dtype, b.dtype, name);
    assert.deepEqual(a.shape, b.shape, name);
    if (a.dtype !== 'q5_0') {
      assert.ok(Buffer.from(a.data).equals(Buffer.from(b.data)), name);
      continue;
    }
    for (let o = 0; o < a.data.byteLength; o += 22) {
      blocks++;
      if (!Buffer.from(a.data.subarray(o, o + 22)).equals(Buffer.from(b.data.subarray(o, o + 22)))) differingBlocks++;
    }
  }
  assert.ok(differingBlocks / blocks < 0.01, `${differingBlocks} of ${blocks} blocks differ`);
});

test('quantizers: dequantize(quantize(x)) stays within half a step of x (q4_0/q5_0: one step on their short side); all-zero and constant blocks are exact', async () => {
  const x = new Float32Array(32 * 64);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    x[i] = ((s / 2 ** 32) * 2 - 1) * (i % 7 === 0 ? 10 : 1);
  }
  x.fill(0, 0, 32); // an all-zero block
  x.fill(0.25, 32, 64); // a constant block
  for (const q of ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'] as const) {
    const back = new Float32Array(x.length);
    dequantize(q, quantize(q, x), 0, x.length, back);
    for (let b = 0; b < x.length / 32; b++) {
      const block = x.subarray(32 * b, 32 * b + 32);
      const range = Math.max(...block) - Math.min(...block);
      const amax = Math.max(...block.map(Math.abs));
      // Largest error: half a step, except q4_0/q5_0 whose grid [−8d, 7d] (resp. [−16d, 15d]) is one step
      // short on the side opposite the largest magnitude; plus the f16 rounding of the scale and minimum.
      const bound = { q4_0: amax / 8, q5_0: amax / 16, q8_0: amax / 254, q4_1: range / 30, q5_1: range / 62 }[q];
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(back[32 * b + j]! - block[j]!);
        assert.ok(err <= bound * 1.01 + 1e-3 * amax, `${q} block ${b}[${j}]: ${block[j]} → ${back[32 * b + j]} (bound ${bound})`);
      }
    }
    for (let j = 0; j < 32; j++) assert.ok(back[j] === 0, `${q}: zero block gives ${back[j]}`); // ±0 (ggml's d is −0)
    if (q.endsWith('_1')) for (let j = 32; j < 64; j++) assert.equal(back[j], 0.25, `${q}: constant block`);
  }
});

test('f16 / bf16 encoders: round to nearest even, exact on representable values, ±Inf on overflow, NaN kept', async () => {
  for (let h = 0; h < 65536; h++) {
    const v = decodeF16(h);
    if (Number.isNaN(v)) assert.ok(Number.isNaN(decodeF16(f32ToF16Bits(v))));
    else assert.equal(f32ToF16Bits(v), h, `f16 ${h.toString(16)}`);
    const b = decodeBF16(h);
    if (Number.isNaN(b)) assert.ok(Number.isNaN(decodeBF16(f32ToBF16Bits(b))));
    else assert.equal(f32ToBF16Bits(b), h, `bf16 ${h.toString(16)}`);
  }
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // a tie: to even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // a tie: to even (up)
  assert.equal(f32ToF16Bits(65520), 0x7c00); // rounds past the largest half
  assert.equal(f32ToF16Bits(65519), 0x7bff);
  assert.equal(f32ToF16Bits(2 ** -25), 0); // tie between 0 and the smallest subnormal
  assert.equal(f32ToF16Bits(Math.fround(2 ** -25 * 1.5)), 1);
  assert.equal(f32ToBF16Bits(Math.fround(1 + 2 ** -8)), 0x3f80); // tie to even
  assert.equal(f32ToBF16Bits(Math.fround(1 + 3 * 2 ** -8)), 0x3f82);
});

// --- Float conversions ---------------------------------------------------------------------------------

for (const m of MODELS) {
  test(`${m}: FP32 → .bin --dtype f16 is byte-identical to rwkv.cpp's FP16 file (header version aside)`, async (t) => {
    const src = fixture(t, fp32(m));
    const expected = fixture(t, `tiny-rwkv-${m}-FP16.bin`);
    if (src === undefined || expected === undefined) return;
    const out = tmp(`${m}-f16.bin`);
    writeCheckpoint(await openCheckpoint(src), out, { dtype: 'f16' });
    sameRwkvCppBytes(fs.readFileSync(out), fs.readFileSync(expected), out);
  });

  test(`${m}: the official ↔ rwkv.cpp transforms are exact inverses on the fixtures (converted/*.safetensors → .bin = the FP32 file)`, async (t) => {
    const src = fixture(t, `converted/tiny-rwkv-${m}-FP32.safetensors`);
    const bin = fixture(t, fp32(m));
    if (src === undefined || bin === undefined) return;
    const out = tmp(`${m}-from-st.bin`);
    writeCheckpoint(await openCheckpoint(src), out);
    sameRwkvCppBytes(fs.readFileSync(out), fs.readFileSync(bin), out);
    assertSameTensors(toEncoding(await readRwkvCpp(bin), 'official').tensors, (await openCheckpoint(src)).tensors, 'FP32 .bin → official');
  });

  test(`${m}: f32 round trips are lossless (.bin → .safetensors → .pth → .gguf/.bin → .safetensors)`, async (t) => {
    const bin = fixture(t, fp32(m));
    const conv = fixture(t, `converted/tiny-rwkv-${m}-FP32.safetensors`);
    if (bin === undefined || conv === undefined) return;
    const official = (await openCheckpoint(conv)).tensors;
    const a = tmp(`${m}.safetensors`);
    writeCheckpoint(await openCheckpoint(bin), a);
    assertSameTensors((await openCheckpoint(a)).tensors, official, '.bin → .safetensors');
    const b = tmp(`${m}.pth`);
    writeCheckpoint(await openCheckpoint(a), b);
    assertSameTensors((await openCheckpoint(b)).tensors, official, '→ .pth');
    const c = tmp(`${m}.${m.startsWith('6') || m.startsWith('7') ? 'gguf' : 'bin'}`);
    writeCheckpoint(await openCheckpoint(b), c);
    const d = tmp(`${m}-again.safetensors`);
    writeCheckpoint(await openCheckpoint(c), d);
    assertSameTensors((await openCheckpoint(d)).tensors, official, `→ ${path.extname(c)} → .safetensors`);
  });
}

test('--dtype f16 / bf16 for official formats: every tensor rounded to nearest even, nothing else changed', async (t) => {
  const src = fixture(t, 'converted/tiny-rwkv-6v0-1m-FP32.safetensors');
  if (src === undefined) return;
  const orig = (await openCheckpoint(src)).tensors;
  for (const [dtype, ext, enc, dec] of [
    ['f16', 'pth', f32ToF16Bits, decodeF16],
    ['bf16', 'safetensors', f32ToBF16Bits, decodeBF16],
  ] as const) {
    const out = tmp(`6v0.${dtype}.${ext}`);
    writeCheckpoint(await openCheckpoint(src), out, { dtype });
    const back = (await openCheckpoint(out)).tensors;
    assert.deepEqual([...back.keys()], [...orig.keys()]);
    for (const [name, t32] of orig) {
      const t16 = back.get(name)!;
      assert.equal(t16.dtype, dtype, name);
      assert.deepEqual(t16.shape, t32.shape, name);
      const want = f32View(t32);
      const got = decodeF32(t16);
      for (let i = 0; i < want.length; i++) assert.equal(got[i], dec(enc(want[i]!)), `${name}[${i}]`);
    }
  }
});

// --- CLI entry points ------------------------------------------------------------------------------------

test('runQuantize and runConvert: the files named by the extension, with a one-line summary; bad options are ArgumentErrors', async (t) => {
  const src = fixture(t, fp32('7v0-834K'));
  const expected = fixture(t, 'quantized/tiny-rwkv-7v0-834K-FP32-to-Q8_0.bin');
  if (src === undefined || expected === undefined) return;
  const q = tmp('7v0-q8.bin');
  const summary = await runQuantize({ in: src, out: q, type: 'Q8_0' });
  assert.equal(summary.format, 'rwkv.cpp');
  assert.ok(fs.readFileSync(q).equals(fs.readFileSync(expected)));
  const g = tmp('7v0-q8.gguf');
  await runQuantize({ in: src, out: g, type: 'q8_0' });
  assert.ok([...(await openCheckpoint(g)).tensors.values()].some((x) => x.dtype === 'q8_0'));
  // from an official checkpoint: the same bytes as rwkv.cpp's quantizer applied to the rwkv.cpp file
  const pth = fixture(t, 'converted/tiny-rwkv-5v2-730K-FP32.pth');
  const q51 = fixture(t, 'tiny-rwkv-5v2-730K-Q5_1.bin');
  if (pth === undefined || q51 === undefined) return;
  const fromPth = tmp('5v2-from-pth-q5_1.bin');
  await runQuantize({ in: pth, out: fromPth, type: 'Q5_1' });
  assert.ok(fs.readFileSync(fromPth).equals(fs.readFileSync(q51)), 'quantized from .pth');
  const h = tmp('7v0-half.safetensors');
  assert.equal((await runConvert({ in: src, out: h, dtype: 'f16' })).format, 'safetensors');
  assert.ok([...(await openCheckpoint(h)).tensors.values()].every((x) => x.dtype === 'f16'));

  await expectRwkvRejection(() => runQuantize({ in: src, out: tmp('x.bin'), type: 'Q3_K' }), 'BAD_ARGUMENT', ['Q4_0']);
  await expectRwkvRejection(() => runQuantize({ in: src, out: tmp('x.safetensors'), type: 'Q4_0' }), 'BAD_ARGUMENT', ['.bin or .gguf']);
  await expectRwkvRejection(() => runConvert({ in: src, out: tmp('x.onnx') }), 'BAD_ARGUMENT', ['extension']);
  await expectRwkvRejection(() => runConvert({ in: src, out: tmp('x.bin'), dtype: 'f8' }), 'BAD_ARGUMENT', ['--dtype']);
  await expectRwkvRejection(() => runConvert({ in: src, out: tmp('x.bin'), dtype: 'bf16' }), 'BAD_ARGUMENT', ['bf16']);
  await expectRwkvRejection(() => runConvert({ in: path.join(dir, 'missing.pth'), out: tmp('x.bin') }), 'FILE_NOT_FOUND');
  assert.equal(outputFormatOf('A.PT'), 'pth');
});

test('GGUF has no RWKV v4/v5 architecture: converting one to .gguf is refused, and no partial file is left', async (t) => {
  const src = fixture(t, fp32('5v2-730K'));
  if (src === undefined) return;
  const out = tmp('5v2.gguf');
  await expectRwkvRejection(() => runConvert({ in: src, out }), 'BAD_ARGUMENT', ['rwkv6', 'rwkv7']);
  assert.ok(!fs.existsSync(out));
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.includes('.partial')),
    [],
  );
});
