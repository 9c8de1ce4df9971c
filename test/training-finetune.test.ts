// Fine-tuning real checkpoints: `rwkv train --init FILE` picks the file's architecture (RWKV-4, RWKV-7), refuses
// versions without a training graph by name, and saves the fine-tune as the --init file was stored (rwkv.cpp
// FP16 / Q5_1, bf16 .pth): the exported file holds exactly what `rwkv convert` / `rwkv quantize` would make of
// the f32 result, and runs within the storage's rounding of it. And a chat fine-tune on .jsonl conversations
// learns the assistant's answers only.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ArgumentError } from '../src/errors.js';
import { writeCheckpoint, type WriteOptions } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { loadModel } from '../src/models/load.js';
import { MODEL_FILE } from '../src/training/checkpoint.js';
import { WasmGemm } from '../src/training/gemm.js';
import { train, type StartInfo } from '../src/training/train.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const gemm = new WasmGemm((await testBackend()).kernels);

function writeText(dir: string): string {
  const p = path.join(dir, 'text.txt');
  fs.writeFileSync(p, 'the state carries what came before into the next step of time. '.repeat(40));
  return p;
}

async function lastLogits(file: string, ids: readonly number[]): Promise<Float32Array> {
  const model = await loadModel(file);
  const state = model.createState();
  let out = new Float32Array(0);
  for (const id of ids) out = Float32Array.from(await model.forward(id, state));
  return out;
}

const CASES: { name: string; bf16Copy?: boolean; arch: string; exported: string; opts: WriteOptions; tol: number }[] = [
  { name: 'tiny-rwkv-4v0-660K-FP16.bin', arch: 'rwkv4', exported: 'model.f16.bin', opts: { format: 'rwkv.cpp', dtype: 'f16' }, tol: 0.05 },
  { name: 'tiny-rwkv-7v0-834K-FP16.bin', arch: 'rwkv7', exported: 'model.f16.bin', opts: { format: 'rwkv.cpp', dtype: 'f16' }, tol: 0.05 },
  { name: 'tiny-rwkv-7v0-834K-Q5_1.bin', arch: 'rwkv7', exported: 'model.q5_1.bin', opts: { format: 'rwkv.cpp', quantize: 'q5_1', dtype: 'f16' }, tol: 0.5 },
  {
    name: 'converted/tiny-rwkv-4v0-660K-FP32.pth',
    // An official bf16 .pth, as RWKV-LM saves them: made from the fixture.
    bf16Copy: true,
    arch: 'rwkv4',
    exported: 'model.bf16.pth',
    opts: { format: 'pth', dtype: 'bf16' },
    tol: 0.1,
  },
];

for (const c of CASES) {
  test(`fine-tuning ${c.name}: its architecture is found, and the result is saved as ${c.exported} as well`, async (t) => {
    const src = fixture(t, c.name);
    if (src === undefined) return;
    const dir = tempDir('finetune');
    let init = src;
    if (c.bf16Copy === true) {
      init = path.join(dir, 'base-bf16.pth');
      writeCheckpoint(await openCheckpoint(src), init, { dtype: 'bf16' });
    }
    let start: StartInfo | undefined;
    const r = await train({ data: [writeText(dir)], out: path.join(dir, 'run'), init, steps: 2, batch: 2, context: 32, lr: 1e-3, valFraction: 0 }, gemm, { onStart: (i) => (start = i) });
    assert.equal(start?.arch, c.arch);
    const exported = path.join(r.dir, c.exported);
    assert.equal(start?.exported, exported);
    assert.ok(fs.existsSync(exported), `${exported} was written`);
    // Exactly what converting the f32 result with the same storage gives.
    const expected = path.join(dir, `expected${path.extname(exported)}`);
    writeCheckpoint(await openCheckpoint(path.join(r.dir, MODEL_FILE)), expected, c.opts);
    const [a, b] = [await openCheckpoint(exported), await openCheckpoint(expected)];
    assert.equal(a.format, b.format);
    for (const [name, tb] of b.tensors) {
      const ta = a.tensors.get(name);
      assert.ok(ta !== undefined, name);
      assert.equal(ta.dtype, tb.dtype, name);
      assert.deepEqual(ta.data, tb.data, name);
    }
    // The init's own storage of its largest matrices.
    const key = 'blocks.0.att.key.weight';
    assert.equal(a.tensors.get(key)!.dtype, (await openCheckpoint(init)).tensors.get(key)!.dtype);
    // A working model, within its storage's rounding of the f32 one.
    const ids = [...Buffer.from('the state carries')];
    const f32 = await lastLogits(path.join(r.dir, MODEL_FILE), ids);
    const stored = await lastLogits(exported, ids);
    let worst = 0;
    for (let i = 0; i < f32.length; i++) worst = Math.max(worst, Math.abs(f32[i]! - stored[i]!));
    console.log(`# ${c.name}: ${c.exported} vs the f32 fine-tune: logits within ${worst.toExponential(2)}`);
    assert.ok(worst < c.tol, `${worst}`);
  });
}

test('fine-tuning an RWKV v6 model: a clear error naming the file and the version', async (t) => {
  const src = fixture(t, 'tiny-rwkv-6v0-1m-FP16.bin');
  if (src === undefined) return;
  const dir = tempDir('finetune-v6');
  await assert.rejects(
    train({ data: [writeText(dir)], out: path.join(dir, 'run'), init: src, steps: 1 }, gemm),
    (e: unknown) => e instanceof ArgumentError && e.message.includes(src) && /RWKV v6 model/.test(e.message) && /RWKV-4, RWKV-7/.test(e.message),
  );
});

test('a chat fine-tune on .jsonl conversations learns the answers only: the loss over them falls near zero', async (t) => {
  const src = fixture(t, 'tiny-rwkv-4v0-660K-FP16.bin');
  if (src === undefined) return;
  const dir = tempDir('finetune-chat');
  const data = path.join(dir, 'chat.jsonl');
  // Random questions (unlearnable), always the same answer: only a masked loss can approach zero.
  const lines: string[] = [];
  for (let i = 0; i < 60; i++) {
    const q = Array.from({ length: 12 }, (_, j) => String.fromCharCode(97 + ((i * 7 + j * 13 + ((i * j) % 5)) % 26))).join('');
    lines.push(JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: 'yes' }] }));
  }
  fs.writeFileSync(data, lines.join('\n') + '\n');
  const r = await train({ data: [data], out: path.join(dir, 'run'), init: src, steps: 40, batch: 4, context: 48, lr: 3e-3, valFraction: 0 }, gemm);
  const first = r.losses[0]!;
  const last = r.losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  console.log(`# chat fine-tune: loss over the answers ${first.toFixed(3)} → ${last.toFixed(3)} in 40 steps`);
  assert.ok(first > 1, `${first}`);
  assert.ok(last < 0.3, `${last}`);
});
