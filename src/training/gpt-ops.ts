// The operations GPT training adds to ops.ts (which it shares: embedding, LayerNorm, residual add,
// cross-entropy), each forward beside its backward, with the same conventions: rows n = b·T + t of
// N = B·T, generic over Float32Array / Float64Array with JS-number (float64) arithmetic, and a backward
// ADDS into the gradients it is given.
import type { Gemm } from './gemm.js';
import type { Vec } from './ops.js';

// --- positions and biases ------------------------------------------------------------------------------

/** x[n, :] += wpe[n mod t, :] (learned absolute positions).  x: (B·T) × C; wpe: P × C with P ≥ T. */
export function positionForward(x: Vec, wpe: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      const w = p * c;
      for (let i = 0; i < c; i++) x[o + i] += wpe[w + i];
    }
  }
}

/** dwpe[p, :] += Σ_s dx[s·T + p, :]. */
export function positionBackward(dwpe: Vec, dx: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      const w = p * c;
      for (let i = 0; i < c; i++) dwpe[w + i] += dx[o + i];
    }
  }
}

/** y[n, :] += bias (after a Gemm's y = x·Wᵀ).  y: N × O; bias: O. */
export function biasForward(y: Vec, bias: Vec, n: number, o: number): void {
  for (let r = 0; r < n; r++) {
    const off = r * o;
    for (let j = 0; j < o; j++) y[off + j] += bias[j];
  }
}

/** dbias += Σ_rows dy. */
export function biasBackward(dbias: Vec, dy: Vec, n: number, o: number): void {
  for (let r = 0; r < n; r++) {
    const off = r * o;
    for (let j = 0; j < o; j++) dbias[j] += dy[off + j];
  }
}

// --- GELU (GPT-2's tanh form, "gelu_new") --------------------------------------------------------------

const GELU_A = Math.sqrt(2 / Math.PI);
const GELU_B = 0.044715;

/** out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).  x, out: any shape. */
export function geluForward(out: Vec, x: Vec): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = 0.5 * v * (1 + Math.tanh(GELU_A * (v + GELU_B * v * v * v)));
  }
}

/** dx += dout·(0.5·(1 + th) + 0.5·x·(1 − th²)·√(2/π)·(1 + 3·0.044715·x²)), th = tanh(…). */
export function geluBackward(dx: Vec, dout: Vec, x: Vec): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const th = Math.tanh(GELU_A * (v + GELU_B * v * v * v));
    dx[i] += dout[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * GELU_A * (1 + 3 * GELU_B * v * v));
  }
}

// --- causal multi-head self-attention ------------------------------------------------------------------
//
// qkv: (B·T) × 3C, each row q | k | v, head h owning columns h·hs … (h+1)·hs − 1 of each (hs = C/H, as
// GPT-2 splits c_attn's output). Per sequence and head, S = q·kᵀ/√hs over positions j ≤ i, P = softmax(S)
// row by row (max subtracted), y = P·v; y: (B·T) × C with head h in its columns h·hs…. P is kept for the
// backward: B·H·T·T values (row i's entries beyond i are zero).
//
// Backward, per sequence and head:  dP = dy·vᵀ;  dS = P ⊙ (dP − rowsum(P ⊙ dP));
//   dq = dS·k/√hs;  dk = dSᵀ·q/√hs;  dv = Pᵀ·dy.
//
// The T × T × hs products go through the Gemm (the SIMD kernels when training: scalar loops over the
// causal half were most of a step), on one head's q, k, v gathered into contiguous T × hs blocks; they
// compute the masked upper half too (zeros of P), which costs less than leaving the kernels.

/** Per-(sequence, head) work arrays of the Gemm's precision, reused between calls. */
export class AttentionScratch {
  private readonly f64: boolean;
  private arrays: Vec[] = [];
  private t = 0;
  private hs = 0;

  constructor(precision: 'f32' | 'f64') {
    this.f64 = precision === 'f64';
  }

  /** q, k, v, dy, dq, dk, dv (T × hs each) and s (T × T). */
  get(t: number, hs: number): Vec[] {
    if (t !== this.t || hs !== this.hs) {
      const make = (n: number): Vec => (this.f64 ? new Float64Array(n) : new Float32Array(n));
      this.arrays = [...Array.from({ length: 7 }, () => make(t * hs)), make(t * t)];
      this.t = t;
      this.hs = hs;
    }
    return this.arrays;
  }
}

/** Copies head h's block (column offset `col` of rows of `stride`) of sequence s into `out` (T × hs). */
function gather(out: Vec, src: Vec, s: number, t: number, stride: number, col: number, hs: number): void {
  for (let p = 0; p < t; p++) {
    const o = (s * t + p) * stride + col;
    const d = p * hs;
    for (let e = 0; e < hs; e++) out[d + e] = src[o + e];
  }
}

/** dst's block += blk (the inverse of gather, accumulating). */
function scatterAdd(dst: Vec, blk: Vec, s: number, t: number, stride: number, col: number, hs: number): void {
  for (let p = 0; p < t; p++) {
    const o = (s * t + p) * stride + col;
    const d = p * hs;
    for (let e = 0; e < hs; e++) dst[o + e] += blk[d + e];
  }
}

/** y and the attention weights `att` (B·H·T·T) from qkv. */
export function attentionForward(y: Vec, att: Vec, qkv: Vec, b: number, t: number, c: number, nHead: number, gemm: Gemm, scratch: AttentionScratch): void {
  const hs = c / nHead;
  const scale = 1 / Math.sqrt(hs);
  const [q, k, v, , yh] = scratch.get(t, hs) as [Vec, Vec, Vec, Vec, Vec];
  for (let s = 0; s < b; s++) {
    for (let h = 0; h < nHead; h++) {
      gather(q, qkv, s, t, 3 * c, h * hs, hs);
      gather(k, qkv, s, t, 3 * c, c + h * hs, hs);
      gather(v, qkv, s, t, 3 * c, 2 * c + h * hs, hs);
      const base = (s * nHead + h) * t * t;
      const p = att.subarray(base, base + t * t);
      gemm.forward(p, q, k, t, t, hs); // S = q·kᵀ
      for (let i = 0; i < t; i++) {
        const row = i * t;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          const d = p[row + j] * scale;
          p[row + j] = d;
          if (d > max) max = d;
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) {
          const e = Math.exp(p[row + j] - max);
          p[row + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j <= i; j++) p[row + j] *= inv;
        for (let j = i + 1; j < t; j++) p[row + j] = 0;
      }
      gemm.backwardInput(yh, p, v, t, t, hs); // y = P·v
      for (let i = 0; i < t; i++) {
        const o = (s * t + i) * c + h * hs;
        for (let e = 0; e < hs; e++) y[o + e] = yh[i * hs + e];
      }
    }
  }
}

/** dqkv += ∂L/∂qkv given dy and the forward's qkv and att. */
export function attentionBackward(dqkv: Vec, dy: Vec, qkv: Vec, att: Vec, b: number, t: number, c: number, nHead: number, gemm: Gemm, scratch: AttentionScratch): void {
  const hs = c / nHead;
  const scale = 1 / Math.sqrt(hs);
  const [q, k, v, dyh, dq, dk, dv, ds] = scratch.get(t, hs) as [Vec, Vec, Vec, Vec, Vec, Vec, Vec, Vec];
  for (let s = 0; s < b; s++) {
    for (let h = 0; h < nHead; h++) {
      gather(q, qkv, s, t, 3 * c, h * hs, hs);
      gather(k, qkv, s, t, 3 * c, c + h * hs, hs);
      gather(v, qkv, s, t, 3 * c, 2 * c + h * hs, hs);
      gather(dyh, dy, s, t, c, h * hs, hs);
      const base = (s * nHead + h) * t * t;
      const p = att.subarray(base, base + t * t);
      dv.fill(0);
      gemm.backwardWeight(dv, p, dyh, t, t, hs); // dv = Pᵀ·dy
      gemm.forward(ds, dyh, v, t, t, hs); // dP = dy·vᵀ
      for (let i = 0; i < t; i++) {
        const row = i * t;
        let dot = 0;
        for (let j = 0; j <= i; j++) dot += p[row + j] * ds[row + j];
        for (let j = 0; j <= i; j++) ds[row + j] = p[row + j] * (ds[row + j] - dot) * scale;
        for (let j = i + 1; j < t; j++) ds[row + j] = 0;
      }
      gemm.backwardInput(dq, ds, k, t, t, hs); // dq = dS·k
      dk.fill(0);
      gemm.backwardWeight(dk, ds, q, t, t, hs); // dk = dSᵀ·q
      scatterAdd(dqkv, dq, s, t, 3 * c, h * hs, hs);
      scatterAdd(dqkv, dk, s, t, 3 * c, c + h * hs, hs);
      scatterAdd(dqkv, dv, s, t, 3 * c, 2 * c + h * hs, hs);
    }
  }
}
