// Writing GGUF v3 files (Node only: through the formats layer's atomic file writer). The reader, and the
// mapping of official tensors onto llama.cpp's layout (ggufLayout), are in gguf.ts, which runs anywhere.
import { FormatError } from '../errors.js';
import {
  GGML_ID,
  GGUF_DEFAULT_ALIGNMENT as DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS as MAX_DIMS,
  T_ARRAY,
  T_BOOL,
  T_F32,
  T_I32,
  T_STRING,
  T_U32,
  type GgufKv,
} from './gguf.js';
import { FileWriter, type OutTensor } from './writer.js';

class ByteBuilder {
  private buf = new Uint8Array(1 << 16);
  len = 0;
  private readonly enc = new TextEncoder();

  private ensure(k: number): DataView {
    if (this.len + k > this.buf.byteLength) {
      let cap = this.buf.byteLength * 2;
      while (cap < this.len + k) cap *= 2;
      const b = new Uint8Array(cap);
      b.set(this.buf.subarray(0, this.len));
      this.buf = b;
    }
    return new DataView(this.buf.buffer);
  }

  u32(v: number): this {
    this.ensure(4).setUint32(this.len, v, true);
    this.len += 4;
    return this;
  }

  u64(v: number): this {
    this.ensure(8).setBigUint64(this.len, BigInt(v), true);
    this.len += 8;
    return this;
  }

  i32(v: number): this {
    this.ensure(4).setInt32(this.len, v, true);
    this.len += 4;
    return this;
  }

  f32(v: number): this {
    this.ensure(4).setFloat32(this.len, v, true);
    this.len += 4;
    return this;
  }

  u8(v: number): this {
    this.ensure(1).setUint8(this.len, v);
    this.len += 1;
    return this;
  }

  string(s: string): this {
    const b = this.enc.encode(s);
    this.u64(b.byteLength);
    this.ensure(b.byteLength);
    this.buf.set(b, this.len);
    this.len += b.byteLength;
    return this;
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** Writes a GGUF v3 file: the metadata, then the tensors (GGUF names and PyTorch-order shapes) aligned to 32. */
export function writeGguf(path: string, kvs: readonly GgufKv[], tensors: readonly OutTensor[]): void {
  const h = new ByteBuilder();
  h.u32(GGUF_MAGIC).u32(3).u64(tensors.length).u64(kvs.length + 1);
  h.string('general.alignment').u32(T_U32).u32(DEFAULT_ALIGNMENT);
  for (const kv of kvs) {
    h.string(kv.key);
    switch (kv.type) {
      case 'u32':
        h.u32(T_U32).u32(kv.value);
        break;
      case 'f32':
        h.u32(T_F32).f32(kv.value);
        break;
      case 'bool':
        h.u32(T_BOOL).u8(kv.value ? 1 : 0);
        break;
      case 'string':
        h.u32(T_STRING).string(kv.value);
        break;
      case 'string[]':
        h.u32(T_ARRAY).u32(T_STRING).u64(kv.value.length);
        for (const v of kv.value) h.string(v);
        break;
      case 'i32[]':
        h.u32(T_ARRAY).u32(T_I32).u64(kv.value.length);
        for (const v of kv.value) h.i32(v);
        break;
    }
  }
  let offset = 0;
  const align = (n: number): number => Math.ceil(n / DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
  for (const t of tensors) {
    if (t.shape.length < 1 || t.shape.length > MAX_DIMS) {
      throw new FormatError('BAD_SHAPE', `has ${t.shape.length} dimensions; GGUF holds 1 to ${MAX_DIMS}`, { file: path, tensor: t.name });
    }
    h.string(t.name).u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) h.u64(t.shape[d]!);
    h.u32(GGML_ID[t.dtype]).u64(offset);
    offset = align(offset + t.byteLength);
  }
  const w = FileWriter.create(path);
  try {
    w.write(h.bytes());
    w.align(DEFAULT_ALIGNMENT);
    const dataStart = w.position;
    for (const t of tensors) {
      w.pad(dataStart + align(w.position - dataStart) - w.position);
      w.writeTensor(t);
    }
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}
