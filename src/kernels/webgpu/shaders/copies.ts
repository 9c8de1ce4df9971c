// The copies, moving bits (the arena as u32 words): embed, gatherRows, tokenShift.
import { ARENA_U32, ENTRY, PARAMS, WEIGHTS, shader } from './common.js';

/**
 * embed: out row i = row tokens[i] of the matrix, decoded to f32 (exactly). Params: [n (= tokens · cols),
 * cols, weight code, out, tokens…]; binding 2 the matrix. Dispatch: one invocation per output value.
 */
export const EMBED = shader(
  ARENA_U32,
  PARAMS,
  WEIGHTS,
  /* wgsl */ `
${ENTRY} {
  let i = item(id, groups);
  if (i >= p[0]) { return; }
  let cols = p[1];
  let t = i / cols;
  a[p[3] + i] = weight_bits(WCODE, p[4u + t] * cols + i % cols);
}
`,
);

/** gatherRows: out row i = x row rows[i]. Params: [n, cols, x, out, rows…]. Dispatch: one invocation per output value. */
export const GATHER_ROWS = shader(
  ARENA_U32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let i = item(id, groups);
  if (i >= p[0]) { return; }
  let cols = p[1];
  a[p[3] + i] = a[p[2] + p[4u + i / cols] * cols + i % cols];
}
`,
);

/**
 * tokenShift: out row i = x row i − 1 within each sequence, the state slot's value for its first row;
 * the slot then takes the sequence's last row. Params: [cols, x, out, state, state width, slot offset,
 * sequences B, then (start, length) per sequence]. Dispatch: one invocation per (sequence, channel),
 * walking the sequence from its end, so that out may be x (the invocation alone touches its column).
 */
export const TOKEN_SHIFT = shader(
  ARENA_U32,
  PARAMS,
  /* wgsl */ `
${ENTRY} {
  let i = item(id, groups);
  let cols = p[0];
  if (i >= p[6] * cols) { return; }
  let b = i / cols;
  let c = i % cols;
  let start = p[7u + 2u * b];
  let len = p[8u + 2u * b];
  let s = p[3] + b * p[4] + p[5] + c;
  let x = p[1] + start * cols + c;
  let out = p[2] + start * cols + c;
  let last = a[x + (len - 1u) * cols];
  for (var r = len - 1u; r >= 1u; r--) { a[out + r * cols] = a[x + (r - 1u) * cols]; }
  a[out] = a[s];
  a[s] = last;
}
`,
);
