// norm: GroupNorm of each row over equal slices (LayerNorm for one group), biased variance, two passes
// over the slice (mean, then the centred squares) in f32, times weight plus bias. Params: [rows · groups,
// size (values per group), cols, x, weight, bias, out, eps (f32 bits)]. Dispatch: one invocation per
// (row, group); in place when out = x (an invocation reads its slice wholly before it writes it).
import { ARENA_F32, ENTRY, PARAMS, shader } from './common.js';

export const NORM = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let g = item(id, groups);
  if (g >= p[0]) { return; }
  let size = p[1];
  let o = g * size;            // the slice's float offset within the tensor (rows are contiguous)
  let c = o % p[2];            // its first channel
  let x = p[3] + o;
  var m = 0.0;
  for (var i = 0u; i < size; i++) { m += a[x + i]; }
  m = m / f32(size);
  var v = 0.0;
  for (var i = 0u; i < size; i++) { let d = a[x + i] - m; v += d * d; }
  let s = 1.0 / sqrt(v / f32(size) + pf(7u));
  for (var i = 0u; i < size; i++) {
    a[p[6] + o + i] = (a[x + i] - m) * s * a[p[4] + c + i] + a[p[5] + c + i];
  }
}
`,
);
