// RWKV-4's WKV in the numerically stable form, the one definition: ReferenceBackend.wkv4 and the trainer's
// forward (training/ops.ts) run `wkv4Rows`; the trainer's backward uses `stableExp` and the constants.
// (asm/kernels.ts wkv4 is the SIMD twin.) Per channel, with state aa, bb, pp (numerator, denominator
// and their common exponent: A = aa·e^pp, B = bb·e^pp), decay w = −exp(time_decay) and bonus u:
//   ww = u + k;  q = max(pp, ww);  wkv = (e^(pp−q)·aa + e^(ww−q)·v) / (e^(pp−q)·bb + e^(ww−q))
//   ww = w + pp; q = max(ww, k);   aa ← e^(ww−q)·aa + e^(k−q)·v;  bb ← e^(ww−q)·bb + e^(k−q);  pp ← q
// Every exponent is ≤ 0; of each pair of factors one is e^0 = 1 (stableExp).
import { sigmoid } from './activations.js';
import type { Vec } from './norm.js';

/**
 * pp of a fresh state (aa = bb = 0): "minus infinity" that keeps differences finite, so e^(pp − ·) = 0
 * (all-zero would divide 0 by 0). rwkv.cpp's value.
 */
export const WKV4_FRESH_PP = -1e30;

/** The decay w = −exp(time_decay) (< 0) from the parameter as trained and stored officially. */
export function wkv4Decay(timeDecay: number): number {
  return -Math.exp(timeDecay);
}

/**
 * e^(a − max(a, b)) ∈ [0, 1], exactly 1 (no exp taken) when a is the larger: the factors of a stable sum
 * e^a·X + e^b·Y = e^q·(stableExp(a, b)·X + stableExp(b, a)·Y), q = max(a, b).
 */
export function stableExp(a: number, b: number): number {
  return a > b ? 1 : Math.exp(a - b);
}

/** Sets a fresh state: aa = bb = 0, pp = WKV4_FRESH_PP.  s: [aa (C), bb (C), pp (C)] at `at`. */
export function freshWkv4State(s: Vec, at: number, c: number): void {
  s.fill(0, at, at + 2 * c);
  s.fill(WKV4_FRESH_PP, at + 2 * c, at + 3 * c);
}

/**
 * The WKV of rows row … row + len − 1 (one sequence's tokens, in order): y = wkv, or σ(r) ⊙ wkv with `r`.
 * k, v, r, y: rows × C; w (the decay), u: C; s: the state [aa (C), bb (C), pp (C)] at `at`, carried from
 * token to token in s's own precision (an f32 state is rounded after every token, as stored).
 */
export function wkv4Rows(
  y: Vec,
  k: Vec,
  v: Vec,
  r: Vec | undefined,
  w: Vec,
  u: Vec,
  s: Vec,
  at: number,
  row: number,
  len: number,
  c: number,
): void {
  const bAt = at + c;
  const pAt = at + 2 * c;
  for (let p = row; p < row + len; p++) {
    const o = p * c;
    for (let i = 0; i < c; i++) {
      const ki = k[o + i]!;
      const vi = v[o + i]!;
      const aa = s[at + i]!;
      const bb = s[bAt + i]!;
      const pp = s[pAt + i]!;
      const ww = u[i]! + ki;
      const e1 = stableExp(pp, ww);
      const e2 = stableExp(ww, pp);
      const wkv = (e1 * aa + e2 * vi) / (e1 * bb + e2);
      y[o + i] = r === undefined ? wkv : sigmoid(r[o + i]!) * wkv;
      const wp = w[i]! + pp;
      const f1 = stableExp(wp, ki);
      const f2 = stableExp(ki, wp);
      s[at + i] = f1 * aa + f2 * vi;
      s[bAt + i] = f1 * bb + f2;
      s[pAt + i] = Math.max(wp, ki);
    }
  }
}
