// Looks up a model's tensors by name, checks their shapes (a missing or misshapen tensor is a ModelError
// that names the file and the tensor) and places them on the model's backend.
import { ModelError } from '../errors.js';
import type { TensorSource } from '../formats/tensor-source.js';
import type { Backend, DeviceMatrix, DeviceTensor } from '../kernels/backend.js';
import { f32Matrix, matrixFromTensor, toInt8Rows, type MatrixDType } from '../kernels/matrix.js';
import { dequantize } from '../kernels/quant.js';
import { DTYPES, decodeBF16, f16ToF32Table } from '../tensor/dtype.js';
import { elementCount, f32View, shapeString, u16View, type Tensor } from '../tensor/tensor.js';

/** Matrices smaller than this stay in their stored encoding in int8 mode (LoRA factors; tiny models' matrices are all bigger). */
const INT8_MIN_ELEMENTS = 4096;

/**
 * A model's tensors on its backend: matrices placed in their stored encoding, parameters uploaded as
 * 1 × n f32 rows. The source is already in the one in-memory convention (see models/load.ts).
 */
export class Weights {
  readonly source: TensorSource;
  readonly backend: Backend;
  /** Opt-in int8 mode: big matrices re-encoded as int8 rows. */
  private readonly int8: boolean;
  /** Matrices held in another encoding than the file's (int8 mode), with their bytes in memory. */
  readonly reencoded = new Map<string, { dtype: MatrixDType; bytes: number }>();
  /** Names read so far, to report tensors a model did not use. */
  private readonly used = new Set<string>();

  /** The tensors as the file stores them (`source` may hold converted copies of a few). */
  readonly original: TensorSource;

  constructor(source: TensorSource, backend: Backend, int8 = false, original: TensorSource = source) {
    this.source = source;
    this.original = original;
    this.backend = backend;
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

  /** A tensor of `length` values in any shape with that many elements (e.g. [C], [1, 1, C], [H, N]), on the host. */
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

  /** `vector` uploaded as a 1 × length parameter. */
  param(name: string, length: number, meaning = ''): DeviceTensor {
    return this.upload(this.vector(name, length, meaning));
  }

  /** Values computed at load (a derived parameter) as a 1 × n tensor. */
  upload(values: Float32Array): DeviceTensor {
    return this.backend.upload(values, 1, values.length);
  }

  /** A rows × cols weight matrix (PyTorch order [out, in]), kept in its stored encoding. */
  matrix(name: string, rows: number, cols: number, meaning = ''): DeviceMatrix {
    const t = this.tensor(name);
    if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
      const why = meaning !== '' ? ` (${meaning})` : '';
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected [${rows}, ${cols}]${why}`, {
        file: this.file,
        tensor: name,
      });
    }
    const m = matrixFromTensor(t, rows, cols);
    // int8 mode re-encodes the matrices that are streamed every token; the embedding is only looked up.
    if (this.int8 && name !== 'emb.weight' && rows * cols >= INT8_MIN_ELEMENTS) {
      const q = toInt8Rows(m, (n) => this.backend.allocateBytes(n));
      this.reencoded.set(name, { dtype: q.dtype, bytes: q.bytes.byteLength });
      return this.backend.matrix(q);
    }
    return this.backend.matrix(m);
  }

  /**
   * Rows [first, first + count) of a tensor read as a rows × cols matrix (any shape with that many
   * elements), as a matrix of its own in the stored encoding (e.g. one chunk of v6's mix LoRA).
   */
  matrixRows(name: string, rows: number, cols: number, first: number, count: number, meaning = ''): DeviceMatrix {
    const t = this.tensor(name);
    if (elementCount(t.shape) !== rows * cols) {
      const why = meaning !== '' ? ` (${meaning})` : '';
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${rows} × ${cols} values${why}`, { file: this.file, tensor: name });
    }
    const rowBytes = t.data.byteLength / rows;
    const part: Tensor = { name: `${name}[${first}:${first + count}]`, dtype: t.dtype, shape: [count, cols], data: t.data.subarray(first * rowBytes, (first + count) * rowBytes) };
    return this.backend.matrix(matrixFromTensor(part, count, cols));
  }

  /** A matrix of rows × cols f32 values computed at load (e.g. a row range of a stored matrix). */
  derivedMatrix(name: string, values: Float32Array, rows: number, cols: number): DeviceMatrix {
    return this.backend.matrix(f32Matrix(name, values, rows, cols));
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
