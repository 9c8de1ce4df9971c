// The whole RWKV-4 training graph in float64: every parameter's gradient against central finite
// differences of the loss (2 layers, random weights); RWKV-LM's initialisation; and the f32 model on the
// WebAssembly kernels against the float64 reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/util/rng.js';
import { ReferenceGemm, WasmGemm } from '../src/training/gemm.js';
import { initRwkv4 } from '../src/training/init.js';
import { Rwkv4Train, type Rwkv4Shape } from '../src/training/model.js';
import { testBackend } from './helpers/backend.js';
import { checkGradient, randomF64 } from './helpers/gradcheck.js';
import { maskedMeanNll, maskTargets } from './helpers/masked-targets.js';

const SHAPE: Rwkv4Shape = { nLayer: 2, nEmbd: 6, nVocab: 13, ffnSize: 10 };
const B = 2;
const T = 5;

/** Random weights in ranges where every op is exercised (an init's zero matrices would hide gradients). */
function randomize(model: Rwkv4Train, seed: number): void {
  const rng = new Rng(seed);
  for (const p of model.params) {
    const [lo, hi] = /ln.\.weight|ln_out\.weight/.test(p.name)
      ? [0.5, 1.5]
      : /time_mix/.test(p.name)
        ? [0, 1]
        : /time_decay|time_first/.test(p.name)
          ? [-1, 1]
          : p.name === 'emb.weight'
            ? [-1, 1]
            : [-0.5, 0.5];
    p.data.set(randomF64(rng, p.data.length, lo, hi));
  }
}

function batch(seed: number, v: number): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => rng.nextU32() % v);
  const targets = Int32Array.from({ length: B * T }, () => rng.nextU32() % v);
  return { ids, targets };
}

test('whole 2-layer model: every parameter gradient matches finite differences (float64)', () => {
  const model = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 1);
  const { ids, targets } = batch(2, SHAPE.nVocab);
  model.forward(ids, targets, B, T);
  model.backward();
  const grads = new Map(model.params.map((p) => [p.name, Float64Array.from(p.grad)]));
  const loss = (): number => model.forward(ids, targets, B, T);
  let diff = 0;
  let norm = 0;
  let worst = { name: '', err: 0 };
  for (const p of model.params) {
    const r = checkGradient(loss, p.data as Float64Array, grads.get(p.name)!, { h: 1e-5 });
    diff += (r.relError * r.norm) ** 2;
    norm += r.norm ** 2;
    if (r.relError > worst.err) worst = { name: p.name, err: r.relError };
    assert.ok(r.norm > 0, `${p.name}: zero gradient`);
    assert.ok(r.relError <= 1e-4, `${p.name}: relative error ${r.relError}`);
  }
  const total = Math.sqrt(diff) / Math.sqrt(norm);
  console.log(`# whole model: rel error ${total.toExponential(2)} over ${model.size} parameters; worst tensor ${worst.name} ${worst.err.toExponential(2)}`);
  assert.ok(total <= 1e-4);
});

test('logits too large to keep: the head runs in row chunks and recomputes them; same loss and gradients', () => {
  const kept = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'));
  const chunked = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'), { logitBudget: 40 }); // 40/4/13 → 1 row a chunk
  randomize(kept, 6);
  for (const p of kept.params) chunked.param(p.name).data.set(p.data);
  const { ids, targets } = batch(7, SHAPE.nVocab);
  const a = kept.forward(ids, targets, B, T);
  const b = chunked.forward(ids, targets, B, T);
  assert.ok(Math.abs(a - b) < 1e-12);
  kept.backward();
  chunked.backward();
  for (const p of kept.params) {
    const q = chunked.param(p.name).grad;
    for (let i = 0; i < q.length; i++) assert.ok(Math.abs(q[i]! - p.grad[i]!) < 1e-12, p.name);
  }
});

test("initialisation follows RWKV-LM's RWKV-4", () => {
  const shape: Rwkv4Shape = { nLayer: 3, nEmbd: 32, nVocab: 40, ffnSize: 128 };
  const model = new Rwkv4Train(shape, new ReferenceGemm('f64'));
  initRwkv4(model, { seed: 3 });
  const get = (n: string): Float64Array => model.param(n).data as Float64Array;
  const C = shape.nEmbd;
  // time_decay runs from −5 to 3 over the channels; the exponent grows with depth.
  assert.equal(get('blocks.0.att.time_decay')[0], -5);
  assert.ok(Math.abs(get('blocks.2.att.time_decay')[C - 1]! - 3) < 1e-12);
  assert.ok(Math.abs(get('blocks.1.att.time_decay')[16]! - (-5 + 8 * (16 / 31) ** (0.7 + 1.3 * 0.5))) < 1e-12);
  assert.ok(Math.abs(get('blocks.0.att.time_first')[0]! - Math.log(0.3)) < 1e-12);
  assert.ok(Math.abs(get('blocks.0.att.time_first')[1]! - (Math.log(0.3) + 0.5)) < 1e-12);
  assert.ok(Math.abs(get('blocks.0.att.time_first')[2]! - (Math.log(0.3) - 0.5)) < 1e-12);
  assert.ok(Math.abs(get('blocks.1.att.time_mix_v')[8]! - ((8 / 32) ** (2 / 3) + 0.15)) < 1e-12);
  assert.ok(Math.abs(get('blocks.1.att.time_mix_r')[8]! - (8 / 32) ** (1 / 3)) < 1e-12);
  assert.ok(Math.abs(get('blocks.2.ffn.time_mix_k')[8]! - (8 / 32) ** (1 / 3)) < 1e-12);
  for (const n of ['att.key', 'att.receptance', 'att.output', 'ffn.value', 'ffn.receptance']) {
    assert.ok(get(`blocks.1.${n}.weight`).every((v) => v === 0), `${n} is zero`);
  }
  const emb = get('emb.weight');
  assert.ok(emb.every((v) => Math.abs(v) <= 1e-4) && emb.some((v) => v !== 0));
  // Orthogonal: ffn.key [4C, C] has orthogonal columns of norm gain = 2; att.value [C, C] is orthogonal.
  const fk = get('blocks.0.ffn.key.weight');
  for (const [i, j] of [
    [0, 0],
    [0, 5],
    [7, 7],
  ] as const) {
    let s = 0;
    for (let r = 0; r < 4 * C; r++) s += fk[r * C + i]! * fk[r * C + j]!;
    assert.ok(Math.abs(s - (i === j ? 4 : 0)) < 1e-9, `ffn.key columns ${i}·${j} = ${s}`);
  }
  const av = get('blocks.2.att.value.weight');
  let s = 0;
  for (let c = 0; c < C; c++) s += av[3 * C + c]! * av[3 * C + c]!;
  assert.ok(Math.abs(s - 1) < 1e-9);
  // head [V, C], V > C: gain 0.5·√(V/C): columns of squared norm 0.25·V/C.
  const head = get('head.weight');
  let hn = 0;
  for (let r = 0; r < shape.nVocab; r++) hn += head[r * C]! ** 2;
  assert.ok(Math.abs(hn - (0.25 * shape.nVocab) / C) < 1e-9);
});

test('the f32 model on the WebAssembly kernels matches the float64 reference (loss and gradients)', async () => {
  const shape: Rwkv4Shape = { nLayer: 2, nEmbd: 24, nVocab: 37, ffnSize: 96 };
  const ref = new Rwkv4Train(shape, new ReferenceGemm('f64'));
  const fast = new Rwkv4Train(shape, new WasmGemm((await testBackend()).kernels));
  randomize(ref, 4);
  for (const p of ref.params) fast.param(p.name).data.set(p.data);
  const { ids, targets } = batch(5, shape.nVocab);
  const l64 = ref.forward(ids, targets, B, T);
  const l32 = fast.forward(ids, targets, B, T);
  assert.ok(Math.abs(l64 - l32) < 1e-4, `loss ${l64} vs ${l32}`);
  ref.backward();
  fast.backward();
  for (const p of ref.params) {
    const q = fast.param(p.name).grad;
    let d = 0;
    let n = 0;
    for (let i = 0; i < q.length; i++) {
      d += (q[i]! - p.grad[i]!) ** 2;
      n += p.grad[i]! ** 2;
    }
    assert.ok(Math.sqrt(d) <= 1e-3 * Math.sqrt(n) + 1e-7, `${p.name}: f32 gradient differs by ${Math.sqrt(d / n)}`);
  }
});

// --- Ignored targets (−1): chat fine-tuning, where only the assistant's tokens carry loss. ---

test('ignored targets (−1): the loss is the mean −log softmax over the counted positions only', () => {
  const model = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 11);
  const { ids, targets } = batch(12, SHAPE.nVocab);
  const masked = maskTargets(targets);
  const loss = model.forward(ids, masked, B, T);
  const expected = maskedMeanNll(model.logits(ids, B, T), masked, SHAPE.nVocab);
  assert.ok(Math.abs(loss - expected) < 1e-12, `loss ${loss} vs ${expected}`);
  assert.ok(Math.abs(loss - model.forward(ids, targets, B, T)) > 1e-6, 'the mask changes the loss');
  // In row chunks (logits recomputed in the backward): the same loss and gradients.
  const chunked = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'), { logitBudget: 40 });
  for (const p of model.params) chunked.param(p.name).data.set(p.data);
  assert.ok(Math.abs(chunked.forward(ids, masked, B, T) - expected) < 1e-12);
  model.forward(ids, masked, B, T);
  model.backward();
  chunked.backward();
  for (const p of model.params) {
    const q = chunked.param(p.name).grad;
    for (let i = 0; i < q.length; i++) assert.ok(Math.abs(q[i]! - p.grad[i]!) < 1e-12, p.name);
  }
});

test('ignored targets (−1): the gradients are those of the masked loss (finite differences)', () => {
  const model = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 13);
  const { ids, targets } = batch(14, SHAPE.nVocab);
  const masked = maskTargets(targets);
  model.forward(ids, masked, B, T);
  model.backward();
  const loss = (): number => model.forward(ids, masked, B, T);
  for (const name of ['head.weight', 'ln_out.bias', 'emb.weight', 'blocks.0.att.time_decay', 'blocks.1.ffn.key.weight']) {
    const p = model.param(name);
    const r = checkGradient(loss, p.data as Float64Array, Float64Array.from(p.grad), { h: 1e-5, sample: 24 });
    assert.ok(r.norm > 0, `${name}: zero gradient`);
    assert.ok(r.relError <= 1e-6, `${name}: relative error ${r.relError}`);
  }
});

test('every target ignored: loss 0 and all-zero gradients; targets outside [−1, V) and ids of −1 are rejected', () => {
  const model = new Rwkv4Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 15);
  const { ids, targets } = batch(16, SHAPE.nVocab);
  model.forward(ids, targets, B, T);
  model.backward(); // nonzero gradients first: the masked backward must clear them
  assert.equal(model.forward(ids, new Int32Array(B * T).fill(-1), B, T), 0);
  model.backward();
  for (const p of model.params) assert.ok(p.grad.every((g) => g === 0), `${p.name}: nonzero gradient`);
  for (const bad of [-2, SHAPE.nVocab]) {
    assert.throws(() => model.forward(ids, targets.map((v, i) => (i === 3 ? bad : v)), B, T), /target id/);
  }
  assert.throws(() => model.forward(ids.map((v, i) => (i === 3 ? -1 : v)), targets, B, T), /token id -1/);
});
