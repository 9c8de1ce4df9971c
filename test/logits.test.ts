// Every fixture model, in every stored format, against the official-semantics float64 logits after `"in`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { exactTestBackend } from './helpers/backend.js';
import { fixture, maxAbsDiff, PROMPT_IN, readF32 } from './helpers/fixtures.js';

const TOLERANCE = 1e-4;

const MODELS = ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K'] as const;
const CASES: { model: string; file: string; expected: string }[] = [];
for (const m of MODELS) {
  CASES.push({ model: m, file: `tiny-rwkv-${m}-FP32.bin`, expected: `expected-logits-official-${m}.bin` });
  for (const fmt of ['FP16', 'Q5_0', 'Q5_1']) {
    CASES.push({ model: m, file: `tiny-rwkv-${m}-${fmt}.bin`, expected: `expected-logits-official-${m}-${fmt}.bin` });
  }
  for (const fmt of ['Q4_0', 'Q4_1', 'Q8_0']) {
    CASES.push({
      model: m,
      file: `quantized/tiny-rwkv-${m}-FP32-to-${fmt}.bin`,
      expected: `expected-logits-official-${m}-${fmt}.bin`,
    });
  }
}
for (const fmt of ['Q5_0', 'Q5_1']) {
  CASES.push({ model: '6v0-3m', file: `tiny-rwkv-6v0-3m-${fmt}.bin`, expected: `expected-logits-official-6v0-3m-${fmt}.bin` });
}

// The expected logits are computed on each file's exactly dequantized weights: quantized weights times exact
// activations (the default quantizes activations as ggml does; test/activation-quant.test.ts covers that).
const backend = await exactTestBackend();

for (const c of CASES) for (const kernels of ['wasm', 'reference'] as const) {
  test(`${c.file} (${kernels} kernels): logits after "in within ${TOLERANCE} of ${c.expected}`, async (t) => {
    const modelPath = fixture(t, c.file);
    const expectedPath = fixture(t, c.expected);
    if (modelPath === undefined || expectedPath === undefined) return;
    const model = await loadModel(modelPath, { backend: kernels === 'wasm' ? backend : new ReferenceBackend({ exactActivations: true }) });
    const state = model.createState();
    let logits: Float32Array | undefined;
    for (const token of PROMPT_IN) logits = await model.forward(token, state);
    const diff = maxAbsDiff(logits!, readF32(expectedPath));
    assert.ok(diff <= TOLERANCE, `max abs difference ${diff} > ${TOLERANCE}`);
  });
}
