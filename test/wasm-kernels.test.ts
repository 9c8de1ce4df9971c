// The WebAssembly kernels against the reference kernels, on random data of awkward sizes (rows and
// columns that are not multiples of 4 or 16; quantized rows are whole 32-value blocks but odd in number),
// with 1 and 2 threads.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Rng } from '../src/util/rng.js';
import { WasmKernels } from '../src/kernels/wasm-kernels.js';
import { applyResultFunction, matrixFromTensor, readRow, referenceMatmul, referenceMatvec, toInt8Rows, type Matrix, type ResultFunction } from '../src/kernels/matrix.js';
import { groupNorm } from '../src/kernels/norm.js';
import { DTYPES, f16ToF32Table, type DType } from '../src/tensor/dtype.js';
import { randomBytes } from './helpers/random-bytes.js';

const backends = new Map<number, WasmKernels>();
before(async () => {
  for (const threads of [1, 2]) backends.set(threads, await WasmKernels.create({ threads }));
});
after(async () => {
  for (const b of backends.values()) await b.close();
});

function placed(backend: WasmKernels, dtype: DType, rows: number, cols: number, rng: Rng): { fast: Matrix; ref: Matrix } {
  const data = randomBytes(dtype, rows, cols, rng);
  const inWasm = backend.allocate(data.byteLength);
  inWasm.set(data);
  const shape = [rows, cols];
  return {
    fast: matrixFromTensor({ name: `${dtype}`, dtype, shape, data: inWasm }, rows, cols),
    ref: matrixFromTensor({ name: `${dtype}`, dtype, shape, data }, rows, cols),
  };
}

function assertClose(actual: Float32Array, expected: Float32Array, scale: number, what: string): void {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  // f32 accumulation against float64: a few ulps of the sum of |w·x| terms.
  assert.ok(worst <= 1e-5 * scale, `${what}: max abs difference ${worst} (scale ${scale})`);
}

const CASES: { dtype: DType; rows: number; cols: number }[] = [
  { dtype: 'f32', rows: 37, cols: 101 },
  { dtype: 'f32', rows: 3, cols: 7 },
  // 203 rows: blocks of rows a quarter (or half) of each thread's range apart, with rows left over.
  { dtype: 'f32', rows: 203, cols: 36 },
  // 45 rows: the last panel is 13 wide, so the second half-panel is partial; 5 columns: a decode row
  // shorter than a register block.
  { dtype: 'f32', rows: 45, cols: 5 },
  { dtype: 'bf16', rows: 29, cols: 3 },
  { dtype: 'f16', rows: 37, cols: 101 },
  { dtype: 'bf16', rows: 37, cols: 99 },
  { dtype: 'q4_0', rows: 37, cols: 160 },
  { dtype: 'q4_1', rows: 37, cols: 96 },
  { dtype: 'q5_0', rows: 37, cols: 160 },
  { dtype: 'q5_1', rows: 19, cols: 224 },
  { dtype: 'q8_0', rows: 37, cols: 96 },
];

for (const threads of [1, 2]) {
  for (const c of CASES) {
    test(`${c.dtype} ${c.rows}×${c.cols}, ${threads} thread(s): matvec and matmul (t = 1 … 17) match the reference`, () => {
      const backend = backends.get(threads)!;
      const rng = new Rng(c.rows * 1000 + c.cols + threads);
      const { fast, ref } = placed(backend, c.dtype, c.rows, c.cols, rng);
      const x = new Float32Array(c.cols).map(() => rng.next() * 2 - 1);
      const expected = new Float32Array(c.rows);
      referenceMatvec(ref, x, expected);
      // Scale: the largest Σ|w·x| over rows bounds the rounding error of each row's sum.
      let scale = 1;
      const row = new Float32Array(c.cols);
      for (let r = 0; r < c.rows; r++) {
        readRow(ref, r, row);
        let s = 0;
        for (let j = 0; j < c.cols; j++) s += Math.abs(row[j]! * x[j]!);
        scale = Math.max(scale, s);
      }
      const actual = new Float32Array(c.rows);
      backend.matvec(fast, x, actual);
      assertClose(actual, expected, scale, 'matvec');
      for (const t of [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17]) {
        const xs = new Float32Array(t * c.cols).map(() => rng.next() * 2 - 1);
        const want = new Float32Array(t * c.rows);
        referenceMatmul(ref, xs, t, want);
        const got = new Float32Array(t * c.rows);
        backend.matmul(fast, xs, t, got);
        assertClose(got, want, scale * 2, `matmul t=${t}`);
      }
    });
  }
}

for (const threads of [1, 2]) {
  test(`int8 rows 37×101, ${threads} thread(s): the i16-activation kernel matches the float reference on the same int8 weights`, () => {
    const backend = backends.get(threads)!;
    const rng = new Rng(4242 + threads);
    const { ref } = placed(backend, 'f32', 37, 101, rng);
    const fast = toInt8Rows(ref, backend.allocate);
    const plain = toInt8Rows(ref, (n) => new Uint8Array(n));
    const x = new Float32Array(101).map(() => rng.next() * 2 - 1);
    const want = new Float32Array(37);
    referenceMatvec(plain, x, want);
    const got = new Float32Array(37);
    backend.matvec(fast, x, got);
    // Activations rounded to i16 with one scale: each term errs by at most |w|·max|x|/65534.
    let bound = 0;
    const row = new Float32Array(101);
    for (let r = 0; r < 37; r++) {
      readRow(plain, r, row);
      bound = Math.max(bound, row.reduce((a, w) => a + Math.abs(w), 0) / 65534);
    }
    for (let r = 0; r < 37; r++) assert.ok(Math.abs(got[r]! - want[r]!) <= bound * 1.01 + 1e-6, `row ${r}: ${got[r]} vs ${want[r]}`);
    // And int8 rows stay within half a step of the weights they encode.
    const orig = new Float32Array(101);
    for (let r = 0; r < 37; r++) {
      readRow(ref, r, orig);
      readRow(plain, r, row);
      const step = Math.max(...orig.map(Math.abs)) / 127;
      for (let j = 0; j < 101; j++) assert.ok(Math.abs(orig[j]! - row[j]!) <= step / 2 + 1e-7);
    }
    // The parallel-mode kernel decodes the same rows.
    const xs = new Float32Array(5 * 101).map(() => rng.next() * 2 - 1);
    const mmWant = new Float32Array(5 * 37);
    referenceMatmul(plain, xs, 5, mmWant);
    const mmGot = new Float32Array(5 * 37);
    backend.matmul(fast, xs, 5, mmGot);
    assertClose(mmGot, mmWant, 10, 'int8 matmul');
  });
}

for (const threads of [1, 2]) {
  test(`quantized, bf16 and f16 products, ${threads} thread(s): activations spanning 1e-30…1e6 within a block stay as exact as f32`, () => {
    const backend = backends.get(threads)!;
    const rng = new Rng(777 + threads);
    for (const dtype of ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'bf16', 'f16'] as DType[]) {
      const { fast, ref } = placed(backend, dtype, 21, 128, rng);
      // One huge value per block, the rest spread over 36 decades, some exact zeros and a subnormal.
      const x = new Float32Array(128).map((_, j) => (j % 32 === 5 ? 1e6 : j % 11 === 0 ? 0 : (rng.next() - 0.5) * 10 ** (-30 + (j % 37))));
      x[77] = 1e-40;
      const want = new Float32Array(21);
      referenceMatvec(ref, x, want);
      const got = new Float32Array(21);
      backend.matvec(fast, x, got);
      const row = new Float32Array(128);
      for (let r = 0; r < 21; r++) {
        readRow(ref, r, row);
        // The bound f32 itself gives: a few ulps of Σ|w·x|.
        const scale = row.reduce((a, w, j) => a + Math.abs(w * x[j]!), 0);
        assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-6 * scale, `${dtype} row ${r}: ${got[r]} vs ${want[r]}`);
      }
      // Blocks of small values only (no large neighbour): still relative precision, not flushed to zero
      // (down to 2^-98 ≈ 3e-30; below that a block is rounded at 2^-128 absolute).
      const tiny = new Float32Array(128).map(() => (rng.next() - 0.5) * 1e-28);
      referenceMatvec(ref, tiny, want);
      backend.matvec(fast, tiny, got);
      for (let r = 0; r < 21; r++) {
        readRow(ref, r, row);
        const scale = row.reduce((a, w, j) => a + Math.abs(w * tiny[j]!), 0);
        assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-5 * scale, `${dtype} tiny row ${r}: ${got[r]} vs ${want[r]}`);
      }
    }
  });
}

test('quantized products: an Inf or NaN activation gives NaN, not a finite number', () => {
  const backend = backends.get(2)!;
  const rng = new Rng(31);
  for (const dtype of ['q8_0', 'q4_1', 'q5_1'] as DType[]) {
    const { fast } = placed(backend, dtype, 5, 96, rng);
    for (const bad of [Infinity, -Infinity, NaN]) {
      const x = randomVector(rng, 96);
      x[40] = bad;
      const y = new Float32Array(5);
      backend.matvec(fast, x, y);
      for (let r = 0; r < 5; r++) assert.ok(Number.isNaN(y[r]!) || !Number.isFinite(y[r]!), `${dtype} x=${bad}: row ${r} = ${y[r]}`);
    }
  }
});

for (const threads of [1, 2]) {
  test(`matvecMany, ${threads} thread(s): a batch of products of mixed dtypes and sizes equals the products one by one`, () => {
    const backend = backends.get(threads)!;
    const rng = new Rng(99 + threads);
    const shapes: [DType | 'int8', number, number, ResultFunction | undefined][] = [
      ['f32', 37, 101, undefined],
      ['q8_0', 3, 96, 'relu2'],
      ['bf16', 53, 99, 'sigmoid'],
      ['int8', 17, 45, undefined],
      ['q5_1', 70, 224, 'tanh'],
      ['q4_0', 1, 32, undefined],
    ];
    const jobs = shapes.map(([dtype, rows, cols, then]) => {
      const m = dtype === 'int8' ? toInt8Rows(placed(backend, 'f32', rows, cols, rng).ref, backend.allocate) : placed(backend, dtype, rows, cols, rng).fast;
      return { m, x: randomVector(rng, cols), y: new Float32Array(rows), then };
    });
    backend.matvecMany(jobs);
    for (const { m, x, y, then } of jobs) {
      const one = new Float32Array(m.rows);
      backend.matvec(m, x, one);
      const want = new Float32Array(m.rows);
      referenceMatvec(m, x, want);
      if (then !== undefined) {
        applyResultFunction(then, one);
        applyResultFunction(then, want);
      }
      // The product itself is bit-identical alone or in a batch; the functions differ by f32 rounding.
      for (let r = 0; r < m.rows; r++) assert.ok(Math.abs(y[r]! - one[r]!) <= 1e-6 * (1 + Math.abs(one[r]!)), `${m.dtype} ${then} row ${r}: ${y[r]} vs ${one[r]}`);
      for (let r = 0; r < m.rows; r++) assert.ok(Math.abs(y[r]! - want[r]!) <= 1e-4 * (1 + Math.abs(want[r]!)), `${m.dtype} row ${r}`);
    }
    // Nonzero results really went through the function.
    assert.ok(jobs[1]!.y.every((v) => v >= 0) && jobs[2]!.y.every((v) => v >= 0 && v <= 1) && jobs[4]!.y.every((v) => Math.abs(v) <= 1));
  });
}

/** Random values in ±scale. */
function randomVector(rng: Rng, n: number, scale = 1): Float32Array {
  return new Float32Array(n).map(() => (rng.next() * 2 - 1) * scale);
}

test('groupNorm kernel (LayerNorm rows, and GroupNorm with SIMD-sized and odd groups) matches the float64 reference', () => {
  const backend = backends.get(1)!;
  const rng = new Rng(515);
  for (const [rows, c, groups] of [[3, 40, 1], [5, 36, 3], [2, 30, 2], [1, 768, 12]] as const) {
    const x = randomVector(rng, rows * c, 4).map((v, i) => v + (i % 7)); // a non-zero mean
    const weight = randomVector(rng, c, 2);
    const bias = randomVector(rng, c, 1);
    const want = new Float32Array(rows * c);
    for (let r = 0; r < rows; r++) groupNorm(x.subarray(r * c, (r + 1) * c), weight, bias, want.subarray(r * c, (r + 1) * c), groups, 1e-5);
    const got = new Float32Array(rows * c);
    backend.groupNorm(x, weight, bias, got, rows, groups, 1e-5);
    for (let i = 0; i < rows * c; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `${rows}×${c}/${groups} [${i}]: ${got[i]} vs ${want[i]}`);
  }
});

test('wkv4 (RWKV-4 stable WKV with σ(r), 9 tokens × 20 channels) matches a float64 reference, from a fresh state and with |k| up to 60', () => {
  const backend = backends.get(1)!;
  const rng = new Rng(404);
  const c = 20;
  const t = 9;
  const state = new Float32Array(3 * c);
  state.fill(-1e30, 2 * c); // fresh: pp = −1e30
  const w = randomVector(rng, c, 3).map((x) => -Math.exp(x));
  const u = randomVector(rng, c, 2);
  const k = randomVector(rng, t * c, 60);
  const v = randomVector(rng, t * c, 5);
  const r = randomVector(rng, t * c, 30);
  // Float64 reference, the same stable recurrence (state rounded to f32 as it is stored).
  const want = new Float64Array(t * c);
  const ref = Float64Array.from(state);
  for (let p = 0; p < t; p++) {
    for (let i = 0; i < c; i++) {
      const [aa, bb, pp] = [ref[i]!, ref[c + i]!, ref[2 * c + i]!];
      const ki = k[p * c + i]!;
      const vi = v[p * c + i]!;
      let ww = u[i]! + ki;
      let q = Math.max(pp, ww);
      want[p * c + i] = ((Math.exp(pp - q) * aa + Math.exp(ww - q) * vi) / (Math.exp(pp - q) * bb + Math.exp(ww - q))) / (1 + Math.exp(-r[p * c + i]!));
      ww = w[i]! + pp;
      q = Math.max(ww, ki);
      ref[i] = Math.fround(Math.exp(ww - q) * aa + Math.exp(ki - q) * vi);
      ref[c + i] = Math.fround(Math.exp(ww - q) * bb + Math.exp(ki - q));
      ref[2 * c + i] = Math.fround(q);
    }
  }
  const y = new Float32Array(t * c);
  backend.wkv4(state, k, v, r, w, u, y, c, t);
  for (let i = 0; i < t * c; i++) assert.ok(Math.abs(y[i]! - want[i]!) <= 2e-6 * (1 + Math.abs(want[i]!)), `y[${i}] ${y[i]} vs ${want[i]}`);
  for (let i = 0; i < 3 * c; i++) assert.ok(Math.abs(state[i]! - ref[i]!) <= 2e-6 * (1 + Math.abs(ref[i]!)), `state[${i}] ${state[i]} vs ${ref[i]}`);
  // NaN in k reaches y instead of vanishing.
  const kNaN = k.slice();
  kNaN[3] = NaN;
  backend.wkv4(new Float32Array(3 * c).fill(-1e30, 2 * c), kNaN, v, r, w, u, y, c, 1);
  assert.ok(Number.isNaN(y[3]!));
});

test('wkv5 (v5/v6 recurrence of one token) matches a float64 reference: 3 heads of 12', () => {
  const backend = backends.get(1)!;
  const rng = new Rng(55);
  const h = 3;
  const n = 12;
  const c = h * n;
  const state = randomVector(rng, h * n * n);
  const [r, k, v, u] = [randomVector(rng, c), randomVector(rng, c), randomVector(rng, c), randomVector(rng, c)];
  const w = new Float32Array(c).map(() => rng.next());
  // Reference: y_j = Σ_i r_i (u_i k_i v_j + S_ij); S_ij ← k_i v_j + w_i S_ij (row i = key).
  const want = new Float64Array(c);
  const wantState = Float64Array.from(state);
  for (let hh = 0; hh < h; hh++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const o = hh * n;
        const idx = (hh * n + i) * n + j;
        const kv = k[o + i]! * v[o + j]!;
        want[o + j] = want[o + j]! + r[o + i]! * (u[o + i]! * kv + wantState[idx]!);
        wantState[idx] = kv + w[o + i]! * wantState[idx]!;
      }
    }
  }
  const y = new Float32Array(c);
  backend.wkv5(state, r, k, v, w, u, y, h, n);
  for (let i = 0; i < c; i++) assert.ok(Math.abs(y[i]! - want[i]!) <= 1e-5, `y[${i}]`);
  for (let i = 0; i < state.length; i++) assert.ok(Math.abs(state[i]! - wantState[i]!) <= 1e-5, `S[${i}]`);
});

test('wkv7 (v7 recurrence of one token) matches a float64 reference: 3 heads of 12', () => {
  const backend = backends.get(1)!;
  const rng = new Rng(77);
  const h = 3;
  const n = 12;
  const c = h * n;
  const state = randomVector(rng, h * n * n);
  const [r, k, v, kk] = [randomVector(rng, c), randomVector(rng, c), randomVector(rng, c), randomVector(rng, c)];
  const w = new Float32Array(c).map(() => rng.next());
  const a = new Float32Array(c).map(() => rng.next());
  // Reference: row i = value, column j = key; sa_i = Σ_j S_ij kk_j;
  // S_ij ← S_ij w_j − sa_i kk_j a_j + v_i k_j; y_i = Σ_j S_ij r_j.
  const want = new Float64Array(c);
  const wantState = Float64Array.from(state);
  for (let hh = 0; hh < h; hh++) {
    const o = hh * n;
    for (let i = 0; i < n; i++) {
      const row = (hh * n + i) * n;
      let sa = 0;
      for (let j = 0; j < n; j++) sa += wantState[row + j]! * kk[o + j]!;
      let acc = 0;
      for (let j = 0; j < n; j++) {
        const sij = wantState[row + j]! * w[o + j]! - sa * kk[o + j]! * a[o + j]! + v[o + i]! * k[o + j]!;
        wantState[row + j] = sij;
        acc += sij * r[o + j]!;
      }
      want[o + i] = acc;
    }
  }
  const y = new Float32Array(c);
  backend.wkv7(state, r, w, k, v, kk, a, y, h, n);
  for (let i = 0; i < c; i++) assert.ok(Math.abs(y[i]! - want[i]!) <= 1e-5, `y[${i}]`);
  for (let i = 0; i < state.length; i++) assert.ok(Math.abs(state[i]! - wantState[i]!) <= 1e-5, `S[${i}]`);
});

test('int8 rows of 4096 columns at full scale: the integer sums do not overflow', () => {
  const backend = backends.get(2)!;
  const cols = 4096;
  const rows = 20;
  // Every weight and activation at its largest magnitude with the same sign: the worst case for the i32 lanes.
  const values = new Float32Array(rows * cols).fill(1);
  const ref = matrixFromTensor({ name: 'ones', dtype: 'f32', shape: [rows, cols], data: new Uint8Array(values.buffer) }, rows, cols);
  const fast = toInt8Rows(ref, backend.allocate);
  const x = new Float32Array(cols).fill(1);
  const y = new Float32Array(rows);
  backend.matvec(fast, x, y);
  for (let r = 0; r < rows; r++) assert.ok(Math.abs(y[r]! - cols) <= cols * 1e-4, `row ${r}: ${y[r]} ≠ ${cols}`);
});

for (const threads of [1, 2]) {
  test(`${threads} thread(s): an asynchronous product (the workers alone, the caller free) equals the synchronous one bit for bit`, async () => {
    const kernels = backends.get(threads)!;
    const rng = new Rng(77 + threads);
    for (const c of [CASES[0]!, CASES[4]!, CASES[9]!]) {
      const { fast } = placed(kernels, c.dtype, c.rows, c.cols, rng);
      for (const t of [2, 5, 17]) {
        const x = kernels.malloc(t * c.cols * 4);
        const ySync = kernels.malloc(t * c.rows * 4);
        const yAsync = kernels.malloc(t * c.rows * 4);
        const view = (p: number, n: number): Float32Array => new Float32Array(kernels.memory.buffer, p, n);
        view(x, t * c.cols).set(Float32Array.from({ length: t * c.cols }, () => rng.next() * 2 - 1));
        kernels.matmulAt(fast, x, t, ySync);
        let hostRan = false;
        setImmediate(() => (hostRan = true));
        const pending = kernels.matmulAtAsync(fast, x, t, yAsync);
        await pending;
        assert.deepEqual(view(yAsync, t * c.rows), view(ySync, t * c.rows), `${c.dtype} t=${t}`);
        // A synchronous job issued while an asynchronous one runs waits for it instead of clobbering it.
        const again = kernels.matmulAtAsync(fast, x, t, yAsync);
        kernels.matmulAt(fast, x, t, ySync);
        await again;
        assert.deepEqual(view(yAsync, t * c.rows), view(ySync, t * c.rows), `${c.dtype} t=${t}, overlapping`);
        void hostRan;
      }
    }
  });
}

// The plain SIMD build too (the others run the relaxed-SIMD one where the runtime has it).
let plainSimd: WasmKernels;
before(async () => {
  plainSimd = await WasmKernels.create({ threads: 1, relaxedSimd: false });
});
after(async () => {
  await plainSimd.close();
});

for (const flavour of ['default', 'plain SIMD']) {
  test(`f16 → f32 widening in integer SIMD is exact for all 65536 halves (±0, subnormals, ±inf, NaN), ${flavour} build`, () => {
    const kernels = flavour === 'default' ? backends.get(1)! : plainSimd;
    const src = kernels.malloc(65536 * 2);
    const dst = kernels.malloc(65536 * 4);
    const halves = new Uint16Array(kernels.memory.buffer, src, 65536);
    for (let h = 0; h < 65536; h++) halves[h] = h;
    const table = f16ToF32Table();
    const tableBits = new Uint32Array(table.buffer, table.byteOffset, 65536);
    const check = (n: number, first: number): void => {
      const out = new Float32Array(kernels.memory.buffer, dst, n);
      const bits = new Uint32Array(kernels.memory.buffer, dst, n);
      for (let i = 0; i < n; i++) {
        const h = first + i;
        if (Number.isNaN(table[h]!)) assert.ok(Number.isNaN(out[i]!), `half 0x${h.toString(16)}: ${out[i]} is not NaN`);
        else assert.equal(bits[i], tableBits[h], `half 0x${h.toString(16)}: ${out[i]} vs ${table[h]}`);
      }
    };
    kernels.exports.widenHalves(src, dst, 65536); // the SIMD loop
    check(65536, 0);
    kernels.exports.widenHalves(src + 2 * 0x7bf9, dst, 7); // the scalar tail: the largest finite halves, inf, NaN
    check(7, 0x7bf9);
    // The scan that sends matrices holding inf or NaN to the exact loop: in the SIMD part and in the tail.
    const scan = (values: number[]): number => {
      halves.set(values);
      return kernels.exports.hasF16Specials(src, values.length);
    };
    const finite = [0x0000, 0x8001, 0x7bff, 0xfbff, 0x3c00, 0x03ff, 0x8400, 0x7000, 0xf000, 0x0400, 0x3555, 0xbc00, 0x7bfe];
    assert.equal(scan(finite), 0);
    for (const [at, special] of [[3, 0x7c00], [5, 0xfc00], [12, 0x7e00], [11, 0xfc01]] as const) {
      const v = finite.slice();
      v[at] = special;
      assert.equal(scan(v), 1, `0x${special.toString(16)} at ${at}`);
    }
  });
}

for (const threads of [1, 2, 0]) {
  test(`f16 rows with subnormals, inf and NaN, ${threads || 'plain SIMD, 1'} thread(s): matvec and matmul follow them as f32 would`, () => {
    const backend = threads === 0 ? plainSimd : backends.get(threads)!;
    const rows = 6, cols = 101;
    const rng = new Rng(909 + threads);
    const data = new Uint8Array(rows * cols * 2);
    const h = new Uint16Array(data.buffer);
    // Rows 0-1: halves of every exponent; 2: +inf in the SIMD loop; 3: NaN in it; 4: −inf in the scalar tail; 5: subnormals only.
    for (let i = 0; i < h.length; i++) h[i] = Math.floor(rng.next() * 0x7c00) | (rng.next() < 0.5 ? 0x8000 : 0);
    for (let j = 0; j < cols; j++) h[5 * cols + j] = (Math.floor(rng.next() * 0x3ff) + 1) | (j & 1 ? 0x8000 : 0);
    h[2 * cols + 9] = 0x7c00;
    h[3 * cols + 40] = 0x7e01;
    h[4 * cols + 100] = 0xfc00;
    const inWasm = backend.allocate(data.byteLength);
    inWasm.set(data);
    const shape = [rows, cols];
    const fast = matrixFromTensor({ name: 'f16', dtype: 'f16', shape, data: inWasm }, rows, cols);
    const ref = matrixFromTensor({ name: 'f16', dtype: 'f16', shape, data }, rows, cols);
    const x = new Float32Array(cols).map(() => rng.next() + 0.5); // positive: an inf weight gives an inf sum
    const want = new Float32Array(rows);
    referenceMatvec(ref, x, want);
    const got = new Float32Array(rows);
    backend.matvec(fast, x, got);
    assert.equal(got[2], Infinity);
    assert.ok(Number.isNaN(got[3]!));
    assert.equal(got[4], -Infinity);
    // Finite rows: within f32 rounding of Σ|w·x| (subnormal weights widened exactly keep row 5 that close too).
    const table = f16ToF32Table();
    for (const r of [0, 1, 5]) {
      let bound = 0;
      for (let j = 0; j < cols; j++) bound += Math.abs(table[h[r * cols + j]!]! * x[j]!);
      assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-6 * bound, `row ${r}: ${got[r]} vs ${want[r]} (Σ|w·x| ${bound})`);
    }
    for (const t of [3, 9]) {
      const xs = new Float32Array(t * cols).map(() => rng.next() + 0.5);
      const y = new Float32Array(t * rows);
      backend.matmul(fast, xs, t, y);
      for (let i = 0; i < t; i++) {
        assert.equal(y[i * rows + 2], Infinity, `t=${t}`);
        assert.ok(Number.isNaN(y[i * rows + 3]!), `t=${t}`);
        assert.equal(y[i * rows + 4], -Infinity, `t=${t}`);
      }
    }
  });
}
