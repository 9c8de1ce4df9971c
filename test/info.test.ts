// `rwkv info`: the LoRA count is the same whatever file holds the model, and --check finds NaN/inf weights.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { describeModel, nonFiniteTensors, summarize } from '../src/models/describe.js';
import { loadModel } from '../src/models/load.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const dir = tempDir('info');
const LORA = 'low-rank (LoRA) matrices';

function rwkv(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// v6: time_maa_w1/w2 and time_decay_w1/w2 per layer (12 layers); v7: w, a, g pairs per layer and the
// value-residual v pair in every layer but the first. v5.2 has none: its per-head time_decay and
// time_faaaa ([H, N] or [H, N, 1]) are parameters, not low-rank factors.
const LORA_COUNTS = [
  { model: '5v2-730K', lora: 0, files: ['tiny-rwkv-5v2-730K-FP32.bin', 'converted/tiny-rwkv-5v2-730K-FP32.safetensors'] },
  {
    model: '6v0-1m',
    lora: 48,
    files: ['tiny-rwkv-6v0-1m-FP32.bin', 'converted/tiny-rwkv-6v0-1m-FP32.safetensors', 'gguf/rwkv6-1m-F32.gguf'],
  },
  {
    model: '7v0-834K',
    lora: 94,
    files: ['tiny-rwkv-7v0-834K-FP32.bin', 'converted/tiny-rwkv-7v0-834K-FP32.safetensors', 'gguf/rwkv7-834k-F32.gguf'],
  },
] as const;

for (const { model, lora, files } of LORA_COUNTS) {
  test(`info: ${model} counts ${lora} LoRA matrices, the same line for .bin, .safetensors${files.length > 2 ? ' and .gguf' : ''}`, async (t) => {
    const lines: string[] = [];
    for (const name of files) {
      const file = fixture(t, name);
      if (file === undefined) return;
      const m = await loadModel(file);
      const s = summarize(m);
      assert.equal(s.groups.find((g) => g.name === LORA)?.tensors ?? 0, lora, name);
      const line = describeModel(m).split('\n').filter((l) => l.includes(LORA));
      lines.push(line.join('\n'));
    }
    for (const l of lines) assert.equal(l, lines[0], `${files.join(' vs ')}`);
  });
}

test('nonFiniteTensors: NaN and ±inf in f32, f16, bf16 and a ggml block scale, by count and first index', () => {
  const bytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const f32 = new Float32Array(10);
  f32[4] = NaN;
  f32[9] = -Infinity;
  const f16 = new Uint16Array([0x3c00, 0x7bff, 0x7c00, 0, 0xfe00]); // 1, 65504 (finite), inf, 0, NaN
  const bf16 = new Uint16Array([0x3f80, 0x7f7f, 0, 0x7fc0]); // 1, the largest finite, 0, NaN
  // Two Q8_0 blocks (34 bytes each: an f16 scale, 32 int8): the second one's scale is inf.
  const q8 = new Uint8Array(68);
  q8.set([0x00, 0x3c], 0);
  q8.set([0x00, 0x7c], 34);
  const tensors = new Map<string, Tensor>([
    ['ok', { name: 'ok', dtype: 'f32', shape: [2, 2], data: bytes(new Float32Array([1, -2, 3e38, -3e38])) }],
    ['a', { name: 'a', dtype: 'f32', shape: [2, 5], data: bytes(f32) }],
    ['b', { name: 'b', dtype: 'f16', shape: [5], data: bytes(f16) }],
    ['c', { name: 'c', dtype: 'bf16', shape: [4], data: bytes(bf16) }],
    ['d', { name: 'd', dtype: 'q8_0', shape: [2, 32], data: q8 }],
  ]);
  assert.deepEqual(nonFiniteTensors(tensors), [
    { name: 'a', count: 2, first: 4 },
    { name: 'b', count: 2, first: 2 },
    { name: 'c', count: 1, first: 3 },
    // inf × q: ±inf for q ≠ 0, NaN for q = 0: every value of the block.
    { name: 'd', count: 32, first: 32 },
  ]);
});

test('info --check: healthy models (f32 .bin, .safetensors, Q5_1) report every tensor finite and exit 0', (t) => {
  for (const [name, n] of [
    ['tiny-rwkv-4v0-660K-FP32.bin', 78],
    ['converted/tiny-rwkv-7v0-834K-FP32.safetensors', 399],
    ['tiny-rwkv-5v1-730K-Q5_1.bin', 246],
  ] as const) {
    const file = fixture(t, name);
    if (file === undefined) return;
    const r = rwkv('info', '--check', '--threads', '1', '--model', file);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`check: +all ${n} tensors finite\\n`), name);
  }
});

test('info --check: a NaN in the embedding and an inf in the head of an f32 model are named with count and first index; exit 1', async (t) => {
  const file = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (file === undefined) return;
  const source = await openCheckpoint(file);
  const view = (name: string): Float32Array => {
    const d = source.tensors.get(name)!.data;
    return new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4);
  };
  const c = source.tensors.get('emb.weight')!.shape[1]!;
  view('emb.weight')[3 * c + 7] = NaN;
  view('head.weight')[10 * c] = Infinity;
  view('head.weight')[20 * c + 1] = -Infinity;
  const bad = path.join(dir, 'corrupt-f32.bin');
  writeCheckpoint(source, bad);
  const r = rwkv('info', '--check', '--threads', '1', '--model', bad);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /check: +2 of 78 tensors hold NaN or infinite values:\n/);
  assert.match(r.stdout, new RegExp(`\\n  emb\\.weight: 1 non-finite value\\(s\\), the first at index ${3 * c + 7} \\[3, 7\\]\\n`));
  assert.match(r.stdout, new RegExp(`\\n  head\\.weight: 2 non-finite value\\(s\\), the first at index ${10 * c} \\[10, 0\\]\\n`));
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^rwkv: .*corrupt-f32\.bin: 2 of 78 tensors hold NaN or infinite values \(the first: 'emb\.weight'\); the file is corrupt$/);
});

test('info --check: a NaN block scale in a Q5_0 matrix is found through the dequantizer', async (t) => {
  const file = fixture(t, 'tiny-rwkv-4v0-660K-Q5_0.bin');
  if (file === undefined) return;
  const source = await openCheckpoint(file);
  const key = source.tensors.get('blocks.1.att.key.weight')!;
  assert.equal(key.dtype, 'q5_0');
  // Block 2 (22 bytes a block: f16 scale, 4 bytes of high bits, 16 of nibbles): scale = NaN.
  key.data.set([0x00, 0x7e], 2 * 22);
  const bad = path.join(dir, 'corrupt-q5_0.bin');
  writeCheckpoint(source, bad);
  const r = rwkv('info', '--check', '--threads', '1', '--model', bad);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /\n  blocks\.1\.att\.key\.weight: 32 non-finite value\(s\), the first at index 64 \[0, 64\]\n/);
  assert.doesNotMatch(r.stdout, /\n  (?!blocks\.1\.att\.key\.weight)[\w.]+: \d+ non-finite/);
});
