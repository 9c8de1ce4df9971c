// add, mul, lerp: out = a + b, a ⊙ b, or a + (b − a) ⊙ mu; an operand of one row is broadcast over rows.
// Params: [n, cols, op (0 add, 1 mul, 2 lerp), out, a, a full?, b, b full?, mu, mu full?] (offsets in
// floats; "full" 1 = rows × cols, 0 = one row). Dispatch: one invocation per output value (n).
import { ARENA_F32, ENTRY, PARAMS, shader } from './common.js';

export const ELEMENTWISE = shader(
  ARENA_F32,
  PARAMS,
  /* wgsl */ `
fn at(i: u32, col: u32, base: u32, full: u32) -> f32 { return a[base + select(col, i, full == 1u)]; }
${ENTRY} {
  let i = item(id, groups);
  if (i >= p[0]) { return; }
  let col = i % p[1];
  let x = at(i, col, p[4], p[5]);
  let y = at(i, col, p[6], p[7]);
  var r: f32;
  switch p[2] {
    case 0u: { r = x + y; }
    case 1u: { r = x * y; }
    default: { r = x + (y - x) * at(i, col, p[8], p[9]); }
  }
  a[p[3] + i] = r;
}
`,
);
