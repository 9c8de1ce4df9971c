// Parallel ("transformer") mode against RNN mode, for every version: the same logits at every position
// of input-1024.txt, the same final state, whatever the chunk length, and a prompt run in parallel then
// continued in RNN mode equals RNN mode all the way.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { testBackend } from './helpers/backend.js';
import type { RwkvModel } from '../src/models/model.js';
import type { State } from '../src/models/state.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';

// The default (fast) path — WebAssembly kernels, whose WKV steps the one-token recurrence along the
// sequence — and the TypeScript path, whose v5/v6/v7 WKV is the chunked form (so every chunk length).
const PATHS = [
  { path: 'WebAssembly', backend: await testBackend(), chunks: [1, 16, 1024] },
  { path: 'TypeScript', backend: undefined, chunks: [1, 7, 16, 64, 1024] },
];
const backend = PATHS[0]!.backend;

const LOGITS_TOLERANCE = 1e-4;
/** Final states agree within this fraction of the state's largest magnitude. */
const STATE_TOLERANCE = 1e-4;
const MODELS = ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K'];

function rnn(model: RwkvModel, ids: readonly number[], state: State): Float32Array {
  const v = model.config.nVocab;
  const all = new Float32Array(ids.length * v);
  for (let i = 0; i < ids.length; i++) all.set(model.forward(ids[i]!, state), i * v);
  return all;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

for (const m of MODELS) {
  for (const { path, backend, chunks } of PATHS) {
    test(`${m}, ${path}: parallel mode equals RNN mode over input-1024.txt for chunk lengths ${chunks.join(', ')}`, (t) => {
      const modelPath = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
      const inputPath = fixture(t, 'input-1024.txt');
      if (modelPath === undefined || inputPath === undefined) return;
      const model = loadModel(modelPath, { backend });
      const ids = Array.from(fs.readFileSync(inputPath));
      const rnnState = model.createState();
      const reference = rnn(model, ids, rnnState);
      const scale = maxAbs(rnnState.data);
      for (const chunk of chunks) {
        const state = model.createState();
        const logits = model.forwardSequence(ids, state, { allLogits: true, chunk });
        const d = maxAbsDiff(logits, reference);
        assert.ok(d <= LOGITS_TOLERANCE, `chunk ${chunk}: logits differ by ${d}`);
        const ds = maxAbsDiff(state.data, rnnState.data);
        assert.ok(ds <= STATE_TOLERANCE * scale, `chunk ${chunk}: states differ by ${ds} (largest magnitude ${scale})`);
      }
    });
  }

  test(`${m}: a prompt in parallel mode, continued in RNN mode, equals RNN mode all the way`, (t) => {
    const modelPath = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
    const inputPath = fixture(t, 'input-1024.txt');
    if (modelPath === undefined || inputPath === undefined) return;
    const model = loadModel(modelPath, { backend });
    const ids = Array.from(fs.readFileSync(inputPath)).slice(0, 300);
    const split = 211;
    const reference = rnn(model, ids, model.createState());
    const state = model.createState();
    const last = model.forwardSequence(ids.slice(0, split), state, { chunk: 16 });
    const v = model.config.nVocab;
    assert.ok(maxAbsDiff(last, reference.subarray((split - 1) * v, split * v)) <= LOGITS_TOLERANCE, 'last-position logits');
    const rest = rnn(model, ids.slice(split), state);
    const d = maxAbsDiff(rest, reference.subarray(split * v));
    assert.ok(d <= LOGITS_TOLERANCE, `continued logits differ by ${d}`);
  });
}

test('parallel mode refuses an empty sequence, a bad chunk length and out-of-vocabulary ids', (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const model = loadModel(modelPath, { backend });
  assert.throws(() => model.forwardSequence([], model.createState()), /at least one token/);
  assert.throws(() => model.forwardSequence([1, 2], model.createState(), { chunk: 0 }), /chunk length/);
  assert.throws(() => model.forwardSequence([1, 256], model.createState()), /outside the vocabulary/);
});
