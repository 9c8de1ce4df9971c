// The operations of RWKV-4 training, each forward beside its backward (llm.c style), with shapes in the
// comments. Activations are rows: a batch of B sequences of T positions is N = B·T rows, row n = b·T + t.
//
// Every op is generic over Float32Array (training) and Float64Array (the gradient checks): the code that
// is checked against finite differences is the code that trains. Arithmetic is in JS numbers (float64)
// either way; only storage differs. The forwards of LayerNorm, the v4 mix and the WKV are the inference
// reference's own (kernels/norm.ts, mix.ts, rwkv4-wkv.ts); their backwards are here.
//
// Conventions: a forward writes its outputs; a backward ADDS into the gradients of its inputs and
// parameters (`d*` arguments), so a caller zeroes a gradient once and several uses may accumulate into it.
// The matrix products (Y = X·Wᵀ and its two backward products) are in gemm.ts.
import { sigmoid } from '../kernels/activations.js';
import { mixV4 } from '../kernels/mix.js';
import { normRows, type Vec } from '../kernels/norm.js';
import { freshWkv4State, stableExp, wkv4Decay, wkv4Rows, WKV4_FRESH_PP } from '../kernels/rwkv4-wkv.js';
import { LN_EPS } from '../models/blocks.js';

/** Storage of activations, parameters and gradients. */
export type { Vec };

// --- embedding -----------------------------------------------------------------------------------------

/** out[n, :] = emb[ids[n], :].  ids: N; emb: V × C; out: N × C. */
export function embeddingForward(out: Vec, ids: Int32Array, emb: Vec, c: number): void {
  const n = ids.length;
  for (let r = 0; r < n; r++) {
    const src = ids[r] * c;
    const dst = r * c;
    for (let i = 0; i < c; i++) out[dst + i] = emb[src + i];
  }
}

/** demb[ids[n], :] += dout[n, :]. */
export function embeddingBackward(demb: Vec, ids: Int32Array, dout: Vec, c: number): void {
  const n = ids.length;
  for (let r = 0; r < n; r++) {
    const dst = ids[r] * c;
    const src = r * c;
    for (let i = 0; i < c; i++) demb[dst + i] += dout[src + i];
  }
}

// --- LayerNorm -----------------------------------------------------------------------------------------

/**
 * LayerNorm (kernels/norm.ts, eps LN_EPS) per row, keeping its statistics for the backward.
 * x, out: N × C; weight, bias: C; mean, rstd: N.
 */
export function layerNormForward(out: Vec, mean: Vec, rstd: Vec, x: Vec, weight: Vec, bias: Vec, n: number, c: number): void {
  if (weight.length !== c) throw new RangeError(`layerNorm: ${weight.length} weights for rows of ${c}`);
  normRows(x, weight, bias, out, n, 1, LN_EPS, mean, rstd);
}

/**
 * With x̂ = (x − mean)·rstd and g = dout·weight:
 *   dx += rstd·(g − mean(g) − x̂·mean(g·x̂)),  dweight += Σ_rows dout·x̂,  dbias += Σ_rows dout.
 */
export function layerNormBackward(
  dx: Vec,
  dweight: Vec,
  dbias: Vec,
  dout: Vec,
  x: Vec,
  mean: Vec,
  rstd: Vec,
  weight: Vec,
  n: number,
  c: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * c;
    const m = mean[r];
    const s = rstd[r];
    let gMean = 0;
    let gxMean = 0;
    for (let i = 0; i < c; i++) {
      const xh = (x[o + i] - m) * s;
      const g = dout[o + i] * weight[i];
      gMean += g;
      gxMean += g * xh;
    }
    gMean /= c;
    gxMean /= c;
    for (let i = 0; i < c; i++) {
      const xh = (x[o + i] - m) * s;
      const d = dout[o + i];
      dbias[i] += d;
      dweight[i] += d * xh;
      dx[o + i] += s * (d * weight[i] - gMean - xh * gxMean);
    }
  }
}

// --- token shift + mix ---------------------------------------------------------------------------------

/**
 * v4's token shift and mix (kernels/mix.ts mixV4): out[t] = x[t]·μ + x[t−1]·(1 − μ), with x[−1] = 0 at the
 * start of each sequence (a fresh state's att_x / ffn_x). x, out: (B·T) × C; mu: C.
 */
export function tokenShiftMixForward(out: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      if (p === 0) for (let i = 0; i < c; i++) out[o + i] = mixV4(x[o + i], 0, mu[i]);
      else for (let i = 0; i < c; i++) out[o + i] = mixV4(x[o + i], x[o - c + i], mu[i]);
    }
  }
}

/** dx[t] += dout[t]·μ + dout[t+1]·(1 − μ);  dμ += Σ dout[t]·(x[t] − x[t−1]). */
export function tokenShiftMixBackward(dx: Vec, dmu: Vec, dout: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      const hasNext = p + 1 < t;
      for (let i = 0; i < c; i++) {
        const d = dout[o + i];
        const prev = p === 0 ? 0 : x[o - c + i];
        dmu[i] += d * (x[o + i] - prev);
        dx[o + i] += d * mu[i] + (hasNext ? dout[o + c + i] * (1 - mu[i]) : 0);
      }
    }
  }
}

// --- element-wise --------------------------------------------------------------------------------------

// Branch-free: relu(x) = (x + |x|)/2 (exact), because the signs of pre-activations are random and a
// branch on them mispredicts half the time.

/** out = relu(x)² (channel mix).  x, out: any shape. */
export function reluSquaredForward(out: Vec, x: Vec): void {
  for (let i = 0; i < x.length; i++) {
    const v = (x[i] + Math.abs(x[i])) * 0.5;
    out[i] = v * v;
  }
}

/** dx += dout·2·relu(x). */
export function reluSquaredBackward(dx: Vec, dout: Vec, x: Vec): void {
  for (let i = 0; i < x.length; i++) dx[i] += (x[i] + Math.abs(x[i])) * dout[i];
}

/**
 * The receptance gate: s = σ(r) (kept for the backward instead of r), out = s ⊙ y.
 * r, s, y, out: same shape; `s` may be `r` (in place).
 */
export function sigmoidGateForward(out: Vec, s: Vec, r: Vec, y: Vec): void {
  for (let i = 0; i < r.length; i++) {
    const si = sigmoid(r[i]);
    s[i] = si;
    out[i] = si * y[i];
  }
}

/** Given s = σ(r):  dr += dout·y·s(1 − s);  dy += dout·s. */
export function sigmoidGateBackward(dr: Vec, dy: Vec, dout: Vec, s: Vec, y: Vec): void {
  for (let i = 0; i < s.length; i++) {
    const si = s[i];
    const d = dout[i];
    dr[i] += d * y[i] * si * (1 - si);
    dy[i] += d * si;
  }
}

/** out = s ⊙ y (the gate's forward from a kept s, recomputed in the backward). */
export function multiplyForward(out: Vec, s: Vec, y: Vec): void {
  for (let i = 0; i < s.length; i++) out[i] = s[i] * y[i];
}

/** out = a + b (the residual). */
export function addForward(out: Vec, a: Vec, b: Vec): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i] + b[i];
}

// --- WKV -----------------------------------------------------------------------------------------------
//
// Per channel, with decay w = −exp(time_decay) < 0 and bonus u = time_first, over positions t of one
// sequence from an empty state:
//   A_t = Σ_{i<t} e^{(t−1−i)w + k_i} v_i,   B_t = Σ_{i<t} e^{(t−1−i)w + k_i}
//   y_t = (A_t + e^{u+k_t} v_t) / (B_t + e^{u+k_t})
// computed in the stable form of the paper's kernel (kernels/rwkv4-wkv.ts, as inference computes it):
// A_t = a_t·e^{p_t}, B_t = b_t·e^{p_t} with p_t = max_{i<t} ((t−1−i)w + k_i), and every exponential taken
// of a difference that is ≤ 0.
//
// Backward: the adjoints G_t of A_{t+1} and H_t of B_{t+1} obey G_{t−1} = e^w·G_t + gy_t/D_t and
// H_{t−1} = e^w·H_t − gy_t·y_t/D_t (D_t = B_t + e^{u+k_t}); they too are kept scaled, G = g·e^{o},
// H = h·e^{o}, with o the running maximum of the exponents. Then
//   gv_t = gy_t·e^{u+k_t}/D_t + e^{k_t}·G_t
//   gk_t = gy_t·e^{u+k_t}(v_t − y_t)/D_t + e^{k_t}(G_t·v_t + H_t)
//   gu   = Σ_t gy_t·e^{u+k_t}(v_t − y_t)/D_t
//   gw   = Σ_t e^w (G_t·A_t + H_t·B_t),  and d/d time_decay = gw·w.
// Each exponent is ≤ 0: p_j ≥ (j−1−t)w + k_t and q_j ≥ p_j for j > t, so e^{k_t + o} ≤ 1 and
// e^{o + w + p_t} ≤ 1. The backward re-runs the forward scan per sequence (as the CUDA kernel does), so
// only k and v are kept from the forward pass.

/** y = WKV(k, v) (kernels/rwkv4-wkv.ts).  k, v, y: (B·T) × C; timeDecay (raw, w = −exp(·)), timeFirst: C. */
export function wkvForward(y: Vec, k: Vec, v: Vec, timeDecay: Vec, timeFirst: Vec, b: number, t: number, c: number): void {
  const [state] = wkvScratch('state', 1, 3 * c) as [Float64Array];
  const [w] = wkvScratch('decay', 1, c) as [Float64Array];
  for (let i = 0; i < c; i++) w[i] = wkv4Decay(timeDecay[i]);
  for (let seq = 0; seq < b; seq++) {
    freshWkv4State(state, 0, c);
    wkv4Rows(y, k, v, undefined, w, timeFirst, state, 0, seq * t, t, c);
  }
}

/** dk += ∂L/∂k, dv += ∂L/∂v, dTimeDecay += ∂L/∂time_decay, dTimeFirst += ∂L/∂time_first, given dy. */
export function wkvBackward(
  dk: Vec,
  dv: Vec,
  dTimeDecay: Vec,
  dTimeFirst: Vec,
  dy: Vec,
  k: Vec,
  v: Vec,
  timeDecay: Vec,
  timeFirst: Vec,
  b: number,
  t: number,
  c: number,
): void {
  // Per position of one sequence (T × C, float64): the state before it (a, b, p), the forward's max q,
  // eu = e^{u+k−q}/d (the current token's weight) and r = 1/d, where D = d·e^{q}; and y.
  const [sa, sb, sp, sq, seu, sr, sy] = wkvScratch('sequence', 7, t * c) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  const [w, g, h, og, gw, gu] = wkvScratch('channel', 6, c) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
  for (let i = 0; i < c; i++) w[i] = wkv4Decay(timeDecay[i]);
  gw.fill(0);
  gu.fill(0);
  for (let seq = 0; seq < b; seq++) {
    const base = seq * t * c;
    // Forward again (wkv4Rows' recurrence), keeping what the reverse scan needs.
    sa.fill(0, 0, c);
    sb.fill(0, 0, c);
    sp.fill(WKV4_FRESH_PP, 0, c);
    for (let p = 0; p < t; p++) {
      const o = base + p * c;
      const so = p * c;
      for (let i = 0; i < c; i++) {
        const ki = k[o + i];
        const vi = v[o + i];
        const a = sa[so + i];
        const bs = sb[so + i];
        const pi = sp[so + i];
        const ww = timeFirst[i] + ki;
        const e1 = stableExp(pi, ww);
        const e2 = stableExp(ww, pi);
        const r = 1 / (e1 * bs + e2);
        sq[so + i] = Math.max(pi, ww);
        sr[so + i] = r;
        seu[so + i] = e2 * r;
        sy[so + i] = (e1 * a + e2 * vi) * r;
        if (p + 1 < t) {
          const sn = so + c;
          const wp = w[i] + pi;
          const f1 = stableExp(wp, ki);
          const f2 = stableExp(ki, wp);
          sp[sn + i] = Math.max(wp, ki);
          sa[sn + i] = f1 * a + f2 * vi;
          sb[sn + i] = f1 * bs + f2;
        }
      }
    }
    // Reverse scan; G = H = 0 at the end, their exponent o starting as a fresh pp.
    g.fill(0);
    h.fill(0);
    og.fill(WKV4_FRESH_PP);
    for (let p = t - 1; p >= 0; p--) {
      const o = base + p * c;
      const so = p * c;
      for (let i = 0; i < c; i++) {
        const gy = dy[o + i];
        const ki = k[o + i];
        const vi = v[o + i];
        const yi = sy[so + i];
        const eu = seu[so + i];
        const oi = og[i];
        const gi = g[i];
        const hi = h[i];
        // e^{k + o}: the weight of this token in every later A and B, times their adjoints.
        const ek = Math.exp(ki + oi);
        const cur = gy * eu;
        dv[o + i] += cur + ek * gi;
        dk[o + i] += cur * (vi - yi) + ek * (gi * vi + hi);
        gu[i] += cur * (vi - yi);
        const wi = w[i];
        gw[i] += Math.exp(oi + wi + sp[so + i]) * (gi * sa[so + i] + hi * sb[so + i]);
        // G_{t−1} = e^w·G_t + gy/D_t, H_{t−1} = e^w·H_t − gy·y/D_t, with 1/D_t = r·e^{−q}.
        const wo = wi + oi;
        const nq = -sq[so + i];
        og[i] = Math.max(wo, nq);
        const add = gy * sr[so + i] * stableExp(nq, wo);
        const e = stableExp(wo, nq);
        g[i] = e * gi + add;
        h[i] = e * hi - add * yi;
      }
    }
  }
  for (let i = 0; i < c; i++) {
    dTimeDecay[i] += gw[i]! * w[i]!; // w = −exp(time_decay): dw/d time_decay = w
    dTimeFirst[i] += gu[i]!;
  }
}

const wkvPool = new Map<string, Float64Array[]>();

/** `count` float64 work arrays of `length` values, reused between calls of the same kind and size. */
function wkvScratch(kind: string, count: number, length: number): Float64Array[] {
  const key = `${kind}:${count}:${length}`;
  let s = wkvPool.get(key);
  if (s === undefined) {
    s = Array.from({ length: count }, () => new Float64Array(length));
    if (wkvPool.size > 16) wkvPool.clear();
    wkvPool.set(key, s);
  }
  return s;
}

// --- cross-entropy -------------------------------------------------------------------------------------

/** A target that carries no loss (chat fine-tuning: every token but the assistant's). */
export const IGNORE_TARGET = -1;

/**
 * Mean cross-entropy of `rows` rows of logits (rows × V) against `targets`, over `count` counted rows in
 * all (the batch may be processed in row chunks; each chunk's share is sum/count). Returns the chunk's
 * summed loss / count. With `dlogits`, also writes ∂loss/∂logits = (softmax − onehot)/count into it (may be
 * `logits` itself: in place). A target of IGNORE_TARGET adds no loss and gets a zero dlogits row, and is
 * not among the `count`; with count 0 (nothing counted anywhere) the loss is 0.
 */
export function crossEntropy(logits: Vec, targets: Int32Array, rows: number, v: number, count: number, dlogits?: Vec): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * v;
    const target = targets[r];
    if (target === IGNORE_TARGET) {
      if (dlogits !== undefined) dlogits.fill(0, o, o + v);
      continue;
    }
    let max = -Infinity;
    for (let j = 0; j < v; j++) if (logits[o + j] > max) max = logits[o + j];
    let sum = 0;
    for (let j = 0; j < v; j++) sum += Math.exp(logits[o + j] - max);
    total += Math.log(sum) + max - logits[o + target];
    if (dlogits !== undefined) {
      const inv = 1 / (sum * count);
      for (let j = 0; j < v; j++) dlogits[o + j] = Math.exp(logits[o + j] - max) * inv;
      dlogits[o + target] -= 1 / count;
    }
  }
  // Nothing counted: no loss (not 0/0).
  return count > 0 ? total / count : 0;
}
