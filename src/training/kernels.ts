// The trainer's operations on the WebAssembly kernels, in f32 SIMD: RWKV-4's WKV scan and its backward split
// by channels over the worker pool (asm/kernels.ts wkv4Train*), RWKV-7's chunked WKV and its backward split
// by (sequence, head) pairs (wkv7Train*), and the element-wise operations of the graphs (LayerNorm, token
// shift, squared ReLU, the receptance gate: train*) on the calling thread. Same contracts as ops.ts and
// ops-v7.ts, whose float64 TypeScript is the reference they are tested against (test/training-kernels.test.ts).
// The TypeScript runs instead for a Gemm without kernels, f64 training, widths or head sizes that are not a
// multiple of 4, and activations outside the kernels' memory.
import type { WasmKernels } from '../kernels/wasm-kernels.js';
import { LN_EPS } from '../models/blocks.js';
import {
  layerNormBackward,
  layerNormForward,
  reluSquaredBackward,
  reluSquaredForward,
  sigmoidGateBackward,
  sigmoidGateForward,
  tokenShiftMixBackward,
  tokenShiftMixForward,
  type Vec,
} from './ops.js';
import { shiftMixBackward, shiftMixForward, WKV7_CHUNK } from './ops-v7.js';

/** The element-wise operations a graph runs through `TrainGraph.ops` (ops.ts signatures). */
export interface TrainingOps {
  layerNormForward: typeof layerNormForward;
  layerNormBackward: typeof layerNormBackward;
  tokenShiftMixForward: typeof tokenShiftMixForward;
  tokenShiftMixBackward: typeof tokenShiftMixBackward;
  reluSquaredForward: typeof reluSquaredForward;
  reluSquaredBackward: typeof reluSquaredBackward;
  sigmoidGateForward: typeof sigmoidGateForward;
  sigmoidGateBackward: typeof sigmoidGateBackward;
  /** RWKV-6/7's token shift and mix (ops-v7.ts): lerp(x[t], x[t−1], μ). */
  shiftMixForward: typeof shiftMixForward;
  shiftMixBackward: typeof shiftMixBackward;
}

/** The TypeScript of ops.ts. */
export const TYPESCRIPT_OPS: TrainingOps = {
  layerNormForward,
  layerNormBackward,
  tokenShiftMixForward,
  tokenShiftMixBackward,
  reluSquaredForward,
  reluSquaredBackward,
  sigmoidGateForward,
  sigmoidGateBackward,
  shiftMixForward,
  shiftMixBackward,
};

export interface TrainingKernels extends TrainingOps {
  /** y = WKV(k, v) (ops.ts wkvForward).  k, v, y: (B·T) × C; timeDecay (raw), timeFirst: C. */
  wkv4Forward(y: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** dk, dv, dTimeDecay, dTimeFirst += their gradients given dy (ops.ts wkvBackward). */
  wkv4Backward(dk: Vec, dv: Vec, dTimeDecay: Vec, dTimeFirst: Vec, dy: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void;
  /** y = WKV7(r, w, k, v, kk, a) from a zero state or `s0`, keeping the checkpoints (ops-v7.ts wkv7Forward). */
  wkv7Forward(y: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, b: number, t: number, heads: number, c: number, checkpoints: Vec, s0?: Vec): void;
  /** dr, dw, dk, dv, dkk, da (and ds0, the tuned state's) += their gradients given dy (ops-v7.ts wkv7Backward). */
  wkv7Backward(dr: Vec, dw: Vec, dk: Vec, dv: Vec, dkk: Vec, da: Vec, dy: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, checkpoints: Vec, b: number, t: number, heads: number, c: number, ds0?: Vec): void;
  /** Whether these kernels take arrays of this kind and a width (RWKV-4: channels; RWKV-7: head size) of `width`. */
  takes(width: number, ...arrays: Vec[]): boolean;
}

export class WasmTrainingKernels implements TrainingKernels {
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

  wkv7Forward(y: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, b: number, t: number, heads: number, c: number, checkpoints: Vec, s0?: Vec): void {
    const inputs = [r, w, k, v, kk, a] as Float32Array[];
    this.kernels.wkv7TrainForward(y as Float32Array, checkpoints as Float32Array, inputs, b, t, heads, c / heads, WKV7_CHUNK, s0 as Float32Array | undefined);
  }

  wkv7Backward(dr: Vec, dw: Vec, dk: Vec, dv: Vec, dkk: Vec, da: Vec, dy: Vec, r: Vec, w: Vec, k: Vec, v: Vec, kk: Vec, a: Vec, checkpoints: Vec, b: number, t: number, heads: number, c: number, ds0?: Vec): void {
    const n = b * t * c;
    if (this.grads7.length === 0 || this.grads7[0]!.length < n) this.grads7 = Array.from({ length: 6 }, () => new Float32Array(n));
    const grads = this.grads7.map((g) => g.subarray(0, n));
    this.kernels.wkv7TrainBackward(grads, dy as Float32Array, checkpoints as Float32Array, [r, w, k, v, kk, a] as Float32Array[], b, t, heads, c / heads, WKV7_CHUNK, ds0 as Float32Array | undefined);
    [dr, dw, dk, dv, dkk, da].forEach((d, j) => {
      const g = grads[j]!;
      for (let i = 0; i < n; i++) d[i] += g[i]!;
    });
  }

  // --- element-wise: (B·T) × C arrays in the memory are used in place; per-channel ones go through `chan` ---

  private chan: Float32Array = new Float32Array(0);

  /** Pointers of per-channel arrays copied into a region of the memory (C values each, in order). */
  private channelPointers(arrays: Vec[]): number[] {
    const need = arrays.reduce((a, x) => a + x.length, 0);
    if (this.chan.length < need) {
      const bytes = this.kernels.allocate(Math.max(need, 2 * this.chan.length) * 4);
      this.chan = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    }
    let at = 0;
    return arrays.map((x) => {
      this.chan.set(x, at);
      const p = this.chan.byteOffset + at * 4;
      at += x.length;
      return p;
    });
  }

  /** Copies per-channel results back from where `channelPointers` put them. */
  private channelsBack(arrays: Vec[], pointers: number[]): void {
    arrays.forEach((x, i) => x.set(this.chan.subarray((pointers[i]! - this.chan.byteOffset) / 4, (pointers[i]! - this.chan.byteOffset) / 4 + x.length)));
  }

  private inMemory(c: number, arrays: Vec[]): boolean {
    return c % 4 === 0 && arrays.every((a) => a instanceof Float32Array && this.kernels.ownsArray(a));
  }

  layerNormForward(out: Vec, mean: Vec, rstd: Vec, x: Vec, weight: Vec, bias: Vec, n: number, c: number): void {
    if (!this.inMemory(c, [out, mean, rstd, x]) || weight.length !== c) return layerNormForward(out, mean, rstd, x, weight, bias, n, c);
    const [pw, pb] = this.channelPointers([weight, bias]);
    this.kernels.exports.trainLayerNormForward(out.byteOffset, mean.byteOffset, rstd.byteOffset, x.byteOffset, pw!, pb!, n, c, LN_EPS);
  }

  layerNormBackward(dx: Vec, dweight: Vec, dbias: Vec, dout: Vec, x: Vec, mean: Vec, rstd: Vec, weight: Vec, n: number, c: number): void {
    if (!this.inMemory(c, [dx, dout, x, mean, rstd])) return layerNormBackward(dx, dweight, dbias, dout, x, mean, rstd, weight, n, c);
    const p = this.channelPointers([dweight, dbias, weight]);
    this.kernels.exports.trainLayerNormBackward(dx.byteOffset, p[0]!, p[1]!, dout.byteOffset, x.byteOffset, mean.byteOffset, rstd.byteOffset, p[2]!, n, c);
    this.channelsBack([dweight, dbias], p);
  }

  tokenShiftMixForward(out: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
    if (!this.inMemory(c, [out, x])) return tokenShiftMixForward(out, x, mu, b, t, c);
    const [pm] = this.channelPointers([mu]);
    this.kernels.exports.trainShiftMixForward(out.byteOffset, x.byteOffset, pm!, b, t, c);
  }

  tokenShiftMixBackward(dx: Vec, dmu: Vec, dout: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
    if (!this.inMemory(c, [dx, dout, x])) return tokenShiftMixBackward(dx, dmu, dout, x, mu, b, t, c);
    const p = this.channelPointers([dmu, mu]);
    this.kernels.exports.trainShiftMixBackward(dx.byteOffset, p[0]!, dout.byteOffset, x.byteOffset, p[1]!, b, t, c);
    this.channelsBack([dmu], p);
  }

  reluSquaredForward(out: Vec, x: Vec): void {
    if (!this.inMemory(x.length, [out, x])) return reluSquaredForward(out, x);
    this.kernels.exports.trainReluSquared(false, out.byteOffset, x.byteOffset, 0, x.length);
  }

  reluSquaredBackward(dx: Vec, dout: Vec, x: Vec): void {
    if (!this.inMemory(x.length, [dx, dout, x])) return reluSquaredBackward(dx, dout, x);
    this.kernels.exports.trainReluSquared(true, dx.byteOffset, x.byteOffset, dout.byteOffset, x.length);
  }

  sigmoidGateForward(out: Vec, s: Vec, r: Vec, y: Vec): void {
    if (!this.inMemory(r.length, [out, s, r, y])) return sigmoidGateForward(out, s, r, y);
    this.kernels.exports.trainSigmoidGateForward(out.byteOffset, s.byteOffset, r.byteOffset, y.byteOffset, r.length);
  }

  sigmoidGateBackward(dr: Vec, dy: Vec, dout: Vec, s: Vec, y: Vec): void {
    if (!this.inMemory(s.length, [dr, dy, dout, s, y])) return sigmoidGateBackward(dr, dy, dout, s, y);
    this.kernels.exports.trainSigmoidGateBackward(dr.byteOffset, dy.byteOffset, dout.byteOffset, s.byteOffset, y.byteOffset, s.length);
  }

  // RWKV-6/7's mix lerp(x, prev, μ) is RWKV-4's lerp(prev, x, 1 − μ): the same kernels with 1 − μ, and
  // ∂L/∂μ the negative of what they sum for 1 − μ.
  private oneMinus(mu: Vec): Float32Array {
    const m = new Float32Array(mu.length);
    for (let i = 0; i < mu.length; i++) m[i] = 1 - mu[i]!;
    return m;
  }

  shiftMixForward(out: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
    if (!this.inMemory(c, [out, x])) return shiftMixForward(out, x, mu, b, t, c);
    const [pm] = this.channelPointers([this.oneMinus(mu)]);
    this.kernels.exports.trainShiftMixForward(out.byteOffset, x.byteOffset, pm!, b, t, c);
  }

  shiftMixBackward(dx: Vec, dmu: Vec, dout: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
    if (!this.inMemory(c, [dx, dout, x])) return shiftMixBackward(dx, dmu, dout, x, mu, b, t, c);
    const dOneMinus = new Float32Array(c);
    const p = this.channelPointers([dOneMinus, this.oneMinus(mu)]);
    this.kernels.exports.trainShiftMixBackward(dx.byteOffset, p[0]!, dout.byteOffset, x.byteOffset, p[1]!, b, t, c);
    this.channelsBack([dOneMinus], p);
    for (let i = 0; i < c; i++) dmu[i] = dmu[i]! - dOneMinus[i]!;
  }
}
