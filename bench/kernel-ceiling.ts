// In-cache throughput of each matrix-vector kernel on one thread (values per second): how fast a kernel
// can go when memory is not the limit. A kernel whose ceiling, in bytes, is below the memory bandwidth
// is compute-bound and cannot reach the bandwidth floor however the threads are used.
//   node dist/bench/kernel-ceiling.js   → one JSON line per dtype
import { WasmKernels } from '../src/kernels/wasm-kernels.js';
import { matrixFromTensor, toInt8Rows, type Matrix } from '../src/kernels/matrix.js';
import { DTYPES, type DType } from '../src/tensor/dtype.js';

export interface CeilingResult {
  dtype: string;
  valuesPerSecond: number;
  bytesPerSecond: number;
}

const COLS = 768;

/** A matrix of `rows` × 768 with valid, varied contents, small enough (≤ 0.8 MB) to stay in L2. */
function matrix(backend: WasmKernels, dtype: DType, rows: number): Matrix {
  const info = DTYPES[dtype];
  const bytes = backend.allocate(((rows * COLS) / info.blockSize) * info.blockBytes);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.imul(i, 2654435761) >>> 24) & 0xff;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (info.blockSize === 32) {
    for (let o = 0; o < bytes.length; o += info.blockBytes) {
      view.setUint16(o, 0x2c00, true); // scale 1/16
      if (dtype === 'q4_1' || dtype === 'q5_1') view.setUint16(o + 2, 0xac00, true);
    }
  } else if (dtype === 'f32') {
    for (let i = 0; i < rows * COLS; i++) view.setFloat32(4 * i, ((i % 13) - 6) * 0.1, true);
  } else {
    for (let i = 0; i < rows * COLS; i++) view.setUint16(2 * i, dtype === 'bf16' ? 0x3f80 + (i % 100) : 0x3c00 + (i % 100), true);
  }
  return matrixFromTensor({ name: dtype, dtype, shape: [rows, COLS], data: bytes }, rows, COLS);
}

function measure(backend: WasmKernels, m: Matrix, bytes: number): CeilingResult {
  const x = new Float32Array(COLS).map((_, i) => Math.sin(i));
  const y = new Float32Array(m.rows);
  for (let i = 0; i < 200; i++) backend.matvec(m, x, y);
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const n = 400;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) backend.matvec(m, x, y);
    best = Math.min(best, (performance.now() - t0) / 1000 / n);
  }
  return { dtype: m.dtype, valuesPerSecond: (m.rows * COLS) / best, bytesPerSecond: bytes / best };
}

const backend = await WasmKernels.create({ threads: 1 });
for (const dtype of ['f32', 'f16', 'bf16', 'q8_0', 'q5_1', 'q5_0', 'q4_1', 'q4_0'] as DType[]) {
  const rows = dtype === 'f32' ? 256 : 512;
  const m = matrix(backend, dtype, rows);
  process.stdout.write(JSON.stringify(measure(backend, m, m.bytes.byteLength)) + '\n');
}
const int8 = toInt8Rows(matrix(backend, 'f32', 512), backend.allocate);
process.stdout.write(JSON.stringify(measure(backend, int8, int8.bytes.byteLength)) + '\n');

/**
 * The few-rows product (a batch of t sequences generating together, matmulRows) in cache, by t: products
 * per second counted in weight·input pairs, so an ideal kernel's figure grows with t until it is compute-bound.
 */
function measureRows(m: Matrix, t: number): { dtype: string; t: number; valuesPerSecond: number } {
  const x = backend.allocate(4 * t * COLS);
  const xf = new Float32Array(x.buffer, x.byteOffset, t * COLS).map((_, i) => Math.sin(i));
  const y = backend.allocate(4 * t * m.rows);
  for (let i = 0; i < 100; i++) backend.matmulAt(m, xf.byteOffset, t, y.byteOffset);
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) backend.matmulAt(m, xf.byteOffset, t, y.byteOffset);
    best = Math.min(best, (performance.now() - t0) / 1000 / n);
  }
  return { dtype: m.dtype, t, valuesPerSecond: (t * m.rows * COLS) / best };
}
const fewRows = Number(process.env.FEW_ROWS ?? 256);
for (const dtype of ['f32', 'q8_0'] as DType[]) {
  const m = matrix(backend, dtype, fewRows);
  for (let t = 1; t <= 8; t++) process.stdout.write(JSON.stringify(measureRows(m, t)) + '\n');
}
await backend.close();
