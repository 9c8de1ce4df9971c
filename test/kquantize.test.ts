// Writing K-quants: `rwkv quantize --type Q4_K_M|Q6_K|…` against llama.cpp's own llama-quantize output
// for the same F32 GGUF (every tensor's type and bytes), the encoders against digests of ggml's reference
// quantizers (quantize_row_qN_K_ref, built from ggml's source without FMA as in ggml-base) on a seeded mix of
// rows, round trips through the decoders, and llama-quantize's per-tensor type choices and fallbacks.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runQuantize } from '../src/cli/quantize.js';
import { readGguf } from '../src/formats/gguf.js';
import { KQUANT_MIX_NAMES, kQuantMixOf, llamaTensorType, type KQuantMix } from '../src/formats/kquant-mix.js';
import { decodeF32 } from '../src/formats/values.js';
import { kQuantize } from '../src/kernels/kquantize.js';
import { K_DECODERS, QK_K } from '../src/kernels/kquants.js';
import { DTYPES, type KQuantDType } from '../src/tensor/dtype.js';
import { expectRwkvRejection, tempDir } from './helpers/formats.js';
import { fixture } from './helpers/fixtures.js';
import { rng } from './helpers/seeded.js';

const TYPES: readonly KQuantDType[] = ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'];
const dir = tempDir('kquantize');
const F32 = 'gguf/rwkv7-834k-F32.gguf';

function decode(dtype: KQuantDType, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const bb = DTYPES[dtype].blockBytes;
  for (let b = 0; b < n / QK_K; b++) K_DECODERS[dtype](bytes, b * bb, out, b * QK_K);
  return out;
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** 48 super-blocks of different kinds: Gaussian at several scales, heavy tails, one-signed, sparse, integers, zeros, outliers. */
function mixedRows(seed: number): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(48 * QK_K);
  for (let b = 0; b < 48; b++) {
    const kind = b % 8;
    const scale = 10 ** (Math.floor(b / 8) - 3); // 1e-3 … 1e2
    for (let i = 0; i < QK_K; i++) {
      const g = gaussian(r);
      let v: number;
      if (kind === 0) v = g;
      else if (kind === 1) v = g * g * g;
      else if (kind === 2) v = Math.abs(g) + 0.25;
      else if (kind === 3) v = -Math.abs(g) - 0.25;
      else if (kind === 4) v = r() < 0.85 ? 0 : g;
      else if (kind === 5) v = Math.round(4 * g);
      else if (kind === 6) v = (i >> 4) % 3 === 0 ? 0 : g; // whole groups of 16 at zero
      else v = i === (b * 37) % QK_K ? 1e4 : 0.01 * g; // one huge value
      x[b * QK_K + i] = v * scale;
    }
  }
  return x;
}

// sha256 of each encoder's output on mixedRows(20260807), from ggml's quantize_row_qN_K_ref (ggml-org/ggml
// d99724f, ggml-quants.c compiled with gcc -O3 for plain x86-64, no FMA, as llama.cpp's ggml-base is).
const REFERENCE_SHA256: Readonly<Record<KQuantDType, string>> = {
  q2_k: '583a49f680695d997ed6f918d7134dd1c737fa65369d0be07bee1d3e1fef377a',
  q3_k: '230363951ae76990c528ca614a12f7d1a8332b5ad135008775bab9ec583bd23d',
  q4_k: '8f1968d4283dae144f79b206c0e68e2fd33205f14f07319994693ef86de25533',
  q5_k: 'b9cdb07264d0b2071fd390f737665b01bb3869794c2ef6b693883c36217e9887',
  q6_k: 'ca3bf0585d3aa5ec89eb3a90f57bdcc1cca724aebc36e571a02d86860546adfd',
};

test('K-quant encoders: the bytes of ggml\'s reference quantizers on a seeded mix of rows', () => {
  const x = mixedRows(20260807);
  for (const t of TYPES) {
    const digest = createHash('sha256').update(kQuantize(t, x)).digest('hex');
    assert.equal(digest, REFERENCE_SHA256[t], t);
  }
});

/** Largest |error| the grid allows for a super-block: about half a step of its coarsest sub-block, with slack for the 6-bit scales. */
const STEPS: Readonly<Record<KQuantDType, number>> = { q2_k: 3, q3_k: 4, q4_k: 15, q5_k: 31, q6_k: 32 };

test('K-quant encoders round-trip through the decoders within the grid\'s error; zero rows stay zero', () => {
  const r = rng(7);
  for (const t of TYPES) {
    const n = 32 * QK_K;
    const x = Float32Array.from({ length: n }, () => 0.05 * gaussian(r));
    const bytes = kQuantize(t, x);
    assert.equal(bytes.byteLength, (n / QK_K) * DTYPES[t].blockBytes);
    const y = decode(t, bytes, n);
    for (let b = 0; b < n / QK_K; b++) {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < QK_K; i++) {
        min = Math.min(min, x[b * QK_K + i]!);
        max = Math.max(max, x[b * QK_K + i]!);
      }
      // Symmetric types (Q3_K, Q6_K) span 2·max|x| with their levels, asymmetric ones max − min.
      const span = t === 'q3_k' || t === 'q6_k' ? 2 * Math.max(-min, max) : max - min;
      const bound = (span / STEPS[t]) * 1.5;
      let rms = 0;
      for (let i = 0; i < QK_K; i++) {
        const e = Math.abs(y[b * QK_K + i]! - x[b * QK_K + i]!);
        assert.ok(e <= bound, `${t} block ${b} value ${i}: error ${e} > ${bound}`);
        rms += e * e;
      }
      // On average far better than the worst case (sub-block scales adapt to each group).
      assert.ok(Math.sqrt(rms / QK_K) < bound / 2, `${t} block ${b}: rms error ${Math.sqrt(rms / QK_K)}`);
    }
    const zeros = kQuantize(t, new Float32Array(2 * QK_K));
    assert.ok(decode(t, zeros, 2 * QK_K).every((v) => v === 0), `${t}: zeros decode to zeros`);
  }
});

test('K-quant encoders: a row with one huge value keeps it (to the grid) and stays finite', () => {
  for (const t of TYPES) {
    const x = new Float32Array(QK_K).map((_, i) => 0.001 * Math.sin(i));
    x[77] = 3e4;
    const y = decode(t, kQuantize(t, x), QK_K);
    assert.ok(y.every(Number.isFinite), t);
    assert.ok(Math.abs(y[77]! - 3e4) / 3e4 < 0.05, `${t}: ${y[77]} for 3e4`);
    // The small values share a sub-block scale with nothing huge, except in the huge value's own group.
    for (let i = 0; i < QK_K; i++) if (Math.abs(i - 77) > 32) assert.ok(Math.abs(y[i]!) < 0.01, `${t}[${i}] = ${y[i]}`);
  }
});

test("llama-quantize's per-tensor types for rwkv7: K-quants where rows fit 256, its fallbacks elsewhere, LoRA and vectors kept", () => {
  const expected: ReadonlyArray<readonly [KQuantMix, string, string, string]> = [
    // mix, ffn value [64, 256], other matrices [*, 64], output [256, 64]
    ['q2_k', 'q2_k', 'q4_0', 'q8_0'],
    ['q3_k_s', 'q3_k', 'q4_0', 'q8_0'],
    ['q3_k_m', 'q3_k', 'q4_0', 'q8_0'],
    ['q3_k_l', 'q3_k', 'q4_0', 'q8_0'],
    ['q4_k_s', 'q4_k', 'q5_0', 'q8_0'],
    ['q4_k_m', 'q4_k', 'q5_0', 'q8_0'],
    ['q5_k_s', 'q5_k', 'q5_1', 'q8_0'],
    ['q5_k_m', 'q5_k', 'q5_1', 'q8_0'],
    ['q6_k', 'q6_k', 'q8_0', 'q8_0'],
  ];
  for (const [mix, ffnValue, other, output] of expected) {
    assert.equal(llamaTensorType(mix, 'blk.3.channel_mix_value.weight', [64, 256]), ffnValue, mix);
    assert.equal(llamaTensorType(mix, 'blk.3.channel_mix_key.weight', [256, 64]), other, mix);
    assert.equal(llamaTensorType(mix, 'blk.3.time_mix_key.weight', [64, 64]), other, mix);
    assert.equal(llamaTensorType(mix, 'token_embd.weight', [256, 64]), other, mix);
    assert.equal(llamaTensorType(mix, 'output.weight', [256, 64]), output, mix);
    // with rows of 256 the output is Q6_K in every mix, the embedding the mix's type
    assert.equal(llamaTensorType(mix, 'output.weight', [1024, 256]), 'q6_k', mix);
    assert.equal(llamaTensorType(mix, 'token_embd.weight', [1024, 256]), ffnValue, mix);
    for (const kept of ['time_mix_w1', 'time_mix_w2', 'time_mix_a1', 'time_mix_v2', 'time_mix_g1', 'time_mix_lerp_fused', 'time_mix_decay_w1', 'time_mix_first']) {
      assert.equal(llamaTensorType(mix, `blk.3.${kept}.weight`, [32, 256]), undefined, `${mix} ${kept}`);
    }
    assert.equal(llamaTensorType(mix, 'blk.3.attn_norm.weight', [256]), undefined);
    assert.equal(llamaTensorType(mix, 'blk.3.time_mix_r_k.weight', [1, 256]), undefined, '1-D once outer 1s are dropped');
  }
  // rows that fit no 32-block either: F16, as llama.cpp falls back
  assert.equal(llamaTensorType('q4_k_m', 'blk.0.time_mix_key.weight', [48, 48]), 'f16');
  assert.equal(kQuantMixOf('Q4_K'), 'q4_k_m');
  assert.equal(kQuantMixOf('q5_k'), 'q5_k_m');
  assert.equal(kQuantMixOf('Q3_K'), 'q3_k_m');
  assert.equal(kQuantMixOf('Q4_0'), undefined);
});

for (const type of ['Q4_K_M', 'Q6_K'] as const) {
  test(`rwkv quantize --type ${type}: every tensor in llama-quantize's type with its bytes (rwkv7-834k)`, async (t) => {
    const src = fixture(t, F32);
    const ref = fixture(t, `gguf/rwkv7-834k-${type}.gguf`);
    if (src === undefined || ref === undefined) return;
    const out = path.join(dir, `rwkv7-${type}.gguf`);
    await runQuantize({ in: src, out, type });
    const ours = await readGguf(out);
    const theirs = await readGguf(ref);
    assert.equal(ours.metadata.get('general.file_type'), theirs.metadata.get('general.file_type'));
    assert.deepEqual([...ours.tensors.keys()].sort(), [...theirs.tensors.keys()].sort());
    const kType = type === 'Q6_K' ? 'q6_k' : 'q4_k';
    let kTensors = 0;
    const differing: string[] = [];
    for (const [name, want] of theirs.tensors) {
      const got = ours.tensors.get(name)!;
      assert.equal(got.dtype, want.dtype, name);
      assert.deepEqual(got.shape, want.shape, name);
      if (!Buffer.from(got.data).equals(Buffer.from(want.data))) differing.push(name);
      if (got.dtype === kType) {
        kTensors++;
        // decoding our bytes gives llama.cpp's values, and values near the F32 ones
        const a = decodeF32(got);
        const b = decodeF32(want);
        assert.ok(a.every((v, i) => Object.is(v, b[i])), name);
      }
    }
    assert.deepEqual(differing, [], `${differing.length} of ${theirs.tensors.size} tensors differ`);
    assert.equal(kTensors, 12, 'the 12 channel-mix value matrices are real K-quants');
  });
}

test('rwkv quantize --type: K-quant values near the F32 ones; v6 (rows of 64 and 224) falls back throughout', async (t) => {
  const src = fixture(t, F32);
  const v6 = fixture(t, 'gguf/rwkv6-1m-F32.gguf');
  if (src === undefined || v6 === undefined) return;
  const f32 = await readGguf(src);
  for (const type of ['Q2_K', 'Q3_K_M', 'Q5_K_S']) {
    const out = path.join(dir, `rwkv7-${type}.gguf`);
    await runQuantize({ in: src, out, type });
    const q = await readGguf(out);
    const v = q.tensors.get('blocks.5.ffn.value.weight')!;
    assert.equal(v.dtype, type === 'Q2_K' ? 'q2_k' : type === 'Q3_K_M' ? 'q3_k' : 'q5_k');
    const x = decodeF32(f32.tensors.get('blocks.5.ffn.value.weight')!);
    const y = decodeF32(v);
    let num = 0;
    let den = 0;
    for (let i = 0; i < x.length; i++) {
      num += (y[i]! - x[i]!) ** 2;
      den += x[i]! ** 2;
    }
    const rel = Math.sqrt(num / den);
    assert.ok(rel < (type === 'Q2_K' ? 0.5 : type === 'Q3_K_M' ? 0.3 : 0.1), `${type}: relative rms error ${rel}`);
  }
  const out6 = path.join(dir, 'rwkv6-Q4_K_M.gguf');
  const summary = await runQuantize({ in: v6, out: out6, type: 'q4_k_m' });
  assert.deepEqual([...summary.types.keys()].sort(), ['f32', 'q5_0', 'q8_0']);
});

test('rwkv quantize --type: an unknown type names the choices; K-quants are GGUF only', async (t) => {
  const src = fixture(t, F32);
  if (src === undefined) return;
  const err = await expectRwkvRejection(() => runQuantize({ in: src, out: path.join(dir, 'x.gguf'), type: 'Q7_K' }), 'BAD_ARGUMENT', [
    'Q7_K',
    'Q4_0',
    'Q8_0',
    'Q4_K_M',
    'Q6_K',
  ]);
  for (const name of KQUANT_MIX_NAMES) assert.ok(err.message.includes(name.toUpperCase()), name);
  await expectRwkvRejection(() => runQuantize({ in: src, out: path.join(dir, 'x.bin'), type: 'Q4_K_M' }), 'BAD_ARGUMENT', ['.gguf only', 'Q4_0']);
  await expectRwkvRejection(() => runQuantize({ in: src, out: path.join(dir, 'x.safetensors'), type: 'Q6_K' }), 'BAD_ARGUMENT', ['.gguf only']);
  assert.ok(!fs.existsSync(path.join(dir, 'x.bin')));
});
