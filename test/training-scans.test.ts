// The trainer's WKV-4 scan on the WebAssembly kernels (scans.ts, asm/kernels.ts wkv4Train*) against the
// float64 TypeScript one (ops.ts wkvForward / wkvBackward, itself checked by finite differences in
// test/training-ops.test.ts): y, dk, dv, dTimeDecay and dTimeFirst on random inputs with a wide spread of
// keys and decays (the stable form's every branch), widths that split unevenly over the pool's threads, and
// several sequences. f32 against float64: each output within 2e-4 of its scale (largest magnitude).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { wkvBackward, wkvForward } from '../src/training/ops.js';
import { WasmScans } from '../src/training/scans.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';

const scans = new WasmScans((await testBackend()).kernels);

function random(rng: Rng, n: number, lo: number, hi: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}

/** max |a − b| ÷ max |b|. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
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

test('the scans take f32 arrays of a width that is a multiple of 4, and leave the rest to the TypeScript', () => {
  assert.equal(scans.takes(8, new Float32Array(8)), true);
  assert.equal(scans.takes(6, new Float32Array(6)), false);
  assert.equal(scans.takes(8, new Float64Array(8)), false);
});
