// The trainer's recurrences on the WebAssembly kernels, in f32 SIMD over the worker pool: RWKV-4's WKV scan
// and its backward split by channels (asm/kernels.ts wkv4Train*), RWKV-7's chunked WKV and its backward
// split by (sequence, head) pairs (wkv7Train*). Same contracts as ops.ts wkvForward / wkvBackward and
// ops-v7.ts wkv7Forward / wkv7Backward, whose float64 TypeScript is the reference they are tested against
// (test/training-scans.test.ts); a Gemm without scans, f64 training, widths or head sizes that are not a
// multiple of 4, and a tuned initial state (state tuning) use that TypeScript.
import type { WasmKernels } from '../kernels/wasm-kernels.js';
import type { Vec } from './ops.js';
import { WKV7_CHUNK } from './ops-v7.js';

export interface TrainingScans {
  /** y = WKV(k, v) (ops.ts wkvForward).  k, v, y: (B·T) × C; timeDecay (raw), timeFirst: C. */
  wkv4Forward(y: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** dk, dv, dTimeDecay, dTimeFirst += their gradients given dy (ops.ts wkvBackward). */
  wkv4Backward(dk: Vec, dv: Vec, dTimeDecay: Vec, dTimeFirst: Vec, dy: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** y = WKV7(r, w, k, v, kk, a) from a zero state, keeping the checkpoints (ops-v7.ts wkv7Forward). */
  wkv7Forward(y: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, b: number, t: number, heads: number, c: number, checkpoints: Vec): void;
  /** dr, dw, dk, dv, dkk, da += their gradients given dy (ops-v7.ts wkv7Backward, without a tuned state). */
  wkv7Backward(dr: Vec, dw: Vec, dk: Vec, dv: Vec, dkk: Vec, da: Vec, dy: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, checkpoints: Vec, b: number, t: number, heads: number, c: number): void;
  /** Whether these kernels take arrays of this kind and a width (RWKV-4: channels; RWKV-7: head size) of `width`. */
  takes(width: number, ...arrays: Vec[]): boolean;
}

export class WasmScans implements TrainingScans {
  private decay = new Float32Array(0);
  private first = new Float32Array(0);
  private dk = new Float32Array(0);
  private dv = new Float32Array(0);
  private grads7: Float32Array[] = [];

  constructor(private readonly kernels: WasmKernels) {}

  takes(width: number, ...arrays: Vec[]): boolean {
    return width % 4 === 0 && arrays.every((a) => a instanceof Float32Array);
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

  wkv7Forward(y: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, b: number, t: number, heads: number, c: number, checkpoints: Vec): void {
    const inputs = [r, w, k, v, kk, a] as Float32Array[];
    this.kernels.wkv7TrainForward(y as Float32Array, checkpoints as Float32Array, inputs, b, t, heads, c / heads, WKV7_CHUNK);
  }

  wkv7Backward(dr: Vec, dw: Vec, dk: Vec, dv: Vec, dkk: Vec, da: Vec, dy: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, checkpoints: Vec, b: number, t: number, heads: number, c: number): void {
    const n = b * t * c;
    if (this.grads7.length === 0 || this.grads7[0]!.length < n) this.grads7 = Array.from({ length: 6 }, () => new Float32Array(n));
    const grads = this.grads7.map((g) => g.subarray(0, n));
    this.kernels.wkv7TrainBackward(grads, dy as Float32Array, checkpoints as Float32Array, [r, w, k, v, kk, a] as Float32Array[], b, t, heads, c / heads, WKV7_CHUNK);
    [dr, dw, dk, dv, dkk, da].forEach((d, j) => {
      const g = grads[j]!;
      for (let i = 0; i < n; i++) d[i] += g[i]!;
    });
  }
}
