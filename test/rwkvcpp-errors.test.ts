// Bad input to loadModel: every broken rwkv.cpp file is refused with a typed error whose
// code says what went wrong and whose message names the file (and the tensor, when one is at fault).
// The broken files are built from the 4v0 FP32 fixture by a small independent parser/rebuilder of the
// rwkv.cpp layout below, written into a temporary directory that is removed afterwards.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { FormatError, ModelError, RwkvError, type RwkvErrorCode } from '../src/errors.js';
import { loadModel } from '../src/models/load.js';
import { fixture } from './helpers/fixtures.js';

const FP32 = 'tiny-rwkv-4v0-660K-FP32.bin';
const Q8_0 = 'quantized/tiny-rwkv-4v0-660K-FP32-to-Q8_0.bin';
const MAGIC = 0x67676d66;

// ---------------------------------------------------------------------------------------------------
// An rwkv.cpp file as plain data: header = 6 int32 LE; then per tensor int32 dim_count, key_length,
// type id, dims[dim_count] (ggml order, innermost first), key bytes, raw data.

interface RawHeader {
  magic: number;
  version: number;
  nVocab: number;
  nEmbd: number;
  nLayer: number;
  dataType: number;
}

interface RawTensor {
  name: string;
  typeId: number;
  /** ggml order, innermost first. */
  dims: number[];
  data: Uint8Array;
  /** Written instead of dims.length, to corrupt the header. */
  dimCountField?: number;
  /** Written instead of the key's byte length, to corrupt the header. */
  keyLengthField?: number;
  /** Written instead of the UTF-8 of `name`. */
  keyBytes?: Uint8Array;
}

interface ParsedTensor extends RawTensor {
  /** Where the tensor's header starts in the parsed file. */
  readonly headerOffset: number;
  /** Where its data starts. */
  readonly dataOffset: number;
}

interface RawFile {
  header: RawHeader;
  tensors: RawTensor[];
}

interface ParsedFile {
  readonly bytes: Uint8Array;
  readonly header: RawHeader;
  readonly tensors: readonly ParsedTensor[];
}

/** rwkv.cpp type id → [values per block, bytes per block]; independent of src/. */
const TYPE_BLOCKS: ReadonlyMap<number, readonly [number, number]> = new Map([
  [0, [1, 4]],
  [1, [1, 2]],
  [2, [32, 18]],
  [3, [32, 20]],
  [7, [32, 22]],
  [8, [32, 24]],
  [9, [32, 34]],
] as const);

function dataBytes(typeId: number, dims: readonly number[]): number {
  const block = TYPE_BLOCKS.get(typeId);
  if (block === undefined) throw new Error(`test parser: type id ${typeId}`);
  const count = dims.reduce((a, b) => a * b, 1);
  return (count / block[0]) * block[1];
}

function parse(bytes: Uint8Array): ParsedFile {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const i32 = (o: number): number => dv.getInt32(o, true);
  const header: RawHeader = {
    magic: dv.getUint32(0, true),
    version: i32(4),
    nVocab: i32(8),
    nEmbd: i32(12),
    nLayer: i32(16),
    dataType: i32(20),
  };
  const tensors: ParsedTensor[] = [];
  let p = 24;
  while (p < bytes.byteLength) {
    const headerOffset = p;
    const dimCount = i32(p);
    const keyLength = i32(p + 4);
    const typeId = i32(p + 8);
    p += 12;
    const dims: number[] = [];
    for (let i = 0; i < dimCount; i++, p += 4) dims.push(i32(p));
    const name = new TextDecoder().decode(bytes.subarray(p, p + keyLength));
    p += keyLength;
    const n = dataBytes(typeId, dims);
    tensors.push({ name, typeId, dims, data: bytes.subarray(p, p + n), headerOffset, dataOffset: p });
    p += n;
  }
  assert.equal(p, bytes.byteLength, 'test parser: the fixture does not end on a tensor boundary');
  return { bytes, header, tensors };
}

function build(file: RawFile): Uint8Array {
  const keys = file.tensors.map((t) => t.keyBytes ?? new TextEncoder().encode(t.name));
  let size = 24;
  file.tensors.forEach((t, i) => (size += 12 + 4 * t.dims.length + keys[i]!.byteLength + t.data.byteLength));
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  const h = file.header;
  dv.setUint32(0, h.magic, true);
  [h.version, h.nVocab, h.nEmbd, h.nLayer, h.dataType].forEach((v, i) => dv.setInt32(4 + 4 * i, v, true));
  let p = 24;
  file.tensors.forEach((t, i) => {
    const key = keys[i]!;
    dv.setInt32(p, t.dimCountField ?? t.dims.length, true);
    dv.setInt32(p + 4, t.keyLengthField ?? key.byteLength, true);
    dv.setInt32(p + 8, t.typeId, true);
    p += 12;
    for (const d of t.dims) dv.setInt32(p, d, true), (p += 4);
    out.set(key, p);
    p += key.byteLength;
    out.set(t.data, p);
    p += t.data.byteLength;
  });
  return out;
}

/** A fresh, freely editable copy of a parsed file (tensor data shared, never written to). */
function editable(f: ParsedFile): RawFile {
  return {
    header: { ...f.header },
    tensors: f.tensors.map((t) => ({ name: t.name, typeId: t.typeId, dims: [...t.dims], data: t.data })),
  };
}

function tensorOf(f: RawFile | ParsedFile, name: string): RawTensor {
  const t = f.tensors.find((x) => x.name === name);
  if (t === undefined) throw new Error(`test: no tensor ${name} in the fixture`);
  return t;
}

function parsedTensor(f: ParsedFile, name: string): ParsedTensor {
  return tensorOf(f, name) as ParsedTensor;
}

// ---------------------------------------------------------------------------------------------------
// Temp dir, fixture cache, and the one assertion every case makes.

let dir = '';
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-ts-errors-'));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
function writeTemp(bytes: Uint8Array, label: string): string {
  const p = path.join(dir, `${++counter}-${label}.bin`);
  fs.writeFileSync(p, bytes);
  return p;
}

const parsedCache = new Map<string, ParsedFile>();
/** The named fixture, parsed; undefined (test skipped) when absent. */
function base(t: TestContext, name: string): ParsedFile | undefined {
  const p = fixture(t, name);
  if (p === undefined) return undefined;
  let f = parsedCache.get(p);
  if (f === undefined) {
    f = parse(new Uint8Array(fs.readFileSync(p)));
    parsedCache.set(p, f);
  }
  return f;
}

type ErrorClass = typeof RwkvError | typeof FormatError | typeof ModelError;

interface Expected {
  readonly cls: ErrorClass;
  readonly code: RwkvErrorCode;
  /** The tensor the message must name. */
  readonly tensor?: string;
  /** More text the message must contain. */
  readonly mentions?: readonly string[];
}

/**
 * loadModel(file) must reject (awaited, so a hang would hang here rather than pass) an error of
 * exactly class `cls` with `code`, naming `file` and, when given, `tensor`.
 */
async function expectLoadError(file: string, want: Expected): Promise<RwkvError> {
  let thrown: unknown;
  let returned = false;
  try {
    await loadModel(file);
    returned = true;
  } catch (e) {
    thrown = e;
  }
  assert.ok(!returned, `loadModel(${file}) returned a model instead of throwing ${want.code}`);
  assert.ok(thrown instanceof RwkvError, `expected an RwkvError, got ${String(thrown)}`);
  const err = thrown;
  assert.ok(err instanceof want.cls, `expected ${want.cls.name}, got ${err.name}: ${err.message}`);
  assert.equal(err.constructor, want.cls, `expected exactly ${want.cls.name}, got ${err.name}: ${err.message}`);
  assert.equal(err.code, want.code, err.message);
  assert.equal(err.file, file);
  assert.ok(err.message.includes(file), `message does not name the file: ${err.message}`);
  if (want.tensor !== undefined) {
    assert.equal(err.tensor, want.tensor, err.message);
    assert.ok(err.message.includes(`'${want.tensor}'`), `message does not name tensor ${want.tensor}: ${err.message}`);
  }
  for (const m of want.mentions ?? []) assert.ok(err.message.includes(m), `message lacks "${m}": ${err.message}`);
  return err;
}

// ---------------------------------------------------------------------------------------------------
// Baseline: the rebuilder is faithful, so every failure below comes from the corruption alone.

test('baseline: parse + rebuild of the FP32 fixture is byte-identical and loads', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const rebuilt = build(editable(f));
  assert.deepEqual(Buffer.from(rebuilt).equals(Buffer.from(f.bytes)), true);
  const model = await loadModel(writeTemp(rebuilt, 'baseline'));
  assert.ok(model !== undefined);
});

// --- Files that cannot be opened -------------------------------------------------------------------

test('a nonexistent path is FILE_NOT_FOUND', async () => {
  const p = path.join(dir, 'does-not-exist.bin');
  await expectLoadError(p, { cls: RwkvError, code: 'FILE_NOT_FOUND' });
});

test('a directory is NOT_A_FILE', async () => {
  const p = fs.mkdtempSync(path.join(dir, 'a-dir-'));
  await expectLoadError(p, { cls: RwkvError, code: 'NOT_A_FILE', mentions: ['directory'] });
});

// --- Truncation ------------------------------------------------------------------------------------

test('an empty file is TRUNCATED', async () => {
  await expectLoadError(writeTemp(new Uint8Array(0), 'empty'), { cls: FormatError, code: 'TRUNCATED', mentions: ['empty'] });
});

test('a file shorter than the magic is TRUNCATED', async () => {
  await expectLoadError(writeTemp(new Uint8Array([0x66, 0x6d]), 'two-bytes'), { cls: FormatError, code: 'TRUNCATED' });
});

test('a file with the right magic but shorter than the 24-byte header is TRUNCATED', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const n of [4, 12, 23]) {
    await expectLoadError(writeTemp(f.bytes.subarray(0, n), `header-${n}`), {
      cls: FormatError,
      code: 'TRUNCATED',
      mentions: ['header'],
    });
  }
});

test('a header and no tensors is TRUNCATED', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  await expectLoadError(writeTemp(f.bytes.subarray(0, 24), 'header-only'), {
    cls: FormatError,
    code: 'TRUNCATED',
    mentions: ['no tensors'],
  });
});

test('a file cut in the middle of a tensor\'s data is TRUNCATED and names that tensor', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const victim = parsedTensor(f, 'blocks.0.att.key.weight');
  const cut = victim.dataOffset + 1000;
  await expectLoadError(writeTemp(f.bytes.subarray(0, cut), 'mid-tensor'), {
    cls: FormatError,
    code: 'TRUNCATED',
    tensor: victim.name,
  });
  // Also one byte short of the very end: the last tensor is at fault.
  await expectLoadError(writeTemp(f.bytes.subarray(0, f.bytes.byteLength - 1), 'last-byte'), {
    cls: FormatError,
    code: 'TRUNCATED',
    tensor: 'head.weight',
  });
});

test('a file cut inside a tensor header (fixed fields, dims, or key) is TRUNCATED and names the header', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const second = parsedTensor(f, 'blocks.0.ln1.weight'); // tensor #1
  for (const into of [6, 14, 12 + 4 + 3]) {
    await expectLoadError(writeTemp(f.bytes.subarray(0, second.headerOffset + into), `in-header-${into}`), {
      cls: FormatError,
      code: 'TRUNCATED',
      mentions: ['tensor #1 header'],
    });
  }
});

test('trailing bytes too short for a tensor header are TRUNCATED', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const bytes = new Uint8Array(f.bytes.byteLength + 5);
  bytes.set(f.bytes);
  await expectLoadError(writeTemp(bytes, 'trailing'), {
    cls: FormatError,
    code: 'TRUNCATED',
    mentions: [`tensor #${f.tensors.length} header`],
  });
});

test('a file cut exactly at a tensor boundary is a model with a MISSING_TENSOR, not a silent success', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const head = parsedTensor(f, 'head.weight');
  await expectLoadError(writeTemp(f.bytes.subarray(0, head.headerOffset), 'no-head'), {
    cls: ModelError,
    code: 'MISSING_TENSOR',
    tensor: 'head.weight',
  });
});

// --- File header -----------------------------------------------------------------------------------

test('a wrong magic is BAD_MAGIC', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  // GGUF's magic, a byte-swapped "ggmf", and zeros.
  for (const magic of [0x46554747, 0x666d6767, 0]) {
    const e = editable(f);
    e.header.magic = magic;
    await expectLoadError(writeTemp(build(e), `magic-${magic.toString(16)}`), { cls: FormatError, code: 'BAD_MAGIC' });
  }
});

test('an unknown file version is UNSUPPORTED_VERSION', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const version of [102, 99, 1, -100]) {
    const e = editable(f);
    e.header.version = version;
    await expectLoadError(writeTemp(build(e), `version-${version}`), {
      cls: FormatError,
      code: 'UNSUPPORTED_VERSION',
      mentions: [String(version)],
    });
  }
});

test('a non-positive n_vocab / n_embd / n_layer in the header is BAD_HEADER', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const [field, key] of [
    ['n_vocab', 'nVocab'],
    ['n_embd', 'nEmbd'],
    ['n_layer', 'nLayer'],
  ] as const) {
    for (const value of [0, -1]) {
      const e = editable(f);
      e.header[key] = value;
      await expectLoadError(writeTemp(build(e), `${field}-${value}`), { cls: FormatError, code: 'BAD_HEADER', mentions: [field] });
    }
  }
});

test('an unknown data type in the file header is UNSUPPORTED_DTYPE', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  e.header.dataType = 42;
  await expectLoadError(writeTemp(build(e), 'header-dtype-42'), { cls: FormatError, code: 'UNSUPPORTED_DTYPE', mentions: ['42'] });
});

// --- Header vs tensors: the file reads, but is not a consistent model --------------------------------

test('a header n_embd that disagrees with emb.weight is BAD_SHAPE', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  e.header.nEmbd = 64;
  await expectLoadError(writeTemp(build(e), 'n-embd'), { cls: ModelError, code: 'BAD_SHAPE', mentions: ['n_embd = 64'] });
});

test('a header n_vocab that disagrees with emb.weight is BAD_SHAPE', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  e.header.nVocab = 65536;
  await expectLoadError(writeTemp(build(e), 'n-vocab'), { cls: ModelError, code: 'BAD_SHAPE', mentions: ['n_vocab = 65536'] });
});

test('a header n_layer that disagrees with the blocks present is BAD_SHAPE', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const nLayer of [3, 5]) {
    const e = editable(f);
    e.header.nLayer = nLayer;
    await expectLoadError(writeTemp(build(e), `n-layer-${nLayer}`), {
      cls: ModelError,
      code: 'BAD_SHAPE',
      mentions: [`n_layer = ${nLayer}`, '4 layers'],
    });
  }
  // The same disagreement from the other side: the header says 4, the file holds blocks 0..2 only.
  const e = editable(f);
  e.tensors = e.tensors.filter((x) => !x.name.startsWith('blocks.3.'));
  await expectLoadError(writeTemp(build(e), 'three-layers'), {
    cls: ModelError,
    code: 'BAD_SHAPE',
    mentions: ['n_layer = 4', '3 layers'],
  });
});

// --- Tensor headers ---------------------------------------------------------------------------------

test('a retired (5 = Q4_2) or unknown (42) type id in a tensor header is UNSUPPORTED_DTYPE naming the tensor', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const [typeId, mention] of [
    [5, 'Q4_2'],
    [42, 'unknown data type id 42'],
  ] as const) {
    const e = editable(f);
    tensorOf(e, 'blocks.0.att.key.weight').typeId = typeId;
    await expectLoadError(writeTemp(build(e), `type-${typeId}`), {
      cls: FormatError,
      code: 'UNSUPPORTED_DTYPE',
      tensor: 'blocks.0.att.key.weight',
      mentions: [mention],
    });
  }
});

test('a quantized tensor in a version-100 file is UNSUPPORTED_DTYPE naming the tensor', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  assert.equal(f.header.version, 100);
  // One FP32 matrix relabelled Q4_0 with a consistently sized (zero) payload.
  const e = editable(f);
  const victim = tensorOf(e, 'blocks.2.ffn.key.weight');
  victim.typeId = 2;
  victim.data = new Uint8Array(dataBytes(2, victim.dims));
  await expectLoadError(writeTemp(build(e), 'v100-q4_0'), {
    cls: FormatError,
    code: 'UNSUPPORTED_DTYPE',
    tensor: victim.name,
    mentions: ['Q4_0', 'version-100'],
  });
});

test('the Q8_0 fixture relabelled as version 100 is UNSUPPORTED_DTYPE at its first quantized tensor', async (t) => {
  const f = base(t, Q8_0);
  if (f === undefined) return;
  assert.equal(f.header.version, 101);
  const first = f.tensors.find((x) => x.typeId === 9);
  assert.ok(first !== undefined);
  const e = editable(f);
  e.header.version = 100;
  await expectLoadError(writeTemp(build(e), 'q8_0-as-v100'), {
    cls: FormatError,
    code: 'UNSUPPORTED_DTYPE',
    tensor: first.name,
    mentions: ['Q8_0'],
  });
});

test('a quantized row length that is not a multiple of 32 is BAD_HEADER naming the tensor', async (t) => {
  const f = base(t, Q8_0);
  if (f === undefined) return;
  // [128, 128] → [16, 1024]: the same element count and byte size, but rows of 16 split a block.
  const e = editable(f);
  const victim = tensorOf(e, 'blocks.1.att.value.weight');
  assert.deepEqual(victim.dims, [128, 128]);
  victim.dims = [16, 1024];
  await expectLoadError(writeTemp(build(e), 'q8-row-16'), { cls: FormatError, code: 'BAD_HEADER', tensor: victim.name });
});

test('a key_length of 0, negative, or huge is BAD_HEADER', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const keyLength of [0, -1, 1 << 20, 0x7fffffff]) {
    const e = editable(f);
    tensorOf(e, 'blocks.0.ln1.weight').keyLengthField = keyLength;
    await expectLoadError(writeTemp(build(e), `key-length-${keyLength}`), {
      cls: FormatError,
      code: 'BAD_HEADER',
      mentions: ['tensor #1 header', `key_length ${keyLength}`],
    });
  }
});

test('a dim_count of 0, 7 or negative is BAD_HEADER', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const dimCount of [0, 7, -1]) {
    const e = editable(f);
    tensorOf(e, 'blocks.0.ln1.weight').dimCountField = dimCount;
    await expectLoadError(writeTemp(build(e), `dim-count-${dimCount}`), {
      cls: FormatError,
      code: 'BAD_HEADER',
      mentions: ['tensor #1 header', `dim_count ${dimCount}`],
    });
  }
});

test('a zero or negative dimension is BAD_HEADER naming the tensor', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  for (const dims of [[0], [-128], [128, 0], [-1, -128]]) {
    const e = editable(f);
    const victim = tensorOf(e, dims.length === 1 ? 'blocks.0.ln1.weight' : 'blocks.0.att.key.weight');
    victim.dims = dims;
    await expectLoadError(writeTemp(build(e), `dims-${dims.join('x')}`), { cls: FormatError, code: 'BAD_HEADER', tensor: victim.name });
  }
});

test('dimensions whose product dwarfs the file are TRUNCATED (no huge allocation, no hang)', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  const victim = tensorOf(e, 'blocks.0.att.key.weight');
  victim.dims = [0x7fffffff, 0x7fffffff, 0x7fffffff];
  await expectLoadError(writeTemp(build(e), 'huge-dims'), { cls: FormatError, code: 'TRUNCATED', tensor: victim.name });
});

test('a key that is not valid UTF-8 is BAD_HEADER', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  tensorOf(e, 'blocks.0.ln1.weight').keyBytes = new Uint8Array([0x62, 0xff, 0xfe, 0x6c]);
  await expectLoadError(writeTemp(build(e), 'bad-utf8'), { cls: FormatError, code: 'BAD_HEADER', mentions: ['tensor #1'] });
});

test('a tensor name that appears twice is BAD_HEADER naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  const dup = tensorOf(e, 'blocks.0.ln1.weight');
  e.tensors.splice(5, 0, { ...dup, dims: [...dup.dims] });
  await expectLoadError(writeTemp(build(e), 'duplicate'), {
    cls: FormatError,
    code: 'BAD_HEADER',
    tensor: dup.name,
    mentions: ['twice'],
  });
});

// --- Missing or misshapen tensors -------------------------------------------------------------------

test('a missing layer matrix is MISSING_TENSOR naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  e.tensors = e.tensors.filter((x) => x.name !== 'blocks.1.att.key.weight');
  await expectLoadError(writeTemp(build(e), 'no-b1-att-key'), {
    cls: ModelError,
    code: 'MISSING_TENSOR',
    tensor: 'blocks.1.att.key.weight',
  });
});

test('a missing emb.weight is MISSING_TENSOR naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  e.tensors = e.tensors.filter((x) => x.name !== 'emb.weight');
  await expectLoadError(writeTemp(build(e), 'no-emb'), { cls: ModelError, code: 'MISSING_TENSOR', tensor: 'emb.weight' });
});

test('a matrix with transposed dims (same byte size) is BAD_SHAPE naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  // ffn.value is [n_embd, ffn] = ggml [256, 128]; [128, 256] reads fine but is [ffn, n_embd].
  const e = editable(f);
  const victim = tensorOf(e, 'blocks.1.ffn.value.weight');
  assert.deepEqual(victim.dims, [256, 128]);
  victim.dims = [128, 256];
  await expectLoadError(writeTemp(build(e), 'ffn-value-transposed'), {
    cls: ModelError,
    code: 'BAD_SHAPE',
    tensor: victim.name,
    mentions: ['[256, 128]', '[128, 256]'],
  });
  // Same bytes as [512, 64]: neither dimension matches.
  const e2 = editable(f);
  tensorOf(e2, 'blocks.1.ffn.value.weight').dims = [512, 64];
  await expectLoadError(writeTemp(build(e2), 'ffn-value-512x64'), { cls: ModelError, code: 'BAD_SHAPE', tensor: victim.name });
});

test('a vector with the wrong number of values is BAD_SHAPE naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  const victim = tensorOf(e, 'blocks.2.att.time_first');
  victim.dims = [64];
  victim.data = victim.data.subarray(0, 64 * 4);
  await expectLoadError(writeTemp(build(e), 'short-vector'), { cls: ModelError, code: 'BAD_SHAPE', tensor: victim.name });
});

test('an emb.weight that is not 2-D is BAD_SHAPE naming it', async (t) => {
  const f = base(t, FP32);
  if (f === undefined) return;
  const e = editable(f);
  tensorOf(e, 'emb.weight').dims = [128, 256, 1];
  await expectLoadError(writeTemp(build(e), 'emb-3d'), { cls: ModelError, code: 'BAD_SHAPE', tensor: 'emb.weight' });
});

// Not tested on purpose: a file whose weights hold NaN bit patterns reads and loads; refusing it is not
// required of the loader.
