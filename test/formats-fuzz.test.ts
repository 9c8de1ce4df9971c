// Fuzzing every reader: for each format, 200 variants of a fixture-derived file (random truncations, byte
// flips — mostly in the header structures — and length/size/offset fields set to huge values) must each
// end in a typed RwkvError or a model that runs a token; never another exception, a hang, or allocations
// (through the TensorAllocator) adding up to more than the file's size. Seeded, so failures reproduce.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { RwkvError } from '../src/errors.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import type { TensorAllocator } from '../src/formats/tensor-source.js';
import { modelFromSource } from '../src/models/load.js';
import { fixture } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const VARIANTS = 200;
const dir = tempDir('fuzz');

/** xorshift32: deterministic variants. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** A field to overwrite: byte position and width (4 or 8 bytes little-endian; 0: a run of ASCII digits). */
interface Field {
  at: number;
  width: 0 | 4 | 8;
}

// --- Where each format keeps its lengths, sizes and offsets (found by small independent parsers) --------

function rwkvCppFields(b: Buffer): { fields: Field[]; header: number } {
  const fields: Field[] = [8, 12, 16, 20].map((at) => ({ at, width: 4 as const }));
  const sizes: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 7: [32, 22], 8: [32, 24], 9: [32, 34] };
  let p = 24;
  while (p < b.byteLength) {
    const dims = b.readInt32LE(p);
    const keyLen = b.readInt32LE(p + 4);
    const [per, bytes] = sizes[b.readInt32LE(p + 8)]!;
    fields.push({ at: p, width: 4 }, { at: p + 4, width: 4 });
    let count = 1;
    for (let i = 0; i < dims; i++) {
      fields.push({ at: p + 12 + 4 * i, width: 4 });
      count *= b.readInt32LE(p + 12 + 4 * i);
    }
    p += 12 + 4 * dims + keyLen + (count / per) * bytes;
  }
  return { fields, header: 4096 };
}

function safetensorsFields(b: Buffer): { fields: Field[]; header: number } {
  const end = 8 + Number(b.readBigUInt64LE(0));
  const fields: Field[] = [{ at: 0, width: 8 }];
  // every number in the JSON (shapes and data_offsets)
  for (let i = 8; i < end; i++) if (b[i]! >= 0x30 && b[i]! <= 0x39 && !(b[i - 1]! >= 0x30 && b[i - 1]! <= 0x39)) fields.push({ at: i, width: 0 });
  return { fields, header: end };
}

function ggufFields(b: Buffer): { fields: Field[]; header: number } {
  const fields: Field[] = [
    { at: 8, width: 8 },
    { at: 16, width: 8 },
  ];
  let p = 24;
  const str = (): void => {
    fields.push({ at: p, width: 8 });
    p += 8 + Number(b.readBigUInt64LE(p));
  };
  const nt = Number(b.readBigUInt64LE(8));
  const nkv = Number(b.readBigUInt64LE(16));
  for (let i = 0; i < nkv; i++) {
    str();
    const type = b.readUInt32LE(p);
    p += 4;
    if (type === 8) str();
    else if (type === 9) {
      // An array (the tokenizer's): its item type and length are fields, and each string's length.
      const itemType = b.readUInt32LE(p);
      const len = Number(b.readBigUInt64LE(p + 4));
      fields.push({ at: p, width: 4 }, { at: p + 4, width: 8 });
      p += 12;
      if (itemType === 8) for (let j = 0; j < len; j++) str();
      else p += len * 4;
    } else p += type === 7 ? 1 : 4;
  }
  for (let i = 0; i < nt; i++) {
    str();
    const nd = b.readUInt32LE(p);
    fields.push({ at: p, width: 4 });
    p += 4;
    for (let d = 0; d < nd; d++, p += 8) fields.push({ at: p, width: 8 });
    fields.push({ at: p, width: 4 }, { at: p + 4, width: 8 });
    p += 12;
  }
  return { fields, header: p };
}

function zipFields(b: Buffer): { fields: Field[]; header: number } {
  const fields: Field[] = [];
  const end = b.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  fields.push({ at: end + 10, width: 4 }, { at: end + 12, width: 4 }, { at: end + 16, width: 4 });
  let p = b.readUInt32LE(end + 16);
  const cdStart = p;
  while (b.readUInt32LE(p) === 0x02014b50) {
    for (const o of [20, 24, 28, 42]) fields.push({ at: p + o, width: 4 });
    const local = b.readUInt32LE(p + 42);
    for (const o of [18, 22, 26]) fields.push({ at: local + o, width: 4 });
    p += 46 + b.readUInt16LE(p + 28) + b.readUInt16LE(p + 30) + b.readUInt16LE(p + 32);
  }
  // BINUNICODE ('X') lengths and BININT operands in data.pkl (the first entry)
  const pklStart = 30 + b.readUInt16LE(26) + b.readUInt16LE(28);
  const pklEnd = pklStart + b.readUInt32LE(18);
  for (let i = pklStart; i < pklEnd - 4; i++) if (b[i] === 0x58 || b[i] === 0x4a) fields.push({ at: i + 1, width: 4 });
  // bytes worth flipping: data.pkl and the central directory
  return { fields, header: Math.max(pklEnd, 1) + (b.byteLength - cdStart) * 0 };
}

// --- The harness ----------------------------------------------------------------------------------------

interface Outcome {
  models: number;
  errors: Map<string, number>;
}

function mutate(base: Buffer, fields: readonly Field[], header: number, r: () => number): { bytes: Buffer; what: string } {
  const kind = r();
  if (kind < 0.25) {
    const cut = r() < 0.5 ? Math.floor(r() * Math.min(header + 64, base.byteLength)) : Math.floor(r() * base.byteLength);
    return { bytes: base.subarray(0, cut), what: `truncated to ${cut}` };
  }
  const b = Buffer.from(base);
  if (kind < 0.65) {
    const flips = 1 + Math.floor(r() * 8);
    const at: number[] = [];
    for (let i = 0; i < flips; i++) {
      const p = r() < 0.75 ? Math.floor(r() * Math.min(header, b.byteLength)) : Math.floor(r() * b.byteLength);
      b[p] = b[p]! ^ (1 + Math.floor(r() * 255));
      at.push(p);
    }
    return { bytes: b, what: `bytes flipped at ${at.join(',')}` };
  }
  const f = fields[Math.floor(r() * fields.length)]!;
  const huge = [0xffffffff, 0x7fffffff, 0x80000000, 2 ** 31 + 7, 2 ** 40, 2 ** 53 - 1, 2 ** 62, Math.floor(r() * 2 ** 32)][Math.floor(r() * 8)]!;
  if (f.width === 4) b.writeUInt32LE(huge % 2 ** 32, f.at);
  else if (f.width === 8) b.writeBigUInt64LE(BigInt(huge), f.at);
  else for (let i = f.at; b[i]! >= 0x30 && b[i]! <= 0x39; i++) b[i] = 0x39; // 123 → 999, same length
  return { bytes: b, what: `field at ${f.at} (${f.width} bytes) set to ${huge}` };
}

async function fuzz(t: TestContext, label: string, base: Buffer, layout: { fields: Field[]; header: number }, seed: number): Promise<void> {
  const r = rng(seed);
  const file = path.join(dir, `${label}.variant`);
  const out: Outcome = { models: 0, errors: new Map() };
  for (let i = 0; i < VARIANTS; i++) {
    const { bytes, what } = mutate(base, layout.fields, layout.header, r);
    fs.writeFileSync(file, bytes);
    let allocated = 0;
    const allocate: TensorAllocator = (n) => {
      allocated += n;
      if (allocated > bytes.byteLength) throw new Error(`allocations reached ${allocated} bytes, the file has ${bytes.byteLength}`);
      return new Uint8Array(n);
    };
    try {
      const model = modelFromSource(await openCheckpoint(file, allocate));
      await model.forward(0x41, model.createState());
      out.models++;
    } catch (e) {
      if (!(e instanceof RwkvError)) {
        assert.fail(`${label} variant ${i} (${what}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
      assert.ok(e.message.includes(file), `${label} variant ${i} (${what}): the message does not name the file: ${e.message}`);
      out.errors.set(e.code, (out.errors.get(e.code) ?? 0) + 1);
    }
  }
  t.diagnostic(`${label}: ${out.models} valid models; errors ${[...out.errors].map(([c, k]) => `${c} ${k}`).join(', ')}`);
  assert.ok(out.errors.size >= 2, 'the variants should exercise several kinds of error');
}

test('fuzz: rwkv.cpp .bin', { timeout: 120_000 }, async (t) => {
  const p = fixture(t, 'quantized/tiny-rwkv-5v1-730K-FP32-to-Q4_0.bin');
  if (p === undefined) return;
  const base = fs.readFileSync(p);
  await fuzz(t, 'rwkvcpp', base, rwkvCppFields(base), 1);
});

test('fuzz: safetensors', { timeout: 120_000 }, async (t) => {
  const p = fixture(t, 'converted/tiny-rwkv-5v1-730K-FP32.safetensors');
  if (p === undefined) return;
  const small = path.join(dir, 'base.safetensors');
  writeCheckpoint(await openCheckpoint(p), small, { dtype: 'f16' });
  const base = fs.readFileSync(small);
  await fuzz(t, 'safetensors', base, safetensorsFields(base), 2);
});

test('fuzz: PyTorch .pth', { timeout: 120_000 }, async (t) => {
  const p = fixture(t, 'converted/tiny-rwkv-5v1-730K-FP32.pth');
  if (p === undefined) return;
  const small = path.join(dir, 'base.pth');
  writeCheckpoint(await openCheckpoint(p), small, { dtype: 'bf16' });
  const base = fs.readFileSync(small);
  await fuzz(t, 'pth', base, zipFields(base), 3);
  // and the torch.save-written fixture itself (its own zip layout)
  const orig = fs.readFileSync(p);
  await fuzz(t, 'pth-torch', orig, zipFields(orig), 4);
});

test('fuzz: GGUF', { timeout: 120_000 }, async (t) => {
  for (const [m, seed] of [
    ['6v0-1m', 5],
    ['7v0-834K', 6],
  ] as const) {
    const p = fixture(t, `tiny-rwkv-${m}-FP32.bin`);
    if (p === undefined) return;
    const small = path.join(dir, `base-${m}.gguf`);
    writeCheckpoint(await openCheckpoint(p), small, { quantize: 'q4_1' });
    const base = fs.readFileSync(small);
    await fuzz(t, `gguf-${m}`, base, ggufFields(base), seed);
  }
});
