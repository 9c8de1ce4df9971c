// Growing a trained model deeper (`rwkv train --init M --layers N`, grow.ts): the old blocks spread over the
// new depth, fresh blocks between them add exactly nothing, so the grown model's first training loss equals
// the old model's on the same batch bit for bit, and training then moves the new blocks.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ArgumentError } from '../src/errors.js';
import { openCheckpoint } from '../src/formats/open.js';
import { MODEL_FILE } from '../src/training/checkpoint.js';
import { WasmGemm } from '../src/training/gemm.js';
import { grownPosition } from '../src/training/grow.js';
import { train } from '../src/training/train.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);

test('grownPosition spreads the old blocks evenly and keeps block 0 first', () => {
  assert.deepEqual([0, 1, 2, 3].map((k) => grownPosition(k, 4, 8)), [0, 2, 4, 6]);
  assert.deepEqual([0, 1, 2, 3].map((k) => grownPosition(k, 4, 6)), [0, 1, 3, 4]);
  assert.deepEqual([0, 1].map((k) => grownPosition(k, 2, 3)), [0, 1]);
});

for (const name of ['tiny-rwkv-4v0-660K-FP32.bin', 'tiny-rwkv-7v0-834K-FP32.bin']) {
  test(`growing ${name} deeper: the same first loss, bit for bit, and the old blocks at their new places`, async (t) => {
    const src = fixture(t, name);
    if (src === undefined) return;
    const dir = tempDir('grow');
    const data = path.join(dir, 'text.txt');
    fs.writeFileSync(data, 'a grown model starts where the old one stopped, and learns with more room. '.repeat(30));
    const common = { data: [data], init: src, steps: 3, batch: 2, context: 32, lr: 1e-3, valFraction: 0, seed: 7 };
    const base = await train({ ...common, out: path.join(dir, 'base'), steps: 1 }, gemm);
    const from = (await openCheckpoint(src)).tensors;
    const layers = Math.max(...[...from.keys()].map((k) => Number(/^blocks\.(\d+)\./.exec(k)?.[1] ?? 0))) + 1;
    const to = layers + 2;
    const notes: string[] = [];
    const grown = await train({ ...common, out: path.join(dir, 'grown'), layers: to }, gemm, { onNote: (n) => notes.push(n) });
    assert.equal(grown.losses[0], base.losses[0], 'the fresh blocks add nothing');
    assert.match(notes.join('\n'), new RegExp(`from ${layers} to ${to} layers`));
    assert.ok(grown.losses[2]! < grown.losses[0]!, `training moves on: ${grown.losses.join(', ')}`);
    const saved = (await openCheckpoint(path.join(grown.dir, MODEL_FILE))).tensors;
    assert.ok(saved.has(`blocks.${to - 1}.ln1.weight`) && !saved.has(`blocks.${to}.ln1.weight`), 'the grown depth');
    // A per-channel vector the 3 steps barely move: old block k's is (near) where grownPosition put it.
    const leaf = name.includes('4v0') ? 'att.time_first' : 'att.k_k';
    const k = layers - 1;
    const old = from.get(`blocks.${k}.${leaf}`)!;
    const oldValues = old.dtype === 'f32' ? new Float32Array(old.data.buffer, old.data.byteOffset, old.data.byteLength / 4) : undefined;
    const moved = saved.get(`blocks.${grownPosition(k, layers, to)}.${leaf}`)!;
    const movedValues = new Float32Array(moved.data.buffer, moved.data.byteOffset, moved.data.byteLength / 4);
    assert.ok(oldValues !== undefined);
    let worst = 0;
    for (let i = 0; i < oldValues.length; i++) worst = Math.max(worst, Math.abs(oldValues[i]! - movedValues[i]!));
    assert.ok(worst < 0.01, `blocks.${k}.${leaf} moved by ${worst}`);
  });
}

test('growing is refused for a LoRA run and for fewer layers (a clear error)', async (t) => {
  const src = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (src === undefined) return;
  const dir = tempDir('grow-bad');
  const data = path.join(dir, 'text.txt');
  fs.writeFileSync(data, 'some text to train on. '.repeat(40));
  await assert.rejects(train({ data: [data], init: src, out: path.join(dir, 'a'), layers: 1, steps: 1 }, gemm), (e: unknown) => e instanceof ArgumentError && /--layers 1 contradicts/.test(e.message));
  await assert.rejects(train({ data: [data], init: src, out: path.join(dir, 'b'), layers: 9, loraRank: 2, steps: 1 }, gemm), (e: unknown) => e instanceof ArgumentError && /--layers 9/.test(e.message));
});
