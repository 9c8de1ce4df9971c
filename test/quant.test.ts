// ggml block dequantization, the quantized matrix-vector product, and f16/bf16 decoding, checked against
// values worked out by hand from ggml's definitions:
//   Q4_0: (q − 8)·d        Q4_1: q·d + m       Q5_0: ((q | h<<4) − 16)·d     Q5_1: (q | h<<4)·d + m
//   Q8_0: int8·d
// where, in a 32-value block, the low nibble of packed byte j is value j and its high nibble value j+16,
// and bit j of Q5's little-endian u32 `qh` is the fifth bit of value j (j = 0..31).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readRwkvCpp } from '../src/formats/rwkvcpp.js';
import { matrixFromTensor, readRow, referenceMatvec } from '../src/kernels/matrix.js';
import { blockDecoder, dequantize, QK } from '../src/kernels/quant.js';
import { decodeBF16, decodeF16, DTYPES, f16ToF32Table, type DType } from '../src/tensor/dtype.js';
import { f32View } from '../src/tensor/tensor.js';
import { fixture } from './helpers/fixtures.js';
import { rng } from './helpers/seeded.js';

type BlockType = 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q8_0';
const BLOCK_TYPES: readonly BlockType[] = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'];

// f16 bit patterns used below, and their values.
const F16_HALF = 0x3800; // 0.5
const F16_MINUS_ONE = 0xbc00; // −1.0
const F16_TENTH = 0x2e66; // 0.0999755859375 (the f16 nearest 0.1)
const TENTH = 0.0999755859375;

// ---------------------------------------------------------------------------------------------------
// Building blocks byte by byte.

const u16le = (v: number): number[] => [v & 0xff, (v >> 8) & 0xff];
const u32le = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Packs 32 values of 0..15 into ggml's 16 bytes: value j in the low nibble of byte j, value j+16 in the high. */
function packNibbles(q: readonly number[]): number[] {
  assert.equal(q.length, 32);
  const out: number[] = [];
  for (let j = 0; j < 16; j++) out.push((q[j]! & 0x0f) | ((q[j + 16]! & 0x0f) << 4));
  return out;
}

function q4_0Block(d: number, qs: readonly number[]): number[] {
  return [...u16le(d), ...qs];
}
function q4_1Block(d: number, m: number, qs: readonly number[]): number[] {
  return [...u16le(d), ...u16le(m), ...qs];
}
function q5_0Block(d: number, qh: number, qs: readonly number[]): number[] {
  return [...u16le(d), ...u32le(qh), ...qs];
}
function q5_1Block(d: number, m: number, qh: number, qs: readonly number[]): number[] {
  return [...u16le(d), ...u16le(m), ...u32le(qh), ...qs];
}
function q8_0Block(d: number, values: readonly number[]): number[] {
  assert.equal(values.length, 32);
  return [...u16le(d), ...values.map((v) => v & 0xff)];
}

function decodeOne(dtype: BlockType, bytes: readonly number[]): Float32Array {
  assert.equal(bytes.length, DTYPES[dtype].blockBytes, `${dtype} block size`);
  const out = new Float32Array(QK);
  dequantize(dtype, Uint8Array.from(bytes), 0, QK, out);
  return out;
}

function assertValues(actual: Float32Array, expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Object.is(actual[i], expected[i]), `${what}: value ${i} is ${actual[i]}, expected ${expected[i]}`);
  }
}

const range = <T = number>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));

// ---------------------------------------------------------------------------------------------------
// An independent reference, written per output element from ggml's definitions (not per packed byte as
// src/ does), used where listing 32 literals would not be readable.

interface Fields {
  d: number; // f16 bits
  m?: number; // f16 bits
  qh?: number; // u32
  qs: readonly number[]; // packed bytes (16, or 32 int8 for q8_0)
}

function reference(dtype: BlockType, f: Fields): number[] {
  const d = decodeF16(f.d);
  const m = f.m === undefined ? 0 : decodeF16(f.m);
  const nibble = (i: number): number => (i < 16 ? f.qs[i]! & 0x0f : f.qs[i - 16]! >> 4);
  const fifth = (i: number): number => ((f.qh ?? 0) >>> i) & 1;
  return range(QK, (i) => {
    switch (dtype) {
      case 'q4_0':
        return (nibble(i) - 8) * d;
      case 'q4_1':
        return Math.fround(nibble(i) * d + m); // ggml: one f32 multiply-add, the product exact
      case 'q5_0':
        return (nibble(i) + 16 * fifth(i) - 16) * d;
      case 'q5_1':
        return Math.fround((nibble(i) + 16 * fifth(i)) * d + m);
      case 'q8_0':
        return ((f.qs[i]! << 24) >> 24) * d;
    }
  });
}

function blockOf(dtype: BlockType, f: Fields): number[] {
  switch (dtype) {
    case 'q4_0':
      return q4_0Block(f.d, f.qs);
    case 'q4_1':
      return q4_1Block(f.d, f.m ?? 0, f.qs);
    case 'q5_0':
      return q5_0Block(f.d, f.qh ?? 0, f.qs);
    case 'q5_1':
      return q5_1Block(f.d, f.m ?? 0, f.qh ?? 0, f.qs);
    case 'q8_0':
      return q8_0Block(f.d, f.qs);
  }
}


/** Random but finite f16 bits in roughly [2^-9, 2), either sign. */
function randomScale(r: () => number): number {
  return (0x1800 + Math.floor(r() * 0x2400)) | (r() < 0.5 ? 0x8000 : 0);
}

function randomFields(dtype: BlockType, r: () => number): Fields {
  const byte = (): number => Math.floor(r() * 256);
  return {
    d: randomScale(r),
    m: randomScale(r),
    qh: Math.floor(r() * 2 ** 32),
    qs: range(dtype === 'q8_0' ? 32 : 16, byte),
  };
}

// ---------------------------------------------------------------------------------------------------
// Q4_0

test('q4_0: d = 0.5, nibble ramp → (q − 8)·0.5, low nibbles first then high nibbles', async () => {
  // byte j = low nibble j, high nibble 15 − j: values 0..15 are (j − 8)/2, values 16..31 are (7 − j)/2.
  const qs = range(16, (j) => j | ((15 - j) << 4));
  const expected = [
    -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5,
    3.5, 3, 2.5, 2, 1.5, 1, 0.5, 0, -0.5, -1, -1.5, -2, -2.5, -3, -3.5, -4,
  ];
  assertValues(decodeOne('q4_0', q4_0Block(F16_HALF, qs)), expected, 'q4_0');
});

test('q4_0: a negative scale and the nibble extremes (0 → −8d, 15 → 7d)', async () => {
  // d = −1: nibble 0 gives +8, nibble 15 gives −7; 0x0F packs value j = 15 and value j+16 = 0.
  const out = decodeOne('q4_0', q4_0Block(F16_MINUS_ONE, range(16, () => 0x0f)));
  assertValues(out, [...range(16, () => -7), ...range(16, () => 8)], 'q4_0 d=-1');
});

test('q4_0: the scale is the exact f16 value (0x2E66 = 0.0999755859375, not 0.1)', async () => {
  const qs = packNibbles(range(32, (i) => i % 16));
  const out = decodeOne('q4_0', q4_0Block(F16_TENTH, qs));
  assertValues(out, range(32, (i) => Math.fround(((i % 16) - 8) * TENTH)), 'q4_0 d=0x2E66');
  assert.equal(out[15], Math.fround(7 * TENTH));
  assert.notEqual(out[15], Math.fround(0.7));
});

// ---------------------------------------------------------------------------------------------------
// Q4_1

test('q4_1: d = 0.5, m = −1 → q·0.5 − 1', async () => {
  const qs = packNibbles([...range(16, (j) => j), ...range(16, (j) => 15 - j)]);
  const expected = [
    -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5,
    6.5, 6, 5.5, 5, 4.5, 4, 3.5, 3, 2.5, 2, 1.5, 1, 0.5, 0, -0.5, -1,
  ];
  assertValues(decodeOne('q4_1', q4_1Block(F16_HALF, F16_MINUS_ONE, qs)), expected, 'q4_1');
});

test('q4_1: q·d + m is rounded once to f32 (d = 2^-24, m = 1)', async () => {
  // 1 + q·2^-24 is not an f32 for odd q: it rounds to even, e.g. q = 1 → 1, q = 3 → 1 + 2^-22.
  const qs = packNibbles(range(32, (i) => i % 16));
  const out = decodeOne('q4_1', q4_1Block(0x0001, 0x3c00, qs));
  assert.equal(out[0], 1);
  assert.equal(out[1], 1);
  assert.equal(out[2], 1 + 2 ** -23);
  assert.equal(out[3], 1 + 2 ** -22);
  assertValues(out, range(32, (i) => Math.fround(1 + (i % 16) * 2 ** -24)), 'q4_1 rounding');
});

// ---------------------------------------------------------------------------------------------------
// Q5_0

test('q5_0: qh clear → (q − 16)·d; qh all set → q·d', async () => {
  const qs = packNibbles(range(32, (i) => i % 16));
  assertValues(
    decodeOne('q5_0', q5_0Block(F16_HALF, 0, qs)),
    range(32, (i) => ((i % 16) - 16) * 0.5),
    'q5_0 qh=0',
  );
  assertValues(
    decodeOne('q5_0', q5_0Block(F16_HALF, 0xffffffff, qs)),
    range(32, (i) => (i % 16) * 0.5),
    'q5_0 qh=~0',
  );
});

test('q5_0: qh bits 0, 15, 16 and 31 lift exactly values 0, 15, 16 and 31', async () => {
  // All nibbles 0: a value is −16·0.5 = −8 without its fifth bit and 0 with it. qh bytes: 01 80 01 80.
  const qs = range(16, () => 0);
  const expected = range(32, (i) => ([0, 15, 16, 31].includes(i) ? 0 : -8));
  assertValues(decodeOne('q5_0', q5_0Block(F16_HALF, 0x80018001, qs)), expected, 'q5_0 corner bits');
  // Each bit alone, so that a swapped byte order or a j vs j+16 mix-up cannot cancel out.
  for (const bit of [0, 15, 16, 31]) {
    const out = decodeOne('q5_0', q5_0Block(F16_HALF, 2 ** bit, qs));
    assertValues(out, range(32, (i) => (i === bit ? 0 : -8)), `q5_0 qh bit ${bit}`);
  }
});

test('q5_0: nibble 15 with its fifth bit is the top value 15·d; without it −d', async () => {
  // qh = 0x0000FFFF: values 0..15 have the fifth bit (31 − 16 = 15 → 7.5), values 16..31 do not (−1 → −0.5).
  const out = decodeOne('q5_0', q5_0Block(F16_HALF, 0x0000ffff, range(16, () => 0xff)));
  assertValues(out, [...range(16, () => 7.5), ...range(16, () => -0.5)], 'q5_0 halves');
});

// ---------------------------------------------------------------------------------------------------
// Q5_1

test('q5_1: d = 0.5, m = −1, qh bits 0, 15, 16, 31 → (q | h<<4)·0.5 − 1', async () => {
  const qs = range(16, () => 0);
  const expected = range(32, (i) => ([0, 15, 16, 31].includes(i) ? 7 : -1));
  assertValues(decodeOne('q5_1', q5_1Block(F16_HALF, F16_MINUS_ONE, 0x80018001, qs)), expected, 'q5_1 corner bits');
});

test('q5_1: all bits set gives the top value 31·d + m; all clear gives q·d + m', async () => {
  const ones = range(16, () => 0xff);
  assertValues(
    decodeOne('q5_1', q5_1Block(F16_HALF, F16_MINUS_ONE, 0xffffffff, ones)),
    range(32, () => 14.5),
    'q5_1 max',
  );
  assertValues(
    decodeOne('q5_1', q5_1Block(F16_HALF, F16_MINUS_ONE, 0, ones)),
    range(32, () => 6.5),
    'q5_1 qh=0',
  );
  // Alternating qh bits (0x55555555: even values lifted) over a nibble ramp.
  const qs = packNibbles(range(32, (i) => i % 16));
  const expected = range(32, (i) => ((i % 16) + (i % 2 === 0 ? 16 : 0)) * 0.5 - 1);
  assertValues(decodeOne('q5_1', q5_1Block(F16_HALF, F16_MINUS_ONE, 0x55555555, qs)), expected, 'q5_1 0x55555555');
});

// ---------------------------------------------------------------------------------------------------
// Q8_0

test('q8_0: signed bytes times d, including −128 and 127', async () => {
  const values = [0, 1, -1, 2, -2, 127, -128, -127, ...range(24, (i) => i - 12)];
  const expected = values.map((v) => v * 0.5);
  assertValues(decodeOne('q8_0', q8_0Block(F16_HALF, values)), expected, 'q8_0');
  // Bytes 0x80 and 0xFF are −128 and −1, not 128 and 255.
  const out = decodeOne('q8_0', q8_0Block(F16_MINUS_ONE, range(32, (i) => (i % 2 === 0 ? 0x80 : 0xff))));
  assertValues(out, range(32, (i) => (i % 2 === 0 ? 128 : 1)), 'q8_0 sign');
});

// ---------------------------------------------------------------------------------------------------
// Every type: random blocks against the per-element reference; block offsets; non-block types.

test('every block type matches the per-element ggml reference on random blocks', async () => {
  const r = rng(1);
  for (const dtype of BLOCK_TYPES) {
    for (let n = 0; n < 200; n++) {
      const f = randomFields(dtype, r);
      assertValues(decodeOne(dtype, blockOf(dtype, f)), reference(dtype, f), `${dtype} random block ${n}`);
    }
  }
});

test('dequantize honours firstBlock, count and outOffset and writes nothing else', async () => {
  const r = rng(2);
  for (const dtype of BLOCK_TYPES) {
    const fields = range(4, () => randomFields(dtype, r));
    const bytes = Uint8Array.from(fields.flatMap((f) => blockOf(dtype, f)));
    const out = new Float32Array(5 + 64 + 3).fill(NaN);
    dequantize(dtype, bytes, 1, 64, out, 5); // blocks 1 and 2 into out[5 .. 69)
    assertValues(out.subarray(5, 69), [...reference(dtype, fields[1]!), ...reference(dtype, fields[2]!)], dtype);
    for (const i of [0, 1, 2, 3, 4, 69, 70, 71]) assert.ok(Number.isNaN(out[i]!), `${dtype}: out[${i}] was written`);
  }
});

test('blockDecoder refuses non-block types', async () => {
  for (const dtype of ['f32', 'f16', 'bf16'] as const satisfies readonly DType[]) {
    assert.throws(() => blockDecoder(dtype), TypeError);
  }
});

// ---------------------------------------------------------------------------------------------------
// matvec and readRow on quantized matrices

test('referenceMatvec on random quantized matrices equals dequantize-then-float64-dot', async () => {
  const r = rng(3);
  for (const dtype of BLOCK_TYPES) {
    for (const cols of [64, 96]) {
      const rows = 5;
      const blocks = range((rows * cols) / QK, () => blockOf(dtype, randomFields(dtype, r)));
      const data = Uint8Array.from(blocks.flat());
      const m = matrixFromTensor({ name: `w_${dtype}`, dtype, shape: [rows, cols], data }, rows, cols);
      const x = Float32Array.from(range(cols, () => r() * 2 - 1));
      const y = new Float32Array(rows);
      referenceMatvec(m, x, y);
      const row = new Float32Array(cols);
      const viaReadRow = new Float32Array(cols);
      for (let i = 0; i < rows; i++) {
        dequantize(dtype, data, (i * cols) / QK, cols, row);
        readRow(m, i, viaReadRow);
        assertValues(viaReadRow, Array.from(row), `${dtype} ${cols}: readRow ${i}`);
        let dot = 0;
        let magnitude = 0;
        for (let j = 0; j < cols; j++) {
          dot += row[j]! * x[j]!;
          magnitude += Math.abs(row[j]! * x[j]!);
        }
        // Only the final f32 rounding (and summation order) may differ.
        const tol = magnitude * 2 ** -22 + 1e-30;
        assert.ok(Math.abs(y[i]! - dot) <= tol, `${dtype} ${rows}x${cols} row ${i}: ${y[i]} vs ${dot}`);
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------------
// f16 and bf16

test('decodeF16 on hand-picked bit patterns', async () => {
  const cases: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3800, 0.5],
    [0xbc00, -1],
    [0x7bff, 65504], // largest finite
    [0x0400, 2 ** -14], // smallest normal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x3555, 0.333251953125],
    [F16_TENTH, TENTH],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x0000, 0],
    [0x8000, -0],
  ];
  for (const [bits, value] of cases) {
    assert.ok(Object.is(decodeF16(bits), value), `0x${bits.toString(16)} → ${decodeF16(bits)}, expected ${value}`);
  }
  for (const nan of [0x7e00, 0x7c01, 0xfe00, 0xffff]) assert.ok(Number.isNaN(decodeF16(nan)), `0x${nan.toString(16)}`);
});

test('f16ToF32Table agrees with decodeF16 on all 65536 patterns, and every f16 is an exact f32', async () => {
  const table = f16ToF32Table();
  assert.equal(table.length, 65536);
  for (let h = 0; h < 65536; h++) {
    const v = decodeF16(h);
    assert.ok(Object.is(table[h], v) || (Number.isNaN(v) && Number.isNaN(table[h]!)), `0x${h.toString(16)}`);
    assert.ok(Number.isNaN(v) || Object.is(Math.fround(v), v), `0x${h.toString(16)} is not an exact f32`);
  }
});

test('decodeBF16 on hand-picked bit patterns', async () => {
  const cases: [number, number][] = [
    [0x3f80, 1],
    [0xc000, -2],
    [0x3f00, 0.5],
    [0x3eab, 0.333984375],
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127], // largest finite
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal
    [0x7f80, Infinity],
    [0xff80, -Infinity],
    [0x0000, 0],
    [0x8000, -0],
  ];
  for (const [bits, value] of cases) {
    assert.ok(Object.is(decodeBF16(bits), value), `0x${bits.toString(16)} → ${decodeBF16(bits)}, expected ${value}`);
  }
  for (const nan of [0x7fc0, 0xffc0, 0x7f81]) assert.ok(Number.isNaN(decodeBF16(nan)), `0x${nan.toString(16)}`);
});

// ---------------------------------------------------------------------------------------------------
// Cross-check against rwkv.cpp's own quantizer output.

/** The f16 bits nearest `x` ≥ 0, ties to even (what ggml's FP32→FP16 conversion does). */
function f16Bits(x: number): number {
  assert.ok(x >= 0 && x < 65520);
  let lo = 0;
  let hi = 0x7c00;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (decodeF16(mid) <= x) lo = mid;
    else hi = mid;
  }
  const below = x - decodeF16(lo);
  const above = decodeF16(hi) - x;
  if (below !== above) return below < above ? lo : hi;
  return lo % 2 === 0 ? lo : hi;
}

test('the Q8_0 fixture decodes to what ggml quantized from the FP32 fixture', async (t) => {
  const qPath = fixture(t, 'quantized/tiny-rwkv-4v0-660K-FP32-to-Q8_0.bin');
  const fPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (qPath === undefined || fPath === undefined) return;
  const quantized = await readRwkvCpp(qPath);
  const original = await readRwkvCpp(fPath);
  let checked = 0;
  for (const [name, qt] of quantized.tensors) {
    if (qt.dtype !== 'q8_0') continue;
    const ft = original.tensors.get(name);
    assert.ok(ft !== undefined && ft.dtype === 'f32', `${name} in the FP32 fixture`);
    assert.deepEqual(qt.shape, ft.shape, name);
    const src = f32View(ft);
    const decoded = new Float32Array(src.length);
    dequantize('q8_0', qt.data, 0, src.length, decoded);
    for (let b = 0; b < src.length / QK; b++) {
      const o = b * DTYPES.q8_0.blockBytes;
      // ggml's quantize_row_q8_0_reference: d = amax/127 in f32, stored as f16; q = roundf(x·(1/d)).
      let amax = 0;
      for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[b * QK + j]!));
      const d = Math.fround(amax / 127);
      const id = d === 0 ? 0 : Math.fround(1 / d);
      const dBits = qt.data[o]! | (qt.data[o + 1]! << 8);
      assert.equal(dBits, f16Bits(d), `${name} block ${b}: stored scale is not f16(amax/127)`);
      const dStored = decodeF16(dBits);
      for (let j = 0; j < QK; j++) {
        const x = src[b * QK + j]!;
        const q = (qt.data[o + 2 + j]! << 24) >> 24;
        const scaled = Math.fround(x * id);
        const rounded = (scaled < 0 ? -Math.round(-scaled) : Math.round(scaled)) + 0; // roundf: halves away from 0
        assert.equal(q, rounded, `${name} block ${b} value ${j}: integer`);
        // Round-to-nearest leaves |x − q·d| ≤ d/2; storing d as f16 adds |q|·|d − f16(d)|. (These tiny
        // models' scales are mostly f16 subnormals, so the second term is not negligible.)
        const bound = (d / 2 + Math.abs(q) * Math.abs(d - dStored)) * (1 + 2 ** -20);
        const err = Math.abs(decoded[b * QK + j]! - x);
        assert.ok(err <= bound, `${name} block ${b} value ${j}: |${decoded[b * QK + j]} − ${x}| = ${err} > ${bound}`);
      }
    }
    checked++;
  }
  assert.ok(checked > 0, 'the Q8_0 fixture has no Q8_0 tensors');
});
