// Backend conformance (issue 14, point 2): every operation of every backend against ReferenceBackend on
// random inputs of awkward sizes, with the tolerances stated in test/helpers/conformance.ts; and the
// reference itself against plain float64. A new backend adds one line here and passes before any model
// test. CONFORMANCE_REPORT=1 prints the largest error measured per operation and encoding.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createBackend } from '../src/kernels/create-backend.js';
import { assertClose, conformanceReport, conformanceSuite } from './helpers/conformance.js';
import { referenceOracleSuite } from './helpers/conformance-oracle.js';
import { whenWebGpu } from './helpers/webgpu.js';

test('the comparison itself fails on a value off by 3·tol·(1 + m), on NaN, on Inf, on a length mismatch', () => {
  const want = Float32Array.of(1, -2, 1e-3, 100);
  assertClose('self-check', want.slice(), want, 0);
  for (const [i, v] of [
    [0, 1 + 3e-5 * 2],
    [1, -2 - 3e-5 * 3],
    [2, 1e-3 + 3e-5],
    [3, NaN],
    [3, Infinity],
  ] as const) {
    const got = want.slice();
    got[i] = v;
    assert.throws(() => assertClose('self-check', got, want, 1e-5), assert.AssertionError, `value ${i} = ${v}`);
  }
  assert.throws(() => assertClose('self-check', want.subarray(1), want, 1), assert.AssertionError);
});

referenceOracleSuite();
// The suite's float64 oracle multiplies quantized weights by exact activations: the backends run with
// exactActivations (ggml's 8-bit activations, the default, are checked in activation-quant.test.ts).
conformanceSuite('wasm × 1 thread', () => createBackend({ kind: 'wasm', threads: 1, exactActivations: true }));
conformanceSuite('wasm × 2 threads', () => createBackend({ kind: 'wasm', threads: 2, exactActivations: true }));
// A page that is not cross-origin isolated has no SharedArrayBuffer: one thread over a fixed, unshared memory.
conformanceSuite('wasm, unshared memory (1 thread, no workers)', () => createBackend({ kind: 'wasm', threads: 1, shared: false, memoryBytes: 256 * 2 ** 20, exactActivations: true }));
conformanceSuite('reference (contracts; results against a second instance)', () => createBackend({ kind: 'reference', exactActivations: true }));
// Skips with the reason where no WebGPU adapter exists (fails under CI): Dawn, on SwiftShader without a GPU.
await whenWebGpu('backend conformance: webgpu', () => conformanceSuite('webgpu', () => createBackend({ kind: 'webgpu' })));

if (process.env.CONFORMANCE_REPORT) {
  after(() => {
    console.log(conformanceReport().join('\n'));
  });
}
