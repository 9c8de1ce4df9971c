// Training end to end on tiny models: AdamW and the schedule, the token cache and batches, overfitting a
// short text, a stopped-and-resumed run equal to an uninterrupted one, the trained weights read back by
// inference (RNN mode equals the training graph's parallel mode; .pth conversion), fine-tuning a fixture
// model, the CLI modules and the plot.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runPlot } from '../src/cli/plot.js';
import { runTrain } from '../src/cli/train.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { Rng } from '../src/util/rng.js';
import { loadModel } from '../src/models/load.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { AdamW, clipGradNorm } from '../src/training/adamw.js';
import { MODEL_FILE, readInitWeights, STATE_FILE } from '../src/training/checkpoint.js';
import { evalBatches, prepareTokens, randomBatch, readTokenFile, splitTokens } from '../src/training/data.js';
import { WasmGemm } from '../src/training/gemm.js';
import type { Param } from '../src/training/model.js';
import { learningRate } from '../src/training/schedule.js';
import { LOG_FILE, train, type TrainOptions } from '../src/training/train.js';
import { testBackend } from './helpers/backend.js';
import { shakespeare } from './helpers/data.js';
import { fixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);
const quiet = {};

/** A few KB of varied English-like text that needs no shared data. */
function syntheticText(bytes: number, seed = 1): string {
  const words = ['the', 'model', 'reads', 'a', 'token', 'and', 'its', 'state', 'carries', 'what', 'came', 'before', 'into', 'next', 'step', 'of', 'time'];
  const rng = new Rng(seed);
  let s = '';
  while (s.length < bytes) s += words[rng.nextU32() % words.length] + (rng.nextU32() % 9 === 0 ? '.\n' : ' ');
  return s.slice(0, bytes);
}

function writeText(dir: string, name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

test('AdamW: two updates equal the formula; weight decay only on matrices; clipping scales the global norm', async () => {
  const mk = (name: string, shape: number[], data: number[], grad: number[]): Param => ({
    name,
    shape,
    data: Float64Array.from(data),
    grad: Float64Array.from(grad),
    decay: shape.filter((d) => d > 1).length >= 2,
  });
  const w = mk('w', [2, 2], [1, -2, 0.5, 3], [0.1, 0.2, -0.3, 0.4]);
  const b = mk('b', [2], [1, -1], [0.5, -0.25]);
  const opt = new AdamW([w, b], { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 });
  const expected = (p0: number, gs: number[], lrs: number[], wd: number): number => {
    let p = p0;
    let m = 0;
    let v = 0;
    gs.forEach((g, i) => {
      const t = i + 1;
      p *= 1 - lrs[i]! * wd;
      m = 0.9 * m + 0.1 * g;
      v = 0.99 * v + 0.01 * g * g;
      p -= (lrs[i]! * (m / (1 - 0.9 ** t))) / (Math.sqrt(v / (1 - 0.99 ** t)) + 1e-8);
    });
    return p;
  };
  opt.step(0.01);
  opt.step(0.02); // the same gradients again
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(w.data[i]! - expected([1, -2, 0.5, 3][i]!, [w.grad[i]!, w.grad[i]!], [0.01, 0.02], 0.1)) < 1e-12);
  for (let i = 0; i < 2; i++) assert.ok(Math.abs(b.data[i]! - expected([1, -1][i]!, [b.grad[i]!, b.grad[i]!], [0.01, 0.02], 0)) < 1e-12);
  const norm = clipGradNorm([w, b], 0.5);
  assert.ok(Math.abs(norm - Math.sqrt(0.01 + 0.04 + 0.09 + 0.16 + 0.25 + 0.0625)) < 1e-12);
  let after = 0;
  for (const p of [w, b]) for (const g of p.grad) after += g * g;
  assert.ok(Math.abs(Math.sqrt(after) - 0.5) < 1e-5);
});

test('learning rate: linear warm-up, then cosine down to lrFinal at the last step', async () => {
  const s = { lr: 1e-3, lrFinal: 1e-4, warmup: 10, steps: 110 };
  assert.ok(Math.abs(learningRate(0, s) - 1e-4) < 1e-15);
  assert.ok(Math.abs(learningRate(9, s) - 1e-3) < 1e-15);
  assert.ok(Math.abs(learningRate(10, s) - 1e-3) < 1e-15);
  assert.ok(Math.abs(learningRate(109, s) - 1e-4) < 1e-15);
  const mid = learningRate(10 + 99 / 2, s);
  assert.ok(Math.abs(mid - 5.5e-4) < 1e-12);
  for (let i = 11; i < 110; i++) assert.ok(learningRate(i, s) <= learningRate(i - 1, s));
});

test('data: a directory is tokenized into a token file that later runs reuse; split; seeded windows', async () => {
  const dir = tempDir('train-data');
  const src = path.join(dir, 'texts');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  writeText(src, 'b.txt', 'world');
  writeText(path.join(src, 'sub'), 'c.txt', '!');
  writeText(src, 'a.txt', 'hello ');
  writeText(src, '.hidden', 'skipped');
  const cache = path.join(dir, 'tokens.bin');
  const tok = new ByteTokenizer();
  const first = prepareTokens([src], tok, 'bytes', cache);
  assert.equal(first.reused, false);
  assert.equal(Buffer.from(first.tokens).toString(), 'hello world!'); // a.txt, b.txt, sub/c.txt
  const again = prepareTokens([src], tok, 'bytes', cache);
  assert.equal(again.reused, true);
  assert.deepEqual([...again.tokens], [...first.tokens]);
  assert.deepEqual([...readTokenFile(cache).tokens], [...first.tokens]);
  // A token file given as data is used as it is.
  assert.deepEqual([...prepareTokens([cache], tok, 'bytes', path.join(dir, 'other.bin')).tokens], [...first.tokens]);
  // A changed source makes it anew.
  writeText(src, 'b.txt', 'there, world');
  const changed = prepareTokens([src], tok, 'bytes', cache);
  assert.equal(changed.reused, false);
  assert.equal(Buffer.from(changed.tokens).toString(), 'hello there, world!');
  // A data directory that holds the run directory: the run's own files are not data.
  const run = path.join(src, 'run');
  fs.mkdirSync(run);
  writeText(run, 'log.jsonl', '{}');
  const own = prepareTokens([src], tok, 'bytes', path.join(run, 'tokens.bin'), undefined, [path.join(run, 'log.jsonl')]);
  assert.equal(Buffer.from(own.tokens).toString(), 'hello there, world!');

  const tokens = Uint16Array.from({ length: 1000 }, (_, i) => i % 256);
  const split = splitTokens(tokens, 0.1, 16);
  assert.equal(split.train.length, 900);
  assert.equal(split.val[0], 900 % 256);
  const a = randomBatch(split.train, 4, 16, new Rng(5));
  const b = randomBatch(split.train, 4, 16, new Rng(5));
  assert.deepEqual(a, b);
  for (let i = 0; i < a.ids.length; i++) assert.equal(a.targets[i], (a.ids[i]! + 1) % 256);
  const ev = evalBatches(split.val, 4, 16, 2);
  assert.deepEqual(ev.map((e) => e.rows), [4, 2]); // 99 tokens → 6 windows of 16 + 1
  assert.equal(ev[1]!.batch.ids[0], (900 + 4 * 16) % 256);
});

test('a tiny model overfits a short text to near-zero loss', async () => {
  const dir = tempDir('train-overfit');
  const text = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n';
  const data = writeText(dir, 'text.txt', text);
  const r = await train(
    { data: [data], out: path.join(dir, 'run'), layers: 2, width: 32, context: 32, batch: 8, steps: 200, lr: 1e-2, warmup: 10, weightDecay: 0, valFraction: 0 },
    gemm,
    quiet,
  );
  // Read from its start, as inference would, every next byte is known: the loss is near zero.
  const bytes = Buffer.from(text);
  const loss = r.model.forward(Int32Array.from(bytes.subarray(0, -1)), Int32Array.from(bytes.subarray(1)), 1, bytes.length - 1);
  console.log(`# overfit: first step ${r.losses[0]!.toFixed(3)}, last ${r.losses.at(-1)!.toFixed(4)}, whole text ${loss.toFixed(4)}`);
  assert.ok(r.losses[0]! > 5);
  assert.ok(loss < 0.02, `whole-text loss ${loss}`);
});

test('a run stopped and resumed gives the same losses, held-out losses and weights as an uninterrupted one', async () => {
  const dir = tempDir('train-resume');
  const data = writeText(dir, 'text.txt', syntheticText(6000));
  const opts = (out: string): TrainOptions => ({
    data: [data],
    out: path.join(dir, out),
    layers: 2,
    width: 16,
    context: 16,
    batch: 4,
    steps: 8,
    lr: 5e-3,
    evalEvery: 2,
    evalBatches: 2,
    saveEvery: 100,
    seed: 11,
  });
  const whole = await train(opts('whole'), gemm, quiet);
  let n = 0;
  const first = await train(opts('parts'), gemm, { shouldStop: () => ++n === 3 });
  assert.equal(first.stopped, true);
  assert.equal(first.step, 3);
  const rest = await train({ out: path.join(dir, 'parts'), resume: true }, gemm, quiet);
  assert.equal(rest.step, 8);
  assert.deepEqual([...first.losses, ...rest.losses], whole.losses);
  assert.deepEqual([...first.valLosses, ...rest.valLosses], whole.valLosses);
  for (const p of whole.model.params) assert.deepEqual(rest.model.param(p.name).data, p.data, p.name);
  // The resumed run's log has each step once, equal to the uninterrupted run's.
  const log = (out: string): string[] => fs.readFileSync(path.join(dir, out, LOG_FILE), 'utf8').trim().split('\n').map((l) => {
    const e = JSON.parse(l) as { type: string; step: number; loss: number };
    return `${e.type} ${e.step} ${e.loss}`;
  });
  assert.deepEqual(log('parts'), log('whole'));
});

test('a fresh run into a directory that holds one is refused unless --overwrite: the old run stays intact', async () => {
  const dir = tempDir('train-overwrite');
  const data = writeText(dir, 'text.txt', syntheticText(3000, 4));
  const out = path.join(dir, 'run');
  const opts: TrainOptions = { data: [data], out, layers: 1, width: 16, context: 16, batch: 2, steps: 1, valFraction: 0 };
  await train(opts, gemm, quiet);
  const before = fs.readFileSync(path.join(out, MODEL_FILE));
  await assert.rejects(train({ ...opts, seed: 7 }, gemm, quiet), (e: Error) => {
    assert.equal(e.name, 'ArgumentError');
    assert.match(e.message, /already holds a training run \(model\.safetensors, train-state\.safetensors, log\.jsonl\).*--resume.*--overwrite/);
    return true;
  });
  assert.deepEqual(fs.readFileSync(path.join(out, MODEL_FILE)), before, 'the refused run must not touch the old one');
  await assert.rejects(train({ ...opts, resume: true, overwrite: true }, gemm, quiet), /contradict/);
  await train({ ...opts, seed: 7, overwrite: true }, gemm, quiet);
  assert.notDeepEqual(fs.readFileSync(path.join(out, MODEL_FILE)), before, '--overwrite starts afresh');
});

test('one training step in parallel mode, then inference in RNN mode with the new weights: the same logits', async (t) => {
  const dir = tempDir('train-rnn');
  const data = writeText(dir, 'text.txt', syntheticText(4000, 3));
  const out = path.join(dir, 'run');
  const r = await train({ data: [data], out, layers: 2, width: 24, context: 32, batch: 4, steps: 1, lr: 1e-3, valFraction: 0 }, gemm, quiet);
  const ids = Array.from(Buffer.from(syntheticText(40, 9)));
  const parallel = r.model.logits(Int32Array.from(ids), 1, ids.length);
  const check = async (modelPath: string, what: string): Promise<void> => {
    const model = await loadModel(modelPath); // reference kernels, RNN mode
    const state = model.createState();
    let worst = 0;
    let scale = 0;
    for (const [p, id] of ids.entries()) {
      const logits = await model.forward(id, state);
      for (let j = 0; j < logits.length; j++) {
        worst = Math.max(worst, Math.abs(logits[j]! - parallel[p * 256 + j]!));
        scale = Math.max(scale, Math.abs(logits[j]!));
      }
    }
    console.log(`# ${what}: RNN vs training-graph logits differ by ≤ ${worst.toExponential(2)} (largest logit ${scale.toFixed(3)})`);
    assert.ok(worst <= 1e-4 * Math.max(1, scale), `${what}: ${worst}`);
  };
  await check(path.join(out, MODEL_FILE), 'model.safetensors');
  // rwkv convert's path to the .pth that ChatRWKV / RWKV-LM load, read back.
  const pth = path.join(dir, 'model.pth');
  writeCheckpoint(await openCheckpoint(path.join(out, MODEL_FILE)), pth);
  await check(pth, '.pth');

  // Fine-tuning a real trained model (--init, from an rwkv.cpp file): one step, then the same check.
  const fx = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (fx === undefined) return;
  const ft = await train({ data: [data], out: path.join(dir, 'ft'), init: fx, context: 32, batch: 2, steps: 1, lr: 1e-4, valFraction: 0 }, gemm, quiet);
  const ftParallel = ft.model.logits(Int32Array.from(ids), 1, ids.length);
  const before = await loadModel(fx);
  const ftModel = await loadModel(path.join(dir, 'ft', MODEL_FILE));
  const stBefore = before.createState();
  const st = ftModel.createState();
  let changed = 0;
  let worst = 0;
  for (const [p, id] of ids.entries()) {
    const l0 = await before.forward(id, stBefore);
    const l = await ftModel.forward(id, st);
    for (let j = 0; j < 256; j++) {
      changed = Math.max(changed, Math.abs(l[j]! - l0[j]!));
      worst = Math.max(worst, Math.abs(l[j]! - ftParallel[p * 256 + j]!));
    }
  }
  assert.ok(changed > 1e-4, 'one step changed the fine-tuned model');
  console.log(`# fine-tuned 4v0-660K: RNN vs training-graph logits differ by ≤ ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-4, `fine-tuned: ${worst}`);
});

test('the fine-tune starts where the checkpoint is: its loss before any update equals inference', async (t) => {
  const fx = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  const input = fixture(t, 'input-1024.txt');
  if (fx === undefined || input === undefined) return;
  const dir = tempDir('train-init');
  const r = await train({ data: [input], out: dir, init: fx, context: 64, batch: 2, steps: 1, lr: 1e-9, valFraction: 0 }, gemm, quiet);
  const bytes = fs.readFileSync(input).subarray(0, 65);
  const lossTrain = r.model.forward(Int32Array.from(bytes.subarray(0, 64)), Int32Array.from(bytes.subarray(1)), 1, 64);
  const model = await loadModel(fx);
  const st = model.createState();
  let lossRnn = 0;
  for (let p = 0; p < 64; p++) {
    const l = await model.forward(bytes[p]!, st);
    let max = -Infinity;
    for (const v of l) max = Math.max(max, v);
    let z = 0;
    for (const v of l) z += Math.exp(v - max);
    lossRnn += Math.log(z) + max - l[bytes[p + 1]!]!;
  }
  lossRnn /= 64;
  assert.ok(Math.abs(lossTrain - lossRnn) < 1e-3, `training graph ${lossTrain}, RNN mode ${lossRnn}`);
});

test('rwkv train and rwkv plot (the CLI modules): a run on Tiny Shakespeare lowers the loss; the log plots', async (t) => {
  const dir = tempDir('train-cli');
  const data = shakespeare(t, dir, 30000);
  if (data === undefined) return;
  const out = path.join(dir, 'run');
  const r = await runTrain({ data: [data], out, layers: 1, width: 32, context: 32, batch: 4, steps: 30, lr: 3e-3, evalEvery: 10, threads: 1, progress: false });
  assert.ok(r.losses.at(-1)! < r.losses[0]! - 1, `loss ${r.losses[0]} → ${r.losses.at(-1)}`);
  for (const f of [MODEL_FILE, STATE_FILE, LOG_FILE, 'tokens.bin']) assert.ok(fs.existsSync(path.join(out, f)), f);
  const svg = path.join(dir, 'loss.svg');
  const res = runPlot({ logs: [out], out: svg });
  assert.equal(res.points, 33); // 30 steps + 3 evaluations
  const text = fs.readFileSync(svg, 'utf8');
  assert.ok(text.startsWith('<svg') && text.includes('</svg>') && (text.match(/<path /g) ?? []).length >= 2);
  const html = path.join(dir, 'loss.html');
  runPlot({ logs: [path.join(out, LOG_FILE), out], out: html, title: 'two runs' });
  assert.ok(fs.readFileSync(html, 'utf8').includes('<title>two runs</title>'));
});

test('the World tokenizer: a token file of World ids and a training step on them', async (t) => {
  const vocab = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  if (vocab === undefined) return;
  const dir = tempDir('train-world');
  const data = writeText(dir, 'text.txt', `${syntheticText(3000, 5)} 你好，世界。`);
  const r = await train({ data: [data], out: path.join(dir, 'run'), tokenizer: vocab, layers: 1, width: 16, context: 16, batch: 2, steps: 2, valFraction: 0 }, gemm, quiet);
  assert.equal(r.model.shape.nVocab, 65536);
  assert.ok(r.losses.every(Number.isFinite));
  const tf = readTokenFile(path.join(dir, 'run', 'tokens.bin'));
  assert.equal(tf.header.dtype, 'u16');
  assert.equal(tf.header.tokenizer, path.resolve(vocab));
  assert.ok(tf.tokens.length < 1500, 'World ids are words, not bytes');
});

test('--init reads any supported format: the .pth and rwkv.cpp copies of a model give the same weights', async (t) => {
  const bin = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  const pth = fixture(t, 'converted/tiny-rwkv-4v0-660K-FP32.pth');
  if (bin === undefined || pth === undefined) return;
  const a = await readInitWeights(bin);
  const b = await readInitWeights(pth);
  assert.deepEqual(a.shape, b.shape);
  for (const [name, v] of a.values) {
    const w = b.values.get(name)!;
    let d = 0;
    for (let i = 0; i < v.length; i++) d = Math.max(d, Math.abs(v[i]! - w[i]!));
    // time_decay goes through −exp and log between the encodings.
    assert.ok(d <= (name.endsWith('time_decay') ? 1e-5 : 0), `${name}: ${d}`);
  }
});
