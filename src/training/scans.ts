// The trainer's recurrences on the WebAssembly kernels: RWKV-4's WKV scan and its backward in f32 SIMD,
// split by channels over the worker pool (asm/kernels.ts wkv4TrainForward / wkv4TrainBackward). Same
// contract as ops.ts wkvForward / wkvBackward, whose float64 TypeScript is the reference they are tested
// against (test/training-scans.test.ts); a Gemm without scans, f64 training and widths that are not a
// multiple of 4 use that TypeScript.
import type { WasmKernels } from '../kernels/wasm-kernels.js';
import type { Vec } from './ops.js';

export interface TrainingScans {
  /** y = WKV(k, v) (ops.ts wkvForward).  k, v, y: (B·T) × C; timeDecay (raw), timeFirst: C. */
  wkv4Forward(y: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** dk, dv, dTimeDecay, dTimeFirst += their gradients given dy (ops.ts wkvBackward). */
  wkv4Backward(dk: Vec, dv: Vec, dTimeDecay: Vec, dTimeFirst: Vec, dy: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** Whether these kernels take arrays of this kind and a width of c channels. */
  takes(c: number, ...arrays: Vec[]): boolean;
}

export class WasmScans implements TrainingScans {
  private decay = new Float32Array(0);
  private first = new Float32Array(0);
  private dk = new Float32Array(0);
  private dv = new Float32Array(0);

  constructor(private readonly kernels: WasmKernels) {}

  takes(c: number, ...arrays: Vec[]): boolean {
    return c % 4 === 0 && arrays.every((a) => a instanceof Float32Array);
  }

  /** w = −exp(time_decay) and u, as f32 (C each). */
  private channels(timeDecay: Vec, timeFirst: Vec, c: number): [Float32Array, Float32Array] {
    if (this.decay.length !== c) {
      this.decay = new Float32Array(c);
      this.first = new Float32Array(c);
    }
    for (let i = 0; i < c; i++) {
      this.decay[i] = -Math.exp(timeDecay[i]!);
      this.first[i] = timeFirst[i]!;
    }
    return [this.decay, this.first];
  }

  wkv4Forward(y: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void {
    const [w, u] = this.channels(timeDecay, timeFirst, c);
    this.kernels.wkv4TrainForward(y as Float32Array, k as Float32Array, v as Float32Array, w, u, b, t, c);
  }

  wkv4Backward(dk: Vec, dv: Vec, dTimeDecay: Vec, dTimeFirst: Vec, dy: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void {
    const n = b * t * c;
    const [w, u] = this.channels(timeDecay, timeFirst, c);
    if (this.dk.length < n) {
      this.dk = new Float32Array(n);
      this.dv = new Float32Array(n);
    }
    const gw = new Float32Array(c);
    const gu = new Float32Array(c);
    this.kernels.wkv4TrainBackward(this.dk, this.dv, gw, gu, dy as Float32Array, k as Float32Array, v as Float32Array, w, u, b, t, c);
    for (let i = 0; i < n; i++) {
      dk[i] += this.dk[i]!;
      dv[i] += this.dv[i]!;
    }
    for (let i = 0; i < c; i++) {
      dTimeDecay[i] += gw[i]! * w[i]!; // dw/d time_decay = w
      dTimeFirst[i] += gu[i]!;
    }
  }
}
