// The WKV recurrences, each sequential over a sequence's rows inside one dispatch. The state rows (one per
// sequence) sit in the arena; sequence b owns rows start_b … start_b + len_b − 1, given as (start, length)
// pairs at the end of the params.
import { ARENA_F32, ENTRY, PARAMS, shader } from './common.js';

/**
 * RWKV-4, the stable form (kernels/rwkv4-wkv.ts): state aa, bb, pp at the slot, + C, + 2C; y = σ(r)·wkv.
 * Params: [C, k, v, r, w, u, y, state, state width, slot offset, sequences B, (start, length)…].
 * Dispatch: one invocation per (sequence, channel).
 */
export const WKV4 = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
fn stable_exp(x: f32, y: f32) -> f32 { return select(exp(x - y), 1.0, x > y); }
${ENTRY} {
  let g = item(id, groups);
  let c = p[0];
  if (g >= p[10] * c) { return; }
  let b = g / c;
  let i = g % c;
  let start = p[11u + 2u * b];
  let len = p[12u + 2u * b];
  let s = p[7] + b * p[8] + p[9] + i;
  var aa = a[s];
  var bb = a[s + c];
  var pp = a[s + 2u * c];
  let w = a[p[4] + i];
  let u = a[p[5] + i];
  for (var t = start; t < start + len; t++) {
    let o = t * c + i;
    let k = a[p[1] + o];
    let v = a[p[2] + o];
    let ww = u + k;
    let e1 = stable_exp(pp, ww);
    let e2 = stable_exp(ww, pp);
    let wkv = (e1 * aa + e2 * v) / (e1 * bb + e2);
    a[p[6] + o] = wkv / (1.0 + exp(-a[p[3] + o]));
    let wp = w + pp;
    let f1 = stable_exp(wp, k);
    let f2 = stable_exp(k, wp);
    aa = f1 * aa + f2 * v;
    bb = f1 * bb + f2;
    pp = max(wp, k);
  }
  a[s] = aa;
  a[s + c] = bb;
  a[s + 2u * c] = pp;
}
`,
);

/**
 * v5/v6, per head h (S[h][key i][value j]):  y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij.
 * Params: [heads, n, C, r, k, v, w, w full? (1: rows × C, 0: 1 × C), u, y, state, state width, slot offset,
 * sequences B, (start, length)…]. Dispatch: one invocation per (sequence, head, value j): it owns column j
 * of its head's S, read and written in the arena (rounded to f32 every token, as stored).
 */
export const WKV5 = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let g = item(id, groups);
  let n = p[1];
  let c = p[2];
  if (g >= p[13] * c) { return; }
  let b = g / c;
  let h = (g % c) / n;
  let j = g % n;
  let start = p[14u + 2u * b];
  let len = p[15u + 2u * b];
  let s = p[10] + b * p[11] + p[12] + h * n * n + j;
  let wStep = select(0u, c, p[7] == 1u);
  for (var t = start; t < start + len; t++) {
    let o = t * c + h * n;
    let vj = a[p[5] + o + j];
    let wo = p[6] + t * wStep + h * n;
    var acc = 0.0;
    for (var i = 0u; i < n; i++) {
      let kv = a[p[4] + o + i] * vj;
      let at = s + i * n;
      let sij = a[at];
      acc += a[p[3] + o + i] * (a[p[8] + h * n + i] * kv + sij);
      a[at] = kv + a[wo + i] * sij;
    }
    a[p[9] + o + j] = acc;
  }
}
`,
);

/**
 * v7, per head h (S[h][value i][key j]):  S ← S·diag(w) − (S·kk)(kk ⊙ a)ᵀ + v·kᵀ;  y = S·r.
 * Params: [heads, n, C, r, w, k, v, kk, a, y, state, state width, slot offset, sequences B, (start,
 * length)…]. Dispatch: one invocation per (sequence, head, value i): it owns row i of its head's S.
 */
export const WKV7 = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let g = item(id, groups);
  let n = p[1];
  let c = p[2];
  if (g >= p[13] * c) { return; }
  let b = g / c;
  let h = (g % c) / n;
  let i = g % n;
  let start = p[14u + 2u * b];
  let len = p[15u + 2u * b];
  let row = p[10] + b * p[11] + p[12] + (h * n + i) * n;
  for (var t = start; t < start + len; t++) {
    let o = t * c + h * n;
    var sa = 0.0;
    for (var j = 0u; j < n; j++) { sa += a[row + j] * a[p[7] + o + j]; }
    let vi = a[p[6] + o + i];
    var acc = 0.0;
    for (var j = 0u; j < n; j++) {
      let q = o + j;
      let sij = a[row + j] * a[p[4] + q] - sa * a[p[7] + q] * a[p[8] + q] + vi * a[p[5] + q];
      a[row + j] = sij;
      acc += sij * a[p[3] + q];
    }
    a[p[9] + o + i] = acc;
  }
}
`,
);
