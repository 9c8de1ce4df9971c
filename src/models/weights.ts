// Looks up a model's tensors by name and checks their shapes, turning a missing or misshapen tensor into
// a ModelError that names the file and the tensor.
import { ModelError } from '../errors.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { f32Matrix, matrixFromTensor, toInt8Rows, type Matrix, type MatrixDType, type MatrixKernels } from '../kernels/matrix.js';
import type { NormKernels } from '../kernels/norm.js';
import { dequantize } from '../kernels/quant.js';
import { DTYPES, decodeBF16, f16ToF32Table } from '../tensor/dtype.js';
import { elementCount, f32View, shapeString, u16View, type Tensor } from '../tensor/tensor.js';

/** Fast kernels together with the memory they read from. */
export interface KernelProvider extends MatrixKernels, Partial<NormKernels> {
  /** Whether these kernels can read `bytes` where they are. */
  owns(bytes: Uint8Array): boolean;
  /** Memory the kernels can read. */
  allocate(byteLength: number): Uint8Array;
  /** RWKV-4's WKV over t tokens with σ(r) applied, in place on `state` (aa, bb, pp); see WasmBackend. */
  wkv4?(state: Float32Array, k: Float32Array, v: Float32Array, r: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, c: number, t: number): void;
  /** The v5/v6 WKV over t tokens (w: t × C or C); see WasmBackend. */
  wkv5Sequence?(state: Float32Array, r: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, heads: number, n: number, t: number): void;
  /** The v7 WKV over t tokens; see WasmBackend. */
  wkv7Sequence?(state: Float32Array, r: Float32Array, w: Float32Array, k: Float32Array, v: Float32Array, kk: Float32Array, a: Float32Array, y: Float32Array, heads: number, n: number, t: number): void;
  /** The v5/v6 WKV of one token, in place on `state` (H·N² floats); see WasmBackend. */
  wkv5?(state: Float32Array, r: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, heads: number, n: number): void;
  /** The v7 WKV of one token, in place on `state` (H·N² floats); see WasmBackend. */
  wkv7?(state: Float32Array, r: Float32Array, w: Float32Array, k: Float32Array, v: Float32Array, kk: Float32Array, a: Float32Array, y: Float32Array, heads: number, n: number): void;
}

/** Matrices smaller than this stay in their stored encoding in int8 mode (LoRA factors, tiny models' matrices are all bigger). */
const INT8_MIN_ELEMENTS = 4096;

export class Weights {
  readonly source: TensorSource;
  private readonly kernels: KernelProvider | undefined;
  /** Opt-in int8 mode: big matrices re-encoded as int8 rows here (the backend's memory). */
  private readonly int8: ((bytes: number) => Uint8Array) | undefined;
  /** Matrices held in another encoding than the file's (int8 mode), with their bytes in memory. */
  readonly reencoded = new Map<string, { dtype: MatrixDType; bytes: number }>();
  /** Names read so far, to report tensors a model did not use. */
  private readonly used = new Set<string>();

  constructor(source: TensorSource, kernels?: KernelProvider, int8?: (bytes: number) => Uint8Array) {
    this.source = source;
    this.kernels = kernels;
    this.int8 = int8;
  }

  get file(): string {
    return this.source.file;
  }

  has(name: string): boolean {
    return this.source.tensors.has(name);
  }

  tensor(name: string): Tensor {
    const t = this.source.tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file: this.file, tensor: name });
    this.used.add(name);
    return t;
  }

  /** A tensor of `length` values in any shape with that many elements (e.g. [C], [1, 1, C], [H, N]). */
  vector(name: string, length: number, meaning = ''): Float32Array {
    const t = this.tensor(name);
    const n = elementCount(t.shape);
    if (n !== length) {
      const why = meaning !== '' ? ` (${meaning})` : '';
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)} (${n} values), expected ${length}${why}`, {
        file: this.file,
        tensor: name,
      });
    }
    return toF32(t);
  }

  /** A rows × cols weight matrix (PyTorch order [out, in]), kept in its stored encoding. */
  matrix(name: string, rows: number, cols: number, meaning = ''): Matrix {
    const t = this.tensor(name);
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
      const why = meaning !== '' ? ` (${meaning})` : '';
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected [${rows}, ${cols}]${why}`, {
        file: this.file,
        tensor: name,
      });
    }
    const fast = this.kernels !== undefined && this.kernels.owns(t.data) ? this.kernels : undefined;
    const m = matrixFromTensor(t, rows, cols, fast);
    // int8 mode re-encodes the matrices that are streamed every token; the embedding is only looked up.
    if (this.int8 !== undefined && name !== 'emb.weight' && rows * cols >= INT8_MIN_ELEMENTS) {
      const q = toInt8Rows(m, this.int8, this.kernels);
      this.reencoded.set(name, { dtype: q.dtype, bytes: q.bytes.byteLength });
      return q;
    }
    return m;
  }

  /**
   * A matrix computed at load time (e.g. a LoRA factor transposed from the official layout), rows × cols
   * f32 values, placed where the fast kernels can read it.
   */
  derivedMatrix(name: string, values: Float32Array, rows: number, cols: number): Matrix {
    if (this.kernels === undefined) return f32Matrix(name, values, rows, cols);
    const bytes = this.kernels.allocate(values.byteLength);
    const placed = new Float32Array(bytes.buffer, bytes.byteOffset, values.length);
    placed.set(values);
    return { ...f32Matrix(name, placed, rows, cols), kernels: this.kernels };
  }

  /** The fast kernels, when the model runs on them (for the recurrences that are not matrix products). */
  get fast(): KernelProvider | undefined {
    return this.kernels;
  }

  /** Tensors present in the file that no lookup asked for. */
  unused(): string[] {
    return [...this.source.tensors.keys()].filter((k) => !this.used.has(k));
  }
}

/** A small tensor's values as a fresh f32 array (vectors and LoRA factors; not for big matrices). */
export function toF32(t: Tensor): Float32Array {
  const n = elementCount(t.shape);
  switch (t.dtype) {
    case 'f32':
      return f32View(t).slice(0, n);
    case 'f16': {
      const table = f16ToF32Table();
      const bits = u16View(t);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[bits[i]!]!;
      return out;
    }
    case 'bf16': {
      const bits = u16View(t);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = decodeBF16(bits[i]!);
      return out;
    }
    default: {
      if (!DTYPES[t.dtype].quantized) throw new TypeError(`unexpected dtype ${t.dtype}`);
      const out = new Float32Array(n);
      dequantize(t.dtype, t.data, 0, n, out);
      return out;
    }
  }
}
