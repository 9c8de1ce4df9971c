// The one forward path in its three uses, for every version and both backends: T tokens at once
// (parallel mode) equals T single-token passes (RNN mode) at every position of input-1024.txt, a prompt
// read in slices of any length equals it read at once, and B sequences run in one batched pass equal
// each run alone.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { loadModel } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import type { State } from '../src/models/state.js';
import { testBackend } from './helpers/backend.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';

const BACKENDS = [
  { name: 'WebAssembly', backend: await testBackend() },
  { name: 'reference', backend: new ReferenceBackend() },
];

const LOGITS_TOLERANCE = 1e-4;
/** Final states agree within this fraction of the state's largest magnitude. */
const STATE_TOLERANCE = 1e-4;
/** A sequence in a batch against the same sequence alone (the bound). */
const BATCH_TOLERANCE = 1e-5;
const MODELS = ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K'];

async function rnn(model: RwkvModel, ids: readonly number[], state: State): Promise<Float32Array> {
  const v = model.config.nVocab;
  const all = new Float32Array(ids.length * v);
  for (let i = 0; i < ids.length; i++) all.set(await model.forward(ids[i]!, state), i * v);
  return all;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

function input(t: Parameters<typeof fixture>[0]): number[] | undefined {
  const p = fixture(t, 'input-1024.txt');
  return p === undefined ? undefined : Array.from(fs.readFileSync(p));
}

for (const m of MODELS) {
  for (const { name, backend } of BACKENDS) {
    test(`${m}, ${name}: parallel mode equals RNN mode over input-1024.txt, read at once or in slices of 1, 7, 64`, async (t) => {
      const modelPath = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
      const ids = input(t);
      if (modelPath === undefined || ids === undefined) return;
      const model = await loadModel(modelPath, { backend });
      const rnnState = model.createState();
      const reference = await rnn(model, ids, rnnState);
      const scale = maxAbs(rnnState.data);
      const v = model.config.nVocab;
      for (const slice of [ids.length, 64, 7, 1]) {
        if (slice === 1 && name === 'reference') continue; // the RNN reference above is exactly this
        const state = model.createState();
        const logits = new Float32Array(ids.length * v);
        for (let at = 0; at < ids.length; at += slice) {
          const part = ids.slice(at, at + slice);
          logits.set(await model.forwardSequence(part, state, { allLogits: true }), at * v);
        }
        const d = maxAbsDiff(logits, reference);
        assert.ok(d <= LOGITS_TOLERANCE, `slices of ${slice}: logits differ by ${d}`);
        const ds = maxAbsDiff(state.data, rnnState.data);
        assert.ok(ds <= STATE_TOLERANCE * scale, `slices of ${slice}: states differ by ${ds} (largest magnitude ${scale})`);
      }
    });
  }

  test(`${m}: sequences of different lengths in one batched pass equal each run alone (≤ ${BATCH_TOLERANCE})`, async (t) => {
    const modelPath = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
    const ids = input(t);
    if (modelPath === undefined || ids === undefined) return;
    const model = await loadModel(modelPath, { backend: BACKENDS[0]!.backend });
    const v = model.config.nVocab;
    // Each sequence first reads its own prefix, so the batch starts from four different states.
    const starts = [0, 100, 300, 301];
    const lengths = [1, 37, 5, 64];
    const wanted = ['last', 'all', 'none', 'all'] as const;
    const prefixes = [3, 20, 1, 9];
    const alone: Float32Array[] = [];
    const aloneStates: State[] = [];
    const batchStates: State[] = [];
    for (let i = 0; i < starts.length; i++) {
      const prefix = ids.slice(starts[i]! + 500, starts[i]! + 500 + prefixes[i]!);
      const a = model.createState();
      await model.forwardSequence(prefix, a);
      batchStates.push(a.clone());
      const tokens = ids.slice(starts[i]!, starts[i]! + lengths[i]!);
      const logits = await model.forwardSequence(tokens, a, { allLogits: true });
      alone.push(wanted[i] === 'all' ? logits : wanted[i] === 'last' ? logits.slice(-v) : new Float32Array(0));
      aloneStates.push(a);
    }
    const batched = await model.run(
      starts.map((s, i) => ({ tokens: ids.slice(s, s + lengths[i]!), state: batchStates[i]!, logits: wanted[i] })),
    );
    for (let i = 0; i < starts.length; i++) {
      assert.equal(batched[i]!.length, alone[i]!.length, `sequence ${i}: number of logits`);
      const d = maxAbsDiff(batched[i]!, alone[i]!);
      assert.ok(d <= BATCH_TOLERANCE, `sequence ${i}: logits differ by ${d}`);
      const ds = maxAbsDiff(batchStates[i]!.data, aloneStates[i]!.data);
      assert.ok(ds <= BATCH_TOLERANCE * Math.max(1, maxAbs(aloneStates[i]!.data)), `sequence ${i}: states differ by ${ds}`);
    }
  });
}

test('a pass refuses an empty sequence, out-of-vocabulary ids, a foreign state and a state used twice', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  const otherPath = fixture(t, 'tiny-rwkv-5v2-730K-FP32.bin');
  if (modelPath === undefined || otherPath === undefined) return;
  const model = await loadModel(modelPath, { backend: BACKENDS[0]!.backend });
  const other = await loadModel(otherPath);
  await assert.rejects(model.forwardSequence([], model.createState()), /at least one token/);
  await assert.rejects(model.forwardSequence([1, 256], model.createState()), /outside the vocabulary/);
  await assert.rejects(model.forwardSequence([1.5], model.createState()), /outside the vocabulary/);
  await assert.rejects(model.forward(1, other.createState()), /state has/);
  const s = model.createState();
  await assert.rejects(model.run([{ tokens: [1], state: s }, { tokens: [2], state: s }]), /share a state/);
  await assert.rejects(model.run([]), /at least one sequence/);
});

test('logits to a sink: every position in order, bit-equal to the returned rows, beside sequences wanting last, all and none; the Batcher offsets split requests', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const { Batcher } = await import('../src/generation/batcher.js');
  const model = await loadModel(modelPath, { backend: BACKENDS[0]!.backend });
  const v = model.config.nVocab;
  // 9 + 3 + 12 + 5 rows: head groups of 8 mix sink rows with returned ones, and straddle sequences.
  const seqs = [
    Array.from({ length: 9 }, (_, i) => (i * 37 + 1) % v),
    [5, 6, 7],
    Array.from({ length: 12 }, (_, i) => (i * 11 + 3) % v),
    [9, 8, 7, 6, 5],
  ];
  const want = await model.run(seqs.map((tokens) => ({ tokens, state: model.createState(), logits: 'all' as const })));
  const got: { position: number; row: Float32Array }[][] = [[], []];
  const out = await model.run([
    { tokens: seqs[0]!, state: model.createState(), logits: (position, row) => got[0]!.push({ position, row: row.slice() }) },
    { tokens: seqs[1]!, state: model.createState(), logits: 'last' },
    { tokens: seqs[2]!, state: model.createState(), logits: (position, row) => got[1]!.push({ position, row: row.slice() }) },
    { tokens: seqs[3]!, state: model.createState(), logits: 'none' },
  ]);
  for (const [k, s] of [
    [0, 0],
    [1, 2],
  ] as const) {
    assert.deepEqual(
      got[k]!.map((g) => g.position),
      seqs[s]!.map((_, i) => i),
      `sequence ${s}: positions`,
    );
    got[k]!.forEach((g, i) => assert.deepEqual(g.row, want[s]!.subarray(i * v, (i + 1) * v), `sequence ${s}, position ${i}`));
  }
  assert.equal(out[0]!.length, 0, 'a sink sequence returns no logits');
  // Alone, 9 rows: the last head group is one sink row.
  // (Another pass shape takes other kernels: equal to the batch within the batching bound, not bit for bit.)
  const alone: number[] = [];
  let aloneDiff = 0;
  await model.run([
    {
      tokens: seqs[0]!,
      state: model.createState(),
      logits: (position, row) => {
        alone.push(position);
        aloneDiff = Math.max(aloneDiff, maxAbsDiff(row, want[0]!.subarray(position * v, (position + 1) * v)));
      },
    },
  ]);
  assert.deepEqual(alone, seqs[0]!.map((_, i) => i), 'a sequence alone, its last group one row: positions');
  assert.ok(aloneDiff <= BATCH_TOLERANCE, `a sequence alone against the batch: ${aloneDiff}`);
  assert.deepEqual(out[1], want[1]!.subarray(2 * v, 3 * v), 'last');
  assert.equal(out[3]!.length, 0, 'none');
  // Through a Batcher of 4 rows a pass: the 12-token request goes in 3 pieces, positions count on.
  const batcher = new Batcher(model, { maxRows: 4 });
  const positions: number[] = [];
  let maxDiff = 0;
  await batcher.forward(seqs[2]!, model.createState(), (position, row) => {
    positions.push(position);
    maxDiff = Math.max(maxDiff, maxAbsDiff(row, want[2]!.subarray(position * v, (position + 1) * v)));
  });
  assert.deepEqual(positions, seqs[2]!.map((_, i) => i));
  assert.ok(maxDiff <= LOGITS_TOLERANCE, `pieces against one pass: ${maxDiff}`);
});
