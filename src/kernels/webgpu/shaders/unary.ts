// unary: out = f(scale · x). Params: [n, function code (common.ts FUNCTIONS), x, out, scale (f32 bits)].
// Dispatch: one invocation per value (n); in place when out = x (each invocation reads then writes its own).
import { ARENA_F32, ENTRY, FUNCTIONS, PARAMS, shader } from './common.js';

export const UNARY = shader(
  ARENA_F32,
  PARAMS,
  FUNCTIONS,
  /* wgsl */ `
${ENTRY} {
  let i = item(id, groups);
  if (i >= p[0]) { return; }
  a[p[3] + i] = apply_fn(p[1], pf(4u) * a[p[2] + i]);
}
`,
);
