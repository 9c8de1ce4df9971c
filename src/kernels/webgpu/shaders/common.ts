// WGSL shared by every shader. Every kernel binds the backend's arena (all activation and state tensors
// in one storage buffer, addressed by float offsets — so an operation whose output is one of its inputs,
// or a view of one, binds nothing twice) at binding 0 and its parameters, an array of u32 (floats as
// their bits), at binding 1; kernels that read a weight matrix bind its buffer (u32 words) at binding 2.
// Work is one invocation per item, 64 per workgroup, on a 2-D grid (x ≤ 65535 workgroups) so that more
// than 65535 × 64 items fit: item = id.x + id.y · (groups.x · 64).

/** Workgroup size of every kernel. */
export const WORKGROUP = 64;

/** The parameter binding and its readers; `item()` gives the invocation's item index. */
export const PARAMS = /* wgsl */ `
@group(0) @binding(1) var<storage, read> p: array<u32>;
fn pf(i: u32) -> f32 { return bitcast<f32>(p[i]); }
fn item(id: vec3<u32>, groups: vec3<u32>) -> u32 { return id.x + id.y * groups.x * ${WORKGROUP}u; }
`;

/** The arena as floats (arithmetic kernels). */
export const ARENA_F32 = /* wgsl */ `@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n`;
/** The arena as raw words (copies, which must move every bit pattern — NaN payloads, subnormals — unchanged). */
export const ARENA_U32 = /* wgsl */ `@group(0) @binding(0) var<storage, read_write> a: array<u32>;\n`;

/** The entry point's signature. */
export const ENTRY = /* wgsl */ `@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>)`;

/**
 * Unary functions by code (1 relu2, 2 sigmoid, 3 tanh, 4 silu, 5 exp; 0 identity), written so that large
 * arguments saturate or overflow to ±Inf rather than give NaN (exp(−x) → Inf gives σ = 0, silu = −0).
 */
export const FUNCTIONS = /* wgsl */ `
fn apply_fn(f: u32, x: f32) -> f32 {
  switch f {
    case 1u: { return select(0.0, x * x, x > 0.0); }
    case 2u: { return 1.0 / (1.0 + exp(-x)); }
    case 3u: {
      let e = exp(-2.0 * abs(x));
      let t = (1.0 - e) / (1.0 + e);
      return select(t, -t, x < 0.0);
    }
    case 4u: { return x / (1.0 + exp(-x)); }
    case 5u: { return exp(x); }
    default: { return x; }
  }
}
`;

/**
 * A weight matrix's value `i` (row-major) as f32, from its u32 words (little-endian bytes): code 0 f32,
 * 1 f16, 2 bf16 (two 16-bit values per word, the lower address in the low half), and ggml's blocks of 32
 * values (an f16 scale d first; low nibbles are values 0–15, high nibbles 16–31; Q5's 32-bit qh holds the
 * fifth bit of value j at bit j): 3 q8_0 (34 bytes: d, 32 int8 q; d·q), 4 q4_0 (18: d, 16 nibble bytes;
 * (q − 8)·d), 5 q4_1 (20: d, f16 m, nibbles; q·d + m), 6 q5_0 (22: d, qh, nibbles; (q − 16)·d), 7 q5_1
 * (24: d, m, qh, nibbles; q·d + m). Every product of a small integer and an f16 is exact in f32, so each
 * value is rounded at most once (the + m), as src/kernels/quant.ts does. Blocks are not 4-byte aligned:
 * bytes, halves and qh are read from the words at any byte offset. f16 is decoded by hand (shader-f16 is
 * an optional feature): exact, subnormals, ±Inf and NaN included.
 */
export const WEIGHTS = /* wgsl */ `
@group(0) @binding(2) var<storage, read> w: array<u32>;
// The matrix's weight code, set per pipeline (the backend makes one per encoding), so that each
// pipeline's decoder is a single branch once the constant is folded.
override WCODE: u32 = 0u;
fn f16_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { return s | bitcast<u32>(ldexp(f32(m), -24)); }
  if (e == 31u) { return s | 0x7f800000u | (m << 13u); }
  return s | ((e + 112u) << 23u) | (m << 13u);
}
fn half_at(i: u32) -> u32 { return (w[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }
fn byte_at(b: u32) -> u32 { return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu; }
// The little-endian u32 at byte b (any alignment: it straddles two words unless b is a multiple of 4).
fn word_at(b: u32) -> u32 {
  let s = (b & 3u) * 8u;
  if (s == 0u) { return w[b >> 2u]; }
  return (w[b >> 2u] >> s) | (w[(b >> 2u) + 1u] << (32u - s));
}
fn f16_at(b: u32) -> f32 { return bitcast<f32>(f16_bits(byte_at(b) | (byte_at(b + 1u) << 8u))); }
fn q8_0(i: u32) -> f32 {
  let base = (i / 32u) * 34u;
  let q = bitcast<i32>(byte_at(base + 2u + i % 32u) << 24u) >> 24u;
  return f16_at(base) * f32(q);
}
// Value k of a block's 16 nibble bytes at byte qs: the low nibble of byte k for k < 16, else the high one of k − 16.
fn nibble(qs: u32, k: u32) -> u32 { return (byte_at(qs + (k & 15u)) >> ((k >> 4u) * 4u)) & 0xfu; }
// The 4- or 5-bit integer of value i (block bytes bb, nibbles at byte qs of the block, qh at byte hb, or
// none when hb is 0) and the block's start: the kernels' common part of q4_0, q4_1, q5_0 and q5_1.
fn q_block(i: u32, bb: u32, hb: u32, qs: u32) -> vec2<u32> {
  let base = (i / 32u) * bb;
  let k = i % 32u;
  var q = nibble(base + qs, k);
  if (hb != 0u) { q |= ((word_at(base + hb) >> k) & 1u) << 4u; }
  return vec2<u32>(q, base);
}
fn q_offset(i: u32, bb: u32, hb: u32, qs: u32, zero: i32) -> f32 {
  let qb = q_block(i, bb, hb, qs);
  return f32(i32(qb.x) - zero) * f16_at(qb.y);
}
fn q_min(i: u32, bb: u32, hb: u32, qs: u32) -> f32 {
  let qb = q_block(i, bb, hb, qs);
  return f32(qb.x) * f16_at(qb.y) + f16_at(qb.y + 2u);
}
fn weight_bits(code: u32, i: u32) -> u32 {
  switch code {
    case 1u: { return f16_bits(half_at(i)); }
    case 2u: { return half_at(i) << 16u; }
    case 3u: { return bitcast<u32>(q8_0(i)); }
    case 4u: { return bitcast<u32>(q_offset(i, 18u, 0u, 2u, 8)); }
    case 5u: { return bitcast<u32>(q_min(i, 20u, 0u, 4u)); }
    case 6u: { return bitcast<u32>(q_offset(i, 22u, 2u, 6u, 16)); }
    case 7u: { return bitcast<u32>(q_min(i, 24u, 4u, 8u)); }
    default: { return w[i]; }
  }
}
fn weight(code: u32, i: u32) -> f32 { return bitcast<f32>(weight_bits(code, i)); }
`;

/** Assembles a shader from its parts. */
export function shader(...parts: readonly string[]): string {
  return parts.join('\n');
}
