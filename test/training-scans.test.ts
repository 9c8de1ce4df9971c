// The trainer's WKV-4 and WKV-7 scans on the WebAssembly kernels (scans.ts, asm/kernels.ts wkv4Train*) against the
// float64 TypeScript ones (ops.ts wkvForward / wkvBackward, ops-v7.ts wkv7Forward / wkv7Backward, themselves
// checked by finite differences in test/training-ops.test.ts and test/training-rwkv7.test.ts): y, dk, dv, dTimeDecay and dTimeFirst on random inputs with a wide spread of
// keys and decays (the stable form's every branch), widths that split unevenly over the pool's threads, and
// several sequences; for WKV-7 sequences whose length is not a multiple of the chunk. f32 against float64: each output within 2e-4 of its scale (largest magnitude).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { wkvBackward, wkvForward } from '../src/training/ops.js';
import { wkv7Backward, wkv7CheckpointLength, wkv7Forward } from '../src/training/ops-v7.js';
import { WasmScans } from '../src/training/scans.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';

const scans = new WasmScans((await testBackend()).kernels);

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

for (const [b, t, heads, n] of [
  [1, 1, 1, 4],
  [2, 21, 3, 8],
  [3, 40, 2, 64],
] as const) {
  test(`the kernels' WKV-7 and its chunked backward equal the float64 TypeScript: B ${b}, T ${t}, ${heads} heads of ${n}`, () => {
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

    const y = new Float32Array(size);
    const checkpoints = new Float32Array(ck);
    scans.wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c, checkpoints);
    const yRef = new Float64Array(size);
    const ckRef = new Float64Array(ck);
    const ins = [r, w, k, v, kk, a].map(f64) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
    wkv7Forward(yRef, ...ins, b, t, heads, c, ckRef);

    const start = random(rng, size, -1, 1);
    const grads = Array.from({ length: 6 }, () => start.slice()) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    scans.wkv7Backward(...grads, dy, r, w, k, v, kk, a, checkpoints, b, t, heads, c);
    const gradsRef = Array.from({ length: 6 }, () => f64(start)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
    wkv7Backward(...gradsRef, f64(dy), ...ins, ckRef, b, t, heads, c);

    const names = ['dr', 'dw', 'dk', 'dv', 'dkk', 'da'];
    const errors: Record<string, number> = { y: relativeError(y, yRef), checkpoints: relativeError(checkpoints, ckRef) };
    names.forEach((name, i) => (errors[name] = relativeError(grads[i]!, gradsRef[i]!)));
    console.log(`# WKV-7 B ${b} T ${t} H ${heads} N ${n}: ${Object.entries(errors).map(([name, e]) => `${name} ${e.toExponential(1)}`).join(', ')}`);
    for (const [name, e] of Object.entries(errors)) assert.ok(e < 2e-4, `${name}: relative error ${e}`);
  });
}

test('the scans take f32 arrays of a width that is a multiple of 4, and leave the rest to the TypeScript', () => {
  assert.equal(scans.takes(8, new Float32Array(8)), true);
  assert.equal(scans.takes(6, new Float32Array(6)), false);
  assert.equal(scans.takes(8, new Float64Array(8)), false);
});
