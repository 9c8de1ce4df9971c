// matmul: y = then(x · mᵀ), x: T × cols, m: rows × cols (words at binding 2 in any encoding WEIGHTS decodes), y:
// T × rows. Params: [T, rows, cols, weight code, x, y, function code (0 none)]. Dispatch: one invocation
// per (weight row r, block of four input rows): each weight is decoded once for up to four rows, and each
// dot product is summed in four interleaved f32 partial sums (a shorter chain of roundings than one).
import { ARENA_F32, ENTRY, FUNCTIONS, PARAMS, WEIGHTS, WORKGROUP, shader } from './common.js';

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
  let code = WCODE; // p[3] is the same code; the constant lets the compiler drop the other decoders
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

/** Input rows per tile of MATMUL_TILED. */
export const TILE_T = 16;
/** Weight rows per tile of MATMUL_TILED. */
export const TILE_R = 64;

// matmulTiled: the same product for T > 1 (prompts), same params. One workgroup of 64 per tile of 16 input
// rows × 64 weight rows (tile = workgroup index; the weight tile varies fastest), each invocation 4 × 4
// outputs. Per step of 32 columns the workgroup stages the 16 × 32 inputs and the 64 × 32 weights, decoded
// to f32 once (one ggml block per row), in workgroup memory, and every staged weight serves all 16 rows.
// Columns past cols are staged as zeros (so an Inf weight beyond the row cannot make a NaN), rows past T or
// rows repeat the last one and are not stored. Each output sums a step's 32 terms on its own, then adds
// that to its total: two short chains of f32 roundings rather than one of cols terms.
export const MATMUL_TILED = shader(
  ARENA_F32,
  PARAMS,
  WEIGHTS,
  FUNCTIONS,
  /* wgsl */ `
const TT = ${TILE_T}u;
const TR = ${TILE_R}u;
const TK = 32u;
var<workgroup> xs: array<f32, ${TILE_T * 32}>;
var<workgroup> ws: array<f32, ${TILE_R * 32}>;
fn wcol(r: u32, k: u32) -> vec4<f32> { return vec4<f32>(ws[r * TK + k], ws[(r + 1u) * TK + k], ws[(r + 2u) * TK + k], ws[(r + 3u) * TK + k]); }
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let t = p[0];
  let rows = p[1];
  let cols = p[2];
  let code = WCODE; // p[3] is the same code; the constant lets the compiler drop the other decoders
  let rtiles = (rows + TR - 1u) / TR;
  // Every invocation of a workgroup takes the same branch (the barriers below need uniform control flow).
  let tile = wid.x + wid.y * groups.x;
  if (tile >= rtiles * ((t + TT - 1u) / TT)) { return; }
  let r0 = (tile % rtiles) * TR;
  let t0 = (tile / rtiles) * TT;
  // This invocation's outputs: input rows t0 + 4·tx + (0..3), weight rows r0 + 4·ty + (0..3).
  let tx = l / 16u;
  let ty = l % 16u;
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < cols; k0 += TK) {
    for (var e = l; e < TT * TK; e += ${WORKGROUP}u) {
      let j = k0 + e % TK;
      let row = min(t0 + e / TK, t - 1u);
      var v = 0.0;
      if (j < cols) { v = a[p[4] + row * cols + j]; }
      xs[e] = v;
    }
    for (var e = l; e < TR * TK; e += ${WORKGROUP}u) {
      let j = k0 + e % TK;
      let row = min(r0 + e / TK, rows - 1u);
      var v = 0.0;
      if (j < cols) { v = weight(code, row * cols + j); }
      ws[e] = v;
    }
    workgroupBarrier();
    var u0 = vec4<f32>(0.0);
    var u1 = vec4<f32>(0.0);
    var u2 = vec4<f32>(0.0);
    var u3 = vec4<f32>(0.0);
    for (var k = 0u; k < TK; k++) {
      let wv = wcol(ty * 4u, k);
      let xb = tx * 4u * TK + k;
      u0 += xs[xb] * wv;
      u1 += xs[xb + TK] * wv;
      u2 += xs[xb + 2u * TK] * wv;
      u3 += xs[xb + 3u * TK] * wv;
    }
    s0 += u0;
    s1 += u1;
    s2 += u2;
    s3 += u3;
    workgroupBarrier();
  }
  let f = p[6];
  var s = array<vec4<f32>, 4>(s0, s1, s2, s3);
  for (var i = 0u; i < 4u; i++) {
    let ti = t0 + tx * 4u + i;
    if (ti >= t) { break; }
    for (var c = 0u; c < 4u; c++) {
      let r = r0 + ty * 4u + c;
      if (r < rows) { a[p[5] + ti * rows + r] = apply_fn(f, s[i][c]); }
    }
  }
}
`,
);
