// ggml's activation quantization (src/kernels/activation-quant.ts, asm/kernels.ts quantizeQ8 / the Q8 products):
// the definition on hand-made cases, the WebAssembly kernels bit for bit against it, the products against a
// float64 evaluation of ggml's formulas, and whole models against llama.cpp's own logits of its GGUF files.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { nearestEven, q8RowDot, quantizeQ8, roundActivations, roundF16, activationGridFor } from '../src/kernels/activation-quant.js';
import type { Backend } from '../src/kernels/backend.js';
import { readRow, type Matrix } from '../src/kernels/matrix.js';
import { quantizeInto } from '../src/kernels/quantize.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { loadModel } from '../src/models/load.js';
import { DTYPES, decodeF16 } from '../src/tensor/dtype.js';
import { exactTestBackend, testBackend } from './helpers/backend.js';
import { fixture, readF32 } from './helpers/fixtures.js';
import { rng as seeded } from './helpers/seeded.js';

const LEGACY = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'] as const;

test('the grid of each weight type is ggml\'s vec_dot_type', () => {
  assert.equal(activationGridFor('q4_0'), 'q8_0');
  assert.equal(activationGridFor('q5_0'), 'q8_0');
  assert.equal(activationGridFor('q8_0'), 'q8_0');
  assert.equal(activationGridFor('q4_1'), 'q8_1');
  assert.equal(activationGridFor('q5_1'), 'q8_1');
  for (const k of ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'] as const) assert.equal(activationGridFor(k), 'q8_k');
  for (const d of ['f32', 'f16', 'bf16', 'int8'] as const) assert.equal(activationGridFor(d), undefined);
});

test('roundF16 is IEEE f16 rounding (ties to even, subnormals, overflow) for every f16 neighbourhood sampled', () => {
  // Every f16 value is itself; the midpoint between two neighbours goes to the even one.
  for (let h = 0; h < 0x7c00; h += 7) {
    const v = decodeF16(h);
    assert.equal(roundF16(v), v, `f16 ${h.toString(16)}`);
    if (h + 1 < 0x7c00) {
      const next = decodeF16(h + 1);
      const mid = Math.fround((v + next) / 2);
      if (mid === (v + next) / 2) assert.equal(roundF16(mid), h % 2 === 0 ? v : next, `midpoint above ${h.toString(16)}`);
    }
  }
  assert.equal(roundF16(65504), 65504);
  assert.equal(roundF16(65520), Infinity); // the midpoint to 2^16 rounds up, past the largest f16
  assert.equal(roundF16(2 ** -25), 0); // half of the smallest subnormal: ties to even (0)
  assert.equal(roundF16(Math.fround(2 ** -25 * 1.5)), 2 ** -24);
});

test('nearestEven rounds ties to even in both directions', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(nearestEven), [0, 2, 2, -0, -2, -2, 2, -3]);
});

test('quantizeQ8 on a hand-made block: d = f16(max/127), q = nearest-even(x·127/max), s = f16(d·Σq)', () => {
  const x = new Float32Array(32);
  x[0] = 2.54; // the largest magnitude: q = 127
  x[1] = -1.27; // → −63.5 → ties to even: −64
  x[2] = 0.01; // → 0.5 → 0
  x[3] = 0.03; // → 1.5 → 2
  x[4] = -2.54; // → −127
  const q = quantizeQ8(x, 0, 32);
  const id = Math.fround(127 / Math.fround(2.54));
  assert.equal(q.q[0], 127);
  assert.equal(q.q[4], -127);
  assert.equal(q.q[1], nearestEven(Math.fround(Math.fround(-1.27) * id)));
  assert.equal(q.q[2], nearestEven(Math.fround(Math.fround(0.01) * id)));
  assert.equal(q.d[0], roundF16(Math.fround(Math.fround(2.54) / 127)));
  const sum = q.q.reduce((a, b) => a + b, 0);
  assert.equal(q.sums[0], sum);
  assert.equal(q.s[0], roundF16(Math.fround(Math.fround(Math.fround(2.54) / 127) * sum)));
  // A zero block: all zero, scale zero; a block with NaN or Inf: NaN scales (products NaN, never finite garbage).
  assert.equal(quantizeQ8(new Float32Array(32), 0, 32).d[0], 0);
  x[7] = Number.NaN;
  assert.ok(Number.isNaN(quantizeQ8(x, 0, 32).d[0]!));
  x[7] = Infinity;
  assert.ok(Number.isNaN(quantizeQ8(x, 0, 32).s[0]!));
});

test('Q8_K rounding: iscale = −127/x* of the first largest-magnitude value, q capped at 127', () => {
  const x = new Float32Array(256).map((_, i) => Math.sin(i) * 0.3);
  x[10] = -2; // the largest magnitude, negative: iscale = 63.5
  x[20] = 2; // equal magnitude later: not the one chosen
  const out = new Float32Array(256);
  roundActivations('q8_k', x, 0, 256, out, 0);
  const iscale = Math.fround(-127 / -2);
  const d = Math.fround(1 / iscale);
  assert.equal(out[10], Math.fround(-127 * d));
  assert.equal(out[20], Math.fround(127 * d)); // 127 after the cap, not 127·(1+ε)
  for (let i = 0; i < 256; i++) assert.equal(out[i], Math.fround(Math.min(127, nearestEven(Math.fround(iscale * x[i]!))) * d));
});

/** Vectors of every kind the model produces: signed, relu²-like (≥ 0, many zeros), tiny (f16-subnormal scales), with ties. */
function vectors(n: number, count: number, seed: number): Float32Array[] {
  const rng = seeded(seed);
  const out: Float32Array[] = [];
  for (let k = 0; k < count; k++) {
    // Magnitudes 2^-9 … 2^9: f16-subnormal scales at the bottom; at the top relu² stays below where d = max/127 overflows f16 (as in ggml).
    const scale = Math.exp((rng() - 0.5) * 12);
    const x = new Float32Array(n).map(() => (rng() - 0.5) * scale);
    // relu² (≥ 0), kept where f16(d·Σq) stays finite (ggml's Q8_1 overflows there too).
    if (k % 4 === 1) for (let i = 0; i < n; i++) x[i] = Math.max(0, Math.min(x[i]!, 20)) ** 2;
    if (k % 4 === 2) {
      // Exact ties: x·127/max = j + 0.5 for a power-of-two max.
      x.fill(0);
      for (let b = 0; b < n; b += 32) {
        x[b] = 127;
        for (let j = 1; j < 32; j++) x[b + j] = Math.floor(rng() * 254) - 127 + 0.5;
      }
    }
    out.push(x);
  }
  return out;
}

test('the WebAssembly quantizeQ8 and roundActivations equal the definition bit for bit', async () => {
  const backend = await testBackend();
  const k = backend.kernels;
  const n = 512;
  const xp = k.malloc(n * 4);
  const qp = k.malloc(n + (n / 32) * 12);
  const op = k.malloc(n * 4);
  const tp = k.malloc(n + (n / 32) * 12);
  try {
    for (const x of vectors(n, 400, 11)) {
      new Float32Array(k.memory.buffer, xp, n).set(x);
      k.exports.quantizeQ8(xp, qp, n);
      const want = quantizeQ8(x, 0, n);
      assert.deepEqual(new Int8Array(k.memory.buffer, qp, n), want.q);
      assert.deepEqual(new Float32Array(k.memory.buffer, qp + n, n / 32), want.d);
      assert.deepEqual(new Float32Array(k.memory.buffer, qp + n + n / 8, n / 32), want.s);
      assert.deepEqual(new Int32Array(k.memory.buffer, qp + n + n / 4, n / 32), want.sums);
      for (const [grid, code] of [['q8_0', 0], ['q8_k', 1]] as const) {
        k.exports.roundActivations(code, xp, op, 1, n, tp);
        const r = new Float32Array(n);
        roundActivations(grid, x, 0, n, r, 0);
        assert.deepEqual(new Float32Array(k.memory.buffer, op, n), r, grid);
      }
    }
  } finally {
    for (const [p, b] of [[xp, n * 4], [qp, n + (n / 32) * 12], [op, n * 4], [tp, n + (n / 32) * 12]] as const) k.release(p, b);
  }
});

function legacyMatrix(backend: Backend, dtype: (typeof LEGACY)[number], rows: number, cols: number, seed: number): Matrix {
  const rng = seeded(seed);
  const values = new Float32Array(rows * cols).map(() => (rng() - 0.5) * (1 + (rng() < 0.05 ? 8 : 0)));
  const bytes = backend.allocateBytes((rows * cols / 32) * DTYPES[dtype].blockBytes);
  quantizeInto(dtype, values, bytes);
  return { name: `${dtype} ${rows}×${cols}`, dtype, rows, cols, bytes, f32: undefined, u16: undefined };
}

/** ggml's vec_dot in float64 straight from the dequantized weights: Σ_b d_x·Σ w·q, the _1 types' minimum through s. */
function ggmlDot(m: Matrix, r: number, x: Float32Array): number {
  const xq = quantizeQ8(x, 0, m.cols);
  return q8RowDot(m, r, xq);
}

async function product(backend: Backend, m: Matrix, x: Float32Array, t: number): Promise<Float32Array> {
  const dm = backend.matrix(m);
  const xt = backend.upload(x, t, m.cols);
  const yt = backend.tensor(t, m.rows);
  await backend.matmul([{ m: dm, x: xt, y: yt }]);
  const y = await backend.read(yt);
  backend.free(xt);
  backend.free(yt);
  return y;
}

test('Q8-activation products on both backends, one row and many: within 2e-6 of Σ|terms| of ggml\'s formula in float64', async () => {
  const wasm = await testBackend();
  const row = new Float32Array(768);
  for (const [i, dtype] of LEGACY.entries()) {
    for (const [rows, cols] of [[64, 64], [67, 224], [256, 768], [5, 96]] as const) {
      const xs = vectors(cols, 8, 100 + i);
      for (const backend of [new ReferenceBackend(), wasm]) {
        const m = legacyMatrix(backend, dtype, rows, cols, 7 + i);
        // One row at a time (the matrix-vector kernels) and eight at once (the matrix-matrix ones).
        const x8 = new Float32Array(8 * cols);
        xs.forEach((x, k) => x8.set(x, k * cols));
        const many = await product(backend, m, x8, 8);
        for (const [k, x] of xs.entries()) {
          const one = await product(backend, m, x, 1);
          const rounded = new Float32Array(cols);
          roundActivations('q8_0', x, 0, cols, rounded, 0);
          for (let r = 0; r < rows; r++) {
            readRow(m, r, row);
            let mag = 0;
            let onGrid = 0; // Σ w·(q·d): the matrix-matrix products' definition
            for (let j = 0; j < cols; j++) {
              mag += Math.abs(row[j]! * x[j]!);
              onGrid += row[j]! * rounded[j]!;
            }
            const tol = 2e-6 * mag + 1e-30;
            const want = ggmlDot(m, r, x);
            assert.ok(Math.abs(one[r]! - want) <= tol, `${m.name} on ${backend.kind}, vector ${k} row ${r}: ${one[r]} vs ${want}`);
            // Eight rows: the _0 types give ggml's products; WebAssembly's packed products of the _1 types take
            // the minimum term as m·d·Σq (rounded activations times decoded weights), not m·f16(d·Σq).
            const wantMany = backend.kind === 'wasm' && (dtype === 'q4_1' || dtype === 'q5_1') ? onGrid : want;
            assert.ok(Math.abs(many[k * rows + r]! - wantMany) <= tol, `${m.name} on ${backend.kind} (8 rows), vector ${k} row ${r}: ${many[k * rows + r]} vs ${wantMany}`);
          }
        }
      }
    }
  }
});

test('exactActivations keeps the exact products: within 1e-6 of the float64 product of the dequantized weights', async () => {
  const wasm = await exactTestBackend();
  for (const [i, dtype] of LEGACY.entries()) {
    const m = legacyMatrix(wasm, dtype, 64, 256, 30 + i);
    const [x] = vectors(256, 1, 40 + i);
    for (const backend of [new ReferenceBackend({ exactActivations: true }), wasm]) {
      const y = await product(backend, m, x!, 1);
      const row = new Float32Array(256);
      for (let r = 0; r < 64; r++) {
        readRow(m, r, row);
        let s = 0;
        let mag = 0;
        for (let j = 0; j < 256; j++) {
          s += row[j]! * x![j]!;
          mag += Math.abs(row[j]! * x![j]!);
        }
        assert.ok(Math.abs(y[r]! - s) <= 1e-6 * mag + 1e-30, `${dtype} on ${backend.kind} row ${r}`);
      }
    }
  }
});

/**
 * llama.cpp's logits on its own quantized GGUF files (logits/NAME.llamacpp.f32: 64 positions, activations
 * quantized as ggml does). Bounds: what the default (ggml) path reaches — isolated positions differ where a
 * last-bit difference of an f32 sum moves one activation across a rounding boundary; the v6 model amplifies
 * such a step — and the exact path, which misses llama.cpp by 0.012–0.014 (v7) and 0.67 (v6), must not pass.
 */
const LLAMACPP: readonly { name: string; wasm: number; reference: number; exactAbove: number }[] = [
  { name: 'rwkv7-834k-Q8_0', wasm: 3.5e-3, reference: 5e-3, exactAbove: 1e-2 },
  { name: 'rwkv7-834k-Q4_K_M', wasm: 3.5e-3, reference: 5e-3, exactAbove: 1e-2 },
  { name: 'rwkv7-834k-Q6_K', wasm: 3.5e-3, reference: 5e-3, exactAbove: 1e-2 },
  { name: 'rwkv6-1m-Q8_0', wasm: 0.4, reference: 0.65, exactAbove: 0.6 },
];

for (const { name, wasm, reference, exactAbove } of LLAMACPP) {
  test(`${name}.gguf: llama.cpp's own logits within ${wasm} (wasm) / ${reference} (reference, float64 sums) with ggml's activations, not with exact ones`, async (t) => {
    const file = fixture(t, `gguf/${name}.gguf`);
    const tokensFile = fixture(t, 'gguf/tokens.json');
    const logitsFile = fixture(t, `gguf/logits/${name}.llamacpp.f32`);
    if (file === undefined || tokensFile === undefined || logitsFile === undefined) return;
    const ids = (JSON.parse(fs.readFileSync(tokensFile, 'utf8')) as { ids: number[] }).ids;
    const want = readF32(logitsFile);
    const worst = async (backend: Backend): Promise<number> => {
      const model = await loadModel(file, { backend });
      const state = model.createState();
      let w = 0;
      for (let i = 0; i < ids.length; i++) {
        const logits = await model.forward(ids[i]!, state);
        for (let j = 0; j < 256; j++) w = Math.max(w, Math.abs(logits[j]! - want[i * 256 + j]!));
      }
      return w;
    };
    for (const backend of [new ReferenceBackend(), await testBackend()]) {
      const w = await worst(backend);
      t.diagnostic(`${name} on ${backend.kind}, ggml activations: max |Δ| ${w.toExponential(2)}`);
      const bound = backend.kind === 'reference' ? reference : wasm;
      assert.ok(w <= bound, `${name} on ${backend.kind}: max |Δ| ${w}`);
    }
    const exact = await worst(await exactTestBackend());
    t.diagnostic(`${name}, exact activations: max |Δ| ${exact.toExponential(2)}`);
    assert.ok(exact > exactAbove, `exact activations should miss llama.cpp's logits (${exact})`);
  });
}
