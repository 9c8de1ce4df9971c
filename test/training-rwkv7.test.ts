// RWKV-7 training: the whole graph in float64 against central finite differences for every parameter
// tensor (and the chunked WKV-7 backward on its own, over several chunks); the training forward's logits
// against the inference engine's (the weights saved as safetensors under official names and loaded by
// loadModel; and a real trained fixture loaded into the trainer); RWKV-LM's initialisation; AdamW steps
// that lower the loss; the f32 model on the WebAssembly kernels against the float64 reference.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { readSafetensors } from '../src/formats/safetensors.js';
import { writeSafetensors } from '../src/formats/safetensors-writer.js';
import { decodeF32 } from '../src/formats/values.js';
import type { OutTensor } from '../src/formats/writer.js';
import { loadModel } from '../src/models/load.js';
import { AdamW } from '../src/training/adamw.js';
import { ReferenceGemm, WasmGemm } from '../src/training/gemm.js';
import { initRwkv7 } from '../src/training/init-v7.js';
import { wkv7Backward, wkv7CheckpointLength, wkv7Forward } from '../src/training/ops-v7.js';
import { defaultRwkv7Shape, readRwkv7Weights, Rwkv7Train, rwkv7ParamShapes, rwkv7ShapeFromTensors, timeStateName, type Rwkv7Shape } from '../src/training/rwkv7.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';
import { fixture, readF32 } from './helpers/fixtures.js';
import { checkGradient, dot, randomF64 } from './helpers/gradcheck.js';
import { maskedMeanNll, maskTargets } from './helpers/masked-targets.js';

// 2 heads of 4; LoRA ranks differ from each other and from C so that a swapped dimension shows.
const SHAPE: Rwkv7Shape = { nLayer: 2, nEmbd: 8, nVocab: 11, headSize: 4, ffnSize: 12, wLora: 3, aLora: 5, vLora: 2, gLora: 4 };
const B = 2;
const T = 5;

/** Random weights in ranges where every op is exercised (an init's zero matrices would hide gradients). */
function randomize(model: Rwkv7Train, seed: number): void {
  const rng = new Rng(seed);
  for (const p of model.params) {
    const leaf = p.name.replace(/^blocks\.\d+\./, '');
    const [lo, hi] = /ln(0|1|2|_out|_x)\.weight$/.test(p.name)
      ? [0.5, 1.5]
      : /^(att|ffn)\.x_/.test(leaf)
        ? [0, 1]
        : /^att\.(k_k|k_a)$/.test(leaf)
          ? [0.3, 1.5]
          : /^att\.(w0|a0|v0)$/.test(leaf) || p.name === 'emb.weight'
            ? [-1, 1]
            : /^att\.[wavg][12]$/.test(leaf)
              ? [-0.8, 0.8]
              : [-0.5, 0.5];
    p.data.set(randomF64(rng, p.data.length, lo, hi));
  }
}

function batch(seed: number, v: number, b = B, t = T): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: b * t }, () => rng.nextU32() % v);
  const targets = Int32Array.from({ length: b * t }, () => rng.nextU32() % v);
  return { ids, targets };
}

function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `rwkv7-${tag}-`));
}

function save(model: Rwkv7Train, file: string): void {
  const out: OutTensor[] = model.params.map((p) => {
    const a = Float32Array.from(p.data);
    return { name: p.name, dtype: 'f32', shape: p.shape, byteLength: a.byteLength, bytes: () => new Uint8Array(a.buffer) };
  });
  writeSafetensors(file, out);
}

test('the parameter list: official names and shapes in state_dict order, as the converted v7 fixture has them', async (t) => {
  const shapes = rwkv7ParamShapes(SHAPE);
  assert.deepEqual(shapes.slice(0, 8).map((s) => s.name), ['emb.weight', 'blocks.0.ln1.weight', 'blocks.0.ln1.bias', 'blocks.0.ln2.weight', 'blocks.0.ln2.bias', 'blocks.0.ln0.weight', 'blocks.0.ln0.bias', 'blocks.0.att.x_r']);
  assert.ok(!shapes.some((s) => /^blocks\.0\.att\.v[012]$/.test(s.name)), 'layer 0 has no value-residual LoRA');
  assert.deepEqual(shapes.find((s) => s.name === 'blocks.1.att.v1')!.shape, [8, 2]);
  assert.deepEqual(shapes.find((s) => s.name === 'blocks.1.att.r_k')!.shape, [2, 4]);
  const fx = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  if (fx === undefined) return;
  const st = await readSafetensors(fx);
  const shape = rwkv7ShapeFromTensors(st.tensors, fx);
  const expected = rwkv7ParamShapes(shape);
  assert.deepEqual(
    [...st.tensors.values()].map((x) => ({ name: x.name, shape: [...x.shape] })),
    expected,
    'same names, shapes and order as the official converted fixture',
  );
  assert.deepEqual(shape, { ...shape, nEmbd: 64, headSize: 64, nVocab: 256, ffnSize: 256 });
});

test('WKV-7 alone, over several chunks of the backward: every input gradient matches finite differences', () => {
  const b = 2;
  const t = 37; // 3 chunks of 16, the last partial
  const heads = 2;
  const c = 6;
  const rng = new Rng(11);
  const n = b * t * c;
  const [r, k, v] = [0, 1, 2].map(() => randomF64(rng, n, -1, 1)) as [Float64Array, Float64Array, Float64Array];
  const w = randomF64(rng, n, 0.55, 1);
  const a = randomF64(rng, n, 0, 1);
  // kk: unit per head, as the model feeds it.
  const kk = randomF64(rng, n, -1, 1);
  for (let h = 0; h < n / 3; h++) {
    const s = Math.hypot(kk[3 * h]!, kk[3 * h + 1]!, kk[3 * h + 2]!);
    for (let i = 0; i < 3; i++) kk[3 * h + i] = kk[3 * h + i]! / s;
  }
  const gy = randomF64(rng, n, -1, 1);
  const y = new Float64Array(n);
  const loss = (): number => {
    wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c);
    return dot(y, gy);
  };
  const grads = [r, w, k, v, kk, a].map(() => new Float64Array(n)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  const checkpoints = new Float64Array(wkv7CheckpointLength(b, t, heads, c));
  wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c, checkpoints);
  wkv7Backward(...grads, gy, r, w, k, v, kk, a, checkpoints, b, t, heads, c);
  ['r', 'w', 'k', 'v', 'kk', 'a'].forEach((name, i) => {
    const x = [r, w, k, v, kk, a][i]!;
    const res = checkGradient(loss, x, grads[i]!, { h: 1e-6, sample: 200 });
    assert.ok(res.norm > 0);
    assert.ok(res.relError <= 1e-6, `d${name}: relative error ${res.relError}`);
  });
});

test('whole 2-layer model: every parameter gradient matches finite differences (float64)', () => {
  const model = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
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
    assert.ok(r.relError <= 1e-5, `${p.name}: relative error ${r.relError}`);
  }
  const total = Math.sqrt(diff) / Math.sqrt(norm);
  console.log(`# whole model: rel error ${total.toExponential(2)} over ${model.size} parameters in ${model.params.length} tensors; worst tensor ${worst.name} ${worst.err.toExponential(2)}`);
  assert.ok(total <= 1e-6);
});

test('logits too large to keep: the head runs in row chunks; same loss and gradients', () => {
  const kept = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
  const chunked = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'), { logitBudget: 40 });
  randomize(kept, 6);
  for (const p of kept.params) chunked.param(p.name).data.set(p.data);
  const { ids, targets } = batch(7, SHAPE.nVocab);
  assert.ok(Math.abs(kept.forward(ids, targets, B, T) - chunked.forward(ids, targets, B, T)) < 1e-12);
  kept.backward();
  chunked.backward();
  for (const p of kept.params) {
    const q = chunked.param(p.name).grad;
    for (let i = 0; i < q.length; i++) assert.ok(Math.abs(q[i]! - p.grad[i]!) < 1e-12, p.name);
  }
});

test('the training forward equals inference: saved as safetensors, loaded by loadModel, run in RNN mode', async () => {
  const shape: Rwkv7Shape = { ...SHAPE, nEmbd: 16, headSize: 8, ffnSize: 24 };
  const model = new Rwkv7Train(shape, new ReferenceGemm('f32'));
  randomize(model, 21);
  const dir = tempDir('logits');
  const file = path.join(dir, 'model.safetensors');
  save(model, file);
  const seqs = [
    [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4],
    [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2, 3, 5, 3],
  ];
  const t = seqs[0]!.length;
  const parallel = model.logits(Int32Array.from(seqs.flat()), seqs.length, t);
  const inference = await loadModel(file);
  let worst = 0;
  let scale = 0;
  for (const [s, ids] of seqs.entries()) {
    const state = inference.createState();
    for (const [p, id] of ids.entries()) {
      const logits = await inference.forward(id, state);
      for (let j = 0; j < shape.nVocab; j++) {
        worst = Math.max(worst, Math.abs(logits[j]! - parallel[(s * t + p) * shape.nVocab + j]!));
        scale = Math.max(scale, Math.abs(logits[j]!));
      }
    }
  }
  console.log(`# random weights: inference (RNN) vs training-graph logits differ by ≤ ${worst.toExponential(2)} (largest logit ${scale.toFixed(3)})`);
  assert.ok(scale > 0.1);
  assert.ok(worst <= 1e-4 * Math.max(1, scale), `${worst}`);
  // A fresh RWKV-LM init too (zero matrices, real decay ranges): logits are tiny but must agree.
  initRwkv7(model, { seed: 5 });
  save(model, file);
  const init = await loadModel(file);
  const st = init.createState();
  const lp = model.logits(Int32Array.from(seqs[0]!), 1, t);
  let worstInit = 0;
  for (const [p, id] of seqs[0]!.entries()) {
    const logits = await init.forward(id, st);
    for (let j = 0; j < shape.nVocab; j++) worstInit = Math.max(worstInit, Math.abs(logits[j]! - lp[p * shape.nVocab + j]!));
  }
  assert.ok(worstInit <= 1e-5, `init: ${worstInit}`);
  fs.rmSync(dir, { recursive: true });
});

test('a real trained v7 (7v0-834K) loaded into the trainer: its logits match the official expected ones and inference', async (t) => {
  const fx = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  const expectedFile = fixture(t, 'expected-logits-official-7v0-834K.bin');
  const input = fixture(t, 'input-1024.txt');
  if (fx === undefined || expectedFile === undefined || input === undefined) return;
  const st = await readSafetensors(fx);
  const shape = rwkv7ShapeFromTensors(st.tensors, fx);
  const model = new Rwkv7Train(shape, new ReferenceGemm('f64'));
  for (const p of model.params) p.data.set(decodeF32(st.tensors.get(p.name)!));
  // The fixtures' expected logits: after the bytes `"in` from a fresh state.
  const expected = readF32(expectedFile);
  const logits = model.logits(Int32Array.from([0x22, 0x69, 0x6e]), 1, 3).subarray(2 * 256);
  let worst = 0;
  for (let j = 0; j < 256; j++) worst = Math.max(worst, Math.abs(logits[j]! - expected[j]!));
  console.log(`# 7v0-834K: training-graph logits vs official expected: ≤ ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `${worst}`);
  // The same model from rwkv.cpp's own file (transposed LoRAs, x_rwkvag): the same shape and weights.
  const bin = fixture(t, 'tiny-rwkv-7v0-834K-FP32.bin');
  if (bin !== undefined) {
    const fromBin = await readRwkv7Weights(bin);
    assert.deepEqual(fromBin.shape, shape);
    for (const p of model.params) assert.deepEqual(fromBin.values.get(p.name), Float32Array.from(p.data), p.name);
  }
  // 64 tokens of English: the training graph's loss equals inference's (RNN mode, the f32 fixture).
  const bytes = fs.readFileSync(input).subarray(0, 65);
  const loss = model.forward(Int32Array.from(bytes.subarray(0, 64)), Int32Array.from(bytes.subarray(1)), 1, 64);
  const inference = await loadModel(fx);
  const state = inference.createState();
  let lossRnn = 0;
  for (let p = 0; p < 64; p++) {
    const l = await inference.forward(bytes[p]!, state);
    let max = -Infinity;
    for (const v of l) max = Math.max(max, v);
    let z = 0;
    for (const v of l) z += Math.exp(v - max);
    lossRnn += Math.log(z) + max - l[bytes[p + 1]!]!;
  }
  lossRnn /= 64;
  console.log(`# 7v0-834K on 64 bytes of English: training-graph loss ${loss.toFixed(6)}, inference ${lossRnn.toFixed(6)}`);
  assert.ok(loss < Math.log(256), 'a trained model beats a uniform guess on English bytes');
  assert.ok(Math.abs(loss - lossRnn) <= 1e-4, `${loss} vs ${lossRnn}`);
});

test("initialisation follows RWKV-LM's RWKV-7", () => {
  const shape = defaultRwkv7Shape({ nLayer: 3, nEmbd: 64, nVocab: 100, headSize: 16 });
  assert.deepEqual([shape.wLora, shape.aLora, shape.vLora, shape.gLora, shape.ffnSize], [32, 32, 32, 32, 256]);
  assert.deepEqual(Object.values(defaultRwkv7Shape({ nLayer: 1, nEmbd: 768, nVocab: 1 })).slice(3), [64, 3072, 64, 64, 32, 128]);
  assert.equal(defaultRwkv7Shape({ nLayer: 1, nEmbd: 96, nVocab: 1 }).headSize, 48, 'the largest divisor below 64');
  const model = new Rwkv7Train(shape, new ReferenceGemm('f64'));
  initRwkv7(model, { seed: 3 });
  const get = (n: string): Float64Array => model.param(n).data as Float64Array;
  const near = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);
  const C = 64;
  // Layer 1 of 3: r01 = 0.5, r1 = 2/3.
  near(get('blocks.1.att.x_r')[10]!, 1 - (10 / C) ** (0.2 * (2 / 3)), 'x_r');
  near(get('blocks.1.att.x_w')[10]!, 1 - (10 / C) ** (0.9 * (2 / 3)), 'x_w');
  near(get('blocks.1.att.x_v')[10]!, 1 - (10 / C) ** (0.7 * (2 / 3)), 'x_v');
  near(get('blocks.1.ffn.x_k')[10]!, 1 - (10 / C) ** ((2 / 3) ** 4), 'ffn.x_k');
  // w0 at channel 5 (head size 16: z = (5 − 7.5)/7.5).
  const z = (5 - 7.5) / 7.5;
  near(get('blocks.1.att.w0')[5]!, -6 + 6 * (5 / 63) ** (1 + 0.5 ** 0.3) + 0.5 + 2.5 * z * Math.abs(z), 'w0');
  near(get('blocks.0.att.a0')[5]!, -0.19 + 0.3 * z * Math.abs(z) + 0.4 * (5 / 63 - 0.5), 'a0');
  near(get('blocks.2.att.v0')[63]!, 0.73 - 0.4 * 0.5, 'v0');
  near(get('blocks.0.att.k_k')[0]!, 0.71 + 0.05, 'k_k');
  near(get('blocks.0.att.k_a')[7]!, 1.02, 'k_a');
  near(get('blocks.0.att.r_k')[7]!, -0.04, 'r_k');
  near(get('blocks.0.att.ln_x.weight')[0]!, (1 / 3) ** 0.7, 'ln_x');
  for (const n of ['att.w1', 'att.a1', 'att.g1', 'att.output.weight', 'ffn.value.weight']) {
    assert.ok(get(`blocks.1.${n}`).every((v) => v === 0), `${n} is zero`);
  }
  assert.ok(get('blocks.1.att.v1').every((v) => v === 0), 'v1 is zero');
  const emb = get('emb.weight');
  assert.ok(emb.every((v) => Math.abs(v) <= 1e-4) && emb.some((v) => v !== 0));
  // Orthogonal rows / columns with their gains: w2 [32, 64] rows of norm 0.1; att.key rows 0.1; ffn.key
  // [256, 64] columns of norm 1; head [100, 64] columns of squared norm 0.25·100/64.
  const rowNorm2 = (m: Float64Array, cols: number, r: number): number => {
    let s = 0;
    for (let c = 0; c < cols; c++) s += m[r * cols + c]! ** 2;
    return s;
  };
  const colNorm2 = (m: Float64Array, rows: number, cols: number, c: number): number => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += m[r * cols + c]! ** 2;
    return s;
  };
  near(rowNorm2(get('blocks.0.att.w2'), C, 3), 0.01, 'w2 row');
  near(rowNorm2(get('blocks.0.att.key.weight'), C, 3), 0.01, 'key row');
  near(rowNorm2(get('blocks.0.att.receptance.weight'), C, 3), 1, 'receptance row');
  near(colNorm2(get('blocks.0.ffn.key.weight'), 256, C, 5), 1, 'ffn.key column');
  assert.ok(Math.abs(colNorm2(get('head.weight'), 100, C, 0) - (0.25 * 100) / 64) < 1e-9);
  // RWKV-LM decays the .weight matrices only.
  assert.deepEqual(
    model.params.filter((p) => p.decay).map((p) => p.name.replace(/^blocks\.\d+\./, '')).filter((n, i, a) => a.indexOf(n) === i),
    ['emb.weight', 'att.receptance.weight', 'att.key.weight', 'att.value.weight', 'att.output.weight', 'ffn.key.weight', 'ffn.value.weight', 'head.weight'],
  );
});

test('AdamW steps from the RWKV-LM init lower the loss; the trained checkpoint loads into inference with the same logits', async () => {
  const shape = defaultRwkv7Shape({ nLayer: 2, nEmbd: 32, nVocab: 20, headSize: 8 });
  const model = new Rwkv7Train({ ...shape, wLora: 8, aLora: 8, vLora: 8, gLora: 8, ffnSize: 64 }, new ReferenceGemm('f32'));
  initRwkv7(model, { seed: 1 });
  const opt = new AdamW(model.params, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 });
  // A learnable sequence: each token is the previous one + 3 mod V.
  const b = 4;
  const t = 16;
  const rng = new Rng(3);
  const ids = new Int32Array(b * t);
  for (let s = 0; s < b; s++) {
    let x = rng.nextU32() % 20;
    for (let p = 0; p < t; p++) ids[s * t + p] = x = (x + 3) % 20;
  }
  const targets = ids.map((x) => (x + 3) % 20);
  const first = model.forward(ids, targets, b, t);
  let last = first;
  for (let step = 0; step < 30; step++) {
    model.backward();
    opt.step(3e-3);
    last = model.forward(ids, targets, b, t);
  }
  console.log(`# AdamW: loss ${first.toFixed(4)} → ${last.toFixed(4)} in 30 steps`);
  assert.ok(Math.abs(first - Math.log(20)) < 0.05, `an init predicts uniformly: ${first}`);
  assert.ok(last < 0.5 * first, `${first} → ${last}`);
  // The trained checkpoint, as inference reads it, computes the training graph's logits.
  const dir = tempDir('trained');
  const file = path.join(dir, 'model.safetensors');
  save(model, file);
  const inference = await loadModel(file);
  const seq = Array.from(ids.subarray(0, t));
  const parallel = model.logits(Int32Array.from(seq), 1, t);
  const state = inference.createState();
  let worst = 0;
  let scale = 0;
  for (const [p, id] of seq.entries()) {
    const logits = await inference.forward(id, state);
    for (let j = 0; j < 20; j++) {
      worst = Math.max(worst, Math.abs(logits[j]! - parallel[p * 20 + j]!));
      scale = Math.max(scale, Math.abs(logits[j]!));
    }
  }
  console.log(`# trained for 30 steps: inference (RNN) vs training-graph logits differ by ≤ ${worst.toExponential(2)} (largest logit ${scale.toFixed(3)})`);
  assert.ok(worst <= 1e-4 * Math.max(1, scale), `${worst}`);
  fs.rmSync(dir, { recursive: true });
});

test('the f32 model on the WebAssembly kernels matches the float64 reference (loss and gradients)', async () => {
  const shape: Rwkv7Shape = { nLayer: 2, nEmbd: 24, nVocab: 37, headSize: 8, ffnSize: 96, wLora: 8, aLora: 6, vLora: 4, gLora: 12 };
  const ref = new Rwkv7Train(shape, new ReferenceGemm('f64'));
  const fast = new Rwkv7Train(shape, new WasmGemm((await testBackend()).kernels));
  randomize(ref, 4);
  for (const p of ref.params) fast.param(p.name).data.set(p.data);
  const { ids, targets } = batch(5, shape.nVocab, 2, 20);
  const l64 = ref.forward(ids, targets, 2, 20);
  const l32 = fast.forward(ids, targets, 2, 20);
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

test('WKV-7 from a given initial state: its gradient (summed over the batch) and every input gradient match finite differences', () => {
  const b = 2;
  const t = 21; // 2 chunks of the backward
  const heads = 2;
  const c = 6;
  const rng = new Rng(12);
  const n = b * t * c;
  const [r, k, v] = [0, 1, 2].map(() => randomF64(rng, n, -1, 1)) as [Float64Array, Float64Array, Float64Array];
  const w = randomF64(rng, n, 0.55, 1);
  const a = randomF64(rng, n, 0, 1);
  const kk = randomF64(rng, n, -1, 1);
  for (let h = 0; h < n / 3; h++) {
    const s = Math.hypot(kk[3 * h]!, kk[3 * h + 1]!, kk[3 * h + 2]!);
    for (let i = 0; i < 3; i++) kk[3 * h + i] = kk[3 * h + i]! / s;
  }
  const s0 = randomF64(rng, heads * 9, -1, 1);
  const gy = randomF64(rng, n, -1, 1);
  const y = new Float64Array(n);
  const loss = (): number => {
    wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c, undefined, s0);
    return dot(y, gy);
  };
  const grads = [r, w, k, v, kk, a].map(() => new Float64Array(n)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  const ds0 = new Float64Array(s0.length);
  const checkpoints = new Float64Array(wkv7CheckpointLength(b, t, heads, c));
  wkv7Forward(y, r, w, k, v, kk, a, b, t, heads, c, checkpoints, s0);
  wkv7Backward(...grads, gy, r, w, k, v, kk, a, checkpoints, b, t, heads, c, ds0);
  const res = checkGradient(loss, s0, ds0, { h: 1e-6 });
  assert.ok(res.norm > 0);
  assert.ok(res.relError <= 1e-7, `ds0: relative error ${res.relError}`);
  ['r', 'w', 'k', 'v', 'kk', 'a'].forEach((name, i) => {
    const x = [r, w, k, v, kk, a][i]!;
    const rr = checkGradient(loss, x, grads[i]!, { h: 1e-6, sample: 100 });
    assert.ok(rr.relError <= 1e-6, `d${name}: relative error ${rr.relError}`);
  });
});

test('the initial state: whole-model gradient matches finite differences (float64); frozen weights give the same one', () => {
  const model = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
  const frozen = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'), { frozen: true });
  randomize(model, 31);
  for (const p of model.params) frozen.param(p.name).data.set(p.data);
  const states = model.enableInitialState();
  const frozenStates = frozen.enableInitialState();
  assert.deepEqual(states.map((p) => [p.name, p.shape]), [0, 1].map((l) => [timeStateName(l), [2, 4, 4]]));
  const rng = new Rng(32);
  states.forEach((p, l) => {
    p.data.set(randomF64(rng, p.data.length, -1, 1));
    frozenStates[l]!.data.set(p.data);
  });
  const { ids, targets } = batch(33, SHAPE.nVocab);
  const l1 = model.forward(ids, targets, B, T);
  model.backward();
  assert.equal(frozen.forward(ids, targets, B, T), l1);
  frozen.backward();
  const loss = (): number => model.forward(ids, targets, B, T);
  for (const [l, p] of states.entries()) {
    const g = Float64Array.from(p.grad);
    const r = checkGradient(loss, p.data as Float64Array, g, { h: 1e-5 });
    assert.ok(r.norm > 0, `${p.name}: zero gradient`);
    assert.ok(r.relError <= 1e-6, `${p.name}: relative error ${r.relError}`);
    const q = frozenStates[l]!.grad;
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(q[i]! - g[i]!) <= 1e-12 * Math.max(1, Math.abs(g[i]!)), `${p.name}[${i}] frozen ${q[i]} vs ${g[i]}`);
  }
  assert.equal(frozen.param('blocks.0.att.key.weight').grad.length, 0, 'frozen matrices have no gradient arrays');
  // The weights' gradients with a non-zero initial state still match finite differences.
  const grads = new Map(model.params.map((p) => [p.name, Float64Array.from(p.grad)]));
  for (const name of ['blocks.0.att.r_k', 'blocks.1.att.w0', 'blocks.0.att.key.weight']) {
    const r = checkGradient(loss, model.param(name).data as Float64Array, grads.get(name)!, { h: 1e-5 });
    assert.ok(r.relError <= 1e-5, `${name}: relative error ${r.relError}`);
  }
});

test('the training graph from an initial state equals inference from that state loaded as an inference State', async () => {
  const shape: Rwkv7Shape = { ...SHAPE, nEmbd: 16, headSize: 8, ffnSize: 24 };
  const model = new Rwkv7Train(shape, new ReferenceGemm('f32'));
  randomize(model, 41);
  const states = model.enableInitialState();
  const rng = new Rng(42);
  // Asymmetric in (value, key), so a transposed convention would show.
  for (const p of states) p.data.set(randomF64(rng, p.data.length, -1.5, 1.5));
  const dir = tempDir('state');
  const file = path.join(dir, 'model.safetensors');
  save(model, file);
  const seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3];
  const t = seq.length;
  const parallel = model.logits(Int32Array.from(seq), 1, t);
  const fresh = new Rwkv7Train(shape, new ReferenceGemm('f32'));
  for (const p of model.params) fresh.param(p.name).data.set(p.data);
  const zeroStart = fresh.logits(Int32Array.from(seq), 1, t);
  const inference = await loadModel(file);
  const state = inference.createState();
  const C = shape.nEmbd;
  for (let l = 0; l < shape.nLayer; l++) state.layer(l).set(states[l]!.data, 2 * C); // after ffn_x, att_x (zero)
  let worst = 0;
  let scale = 0;
  let moved = 0;
  for (const [p, id] of seq.entries()) {
    const logits = await inference.forward(id, state);
    for (let j = 0; j < shape.nVocab; j++) {
      const q = p * shape.nVocab + j;
      worst = Math.max(worst, Math.abs(logits[j]! - parallel[q]!));
      scale = Math.max(scale, Math.abs(logits[j]!));
      moved = Math.max(moved, Math.abs(parallel[q]! - zeroStart[q]!));
    }
  }
  console.log(`# from a random initial state: inference vs training-graph logits ≤ ${worst.toExponential(2)} (largest ${scale.toFixed(3)}; the state moves them by ${moved.toFixed(3)})`);
  assert.ok(moved > 0.05, 'the initial state matters');
  assert.ok(worst <= 1e-4 * Math.max(1, scale), `${worst}`);
  fs.rmSync(dir, { recursive: true });
});

// --- Ignored targets (−1): chat fine-tuning, where only the assistant's tokens carry loss. ---

test('ignored targets (−1): the loss is the mean −log softmax over the counted positions only', () => {
  const model = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 11);
  const { ids, targets } = batch(12, SHAPE.nVocab);
  const masked = maskTargets(targets);
  const loss = model.forward(ids, masked, B, T);
  const expected = maskedMeanNll(model.logits(ids, B, T), masked, SHAPE.nVocab);
  assert.ok(Math.abs(loss - expected) < 1e-12, `loss ${loss} vs ${expected}`);
  assert.ok(Math.abs(loss - model.forward(ids, targets, B, T)) > 1e-6, 'the mask changes the loss');
});

test('ignored targets (−1): the gradients (and an initial state\'s) are those of the masked loss (finite differences)', () => {
  const model = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 13);
  const rng = new Rng(17);
  const states = model.enableInitialState();
  for (const s of states) s.data.set(randomF64(rng, s.data.length, -0.5, 0.5));
  const { ids, targets } = batch(14, SHAPE.nVocab);
  const masked = maskTargets(targets);
  model.forward(ids, masked, B, T);
  model.backward();
  const loss = (): number => model.forward(ids, masked, B, T);
  const names = ['head.weight', 'ln_out.weight', 'emb.weight', 'blocks.0.att.w1', 'blocks.1.att.v0', 'blocks.1.ffn.key.weight'];
  for (const p of [...names.map((n) => model.param(n)), states[0]!]) {
    const r = checkGradient(loss, p.data as Float64Array, Float64Array.from(p.grad), { h: 1e-5, sample: 24 });
    assert.ok(r.norm > 0, `${p.name}: zero gradient`);
    assert.ok(r.relError <= 1e-6, `${p.name}: relative error ${r.relError}`);
  }
});

test('every target ignored: loss 0 and all-zero gradients; targets outside [−1, V) are rejected', () => {
  const model = new Rwkv7Train(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 15);
  const states = model.enableInitialState();
  const { ids, targets } = batch(16, SHAPE.nVocab);
  model.forward(ids, targets, B, T);
  model.backward(); // nonzero gradients first: the masked backward must clear them
  assert.equal(model.forward(ids, new Int32Array(B * T).fill(-1), B, T), 0);
  model.backward();
  for (const p of [...model.params, ...states]) assert.ok(p.grad.every((g) => g === 0), `${p.name}: nonzero gradient`);
  for (const bad of [-2, SHAPE.nVocab]) {
    assert.throws(() => model.forward(ids, targets.map((v, i) => (i === 3 ? bad : v)), B, T), /target id/);
  }
  assert.throws(() => model.forward(ids.map((v, i) => (i === 3 ? -1 : v)), targets, B, T), /token id -1/);
});
