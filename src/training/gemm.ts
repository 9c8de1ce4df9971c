// The matrix products of a linear layer y = x·Wᵀ (W: O × I, PyTorch's [out, in]) and its backward:
//   forward         Y  (n × O)  = X (n × I) · Wᵀ
//   backwardInput   dX (n × I)  = dY (n × O) · W
//   backwardWeight  dW (O × I) += dYᵀ · X
// Two implementations: plain TypeScript loops, generic over f32/f64 (the gradient checks run on these),
// and the WebAssembly SIMD kernel of the inference backend (f32, what training runs on). That kernel
// computes only Y = X·Mᵀ for a matrix M in its memory, so the backward products are fed transposed
// copies, made in its memory by a SIMD transpose (WasmKernels gradInput / gradWeight): dX = dY·(Wᵀ)ᵀ and
// dW = dYᵀ·(Xᵀ)ᵀ. The copies cost O(n·I + O·I) per product against O(n·O·I) for the product itself.
import type { Backend } from '../kernels/backend.js';
import { f32Matrix } from '../kernels/matrix.js';
import { WasmBackend } from '../kernels/wasm-backend.js';
import type { WasmKernels } from '../kernels/wasm-kernels.js';
import type { Vec } from './ops.js';
import { WasmTrainingKernels, type TrainingKernels } from './kernels.js';

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
  /** The recurrences and element-wise operations on the same kernels (kernels.ts), when it has them; else the graphs' TypeScript. */
  readonly kernels?: TrainingKernels;
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

/** The WebAssembly SIMD kernel (f32). Parameters live in the backend's memory (see `allocate`). */
export class WasmGemm implements Gemm {
  readonly precision = 'f32' as const;
  readonly name: string;
  private readonly backend: WasmKernels;
  // A region of the backend's memory for weights handed over from elsewhere, grown by reallocation (the
  // backend's allocator never frees, so it is sized once for the largest and kept).
  private wt: Float32Array = new Float32Array(0);

  readonly kernels: TrainingKernels;

  constructor(backend: WasmKernels) {
    this.backend = backend;
    this.kernels = new WasmTrainingKernels(backend);
    this.name = `wasm ${backend.flavour} × ${backend.threads} thread(s)`;
  }

  allocate(length: number): Float32Array {
    const bytes = this.backend.allocate(length * 4);
    const a = new Float32Array(bytes.buffer, bytes.byteOffset, length);
    a.fill(0);
    return a;
  }

  private region(length: number): Float32Array {
    if (this.wt.length >= length) return this.wt.subarray(0, length);
    this.wt = this.allocate(Math.max(length, Math.ceil(this.wt.length * 1.5)));
    return this.wt.subarray(0, length);
  }

  private owned(w: Vec): Float32Array {
    if (!(w instanceof Float32Array)) throw new TypeError('the wasm kernels take f32 arrays');
    if (this.backend.owns(new Uint8Array(w.buffer, w.byteOffset, 0))) return w;
    // Not in the backend's memory (e.g. a caller's own array): copy it there.
    const r = this.region(w.length);
    r.set(w);
    return r;
  }

  forward(y: Vec, x: Vec, w: Vec, n: number, o: number, i: number): void {
    const m = f32Matrix('w', this.owned(w).subarray(0, o * i), o, i);
    // Activations in the kernels' memory (the graphs' buffers) are read and written in place.
    if (this.inMemory(x) && this.inMemory(y)) this.backend.matmulAt(m, x.byteOffset, n, y.byteOffset);
    else this.backend.matmul(m, x as Float32Array, n, y as Float32Array);
  }

  private inMemory(a: Vec): a is Float32Array {
    return a instanceof Float32Array && this.backend.owns(new Uint8Array(a.buffer, a.byteOffset, 0));
  }

  backwardInput(dx: Vec, dy: Vec, w: Vec, n: number, o: number, i: number): void {
    this.backend.gradInput(dx as Float32Array, dy as Float32Array, this.owned(w).subarray(0, o * i), n, o, i);
  }

  backwardWeight(dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void {
    this.backend.gradWeight(dw as Float32Array, dy as Float32Array, x as Float32Array, n, o, i);
  }
}

/** The Gemm that runs on a backend from createBackend: its WebAssembly kernels, or plain loops for 'reference'. */
export function gemmFor(backend: Backend): Gemm {
  return backend instanceof WasmBackend ? new WasmGemm(backend.kernels) : new ReferenceGemm('f32');
}
