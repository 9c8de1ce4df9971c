// Shared by the test/formats-*.test.ts files: the fixture models, logits after `"in`, a temporary
// directory, and the typed-error assertion.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RwkvError, type RwkvErrorCode } from '../../src/errors.js';
import type { RwkvModel } from '../../src/models/model.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { PROMPT_IN } from './fixtures.js';

export const MODELS = ['4v0-660K', '5v1-730K', '5v2-730K', '6v0-1m', '7v0-834K'] as const;
export type FixtureModel = (typeof MODELS)[number];

/** Models llama.cpp's GGUF can hold (rwkv6, rwkv7). */
export const GGUF_MODELS = ['6v0-1m', '7v0-834K'] as const;

export const fp32 = (m: string): string => `tiny-rwkv-${m}-FP32.bin`;

/** The 256 logits after `"in` from a fresh state. */
export async function logitsAfterIn(model: RwkvModel): Promise<Float32Array> {
  const state = model.createState();
  let logits: Float32Array | undefined;
  for (const token of PROMPT_IN) logits = await model.forward(token, state);
  return logits!;
}

/** A fresh temporary directory, removed when the process exits. */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rwkv-ts-${label}-`));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `fn` must throw (synchronously) an RwkvError with `code` whose message contains each of `mentions`. */
export function expectRwkvError(fn: () => unknown, code: RwkvErrorCode, mentions: readonly string[] = []): RwkvError {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown !== undefined, `expected ${code}, but nothing was thrown`);
  assert.ok(thrown instanceof RwkvError, `expected an RwkvError (${code}), got ${String(thrown)}`);
  assert.equal(thrown.code, code, thrown.message);
  for (const m of mentions) assert.ok(thrown.message.includes(m), `message lacks "${m}": ${thrown.message}`);
  return thrown;
}

/** `fn` must reject (or throw) an RwkvError with `code` whose message contains each of `mentions`. */
export async function expectRwkvRejection(
  fn: () => Promise<unknown>,
  code: RwkvErrorCode,
  mentions: readonly string[] = [],
): Promise<RwkvError> {
  let thrown: unknown;
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  return expectRwkvError(() => {
    if (thrown !== undefined) throw thrown;
  }, code, mentions);
}

/** Tensors equal in name order, shape, dtype and bytes. */
export function assertSameTensors(a: ReadonlyMap<string, Tensor>, b: ReadonlyMap<string, Tensor>, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()], `${what}: tensor names or order differ`);
  for (const [name, t] of a) {
    const u = b.get(name)!;
    assert.deepEqual(u.shape, t.shape, `${what}: shape of ${name}`);
    assert.equal(u.dtype, t.dtype, `${what}: dtype of ${name}`);
    assert.ok(Buffer.from(u.data).equals(Buffer.from(t.data)), `${what}: bytes of ${name}`);
  }
}
