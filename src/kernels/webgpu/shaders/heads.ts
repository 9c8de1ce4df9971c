// Per-head kernels over whole rows: l2NormHeads and v7's bonus.
import { ARENA_F32, ENTRY, PARAMS, shader } from './common.js';

/**
 * l2NormHeads: each head's n values ÷ max(‖·‖₂, eps). Params: [rows · heads, n, x, out, eps (f32 bits)].
 * Dispatch: one invocation per (row, head); in place when out = x.
 */
export const L2_NORM_HEADS = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let h = item(id, groups);
  if (h >= p[0]) { return; }
  let n = p[1];
  let x = p[2] + h * n;
  var sq = 0.0;
  for (var i = 0u; i < n; i++) { sq += a[x + i] * a[x + i]; }
  let inv = 1.0 / max(sqrt(sq), pf(4u));
  for (var i = 0u; i < n; i++) { a[p[3] + h * n + i] = a[x + i] * inv; }
}
`,
);

/**
 * wkv7Bonus: y_i += (Σ_{j ∈ head} r_j·k_j·rk_j)·v_i. Params: [rows · heads, n, heads, r, k, rk, v, y].
 * Dispatch: one invocation per (row, head).
 */
export const WKV7_BONUS = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let g = item(id, groups);
  if (g >= p[0]) { return; }
  let n = p[1];
  let o = g * n;                  // the head's offset within the tensor
  let hn = (g % p[2]) * n;        // and within a row (rk is one row)
  var dot = 0.0;
  for (var i = 0u; i < n; i++) { dot += a[p[3] + o + i] * a[p[4] + o + i] * a[p[5] + hn + i]; }
  for (var i = 0u; i < n; i++) { a[p[7] + o + i] += dot * a[p[6] + o + i]; }
}
`,
);
