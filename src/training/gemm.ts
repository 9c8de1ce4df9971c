// The matrix products of a linear layer y = x·Wᵀ (W: O × I, PyTorch's [out, in]) and its backward:
//   forward         Y  (n × O)  = X (n × I) · Wᵀ
//   backwardInput   dX (n × I)  = dY (n × O) · W
//   backwardWeight  dW (O × I) += dYᵀ · X
// Two implementations: plain TypeScript loops, generic over f32/f64 (the gradient checks run on these),
// and the WebAssembly SIMD kernel of the inference backend (f32, what training runs on). That kernel
// computes only Y = X·Mᵀ for a matrix M in its memory, so the backward products are fed transposed
// copies: dX = dY·(Wᵀ)ᵀ with Wᵀ copied into its memory, and dW = dYᵀ·(Xᵀ)ᵀ with Xᵀ copied there. The
// copies cost O(n·I + O·I) per product against O(n·O·I) for the product itself.
import type { Backend } from '../kernels/backend.js';
import { f32Matrix } from '../kernels/matrix.js';
import { WasmBackend } from '../kernels/wasm-backend.js';
import type { WasmKernels } from '../kernels/wasm-kernels.js';
import type { Vec } from './ops.js';
import { WasmScans, type TrainingScans } from './scans.js';

export interface Gemm {
  /** 'f32' or 'f64': the storage every array handed to this Gemm (and allocated by it) uses. */
  readonly precision: 'f32' | 'f64';
  /** A short description, e.g. "wasm relaxed-simd × 2 threads". */
  readonly name: string;
  /** Y = X·Wᵀ.  y: n × o (overwritten), x: n × i, w: o × i. */
  forward(y: Vec, x: Vec, w: Vec, n: number, o: number, i: number): void;
  /** dX = dY·W.  dx: n × i (overwritten), dy: n × o. */
  backwardInput(dx: Vec, dy: Vec, w: Vec, n: number, o: number, i: number): void;
  /** dW += dYᵀ·X.  dw: o × i. */
  backwardWeight(dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void;
  /** Zeroed storage for a parameter of `length` values that `forward`/`backwardInput` can read fast. */
  allocate(length: number): Vec;
  /** The recurrences on the same kernels (scans.ts), when they have them; else the graphs' TypeScript. */
  readonly scans?: TrainingScans;
}

/** Plain loops; float64 sums. */
export class ReferenceGemm implements Gemm {
  readonly precision: 'f32' | 'f64';
  readonly name: string;

  constructor(precision: 'f32' | 'f64') {
    this.precision = precision;
    this.name = `reference TypeScript (${precision})`;
  }

  allocate(length: number): Vec {
    return this.precision === 'f64' ? new Float64Array(length) : new Float32Array(length);
  }

  forward(y: Vec, x: Vec, w: Vec, n: number, o: number, i: number): void {
    for (let r = 0; r < n; r++) {
      const xo = r * i;
      for (let j = 0; j < o; j++) {
        const wo = j * i;
        let s = 0;
        for (let k = 0; k < i; k++) s += x[xo + k] * w[wo + k];
        y[r * o + j] = s;
      }
    }
  }

  backwardInput(dx: Vec, dy: Vec, w: Vec, n: number, o: number, i: number): void {
    const row = new Float64Array(i);
    for (let r = 0; r < n; r++) {
      row.fill(0);
      for (let j = 0; j < o; j++) {
        const d = dy[r * o + j];
        if (d === 0) continue;
        const wo = j * i;
        for (let k = 0; k < i; k++) row[k] += d * w[wo + k];
      }
      dx.set(row, r * i);
    }
  }

  backwardWeight(dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void {
    for (let r = 0; r < n; r++) {
      const xo = r * i;
      for (let j = 0; j < o; j++) {
        const d = dy[r * o + j];
        if (d === 0) continue;
        const wo = j * i;
        for (let k = 0; k < i; k++) dw[wo + k] += d * x[xo + k];
      }
    }
  }
}

/**
 * rows × cols → cols × rows, in 8 × 8 tiles written a row of `out` at a time: small tiles because the
 * strides are often powers of two, where larger tiles collide in the cache's sets.
 */
export function transpose(out: Float32Array, a: Vec, rows: number, cols: number): void {
  const B = 8;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let c = c0; c < c1; c++) {
        const co = c * rows;
        for (let r = r0; r < r1; r++) out[co + r] = a[r * cols + c];
      }
    }
  }
}

/** The WebAssembly SIMD kernel (f32). Parameters live in the backend's memory (see `allocate`). */
export class WasmGemm implements Gemm {
  readonly precision = 'f32' as const;
  readonly name: string;
  private readonly backend: WasmKernels;
  // Regions of the backend's memory for the transposed operands, grown by reallocation (the backend's
  // allocator never frees, so they are sized once for the largest product and kept).
  private wt: Float32Array = new Float32Array(0);
  private xt: Float32Array = new Float32Array(0);
  // Plain-memory temporaries.
  private dyT: Float32Array = new Float32Array(0);
  private out: Float32Array = new Float32Array(0);

  readonly scans: TrainingScans;

  constructor(backend: WasmKernels) {
    this.backend = backend;
    this.scans = new WasmScans(backend);
    this.name = `wasm ${backend.flavour} × ${backend.threads} thread(s)`;
  }

  allocate(length: number): Float32Array {
    const bytes = this.backend.allocate(length * 4);
    const a = new Float32Array(bytes.buffer, bytes.byteOffset, length);
    a.fill(0);
    return a;
  }

  private region(which: 'wt' | 'xt', length: number): Float32Array {
    const cur = this[which];
    if (cur.length >= length) return cur.subarray(0, length);
    const grown = this.allocate(Math.max(length, Math.ceil(cur.length * 1.5)));
    this[which] = grown;
    return grown.subarray(0, length);
  }

  private owned(w: Vec): Float32Array {
    if (!(w instanceof Float32Array)) throw new TypeError('the wasm kernels take f32 arrays');
    if (this.backend.owns(new Uint8Array(w.buffer, w.byteOffset, 0))) return w;
    // Not in the backend's memory (e.g. a caller's own array): copy it there.
    const r = this.region('wt', w.length);
    r.set(w);
    return r;
  }

  forward(y: Vec, x: Vec, w: Vec, n: number, o: number, i: number): void {
    const m = f32Matrix('w', this.owned(w).subarray(0, o * i), o, i);
    this.backend.matmul(m, x as Float32Array, n, y as Float32Array);
  }

  backwardInput(dx: Vec, dy: Vec, w: Vec, n: number, o: number, i: number): void {
    const wt = this.region('wt', o * i);
    transpose(wt, w, o, i); // i × o
    this.backend.matmul(f32Matrix('wT', wt, i, o), dy as Float32Array, n, dx as Float32Array);
  }

  backwardWeight(dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void {
    const xt = this.region('xt', n * i);
    transpose(xt, x, n, i); // i × n
    if (this.dyT.length < o * n) this.dyT = new Float32Array(o * n);
    const dyT = this.dyT.subarray(0, o * n);
    transpose(dyT, dy, n, o); // o × n
    if (this.out.length < o * i) this.out = new Float32Array(o * i);
    const out = this.out.subarray(0, o * i);
    // (dYᵀ)·(Xᵀ)ᵀ: o × i
    this.backend.matmul(f32Matrix('xT', xt, i, n), dyT, o, out);
    for (let k = 0; k < o * i; k++) dw[k] += out[k]!;
  }
}

/** The Gemm that runs on a backend from createBackend: its WebAssembly kernels, or plain loops for 'reference'. */
export function gemmFor(backend: Backend): Gemm {
  return backend instanceof WasmBackend ? new WasmGemm(backend.kernels) : new ReferenceGemm('f32');
}
