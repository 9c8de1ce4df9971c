// Every training op's backward against central finite differences in float64, on random inputs of
// awkward sizes: the relative error ‖g − g_fd‖/‖g_fd‖ must be ≤ 1e-4 for each input and parameter. The
// WebAssembly matrix products against the reference loops, and the shared forwards against ReferenceBackend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/util/rng.js';
import { rowLayout, type DeviceTensor } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { WKV4_FRESH_PP } from '../src/kernels/rwkv4-wkv.js';
import { ReferenceGemm, WasmGemm } from '../src/training/gemm.js';
import {
  crossEntropy,
  embeddingBackward,
  embeddingForward,
  IGNORE_TARGET,
  layerNormBackward,
  layerNormForward,
  reluSquaredBackward,
  reluSquaredForward,
  sigmoidGateBackward,
  sigmoidGateForward,
  tokenShiftMixBackward,
  tokenShiftMixForward,
  wkvBackward,
  wkvForward,
} from '../src/training/ops.js';
import { testBackend } from './helpers/backend.js';
import { checkGradient, dot, randomF64 } from './helpers/gradcheck.js';

const TOL = 1e-4;
const B = 2;
const T = 5;
const C = 7;
const N = B * T;

function expectClose(what: string, loss: () => number, x: Float64Array, g: ArrayLike<number>, h = 1e-5): void {
  const r = checkGradient(loss, x, g, { h });
  console.log(`# ${what}: rel error ${r.relError.toExponential(2)} (‖g‖ ${r.norm.toExponential(2)}, ${r.checked} values)`);
  assert.ok(r.norm > 0, `${what}: the gradient is zero, the check would be vacuous`);
  assert.ok(r.relError <= TOL, `${what}: relative error ${r.relError}`);
}

test('embedding: backward matches finite differences', () => {
  const rng = new Rng(1);
  const V = 6;
  const emb = randomF64(rng, V * C);
  const ids = Int32Array.from({ length: N }, () => rng.nextU32() % V);
  const dout = randomF64(rng, N * C);
  const out = new Float64Array(N * C);
  const loss = (): number => {
    embeddingForward(out, ids, emb, C);
    return dot(out, dout);
  };
  const demb = new Float64Array(V * C);
  embeddingBackward(demb, ids, dout, C);
  expectClose('embedding dW', loss, emb, demb);
});

test('LayerNorm: backward matches finite differences for x, weight and bias', () => {
  const rng = new Rng(2);
  const x = randomF64(rng, N * C, -2, 2);
  const w = randomF64(rng, C, 0.5, 1.5);
  const b = randomF64(rng, C);
  const dout = randomF64(rng, N * C);
  const out = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  const loss = (): number => {
    layerNormForward(out, mean, rstd, x, w, b, N, C);
    return dot(out, dout);
  };
  loss();
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  const db = new Float64Array(C);
  layerNormBackward(dx, dw, db, dout, x, mean, rstd, w, N, C);
  expectClose('layernorm dx', loss, x, dx);
  expectClose('layernorm dweight', loss, w, dw);
  expectClose('layernorm dbias', loss, b, db);
});

test('token shift + mix: backward matches finite differences for x and μ', () => {
  const rng = new Rng(3);
  const x = randomF64(rng, N * C);
  const mu = randomF64(rng, C, 0, 1);
  const dout = randomF64(rng, N * C);
  const out = new Float64Array(N * C);
  const loss = (): number => {
    tokenShiftMixForward(out, x, mu, B, T, C);
    return dot(out, dout);
  };
  const dx = new Float64Array(N * C);
  const dmu = new Float64Array(C);
  tokenShiftMixBackward(dx, dmu, dout, x, mu, B, T, C);
  expectClose('token shift dx', loss, x, dx);
  expectClose('token shift dμ', loss, mu, dmu);
});

test('linear (reference gemm): dX and dW match finite differences', () => {
  const rng = new Rng(4);
  const gemm = new ReferenceGemm('f64');
  const I = 7;
  const O = 9;
  const x = randomF64(rng, N * I);
  const w = randomF64(rng, O * I);
  const dout = randomF64(rng, N * O);
  const y = new Float64Array(N * O);
  const loss = (): number => {
    gemm.forward(y, x, w, N, O, I);
    return dot(y, dout);
  };
  const dx = new Float64Array(N * I);
  const dw = new Float64Array(O * I);
  gemm.backwardInput(dx, dout, w, N, O, I);
  gemm.backwardWeight(dw, dout, x, N, O, I);
  expectClose('linear dX', loss, x, dx);
  expectClose('linear dW', loss, w, dw);
});

test('squared ReLU and the sigmoid gate: backward matches finite differences', () => {
  const rng = new Rng(5);
  // Keep inputs away from relu's kink at 0, where a finite difference straddles it.
  const k = randomF64(rng, N * C, -2, 2).map((v) => (Math.abs(v) < 0.05 ? v + 0.1 : v));
  const dout = randomF64(rng, N * C);
  const out = new Float64Array(N * C);
  const lossRelu = (): number => {
    reluSquaredForward(out, k);
    return dot(out, dout);
  };
  const dk = new Float64Array(N * C);
  reluSquaredBackward(dk, dout, k);
  expectClose('relu² dx', lossRelu, k, dk);

  const r = randomF64(rng, N * C, -3, 3);
  const y = randomF64(rng, N * C);
  const s = new Float64Array(N * C);
  const lossGate = (): number => {
    sigmoidGateForward(out, s, r, y);
    return dot(out, dout);
  };
  lossGate();
  const dr = new Float64Array(N * C);
  const dy = new Float64Array(N * C);
  sigmoidGateBackward(dr, dy, dout, s, y);
  expectClose('sigmoid gate dr', lossGate, r, dr);
  expectClose('sigmoid gate dy', lossGate, y, dy);
});

for (const [label, kRange] of [
  ['moderate k', 3],
  ['large k, e^k beyond float32', 200],
] as const) {
  test(`WKV (${label}): backward matches finite differences for k, v, time_decay, time_first`, () => {
    const rng = new Rng(6);
    const t = 9;
    const n = B * t;
    const k = randomF64(rng, n * C, -kRange, kRange);
    const v = randomF64(rng, n * C, -2, 2);
    const decay = randomF64(rng, C, -2, 2);
    const first = randomF64(rng, C, -1, 1);
    const dout = randomF64(rng, n * C);
    const y = new Float64Array(n * C);
    const loss = (): number => {
      wkvForward(y, k, v, decay, first, B, t, C);
      return dot(y, dout);
    };
    loss();
    for (const value of y) assert.ok(Number.isFinite(value), 'the forward overflowed');
    const dk = new Float64Array(n * C);
    const dv = new Float64Array(n * C);
    const dd = new Float64Array(C);
    const du = new Float64Array(C);
    wkvBackward(dk, dv, dd, du, dout, k, v, decay, first, B, t, C);
    expectClose(`wkv dk (${label})`, loss, k, dk);
    expectClose(`wkv dv (${label})`, loss, v, dv);
    expectClose(`wkv dtime_decay (${label})`, loss, decay, dd);
    expectClose(`wkv dtime_first (${label})`, loss, first, du);
  });
}

test('WKV forward equals the direct (unstable) sum on small inputs', () => {
  const rng = new Rng(8);
  const t = 6;
  const k = randomF64(rng, t * C, -2, 2);
  const v = randomF64(rng, t * C);
  const decay = randomF64(rng, C, -1, 1);
  const first = randomF64(rng, C);
  const y = new Float64Array(t * C);
  wkvForward(y, k, v, decay, first, 1, t, C);
  for (let i = 0; i < C; i++) {
    const w = -Math.exp(decay[i]!);
    for (let p = 0; p < t; p++) {
      let num = Math.exp(first[i]! + k[p * C + i]!) * v[p * C + i]!;
      let den = Math.exp(first[i]! + k[p * C + i]!);
      for (let j = 0; j < p; j++) {
        const e = Math.exp((p - 1 - j) * w + k[j * C + i]!);
        num += e * v[j * C + i]!;
        den += e;
      }
      assert.ok(Math.abs(y[p * C + i]! - num / den) < 1e-12, `channel ${i}, position ${p}`);
    }
  }
});

test('cross-entropy: value and gradient match finite differences', () => {
  const rng = new Rng(9);
  const V = 11;
  const logits = randomF64(rng, N * V, -3, 3);
  const targets = Int32Array.from({ length: N }, () => rng.nextU32() % V);
  const loss = (): number => crossEntropy(logits, targets, N, V, N);
  // The value: mean of −log softmax[target].
  let expected = 0;
  for (let r = 0; r < N; r++) {
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[r * V + j]!);
    expected -= Math.log(Math.exp(logits[r * V + targets[r]!]!) / z);
  }
  assert.ok(Math.abs(loss() - expected / N) < 1e-12);
  const d = new Float64Array(N * V);
  crossEntropy(logits, targets, N, V, N, d);
  expectClose('cross-entropy dlogits', loss, logits, d);
});

test('cross-entropy with ignored targets (−1): the mean over the counted rows, zero dlogits rows; none counted: 0', () => {
  const rng = new Rng(19);
  const V = 11;
  const logits = randomF64(rng, N * V, -3, 3);
  const targets = Int32Array.from({ length: N }, (_, r) => (r % 3 === 0 ? IGNORE_TARGET : rng.nextU32() % V));
  const counted = targets.filter((t) => t >= 0).length;
  // Two row chunks, as the graphs' head runs them: each chunk's share over the same count.
  const half = (N / 2) * V;
  const loss = (): number =>
    crossEntropy(logits.subarray(0, half), targets.subarray(0, N / 2), N / 2, V, counted) +
    crossEntropy(logits.subarray(half), targets.subarray(N / 2), N / 2, V, counted);
  let expected = 0;
  for (let r = 0; r < N; r++) {
    if (targets[r]! < 0) continue;
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[r * V + j]!);
    expected -= Math.log(Math.exp(logits[r * V + targets[r]!]!) / z);
  }
  assert.ok(Math.abs(loss() - expected / counted) < 1e-12);
  const d = new Float64Array(N * V).fill(NaN); // every row written, the ignored ones with zeros
  crossEntropy(logits.subarray(0, half), targets.subarray(0, N / 2), N / 2, V, counted, d.subarray(0, half));
  crossEntropy(logits.subarray(half), targets.subarray(N / 2), N / 2, V, counted, d.subarray(half));
  for (let r = 0; r < N; r += 3) assert.ok(d.subarray(r * V, (r + 1) * V).every((g) => g === 0), `row ${r}`);
  expectClose('masked cross-entropy dlogits', loss, logits, d);
  // Nothing counted: loss 0 and zero dlogits, not NaN.
  const none = new Int32Array(N).fill(IGNORE_TARGET);
  const d0 = new Float64Array(N * V).fill(NaN);
  assert.equal(crossEntropy(logits, none, N, V, 0, d0), 0);
  assert.ok(d0.every((g) => g === 0));
});

test('WasmGemm: the three products equal the reference loops (f32, awkward sizes)', async () => {
  const backend = await testBackend();
  const wasm = new WasmGemm(backend.kernels);
  const ref = new ReferenceGemm('f32');
  const rng = new Rng(10);
  for (const [n, o, i] of [
    [37, 19, 13],
    [5, 70, 33],
    [64, 48, 40],
  ] as const) {
    const x = Float32Array.from(randomF64(rng, n * i));
    const dy = Float32Array.from(randomF64(rng, n * o));
    const w = wasm.allocate(o * i) as Float32Array;
    w.set(randomF64(rng, o * i));
    const a = new Float32Array(n * o);
    const b = new Float32Array(n * o);
    wasm.forward(a, x, w, n, o, i);
    ref.forward(b, x, w, n, o, i);
    for (let k = 0; k < a.length; k++) assert.ok(Math.abs(a[k]! - b[k]!) < 1e-4, `forward ${n}×${o}×${i}`);
    const dxa = new Float32Array(n * i);
    const dxb = new Float32Array(n * i);
    wasm.backwardInput(dxa, dy, w, n, o, i);
    ref.backwardInput(dxb, dy, w, n, o, i);
    for (let k = 0; k < dxa.length; k++) assert.ok(Math.abs(dxa[k]! - dxb[k]!) < 1e-4, `backwardInput ${n}×${o}×${i}`);
    const dwa = new Float32Array(o * i).fill(0.5);
    const dwb = new Float32Array(o * i).fill(0.5);
    wasm.backwardWeight(dwa, dy, x, n, o, i);
    ref.backwardWeight(dwb, dy, x, n, o, i);
    for (let k = 0; k < dwa.length; k++) assert.ok(Math.abs(dwa[k]! - dwb[k]!) < 1e-4, `backwardWeight ${n}×${o}×${i}`);
  }
});

test("the trainer's LayerNorm, v4 mix and WKV forwards compute what ReferenceBackend computes (f32)", async () => {
  const rng = new Rng(11);
  const f32 = (n: number, lo = -1, hi = 1): Float32Array => Float32Array.from(randomF64(rng, n, lo, hi));
  const be = new ReferenceBackend();
  const layout = rowLayout(Array<number>(B).fill(T));
  const read = (t: DeviceTensor): Promise<Float32Array> => be.read(t);
  const x = f32(N * C, -2, 2);
  const [w, bias, mu, decay, first] = [f32(C, 0.5, 1.5), f32(C), f32(C, 0, 1), f32(C), f32(C)];
  const xt = be.upload(x, N, C);

  // LayerNorm (eps 1e-5).
  const ln = new Float32Array(N * C);
  layerNormForward(ln, new Float32Array(N), new Float32Array(N), x, w, bias, N, C);
  const lnOut = be.tensor(N, C);
  be.norm(xt, be.upload(w, 1, C), be.upload(bias, 1, C), lnOut, 1, 1e-5);
  assert.deepEqual(await read(lnOut), ln);

  // Token shift from a fresh (zero) state, then x·μ + prev·(1 − μ).
  const mix = new Float32Array(N * C);
  tokenShiftMixForward(mix, x, mu, B, T, C);
  const state = be.tensor(B, 3 * C);
  const prev = be.tensor(N, C);
  be.tokenShift(layout, { state, offset: 0 }, xt, prev);
  const mixed = be.tensor(N, C);
  be.lerp(prev, xt, be.upload(mu, 1, C), mixed);
  assert.deepEqual(await read(mixed), mix);

  // WKV from a fresh state (pp = WKV4_FRESH_PP), gated by σ(r): the same up to f32 rounding (the
  // reference's state and decay are f32, the trainer's f64).
  const [k, v, r] = [f32(N * C, -3, 3), f32(N * C, -2, 2), f32(N * C, -2, 2)];
  const y = new Float32Array(N * C);
  wkvForward(y, k, v, decay, first, B, T, C);
  const gated = new Float32Array(N * C);
  sigmoidGateForward(gated, new Float32Array(N * C), r, y);
  const s = new Float32Array(B * 3 * C);
  for (let b = 0; b < B; b++) s.fill(WKV4_FRESH_PP, b * 3 * C + 2 * C, (b + 1) * 3 * C);
  be.write(state, s);
  const out = be.tensor(N, C);
  const wt = be.upload(decay.map((d) => -Math.exp(d)), 1, C);
  be.wkv4(layout, { state, offset: 0 }, be.upload(k, N, C), be.upload(v, N, C), be.upload(r, N, C), wt, be.upload(first, 1, C), out);
  const got = await read(out);
  let worst = 0;
  for (let i = 0; i < N * C; i++) worst = Math.max(worst, Math.abs(got[i]! - gated[i]!) / Math.abs(gated[i]!));
  console.log(`# wkv: largest relative difference ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-5, `wkv: relative difference ${worst}`);
});
