// Long inputs and state round-trips for every version: 1024 bytes of English stay finite at every position,
// and serialising the state to bytes and back at any point changes nothing, bit for bit.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { StateError } from '../src/errors.js';
import { loadModel } from '../src/models/load.js';
import { testBackend } from './helpers/backend.js';
import { State } from '../src/models/state.js';
import { fixture } from './helpers/fixtures.js';

// The default (fast) path: WebAssembly kernels.
const backend = await testBackend();

const MODELS = ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K'];

for (const m of MODELS) {
  test(`${m}: input-1024.txt gives finite logits everywhere, and a state round-trip at every position is exact`, async (t) => {
    const modelPath = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
    const inputPath = fixture(t, 'input-1024.txt');
    if (modelPath === undefined || inputPath === undefined) return;
    const model = await loadModel(modelPath, { backend });
    const ids = Array.from(fs.readFileSync(inputPath));
    assert.equal(ids.length, 1024);
    const vocab = model.config.nVocab;

    // One uninterrupted pass.
    const reference = new Float32Array(ids.length * vocab);
    const state = model.createState();
    for (let i = 0; i < ids.length; i++) reference.set(await model.forward(ids[i]!, state), i * vocab);
    for (let i = 0; i < reference.length; i++) {
      assert.ok(Number.isFinite(reference[i]!), `non-finite logit at position ${Math.floor(i / vocab)}`);
    }

    // The same pass, with the state written to bytes and read back into a new State before every token.
    let s = model.createState();
    for (let i = 0; i < ids.length; i++) {
      s = State.fromBytes(model.config, s.toBytes());
      const logits = await model.forward(ids[i]!, s);
      for (let j = 0; j < vocab; j++) {
        if (logits[j] !== reference[i * vocab + j]) assert.fail(`position ${i}, logit ${j}: ${logits[j]} ≠ ${reference[i * vocab + j]}`);
      }
    }
    assert.deepEqual(s.data, state.data);
  });
}

test('a cloned state continues independently of the original', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const model = await loadModel(modelPath, { backend });
  const a = model.createState();
  await model.forward(65, a);
  const b = a.clone();
  const la = await model.forward(66, a);
  const lb = await model.forward(66, b);
  assert.deepEqual(la, lb);
  await model.forward(67, a);
  assert.notDeepEqual(a.data, b.data);
});

test('a fresh v4 state has pp = -1e30 and zeros elsewhere (rwkv.cpp layout [ffn_x, att_x, aa, bb, pp])', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const model = await loadModel(modelPath, { backend });
  const s = model.createState();
  const c = model.config.nEmbd;
  assert.equal(s.data.length, model.config.nLayer * 5 * c);
  for (let l = 0; l < model.config.nLayer; l++) {
    const layer = s.layer(l);
    for (let i = 0; i < 4 * c; i++) assert.equal(layer[i], 0);
    for (let i = 4 * c; i < 5 * c; i++) assert.equal(layer[i], Math.fround(-1e30));
  }
});

test('State.fromBytes refuses a state of the wrong size or with NaN', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const model = await loadModel(modelPath, { backend });
  const bytes = model.createState().toBytes();
  assert.throws(() => State.fromBytes(model.config, bytes.subarray(4)), StateError);
  const bad = bytes.slice();
  new DataView(bad.buffer).setFloat32(8, NaN, true);
  assert.throws(() => State.fromBytes(model.config, bad), StateError);
});
