// The operations RWKV-7 training adds to RWKV-4's (ops.ts), each forward beside its backward, with shapes
// in the comments. Same conventions as ops.ts: rows are N = B·T positions (row n = b·T + t), every op is
// generic over Float32Array / Float64Array storage with float64 arithmetic, a forward writes its outputs
// and a backward ADDS into the gradients it is given. C = H·hs (H heads of hs channels).
//
// The forwards are inference's (models/v7.ts on the reference backend): the same lerp for the token
// shift, the same L2 normalisation (x / max(‖x‖, eps)), the same GroupNorm (kernels/norm.ts), the same
// WKV recurrence; only the WKV's state is kept in float64 here (inference rounds it to f32 each token).
import { sigmoid } from '../kernels/activations.js';
import { lerp } from '../kernels/mix.js';
import { normRows } from '../kernels/norm.js';
import type { Vec } from './ops.js';

/** v7's decay: w = exp(DECAY_SCALE·σ(z)), so its log lies in (−e^(−0.5), 0). */
export const V7_DECAY_SCALE = -Math.exp(-0.5);
/** F.normalize's eps, as inference uses for kk. */
export const V7_L2_EPS = 1e-12;

// --- token shift + mix (v6/v7 convention) ---------------------------------------------------------------

/**
 * out[t] = x[t] + (x[t−1] − x[t])·μ = lerp(x[t], x[t−1], μ), x[−1] = 0 at the start of each sequence.
 * x, out: (B·T) × C; mu: C.
 */
export function shiftMixForward(out: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      if (p === 0) for (let i = 0; i < c; i++) out[o + i] = lerp(x[o + i]!, 0, mu[i]!);
      else for (let i = 0; i < c; i++) out[o + i] = lerp(x[o + i]!, x[o - c + i]!, mu[i]!);
    }
  }
}

/** dx[t] += dout[t]·(1 − μ) + dout[t+1]·μ;  dμ += Σ dout[t]·(x[t−1] − x[t]). */
export function shiftMixBackward(dx: Vec, dmu: Vec, dout: Vec, x: Vec, mu: Vec, b: number, t: number, c: number): void {
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = (s * t + p) * c;
      const hasNext = p + 1 < t;
      for (let i = 0; i < c; i++) {
        const d = dout[o + i]!;
        const prev = p === 0 ? 0 : x[o - c + i]!;
        dmu[i] = dmu[i]! + d * (prev - x[o + i]!);
        dx[o + i] = dx[o + i]! + d * (1 - mu[i]!) + (hasNext ? dout[o + c + i]! * mu[i]! : 0);
      }
    }
  }
}

// --- element-wise ---------------------------------------------------------------------------------------

/** x ← tanh(x) in place (x keeps the output, which is all the backward needs). */
export function tanhInPlace(x: Vec): void {
  for (let i = 0; i < x.length; i++) x[i] = Math.tanh(x[i]!);
}

/** Given y = tanh(x):  dx = dy·(1 − y²), in place into dy. */
export function tanhBackwardInPlace(dy: Vec, y: Vec): void {
  for (let i = 0; i < y.length; i++) dy[i] = dy[i]! * (1 - y[i]! * y[i]!);
}

/** x ← σ(x) in place. */
export function sigmoidInPlace(x: Vec): void {
  for (let i = 0; i < x.length; i++) x[i] = sigmoid(x[i]!);
}

/** Given s = σ(x):  dx = ds·s(1 − s), in place into ds. */
export function sigmoidBackwardInPlace(ds: Vec, s: Vec): void {
  for (let i = 0; i < s.length; i++) ds[i] = ds[i]! * s[i]! * (1 - s[i]!);
}

/** x[n, :] += bias (rows × C; bias: C). */
export function addRowForward(x: Vec, bias: Vec, rows: number, c: number): void {
  for (let r = 0; r < rows; r++) for (let i = 0; i < c; i++) x[r * c + i] = x[r * c + i]! + bias[i]!;
}

/** dbias += Σ_rows dx. */
export function addRowBackward(dbias: Vec, dx: Vec, rows: number, c: number): void {
  for (let r = 0; r < rows; r++) for (let i = 0; i < c; i++) dbias[i] = dbias[i]! + dx[r * c + i]!;
}

/** dx += d (same shape). */
export function accumulate(dx: Vec, d: Vec): void {
  for (let i = 0; i < d.length; i++) dx[i] = dx[i]! + d[i]!;
}

/** out = a ⊙ b (the output gate y ⊙ g). */
export function multiply(out: Vec, a: Vec, b: Vec): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! * b[i]!;
}

/** Of out = a ⊙ b:  da += dout ⊙ b,  db += dout ⊙ a. */
export function multiplyBackward(da: Vec, db: Vec, dout: Vec, a: Vec, b: Vec): void {
  for (let i = 0; i < dout.length; i++) {
    const d = dout[i]!;
    da[i] = da[i]! + d * b[i]!;
    db[i] = db[i]! + d * a[i]!;
  }
}

// --- decay ----------------------------------------------------------------------------------------------

/** z (the LoRA's output plus w0) → s = σ(z) (kept for the backward), w = exp(DECAY_SCALE·s). */
export function decayForward(w: Vec, s: Vec, z: Vec): void {
  for (let i = 0; i < z.length; i++) {
    const si = sigmoid(z[i]!);
    s[i] = si;
    w[i] = Math.exp(V7_DECAY_SCALE * si);
  }
}

/** dz = dw·w·DECAY_SCALE·s(1 − s), in place into dw. */
export function decayBackwardInPlace(dw: Vec, w: Vec, s: Vec): void {
  for (let i = 0; i < w.length; i++) {
    const si = s[i]!;
    dw[i] = dw[i]! * w[i]! * V7_DECAY_SCALE * si * (1 - si);
  }
}

// --- value residual (layers > 0) ------------------------------------------------------------------------

/** v = lerp(v, vFirst, m) = v + (vFirst − v)·m, in place.  v, vFirst, m: rows × C (m = σ(v0 + LoRA)). */
export function valueResidualInPlace(v: Vec, vFirst: Vec, m: Vec): void {
  for (let i = 0; i < v.length; i++) v[i] = lerp(v[i]!, vFirst[i]!, m[i]!);
}

/**
 * Of v = vRaw + (vFirst − vRaw)·m:  dvRaw += dv·(1 − m),  dvFirst += dv·m,  dm += dv·(vFirst − vRaw).
 */
export function valueResidualBackward(dvRaw: Vec, dvFirst: Vec, dm: Vec, dv: Vec, vRaw: Vec, vFirst: Vec, m: Vec): void {
  for (let i = 0; i < dv.length; i++) {
    const d = dv[i]!;
    const mi = m[i]!;
    dvRaw[i] = dvRaw[i]! + d * (1 - mi);
    dvFirst[i] = dvFirst[i]! + d * mi;
    dm[i] = dm[i]! + d * (vFirst[i]! - vRaw[i]!);
  }
}

// --- kk and the key's rescale ---------------------------------------------------------------------------

/** kk = per head u / max(‖u‖, eps), u = k ⊙ k_k.  k, kk: rows × C; kK: C. */
export function kkForward(kk: Vec, k: Vec, kK: Vec, rows: number, heads: number, c: number): void {
  const n = c / heads;
  for (let h = 0; h < rows * heads; h++) {
    const o = h * n;
    const ko = (h % heads) * n;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const u = k[o + i]! * kK[ko + i]!;
      sq += u * u;
    }
    const inv = 1 / Math.max(Math.sqrt(sq), V7_L2_EPS);
    for (let i = 0; i < n; i++) kk[o + i] = k[o + i]! * kK[ko + i]! * inv;
  }
}

/**
 * With û = u/‖u‖ and g = dkk: du = (g − û·(û·g))/‖u‖ (or g/eps where ‖u‖ ≤ eps, a constant scale);
 * dk += du ⊙ k_k,  dk_k += Σ_rows du ⊙ k.
 */
export function kkBackward(dk: Vec, dkK: Vec, dkk: Vec, k: Vec, kK: Vec, rows: number, heads: number, c: number): void {
  const n = c / heads;
  for (let h = 0; h < rows * heads; h++) {
    const o = h * n;
    const ko = (h % heads) * n;
    let sq = 0;
    for (let i = 0; i < n; i++) {
      const u = k[o + i]! * kK[ko + i]!;
      sq += u * u;
    }
    const norm = Math.sqrt(sq);
    const clamped = norm <= V7_L2_EPS;
    const inv = 1 / Math.max(norm, V7_L2_EPS);
    let dotp = 0;
    if (!clamped) for (let i = 0; i < n; i++) dotp += k[o + i]! * kK[ko + i]! * inv * dkk[o + i]!;
    for (let i = 0; i < n; i++) {
      const uh = k[o + i]! * kK[ko + i]! * inv;
      const du = (dkk[o + i]! - (clamped ? 0 : uh * dotp)) * inv;
      dk[o + i] = dk[o + i]! + du * kK[ko + i]!;
      dkK[ko + i] = dkK[ko + i]! + du * k[o + i]!;
    }
  }
}

/** k ← k ⊙ (1 + (a − 1) ⊙ k_a), written to `out` (may not be k: the backward needs the unscaled k). */
export function keyScaleForward(out: Vec, k: Vec, a: Vec, kA: Vec, rows: number, c: number): void {
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < c; i++) {
      const q = r * c + i;
      out[q] = k[q]! * (1 + (a[q]! - 1) * kA[i]!);
    }
  }
}

/** dk += dout·(1 + (a − 1)·k_a),  da += dout·k·k_a,  dk_a += Σ dout·k·(a − 1). */
export function keyScaleBackward(dk: Vec, da: Vec, dkA: Vec, dout: Vec, k: Vec, a: Vec, kA: Vec, rows: number, c: number): void {
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < c; i++) {
      const q = r * c + i;
      const d = dout[q]!;
      dk[q] = dk[q]! + d * (1 + (a[q]! - 1) * kA[i]!);
      da[q] = da[q]! + d * k[q]! * kA[i]!;
      dkA[i] = dkA[i]! + d * k[q]! * (a[q]! - 1);
    }
  }
}

// --- GroupNorm (ln_x) -----------------------------------------------------------------------------------

/** GroupNorm over `groups` groups per row (kernels/norm.ts), keeping mean and rstd (rows × groups). */
export function groupNormForward(out: Vec, mean: Vec, rstd: Vec, x: Vec, weight: Vec, bias: Vec, rows: number, groups: number, eps: number): void {
  normRows(x, weight, bias, out, rows, groups, eps, mean, rstd);
}

/** LayerNorm's backward (ops.ts) per group, with the group's own slice of weight and bias. */
export function groupNormBackward(
  dx: Vec,
  dweight: Vec,
  dbias: Vec,
  dout: Vec,
  x: Vec,
  mean: Vec,
  rstd: Vec,
  weight: Vec,
  rows: number,
  groups: number,
): void {
  const c = weight.length;
  const size = c / groups;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const w0 = g * size;
      const o = r * c + w0;
      const m = mean[r * groups + g]!;
      const s = rstd[r * groups + g]!;
      let gMean = 0;
      let gxMean = 0;
      for (let i = 0; i < size; i++) {
        const xh = (x[o + i]! - m) * s;
        const gi = dout[o + i]! * weight[w0 + i]!;
        gMean += gi;
        gxMean += gi * xh;
      }
      gMean /= size;
      gxMean /= size;
      for (let i = 0; i < size; i++) {
        const xh = (x[o + i]! - m) * s;
        const d = dout[o + i]!;
        dbias[w0 + i] = dbias[w0 + i]! + d;
        dweight[w0 + i] = dweight[w0 + i]! + d * xh;
        dx[o + i] = dx[o + i]! + s * (d * weight[w0 + i]! - gMean - xh * gxMean);
      }
    }
  }
}

// --- the bonus ------------------------------------------------------------------------------------------

/** y_i += (Σ_{j ∈ head} r_j·k_j·rk_j)·v_i per head (Backend.wkv7Bonus).  r, k, v, y: rows × C; rk: C. */
export function bonusForward(y: Vec, r: Vec, k: Vec, rk: Vec, v: Vec, rows: number, heads: number, c: number): void {
  const n = c / heads;
  for (let p = 0; p < rows; p++) {
    for (let h = 0; h < heads; h++) {
      const o = p * c + h * n;
      let s = 0;
      for (let i = 0; i < n; i++) s += r[o + i]! * k[o + i]! * rk[h * n + i]!;
      for (let i = 0; i < n; i++) y[o + i] = y[o + i]! + s * v[o + i]!;
    }
  }
}

/** With s = Σ r·k·rk and ds = Σ dy·v per head: dv += dy·s; dr += ds·k·rk; dk += ds·r·rk; drk += ds·r·k. */
export function bonusBackward(dr: Vec, dk: Vec, drk: Vec, dv: Vec, dy: Vec, r: Vec, k: Vec, rk: Vec, v: Vec, rows: number, heads: number, c: number): void {
  const n = c / heads;
  for (let p = 0; p < rows; p++) {
    for (let h = 0; h < heads; h++) {
      const o = p * c + h * n;
      let s = 0;
      let ds = 0;
      for (let i = 0; i < n; i++) {
        s += r[o + i]! * k[o + i]! * rk[h * n + i]!;
        ds += dy[o + i]! * v[o + i]!;
      }
      for (let i = 0; i < n; i++) {
        const q = o + i;
        const rki = rk[h * n + i]!;
        dv[q] = dv[q]! + dy[q]! * s;
        dr[q] = dr[q]! + ds * k[q]! * rki;
        dk[q] = dk[q]! + ds * r[q]! * rki;
        drk[h * n + i] = drk[h * n + i]! + ds * r[q]! * k[q]!;
      }
    }
  }
}

// --- WKV-7 ----------------------------------------------------------------------------------------------
//
// Per head, with the state S (hs × hs, S[value i][key j]) from zero at each sequence's start, and per token
// t the vectors r, w (decay factor), k, v, kk, a (hs each), â = −kk, b = kk ⊙ a:
//   sa = S_{t−1}·â;   S_t = S_{t−1}·diag(w) + sa·bᵀ + v·kᵀ = S_{t−1}·M_t + v·kᵀ,  M_t = diag(w) + â·bᵀ
//   y = S_t·r
// Backward, with G_t = ∂L/∂S_t (all of the future's contributions) and gb = G_t·b:
//   G_t += dy·rᵀ;  dr = S_tᵀ·dy;  dv = G_t·k;  dk = G_tᵀ·v;  dw_j = Σ_i S_{t−1,ij}·G_{t,ij}
//   dâ = S_{t−1}ᵀ·gb;  db = G_tᵀ·sa;  then dkk = −dâ + db ⊙ a,  da = db ⊙ kk
//   G_{t−1} = G_t·M_tᵀ = G_t·diag(w) + gb·âᵀ
// The reverse pass needs S_{t−1} and S_t at every t. Chunked: the forward keeps the state at the start of
// every WKV_CHUNK-th token (`checkpoints`); the backward re-runs each chunk, last to first, from its
// checkpoint (keeping its WKV_CHUNK + 1 states) and walks it backwards. Memory: T/K states per sequence
// and head kept between forward and backward, K + 1 more while a chunk is walked; cost: one more forward.
// Each token's vectors are gathered into float64 work arrays first (b = kk ⊙ a computed once, not per row).

/** Tokens per chunk of the WKV-7 backward. */
export const WKV7_CHUNK = 16;

/** Values of the checkpoints `wkv7Forward` keeps for `wkv7Backward`: B·⌈T/K⌉·H·hs². */
export function wkv7CheckpointLength(b: number, t: number, heads: number, c: number): number {
  return b * Math.ceil(t / WKV7_CHUNK) * heads * (c / heads) ** 2;
}

/** A token's per-head vectors, gathered. */
interface TokenVectors {
  r: Float64Array;
  w: Float64Array;
  k: Float64Array;
  kk: Float64Array;
  b: Float64Array; // kk ⊙ a
  a: Float64Array;
}

function tokenVectors(n: number): TokenVectors {
  const f = (): Float64Array => new Float64Array(n);
  return { r: f(), w: f(), k: f(), kk: f(), b: f(), a: f() };
}

function gather(tv: TokenVectors, r: Vec, w: Vec, k: Vec, kk: Vec, a: Vec, o: number, n: number): void {
  for (let j = 0; j < n; j++) {
    const q = o + j;
    tv.r[j] = r[q]!;
    tv.w[j] = w[q]!;
    tv.k[j] = k[q]!;
    tv.kk[j] = kk[q]!;
    tv.a[j] = a[q]!;
    tv.b[j] = kk[q]! * a[q]!;
  }
}

/**
 * One token of one head: sOut[so..] = S_t from sIn[si..] = S_{t−1} (may be the same array and offset;
 * row i of S_t reads only row i of S_{t−1}). With `y`, writes y[yo + i] = (S_t·r)_i; with `sa`, keeps
 * S_{t−1}·â there (hs values from sa[sao]).
 */
function wkv7Step(sOut: Float64Array, so: number, sIn: Float64Array, si: number, tv: TokenVectors, v: Vec, vo: number, n: number, y: Vec | undefined, sa: Float64Array | undefined, sao: number): void {
  const { r, w, k, kk, b } = tv;
  // Rows two at a time (each of the token's vectors read once per pair), then a last odd row.
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const i0 = si + i * n;
    const i1 = i0 + n;
    let s0 = 0;
    let s1 = 0;
    for (let j = 0; j < n; j++) {
      const kkj = kk[j]!;
      s0 -= sIn[i0 + j]! * kkj;
      s1 -= sIn[i1 + j]! * kkj;
    }
    if (sa !== undefined) {
      sa[sao + i] = s0;
      sa[sao + i + 1] = s1;
    }
    const v0 = v[vo + i]!;
    const v1 = v[vo + i + 1]!;
    const o0 = so + i * n;
    const o1 = o0 + n;
    let acc0 = 0;
    let acc1 = 0;
    for (let j = 0; j < n; j++) {
      const wj = w[j]!;
      const bj = b[j]!;
      const kj = k[j]!;
      const rj = r[j]!;
      const x0 = sIn[i0 + j]! * wj + s0 * bj + v0 * kj;
      const x1 = sIn[i1 + j]! * wj + s1 * bj + v1 * kj;
      sOut[o0 + j] = x0;
      sOut[o1 + j] = x1;
      acc0 += x0 * rj;
      acc1 += x1 * rj;
    }
    if (y !== undefined) {
      y[vo + i] = acc0;
      y[vo + i + 1] = acc1;
    }
  }
  for (; i < n; i++) {
    const ri = si + i * n;
    let s = 0;
    for (let j = 0; j < n; j++) s -= sIn[ri + j]! * kk[j]!;
    if (sa !== undefined) sa[sao + i] = s;
    const vi = v[vo + i]!;
    const ro = so + i * n;
    let acc = 0;
    for (let j = 0; j < n; j++) {
      const sij = sIn[ri + j]! * w[j]! + s * b[j]! + vi * k[j]!;
      sOut[ro + j] = sij;
      acc += sij * r[j]!;
    }
    if (y !== undefined) y[vo + i] = acc;
  }
}

/**
 * y = WKV7(r, w, k, v, kk, a), each sequence from a zero state, or from `s0` (heads × hs × hs,
 * S[h][value i][key j], the same for every sequence: a tuned initial state).  All others: (B·T) × C,
 * C = heads·hs. With `checkpoints` (wkv7CheckpointLength values), keeps the state before every
 * WKV7_CHUNK-th token there, laid out [sequence][chunk][head][hs × hs], for wkv7Backward.
 */
export function wkv7Forward(
  y: Vec,
  r: Vec,
  w: Vec,
  k: Vec,
  v: Vec,
  kk: Vec,
  a: Vec,
  b: number,
  t: number,
  heads: number,
  c: number,
  checkpoints?: Vec,
  s0?: Vec,
): void {
  const n = c / heads;
  const nn = n * n;
  const hnn = heads * nn;
  const chunks = Math.ceil(t / WKV7_CHUNK);
  const s = scratchF64('wkv7.s', hnn);
  const tv = vectors(n);
  if (s0 !== undefined && s0.length !== hnn) throw new Error(`internal: initial state of ${s0.length} values, expected ${hnn}`);
  for (let seq = 0; seq < b; seq++) {
    if (s0 === undefined) s.fill(0);
    else s.set(s0);
    for (let p = 0; p < t; p++) {
      if (checkpoints !== undefined && p % WKV7_CHUNK === 0) checkpoints.set(s, (seq * chunks + p / WKV7_CHUNK) * hnn);
      const row = (seq * t + p) * c;
      for (let h = 0; h < heads; h++) {
        gather(tv, r, w, k, kk, a, row + h * n, n);
        wkv7Step(s, h * nn, s, h * nn, tv, v, row + h * n, n, y, undefined, 0);
      }
    }
  }
}

/**
 * Adds ∂L/∂(r, w, k, v, kk, a) given dy (all (B·T) × C) and the forward's `checkpoints`, re-running the
 * forward chunk by chunk (see above). With `ds0` (heads × hs × hs), also adds ∂L/∂S₀ of the state every
 * sequence started from (G_{−1} = G_0·M_0ᵀ, summed over the batch): the tuned initial state's gradient.
 */
export function wkv7Backward(
  dr: Vec,
  dw: Vec,
  dk: Vec,
  dv: Vec,
  dkk: Vec,
  da: Vec,
  dy: Vec,
  r: Vec,
  w: Vec,
  k: Vec,
  v: Vec,
  kk: Vec,
  a: Vec,
  checkpoints: Vec,
  b: number,
  t: number,
  heads: number,
  c: number,
  ds0?: Vec,
): void {
  const n = c / heads;
  const nn = n * n;
  const hnn = heads * nn;
  const chunks = Math.ceil(t / WKV7_CHUNK);
  const states = scratchF64('wkv7.states', (WKV7_CHUNK + 1) * nn);
  const sas = scratchF64('wkv7.sa', WKV7_CHUNK * n);
  const g = scratchF64('wkv7.g', nn);
  const acc = scratchF64('wkv7.acc', 5 * n);
  const dhat = acc.subarray(0, n);
  const db = acc.subarray(n, 2 * n);
  const dwAcc = acc.subarray(2 * n, 3 * n);
  const dkAcc = acc.subarray(3 * n, 4 * n);
  const drAcc = acc.subarray(4 * n, 5 * n);
  const tv = vectors(n);
  for (let seq = 0; seq < b; seq++) {
    for (let h = 0; h < heads; h++) {
      g.fill(0);
      for (let ci = chunks - 1; ci >= 0; ci--) {
        const c0 = ci * WKV7_CHUNK;
        const c1 = Math.min(t, c0 + WKV7_CHUNK);
        const from = (seq * chunks + ci) * hnn + h * nn;
        for (let e = 0; e < nn; e++) states[e] = checkpoints[from + e]!;
        for (let p = c0; p < c1; p++) {
          const at = p - c0;
          const o = (seq * t + p) * c + h * n;
          gather(tv, r, w, k, kk, a, o, n);
          wkv7Step(states, (at + 1) * nn, states, at * nn, tv, v, o, n, undefined, sas, at * n);
        }
        for (let p = c1 - 1; p >= c0; p--) {
          const at = p - c0;
          const o = (seq * t + p) * c + h * n;
          gather(tv, r, w, k, kk, a, o, n);
          const { r: rv, w: wv, k: kv, kk: kkv, b: bv } = tv;
          const prev = at * nn; // S_{t−1}
          const cur = prev + nn; // S_t
          const sao = at * n;
          acc.fill(0);
          // Rows two at a time (the column sums then read and write their accumulators once per pair),
          // then a last odd row.
          let i = 0;
          for (; i + 1 < n; i += 2) {
            const dy0 = dy[o + i]!;
            const dy1 = dy[o + i + 1]!;
            const v0 = v[o + i]!;
            const v1 = v[o + i + 1]!;
            const sa0 = sas[sao + i]!;
            const sa1 = sas[sao + i + 1]!;
            const g0 = i * n;
            const g1 = g0 + n;
            const p0 = prev + g0;
            const p1 = p0 + n;
            const s0 = cur + g0;
            const s1 = s0 + n;
            let dv0 = 0;
            let dv1 = 0;
            let gb0 = 0;
            let gb1 = 0;
            for (let j = 0; j < n; j++) {
              const rj = rv[j]!;
              const x0 = g[g0 + j]! + dy0 * rj;
              const x1 = g[g1 + j]! + dy1 * rj;
              g[g0 + j] = x0;
              g[g1 + j] = x1;
              drAcc[j] = drAcc[j]! + states[s0 + j]! * dy0 + states[s1 + j]! * dy1;
              const kj = kv[j]!;
              dv0 += x0 * kj;
              dv1 += x1 * kj;
              dkAcc[j] = dkAcc[j]! + x0 * v0 + x1 * v1;
              dwAcc[j] = dwAcc[j]! + states[p0 + j]! * x0 + states[p1 + j]! * x1;
              const bj = bv[j]!;
              gb0 += x0 * bj;
              gb1 += x1 * bj;
              db[j] = db[j]! + x0 * sa0 + x1 * sa1;
            }
            dv[o + i] = dv[o + i]! + dv0;
            dv[o + i + 1] = dv[o + i + 1]! + dv1;
            // Rows i, i+1 of G are complete: dâ's share, then G_{t−1}'s rows = G_t's rows·diag(w) + gb·âᵀ.
            for (let j = 0; j < n; j++) {
              dhat[j] = dhat[j]! + states[p0 + j]! * gb0 + states[p1 + j]! * gb1;
              const wj = wv[j]!;
              const kkj = kkv[j]!;
              g[g0 + j] = g[g0 + j]! * wj - gb0 * kkj;
              g[g1 + j] = g[g1 + j]! * wj - gb1 * kkj;
            }
          }
          for (; i < n; i++) {
            const dyi = dy[o + i]!;
            const vi = v[o + i]!;
            const sai = sas[sao + i]!;
            const gi = i * n;
            const pi = prev + gi;
            const ci2 = cur + gi;
            let dvi = 0;
            let gbi = 0;
            for (let j = 0; j < n; j++) {
              const gij = g[gi + j]! + dyi * rv[j]!;
              g[gi + j] = gij;
              drAcc[j] = drAcc[j]! + states[ci2 + j]! * dyi;
              dvi += gij * kv[j]!;
              dkAcc[j] = dkAcc[j]! + gij * vi;
              dwAcc[j] = dwAcc[j]! + states[pi + j]! * gij;
              gbi += gij * bv[j]!;
              db[j] = db[j]! + gij * sai;
            }
            dv[o + i] = dv[o + i]! + dvi;
            for (let j = 0; j < n; j++) {
              dhat[j] = dhat[j]! + states[pi + j]! * gbi;
              g[gi + j] = g[gi + j]! * wv[j]! - gbi * kkv[j]!;
            }
          }
          for (let j = 0; j < n; j++) {
            const q = o + j;
            dr[q] = dr[q]! + drAcc[j]!;
            dk[q] = dk[q]! + dkAcc[j]!;
            dw[q] = dw[q]! + dwAcc[j]!;
            dkk[q] = dkk[q]! - dhat[j]! + db[j]! * tv.a[j]!;
            da[q] = da[q]! + db[j]! * kkv[j]!;
          }
        }
      }
      // g is now G_{−1}: the gradient of the state this sequence started from.
      if (ds0 !== undefined) for (let e = 0; e < nn; e++) ds0[h * nn + e] = ds0[h * nn + e]! + g[e]!;
    }
  }
}

const pool = new Map<string, Float64Array>();

/** A float64 work array of `length` values (contents undefined), reused between calls. */
function scratchF64(kind: string, length: number): Float64Array {
  let s = pool.get(kind);
  if (s === undefined || s.length < length) {
    s = new Float64Array(length);
    pool.set(kind, s);
  }
  return s.subarray(0, length);
}

let tokenPool: TokenVectors | undefined;

function vectors(n: number): TokenVectors {
  if (tokenPool === undefined || tokenPool.r.length !== n) tokenPool = tokenVectors(n);
  return tokenPool;
}
