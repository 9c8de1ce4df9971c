// ggml's K-quants (Q2_K … Q6_K, super-blocks of 256 values): dequantization bit-exact against a second,
// deliberately plain decoder written here from ggml's definitions (ggml-common.h block_qN_K,
// ggml-quants.c dequantize_row_qN_K), which finds each value's bits by its index and mimics C's f32
// arithmetic step by step (Math.fround after every float operation); products of K-quant matrices on both
// backends; llama.cpp's own Q4_K_M and Q6_K files against llama.cpp's logits; a truncated K-quant tensor.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { FormatError } from '../src/errors.js';
import { K_DECODERS, QK_K } from '../src/kernels/kquants.js';
import { readRow, referenceMatvec, type Matrix } from '../src/kernels/matrix.js';
import { dequantize } from '../src/kernels/quant.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import type { Backend } from '../src/kernels/backend.js';
import { loadModel } from '../src/models/load.js';
import { DTYPES, type KQuantDType } from '../src/tensor/dtype.js';
import { exactTestBackend } from './helpers/backend.js';
import { fixture, readF32 } from './helpers/fixtures.js';
import { rng } from './helpers/seeded.js';

const TYPES: readonly KQuantDType[] = ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'];
const f = Math.fround;

/** IEEE binary16 → number, written out again here (not the production table). */
function f16(bits: number): number {
  const e = (bits >> 10) & 31;
  const m = bits & 1023;
  const s = bits & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

const u16 = (b: Uint8Array, o: number): number => b[o]! + 256 * b[o + 1]!;
const i8 = (v: number): number => (v > 127 ? v - 256 : v);

/** Q4_K/Q5_K's 6-bit scale and min of sub-block j: the first four whole in bytes 0..7, the last four split. */
function k4ScaleMin(s: Uint8Array, j: number): [number, number] {
  if (j < 4) return [s[j]! % 64, s[j + 4]! % 64];
  const sc = (s[j + 4]! % 16) + 16 * Math.floor(s[j - 4]! / 64);
  const mn = Math.floor(s[j + 4]! / 16) + 16 * Math.floor(s[j]! / 64);
  return [sc, mn];
}

/**
 * Q3_K's 16 scales as ggml's dequantizer unpacks them: the 12 bytes as three little-endian u32 words,
 * re-spread into four words whose bytes are the scales (low nibbles, then high nibbles of words 0 and 1,
 * each with two bits of word 2 on top).
 */
function q3Scales(s: Uint8Array): number[] {
  const w = [0, 4, 8].map((o) => (s[o]! | (s[o + 1]! << 8) | (s[o + 2]! << 16) | (s[o + 3]! << 24)) >>> 0);
  const [a0, a1, tmp] = w as [number, number, number];
  const m1 = 0x03030303;
  const m2 = 0x0f0f0f0f;
  const words = [
    ((a0 & m2) | (((tmp >>> 0) & m1) << 4)) >>> 0,
    ((a1 & m2) | (((tmp >>> 2) & m1) << 4)) >>> 0,
    (((a0 >>> 4) & m2) | (((tmp >>> 4) & m1) << 4)) >>> 0,
    (((a1 >>> 4) & m2) | (((tmp >>> 6) & m1) << 4)) >>> 0,
  ];
  const out: number[] = [];
  for (const word of words) for (let k = 0; k < 4; k++) out.push((word >>> (8 * k)) & 0xff);
  return out;
}

/** Value v (0..255) of one super-block `b`, as ggml's f32 code computes it. */
function expected(type: KQuantDType, b: Uint8Array, v: number): number {
  const half = Math.floor(v / 128); // Q2/Q3/Q6: which 128-value half
  const w = v % 128;
  switch (type) {
    case 'q2_k': {
      // scales[16] | qs[64] | d | dmin
      const d = f16(u16(b, 80));
      const dmin = f16(u16(b, 82));
      const sc = b[Math.floor(v / 16)]!;
      const q = (b[16 + 32 * half + (w % 32)]! >> (2 * Math.floor(w / 32))) & 3;
      const dl = f(d * (sc & 15));
      const ml = f(dmin * (sc >> 4));
      return f(f(dl * q) - ml);
    }
    case 'q3_k': {
      // hmask[32] | qs[64] | scales[12] | d
      const d = f16(u16(b, 108));
      const sc = q3Scales(b.subarray(96, 108))[Math.floor(v / 16)]!;
      const j = Math.floor(w / 32);
      const low = (b[32 + 32 * half + (w % 32)]! >> (2 * j)) & 3;
      const high = (b[w % 32]! >> (4 * half + j)) & 1;
      const dl = f(d * (i8(sc) - 32));
      return f(dl * (low - (high ? 0 : 4)));
    }
    case 'q4_k':
    case 'q5_k': {
      // d | dmin | scales[12] | (q5: qh[32]) | qs[128]
      const d = f16(u16(b, 0));
      const dmin = f16(u16(b, 2));
      const sub = Math.floor(v / 32);
      const [sc, mn] = k4ScaleMin(b.subarray(4, 16), sub);
      const qsAt = type === 'q4_k' ? 16 : 48;
      const byte = b[qsAt + 32 * Math.floor(v / 64) + (v % 32)]!;
      let q = sub % 2 === 0 ? byte & 15 : byte >> 4;
      if (type === 'q5_k' && (b[16 + (v % 32)]! >> sub) & 1) q += 16;
      const d1 = f(d * sc);
      const m1 = f(dmin * mn);
      return f(f(d1 * q) - m1);
    }
    case 'q6_k': {
      // ql[128] | qh[64] | scales[16] (int8) | d
      const d = f16(u16(b, 208));
      const k = Math.floor(w / 32); // which quarter of the half
      const l = w % 32;
      const lowByte = b[64 * half + 32 * (k % 2) + l]!;
      const low = k < 2 ? lowByte & 15 : lowByte >> 4;
      const high = (b[128 + 32 * half + l]! >> (2 * k)) & 3;
      const sc = i8(b[192 + 8 * half + Math.floor(l / 16) + 2 * k]!);
      return f(f(d * sc) * (low + 16 * high - 32));
    }
  }
}


/** f16 offsets of each type's d (and dmin). */
const HALVES: Readonly<Record<KQuantDType, readonly number[]>> = { q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208] };

/** `count` random super-blocks of `type`; the f16 factors finite (normal, subnormal, signed, 0 now and then). */
function randomBlocks(type: KQuantDType, count: number, seed: number): Uint8Array {
  const bb = DTYPES[type].blockBytes;
  const next = rng(seed);
  const bytes = new Uint8Array(count * bb);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
  for (let blk = 0; blk < count; blk++) {
    for (const o of HALVES[type]) {
      let h = Math.floor(next() * 65536);
      if (((h >> 10) & 31) === 31) h &= ~0x4000; // no inf/NaN: exponent 31 → 15
      if (next() < 0.05) h = 0;
      bytes[blk * bb + o] = h & 0xff;
      bytes[blk * bb + o + 1] = h >> 8;
    }
  }
  return bytes;
}

function assertBitExact(actual: Float32Array, want: (i: number) => number, what: string): void {
  for (let i = 0; i < actual.length; i++) {
    const e = want(i);
    assert.ok(Object.is(actual[i], f(e)), `${what}: value ${i} is ${actual[i]}, ggml gives ${e}`);
  }
}

test('K-quant dtypes: ggml block sizes (256 values; 84, 110, 144, 176, 210 bytes)', () => {
  const want: Record<KQuantDType, number> = { q2_k: 84, q3_k: 110, q4_k: 144, q5_k: 176, q6_k: 210 };
  for (const t of TYPES) {
    assert.equal(DTYPES[t].blockSize, QK_K);
    assert.equal(DTYPES[t].blockBytes, want[t], t);
    assert.ok(DTYPES[t].quantized);
  }
});

test('K-quant dequantization is bit-exact on random super-blocks (500 per type)', () => {
  for (const [n, type] of TYPES.entries()) {
    const blocks = 500;
    const bb = DTYPES[type].blockBytes;
    const bytes = randomBlocks(type, blocks, 1234 + n);
    const out = new Float32Array(blocks * QK_K);
    dequantize(type, bytes, 0, out.length, out);
    assertBitExact(out, (i) => expected(type, bytes.subarray(Math.floor(i / QK_K) * bb, (Math.floor(i / QK_K) + 1) * bb), i % QK_K), type);
    // From a block in the middle, into an offset.
    const part = new Float32Array(2 * QK_K + 5);
    dequantize(type, bytes, 7, 2 * QK_K, part, 5);
    assertBitExact(part.subarray(5), (i) => out[7 * QK_K + i]!, `${type} from block 7`);
  }
});

test('K-quant dequantization: hand-made blocks give the values worked out from the definitions', () => {
  const decode = (type: KQuantDType, b: Uint8Array): Float32Array => {
    const out = new Float32Array(QK_K);
    K_DECODERS[type](b, 0, out, 0);
    return out;
  };
  // Q2_K: d = 2, dmin = 0.25; scales[0] = 0x21 (scale 1, min 2); value 0 = 3 → 2·1·3 − 0.25·2 = 5.5.
  // scales[15] = 0xF0 (scale 0, min 15) → value 255 = −0.25·15 = −3.75 whatever its quant.
  {
    const b = new Uint8Array(84);
    b.set([0x00, 0x40, 0x00, 0x34], 80);
    b[0] = 0x21;
    b[15] = 0xf0;
    b[16] = 0b11;
    const y = decode('q2_k', b);
    assert.equal(y[0], 5.5);
    assert.equal(y[255], -3.75);
    assert.equal(y[1], -0.5); // quant 0 under scales[0]: −dmin·2
  }
  // Q3_K: d = 0.5; scale 0 = 8 + 32·2 − 32 = 40 − 32 = 8 (low nibble 8 in byte 96, bits 0..1 of byte 104 = 2);
  // value 0: low bits 1, high bit clear → 1 − 4 = −3 → 0.5·8·(−3) = −12.
  // Scale 13 (values 208..223): low nibble = high nibble of byte 96 + 5, top bits = bits 6..7 of byte 96 + 9
  // → 15 | 3<<4 = 63 → 31; value 208: bits 4..5 of qs byte 80 = 3, hmask byte 16 bit 6 set → 3 → 46.5.
  {
    const b = new Uint8Array(110);
    b.set([0x00, 0x38], 108);
    b[96] = 8;
    b[104] = 2;
    b[32] = 1;
    b[96 + 5] = 0xf0;
    b[96 + 9] = 0xc0;
    b[32 + 48] = 0x30; // qs byte 32·1 + 16·1 = 48 (block byte 80), bits 2·2..2·2+1
    b[16] = 0x40;
    const y = decode('q3_k', b);
    assert.equal(y[0], -12);
    assert.equal(y[208], 46.5);
  }
  // Q4_K: d = 1, dmin = 0.5; sub-block 0 scale 3 min 2; value 0 = 7 → 3·7 − 0.5·2 = 20.
  // Sub-block 5 scale 42 = 0b10_1010, min 21 = 0b01_0101: byte 4+9 = 0x5A (low nibbles), top bits in bytes
  // 4+1 (bits 6..7 = 2) and 4+5 (bits 6..7 = 1); value 160 = high nibble of qs byte 64 = 15 → 42·15 − 10.5.
  {
    const b = new Uint8Array(144);
    b.set([0x00, 0x3c, 0x00, 0x38], 0);
    b[4] = 3;
    b[8] = 2;
    b[13] = 0x5a;
    b[5] = 0x80;
    b[9] = 0x40;
    b[16] = 7;
    b[16 + 64] = 0xf0;
    const y = decode('q4_k', b);
    assert.equal(y[0], 20);
    assert.equal(y[160], 619.5);
    assert.equal(y[32], 0); // sub-block 1: scale bits 0..5 of byte 5 = 0, min bits 0..5 of byte 9 = 0
  }
  // Q5_K: d = 1, dmin = 1; sub-block 0 scale 1 min 1, sub-block 1 scale 3 min 0; qs byte 0 = 0xFF,
  // qh byte 0 = 1 (fifth bit of value 0 only) → value 0 = 31·1 − 1 = 30, value 32 = 15·3 − 0 = 45.
  {
    const b = new Uint8Array(176);
    b.set([0x00, 0x3c, 0x00, 0x3c], 0);
    b[4] = 1;
    b[8] = 1;
    b[5] = 3;
    b[48] = 0xff;
    b[16] = 1;
    const y = decode('q5_k', b);
    assert.equal(y[0], 30);
    assert.equal(y[32], 45);
  }
  // Q6_K: d = 0.25; scales[0] = −3; value 0: ql low nibble 15, qh bits 0..1 = 2 → 47 − 32 = 15 → −11.25.
  // Value 96: high nibble of ql byte 32 = 3, qh byte 0 bits 6..7 = 3 → 51 − 32 = 19, scales[6] = 5 → 23.75.
  {
    const b = new Uint8Array(210);
    b.set([0x00, 0x34], 208);
    b[0] = 0x0f;
    b[32] = 0x30;
    b[128] = 0b1100_0010;
    b[192] = 0xfd;
    b[192 + 6] = 5;
    const y = decode('q6_k', b);
    assert.equal(y[0], -11.25);
    assert.equal(y[96], 23.75);
  }
});

function kMatrix(type: KQuantDType, rows: number, cols: number, seed: number): Matrix {
  const bytes = randomBlocks(type, (rows * cols) / QK_K, seed);
  return { name: `random ${type}`, dtype: type, rows, cols, bytes, f32: undefined, u16: undefined };
}

/** Row r of m decoded by the test's decoder. */
function expectedRow(m: Matrix, r: number): number[] {
  const bb = DTYPES[m.dtype as KQuantDType].blockBytes;
  const per = m.cols / QK_K;
  const out: number[] = [];
  for (let blk = 0; blk < per; blk++) {
    const o = (r * per + blk) * bb;
    for (let v = 0; v < QK_K; v++) out.push(expected(m.dtype as KQuantDType, m.bytes.subarray(o, o + bb), v));
  }
  return out;
}

test('K-quant matrices: rows decode exactly; the reference product sums them in float64', () => {
  const rows = 5;
  const cols = 512;
  const x = new Float32Array(cols).map((_, i) => Math.sin(i * 0.37) * 0.5);
  for (const [n, type] of TYPES.entries()) {
    const m = kMatrix(type, rows, cols, 99 + n);
    const row = new Float32Array(cols);
    const y = new Float32Array(rows);
    referenceMatvec(m, x, y);
    for (let r = 0; r < rows; r++) {
      readRow(m, r, row);
      const want = expectedRow(m, r);
      assertBitExact(row, (i) => want[i]!, `${type} row ${r}`);
      let s = 0;
      for (let j = 0; j < cols; j++) s += want[j]! * x[j]!;
      assert.equal(y[r], f(s), `${type} row ${r}: the float64 sum rounded once`);
    }
  }
});

async function backendProduct(backend: Backend, m: Matrix, x: Float32Array): Promise<Float32Array> {
  const dm = backend.matrix(m);
  const xt = backend.upload(x, 1, m.cols);
  const yt = backend.tensor(1, m.rows);
  await backend.matmul([{ m: dm, x: xt, y: yt }]);
  const y = await backend.read(yt);
  backend.free(xt);
  backend.free(yt);
  return y;
}

test('K-quant matrices on both backends: products within 1e-6 of Σ|w·x| of the float64 product', async () => {
  // Exact activations: the K-quant decode is what is checked (activation-quant.test.ts checks ggml's Q8_K).
  const wasm = await exactTestBackend();
  const rows = 24;
  const cols = 768;
  const x = new Float32Array(cols).map((_, i) => Math.cos(i * 0.11) - 0.2);
  for (const [n, type] of TYPES.entries()) {
    const m = kMatrix(type, rows, cols, 7 + n);
    for (const backend of [new ReferenceBackend({ exactActivations: true }), wasm]) {
      // Through the backend's own memory, as a loaded model's weights are.
      const bytes = backend.allocateBytes(m.bytes.byteLength);
      bytes.set(m.bytes);
      const y = await backendProduct(backend, { ...m, bytes }, x);
      for (let r = 0; r < rows; r++) {
        const w = expectedRow(m, r);
        let s = 0;
        let mag = 0;
        for (let j = 0; j < cols; j++) {
          s += w[j]! * x[j]!;
          mag += Math.abs(w[j]! * x[j]!);
        }
        assert.ok(Math.abs(y[r]! - s) <= 1e-6 * mag + 1e-30, `${type} on ${backend.kind} row ${r}: ${y[r]} vs ${s} (Σ|w·x| ${mag})`);
      }
    }
  }
});

/** llama.cpp's K-quant GGUF files: logits for the 64 ids of tokens.json within 1e-4 of llama.cpp's (on the file dequantized to F32). */
for (const name of ['rwkv7-834k-Q4_K_M', 'rwkv7-834k-Q6_K'] as const) {
  test(`${name}.gguf (llama.cpp's K-quant file) gives llama.cpp's logits within 1e-4 on both backends`, async (t) => {
    const file = fixture(t, `gguf/${name}.gguf`);
    const tokensFile = fixture(t, 'gguf/tokens.json');
    const logitsFile = fixture(t, `gguf/logits/${name}.llamacpp-dequant.f32`);
    if (file === undefined || tokensFile === undefined || logitsFile === undefined) return;
    const ids = (JSON.parse(fs.readFileSync(tokensFile, 'utf8')) as { ids: number[] }).ids;
    const want = readF32(logitsFile);
    assert.equal(want.length, ids.length * 256);
    // On the dequantized file: weights exact, activations exact (the file's own llama.cpp run: activation-quant.test.ts).
    for (const backend of [new ReferenceBackend({ exactActivations: true }), await exactTestBackend()]) {
      const model = await loadModel(file, { backend });
      const kinds = new Set([...model.tensors.values()].map((x) => x.dtype));
      assert.ok(kinds.has(name.endsWith('Q6_K') ? 'q6_k' : 'q4_k'), `the file holds K-quant tensors: ${[...kinds].join(', ')}`);
      const state = model.createState();
      let worst = 0;
      for (let i = 0; i < ids.length; i++) {
        const logits = await model.forward(ids[i]!, state);
        for (let j = 0; j < 256; j++) worst = Math.max(worst, Math.abs(logits[j]! - want[i * 256 + j]!));
      }
      t.diagnostic(`${name} on ${backend.kind}: max |Δ| ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `${name} on ${backend.kind}: max |Δ| ${worst}`);
    }
  });
}

test('a truncated K-quant tensor is a TRUNCATED error naming it', async (t) => {
  const file = fixture(t, 'gguf/rwkv7-834k-Q4_K_M.gguf');
  if (file === undefined) return;
  const bytes = fs.readFileSync(file);
  // The last Q4_K tensor's data (64 rows × 1 super-block of 144 bytes): found by its bytes in the file.
  const model = await loadModel(file);
  const last = model.tensors.get('blocks.11.ffn.value.weight');
  assert.equal(last?.dtype, 'q4_k');
  const at = bytes.indexOf(Buffer.from(last.data.buffer, last.data.byteOffset, last.data.byteLength));
  assert.ok(at > 0);
  assert.equal(last.data.byteLength, 64 * 144);
  const cut = new Uint8Array(bytes.subarray(0, at + 1000));
  await assert.rejects(loadModel(cut), (e: unknown) => {
    assert.ok(e instanceof FormatError, String(e));
    assert.equal(e.code, 'TRUNCATED');
    assert.match(e.message, /blk\.11\.channel_mix_value\.weight/);
    assert.match(e.message, new RegExp(`needs bytes up to ${at + 64 * 144}\\b`));
    return true;
  });
});

test('rescaling a K-quant tensor by a power of two (RWKV-6 GGUF files with rescale_every_n_layers) scales every value exactly', async () => {
  const { scaleInPlace } = await import('../src/formats/gguf.js');
  for (const type of Object.keys(K_DECODERS) as KQuantDType[]) {
    const bb = DTYPES[type].blockBytes;
    const bytes = randomBlocks(type, 4, 11);
    // Normal f16 factors well inside the range, so that ×2 and ×½ are exact.
    for (let blk = 0; blk < 4; blk++) {
      for (const o of HALVES[type]) {
        const at = blk * bb + o;
        const h = bytes[at]! | (bytes[at + 1]! << 8);
        const e = (((h >> 10) & 31) % 20) + 5;
        const fixed = (h & 0x83ff) | (e << 10);
        bytes[at] = fixed & 0xff;
        bytes[at + 1] = fixed >> 8;
      }
    }
    const before = new Float32Array(4 * QK_K);
    dequantize(type, bytes, 0, 4 * QK_K, before);
    for (const factor of [2, 0.5]) {
      const data = bytes.slice();
      scaleInPlace({ name: 'w', dtype: type, shape: [4, QK_K], data }, factor);
      const after = new Float32Array(4 * QK_K);
      dequantize(type, data, 0, 4 * QK_K, after);
      for (let i = 0; i < before.length; i++) {
        if (after[i] !== before[i]! * factor) assert.fail(`${type} ×${factor}: value ${i} is ${after[i]}, want ${before[i]! * factor}`);
      }
    }
  }
});
