// The trainer's kernels (src/training/kernels.ts, asm/kernels.ts wkv4Train*, wkv7Train*, train*) against the
// float64 TypeScript they replace (ops.ts, ops-v7.ts, themselves checked by finite differences in
// test/training-ops.test.ts and test/training-rwkv7.test.ts):
// - WKV-4: y, dk, dv, dTimeDecay, dTimeFirst on random inputs with a wide spread of keys and decays (every
//   branch of the stable form), widths that split unevenly over the pool's threads, several sequences;
// - WKV-7: y, the checkpoints and all six gradients, lengths that are not a multiple of the chunk, and a
//   tuned initial state with its gradient;
// - the element-wise ops on arrays in the kernels' memory.
// f32 against float64: each output within 2e-4 of its scale (largest magnitude); the element-wise ops 1e-5.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { wkvBackward, wkvForward } from '../src/training/ops.js';
import { wkv7Backward, wkv7CheckpointLength, wkv7Forward } from '../src/training/ops-v7.js';
import { WasmGemm } from '../src/training/gemm.js';
import { TYPESCRIPT_OPS, WasmTrainingKernels } from '../src/training/kernels.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';

const scans = new WasmTrainingKernels((await testBackend()).kernels);

function random(rng: Rng, n: number, lo: number, hi: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}

/** max |a − b| ÷ max |b| (max |a − b| where b is all zero). */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

for (const [b, t, c, kSpread] of [
  [1, 1, 4, 1],
  [2, 37, 12, 3],
  [3, 64, 68, 20],
  [2, 200, 256, 8],
] as const) {
  test(`the kernels' WKV-4 scan and its backward equal the float64 TypeScript: B ${b}, T ${t}, C ${c}, keys in ±${kSpread}`, () => {
    const rng = new Rng(b * 1000 + t * 10 + c);
    const n = b * t * c;
    const k = random(rng, n, -kSpread, kSpread);
    const v = random(rng, n, -2, 2);
    const dy = random(rng, n, -1, 1);
    const timeDecay = random(rng, c, -6, 2.5);
    const timeFirst = random(rng, c, -3, 3);
    const f64 = (a: Float32Array): Float64Array => Float64Array.from(a);

    const y = new Float32Array(n);
    scans.wkv4Forward(y, k, v, timeDecay, timeFirst, b, t, c);
    const yRef = new Float64Array(n);
    wkvForward(yRef, f64(k), f64(v), f64(timeDecay), f64(timeFirst), b, t, c);

    // Both add to what the gradients already hold.
    const start = random(rng, n, -1, 1);
    const startC = random(rng, c, -1, 1);
    const [dk, dv, dDecay, dFirst] = [start.slice(), start.slice(), startC.slice(), startC.slice()];
    scans.wkv4Backward(dk, dv, dDecay, dFirst, dy, k, v, timeDecay, timeFirst, b, t, c);
    const [dkRef, dvRef, dDecayRef, dFirstRef] = [f64(start), f64(start), f64(startC), f64(startC)];
    wkvBackward(dkRef, dvRef, dDecayRef, dFirstRef, f64(dy), f64(k), f64(v), f64(timeDecay), f64(timeFirst), b, t, c);

    const errors = { y: relativeError(y, yRef), dk: relativeError(dk, dkRef), dv: relativeError(dv, dvRef), dTimeDecay: relativeError(dDecay, dDecayRef), dTimeFirst: relativeError(dFirst, dFirstRef) };
    console.log(`# B ${b} T ${t} C ${c}: ${Object.entries(errors).map(([name, e]) => `${name} ${e.toExponential(1)}`).join(', ')}`);
    for (const [name, e] of Object.entries(errors)) assert.ok(e < 2e-4, `${name}: relative error ${e}`);
  });
}

for (const [b, t, heads, n, tuned] of [
  [1, 1, 1, 4, false],
  [2, 21, 3, 8, false],
  [3, 40, 2, 64, false],
  [3, 37, 2, 8, true],
] as const) {
  test(`the kernels' WKV-7 and its chunked backward equal the float64 TypeScript: B ${b}, T ${t}, ${heads} heads of ${n}${tuned ? ', from a tuned initial state (its gradient too)' : ''}`, () => {
    const rng = new Rng(b * 7919 + t * 31 + heads * 7 + n);
    const c = heads * n;
    const size = b * t * c;
    const r = random(rng, size, -1, 1);
    const k = random(rng, size, -1, 1);
    const v = random(rng, size, -1, 1);
    const a = random(rng, size, 0, 1);
    // w: the decay factor in (0, 1); kk: a unit vector per head (as kkForward makes it).
    const w = random(rng, size, 0.05, 0.999);
    const kk = random(rng, size, -1, 1);
    for (let row = 0; row < b * t * heads; row++) {
      let norm = 0;
      for (let j = 0; j < n; j++) norm += kk[row * n + j]! ** 2;
      for (let j = 0; j < n; j++) kk[row * n + j]! /= Math.sqrt(norm);
    }
    const dy = random(rng, size, -1, 1);
    const f64 = (x: Float32Array): Float64Array => Float64Array.from(x);
    const ck = wkv7CheckpointLength(b, t, heads, c);
    const s0 = tuned ? random(rng, heads * n * n, -1, 1) : undefined;
    const ds0 = tuned ? random(rng, heads * n * n, -1, 1) : undefined;
    const ds0Ref = ds0 === undefined ? undefined : f64(ds0);

    const y = new Float32Array(size);
    const checkpoints = new Float32Array(ck);
    scans.wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c, checkpoints, s0);
    const yRef = new Float64Array(size);
    const ckRef = new Float64Array(ck);
    const ins = [r, w, k, v, kk, a].map(f64) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
    wkv7Forward(yRef, ...ins, b, t, heads, c, ckRef, s0 === undefined ? undefined : f64(s0));

    const start = random(rng, size, -1, 1);
    const grads = Array.from({ length: 6 }, () => start.slice()) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    scans.wkv7Backward(...grads, dy, r, w, k, v, kk, a, checkpoints, b, t, heads, c, ds0);
    const gradsRef = Array.from({ length: 6 }, () => f64(start)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
    wkv7Backward(...gradsRef, f64(dy), ...ins, ckRef, b, t, heads, c, ds0Ref);

    const names = ['dr', 'dw', 'dk', 'dv', 'dkk', 'da'];
    const errors: Record<string, number> = { y: relativeError(y, yRef), checkpoints: relativeError(checkpoints, ckRef) };
    names.forEach((name, i) => (errors[name] = relativeError(grads[i]!, gradsRef[i]!)));
    if (ds0 !== undefined) errors.ds0 = relativeError(ds0, ds0Ref!);
    console.log(`# WKV-7 B ${b} T ${t} H ${heads} N ${n}: ${Object.entries(errors).map(([name, e]) => `${name} ${e.toExponential(1)}`).join(', ')}`);
    for (const [name, e] of Object.entries(errors)) assert.ok(e < 2e-4, `${name}: relative error ${e}`);
  });
}

test('the scans take f32 arrays of a width that is a multiple of 4, and leave the rest to the TypeScript', () => {
  assert.equal(scans.takes(8, new Float32Array(8)), true);
  assert.equal(scans.takes(6, new Float32Array(6)), false);
  assert.equal(scans.takes(8, new Float64Array(8)), false);
});

test("the kernels' element-wise operations equal the TypeScript ones on arrays in their memory (f32)", async () => {
  const backend = await testBackend();
  const gemm = new WasmGemm(backend.kernels);
  const ops = gemm.kernels;
  const rng = new Rng(99);
  const [b, t, c] = [3, 17, 20];
  const n = b * t;
  const size = n * c;
  // Activations in the kernels' memory (as the graphs' buffers are), per-channel arrays on the heap.
  const inMemory = (lo: number, hi: number): Float32Array => {
    const a = gemm.allocate(size);
    a.set(random(rng, size, lo, hi));
    return a;
  };
  const perChannel = (lo: number, hi: number): Float32Array => random(rng, c, lo, hi);
  const f64 = (a: Float32Array): Float64Array => Float64Array.from(a);
  const x = inMemory(-2, 2);
  const dout = inMemory(-1, 1);
  const y = inMemory(-1, 1);
  const mu = perChannel(0, 1);
  const weight = perChannel(0.5, 1.5);
  const bias = perChannel(-0.5, 0.5);
  const errors: Record<string, number> = {};
  const check = (name: string, got: Float32Array, want: Float64Array): void => {
    errors[name] = relativeError(got, want);
  };

  // Token shift and mix, forward and backward (which adds): RWKV-4's lerp(prev, x, μ), RWKV-6/7's lerp(x, prev, μ).
  for (const [name, fwd, bwd] of [
    ['shift', 'tokenShiftMixForward', 'tokenShiftMixBackward'],
    ['v7 shift', 'shiftMixForward', 'shiftMixBackward'],
  ] as const) {
    const out = inMemory(0, 0);
    ops[fwd](out, x, mu, b, t, c);
    const outRef = new Float64Array(size);
    TYPESCRIPT_OPS[fwd](outRef, f64(x), f64(mu), b, t, c);
    check(name, out, outRef);
    const dx = inMemory(-1, 1);
    const dmu = perChannel(-1, 1);
    const [dxRef, dmuRef] = [f64(dx), f64(dmu)];
    ops[bwd](dx, dmu, dout, x, mu, b, t, c);
    TYPESCRIPT_OPS[bwd](dxRef, dmuRef, f64(dout), f64(x), f64(mu), b, t, c);
    check(`${name} dx`, dx, dxRef);
    check(`${name} dmu`, dmu, dmuRef);
  }

  // LayerNorm with its statistics, and its backward.
  const ln = inMemory(0, 0);
  const mean = gemm.allocate(n);
  const rstd = gemm.allocate(n);
  ops.layerNormForward(ln, mean, rstd, x, weight, bias, n, c);
  const [lnRef, meanRef, rstdRef] = [new Float64Array(size), new Float64Array(n), new Float64Array(n)];
  TYPESCRIPT_OPS.layerNormForward(lnRef, meanRef, rstdRef, f64(x), f64(weight), f64(bias), n, c);
  check('layerNorm', ln, lnRef);
  check('layerNorm mean', mean, meanRef);
  check('layerNorm rstd', rstd, rstdRef);
  const dxl = inMemory(-1, 1);
  const dw = perChannel(-1, 1);
  const db = perChannel(-1, 1);
  const [dxlRef, dwRef, dbRef] = [f64(dxl), f64(dw), f64(db)];
  ops.layerNormBackward(dxl, dw, db, dout, x, mean, rstd, weight, n, c);
  TYPESCRIPT_OPS.layerNormBackward(dxlRef, dwRef, dbRef, f64(dout), f64(x), meanRef, rstdRef, f64(weight), n, c);
  check('layerNorm dx', dxl, dxlRef);
  check('layerNorm dweight', dw, dwRef);
  check('layerNorm dbias', db, dbRef);

  // Squared ReLU and the receptance gate.
  const sq = inMemory(0, 0);
  ops.reluSquaredForward(sq, x);
  const sqRef = new Float64Array(size);
  TYPESCRIPT_OPS.reluSquaredForward(sqRef, f64(x));
  check('relu²', sq, sqRef);
  const dxr = inMemory(-1, 1);
  const dxrRef = f64(dxr);
  ops.reluSquaredBackward(dxr, dout, x);
  TYPESCRIPT_OPS.reluSquaredBackward(dxrRef, f64(dout), f64(x));
  check('relu² dx', dxr, dxrRef);
  const gate = inMemory(0, 0);
  const s = inMemory(0, 0);
  ops.sigmoidGateForward(gate, s, x, y);
  const [gateRef, sRef] = [new Float64Array(size), new Float64Array(size)];
  TYPESCRIPT_OPS.sigmoidGateForward(gateRef, sRef, f64(x), f64(y));
  check('gate', gate, gateRef);
  check('gate σ', s, sRef);
  const dr = inMemory(-1, 1);
  const dy = inMemory(-1, 1);
  const [drRef, dyRef] = [f64(dr), f64(dy)];
  ops.sigmoidGateBackward(dr, dy, dout, s, y);
  TYPESCRIPT_OPS.sigmoidGateBackward(drRef, dyRef, f64(dout), sRef, f64(y));
  check('gate dr', dr, drRef);
  check('gate dy', dy, dyRef);

  console.log(`# element-wise: ${Object.entries(errors).map(([name, e]) => `${name} ${e.toExponential(1)}`).join(', ')}`);
  for (const [name, e] of Object.entries(errors)) assert.ok(e < 1e-5, `${name}: relative error ${e}`);
});
