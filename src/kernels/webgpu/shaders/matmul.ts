// matmul: y = then(x · mᵀ), x: T × cols, m: rows × cols (f32, f16, bf16 or q8_0 words at binding 2), y:
// T × rows. Params: [T, rows, cols, weight code, x, y, function code (0 none)]. Dispatch: one invocation
// per (weight row r, block of four input rows): each weight is decoded once for up to four rows, and each
// dot product is summed in four interleaved f32 partial sums (a shorter chain of roundings than one).
import { ARENA_F32, ENTRY, FUNCTIONS, PARAMS, WEIGHTS, shader } from './common.js';

export const MATMUL = shader(
  ARENA_F32,
  PARAMS,
  WEIGHTS,
  FUNCTIONS,
  /* wgsl */ `
fn x4(row: u32, j: u32) -> vec4<f32> { return vec4<f32>(a[row + j], a[row + j + 1u], a[row + j + 2u], a[row + j + 3u]); }
${ENTRY} {
  let i = item(id, groups);
  let t = p[0];
  let rows = p[1];
  if (i >= ((t + 3u) / 4u) * rows) { return; }
  let t0 = (i / rows) * 4u;
  let r = i % rows;
  let cols = p[2];
  let code = p[3];
  let last = t - 1u;
  // The block's four input rows (a block past T repeats the last row; its results are not stored).
  let x0 = p[4] + t0 * cols;
  let x1 = p[4] + min(t0 + 1u, last) * cols;
  let x2 = p[4] + min(t0 + 2u, last) * cols;
  let x3 = p[4] + min(t0 + 3u, last) * cols;
  let wr = r * cols;
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 4u <= cols; j += 4u) {
    let wv = vec4<f32>(weight(code, wr + j), weight(code, wr + j + 1u), weight(code, wr + j + 2u), weight(code, wr + j + 3u));
    s0 += wv * x4(x0, j);
    s1 += wv * x4(x1, j);
    s2 += wv * x4(x2, j);
    s3 += wv * x4(x3, j);
  }
  for (; j < cols; j++) {
    let wj = weight(code, wr + j);
    s0.x += wj * a[x0 + j];
    s1.x += wj * a[x1 + j];
    s2.x += wj * a[x2 + j];
    s3.x += wj * a[x3 + j];
  }
  let f = p[6];
  let y = p[5] + t0 * rows + r;
  a[y] = apply_fn(f, (s0.x + s0.y) + (s0.z + s0.w));
  if (t0 + 1u < t) { a[y + rows] = apply_fn(f, (s1.x + s1.y) + (s1.z + s1.w)); }
  if (t0 + 2u < t) { a[y + 2u * rows] = apply_fn(f, (s2.x + s2.y) + (s2.z + s2.w)); }
  if (t0 + 3u < t) { a[y + 3u * rows] = apply_fn(f, (s3.x + s3.y) + (s3.z + s3.w)); }
}
`,
);
