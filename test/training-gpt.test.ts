// The GPT baseline's training graph in float64: every parameter's gradient against central finite
// differences (2 layers, 2 heads, tied and untied head); the attention op alone against a direct
// evaluation; GPT-2's init; the f32 model on the WebAssembly kernels against the float64 reference; and
// the model file: Hugging Face GPT-2 names, Conv1D [in, out] shapes, config.json, read back; training
// through the CLI module (the loss falls; resume continues identically).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runLogits } from '../src/cli/logits.js';
import { runTrain } from '../src/cli/train.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { decodeF32 } from '../src/formats/values.js';
import { Rng } from '../src/util/rng.js';
import { ARCHITECTURES } from '../src/training/architecture.js';
import { ReferenceGemm, WasmGemm } from '../src/training/gemm.js';
import { GptTrain, type GptShape } from '../src/training/gpt.js';
import { readGptWeights, saveGptModel } from '../src/training/gpt-checkpoint.js';
import { initGpt } from '../src/training/gpt-init.js';
import { STATE_FILE } from '../src/training/checkpoint.js';
import { LOG_FILE, train, type TrainOptions } from '../src/training/train.js';
import { AttentionScratch, attentionBackward, attentionForward, geluBackward, geluForward } from '../src/training/gpt-ops.js';
import { testBackend } from './helpers/backend.js';
import { tempDir } from './helpers/formats.js';
import { checkGradient, dot, randomF64 } from './helpers/gradcheck.js';
import { maskedMeanNll, maskTargets } from './helpers/masked-targets.js';

const gemm = new WasmGemm((await testBackend()).kernels);
const SHAPE: GptShape = { nLayer: 2, nEmbd: 8, nVocab: 11, nHead: 2, nPositions: 6, tiedHead: true };
const B = 2;
const T = 5;

function randomize(model: GptTrain, seed: number): void {
  const rng = new Rng(seed);
  for (const p of model.params) {
    const [lo, hi] = /ln_.\.weight|ln_f\.weight/.test(p.name) ? [0.5, 1.5] : p.name.endsWith('.bias') ? [-0.3, 0.3] : [-0.6, 0.6];
    p.data.set(randomF64(rng, p.data.length, lo, hi));
  }
}

function batch(seed: number, v: number, b = B, t = T): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: b * t }, () => rng.nextU32() % v);
  const targets = Int32Array.from({ length: b * t }, () => rng.nextU32() % v);
  return { ids, targets };
}

for (const tied of [true, false]) {
  test(`whole 2-layer GPT (${tied ? 'tied' : 'untied'} head): every parameter gradient matches finite differences (float64)`, () => {
    const model = new GptTrain({ ...SHAPE, tiedHead: tied }, new ReferenceGemm('f64'));
    randomize(model, tied ? 1 : 2);
    const { ids, targets } = batch(3, SHAPE.nVocab);
    model.forward(ids, targets, B, T);
    model.backward();
    const grads = new Map(model.params.map((p) => [p.name, Float64Array.from(p.grad)]));
    const loss = (): number => model.forward(ids, targets, B, T);
    let worst = { name: '', err: 0 };
    for (const p of model.params) {
      const r = checkGradient(loss, p.data as Float64Array, grads.get(p.name)!, { h: 1e-5 });
      if (r.relError > worst.err) worst = { name: p.name, err: r.relError };
      // wpe's last row is never used by windows of T < nPositions: its gradient is zero, exactly.
      if (p.name === 'wpe.weight') assert.ok(grads.get(p.name)!.subarray(T * SHAPE.nEmbd).every((v) => v === 0));
      assert.ok(r.norm > 0, `${p.name}: zero gradient`);
      assert.ok(r.relError <= 1e-5, `${p.name}: relative error ${r.relError}`);
    }
    assert.equal(model.params.some((p) => p.name === 'lm_head.weight'), !tied);
    console.log(`# GPT ${tied ? 'tied' : 'untied'}: ${model.params.length} tensors, ${model.size} parameters; worst ${worst.name} ${worst.err.toExponential(2)}`);
  });
}

test('causal attention alone: the output equals softmax(q·kᵀ/√hs)·v over j ≤ i; its backward matches finite differences', () => {
  const b = 2;
  const t = 4;
  const c = 6;
  const h = 3;
  const rng = new Rng(9);
  const qkv = randomF64(rng, b * t * 3 * c, -1, 1);
  const g64 = new ReferenceGemm('f64');
  const scratch = new AttentionScratch('f64');
  const y = new Float64Array(b * t * c);
  const att = new Float64Array(b * h * t * t);
  attentionForward(y, att, qkv, b, t, c, h, g64, scratch);
  // Direct evaluation of one entry: sequence 1, head 2, position 3, channel 1 of the head.
  const hs = c / h;
  const [s, hh, i, e] = [1, 2, 3, 1];
  const q = (p: number, k: number): number => qkv[(s * t + p) * 3 * c + k * c + hh * hs + e]!;
  const scores = Array.from({ length: i + 1 }, (_, j) => {
    let d = 0;
    for (let x = 0; x < hs; x++) d += qkv[(s * t + i) * 3 * c + hh * hs + x]! * qkv[(s * t + j) * 3 * c + c + hh * hs + x]!;
    return d / Math.sqrt(hs);
  });
  const z = scores.reduce((a, v) => a + Math.exp(v), 0);
  const want = scores.reduce((a, v, j) => a + (Math.exp(v) / z) * q(j, 2), 0);
  assert.ok(Math.abs(y[(s * t + i) * c + hh * hs + e]! - want) < 1e-12);
  // Future positions have weight zero.
  assert.equal(att[(0 * h + 0) * t * t + 0 * t + 1], 0);
  // Backward against finite differences of L = Σ y ⊙ r.
  const r = randomF64(rng, y.length);
  const dq = new Float64Array(qkv.length);
  attentionBackward(dq, r, qkv, att, b, t, c, h, g64, scratch);
  const res = checkGradient(
    () => {
      attentionForward(y, att, qkv, b, t, c, h, g64, scratch);
      return dot(y, r);
    },
    qkv,
    dq,
  );
  assert.ok(res.relError < 1e-8, `attention: ${res.relError}`);
});

test("GELU is GPT-2's tanh form; its backward matches finite differences", () => {
  const x = Float64Array.from([-3, -1, -0.2, 0, 0.5, 2, 4]);
  const out = new Float64Array(x.length);
  geluForward(out, x);
  assert.ok(Math.abs(out[5]! - 0.5 * 2 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (2 + 0.044715 * 8)))) < 1e-15);
  const r = randomF64(new Rng(2), x.length);
  const dx = new Float64Array(x.length);
  geluBackward(dx, r, x);
  const res = checkGradient(() => {
    geluForward(out, x);
    return dot(out, r);
  }, x, dx);
  assert.ok(res.relError < 1e-8);
});

test('GPT-2 init: normal(0, 0.02), residual projections 0.02/√(2L), zero biases, unit LayerNorms', () => {
  const shape: GptShape = { nLayer: 4, nEmbd: 64, nVocab: 256, nHead: 2, nPositions: 64, tiedHead: false };
  const model = new GptTrain(shape, new ReferenceGemm('f64'));
  initGpt(model, { seed: 5 });
  const std = (name: string): number => {
    const d = model.param(name).data;
    let s = 0;
    for (const v of d) s += v * v;
    return Math.sqrt(s / d.length);
  };
  for (const n of ['wte.weight', 'wpe.weight', 'h.1.attn.c_attn.weight', 'h.3.mlp.c_fc.weight', 'lm_head.weight']) {
    assert.ok(Math.abs(std(n) - 0.02) < 0.001, `${n}: ${std(n)}`);
  }
  for (const n of ['h.0.attn.c_proj.weight', 'h.2.mlp.c_proj.weight']) assert.ok(Math.abs(std(n) - 0.02 / Math.sqrt(8)) < 0.0005, `${n}: ${std(n)}`);
  assert.ok(model.param('h.0.mlp.c_fc.bias').data.every((v) => v === 0));
  assert.ok(model.param('h.0.ln_2.weight').data.every((v) => v === 1));
  assert.ok(model.param('ln_f.bias').data.every((v) => v === 0));
});

test('the f32 GPT on the WebAssembly kernels matches the float64 reference (loss and gradients)', async () => {
  const shape: GptShape = { nLayer: 2, nEmbd: 32, nVocab: 37, nHead: 4, nPositions: 8, tiedHead: true };
  const ref = new GptTrain(shape, new ReferenceGemm('f64'));
  const fast = new GptTrain(shape, gemm);
  randomize(ref, 4);
  for (const p of ref.params) fast.param(p.name).data.set(p.data);
  const { ids, targets } = batch(5, shape.nVocab, 3, 8);
  const l64 = ref.forward(ids, targets, 3, 8);
  const l32 = fast.forward(ids, targets, 3, 8);
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

test('the model file: Hugging Face GPT-2 names, Conv1D [in, out] weights, config.json; read back into the trainer layout', async () => {
  for (const tied of [true, false]) {
    const dir = tempDir(`gpt-ckpt-${tied}`);
    const shape: GptShape = { nLayer: 2, nEmbd: 8, nVocab: 11, nHead: 2, nPositions: 6, tiedHead: tied };
    const model = new GptTrain(shape, new ReferenceGemm('f32'));
    randomize(model, 8);
    const file = path.join(dir, 'model.safetensors');
    const written = ARCHITECTURES.gpt!.saveModel(model, file, { step: '0' });
    assert.deepEqual(written, [file, path.join(dir, 'config.json')]);
    const st = await readSafetensors(file);
    const C = 8;
    const want: Record<string, number[]> = {
      'wte.weight': [11, C],
      'wpe.weight': [6, C],
      'h.1.ln_1.weight': [C],
      'h.1.ln_1.bias': [C],
      'h.1.attn.c_attn.weight': [C, 3 * C],
      'h.1.attn.c_attn.bias': [3 * C],
      'h.1.attn.c_proj.weight': [C, C],
      'h.1.attn.c_proj.bias': [C],
      'h.1.ln_2.weight': [C],
      'h.1.ln_2.bias': [C],
      'h.1.mlp.c_fc.weight': [C, 4 * C],
      'h.1.mlp.c_fc.bias': [4 * C],
      'h.1.mlp.c_proj.weight': [4 * C, C],
      'h.1.mlp.c_proj.bias': [C],
      'ln_f.weight': [C],
      'ln_f.bias': [C],
    };
    for (const [name, s] of Object.entries(want)) {
      const t = st.tensors.get(name);
      assert.ok(t !== undefined, name);
      assert.deepEqual([...t.shape], s, name);
      assert.equal(t.dtype, 'f32');
    }
    assert.equal(st.tensors.has('lm_head.weight'), !tied);
    if (!tied) assert.deepEqual([...st.tensors.get('lm_head.weight')!.shape], [11, C]);
    assert.equal(st.tensors.size, 2 + 2 * 12 + 2 + (tied ? 0 : 1));
    // c_attn in the file is [in, out] = the trainer's [out, in] transposed: column j = q|k|v output j.
    const fileAttn = decodeF32(st.tensors.get('h.0.attn.c_attn.weight')!);
    const mine = model.param('h.0.attn.c_attn.weight').data;
    for (const [o, i] of [
      [0, 0],
      [17, 3],
      [23, 7],
    ] as const) {
      assert.equal(fileAttn[i * 3 * C + o], mine[o * C + i]);
    }
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(
      { ...config, architectures: undefined, n_ctx: undefined },
      {
        model_type: 'gpt2',
        architectures: undefined,
        n_ctx: undefined,
        n_layer: 2,
        n_embd: 8,
        n_head: 2,
        n_positions: 6,
        vocab_size: 11,
        layer_norm_epsilon: 1e-5,
        activation_function: 'gelu_new',
        tie_word_embeddings: tied,
      },
    );
    const back = await readGptWeights(file);
    assert.deepEqual(back.shape, shape);
    for (const p of model.params) assert.deepEqual(back.values.get(p.name), p.data, p.name);
  }
});

/** A few KB of varied English-like text. */
function syntheticText(bytes: number, seed = 1): string {
  const words = ['the', 'model', 'reads', 'a', 'token', 'and', 'its', 'attention', 'looks', 'at', 'what', 'came', 'before', 'in', 'the', 'window'];
  const rng = new Rng(seed);
  let s = '';
  while (s.length < bytes) s += words[rng.nextU32() % words.length] + (rng.nextU32() % 9 === 0 ? '.\n' : ' ');
  return s.slice(0, bytes);
}

test('rwkv train --arch gpt (the CLI module): the loss falls; model.safetensors + config.json; a stopped and resumed run equals an uninterrupted one', async () => {
  const dir = tempDir('gpt-train');
  const data = path.join(dir, 'text.txt');
  fs.writeFileSync(data, syntheticText(8000));
  const out = path.join(dir, 'run');
  const r = await runTrain({ data: [data], out, arch: 'gpt', layers: 2, width: 32, heads: 2, context: 32, batch: 4, steps: 30, lr: 3e-3, evalEvery: 10, threads: 1, progress: false });
  assert.ok(r.losses.at(-1)! < r.losses[0]! - 1, `loss ${r.losses[0]} → ${r.losses.at(-1)}`);
  for (const f of ['model.safetensors', 'config.json', STATE_FILE, LOG_FILE, 'tokens.bin']) assert.ok(fs.existsSync(path.join(out, f)), f);
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual([config.n_layer, config.n_embd, config.n_head, config.n_positions, config.vocab_size, config.tie_word_embeddings], [2, 32, 2, 32, 256, true]);
  // The model file read back holds the trained weights (the Conv1D ones transposed there and back).
  const back = await readGptWeights(path.join(out, 'model.safetensors'));
  assert.deepEqual(back.shape, { nLayer: 2, nEmbd: 32, nVocab: 256, nHead: 2, nPositions: 32, tiedHead: true });
  for (const p of r.model.params) assert.deepEqual(back.values.get(p.name), p.data, p.name);
  // GPT inference (models/gpt.ts, through `rwkv logits`) reads the run directory and gives the training
  // graph's logits.
  const input = path.join(dir, 'input.txt');
  fs.writeFileSync(input, 'the model reads its tokens'); // 26 bytes: within the 32 positions
  const logitsFile = path.join(dir, 'logits.bin');
  await runLogits({ model: out, input, out: logitsFile, all: true, kernels: 'reference' });
  const inference = new Float32Array(fs.readFileSync(logitsFile).buffer.slice(0));
  const trained = new GptTrain(back.shape, new ReferenceGemm('f64'));
  for (const p of trained.params) p.data.set(back.values.get(p.name)!);
  const ids = Int32Array.from(fs.readFileSync(input));
  const training = trained.logits(ids, 1, ids.length);
  assert.equal(inference.length, training.length);
  let worst = 0;
  for (let i = 0; i < training.length; i++) worst = Math.max(worst, Math.abs(training[i]! - inference[i]!));
  console.log(`# GPT inference vs training-graph logits: ≤ ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `inference logits differ by ${worst}`);

  // Resume: 8 steps at once against 3 + 5, untied head this time.
  const opts = (name: string): TrainOptions => ({
    data: [data],
    out: path.join(dir, name),
    arch: 'gpt',
    untiedHead: true,
    layers: 2,
    width: 16,
    heads: 2,
    context: 16,
    batch: 4,
    steps: 8,
    lr: 5e-3,
    evalEvery: 2,
    evalBatches: 2,
    saveEvery: 100,
    seed: 11,
  });
  const whole = await train(opts('whole'), gemm, {});
  assert.ok(whole.model.params.some((p) => p.name === 'lm_head.weight'));
  let n = 0;
  const first = await train(opts('parts'), gemm, { shouldStop: () => ++n === 3 });
  assert.equal(first.step, 3);
  const rest = await train({ out: path.join(dir, 'parts'), resume: true }, gemm, {});
  assert.equal(rest.step, 8);
  assert.ok(rest.model instanceof GptTrain, 'the resumed run is a GPT');
  assert.deepEqual([...first.losses, ...rest.losses], whole.losses);
  assert.deepEqual([...first.valLosses, ...rest.valLosses], whole.valLosses);
  for (const p of whole.model.params) assert.deepEqual(rest.model.param(p.name).data, p.data, p.name);
  await assert.rejects(train({ out: path.join(dir, 'parts'), resume: true, arch: 'rwkv4', steps: 9 }, gemm, {}), /--arch rwkv4 contradicts/);
  await assert.rejects(train({ ...opts('bad'), width: 18, heads: 4 }, gemm, {}), /not a multiple of --heads 4/);
});

// --- Ignored targets (−1): chat fine-tuning, where only the assistant's tokens carry loss. ---

test('ignored targets (−1): the GPT loss is the mean −log softmax over the counted positions only', () => {
  const model = new GptTrain(SHAPE, new ReferenceGemm('f64'));
  randomize(model, 11);
  const { ids, targets } = batch(12, SHAPE.nVocab);
  const masked = maskTargets(targets);
  const loss = model.forward(ids, masked, B, T);
  const expected = maskedMeanNll(model.logits(ids, B, T), masked, SHAPE.nVocab);
  assert.ok(Math.abs(loss - expected) < 1e-12, `loss ${loss} vs ${expected}`);
  assert.ok(Math.abs(loss - model.forward(ids, targets, B, T)) > 1e-6, 'the mask changes the loss');
});

for (const tied of [true, false]) {
  test(`ignored targets (−1): GPT (${tied ? 'tied' : 'untied'} head) gradients are those of the masked loss (finite differences)`, () => {
    const model = new GptTrain({ ...SHAPE, tiedHead: tied }, new ReferenceGemm('f64'));
    randomize(model, 13);
    const { ids, targets } = batch(14, SHAPE.nVocab);
    const masked = maskTargets(targets);
    model.forward(ids, masked, B, T);
    model.backward();
    const loss = (): number => model.forward(ids, masked, B, T);
    const names = ['wte.weight', 'wpe.weight', 'ln_f.bias', 'h.0.attn.c_attn.weight', 'h.1.mlp.c_fc.bias', ...(tied ? [] : ['lm_head.weight'])];
    for (const name of names) {
      const p = model.param(name);
      const r = checkGradient(loss, p.data as Float64Array, Float64Array.from(p.grad), { h: 1e-5, sample: 24 });
      assert.ok(r.norm > 0, `${name}: zero gradient`);
      assert.ok(r.relError <= 1e-6, `${name}: relative error ${r.relError}`);
    }
  });
}

test('every target ignored: the GPT loss is 0 and every gradient zero; targets outside [−1, V) are rejected', () => {
  const model = new GptTrain(SHAPE, new ReferenceGemm('f64'));
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
