// RWKV-7 through the trainer's registry and the CLI: `rwkv train --arch rwkv7` trains, resumes exactly and
// writes a model inference loads with the training graph's logits; `rwkv train --state-tune` writes a state
// file that the engine loads and that lowers the loss of the text it was tuned on.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { Rwkv } from '../src/generation/rwkv.js';
import { loadModel } from '../src/models/load.js';
import { MODEL_FILE } from '../src/training/checkpoint.js';
import { WasmGemm } from '../src/training/gemm.js';
import { readRwkv7Weights, Rwkv7Train } from '../src/training/rwkv7.js';
import { train, type TrainOptions } from '../src/training/train.js';
import { testBackend } from './helpers/backend.js';
import { wordsText } from './helpers/data.js';
import { fixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);
const CLI = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'cli', 'main.js');

function cli(...args: string[]): { status: number | null; stderr: string } {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
}

const text = (bytes: number): string => wordsText(bytes, ['state', 'of', 'the', 'union', 'is', 'strong', 'and', 'we', 'will', 'carry', 'on', 'together']).slice(0, bytes);

const base: Omit<TrainOptions, 'out'> = { arch: 'rwkv7', layers: 2, width: 32, context: 16, batch: 2, steps: 8, lr: 3e-3, evalEvery: 4, evalBatches: 2, threads: 1 } as Omit<TrainOptions, 'out'>;

test('train --arch rwkv7: the loss falls, a stopped run resumes to the same weights, the model file gives the trainer\'s logits', async () => {
  const dir = tempDir('v7-train');
  const data = path.join(dir, 'data.txt');
  fs.writeFileSync(data, text(6000));
  const full = await train({ ...base, data: [data], out: path.join(dir, 'full') }, gemm);
  assert.ok(full.losses.at(-1)! < full.losses[0]!, `loss ${full.losses[0]} → ${full.losses.at(-1)}`);
  // Stop after 3 steps, then resume.
  let n = 0;
  await train({ ...base, data: [data], out: path.join(dir, 'split') }, gemm, { shouldStop: () => ++n >= 3 });
  const resumed = await train({ out: path.join(dir, 'split'), resume: true } as TrainOptions, gemm);
  assert.deepEqual(resumed.losses.slice(-5), full.losses.slice(-5));
  const a = await readRwkv7Weights(path.join(dir, 'full', MODEL_FILE));
  const b = await readRwkv7Weights(path.join(dir, 'split', MODEL_FILE));
  for (const [name, v] of a.values) assert.deepEqual(b.values.get(name), v, name);
  // Inference (RNN mode) on the saved file against the training graph on the same weights.
  const model = new Rwkv7Train(a.shape, gemm);
  for (const p of model.params) p.data.set(a.values.get(p.name)!);
  const ids = Int32Array.from([10, 32, 101, 116, 115, 33, 9, 200]);
  const want = model.logits(ids, 1, ids.length);
  const engine = await loadModel(path.join(dir, 'full', MODEL_FILE), { backend: await testBackend() });
  const state = engine.createState();
  let worst = 0;
  for (let i = 0; i < ids.length; i++) {
    const got = await engine.forward(ids[i]!, state);
    for (let j = 0; j < 256; j++) worst = Math.max(worst, Math.abs(got[j]! - want[i * 256 + j]!));
  }
  assert.ok(worst <= 1e-4, `inference vs trainer: ${worst}`);
});

test('rwkv train --state-tune (the CLI): state.bin loads in the engine and lowers the loss of its tuning text', async (t) => {
  const init = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  if (init === undefined) return;
  const dir = tempDir('v7-state-cli');
  const data = path.join(dir, 'docs.txt');
  const doc = 'rwkv says: the state carries what came before.\n';
  fs.writeFileSync(data, doc.repeat(60));
  const out = path.join(dir, 'run');
  const run = cli('train', '--state-tune', '--init', init, '--data', data, '--out', out, '--separator', '\n', '--context', '24', '--batch', '4', '--steps', '20', '--val-fraction', '0.1', '--threads', '1', '--no-progress');
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /from a zero state: tuning data [\d.]+.*tuned state: [\d.]+/s);
  const file = path.join(out, 'state.bin');
  assert.ok(fs.existsSync(file));
  // The engine loads it (a wrong model would be refused: training-state-tune.test.ts) …
  const rwkv = await Rwkv.load(init, { backend: await testBackend(), tokenizer: 'bytes' });
  await rwkv.loadState(file);
  await rwkv.close();
  // … and the run measured both states on its own tuning and held-out windows.
  const lines = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type?: string; fresh?: { train: number }; tuned?: { train: number } });
  const result = lines.find((l) => l.type === 'result');
  assert.ok(result?.fresh !== undefined && result.tuned !== undefined, 'log.jsonl has the result line');
  t.diagnostic(`tuning windows: fresh ${result.fresh.train.toFixed(4)}, tuned ${result.tuned.train.toFixed(4)} nats/token`);
  assert.ok(result.tuned.train < result.fresh.train - 0.01, `tuned ${result.tuned.train} vs fresh ${result.fresh.train}`);
  // Options that would change the model are refused by name.
  const refused = cli('train', '--state-tune', '--init', init, '--data', data, '--out', out + '2', '--layers', '3');
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /--layers do not apply/);
});
