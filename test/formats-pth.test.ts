// PyTorch .pth: the restricted unpickler loads state dicts and refuses everything else — a pickle that
// names os.system, builtins.eval, subprocess or any global a state dict does not need is refused with an
// error naming that global, and nothing from it runs (each payload would create a marker file). Also:
// strided views, 16-bit storages, wrapped state dicts, malformed archives, and our writer's output.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as zlib from 'node:zlib';
import { FormatError } from '../src/errors.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { PickleWriter } from '../src/formats/pickle.js';
import { crc32 } from '../src/formats/zip.js';
import { readPth, stateDictPickle } from '../src/formats/pth.js';
import { readSafetensors } from '../src/formats/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { f32View } from '../src/tensor/tensor.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';
import { assertSameTensors, expectRwkvRejection, logitsAfterIn, MODELS, tempDir } from './helpers/formats.js';

const dir = tempDir('pth');
let n = 0;
const tmp = (name: string): string => path.join(dir, `${++n}-${name}`);
const MARKER = path.join(dir, 'PWNED');
// zlib.crc32 (Node ≥ 20.15) is an independent check of our own; older Nodes fall back to ours.
const crc = (b: Uint8Array): number => (typeof zlib.crc32 === 'function' ? zlib.crc32(b) : crc32(b));

// ---------------------------------------------------------------------------------------------------
// An independent minimal ZIP builder: stored entries (or a chosen method), no alignment.

interface RawEntry {
  name: string;
  data: Uint8Array;
  method?: number;
}

function zip(entries: readonly RawEntry[]): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const sum = crc(e.data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(e.method ?? 0, 8);
    lh.writeUInt32LE(sum, 14);
    lh.writeUInt32LE(e.data.byteLength, 18);
    lh.writeUInt32LE(e.data.byteLength, 22);
    lh.writeUInt16LE(name.byteLength, 26);
    parts.push(lh, name, Buffer.from(e.data));
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(e.method ?? 0, 10);
    ch.writeUInt32LE(sum, 16);
    ch.writeUInt32LE(e.data.byteLength, 20);
    ch.writeUInt32LE(e.data.byteLength, 24);
    ch.writeUInt16LE(name.byteLength, 28);
    ch.writeUInt32LE(offset, 42);
    central.push(ch, name);
    offset += 30 + name.byteLength + e.data.byteLength;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.byteLength, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cd, end]);
}

function pthFile(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, label = 'x'): string {
  const p = tmp(`${label}.pth`);
  const entries: RawEntry[] = [{ name: 'archive/data.pkl', data: pickle }];
  for (const [k, v] of Object.entries(storages)) entries.push({ name: `archive/data/${k}`, data: v });
  entries.push({ name: 'archive/version', data: Buffer.from('3\n') });
  fs.writeFileSync(p, zip(entries));
  return p;
}

const f32Bytes = (values: number[]): Uint8Array => new Uint8Array(new Float32Array(values).buffer);

// ---------------------------------------------------------------------------------------------------
// Hostile pickles. Each would run `touch MARKER` (or similar) if it were evaluated.

const enc = (s: string): Buffer => Buffer.from(s, 'latin1');
const binunicode = (s: string): Buffer => {
  const b = Buffer.from(s);
  const h = Buffer.alloc(5);
  h[0] = 0x58;
  h.writeUInt32LE(b.byteLength, 1);
  return Buffer.concat([h, b]);
};
const cmd = `touch ${MARKER}`;

const HOSTILE: { what: string; names: string; pickle: Buffer }[] = [
  { what: 'os.system (protocol 0)', names: 'os.system', pickle: enc(`cos\nsystem\n(S'${cmd}'\ntR.`) },
  { what: 'posix.system', names: 'posix.system', pickle: Buffer.concat([enc('\x80\x02cposix\nsystem\n'), binunicode(cmd), enc('\x85R.')]) },
  {
    what: 'builtins.eval',
    names: 'builtins.eval',
    pickle: Buffer.concat([enc('\x80\x02cbuiltins\neval\n'), binunicode(`__import__('os').system('${cmd}')`), enc('\x85R.')]),
  },
  {
    what: 'builtins.exec via STACK_GLOBAL',
    names: 'builtins.exec',
    pickle: Buffer.concat([enc('\x80\x04\x8c\x08builtins\x8c\x04exec\x93'), binunicode(`import os; os.system('${cmd}')`), enc('\x85R.')]),
  },
  {
    what: 'subprocess.Popen',
    names: 'subprocess.Popen',
    pickle: Buffer.concat([enc('\x80\x02csubprocess\nPopen\n'), binunicode('touch'), binunicode(MARKER), enc('\x86\x85R.')]),
  },
  {
    what: 'subprocess.check_output inside an otherwise valid state dict',
    names: 'subprocess.check_output',
    pickle: Buffer.concat([
      enc('\x80\x02ccollections\nOrderedDict\n)R('),
      binunicode('emb.weight'),
      enc('csubprocess\ncheck_output\n'),
      binunicode('sh'),
      binunicode('-c'),
      binunicode(cmd),
      enc('\x87\x85Ru.'),
    ]),
  },
  { what: 'an unknown global (numpy reconstruct)', names: 'numpy.core.multiarray._reconstruct', pickle: enc('\x80\x02cnumpy.core.multiarray\n_reconstruct\n.') },
  { what: 'an unknown torch global', names: 'torch._utils._rebuild_qtensor', pickle: enc('\x80\x02ctorch._utils\n_rebuild_qtensor\n.') },
  { what: 'builtins.getattr', names: 'builtins.getattr', pickle: enc('\x80\x02cbuiltins\ngetattr\n.') },
  { what: 'a Module class', names: 'torch.nn.modules.linear.Linear', pickle: enc('\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81.') },
];

for (const h of HOSTILE) {
  test(`refused, naming the global, nothing executed: ${h.what}`, async () => {
    const file = pthFile(h.pickle, {}, 'hostile');
    const err = await expectRwkvRejection(() => readPth(file), 'BAD_HEADER', [h.names, file]);
    assert.ok(err instanceof FormatError);
    await expectRwkvRejection(() => loadModel(file), 'BAD_HEADER', [h.names]);
    assert.ok(!fs.existsSync(MARKER), 'the payload ran');
  });
}

test('opcodes that build arbitrary objects (INST, OBJ, NEWOBJ, EXT1) are refused even without a global', async () => {
  for (const [what, pickle] of [
    ['INST', enc(`(S'${cmd}'\nios\nsystem\n.`)],
    ['OBJ', enc('\x80\x02(ccollections\nOrderedDict\no.')],
    ['NEWOBJ', enc('\x80\x02ccollections\nOrderedDict\n)\x81.')],
    ['EXT1', enc('\x80\x02\x82\x01.')],
  ] as const) {
    await expectRwkvRejection(() => readPth(pthFile(pickle, {}, what)), 'BAD_HEADER', [what]);
  }
  assert.ok(!fs.existsSync(MARKER));
});

test('REDUCE can call only the allowed functions: a storage type is not callable, BUILD only on dicts', async () => {
  await expectRwkvRejection(() => readPth(pthFile(enc('\x80\x02ctorch\nFloatStorage\n)R.'), {}, 'call-storage')), 'BAD_HEADER', ['not callable']);
  await expectRwkvRejection(() => readPth(pthFile(enc('\x80\x02K\x01}b.'), {}, 'build-int')), 'BAD_HEADER', ['BUILD']);
});

// ---------------------------------------------------------------------------------------------------
// Valid state dicts.

/** A state dict pickle with explicit tensor refs: name, storage type, key, numel, offset, shape, stride. */
function customPickle(
  tensors: readonly { name: string; storage: string; key: string; numel: number; offset: number; shape: number[]; stride: number[] }[],
  opts: { wrap?: string; parameter?: boolean } = {},
): Uint8Array {
  const w = new PickleWriter().proto(2);
  // {'<wrap>': state_dict, 'epoch': 3}, as training checkpoints save it
  if (opts.wrap !== undefined) w.global('collections', 'OrderedDict').tuple(0).reduce().mark().str(opts.wrap);
  w.global('collections', 'OrderedDict').tuple(0).reduce().mark();
  for (const t of tensors) {
    w.str(t.name);
    if (opts.parameter === true) w.global('torch._utils', '_rebuild_parameter');
    w.global('torch._utils', '_rebuild_tensor_v2').mark();
    w.mark().str('storage').global('torch', t.storage).str(t.key).str('cpu').int(t.numel).tuple(5).binpersid();
    w.int(t.offset);
    w.mark();
    for (const d of t.shape) w.int(d);
    w.tuple(4).mark();
    for (const d of t.stride) w.int(d);
    w.tuple(4).bool(false).global('collections', 'OrderedDict').tuple(0).reduce().tuple(6).reduce();
    if (opts.parameter === true) w.bool(false).global('collections', 'OrderedDict').tuple(0).reduce().tuple(3).reduce();
  }
  w.setitems();
  if (opts.wrap !== undefined) w.str('epoch').int(3).setitems();
  return w.stop();
}

test('strided views (a saved transpose) are gathered; offsets into a shared storage work; f16 and bf16 storages load', async () => {
  // storage 0: 6 floats 0..5 viewed as a 3×2 transpose of a 2×3 matrix; storage 1: halves; storage 2: bf16
  const half = new Uint8Array(new Uint16Array([0x3c00, 0x4000, 0xc000]).buffer); // 1, 2, -2
  const bf = new Uint8Array(new Uint16Array([0x3f80, 0x4040]).buffer); // 1, 3
  const pkl = customPickle([
    { name: 't', storage: 'FloatStorage', key: '0', numel: 6, offset: 0, shape: [3, 2], stride: [1, 3] },
    { name: 'tail', storage: 'FloatStorage', key: '0', numel: 6, offset: 4, shape: [2], stride: [1] },
    { name: 'h', storage: 'HalfStorage', key: '1', numel: 3, offset: 0, shape: [3], stride: [1] },
    { name: 'b', storage: 'BFloat16Storage', key: '2', numel: 2, offset: 0, shape: [1, 2], stride: [2, 1] },
  ]);
  const file = pthFile(pkl, { '0': f32Bytes([0, 1, 2, 3, 4, 5]), '1': half, '2': bf }, 'views');
  const s = await readPth(file);
  assert.deepEqual([...f32View(s.tensors.get('t')!)], [0, 3, 1, 4, 2, 5]);
  assert.deepEqual(s.tensors.get('t')!.shape, [3, 2]);
  assert.deepEqual([...f32View(s.tensors.get('tail')!)], [4, 5]);
  assert.equal(s.tensors.get('h')!.dtype, 'f16');
  assert.deepEqual([...s.tensors.get('h')!.data], [...half]);
  assert.equal(s.tensors.get('b')!.dtype, 'bf16');
  assert.deepEqual(s.tensors.get('b')!.shape, [1, 2]);
});

test('nn.Parameter wrappers (_rebuild_parameter) and state dicts wrapped in {"state_dict": …} load as their tensors', async () => {
  const one = [{ name: 'p', storage: 'FloatStorage', key: '0', numel: 2, offset: 0, shape: [2], stride: [1] }];
  const s = await readPth(pthFile(customPickle(one, { parameter: true }), { '0': f32Bytes([7, 8]) }, 'param'));
  assert.deepEqual([...f32View(s.tensors.get('p')!)], [7, 8]);
  const w = await readPth(pthFile(customPickle(one, { wrap: 'state_dict' }), { '0': f32Bytes([5, 6]) }, 'wrapped'));
  assert.deepEqual([...w.tensors.keys()], ['p']);
  assert.deepEqual([...f32View(w.tensors.get('p')!)], [5, 6]);
});

test('malformed archives: missing storage record, storage smaller than the shape, compressed entries, unsupported dtypes, legacy format', async () => {
  const one = [{ name: 'w', storage: 'FloatStorage', key: '0', numel: 4, offset: 0, shape: [4], stride: [1] }];
  await expectRwkvRejection(() => readPth(pthFile(customPickle(one), {}, 'no-record')), 'TRUNCATED', ["'w'", 'data/0']);
  await expectRwkvRejection(() => readPth(pthFile(customPickle(one), { '0': f32Bytes([1, 2]) }, 'short')), 'BAD_HEADER', ["'w'"]);
  const off = [{ name: 'w', storage: 'FloatStorage', key: '0', numel: 4, offset: 2, shape: [4], stride: [1] }];
  await expectRwkvRejection(() => readPth(pthFile(customPickle(off), { '0': f32Bytes([1, 2, 3, 4]) }, 'offset')), 'BAD_HEADER', ['runs past']);
  const dbl = [{ name: 'd', storage: 'DoubleStorage', key: '0', numel: 1, offset: 0, shape: [1], stride: [1] }];
  await expectRwkvRejection(() => readPth(pthFile(customPickle(dbl), { '0': new Uint8Array(8) }, 'double')), 'UNSUPPORTED_DTYPE', ['torch.DoubleStorage', "'d'"]);
  // many views of one storage: more bytes than the file holds
  const views = Array.from({ length: 50 }, (_, i) => ({ name: `v${i}`, storage: 'FloatStorage', key: '0', numel: 1024, offset: 0, shape: [1024], stride: [1] }));
  await expectRwkvRejection(() => readPth(pthFile(customPickle(views), { '0': new Uint8Array(4096) }, 'views')), 'BAD_HEADER', ['more than the whole file']);
  // compressed data.pkl
  const deflated = zlib.deflateRawSync(customPickle(one));
  const zp = tmp('deflate.pth');
  fs.writeFileSync(zp, zip([{ name: 'archive/data.pkl', data: deflated, method: 8 }]));
  await expectRwkvRejection(() => readPth(zp), 'UNSUPPORTED_VERSION', ['compressed']);
  // no data.pkl at all
  const np = tmp('nopkl.pth');
  fs.writeFileSync(np, zip([{ name: 'readme.txt', data: Buffer.from('hi') }]));
  await expectRwkvRejection(() => openCheckpoint(np), 'BAD_HEADER', ['data.pkl']);
  // legacy torch.save (pickled magic number first)
  const lp = tmp('legacy.pth');
  fs.writeFileSync(lp, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
  await expectRwkvRejection(() => openCheckpoint(lp), 'UNSUPPORTED_VERSION', ['legacy']);
  // a ChatRWKV pre-converted file (weights transformed for a strategy)
  const cw = new PickleWriter().proto(2).global('collections', 'OrderedDict').tuple(0).reduce().mark().str('_strategy').str('cpu fp32').setitems().stop();
  await expectRwkvRejection(() => readPth(pthFile(cw, {}, 'chatrwkv')), 'UNSUPPORTED_VERSION', ['ChatRWKV', 'cpu fp32']);
  // a pickle that is not a dict
  await expectRwkvRejection(() => readPth(pthFile(enc('\x80\x02K\x05.'), {}, 'int')), 'BAD_HEADER', ['dict']);
  // big-endian byte order record
  const bp = tmp('be.pth');
  fs.writeFileSync(bp, zip([{ name: 'a/data.pkl', data: customPickle(one) }, { name: 'a/byteorder', data: Buffer.from('big') }, { name: 'a/data/0', data: new Uint8Array(16) }]));
  await expectRwkvRejection(() => readPth(bp), 'UNSUPPORTED_VERSION', ['big']);
});

// ---------------------------------------------------------------------------------------------------
// The fixtures and our writer.

for (const m of MODELS) {
  test(`converted/${m}.pth (torch.save) holds exactly the tensors of its .safetensors twin`, async (t) => {
    const pth = fixture(t, `converted/tiny-rwkv-${m}-FP32.pth`);
    const st = fixture(t, `converted/tiny-rwkv-${m}-FP32.safetensors`);
    if (pth === undefined || st === undefined) return;
    const a = await readPth(pth);
    assert.equal(a.encoding, 'official');
    assertSameTensors(a.tensors, (await readSafetensors(st)).tensors, 'pth vs safetensors');
  });
}

test('our .pth: torch.save\'s layout (archive/data.pkl, data/<i>, version; 64-byte aligned, CRC-valid, only torch\'s opcodes)', async (t) => {
  const st = fixture(t, 'converted/tiny-rwkv-7v0-834K-FP32.safetensors');
  if (st === undefined) return;
  const out = tmp('ours.pth');
  writeCheckpoint(await openCheckpoint(st), out);
  const bytes = fs.readFileSync(out);
  // Walk the local headers: every entry stored, CRC correct, data 64-byte aligned.
  let p = 0;
  const names: string[] = [];
  while (bytes.readUInt32LE(p) === 0x04034b50) {
    const nameLen = bytes.readUInt16LE(p + 26);
    const extraLen = bytes.readUInt16LE(p + 28);
    const size = bytes.readUInt32LE(p + 18);
    const name = bytes.subarray(p + 30, p + 30 + nameLen).toString();
    const data = p + 30 + nameLen + extraLen;
    assert.equal(bytes.readUInt16LE(p + 8), 0, `${name} stored`);
    assert.equal(data % 64, 0, `${name} aligned`);
    assert.equal(crc(bytes.subarray(data, data + size)), bytes.readUInt32LE(p + 14), `${name} CRC`);
    names.push(name);
    p = data + size;
  }
  assert.equal(names[0], 'archive/data.pkl');
  assert.equal(names[names.length - 1], 'archive/version');
  assert.ok(names.includes('archive/data/0'));
  assertSameTensors((await readPth(out)).tensors, (await readSafetensors(st)).tensors, 'round trip');
  // The pickle uses only the opcodes torch.save itself emits for a state dict.
  const pkl = stateDictPickle([{ name: 'a', dtype: 'f32', shape: [2, 3, 4, 5] }, { name: 'b', dtype: 'bf16', shape: [] }]);
  // opcode → operand bytes (-1: two newline-terminated lines; -4: u32 length + bytes; -2: u8 length + bytes)
  const torchOps = new Map<number, number>([
    [0x80, 1], [0x63, -1], [0x71, 1], [0x72, 4], [0x68, 1], [0x6a, 4], [0x29, 0], [0x52, 0], [0x28, 0], [0x58, -4],
    [0x74, 0], [0x85, 0], [0x86, 0], [0x87, 0], [0x51, 0], [0x4b, 1], [0x4d, 2], [0x4a, 4], [0x8a, -2], [0x89, 0], [0x75, 0], [0x2e, 0],
  ]);
  const pb = Buffer.from(pkl);
  let q = 0;
  while (q < pb.byteLength) {
    const op = pb[q++]!;
    const arg = torchOps.get(op);
    assert.ok(arg !== undefined, `opcode 0x${op.toString(16)} at ${q - 1} is not one torch.save emits`);
    if (arg === -1) q = pb.indexOf(0x0a, pb.indexOf(0x0a, q) + 1) + 1;
    else if (arg === -4) q += 4 + pb.readUInt32LE(q);
    else if (arg === -2) q += 1 + pb[q]!;
    else q += arg;
    if (op === 0x2e) break;
  }
  assert.equal(q, pb.byteLength, 'STOP is the last byte');
});

test('a .pth with Hugging Face RWKV-4 names (rwkv.blocks.N.attention.time_mix_key, …) loads as the official model', async (t) => {
  const st = fixture(t, 'converted/tiny-rwkv-4v0-660K-FP32.safetensors');
  if (st === undefined) return;
  const src = await readSafetensors(st);
  const hfName = (name: string): string =>
    name
      .replace(/^emb\.weight$/, 'rwkv.embeddings.weight')
      .replace(/^ln_out\./, 'rwkv.ln_out.')
      .replace(/^blocks\.0\.ln0\./, 'rwkv.blocks.0.pre_ln.')
      .replace(/^blocks\.(\d+)\.(ln[12])\./, 'rwkv.blocks.$1.$2.')
      .replace(/^blocks\.(\d+)\.att\./, 'rwkv.blocks.$1.attention.')
      .replace(/^blocks\.(\d+)\.ffn\./, 'rwkv.blocks.$1.feed_forward.')
      .replace(/time_mix_k$/, 'time_mix_key')
      .replace(/time_mix_v$/, 'time_mix_value')
      .replace(/time_mix_r$/, 'time_mix_receptance');
  const tensors = [...src.tensors.values()];
  const pkl = stateDictPickle(tensors.map((x) => ({ name: hfName(x.name), dtype: x.dtype, shape: x.shape })));
  assert.ok(new TextDecoder().decode(pkl).includes('rwkv.blocks.0.attention.time_mix_key'));
  const storages: Record<string, Uint8Array> = {};
  tensors.forEach((x, i) => (storages[String(i)] = x.data));
  const file = pthFile(pkl, storages, 'hf');
  assertSameTensors((await readPth(file)).tensors, src.tensors, 'HF names → official');
  assert.ok(maxAbsDiff(await logitsAfterIn(await loadModel(file)), await logitsAfterIn(await loadModel(st))) === 0);
});
