// LoRA: the adapters' gradients against float64 finite differences (RWKV-4, RWKV-7 and GPT graphs); a LoRA
// run on a small trained model (weights frozen, the held-out loss of the new text falls, a small file);
// the adapter applied at load, the merged file (`rwkv merge`) and the training graph give the same
// logits; a stopped-and-resumed LoRA run equals an uninterrupted one; errors name the file and tensor.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ArgumentError, ModelError } from '../src/errors.js';
import { applyLora, readLoraFile, readLoraSpecs } from '../src/formats/lora.js';
import { openCheckpoint } from '../src/formats/open.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { writeSafetensors } from '../src/formats/safetensors-writer.js';
import { loadModel } from '../src/models/load.js';
import { runMerge } from '../src/cli/merge.js';
import { ReferenceGemm, WasmGemm } from '../src/training/gemm.js';
import { GptTrain } from '../src/training/gpt.js';
import { LORA_FILE, LoraAdapter } from '../src/training/lora.js';
import { Rwkv4Train } from '../src/training/model.js';
import { Rwkv7Train, type Rwkv7Shape } from '../src/training/rwkv7.js';
import type { TrainModel } from '../src/training/architecture.js';
import { MODEL_FILE, STATE_FILE } from '../src/training/checkpoint.js';
import { LOG_FILE, train, type TrainOptions } from '../src/training/train.js';
import { Rng } from '../src/util/rng.js';
import { testBackend } from './helpers/backend.js';
import { checkGradient, randomF64 } from './helpers/gradcheck.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Random weights where every op is exercised (norm gains near 1, mixes in [0, 1], the rest small). */
function randomize(model: TrainModel, seed: number): void {
  const rng = new Rng(seed);
  for (const p of model.params) {
    const gain = /(ln\d?|ln_out|ln_f|ln_x)\.weight$/.test(p.name);
    const [lo, hi] = gain ? [0.5, 1.5] : /time_mix|\.x_[rwkvag]$/.test(p.name) ? [0, 1] : [-0.5, 0.5];
    p.data.set(randomF64(rng, p.data.length, lo, hi));
  }
}

function batch(seed: number, v: number, b: number, t: number): { ids: Int32Array; targets: Int32Array } {
  const rng = new Rng(seed);
  return {
    ids: Int32Array.from({ length: b * t }, () => rng.nextU32() % v),
    targets: Int32Array.from({ length: b * t }, () => rng.nextU32() % v),
  };
}

function gradientCheck(model: TrainModel, what: string): void {
  const f64 = new ReferenceGemm('f64');
  randomize(model, 3);
  const adapter = new LoraAdapter(model, f64, { rank: 2, alpha: 3, targets: ['att', 'ffn'] }, 5);
  // B starts at zero (so A's gradient would be zero): give both factors values.
  const rng = new Rng(9);
  for (const p of adapter.params) p.data.set(randomF64(rng, p.data.length, -0.3, 0.3));
  const { ids, targets } = batch(4, model.shape.nVocab, 2, 5);
  const loss = (): number => {
    adapter.apply();
    return model.forward(ids, targets, 2, 5);
  };
  loss();
  model.backward();
  adapter.gradients();
  let worst = 0;
  for (const p of adapter.params) {
    const r = checkGradient(loss, p.data as Float64Array, Float64Array.from(p.grad), { h: 1e-5, sample: 12 });
    assert.ok(r.norm > 0, `${what} ${p.name}: zero gradient`);
    assert.ok(r.relError <= 1e-5, `${what} ${p.name}: relative error ${r.relError}`);
    worst = Math.max(worst, r.relError);
  }
  console.log(`# ${what}: ${adapter.params.length} adapter tensors over ${adapter.targets.length} matrices, worst relative error ${worst.toExponential(2)}`);
}

test('LoRA gradients ∂L/∂A = s·Bᵀ·∂L/∂W, ∂L/∂B = s·∂L/∂W·Aᵀ match finite differences on RWKV-4, RWKV-7 and GPT (float64)', () => {
  const f64 = new ReferenceGemm('f64');
  gradientCheck(new Rwkv4Train({ nLayer: 2, nEmbd: 6, nVocab: 13, ffnSize: 10 }, f64), 'RWKV-4');
  const v7: Rwkv7Shape = { nLayer: 2, nEmbd: 8, nVocab: 11, headSize: 4, ffnSize: 12, wLora: 3, aLora: 5, vLora: 2, gLora: 4 };
  gradientCheck(new Rwkv7Train(v7, f64), 'RWKV-7');
  gradientCheck(new GptTrain({ nLayer: 2, nEmbd: 8, nVocab: 11, nHead: 2, nPositions: 8, tiedHead: true }, f64), 'GPT');
});

test('LoRA targets: att adapts the time mix, ffn the channel mix, never the embedding, head or small LoRA factors', () => {
  const f64 = new ReferenceGemm('f64');
  const v7: Rwkv7Shape = { nLayer: 1, nEmbd: 8, nVocab: 11, headSize: 4, ffnSize: 12, wLora: 3, aLora: 5, vLora: 2, gLora: 4 };
  const model = new Rwkv7Train(v7, f64);
  const att = new LoraAdapter(model, f64, { rank: 2, alpha: 2, targets: ['att'] }, 1).targets;
  const ffn = new LoraAdapter(model, f64, { rank: 2, alpha: 2, targets: ['ffn'] }, 1).targets;
  assert.deepEqual(att.sort(), ['blocks.0.att.key.weight', 'blocks.0.att.output.weight', 'blocks.0.att.receptance.weight', 'blocks.0.att.value.weight']);
  assert.deepEqual(ffn.sort(), ['blocks.0.ffn.key.weight', 'blocks.0.ffn.value.weight']);
  assert.throws(() => new LoraAdapter(model, f64, { rank: 9, alpha: 2, targets: ['att'] }, 1), /--lora-rank 9 is more than/);
});

/** A few KB of varied English-like text from a word list. */
function text(words: readonly string[], bytes: number, seed: number): string {
  const rng = new Rng(seed);
  let s = '';
  while (s.length < bytes) s += words[rng.nextU32() % words.length] + (rng.nextU32() % 9 === 0 ? '.\n' : ' ');
  return s.slice(0, bytes);
}
const WORDS_A = ['the', 'model', 'reads', 'a', 'token', 'and', 'its', 'state', 'carries', 'what', 'came', 'before'];
const WORDS_B = ['green', 'river', 'stones', 'under', 'quiet', 'water', 'flow', 'slowly', 'past', 'old', 'mills'];

/** A small RWKV-4 trained on text A: the base model the LoRA tests adapt. */
async function baseModel(dir: string): Promise<string> {
  const data = path.join(dir, 'a.txt');
  fs.writeFileSync(data, text(WORDS_A, 6000, 1));
  const r = await train({ data: [data], out: path.join(dir, 'base'), layers: 2, width: 32, context: 24, batch: 4, steps: 25, lr: 3e-3, valFraction: 0 }, gemm);
  return path.join(r.dir, MODEL_FILE);
}

async function rnnLogits(file: string, ids: readonly number[], lora?: string[]): Promise<Float32Array[]> {
  const model = await loadModel(file, lora !== undefined ? { lora: await readLoraSpecs(lora) } : {});
  const state = model.createState();
  const out: Float32Array[] = [];
  for (const id of ids) out.push(Float32Array.from(await model.forward(id, state)));
  return out;
}

test('a LoRA run: only the adapters train, the held-out loss of the new text falls, and the adapter file is small', async () => {
  const dir = tempDir('lora-run');
  const base = await baseModel(dir);
  const baseBytes = fs.readFileSync(base);
  const data = path.join(dir, 'b.txt');
  fs.writeFileSync(data, text(WORDS_B, 6000, 2));
  const out = path.join(dir, 'lora');
  const r = await train({ data: [data], out, init: base, loraRank: 4, loraAlpha: 8, steps: 40, batch: 4, context: 24, lr: 1e-2, evalEvery: 40, evalBatches: 4, valFraction: 0.1 }, gemm);
  // The held-out loss before any update: the same run's first evaluation, made at step 0 by a 0-step run.
  const zero = await train({ data: [data], out: path.join(dir, 'zero'), init: base, loraRank: 4, loraAlpha: 8, steps: 1, lr: 1e-12, evalEvery: 1, evalBatches: 4, context: 24, batch: 4, valFraction: 0.1 }, gemm);
  const before = zero.valLosses[0]![1];
  const after = r.valLosses[r.valLosses.length - 1]![1];
  console.log(`# LoRA rank 4 on new text: held-out loss ${before.toFixed(3)} → ${after.toFixed(3)} in 40 steps`);
  assert.ok(after < before - 0.3, `held-out ${before} → ${after}`);
  assert.deepEqual(fs.readFileSync(base), baseBytes, 'the base model file is untouched');
  assert.ok(!fs.existsSync(path.join(out, MODEL_FILE)), 'a LoRA run writes no full model');
  const adapter = await readLoraFile(path.join(out, LORA_FILE));
  assert.equal(adapter.metadata.rank, 4);
  assert.equal(adapter.metadata.alpha, 8);
  assert.equal(adapter.metadata.base.file, path.resolve(base));
  assert.equal(adapter.pairs.length, 2 * 7); // 2 layers × (4 time-mix + 3 channel-mix matrices)
  const st = await readSafetensors(path.join(out, LORA_FILE));
  const config = JSON.parse(st.metadata.get('adapter_config')!) as { peft_type: string; r: number; target_modules: string[] };
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.r, 4);
  assert.ok(config.target_modules.includes('att.key'));
  assert.ok(fs.statSync(path.join(out, LORA_FILE)).size < fs.statSync(base).size / 3);

  // The training graph (weights W₀ + s·B·A), the adapter applied at load, and the merged file: same logits.
  const ids = Array.from(Buffer.from('green water flow'));
  const parallel = r.model.logits(Int32Array.from(ids), 1, ids.length);
  const applied = await rnnLogits(base, ids, [path.join(out, LORA_FILE)]);
  let worst = 0;
  applied.forEach((l, p) => l.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - parallel[p * 256 + j]!)))));
  console.log(`# adapter applied at load (RNN) vs training graph (parallel): ≤ ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4);
  const merged = path.join(dir, 'merged.safetensors');
  const summary = await runMerge({ model: base, lora: [path.join(out, LORA_FILE)], out: merged });
  assert.equal(summary.format, 'safetensors');
  const fromMerged = await rnnLogits(merged, ids);
  fromMerged.forEach((l, p) => assert.deepEqual(l, applied[p], `position ${p}: merged = applied, bit for bit`));
  // A scale of 0 is the base model; the unscaled and the plain base differ.
  const zeroScaled = await rnnLogits(base, ids, [`${path.join(out, LORA_FILE)}:0`]);
  const plain = await rnnLogits(base, ids);
  zeroScaled.forEach((l, p) => assert.deepEqual(l, plain[p]));
  assert.notDeepEqual(applied[ids.length - 1], plain[ids.length - 1]);
});

test('a LoRA run stopped and resumed equals an uninterrupted one (losses and adapter file)', async () => {
  const dir = tempDir('lora-resume');
  const base = await baseModel(dir);
  const data = path.join(dir, 'b.txt');
  fs.writeFileSync(data, text(WORDS_B, 5000, 3));
  const opts: TrainOptions = { data: [data], out: path.join(dir, 'whole'), init: base, loraRank: 2, steps: 8, batch: 2, context: 16, lr: 5e-3, evalEvery: 4, valFraction: 0.1, saveEvery: 100 };
  const whole = await train(opts, gemm);
  let steps = 0;
  const first = await train({ ...opts, out: path.join(dir, 'parts') }, gemm, { shouldStop: () => ++steps === 3 });
  assert.equal(first.stopped, true);
  assert.ok(fs.existsSync(path.join(dir, 'parts', STATE_FILE)));
  const rest = await train({ out: path.join(dir, 'parts'), resume: true }, gemm);
  assert.deepEqual([...first.losses, ...rest.losses], whole.losses);
  assert.deepEqual(fs.readFileSync(path.join(dir, 'parts', LOG_FILE), 'utf8').split('\n').map((l) => l.replace(/"time_s":[0-9.e-]+/, '')), fs.readFileSync(path.join(dir, 'whole', LOG_FILE), 'utf8').split('\n').map((l) => l.replace(/"time_s":[0-9.e-]+/, '')));
  const a = await readSafetensors(path.join(dir, 'parts', LORA_FILE));
  const b = await readSafetensors(path.join(dir, 'whole', LORA_FILE));
  for (const [name, t] of b.tensors) assert.deepEqual(a.tensors.get(name)!.data, t.data, name);
});

test('LoRA errors: no --init, an adapter for another model, a file that is not an adapter', async () => {
  const dir = tempDir('lora-errors');
  const data = path.join(dir, 'b.txt');
  fs.writeFileSync(data, text(WORDS_B, 3000, 4));
  await assert.rejects(train({ data: [data], out: path.join(dir, 'x'), loraRank: 4 }, gemm), (e: unknown) => e instanceof ArgumentError && /--lora-rank .*--init MODEL/.test(e.message));
  await assert.rejects(train({ data: [data], out: path.join(dir, 'y'), init: data, loraRank: 0.5 }, gemm), /--lora-rank must be an integer/);

  const base = await baseModel(dir);
  const r = await train({ data: [data], out: path.join(dir, 'lora'), init: base, loraRank: 2, steps: 2, batch: 2, context: 16, valFraction: 0 }, gemm);
  assert.ok(fs.existsSync(r.output));
  // Another shape: a wider model.
  const other = await train({ data: [data], out: path.join(dir, 'wide'), layers: 2, width: 40, context: 16, batch: 2, steps: 1, valFraction: 0 }, gemm);
  const source = await openCheckpoint(path.join(other.dir, MODEL_FILE));
  const adapters = await readLoraSpecs([r.output]);
  assert.throws(() => applyLora(source, adapters), (e: unknown) => e instanceof ModelError && e.code === 'BAD_SHAPE' && /blocks\.0\.att\.key\.weight/.test(e.message) && /another model/.test(e.message));
  // The base model itself is not an adapter.
  await assert.rejects(readLoraFile(base), (e: unknown) => e instanceof ModelError && e.message.includes(base) && /not a LoRA adapter/.test(e.message));
  // An adapter file missing its lora_B.
  const st = await readSafetensors(r.output);
  const broken = path.join(dir, 'broken.safetensors');
  const kept = [...st.tensors.values()].filter((t) => !t.name.endsWith('blocks.1.ffn.key.lora_B.weight'));
  writeSafetensors(
    broken,
    kept.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.data.byteLength, bytes: () => t.data })),
    Object.fromEntries(st.metadata),
  );
  await assert.rejects(readLoraFile(broken), (e: unknown) => e instanceof ModelError && /blocks\.1\.ffn\.key\.lora_B\.weight/.test(e.message) && e.message.includes(broken));
});

test('CLI: rwkv generate --lora equals rwkv generate on the merged model (rwkv merge)', async () => {
  const dir = tempDir('lora-cli');
  const base = await baseModel(dir);
  const data = path.join(dir, 'b.txt');
  fs.writeFileSync(data, text(WORDS_B, 4000, 5));
  const r = await train({ data: [data], out: path.join(dir, 'lora'), init: base, loraRank: 4, steps: 20, batch: 4, context: 24, lr: 1e-2, valFraction: 0 }, gemm);
  const merged = path.join(dir, 'merged.pth');
  const run = (args: string[]): string => {
    const p = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    return p.stdout;
  };
  run(['merge', '--model', base, '--lora', r.output, '--out', merged]);
  const gen = ['--max-tokens', '24', '--temperature', '0', '--threads', '1'];
  const withLora = run(['generate', 'green ', '--model', base, '--lora', r.output, ...gen]);
  const fromMerged = run(['generate', 'green ', '--model', merged, ...gen]);
  const plain = run(['generate', 'green ', '--model', base, ...gen]);
  assert.equal(withLora, fromMerged);
  assert.notEqual(withLora, plain);
});
