// PyTorch checkpoints (`torch.save`, format of PyTorch ≥ 1.6): a ZIP archive holding
//   <dir>/data.pkl       the pickled state dict: an OrderedDict name → torch._utils._rebuild_tensor_v2(
//                        storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
//                        where each storage is a persistent id ('storage', torch.FloatStorage, key,
//                        location, numel)
//   <dir>/data/<key>     each storage's raw little-endian bytes, stored uncompressed
//   <dir>/version, <dir>/byteorder (optional, 'little')
// data.pkl is read with the restricted unpickler; the only globals it resolves are the few a state dict
// needs. Each tensor is then read from its storage record straight into its final buffer.
import { FormatError } from '../errors.js';
import type { DType } from '../tensor/dtype.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import type { ByteSourceInput } from './byte-source.js';
import { isHuggingFaceNames, officialFromHuggingFace } from './names.js';
import { PickleDict, PickleGlobal, PickleTuple, PickleWriter, unpickle, type PickleObject, type PickleValue } from './pickle.js';
import { SourceReader, withReader, type ReadOptions } from './source-reader.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from './tensor-source.js';
import { readZipDirectory, requireStored, type ZipEntry } from './zip.js';

/** The torch storage types we load, with their element types. */
const STORAGES: ReadonlyMap<string, { dtype: DType; size: number }> = new Map([
  ['FloatStorage', { dtype: 'f32', size: 4 }],
  ['HalfStorage', { dtype: 'f16', size: 2 }],
  ['BFloat16Storage', { dtype: 'bf16', size: 2 }],
]);

/** Other torch storage types: recognised, so that the error says "unsupported dtype", not "unsafe". */
const OTHER_STORAGES = new Set([
  'DoubleStorage',
  'LongStorage',
  'IntStorage',
  'ShortStorage',
  'CharStorage',
  'ByteStorage',
  'BoolStorage',
  'ComplexFloatStorage',
  'ComplexDoubleStorage',
  'UntypedStorage',
]);

const ALLOWED_GLOBALS =
  'collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.FloatStorage, torch.HalfStorage, torch.BFloat16Storage';

interface StorageRef extends PickleObject {
  readonly pickleKind: 'storage';
  readonly key: string;
  readonly storageType: string;
  readonly numel: number;
}

interface TensorRef extends PickleObject {
  readonly pickleKind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}

function isObject<K extends string>(v: PickleValue, kind: K): v is PickleObject & { pickleKind: K } {
  return typeof v === 'object' && v !== null && 'pickleKind' in v && (v as PickleObject).pickleKind === kind;
}

function intTuple(v: PickleValue, what: string, fail: (m: string) => Error): number[] {
  if (!(v instanceof PickleTuple)) throw fail(`${what} is not a tuple`);
  return v.items.map((x) => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw fail(`${what} holds ${String(x)}, not a non-negative integer`);
    return x;
  });
}

/** Whether the first bytes are the legacy (pre-1.6) torch.save format: a pickled magic number. */
export function looksLikeLegacyTorch(head: Uint8Array): boolean {
  // PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c
  return head.byteLength >= 3 && head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a;
}

/** Reads a PyTorch checkpoint (a path, URL, Blob, buffer or ByteSource), each tensor into a buffer from `allocate`. */
export function readPth(source: ByteSourceInput, allocate: TensorAllocator = defaultAllocator, options: ReadOptions = {}): Promise<TensorSource> {
  return withReader(source, options, (reader) => readPthFrom(reader, allocate));
}

export async function readPthFrom(reader: SourceReader, allocate: TensorAllocator): Promise<TensorSource> {
  const file = reader.name;
  const entries = await readZipDirectory(reader);
  const pkl = entries.find((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
  if (pkl === undefined) throw new FormatError('BAD_HEADER', 'a zip archive without data.pkl: not a PyTorch checkpoint', { file });
  requireStored(pkl, file);
  const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
  const byName = new Map<string, ZipEntry>();
  for (const e of entries) byName.set(e.name, e);
  const byteorder = byName.get(`${prefix}byteorder`);
  if (byteorder !== undefined && byteorder.size <= 16) {
    requireStored(byteorder, file);
    const order = new TextDecoder().decode(await reader.read(byteorder.dataOffset, byteorder.size, { field: 'byteorder' })).trim();
    if (order !== 'little') throw new FormatError('UNSUPPORTED_VERSION', `byte order '${order}' is not supported (little-endian only)`, { file });
  }

  const refs = parseStateDict(await reader.read(pkl.dataOffset, pkl.size, { field: 'data.pkl' }), file);

  // Check every tensor against its record (and so against the file size) before allocating any.
  const hf = isHuggingFaceNames(refs.keys());
  const plans: { name: string; source: string; ref: TensorRef; entry: ZipEntry; info: { dtype: DType; size: number } }[] = [];
  const seen = new Set<string>();
  for (const [source, ref] of refs) {
    const name = hf ? officialFromHuggingFace(source) : source;
    const where = { file, tensor: name };
    const info = STORAGES.get(ref.storage.storageType);
    if (info === undefined) {
      throw new FormatError('UNSUPPORTED_DTYPE', `storage type torch.${ref.storage.storageType} is not supported (Float, Half, BFloat16 only)`, where);
    }
    const entry = byName.get(`${prefix}data/${ref.storage.key}`);
    if (entry === undefined) throw new FormatError('TRUNCATED', `its storage record data/${ref.storage.key} is missing from the archive`, where);
    requireStored(entry, file);
    if (ref.storage.numel * info.size > entry.size) {
      throw new FormatError('BAD_HEADER', `storage ${ref.storage.key} declares ${ref.storage.numel} values but its record has ${entry.size} bytes`, where);
    }
    const count = elementCount(ref.shape);
    if (count > 0) {
      let last = ref.offset;
      for (let i = 0; i < ref.shape.length; i++) last += (ref.shape[i]! - 1) * ref.stride[i]!;
      if ((last + 1) * info.size > entry.size) {
        throw new FormatError('BAD_HEADER', `shape [${ref.shape.join(', ')}] at offset ${ref.offset} runs past its storage (${entry.size} bytes)`, where);
      }
    }
    if (seen.has(name)) throw new FormatError('BAD_HEADER', 'appears twice', where);
    seen.add(name);
    plans.push({ name, source, ref, entry, info });
  }
  if (plans.length === 0) throw new FormatError('TRUNCATED', 'the state dict holds no tensors', { file });
  // Views of one storage would each get their own buffer: bound the total by the file, so that a small
  // file cannot make us allocate more than it holds.
  let total = 0;
  for (const p of plans) total += elementCount(p.ref.shape) * p.info.size;
  if (total > reader.size) {
    throw new FormatError('BAD_HEADER', `the tensors need ${total} bytes, more than the whole file (${reader.size}); views sharing storage are not supported`, {
      file,
    });
  }

  const tensors = new Map<string, Tensor>();
  for (const { name, source, ref, entry, info } of plans) {
    const count = elementCount(ref.shape);
    const data = allocate(count * info.size);
    if (count > 0) {
      if (isContiguous(ref.shape, ref.stride)) {
        await reader.readInto(data, entry.dataOffset + ref.offset * info.size, { tensor: source });
      } else {
        await gather(reader, entry, ref, info.size, data, source);
      }
    }
    tensors.set(name, { name, dtype: info.dtype, shape: ref.shape, data });
  }
  return { format: 'pth', file, encoding: 'official', tensors, declared: {} };
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i]!;
  }
  return true;
}

/** A strided view (e.g. a saved transpose): read its span of the storage, then copy element by element. */
async function gather(reader: SourceReader, entry: ZipEntry, ref: TensorRef, size: number, out: Uint8Array, tensor: string): Promise<void> {
  let last = ref.offset;
  for (let i = 0; i < ref.shape.length; i++) last += (ref.shape[i]! - 1) * ref.stride[i]!;
  const span = await reader.read(entry.dataOffset + ref.offset * size, (last - ref.offset + 1) * size, { tensor });
  const nd = ref.shape.length;
  const idx = new Array<number>(nd).fill(0);
  const count = elementCount(ref.shape);
  let src = 0;
  for (let k = 0; k < count; k++) {
    out.set(span.subarray(src * size, src * size + size), k * size);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      src += ref.stride[d]!;
      if (idx[d]! < ref.shape[d]!) break;
      src -= ref.stride[d]! * ref.shape[d]!;
      idx[d] = 0;
    }
  }
}

/** Unpickles data.pkl into name → tensor reference, resolving only the allowed globals. */
export function parseStateDict(pickle: Uint8Array, file: string): Map<string, TensorRef> {
  const fail = (m: string): FormatError => new FormatError('BAD_HEADER', `data.pkl: ${m}`, { file });
  const resolveGlobal = (module: string, name: string): PickleGlobal => {
    const q = `${module}.${name}`;
    if (q === 'collections.OrderedDict') {
      return new PickleGlobal(module, name, (args) => {
        if (args.length !== 0) throw fail('OrderedDict with arguments');
        return new PickleDict();
      });
    }
    if (q === 'torch._utils._rebuild_tensor_v2') {
      return new PickleGlobal(module, name, (args): TensorRef => {
        if (args.length < 4) throw fail('_rebuild_tensor_v2 with fewer than 4 arguments');
        const storage = args[0]!;
        if (!isObject(storage, 'storage')) throw fail('_rebuild_tensor_v2 of something that is not a storage');
        const offset = args[1];
        if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw fail('bad storage offset');
        const shape = intTuple(args[2]!, 'size', fail);
        const stride = intTuple(args[3]!, 'stride', fail);
        if (shape.length !== stride.length) throw fail('size and stride differ in length');
        return { pickleKind: 'tensor', storage: storage as StorageRef, offset, shape, stride };
      });
    }
    if (q === 'torch._utils._rebuild_parameter') {
      return new PickleGlobal(module, name, (args) => {
        if (args.length < 1 || !isObject(args[0]!, 'tensor')) throw fail('_rebuild_parameter of something that is not a tensor');
        return args[0]!;
      });
    }
    if (module === 'torch' && (STORAGES.has(name) || OTHER_STORAGES.has(name))) return new PickleGlobal(module, name);
    throw new FormatError(
      'BAD_HEADER',
      `data.pkl refers to the global '${q}', which a state dict does not need; refusing to load it (allowed: ${ALLOWED_GLOBALS})`,
      { file },
    );
  };
  const persistentLoad = (pid: PickleValue): StorageRef => {
    if (!(pid instanceof PickleTuple) || pid.items.length < 5 || pid.items[0] !== 'storage') throw fail('persistent id is not a storage');
    const [, type, key, , numel] = pid.items;
    if (!(type instanceof PickleGlobal) || type.module !== 'torch') throw fail('storage type is not a torch storage');
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(key)) throw fail('bad storage key');
    if (typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) throw fail('bad storage size');
    return { pickleKind: 'storage', key, storageType: type.name, numel };
  };
  const root = unpickle(pickle, { resolveGlobal, persistentLoad, error: fail });
  const out = new Map<string, TensorRef>();
  const collect = (d: PickleDict): void => {
    for (const [k, v] of d.entries) if (typeof k === 'string' && isObject(v, 'tensor')) out.set(k, v as TensorRef);
  };
  if (!(root instanceof PickleDict)) throw fail('the pickle does not hold a dict');
  // ChatRWKV's convert_and_save_and_exit stores weights already transformed for one strategy (and says
  // so in '_strategy'); they are not the official parameters and would load as a wrong model.
  const strategy = root.entries.get('_strategy');
  if (strategy !== undefined) {
    throw new FormatError(
      'UNSUPPORTED_VERSION',
      `a ChatRWKV pre-converted checkpoint (strategy '${typeof strategy === 'string' ? strategy : '?'}'); convert from the original .pth instead`,
      { file },
    );
  }
  collect(root);
  // Training checkpoints wrap the weights: {'state_dict': {...}} or {'model': {...}}.
  if (out.size === 0) {
    for (const k of ['state_dict', 'model', 'module']) {
      const inner = root.entries.get(k);
      if (inner instanceof PickleDict) collect(inner);
      if (out.size > 0) break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writer: the layout torch.save produces for an OrderedDict of contiguous tensors, loadable with
// torch.load(..., weights_only=True).

export const STORAGE_OF: Partial<Record<DType, string>> = { f32: 'FloatStorage', f16: 'HalfStorage', bf16: 'BFloat16Storage' };

/** The pickle of an OrderedDict of tensors, storage i = tensor i (protocol 2, as torch.save writes). */
export function stateDictPickle(tensors: readonly { name: string; dtype: DType; shape: readonly number[] }[]): Uint8Array {
  const w = new PickleWriter().proto(2);
  // memo: 0 OrderedDict, 1 _rebuild_tensor_v2, 2.. storage types
  w.global('collections', 'OrderedDict').put(0).tuple(0).reduce();
  const storageMemo = new Map<string, number>();
  let first = true;
  const BATCH = 1000; // pickle's SETITEMS batch size
  let inBatch = 0;
  w.mark();
  tensors.forEach((t, i) => {
    const storage = STORAGE_OF[t.dtype];
    if (storage === undefined) throw new TypeError(`internal: no torch storage for ${t.dtype}`);
    if (inBatch === BATCH) {
      w.setitems().mark();
      inBatch = 0;
    }
    w.str(t.name);
    if (first) w.global('torch._utils', '_rebuild_tensor_v2').put(1);
    else w.get(1);
    first = false;
    w.mark().mark().str('storage');
    const m = storageMemo.get(storage);
    if (m === undefined) {
      const slot = 2 + storageMemo.size;
      storageMemo.set(storage, slot);
      w.global('torch', storage).put(slot);
    } else {
      w.get(m);
    }
    const numel = elementCount(t.shape);
    w.str(String(i)).str('cpu').int(numel).tuple(5).binpersid();
    w.int(0);
    const shapeCount = t.shape.length;
    if (shapeCount > 3) w.mark();
    for (const d of t.shape) w.int(d);
    w.tuple(shapeCount);
    if (shapeCount > 3) w.mark();
    let s = 1;
    const strides = t.shape.map(() => 0);
    for (let k = t.shape.length - 1; k >= 0; k--) {
      strides[k] = s;
      s *= t.shape[k]!;
    }
    for (const d of strides) w.int(d);
    w.tuple(shapeCount);
    w.bool(false);
    w.get(0).tuple(0).reduce();
    w.tuple(6).reduce();
    inBatch++;
  });
  w.setitems();
  return w.stop();
}
