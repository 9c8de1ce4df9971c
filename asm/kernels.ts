// WebAssembly SIMD kernels (AssemblyScript). Built twice: plain SIMD, and with relaxed SIMD (fused
// multiply-add) when the runtime allows it. Every pointer is a byte offset into the one shared memory the
// JS side imports; the kernels allocate nothing. Each kernel works on a range of output rows [r0, r1) so
// that threads can split a product by rows.
//
// Dtype codes, function codes and the batch table's layout come from src/kernels/wasm-abi.ts, which the
// TypeScript side imports too.
import {
  DTYPE_BF16, DTYPE_F16, DTYPE_F16_SPECIAL, DTYPE_F32, DTYPE_INT8, DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1, DTYPE_Q8_0, EW_ADD, EW_LERP,
  DTYPE_Q4_0_Q8, DTYPE_Q4_1_Q8, DTYPE_Q5_0_Q8, DTYPE_Q5_1_Q8, DTYPE_Q8_0_Q8, GRID_Q8_0, GRID_Q8_K, Q8_ACTIVATIONS,
  FN_NONE, FN_RELU2, FN_SIGMOID, JOB_BYTES, JOB_COLS, JOB_DTYPE, JOB_FN, JOB_ROWS, JOB_START, JOB_WEIGHTS,
  JOB_X, JOB_X_SCALE, JOB_Y,
} from '../src/kernels/wasm-abi';

// --- helpers -----------------------------------------------------------------------------------------

@inline function fma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** IEEE half → f32 for one value, exact for all 65536 patterns (inf and NaN included). */
@inline function half(bits: u32): f32 {
  const mag = reinterpret<f32>((bits & 0x7fff) << 13) * reinterpret<f32>(0x77800000); // × 2^112
  // Exponent 31 (inf/NaN) came out as 2^16·1.m: force the f32 exponent to 255, keeping the payload.
  const special: u32 = (bits & 0x7c00) == 0x7c00 ? 0x7f800000 : 0;
  return reinterpret<f32>(reinterpret<u32>(mag) | special | ((bits & 0x8000) << 16));
}

/** Sixteen i8 lanes → four f32x4 (lanes 0-3, 4-7, 8-11, 12-15). */
@inline function i8x16ToF32(q: v128, out: usize): void {
  const lo = i16x8.extend_low_i8x16_s(q);
  const hi = i16x8.extend_high_i8x16_s(q);
  v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)));
  v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), 16);
  v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), 32);
  v128.store(out, f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), 48);
}

/** The fifth bits of a Q5 block (its 32-bit qh in lanes 0-3 of `qh`) as 0x10/0x00 bytes: values 0-15 (qh bits 0-15), or with `upper` 16-31. */
@inline function q5HighBits(qh: v128, upper: bool): v128 {
  // A constant shuffle (one pshufb) copies qh's byte 0 into lanes 0-7 and byte 1 into 8-15 (2, 3 for the upper half).
  const spread = upper
    ? i8x16.shuffle(qh, qh, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
    : i8x16.shuffle(qh, qh, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const bits = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  return v128.and(i8x16.eq(v128.and(spread, bits), bits), i8x16.splat(0x10));
}

// --- dot products of one stored row with an f32 vector ---------------------------------------------------

function dotF32(row: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let j = 0;
  for (; j + 16 <= n; j += 16) {
    const o = (j as usize) << 2;
    a0 = fma(v128.load(row + o), v128.load(x + o), a0);
    a1 = fma(v128.load(row + o, 16), v128.load(x + o, 16), a1);
    a2 = fma(v128.load(row + o, 32), v128.load(x + o, 32), a2);
    a3 = fma(v128.load(row + o, 48), v128.load(x + o, 48), a3);
  }
  for (; j + 4 <= n; j += 4) {
    const o = (j as usize) << 2;
    a0 = fma(v128.load(row + o), v128.load(x + o), a0);
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < n; j++) s += load<f32>(row + ((j as usize) << 2)) * load<f32>(x + ((j as usize) << 2));
  return s;
}

/**
 * The f16 values in the high halves of four u32 words as f32, in integer SIMD and one multiply: the
 * arithmetic shift puts the exponent and mantissa where an f32 keeps them (exponent 112 short) and copies
 * the sign into bits 31..28; the mask keeps bit 31 and drops the low half; × 2^112 rebiases the exponent.
 * Subnormal halves are f32 denormals before the multiply and normal after it, so they come out exact too.
 * Exact for every finite half; inf and NaN come out as 2^16·1.m (see `widenF16Exact`).
 */
@inline function widenF16(w: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(w, 3), i32x4.splat(0x8fffe000)), f32x4.splat(reinterpret<f32>(0x77800000)));
}

/** `widenF16`, exact for all 65536 patterns: |v| ≥ 2^16 only for exponent 31, whose f32 exponent becomes 255. */
@inline function widenF16Exact(w: v128): v128 {
  const v = widenF16(w);
  const special = f32x4.ge(f32x4.abs(v), f32x4.splat(65536));
  return v128.or(v, v128.and(special, i32x4.splat(0x7f800000)));
}

/**
 * f16 rows against activations permuted as for bf16 (evens, then odds, in each group of 8). Exact for
 * finite halves; matrices holding inf or NaN come as DTYPE_F16_SPECIAL and go through `dotF16Exact`
 * (watching for them here cost 10-20 % of this loop).
 */
function dotF16(row: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let j = 0;
  for (; j + 16 <= n; j += 16) {
    const h0 = v128.load(row + ((j as usize) << 1));
    const h1 = v128.load(row + ((j as usize) << 1), 16);
    const xo = x + ((j as usize) << 2);
    a0 = fma(widenF16(i32x4.shl(h0, 16)), v128.load(xo), a0);
    a1 = fma(widenF16(h0), v128.load(xo, 16), a1);
    a2 = fma(widenF16(i32x4.shl(h1, 16)), v128.load(xo, 32), a2);
    a3 = fma(widenF16(h1), v128.load(xo, 48), a3);
  }
  for (; j + 8 <= n; j += 8) {
    const h0 = v128.load(row + ((j as usize) << 1));
    const xo = x + ((j as usize) << 2);
    a0 = fma(widenF16(i32x4.shl(h0, 16)), v128.load(xo), a0);
    a1 = fma(widenF16(h0), v128.load(xo, 16), a1);
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < n; j++) s += half(load<u16>(row + ((j as usize) << 1))) * load<f32>(x + ((j as usize) << 2));
  return s;
}

/** 1 if any of the `n` f16 values at `src` is inf or NaN (exponent 31), else 0. */
export function hasF16Specials(src: usize, n: i32): i32 {
  let top = i16x8.splat(0);
  let j = 0;
  // With the sign shifted out, exponent 31 is 0xf800 and above.
  for (; j + 8 <= n; j += 8) top = i16x8.max_u(top, i16x8.shl(v128.load(src + ((j as usize) << 1)), 1));
  if (v128.any_true(i16x8.ge_u(top, i16x8.splat(<i16>0xf800)))) return 1;
  for (; j < n; j++) if ((load<u16>(src + ((j as usize) << 1)) & 0x7c00) == 0x7c00) return 1;
  return 0;
}

/** `dotF16` exact for every half, inf and NaN included (DTYPE_F16_SPECIAL). */
function dotF16Exact(row: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let j = 0;
  for (; j + 8 <= n; j += 8) {
    const h0 = v128.load(row + ((j as usize) << 1));
    const xo = x + ((j as usize) << 2);
    a0 = fma(widenF16Exact(i32x4.shl(h0, 16)), v128.load(xo), a0);
    a1 = fma(widenF16Exact(h0), v128.load(xo, 16), a1);
  }
  let s = hsum(f32x4.add(a0, a1));
  for (; j < n; j++) s += half(load<u16>(row + ((j as usize) << 1))) * load<f32>(x + ((j as usize) << 2));
  return s;
}

/** Widens `n` f16 values at `src` to f32 at `dst` in order, exactly (all 65536 patterns). */
export function widenHalves(src: usize, dst: usize, n: i32): void {
  const zero = i32x4.splat(0);
  let j = 0;
  for (; j + 8 <= n; j += 8) {
    const h = v128.load(src + ((j as usize) << 1));
    // Each half into the high half of its own u32 lane (a zero low half), as `widenF16` reads them.
    const lo = i8x16.shuffle(zero, h, 0, 0, 16, 17, 0, 0, 18, 19, 0, 0, 20, 21, 0, 0, 22, 23);
    const hi = i8x16.shuffle(zero, h, 0, 0, 24, 25, 0, 0, 26, 27, 0, 0, 28, 29, 0, 0, 30, 31);
    const o = dst + ((j as usize) << 2);
    v128.store(o, widenF16Exact(lo));
    v128.store(o, widenF16Exact(hi), 16);
  }
  for (; j < n; j++) store<f32>(dst + ((j as usize) << 2), half(load<u16>(src + ((j as usize) << 1))));
}

/**
 * bf16 rows against activations permuted by `prepareActivations`: in each group of 8 the even-indexed
 * values first, then the odd ones. A 16-byte load of 8 bf16 values is 4 u32 words whose low halves are the
 * even values and high halves the odd ones, so one shift and one mask give both as f32 (exact).
 */
function dotBF16(row: usize, x: usize, n: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  const high = i32x4.splat(0xffff0000);
  let j = 0;
  for (; j + 16 <= n; j += 16) {
    const h0 = v128.load(row + ((j as usize) << 1));
    const h1 = v128.load(row + ((j as usize) << 1), 16);
    const xo = x + ((j as usize) << 2);
    a0 = fma(i32x4.shl(h0, 16), v128.load(xo), a0);
    a1 = fma(v128.and(h0, high), v128.load(xo, 16), a1);
    a2 = fma(i32x4.shl(h1, 16), v128.load(xo, 32), a2);
    a3 = fma(v128.and(h1, high), v128.load(xo, 48), a3);
  }
  for (; j + 8 <= n; j += 8) {
    const h0 = v128.load(row + ((j as usize) << 1));
    const xo = x + ((j as usize) << 2);
    a0 = fma(i32x4.shl(h0, 16), v128.load(xo), a0);
    a1 = fma(v128.and(h0, high), v128.load(xo, 16), a1);
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < n; j++) s += reinterpret<f32>((load<u16>(row + ((j as usize) << 1)) as u32) << 16) * load<f32>(x + ((j as usize) << 2));
  return s;
}

// Quantized rows against split activations (see `splitBlocks`): `n` is a multiple of 32; block b of the
// row pairs with block b of the activations. Each block's products are summed exactly in i32 lanes, then
// scaled by (weight scale × activation scale) in f32.

/**
 * Σ w·X over one block in units of the activation block's scale, X = hi·2^15 + lo: w as four i16x8
 * (values 0-7, 8-15, 16-23, 24-31). |w| ≤ 128 and |hi| ≤ 2^15 keep each i32 lane below 2^25.
 */
@inline function splitDot(w0: v128, w1: v128, w2: v128, w3: v128, xb: usize): v128 {
  const h = i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(xb)), i32x4.dot_i16x8_s(w1, v128.load(xb, 16))),
    i32x4.add(i32x4.dot_i16x8_s(w2, v128.load(xb, 32)), i32x4.dot_i16x8_s(w3, v128.load(xb, 48))),
  );
  const l = i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(w0, v128.load(xb, 64)), i32x4.dot_i16x8_s(w1, v128.load(xb, 80))),
    i32x4.add(i32x4.dot_i16x8_s(w2, v128.load(xb, 96)), i32x4.dot_i16x8_s(w3, v128.load(xb, 112))),
  );
  return fma(f32x4.convert_i32x4_s(h), f32x4.splat(32768), f32x4.convert_i32x4_s(l));
}

/** splitDot of 32 i8 weights given as two i8x16 (values 0-15 and 16-31). */
@inline function splitDotI8(lo: v128, hi: v128, xb: usize): v128 {
  return splitDot(
    i16x8.extend_low_i8x16_s(lo),
    i16x8.extend_high_i8x16_s(lo),
    i16x8.extend_low_i8x16_s(hi),
    i16x8.extend_high_i8x16_s(hi),
    xb,
  );
}

function dotQ8_0(row: usize, xq: usize, n: i32): f32 {
  const blocks = n >> 5;
  const scales = xq + ((blocks as usize) << 7);
  let s = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const blk = row + (b as usize) * 34;
    const scale = half(load<u16>(blk)) * load<f32>(scales + ((b as usize) << 2));
    s = fma(splitDotI8(v128.load(blk, 2), v128.load(blk, 18), xq + ((b as usize) << 7)), f32x4.splat(scale), s);
  }
  return hsum(s);
}

@inline function dotQ4(row: usize, xq: usize, n: i32, withMin: bool): f32 {
  const blocks = n >> 5;
  const scales = xq + ((blocks as usize) << 7);
  const sums = scales + ((blocks as usize) << 2);
  const bytes: usize = withMin ? 20 : 18;
  const qOff: usize = withMin ? 4 : 2;
  let s = f32x4.splat(0);
  let minTerm: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const blk = row + (b as usize) * bytes;
    const q = v128.load(blk + qOff);
    let lo = v128.and(q, i8x16.splat(0x0f));
    let hi = v128.and(i16x8.shr_u(q, 4), i8x16.splat(0x0f));
    if (!withMin) {
      lo = i8x16.sub(lo, i8x16.splat(8));
      hi = i8x16.sub(hi, i8x16.splat(8));
    }
    const scale = half(load<u16>(blk)) * load<f32>(scales + ((b as usize) << 2));
    s = fma(splitDotI8(lo, hi, xq + ((b as usize) << 7)), f32x4.splat(scale), s);
    if (withMin) minTerm += half(load<u16>(blk, 2)) * load<f32>(sums + ((b as usize) << 2));
  }
  return hsum(s) + minTerm;
}

@inline function dotQ5(row: usize, xq: usize, n: i32, withMin: bool): f32 {
  const blocks = n >> 5;
  const scales = xq + ((blocks as usize) << 7);
  const sums = scales + ((blocks as usize) << 2);
  const bytes: usize = withMin ? 24 : 22;
  const hOff: usize = withMin ? 4 : 2;
  let s = f32x4.splat(0);
  let minTerm: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const blk = row + (b as usize) * bytes;
    const qh = v128.load32_zero(blk + hOff);
    const q = v128.load(blk + hOff + 4);
    let lo = v128.or(v128.and(q, i8x16.splat(0x0f)), q5HighBits(qh, false));
    let hi = v128.or(v128.and(i16x8.shr_u(q, 4), i8x16.splat(0x0f)), q5HighBits(qh, true));
    if (!withMin) {
      lo = i8x16.sub(lo, i8x16.splat(16));
      hi = i8x16.sub(hi, i8x16.splat(16));
    }
    const scale = half(load<u16>(blk)) * load<f32>(scales + ((b as usize) << 2));
    s = fma(splitDotI8(lo, hi, xq + ((b as usize) << 7)), f32x4.splat(scale), s);
    if (withMin) minTerm += half(load<u16>(blk, 2)) * load<f32>(sums + ((b as usize) << 2));
  }
  return hsum(s) + minTerm;
}

// --- quantized rows against ggml's 8-bit activations ----------------------------------------------------
// ggml does not keep activations exact: before a product with quantized weights it quantizes each block of
// 32 activations to i8 with one scale (Q8_0; Q8_1 also keeps the scaled sum, for the _1 types' minimum),
// and each block's product is one integer dot product times the two scales. Doing the same makes the
// products both cheaper (one 8-bit multiply per weight) and equal to rwkv.cpp's and llama.cpp's.
// Prepared activations (`quantizeQ8`) at xq: n i8 values q; then per block the f32 value of the f16 scale
// d, the f32 value of the f16 s = d·Σq (Q8_1), and Σq as i32.

/** The f32 value of the f16 nearest to x (ties to even, as F16C's conversion; subnormal halves kept). */
@inline function roundF16(x: f32): f32 {
  if (abs(x) < 6.103515625e-5) return f32.nearest(x * 16777216.0) * 5.9604644775390625e-8; // in units of 2^-24
  let b = reinterpret<u32>(x);
  b += 0xfff + ((b >> 13) & 1); // round the mantissa to 10 bits, ties to even (a carry bumps the exponent)
  const r = reinterpret<f32>(b & ~0x1fff);
  return abs(r) > 65504 ? copysign<f32>(Infinity, x) : r;
}

/**
 * ggml's x86 quantize_row_q8_0 / q8_1 of the f32 vector at x (n a multiple of 32): d = max|x|/127 (stored
 * as f16), q = round-to-nearest-even(x·127/max|x|), s = f16(d·Σq). A block holding Inf or NaN gets a NaN
 * scale, so its products are NaN rather than silently finite.
 */
export function quantizeQ8(x: usize, xq: usize, n: i32): void {
  const blocks = n >> 5;
  const ds = xq + (n as usize);
  const ss = ds + ((blocks as usize) << 2);
  const sums = ss + ((blocks as usize) << 2);
  for (let b = 0; b < blocks; b++) {
    const xb = x + ((b as usize) << 7);
    let m = f32x4.abs(v128.load(xb));
    for (let i: usize = 16; i < 128; i += 16) m = f32x4.max(m, f32x4.abs(v128.load(xb + i)));
    const mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const finite = mx - mx == 0; // false for Inf and NaN
    const d: f32 = mx / 127;
    const id = f32x4.splat(finite && mx != 0 ? <f32>127 / mx : 0);
    let sum = i32x4.splat(0);
    const out = xq + ((b as usize) << 5);
    for (let i: usize = 0; i < 128; i += 64) {
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i), id)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i, 16), id)));
      const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i, 32), id)));
      const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i, 48), id)));
      sum = i32x4.add(sum, i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)));
      const q8 = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3));
      v128.store(out + (i >> 2), q8);
    }
    const total = i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) + i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3);
    store<f32>(ds + ((b as usize) << 2), finite ? roundF16(d) : NaN);
    store<f32>(ss + ((b as usize) << 2), finite ? roundF16(d * (total as f32)) : NaN);
    store<i32>(sums + ((b as usize) << 2), total);
  }
}

/** Bytes `quantizeQ8` writes for n values. */
@inline function q8Bytes(n: i32): i32 {
  return n + (n >> 5) * 12;
}

/**
 * Σ w·q over one block as i32x4 partial sums: w as two i8x16 (values 0-15, 16-31) with |w| ≤ 31 (the Q4 and
 * Q5 families), q the block's 32 activations. Each i16 lane sums four products (≤ 4·31·127 < 2^15).
 */
@inline function smallDotI8(lo: v128, hi: v128, xb: usize): v128 {
  const x0 = v128.load(xb);
  const x1 = v128.load(xb, 16);
  const p = i16x8.add(
    i16x8.add(i16x8.extmul_low_i8x16_s(lo, x0), i16x8.extmul_high_i8x16_s(lo, x0)),
    i16x8.add(i16x8.extmul_low_i8x16_s(hi, x1), i16x8.extmul_high_i8x16_s(hi, x1)),
  );
  return i32x4.extadd_pairwise_i16x8_s(p);
}

/** Σ w·q over one block of full-range i8 weights (Q8_0): two products per i16 lane (≤ 2·128·127 < 2^15). */
@inline function fullDotI8(lo: v128, hi: v128, xb: usize): v128 {
  const x0 = v128.load(xb);
  const x1 = v128.load(xb, 16);
  return i32x4.add(
    i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extmul_low_i8x16_s(lo, x0), i16x8.extmul_high_i8x16_s(lo, x0))),
    i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.extmul_low_i8x16_s(hi, x1), i16x8.extmul_high_i8x16_s(hi, x1))),
  );
}

function dotQ8_0q8(row: usize, xq: usize, n: i32): f32 {
  const blocks = n >> 5;
  const ds = xq + (n as usize);
  let s = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const blk = row + (b as usize) * 34;
    const scale = half(load<u16>(blk)) * load<f32>(ds + ((b as usize) << 2));
    const isum = fullDotI8(v128.load(blk, 2), v128.load(blk, 18), xq + ((b as usize) << 5));
    s = fma(f32x4.convert_i32x4_s(isum), f32x4.splat(scale), s);
  }
  return hsum(s);
}

/**
 * Q4_0 / Q4_1 / Q5_0 / Q5_1 rows against Q8 activations: per block d_w·d_x·Σ w·q, minus the _0 types' offset
 * (8 or 16 times Σq, folded into the integer sum), plus the _1 types' m_w·s_x — ggml's vec_dot formulas.
 */
@inline function dotQ45q8(row: usize, xq: usize, n: i32, five: bool, withMin: bool): f32 {
  const blocks = n >> 5;
  const ds = xq + (n as usize);
  const ss = ds + ((blocks as usize) << 2);
  const sums = ss + ((blocks as usize) << 2);
  const bytes: usize = (withMin ? 20 : 18) + (five ? 4 : 0);
  const qOff: usize = (withMin ? 4 : 2) + (five ? 4 : 0);
  const offset: i32 = withMin ? 0 : five ? 16 : 8;
  let s = f32x4.splat(0);
  let minTerm: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const blk = row + (b as usize) * bytes;
    const q = v128.load(blk + qOff);
    let lo = v128.and(q, i8x16.splat(0x0f));
    let hi = i8x16.shr_u(q, 4);
    if (five) {
      const qh = v128.load32_zero(blk + (withMin ? 4 : 2));
      lo = v128.or(lo, q5HighBits(qh, false));
      hi = v128.or(hi, q5HighBits(qh, true));
    }
    // (Not relaxed SIMD's 8-bit dot product: Node 20's V8 returns twice the products and drops the addend.)
    let isum = smallDotI8(lo, hi, xq + ((b as usize) << 5));
    if (!withMin) isum = i32x4.sub(isum, i32x4.replace_lane(i32x4.splat(0), 0, offset * load<i32>(sums + ((b as usize) << 2))));
    const scale = half(load<u16>(blk)) * load<f32>(ds + ((b as usize) << 2));
    s = fma(f32x4.convert_i32x4_s(isum), f32x4.splat(scale), s);
    if (withMin) minTerm += half(load<u16>(blk, 2)) * load<f32>(ss + ((b as usize) << 2));
  }
  return hsum(s) + minTerm;
}

/** Four f16 values at p0..p3 as f32x4 (finite halves; a block scale is never inf or NaN in a valid file). */
@inline function halves4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = i32x4.splat(0);
  h = v128.load16_lane(p0, h, 1);
  h = v128.load16_lane(p1, h, 3);
  h = v128.load16_lane(p2, h, 5);
  h = v128.load16_lane(p3, h, 7);
  return widenF16(h);
}

/** The lane sums of four i32x4 as one i32x4: [Σa, Σb, Σc, Σd]. */
@inline function rowTotals(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 2, 4, 6), i32x4.shuffle(a, b, 1, 3, 5, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 2, 4, 6), i32x4.shuffle(c, d, 1, 3, 5, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7));
}

/** Σ w·q of one Q8_0 block (weights at blk + 2) against activation block b of xq. */
@inline function q8_0BlockDot(blk: usize, xq: usize, b: i32): v128 {
  return fullDotI8(v128.load(blk, 2), v128.load(blk, 18), xq + ((b as usize) << 5));
}

/** Σ w·q of one Q4/Q5 block (unsigned weights; the _0 offset is applied by the caller) against activation block b. */
@inline function q45BlockDot(blk: usize, xq: usize, b: i32, five: bool, withMin: bool): v128 {
  const qOff: usize = (withMin ? 4 : 2) + (five ? 4 : 0);
  const q = v128.load(blk + qOff);
  let lo = v128.and(q, i8x16.splat(0x0f));
  let hi = i8x16.shr_u(q, 4);
  if (five) {
    const qh = v128.load32_zero(blk + (withMin ? 4 : 2));
    lo = v128.or(lo, q5HighBits(qh, false));
    hi = v128.or(hi, q5HighBits(qh, true));
  }
  return smallDotI8(lo, hi, xq + ((b as usize) << 5));
}

/**
 * Rows r, r + part, r + 2·part, r + 3·part (four sequential streams, `ws` bytes apart) of a legacy-quantized
 * matrix against Q8 activations, into y. Per block: four integer dot products, their lane sums as one
 * vector, the _0 types' offset (8 or 16 × Σq) subtracted, then one multiply-add by the four rows' d_w·d_x
 * (and the _1 types' m_w·s_x): the per-block work that is not a multiply is shared by four rows.
 */
@inline function fourRowsQ8(w0: usize, ws: usize, xq: usize, y: usize, n: i32, r: i32, part: i32, eight: bool, five: bool, withMin: bool): void {
  const blocks = n >> 5;
  const ds = xq + (n as usize);
  const ss = ds + ((blocks as usize) << 2);
  const sums = ss + ((blocks as usize) << 2);
  const bytes: usize = eight ? 34 : (withMin ? 20 : 18) + (five ? 4 : 0);
  const offset: i32 = eight || withMin ? 0 : five ? 16 : 8;
  const w1 = w0 + ws, w2 = w1 + ws, w3 = w2 + ws;
  let acc = f32x4.splat(0);
  let accMin = f32x4.splat(0);
  for (let b = 0; b < blocks; b++) {
    const o = (b as usize) * bytes;
    let t: v128;
    if (eight) {
      t = rowTotals(q8_0BlockDot(w0 + o, xq, b), q8_0BlockDot(w1 + o, xq, b), q8_0BlockDot(w2 + o, xq, b), q8_0BlockDot(w3 + o, xq, b));
    } else {
      t = rowTotals(q45BlockDot(w0 + o, xq, b, five, withMin), q45BlockDot(w1 + o, xq, b, five, withMin), q45BlockDot(w2 + o, xq, b, five, withMin), q45BlockDot(w3 + o, xq, b, five, withMin));
    }
    if (offset != 0) t = i32x4.sub(t, i32x4.splat(offset * load<i32>(sums + ((b as usize) << 2))));
    const scale = f32x4.mul(halves4(w0 + o, w1 + o, w2 + o, w3 + o), v128.load32_splat(ds + ((b as usize) << 2)));
    acc = fma(f32x4.convert_i32x4_s(t), scale, acc);
    if (withMin) accMin = fma(halves4(w0 + o + 2, w1 + o + 2, w2 + o + 2, w3 + o + 2), v128.load32_splat(ss + ((b as usize) << 2)), accMin);
  }
  if (withMin) acc = f32x4.add(acc, accMin);
  const yo = y + ((r as usize) << 2), ps = (part as usize) << 2;
  store<f32>(yo, f32x4.extract_lane(acc, 0));
  store<f32>(yo + ps, f32x4.extract_lane(acc, 1));
  store<f32>(yo + 2 * ps, f32x4.extract_lane(acc, 2));
  store<f32>(yo + 3 * ps, f32x4.extract_lane(acc, 3));
}

/**
 * Replaces each of `rows` rows of n activations by its ggml-quantized value, for the products that decode
 * weights to f32 (prompts; K-quants): GRID_Q8_0, q·f16(d) as `quantizeQ8` makes them (exact in f32); GRID_Q8_K,
 * ggml's quantize_row_q8_K — 256-value blocks, iscale = −127/x* (x* the first value of largest magnitude),
 * q = min(127, nearest(iscale·x)), d = 1/iscale kept in f32 — as q·d.
 */
export function roundActivations(grid: i32, x: usize, out: usize, rows: i32, n: i32, tmp: usize): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + (r as usize) * ((n as usize) << 2);
    const o = out + (r as usize) * ((n as usize) << 2);
    if (grid == GRID_Q8_0) {
      quantizeQ8(xr, tmp, n);
      const ds = tmp + (n as usize);
      for (let j = 0; j < n; j += 16) {
        const q = v128.load(tmp + (j as usize));
        const d = f32x4.splat(load<f32>(ds + (((j >> 5) as usize) << 2)));
        const p = o + ((j as usize) << 2);
        i8x16ToF32(q, p);
        for (let k: usize = 0; k < 64; k += 16) v128.store(p + k, f32x4.mul(v128.load(p + k), d));
      }
    } else {
      for (let b = 0; b < n >> 8; b++) {
        const xb = xr + ((b as usize) << 10);
        const ob = o + ((b as usize) << 10);
        let amax: f32 = 0;
        let mx: f32 = 0;
        for (let j = 0; j < 256; j++) {
          const v = load<f32>(xb + ((j as usize) << 2));
          if (abs(v) > amax) { amax = abs(v); mx = v; }
        }
        const finite = amax - amax == 0;
        if (amax == 0 || !finite) {
          // NaN/Inf (amax stays 0 for NaN): the block's products must not come out finite.
          const fill: f32 = amax == 0 && !hasNaN(xb) ? 0 : NaN;
          for (let j = 0; j < 256; j++) store<f32>(ob + ((j as usize) << 2), fill);
          continue;
        }
        const iscale: f32 = <f32>-127 / mx;
        const d: f32 = <f32>1 / iscale;
        for (let j = 0; j < 256; j++) {
          const q = min<f32>(127, f32.nearest(iscale * load<f32>(xb + ((j as usize) << 2))));
          store<f32>(ob + ((j as usize) << 2), q * d);
        }
      }
    }
  }
}

/** Whether the 256 values at p hold a NaN. */
function hasNaN(p: usize): bool {
  for (let j = 0; j < 256; j++) {
    const v = load<f32>(p + ((j as usize) << 2));
    if (v != v) return true;
  }
  return false;
}

// --- activations prepared once per product, then read by every row ---------------------------------------

/**
 * Activations for the quantized kernels. Each block of 32 values becomes integers X with one power-of-two
 * scale s per block, x ≈ s·X and |X| < 2^30, stored as X = hi·2^15 + lo (hi signed 16-bit, lo in
 * [0, 2^15)): the block's products then run in 16-bit integer lanes yet lose nothing f32 keeps — values
 * within 2^6 of the block's largest are exact, smaller ones are rounded at 2^-30 of it (a block whose
 * largest value is below 2^-98 is rounded at 2^-128 absolute, far below any activation). Layout at `xq`:
 * per block 32 hi then 32 lo (128 bytes); then one f32 scale per block; then the f32 sum of each block
 * (for the _1 types' minimum). A block holding Inf or NaN gets a NaN scale, so its products are NaN.
 */
function splitBlocks(x: usize, xq: usize, n: i32): void {
  const blocks = n >> 5;
  const scales = xq + ((blocks as usize) << 7);
  const sums = scales + ((blocks as usize) << 2);
  for (let b = 0; b < blocks; b++) {
    const xb = x + ((b as usize) << 7);
    let m = f32x4.splat(0);
    let sum = f32x4.splat(0);
    for (let i: usize = 0; i < 128; i += 16) {
      const v = v128.load(xb + i);
      m = f32x4.max(m, f32x4.abs(v));
      sum = f32x4.add(sum, v);
    }
    const mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    store<f32>(sums + ((b as usize) << 2), hsum(sum));
    const e = (reinterpret<u32>(mx) >> 23) & 0xff;
    // mx·2^(156−e) lies in [2^29, 2^30); below 2^-98 the multiplier stops at 2^127.
    const mult = reinterpret<f32>((e >= 29 ? 283 - e : 254) << 23);
    let scale: f32 = 1 / mult;
    if (e == 0xff || isNaN(mx)) scale = NaN;
    store<f32>(scales + ((b as usize) << 2), scale);
    const ms = f32x4.splat(e == 0xff ? 0 : mult);
    const out = xq + ((b as usize) << 7);
    for (let i: usize = 0; i < 128; i += 32) {
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i), ms)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xb + i, 16), ms)));
      v128.store(out + (i >> 1), i16x8.narrow_i32x4_s(i32x4.shr_s(q0, 15), i32x4.shr_s(q1, 15)));
      v128.store(out + (i >> 1), i16x8.narrow_i32x4_s(v128.and(q0, i32x4.splat(0x7fff)), v128.and(q1, i32x4.splat(0x7fff))), 64);
    }
  }
}

/** Bytes `prepareActivations` writes for a product of `n` columns with `dtype` weights (0: none). */
export function preparedBytes(dtype: i32, n: i32): i32 {
  if (dtype == DTYPE_F16 || dtype == DTYPE_BF16) return n << 2;
  if (dtype >= DTYPE_Q4_0_Q8 && dtype <= DTYPE_Q8_0_Q8) return q8Bytes(n);
  if (dtype >= DTYPE_Q4_0 && dtype <= DTYPE_Q8_0) return (n >> 5) * 136;
  return 0;
}

/**
 * Writes at `out` the form of the f32 vector `x` (n values) that `matvec` reads for `dtype` weights: f16 and bf16
 * permuted by groups of 8 (evens, then odds; a tail of fewer than 8 stays in place), quantized types split
 * by `splitBlocks`. Other dtypes read `x` itself.
 */
export function prepareActivations(dtype: i32, x: usize, out: usize, n: i32): void {
  if (dtype == DTYPE_F16 || dtype == DTYPE_BF16) {
    let j = 0;
    for (; j + 8 <= n; j += 8) {
      const a = v128.load(x + ((j as usize) << 2));
      const b = v128.load(x + ((j as usize) << 2), 16);
      const o = out + ((j as usize) << 2);
      v128.store(o, v128.shuffle<f32>(a, b, 0, 2, 4, 6));
      v128.store(o, v128.shuffle<f32>(a, b, 1, 3, 5, 7), 16);
    }
    for (; j < n; j++) store<f32>(out + ((j as usize) << 2), load<f32>(x + ((j as usize) << 2)));
  } else if (dtype >= DTYPE_Q4_0 && dtype <= DTYPE_Q8_0) {
    splitBlocks(x, out, n);
  } else if (dtype >= DTYPE_Q4_0_Q8 && dtype <= DTYPE_Q8_0_Q8) {
    quantizeQ8(x, out, n);
  }
}

/** Bytes of one stored row of `n` values. */
function rowBytes(dtype: i32, n: i32): usize {
  const u = n as usize;
  if (dtype >= DTYPE_Q4_0_Q8 && dtype <= DTYPE_Q8_0_Q8) dtype -= Q8_ACTIVATIONS; // the same rows
  switch (dtype) {
    case DTYPE_F32: return u << 2;
    case DTYPE_F16: case DTYPE_BF16: case DTYPE_F16_SPECIAL: return u << 1;
    case DTYPE_Q4_0: return (u >> 5) * 18;
    case DTYPE_Q4_1: return (u >> 5) * 20;
    case DTYPE_Q5_0: return (u >> 5) * 22;
    case DTYPE_Q5_1: return (u >> 5) * 24;
    case DTYPE_Q8_0: return (u >> 5) * 34;
    default: return 16 + ((u + 15) & ~15); // int8 rows: f32 scale (padded to 16 bytes), then the values
  }
}

@inline function dotRow(dtype: i32, row: usize, x: usize, n: i32): f32 {
  switch (dtype) {
    case DTYPE_F32: return dotF32(row, x, n);
    case DTYPE_F16: return dotF16(row, x, n);
    case DTYPE_F16_SPECIAL: return dotF16Exact(row, x, n);
    case DTYPE_BF16: return dotBF16(row, x, n);
    case DTYPE_Q4_0: return dotQ4(row, x, n, false);
    case DTYPE_Q4_1: return dotQ4(row, x, n, true);
    case DTYPE_Q5_0: return dotQ5(row, x, n, false);
    case DTYPE_Q5_1: return dotQ5(row, x, n, true);
    case DTYPE_Q8_0: return dotQ8_0(row, x, n);
    case DTYPE_Q4_0_Q8: return dotQ45q8(row, x, n, false, false);
    case DTYPE_Q4_1_Q8: return dotQ45q8(row, x, n, false, true);
    case DTYPE_Q5_0_Q8: return dotQ45q8(row, x, n, true, false);
    case DTYPE_Q5_1_Q8: return dotQ45q8(row, x, n, true, true);
    case DTYPE_Q8_0_Q8: return dotQ8_0q8(row, x, n);
    default: return 0; // int8 rows go through matvecInt8
  }
}

/**
 * y[r] = W[r]·x for r in [r0, r1). W: rows of `cols` values in `dtype`; `x` as `prepareActivations`
 * leaves it for bf16 and the quantized types, the f32 vector otherwise.
 */
export function matvec(dtype: i32, w: usize, x: usize, y: usize, cols: i32, r0: i32, r1: i32): void {
  const rb = rowBytes(dtype, cols);
  let r = r0;
  if (dtype == DTYPE_F32) {
    // Four rows a quarter of the range apart: four sequential streams keep more of memory's bandwidth
    // in flight than one row after another.
    const part = (r1 - r0) >> 2;
    for (let b = 0; b < part; b++) fourRowsTimesOne(w + ((r0 + b) as usize) * rb, (part as usize) * rb, x, y, cols, r0 + b, part);
    r = r0 + (part << 2);
  } else if (dtype >= DTYPE_Q4_0_Q8 && dtype <= DTYPE_Q8_0_Q8) {
    const part = (r1 - r0) >> 2;
    const ws = (part as usize) * rb;
    for (let b = 0; b < part; b++) {
      const w0 = w + ((r0 + b) as usize) * rb;
      switch (dtype) {
        case DTYPE_Q4_0_Q8: fourRowsQ8(w0, ws, x, y, cols, r0 + b, part, false, false, false); break;
        case DTYPE_Q4_1_Q8: fourRowsQ8(w0, ws, x, y, cols, r0 + b, part, false, false, true); break;
        case DTYPE_Q5_0_Q8: fourRowsQ8(w0, ws, x, y, cols, r0 + b, part, false, true, false); break;
        case DTYPE_Q5_1_Q8: fourRowsQ8(w0, ws, x, y, cols, r0 + b, part, false, true, true); break;
        default: fourRowsQ8(w0, ws, x, y, cols, r0 + b, part, true, false, false);
      }
    }
    r = r0 + (part << 2);
  }
  for (; r < r1; r++) {
    store<f32>(y + ((r as usize) << 2), dotRow(dtype, w + (r as usize) * rb, x, cols));
  }
}

/** y[r + j·part] = W row j · x for four f32 weight rows `ws` bytes apart from w0. */
@inline function fourRowsTimesOne(w0: usize, ws: usize, x: usize, y: usize, cols: i32, r: i32, part: i32): void {
  const kBytes = (cols as usize) << 2;
  const w1 = w0 + ws, w2 = w1 + ws, w3 = w2 + ws;
  const end = ((cols & ~3) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 16) {
    const p = v128.load(x + k);
    a0 = fma(v128.load(w0 + k), p, a0);
    a1 = fma(v128.load(w1 + k), p, a1);
    a2 = fma(v128.load(w2 + k), p, a2);
    a3 = fma(v128.load(w3 + k), p, a3);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (; k < kBytes; k += 4) {
    const p = load<f32>(x + k);
    s0 += load<f32>(w0 + k) * p; s1 += load<f32>(w1 + k) * p; s2 += load<f32>(w2 + k) * p; s3 += load<f32>(w3 + k) * p;
  }
  const o = y + ((r as usize) << 2), ps = (part as usize) << 2;
  store<f32>(o, s0); store<f32>(o + ps, s1); store<f32>(o + 2 * ps, s2); store<f32>(o + 3 * ps, s3);
}

// --- int8 mode: i8 weights with one f32 scale per row, activations rounded to i16 ------------------------

/**
 * Activations → i16 with one scale for the whole vector: xq[j] = round(x[j] / s), s = max|x| / 32767.
 * Returns s. `n` is padded with zeros up to a multiple of 16 by the caller's buffer size.
 */
export function quantizeActivations(x: usize, xq: usize, n: i32): f32 {
  let m: f32 = 0;
  for (let j = 0; j < n; j++) m = max(m, abs(load<f32>(x + ((j as usize) << 2))));
  const s: f32 = m > 0 ? m / 32767 : 1;
  const inv: f32 = 1 / s;
  for (let j = 0; j < n; j++) store<i16>(xq + ((j as usize) << 1), <i16>nearest(load<f32>(x + ((j as usize) << 2)) * inv));
  for (let j = n; j < ((n + 15) & ~15); j++) store<i16>(xq + ((j as usize) << 1), 0);
  return s;
}

/**
 * y[r] = scale_r · xScale · Σ w8[r][j]·xq[j] for r in [r0, r1). Each row is 16 bytes holding its f32
 * scale, then the i8 values padded with zeros to a multiple of 16. Products are summed exactly in i32
 * lanes by `i32x4.dot_i16x8_s` over 512-column stretches, then in f32.
 */
export function matvecInt8(w: usize, xq: usize, xScale: f32, y: usize, cols: i32, r0: i32, r1: i32): void {
  const padded = (cols + 15) & ~15;
  const rb = rowBytes(8, cols);
  for (let r = r0; r < r1; r++) {
    const row = w + (r as usize) * rb;
    const q = row + 16;
    let total: f32 = 0;
    // Each i32 lane takes 4 products per 16 columns, each at most 127·32767: flushing to f32 every 512
    // columns (128 products a lane) keeps the integer sums far from overflow.
    for (let j0 = 0; j0 < padded; j0 += 512) {
      const j1 = min(padded, j0 + 512);
      let acc = i32x4.splat(0);
      for (let j = j0; j < j1; j += 16) {
        const v = v128.load(q + (j as usize));
        const xo = xq + ((j as usize) << 1);
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(v), v128.load(xo)));
        acc = i32x4.add(acc, i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(v), v128.load(xo, 16)));
      }
      total += hsum(f32x4.convert_i32x4_s(acc));
    }
    store<f32>(y + ((r as usize) << 2), total * load<f32>(row) * xScale);
  }
}

// --- matrix-matrix: packed panels of 16 output rows, 3 × 16 register blocks --------------------------------

/** Decodes row `r` of W into f32 at `dst`. */
function decodeRow(dtype: i32, row: usize, dst: usize, n: i32): void {
  switch (dtype) {
    case DTYPE_F32:
      memory.copy(dst, row, (n as usize) << 2);
      return;
    case DTYPE_F16:
      widenHalves(row, dst, n);
      return;
    case DTYPE_BF16:
      for (let j = 0; j < n; j++) store<u32>(dst + ((j as usize) << 2), (load<u16>(row + ((j as usize) << 1)) as u32) << 16);
      return;
    case DTYPE_INT8: {
      const scale = f32x4.splat(load<f32>(row));
      for (let j = 0; j < n; j += 16) {
        const o = dst + ((j as usize) << 2);
        if (j + 16 <= n) {
          i8x16ToF32(v128.load(row + 16 + (j as usize)), o);
          for (let k: usize = 0; k < 64; k += 16) v128.store(o + k, f32x4.mul(v128.load(o + k), scale));
        } else {
          for (let jj = j; jj < n; jj++) store<f32>(dst + ((jj as usize) << 2), (load<i8>(row + 16 + (jj as usize)) as f32) * load<f32>(row));
        }
      }
      return;
    }
    case DTYPE_Q8_0: {
      for (let b = 0; b < n >> 5; b++) {
        const blk = row + (b as usize) * 34;
        const d = f32x4.splat(half(load<u16>(blk)));
        const o = dst + ((b as usize) << 7);
        i8x16ToF32(v128.load(blk, 2), o);
        i8x16ToF32(v128.load(blk, 18), o + 64);
        for (let k: usize = 0; k < 128; k += 16) v128.store(o + k, f32x4.mul(v128.load(o + k), d));
      }
      return;
    }
    default: {
      // Q4/Q5 families: build the 32 small integers, then scale (and offset).
      const withMin = dtype == DTYPE_Q4_1 || dtype == DTYPE_Q5_1;
      const five = dtype == DTYPE_Q5_0 || dtype == DTYPE_Q5_1;
      const bytes: usize = dtype == DTYPE_Q4_0 ? 18 : dtype == DTYPE_Q4_1 ? 20 : dtype == DTYPE_Q5_0 ? 22 : 24;
      for (let b = 0; b < n >> 5; b++) {
        const blk = row + (b as usize) * bytes;
        const d = f32x4.splat(half(load<u16>(blk)));
        const m = f32x4.splat(withMin ? half(load<u16>(blk, 2)) : 0);
        const qOff: usize = (withMin ? 4 : 2) + (five ? 4 : 0);
        const q = v128.load(blk + qOff);
        let lo = v128.and(q, i8x16.splat(0x0f));
        let hi = v128.and(i16x8.shr_u(q, 4), i8x16.splat(0x0f));
        if (five) {
          const qh = v128.load32_zero(blk + (withMin ? 4 : 2));
          lo = v128.or(lo, q5HighBits(qh, false));
          hi = v128.or(hi, q5HighBits(qh, true));
        }
        if (!withMin) {
          const bias = i8x16.splat(five ? 16 : 8);
          lo = i8x16.sub(lo, bias);
          hi = i8x16.sub(hi, bias);
        }
        const o = dst + ((b as usize) << 7);
        i8x16ToF32(lo, o);
        i8x16ToF32(hi, o + 64);
        // q·d (+ m), rounded once as ggml's reference dequantizer does.
        for (let k: usize = 0; k < 128; k += 16) v128.store(o + k, f32x4.add(f32x4.mul(v128.load(o + k), d), m));
      }
    }
  }
}

/**
 * Y = X·Wᵀ for output rows [r0, r1): X is t × cols (row-major f32), Y is t × rows. For each panel of 16
 * rows, the rows are decoded to f32 and packed as cols × 16 at `pack` (cols·64 bytes), with `tmp` (cols·4
 * bytes) as a decode buffer; then 4 input rows × 8 outputs are accumulated in 8 registers.
 */
export function matmul(dtype: i32, w: usize, x: usize, y: usize, t: i32, rows: i32, cols: i32, r0: i32, r1: i32, pack: usize, tmp: usize): void {
  const rb = rowBytes(dtype, cols);
  const kBytes = (cols as usize) << 2;
  for (let p = r0; p < r1; p += 16) {
    const width = min(16, r1 - p);
    // Pack: pack[k][i] = W[p + i][k], zero for i ≥ width.
    for (let i = 0; i < 16; i++) {
      if (i < width) {
        decodeRow(dtype, w + ((p + i) as usize) * rb, tmp, cols);
        for (let k = 0; k < cols; k++) store<f32>(pack + (((k << 4) + i) as usize) * 4, load<f32>(tmp + ((k as usize) << 2)));
      } else {
        for (let k = 0; k < cols; k++) store<f32>(pack + (((k << 4) + i) as usize) * 4, 0);
      }
    }
    // 4 input rows × 8 outputs (half a panel) per register block: 8 accumulators, 2 panel loads and 4
    // broadcasts per k, which fits the 16 SIMD registers of x86-64 without spilling.
    for (let half = 0; half < 16; half += 8) {
      if (half >= width) break;
      const ph = pack + ((half as usize) << 2);
      let i = 0;
      for (; i + 4 <= t; i += 4) {
        const x0 = x + (i as usize) * kBytes;
        const x1 = x0 + kBytes;
        const x2 = x1 + kBytes;
        const x3 = x2 + kBytes;
        let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
        let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
        let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
        let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
        for (let k = 0; k < cols; k++) {
          const pk = ph + ((k as usize) << 6);
          const b0 = v128.load(pk);
          const b1 = v128.load(pk, 16);
          const ko = (k as usize) << 2;
          const a0 = v128.load32_splat(x0 + ko);
          c00 = fma(a0, b0, c00); c01 = fma(a0, b1, c01);
          const a1 = v128.load32_splat(x1 + ko);
          c10 = fma(a1, b0, c10); c11 = fma(a1, b1, c11);
          const a2 = v128.load32_splat(x2 + ko);
          c20 = fma(a2, b0, c20); c21 = fma(a2, b1, c21);
          const a3 = v128.load32_splat(x3 + ko);
          c30 = fma(a3, b0, c30); c31 = fma(a3, b1, c31);
        }
        storeHalfRow(y, i, rows, p + half, width - half, c00, c01, tmp);
        storeHalfRow(y, i + 1, rows, p + half, width - half, c10, c11, tmp);
        storeHalfRow(y, i + 2, rows, p + half, width - half, c20, c21, tmp);
        storeHalfRow(y, i + 3, rows, p + half, width - half, c30, c31, tmp);
      }
      for (; i < t; i++) {
        const x0 = x + (i as usize) * kBytes;
        let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
        for (let k = 0; k < cols; k++) {
          const pk = ph + ((k as usize) << 6);
          const a0 = v128.load32_splat(x0 + ((k as usize) << 2));
          c00 = fma(a0, v128.load(pk), c00);
          c01 = fma(a0, v128.load(pk, 16), c01);
        }
        storeHalfRow(y, i, rows, p + half, width - half, c00, c01, tmp);
      }
    }
  }
}

/**
 * Y = X·Wᵀ for a few input rows (t ≤ 16: sequences generating together), rows [r0, r1) of W, reading each
 * weight row once from memory. V8 issues every load of a loop iteration before its arithmetic and has 15
 * SIMD registers to give, so a block fits when its accumulators plus its loads are at most 15; with fewer
 * than 8 accumulators the fused multiply-adds wait on each other's latency. Each shape gets such a block
 * (single thread, in cache, f32, G multiply-adds/s: t = 2 14 → 20, t = 3 11 → 18, t = 4 14 → 23):
 *   t = 2     four weight rows against two input rows (6 loads, 8 accumulators);
 *   t = 3, 4  two weight rows against three or four input rows (5 + 6 or 6 + 8);
 *   t ≥ 5     four weight rows against eight input rows at a time from `xt`, X transposed into groups of
 *             8 lanes (xt[g][k][lane], zero-padded; `transposeLanes`): 8 accumulators of 4 lanes, one
 *             broadcast weight per row and column.
 * A block's weight rows are a quarter (or half) of the range apart, not neighbours: each is then one
 * sequential stream through memory across blocks, which the prefetchers follow; neighbouring rows restart
 * them every row and halved the speed out of cache (t = 4: 11.7 against 21 G/s).
 * Other encodings are decoded into `tmp` first (four rows of f32, then 32 floats for the 4 × 8 block).
 */
export function matmulRows(dtype: i32, w: usize, x: usize, y: usize, t: i32, rows: i32, cols: i32, r0: i32, r1: i32, tmp: usize, xt: usize): void {
  const rb = rowBytes(dtype, cols);
  const kBytes = (cols as usize) << 2;
  if (t <= 4) {
    // Blocks of `step` weight rows × t input rows: 8 accumulators (6 for t = 3) plus the block's loads
    // stay within the 15 SIMD registers V8 allocates (it issues every load of an iteration first).
    // The block's rows are `part` rows apart, so that each of its weight streams is one sequential walk
    // through memory across blocks (rows next to each other would restart the prefetchers every row).
    const step = t == 2 ? 4 : 2;
    const part = t > 1 ? (r1 - r0) / step : 0;
    for (let b = 0; b < part; b++) {
      const r = r0 + b;
      let w0 = w + (r as usize) * rb;
      let ws = (part as usize) * rb;
      if (dtype != DTYPE_F32) {
        for (let j = 0; j < step; j++) decodeRow(dtype, w0 + (j as usize) * ws, tmp + (j as usize) * kBytes, cols);
        w0 = tmp;
        ws = kBytes;
      }
      if (t == 2) fourRowsTimesTwo(w0, ws, x, y, rows, cols, r, part);
      else if (t == 3) twoRowsTimesThree(w0, ws, x, y, rows, cols, r, part);
      else twoRowsTimesFour(w0, ws, x, y, rows, cols, r, part);
    }
    let r = r0 + part * step;
    for (; r < r1; r++) {
      let w0 = w + (r as usize) * rb;
      if (dtype != DTYPE_F32) {
        decodeRow(dtype, w0, tmp, cols);
        w0 = tmp;
      }
      if (t <= 2) rowTimesTwo(w0, x, y, t, rows, cols, r);
      else rowTimesFour(w0, x, y, t, rows, cols, r);
    }
    return;
  }
  const out = tmp + (kBytes << 2);
  const groups = (t + 7) >> 3;
  // Four weight rows `part` rows apart per block, each a sequential stream across blocks (as above).
  const part = (r1 - r0) >> 2;
  for (let b = 0; b < part; b++) {
    const r = r0 + b;
    let w0 = w + (r as usize) * rb;
    let ws = (part as usize) * rb;
    if (dtype != DTYPE_F32) {
      for (let j = 0; j < 4; j++) decodeRow(dtype, w0 + (j as usize) * ws, tmp + (j as usize) * kBytes, cols);
      w0 = tmp;
      ws = kBytes;
    }
    for (let g = 0; g < groups; g++) {
      fourRowsTimesEight(w0, ws, xt + (g as usize) * (kBytes << 3), out, cols);
      const lanes = min(8, t - (g << 3));
      for (let i = 0; i < lanes; i++) {
        const o = y + ((((g << 3) + i) as usize) * (rows as usize) + (r as usize)) * 4;
        for (let j = 0; j < 4; j++) store<f32>(o + (((j * part) as usize) << 2), load<f32>(out + (((j << 3) + i) as usize) * 4));
      }
    }
  }
  let r = r0 + (part << 2);
  for (; r < r1; r++) {
    let w0 = w + (r as usize) * rb;
    if (dtype != DTYPE_F32) {
      decodeRow(dtype, w0, tmp, cols);
      w0 = tmp;
    }
    for (let g = 0; g < groups; g++) {
      oneRowTimesEight(w0, xt + (g as usize) * (kBytes << 3), out, cols);
      const lanes = min(8, t - (g << 3));
      for (let i = 0; i < lanes; i++) store<f32>(y + ((((g << 3) + i) as usize) * (rows as usize) + (r as usize)) * 4, load<f32>(out + (i as usize) * 4));
    }
  }
}

/**
 * dst (cols × rows) = srcᵀ (src: rows × cols, f32): 4 × 4 blocks by lane shuffles, inside 32 × 32 tiles so
 * that both sides stay in the cache; the edges (rows or cols not multiples of 4) one value at a time.
 * The training's backward products feed the matrix kernel transposed operands (training/gemm.ts).
 */
export function transposeF32(src: usize, dst: usize, rows: i32, cols: i32): void {
  const r4 = rows & ~3, c4 = cols & ~3;
  const rb = (cols as usize) << 2, db = (rows as usize) << 2;
  for (let R = 0; R < r4; R += 32) {
    const rEnd = min(R + 32, r4);
    for (let C = 0; C < c4; C += 32) {
      const cEnd = min(C + 32, c4);
      for (let r = R; r < rEnd; r += 4) {
        const s = src + (r as usize) * rb;
        for (let c = C; c < cEnd; c += 4) {
          const o = (c as usize) << 2;
          const a = v128.load(s + o), b = v128.load(s + rb + o), cc = v128.load(s + 2 * rb + o), d = v128.load(s + 3 * rb + o);
          const t0 = i8x16.shuffle(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23); // a0 b0 a1 b1
          const t1 = i8x16.shuffle(a, b, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31); // a2 b2 a3 b3
          const t2 = i8x16.shuffle(cc, d, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
          const t3 = i8x16.shuffle(cc, d, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
          const q = dst + (c as usize) * db + ((r as usize) << 2);
          v128.store(q, i8x16.shuffle(t0, t2, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
          v128.store(q + db, i8x16.shuffle(t0, t2, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
          v128.store(q + 2 * db, i8x16.shuffle(t1, t3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
          v128.store(q + 3 * db, i8x16.shuffle(t1, t3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
        }
      }
    }
  }
  // Edges: the last cols % 4 columns of every row, and the last rows % 4 rows.
  for (let r = 0; r < rows; r++) {
    for (let c = r < r4 ? c4 : 0; c < cols; c++) store<f32>(dst + (c as usize) * db + ((r as usize) << 2), load<f32>(src + (r as usize) * rb + ((c as usize) << 2)));
  }
}

/** dst[i] += src[i] for n values (f32). */
export function addInto(dst: usize, src: usize, n: i32): void {
  let i: usize = 0;
  const end = (n as usize) << 2;
  for (; i + 16 <= end; i += 16) v128.store(dst + i, f32x4.add(v128.load(dst + i), v128.load(src + i)));
  for (; i < end; i += 4) store<f32>(dst + i, load<f32>(dst + i) + load<f32>(src + i));
}

/** X (t rows of `cols`) → groups of 8 lanes, xt[g][k][lane] = X[8g + lane][k], zero past row t. */
export function transposeLanes(x: usize, xt: usize, t: i32, cols: i32): void {
  const groups = (t + 7) >> 3;
  for (let g = 0; g < groups; g++) {
    for (let k = 0; k < cols; k++) {
      const o = xt + ((((g as usize) * (cols as usize) + (k as usize)) << 5));
      for (let lane = 0; lane < 8; lane++) {
        const i = (g << 3) + lane;
        store<f32>(o + ((lane as usize) << 2), i < t ? load<f32>(x + ((i as usize) * (cols as usize) + (k as usize)) * 4) : 0);
      }
    }
  }
}

/** y[i][r + j·part] = W row j · x[i] for four weight rows (f32, `ws` bytes apart from w0) and two input rows. */
@inline function fourRowsTimesTwo(w0: usize, ws: usize, x: usize, y: usize, rows: i32, cols: i32, r: i32, part: i32): void {
  const kBytes = (cols as usize) << 2;
  const w1 = w0 + ws, w2 = w1 + ws, w3 = w2 + ws;
  const x1 = x + kBytes;
  const end = ((cols & ~3) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 16) {
    const p = v128.load(x + k);
    const q = v128.load(x1 + k);
    const u0 = v128.load(w0 + k);
    a0 = fma(u0, p, a0); b0 = fma(u0, q, b0);
    const u1 = v128.load(w1 + k);
    a1 = fma(u1, p, a1); b1 = fma(u1, q, b1);
    const u2 = v128.load(w2 + k);
    a2 = fma(u2, p, a2); b2 = fma(u2, q, b2);
    const u3 = v128.load(w3 + k);
    a3 = fma(u3, p, a3); b3 = fma(u3, q, b3);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  let z0 = hsum(b0), z1 = hsum(b1), z2 = hsum(b2), z3 = hsum(b3);
  for (; k < kBytes; k += 4) {
    const p = load<f32>(x + k), q = load<f32>(x1 + k);
    const u0 = load<f32>(w0 + k), u1 = load<f32>(w1 + k), u2 = load<f32>(w2 + k), u3 = load<f32>(w3 + k);
    s0 += u0 * p; s1 += u1 * p; s2 += u2 * p; s3 += u3 * p;
    z0 += u0 * q; z1 += u1 * q; z2 += u2 * q; z3 += u3 * q;
  }
  const o = y + ((r as usize) << 2), o1 = o + ((rows as usize) << 2), ps = (part as usize) << 2;
  store<f32>(o, s0); store<f32>(o + ps, s1); store<f32>(o + 2 * ps, s2); store<f32>(o + 3 * ps, s3);
  store<f32>(o1, z0); store<f32>(o1 + ps, z1); store<f32>(o1 + 2 * ps, z2); store<f32>(o1 + 3 * ps, z3);
}

/** y[i][r + j·part] = W row j · x[i] for two weight rows (f32, `ws` bytes apart from w0) and four input rows. */
@inline function twoRowsTimesFour(w0: usize, ws: usize, x: usize, y: usize, rows: i32, cols: i32, r: i32, part: i32): void {
  const kBytes = (cols as usize) << 2;
  const w1 = w0 + ws;
  const x1 = x + kBytes, x2 = x1 + kBytes, x3 = x2 + kBytes;
  const end = ((cols & ~3) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 16) {
    const u = v128.load(w0 + k);
    const v = v128.load(w1 + k);
    const p0 = v128.load(x + k);
    a0 = fma(u, p0, a0); b0 = fma(v, p0, b0);
    const p1 = v128.load(x1 + k);
    a1 = fma(u, p1, a1); b1 = fma(v, p1, b1);
    const p2 = v128.load(x2 + k);
    a2 = fma(u, p2, a2); b2 = fma(v, p2, b2);
    const p3 = v128.load(x3 + k);
    a3 = fma(u, p3, a3); b3 = fma(v, p3, b3);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  let z0 = hsum(b0), z1 = hsum(b1), z2 = hsum(b2), z3 = hsum(b3);
  for (; k < kBytes; k += 4) {
    const u = load<f32>(w0 + k), v = load<f32>(w1 + k);
    const p0 = load<f32>(x + k), p1 = load<f32>(x1 + k), p2 = load<f32>(x2 + k), p3 = load<f32>(x3 + k);
    s0 += u * p0; s1 += u * p1; s2 += u * p2; s3 += u * p3;
    z0 += v * p0; z1 += v * p1; z2 += v * p2; z3 += v * p3;
  }
  const st = (rows as usize) << 2, ps = (part as usize) << 2;
  const o = y + ((r as usize) << 2);
  store<f32>(o, s0); store<f32>(o + ps, z0);
  store<f32>(o + st, s1); store<f32>(o + st + ps, z1);
  store<f32>(o + 2 * st, s2); store<f32>(o + 2 * st + ps, z2);
  store<f32>(o + 3 * st, s3); store<f32>(o + 3 * st + ps, z3);
}

/** y[i][r + j·part] = W row j · x[i] for two weight rows (f32, `ws` bytes apart from w0) and three input rows. */
@inline function twoRowsTimesThree(w0: usize, ws: usize, x: usize, y: usize, rows: i32, cols: i32, r: i32, part: i32): void {
  const kBytes = (cols as usize) << 2;
  const w1 = w0 + ws;
  const x1 = x + kBytes, x2 = x1 + kBytes;
  const end = ((cols & ~3) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 16) {
    const u = v128.load(w0 + k);
    const v = v128.load(w1 + k);
    const p0 = v128.load(x + k);
    a0 = fma(u, p0, a0); b0 = fma(v, p0, b0);
    const p1 = v128.load(x1 + k);
    a1 = fma(u, p1, a1); b1 = fma(v, p1, b1);
    const p2 = v128.load(x2 + k);
    a2 = fma(u, p2, a2); b2 = fma(v, p2, b2);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2);
  let z0 = hsum(b0), z1 = hsum(b1), z2 = hsum(b2);
  for (; k < kBytes; k += 4) {
    const u = load<f32>(w0 + k), v = load<f32>(w1 + k);
    const p0 = load<f32>(x + k), p1 = load<f32>(x1 + k), p2 = load<f32>(x2 + k);
    s0 += u * p0; s1 += u * p1; s2 += u * p2;
    z0 += v * p0; z1 += v * p1; z2 += v * p2;
  }
  const st = (rows as usize) << 2, ps = (part as usize) << 2;
  const o = y + ((r as usize) << 2);
  store<f32>(o, s0); store<f32>(o + ps, z0);
  store<f32>(o + st, s1); store<f32>(o + st + ps, z1);
  store<f32>(o + 2 * st, s2); store<f32>(o + 2 * st + ps, z2);
}

/** y[i][r] = w0·x[i] for i < t ≤ 2 (a lone row is paired with itself). */
@inline function rowTimesTwo(w0: usize, x: usize, y: usize, t: i32, rows: i32, cols: i32, r: i32): void {
  const kBytes = (cols as usize) << 2;
  const x0 = x;
  const x1 = t > 1 ? x0 + kBytes : x0;
  const end = ((cols & ~7) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 32) {
    const u = v128.load(w0 + k);
    const v = v128.load(w0 + k, 16);
    a0 = fma(u, v128.load(x0 + k), a0);
    a1 = fma(v, v128.load(x0 + k, 16), a1);
    b0 = fma(u, v128.load(x1 + k), b0);
    b1 = fma(v, v128.load(x1 + k, 16), b1);
  }
  let s0 = hsum(f32x4.add(a0, a1));
  let s1 = hsum(f32x4.add(b0, b1));
  for (; k < kBytes; k += 4) {
    const u = load<f32>(w0 + k);
    s0 += u * load<f32>(x0 + k);
    s1 += u * load<f32>(x1 + k);
  }
  const o = y + ((r as usize) << 2);
  store<f32>(o, s0);
  if (t > 1) store<f32>(o + ((rows as usize) << 2), s1);
}

/** y[i][r] = w0·x[i] for i < t, 3 ≤ t ≤ 4 (the third row repeated for t = 3). */
@inline function rowTimesFour(w0: usize, x: usize, y: usize, t: i32, rows: i32, cols: i32, r: i32): void {
  const kBytes = (cols as usize) << 2;
  const x0 = x;
  const x1 = x0 + kBytes;
  const x2 = x1 + kBytes;
  const x3 = t > 3 ? x2 + kBytes : x2;
  const end = ((cols & ~3) as usize) << 2;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let k: usize = 0;
  for (; k < end; k += 16) {
    const u = v128.load(w0 + k);
    a0 = fma(u, v128.load(x0 + k), a0);
    a1 = fma(u, v128.load(x1 + k), a1);
    a2 = fma(u, v128.load(x2 + k), a2);
    a3 = fma(u, v128.load(x3 + k), a3);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (; k < kBytes; k += 4) {
    const u = load<f32>(w0 + k);
    s0 += u * load<f32>(x0 + k);
    s1 += u * load<f32>(x1 + k);
    s2 += u * load<f32>(x2 + k);
    s3 += u * load<f32>(x3 + k);
  }
  const st = (rows as usize) << 2;
  const o = y + ((r as usize) << 2);
  store<f32>(o, s0);
  store<f32>(o + st, s1);
  store<f32>(o + 2 * st, s2);
  if (t > 3) store<f32>(o + 3 * st, s3);
}

/** out[j][lane] = W row j (of four f32 rows `ws` bytes apart from w0) · xt lane, for one group of 8 lanes. */
@inline function fourRowsTimesEight(w0: usize, ws: usize, xt: usize, out: usize, cols: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let wk = w0;
  const end = xt + ((cols as usize) << 5);
  for (let p = xt; p < end; p += 32) {
    const x0 = v128.load(p);
    const x1 = v128.load(p, 16);
    const u = v128.load32_splat(wk);
    a0 = fma(u, x0, a0); a1 = fma(u, x1, a1);
    const v = v128.load32_splat(wk + ws);
    b0 = fma(v, x0, b0); b1 = fma(v, x1, b1);
    const s = v128.load32_splat(wk + 2 * ws);
    c0 = fma(s, x0, c0); c1 = fma(s, x1, c1);
    const q = v128.load32_splat(wk + 3 * ws);
    d0 = fma(q, x0, d0); d1 = fma(q, x1, d1);
    wk += 4;
  }
  v128.store(out, a0); v128.store(out, a1, 16); v128.store(out, b0, 32); v128.store(out, b1, 48);
  v128.store(out, c0, 64); v128.store(out, c1, 80); v128.store(out, d0, 96); v128.store(out, d1, 112);
}

/** out[lane] = W row (f32 at w0) · xt lane, for one group of 8 lanes. */
@inline function oneRowTimesEight(w0: usize, xt: usize, out: usize, cols: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let wk = w0;
  const end = xt + ((cols as usize) << 5);
  for (let p = xt; p < end; p += 32) {
    const u = v128.load32_splat(wk);
    a0 = fma(u, v128.load(p), a0);
    a1 = fma(u, v128.load(p, 16), a1);
    wk += 4;
  }
  v128.store(out, a0);
  v128.store(out, a1, 16);
}

/** Stores 8 outputs of row i (fewer when `width` < 8 at the end of the rows). */
@inline function storeHalfRow(y: usize, i: i32, rows: i32, p: i32, width: i32, c0: v128, c1: v128, tmp: usize): void {
  const base = y + (((i as usize) * (rows as usize) + (p as usize)) << 2);
  if (width >= 8) {
    v128.store(base, c0);
    v128.store(base, c1, 16);
  } else {
    v128.store(tmp, c0);
    v128.store(tmp, c1, 16);
    for (let j = 0; j < width; j++) store<f32>(base + ((j as usize) << 2), load<f32>(tmp + ((j as usize) << 2)));
  }
}

// --- machine figures --------------------------------------------------------------------------------------

/** Reads `bytes` bytes from `ptr` (a multiple of 64) and returns a value that depends on all of them, so the
 * reads cannot be optimised away: the read-bandwidth probe of the benchmark. */
export function readSum(ptr: usize, bytes: usize): f32 {
  // Four sequential streams a quarter of the range apart, as the f32 matrix-vector kernel reads its rows:
  // one stream alone keeps less of the memory's bandwidth in flight (26 against ~34 GB/s per thread here).
  const quarter = (bytes >> 8) << 6;
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let p = ptr; p < ptr + quarter; p += 64) {
    a0 = f32x4.add(a0, v128.load(p));
    a1 = f32x4.add(a1, v128.load(p + quarter));
    a2 = f32x4.add(a2, v128.load(p + 2 * quarter));
    a3 = f32x4.add(a3, v128.load(p + 3 * quarter));
    a0 = f32x4.add(a0, v128.load(p, 16));
    a1 = f32x4.add(a1, v128.load(p + quarter, 16));
    a2 = f32x4.add(a2, v128.load(p + 2 * quarter, 16));
    a3 = f32x4.add(a3, v128.load(p + 3 * quarter, 16));
    a0 = f32x4.add(a0, v128.load(p, 32));
    a1 = f32x4.add(a1, v128.load(p + quarter, 32));
    a2 = f32x4.add(a2, v128.load(p + 2 * quarter, 32));
    a3 = f32x4.add(a3, v128.load(p + 3 * quarter, 32));
    a0 = f32x4.add(a0, v128.load(p, 48));
    a1 = f32x4.add(a1, v128.load(p + quarter, 48));
    a2 = f32x4.add(a2, v128.load(p + 2 * quarter, 48));
    a3 = f32x4.add(a3, v128.load(p + 3 * quarter, 48));
  }
  for (let p = ptr + 4 * quarter; p < ptr + bytes; p += 64) a0 = f32x4.add(a0, v128.load(p));
  return hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}

// --- elementwise --------------------------------------------------------------------------------------------

/**
 * e^x for four lanes (Cephes' expf scheme: x = n·ln2 + r with ln2 in two parts, e^r by a degree-7
 * polynomial, 2^n through the exponent bits): within 2 ulp of the exact value; 0 below −87.3 (where f32
 * would go subnormal), +Inf above 88.4, NaN stays NaN.
 */
@inline function expx4(x: v128): v128 {
  const lo = f32x4.splat(-87.33654);
  const xc = f32x4.min(f32x4.max(x, lo), f32x4.splat(88.37626));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = fma(p, r, f32x4.splat(1.3981999507e-3));
  p = fma(p, r, f32x4.splat(8.3334519073e-3));
  p = fma(p, r, f32x4.splat(4.1665795894e-2));
  p = fma(p, r, f32x4.splat(1.6666665459e-1));
  p = fma(p, r, f32x4.splat(5.0000001201e-1));
  p = fma(p, f32x4.mul(r, r), f32x4.add(r, f32x4.splat(1)));
  // 2^n in two halves, so that n = 128 (x just below the clamp) is still finite where the product is.
  const half1 = i32x4.shr_s(i32x4.trunc_sat_f32x4_s(n), 1);
  const half2 = i32x4.sub(i32x4.trunc_sat_f32x4_s(n), half1);
  const e = f32x4.mul(f32x4.mul(p, i32x4.shl(i32x4.add(half1, i32x4.splat(127)), 23)), i32x4.shl(i32x4.add(half2, i32x4.splat(127)), 23));
  return v128.andnot(e, f32x4.lt(x, lo));
}

/** 1 / (1 + e^−x) for four lanes. */
@inline function sigmoidx4(x: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), expx4(f32x4.neg(x))));
}

// --- normalisation ----------------------------------------------------------------------------------------

/**
 * LayerNorm of each of `groups` equal slices of each of `rows` rows of C values (groups = 1: LayerNorm;
 * v5+'s ln_x: one group per head): y = (x − mean)/sqrt(var + eps)·w + b, biased variance, two passes.
 * w and b have C values; y may be x.
 */
export function groupNorm(x: usize, w: usize, b: usize, y: usize, rows: i32, c: i32, groups: i32, eps: f32): void {
  const g = c / groups;
  const gb = (g as usize) << 2;
  const simd = (g & 3) == 0;
  for (let row = 0; row < rows; row++) {
    for (let grp = 0; grp < groups; grp++) {
      const off = (row as usize) * ((c as usize) << 2) + (grp as usize) * gb;
      const xo = x + off;
      const yo = y + off;
      const wo = w + (grp as usize) * gb;
      const bo = b + (grp as usize) * gb;
      let sum: f32 = 0;
      if (simd) {
        let a = f32x4.splat(0);
        for (let i: usize = 0; i < gb; i += 16) a = f32x4.add(a, v128.load(xo + i));
        sum = hsum(a);
      } else {
        for (let i: usize = 0; i < gb; i += 4) sum += load<f32>(xo + i);
      }
      const mean = sum / (g as f32);
      let sq: f32 = 0;
      if (simd) {
        const m = f32x4.splat(mean);
        let a = f32x4.splat(0);
        for (let i: usize = 0; i < gb; i += 16) {
          const d = f32x4.sub(v128.load(xo + i), m);
          a = fma(d, d, a);
        }
        sq = hsum(a);
      } else {
        for (let i: usize = 0; i < gb; i += 4) {
          const d = load<f32>(xo + i) - mean;
          sq += d * d;
        }
      }
      const inv: f32 = 1 / Mathf.sqrt(sq / (g as f32) + eps);
      if (simd) {
        const m = f32x4.splat(mean);
        const s = f32x4.splat(inv);
        for (let i: usize = 0; i < gb; i += 16) {
          v128.store(yo + i, fma(f32x4.mul(f32x4.sub(v128.load(xo + i), m), s), v128.load(wo + i), v128.load(bo + i)));
        }
      } else {
        for (let i: usize = 0; i < gb; i += 4) store<f32>(yo + i, (load<f32>(xo + i) - mean) * inv * load<f32>(wo + i) + load<f32>(bo + i));
      }
    }
  }
}

// --- WKV recurrences -------------------------------------------------------------------------------------------

/**
 * RWKV-4's WKV in the numerically stable form over `t` tokens, four channels at a time, and σ(r) applied:
 *   ww = u + k;  q = max(pp, ww);  y = σ(r)·(e^(pp−q)·aa + e^(ww−q)·v) / (e^(pp−q)·bb + e^(ww−q))
 *   ww = w + pp; q = max(ww, k);   aa ← e^(ww−q)·aa + e^(k−q)·v;  bb ← e^(ww−q)·bb + e^(k−q);  pp ← q
 * Every exponent is ≤ 0. `s` holds aa, bb, pp (C each, updated in place); k, v, r, y are t × C; w (the
 * decay, −exp(time_decay)) and u (time_first) are C. C must be a multiple of 4.
 */
export function wkv4(s: usize, k: usize, v: usize, r: usize, w: usize, u: usize, y: usize, c: i32, t: i32): void {
  const cb = (c as usize) << 2;
  for (let p = 0; p < t; p++) {
    const row = (p as usize) * cb;
    for (let i: usize = 0; i < cb; i += 16) {
      const aa = v128.load(s + i);
      const bb = v128.load(s + cb + i);
      const pp = v128.load(s + 2 * cb + i);
      const kk = v128.load(k + row + i);
      const vv = v128.load(v + row + i);
      let ww = f32x4.add(v128.load(u + i), kk);
      let q = f32x4.max(pp, ww);
      let e1 = expx4(f32x4.sub(pp, q));
      let e2 = expx4(f32x4.sub(ww, q));
      const num = fma(e1, aa, f32x4.mul(e2, vv));
      const den = fma(e1, bb, e2);
      v128.store(y + row + i, f32x4.mul(sigmoidx4(v128.load(r + row + i)), f32x4.div(num, den)));
      ww = f32x4.add(v128.load(w + i), pp);
      q = f32x4.max(ww, kk);
      e1 = expx4(f32x4.sub(ww, q));
      e2 = expx4(f32x4.sub(kk, q));
      v128.store(s + i, fma(e1, aa, f32x4.mul(e2, vv)));
      v128.store(s + cb + i, fma(e1, bb, e2));
      v128.store(s + 2 * cb + i, q);
    }
  }
}

// --- the trainer's element-wise operations (training/ops.ts has the TypeScript twins) -------------------------
// Called on the calling thread with arrays in this memory; C a multiple of 4 where a row width is given.

/** RWKV-4's token shift and mix: out[t] = prev + (x[t] − prev)·μ, prev = x[t−1] (0 at each sequence's start). */
export function trainShiftMixForward(out: usize, x: usize, mu: usize, b: i32, t: i32, c: i32): void {
  const cb = (c as usize) << 2;
  for (let s = 0; s < b; s++) {
    for (let p = 0; p < t; p++) {
      const o = ((s * t + p) as usize) * cb;
      for (let i: usize = 0; i < cb; i += 16) {
        const xv = v128.load(x + o + i);
        const prev = p == 0 ? f32x4.splat(0) : v128.load(x + o - cb + i);
        v128.store(out + o + i, fma(f32x4.sub(xv, prev), v128.load(mu + i), prev));
      }
    }
  }
}

/** Its backward: dx[t] += dout[t]·μ + dout[t+1]·(1 − μ);  dμ += Σ dout[t]·(x[t] − x[t−1]). */
export function trainShiftMixBackward(dx: usize, dmu: usize, dout: usize, x: usize, mu: usize, b: i32, t: i32, c: i32): void {
  const cb = (c as usize) << 2;
  const one = f32x4.splat(1);
  for (let i: usize = 0; i < cb; i += 16) {
    const m = v128.load(mu + i);
    const m1 = f32x4.sub(one, m);
    let acc = f32x4.splat(0);
    for (let s = 0; s < b; s++) {
      for (let p = 0; p < t; p++) {
        const o = ((s * t + p) as usize) * cb + i;
        const d = v128.load(dout + o);
        const prev = p == 0 ? f32x4.splat(0) : v128.load(x + o - cb);
        acc = fma(d, f32x4.sub(v128.load(x + o), prev), acc);
        let g = f32x4.mul(d, m);
        if (p + 1 < t) g = fma(v128.load(dout + o + cb), m1, g);
        v128.store(dx + o, f32x4.add(v128.load(dx + o), g));
      }
    }
    v128.store(dmu + i, f32x4.add(v128.load(dmu + i), acc));
  }
}

/** LayerNorm of n rows of C, keeping each row's mean and rstd (n each) for the backward. */
export function trainLayerNormForward(out: usize, mean: usize, rstd: usize, x: usize, w: usize, bias: usize, n: i32, c: i32, eps: f32): void {
  const cb = (c as usize) << 2;
  for (let r = 0; r < n; r++) {
    const o = (r as usize) * cb;
    let sum = f32x4.splat(0);
    for (let i: usize = 0; i < cb; i += 16) sum = f32x4.add(sum, v128.load(x + o + i));
    const m = hsum(sum) / (c as f32);
    const mv = f32x4.splat(m);
    let vs = f32x4.splat(0);
    for (let i: usize = 0; i < cb; i += 16) {
      const d = f32x4.sub(v128.load(x + o + i), mv);
      vs = fma(d, d, vs);
    }
    const s: f32 = 1 / Mathf.sqrt(hsum(vs) / (c as f32) + eps);
    const sv = f32x4.splat(s);
    for (let i: usize = 0; i < cb; i += 16) {
      v128.store(out + o + i, fma(f32x4.mul(f32x4.sub(v128.load(x + o + i), mv), sv), v128.load(w + i), v128.load(bias + i)));
    }
    store<f32>(mean + ((r as usize) << 2), m);
    store<f32>(rstd + ((r as usize) << 2), s);
  }
}

/** Its backward, x̂ = (x − mean)·rstd, g = dout·w: dx += rstd·(g − mean(g) − x̂·mean(g·x̂)); dw += Σ dout·x̂; db += Σ dout. */
export function trainLayerNormBackward(dx: usize, dw: usize, db: usize, dout: usize, x: usize, mean: usize, rstd: usize, w: usize, n: i32, c: i32): void {
  const cb = (c as usize) << 2;
  for (let r = 0; r < n; r++) {
    const o = (r as usize) * cb;
    const mv = f32x4.splat(load<f32>(mean + ((r as usize) << 2)));
    const s = load<f32>(rstd + ((r as usize) << 2));
    const sv = f32x4.splat(s);
    let gs = f32x4.splat(0), gx = f32x4.splat(0);
    for (let i: usize = 0; i < cb; i += 16) {
      const xh = f32x4.mul(f32x4.sub(v128.load(x + o + i), mv), sv);
      const g = f32x4.mul(v128.load(dout + o + i), v128.load(w + i));
      gs = f32x4.add(gs, g);
      gx = fma(g, xh, gx);
    }
    const gMean = f32x4.splat(hsum(gs) / (c as f32));
    const gxMean = f32x4.splat(hsum(gx) / (c as f32));
    for (let i: usize = 0; i < cb; i += 16) {
      const xh = f32x4.mul(f32x4.sub(v128.load(x + o + i), mv), sv);
      const d = v128.load(dout + o + i);
      v128.store(db + i, f32x4.add(v128.load(db + i), d));
      v128.store(dw + i, fma(d, xh, v128.load(dw + i)));
      const g = f32x4.sub(f32x4.sub(f32x4.mul(d, v128.load(w + i)), gMean), f32x4.mul(xh, gxMean));
      v128.store(dx + o + i, fma(sv, g, v128.load(dx + o + i)));
    }
  }
}

/** out = relu(x)²; with `backward`, dx += dout·2·relu(x) instead (out = dx, dout given). n values, n a multiple of 4. */
export function trainReluSquared(backward: bool, out: usize, x: usize, dout: usize, n: i32): void {
  const end = (n as usize) << 2;
  const zero = f32x4.splat(0);
  for (let i: usize = 0; i < end; i += 16) {
    const v = f32x4.max(v128.load(x + i), zero);
    if (backward) v128.store(out + i, fma(f32x4.add(v, v), v128.load(dout + i), v128.load(out + i)));
    else v128.store(out + i, f32x4.mul(v, v));
  }
}

/** The receptance gate: s = σ(r), out = s ⊙ y (s may be r). n values, a multiple of 4. */
export function trainSigmoidGateForward(out: usize, s: usize, r: usize, y: usize, n: i32): void {
  const end = (n as usize) << 2;
  for (let i: usize = 0; i < end; i += 16) {
    const si = sigmoidx4(v128.load(r + i));
    v128.store(s + i, si);
    v128.store(out + i, f32x4.mul(si, v128.load(y + i)));
  }
}

/** Its backward from s = σ(r): dr += dout·y·s(1 − s);  dy += dout·s. */
export function trainSigmoidGateBackward(dr: usize, dy: usize, dout: usize, s: usize, y: usize, n: i32): void {
  const end = (n as usize) << 2;
  const one = f32x4.splat(1);
  for (let i: usize = 0; i < end; i += 16) {
    const si = v128.load(s + i);
    const d = v128.load(dout + i);
    v128.store(dr + i, fma(f32x4.mul(f32x4.mul(d, v128.load(y + i)), si), f32x4.sub(one, si), v128.load(dr + i)));
    v128.store(dy + i, fma(d, si, v128.load(dy + i)));
  }
}

// --- RWKV-4 WKV for training (training/ops.ts has the float64 TypeScript twin and the derivation) -----------
// Whole sequences from a fresh state, without the σ(r) gate; channels [c0, c1) (multiples of 4), so the
// pool splits a scan by channels. One staging block at `base` holds the (B·T) × C arrays one after another:
// forward k, v, y; backward k, v, dy, dk, dv.

/** A fresh state's pp (training/ops.ts, kernels/rwkv4-wkv.ts WKV4_FRESH_PP). */
const FRESH_PP: f32 = -1e30;

/**
 * One sequence of 4 channels at byte offset i (rows `cb` bytes apart from s0) from a fresh state: y (when
 * not 0) and, with `keep` (not 0), what the backward needs per position (wkv4TrainBackward's scratch:
 * the state before it aa, bb, pp, the max q, r = 1/den, eu = e^{u+k−q}·r, y).
 */
@inline function wkv4TrainSequence(k: usize, v: usize, y: usize, keep: usize, uu: v128, wd: v128, s0: usize, cb: usize, i: usize, t: i32): void {
  const lane = (t as usize) << 4;
  let aa = f32x4.splat(0), bb = f32x4.splat(0), pp = f32x4.splat(FRESH_PP);
  for (let p = 0; p < t; p++) {
    const o = s0 + (p as usize) * cb + i;
    const kk = v128.load(k + o);
    const vv = v128.load(v + o);
    const ww = f32x4.add(uu, kk);
    const q = f32x4.max(pp, ww);
    const e1 = expx4(f32x4.sub(pp, q));
    const e2 = expx4(f32x4.sub(ww, q));
    const r = f32x4.div(f32x4.splat(1), fma(e1, bb, e2));
    const yy = f32x4.mul(fma(e1, aa, f32x4.mul(e2, vv)), r);
    if (y != 0) v128.store(y + o, yy);
    if (keep != 0) {
      const so = keep + ((p as usize) << 4);
      v128.store(so, aa);
      v128.store(so + lane, bb);
      v128.store(so + 2 * lane, pp);
      v128.store(so + 3 * lane, q);
      v128.store(so + 4 * lane, f32x4.mul(e2, r));
      v128.store(so + 5 * lane, r);
      v128.store(so + 6 * lane, yy);
    }
    const wp = f32x4.add(wd, pp);
    const q2 = f32x4.max(wp, kk);
    const f1 = expx4(f32x4.sub(wp, q2));
    const f2 = expx4(f32x4.sub(kk, q2));
    aa = fma(f1, aa, f32x4.mul(f2, vv));
    bb = fma(f1, bb, f2);
    pp = q2;
  }
}

/** y = WKV(k, v) for channels [c0, c1); w = −exp(time_decay), u = time_first (C each). */
export function wkv4TrainForward(base: usize, w: usize, u: usize, b: i32, t: i32, c: i32, c0: i32, c1: i32): void {
  const cb = (c as usize) << 2;
  const plane = (b as usize) * (t as usize) * cb;
  for (let seq = 0; seq < b; seq++) {
    const s0 = (seq as usize) * (t as usize) * cb;
    for (let i = (c0 as usize) << 2; i < ((c1 as usize) << 2); i += 16) {
      wkv4TrainSequence(base, base + plane, base + 2 * plane, 0, v128.load(u + i), v128.load(w + i), s0, cb, i, t);
    }
  }
}

/** Bytes of one thread's scratch of `wkv4TrainBackward`: seven T × 4 lanes of f32. */
export function wkv4TrainScratchBytes(t: i32): i32 {
  return 7 * t * 16;
}

/**
 * dk = ∂L/∂k, dv = ∂L/∂v (written), gu += Σ ∂L/∂u and gw += Σ ∂L/∂w (C each, for the caller to turn into
 * ∂L/∂time_decay = gw·w) for channels [c0, c1), given dy. Re-runs each sequence's forward into `scratch`
 * (wkv4TrainScratchBytes), then scans it backwards.
 */
export function wkv4TrainBackward(base: usize, w: usize, u: usize, gw: usize, gu: usize, scratch: usize, b: i32, t: i32, c: i32, c0: i32, c1: i32): void {
  const cb = (c as usize) << 2;
  const plane = (b as usize) * (t as usize) * cb;
  const k = base, v = base + plane, dy = base + 2 * plane, dk = base + 3 * plane, dv = base + 4 * plane;
  const lane = (t as usize) << 4;
  // The scratch's seven lanes, in wkv4TrainSequence's order.
  const sa = scratch, sb = sa + lane, sp = sb + lane, sq = sp + lane, seu = sq + lane, sr = seu + lane, sy = sr + lane;
  for (let i = (c0 as usize) << 2; i < ((c1 as usize) << 2); i += 16) {
    const uu = v128.load(u + i);
    const wd = v128.load(w + i);
    let gwAcc = f32x4.splat(0), guAcc = f32x4.splat(0);
    for (let seq = 0; seq < b; seq++) {
      const s0 = (seq as usize) * (t as usize) * cb;
      wkv4TrainSequence(k, v, 0, scratch, uu, wd, s0, cb, i, t);
      // Reverse scan: adjoints G, H of the next A, B, kept as g·e^o, h·e^o.
      let g = f32x4.splat(0), h = f32x4.splat(0), og = f32x4.splat(FRESH_PP);
      for (let p = t - 1; p >= 0; p--) {
        const o = s0 + (p as usize) * cb + i;
        const so = (p as usize) << 4;
        const gy = v128.load(dy + o);
        const kk = v128.load(k + o);
        const vv = v128.load(v + o);
        const yy = v128.load(sy + so);
        const ek = expx4(f32x4.add(kk, og));
        const cur = f32x4.mul(gy, v128.load(seu + so));
        const vy = f32x4.sub(vv, yy);
        v128.store(dv + o, fma(ek, g, cur));
        v128.store(dk + o, fma(ek, fma(g, vv, h), f32x4.mul(cur, vy)));
        guAcc = fma(cur, vy, guAcc);
        const ew = expx4(f32x4.add(f32x4.add(og, wd), v128.load(sp + so)));
        gwAcc = fma(ew, fma(g, v128.load(sa + so), f32x4.mul(h, v128.load(sb + so))), gwAcc);
        const wo = f32x4.add(wd, og);
        const nq = f32x4.neg(v128.load(sq + so));
        const on = f32x4.max(wo, nq);
        const add = f32x4.mul(f32x4.mul(gy, v128.load(sr + so)), expx4(f32x4.sub(nq, on)));
        const e = expx4(f32x4.sub(wo, on));
        g = fma(e, g, add);
        h = f32x4.sub(f32x4.mul(e, h), f32x4.mul(add, yy));
        og = on;
      }
    }
    v128.store(gw + i, f32x4.add(v128.load(gw + i), gwAcc));
    v128.store(gu + i, f32x4.add(v128.load(gu + i), guAcc));
  }
}

// --- RWKV-7 WKV for training (training/ops-v7.ts has the TypeScript twin and the derivation) ----------------
// One unit of work is one (sequence, head) pair: the pool splits the B·H pairs. Per head the state S is
// n × n (S[value i][key j]), from zero at each sequence's start. The staging block at `base` holds, with
// N = B·T·C and K = B·⌈T/chunk⌉·H·n² (the checkpoints: the state before every chunk-th token):
//   forward:  r, w, k, v, kk, a, y (N each), then the checkpoints (K)
//   backward: r, w, k, v, kk, a, dy (N each), the checkpoints (K), then dr, dw, dk, dv, dkk, da (N each,
//             written, not added)
// b = kk ⊙ a is formed lane by lane where it is used.

/** One token of one head: sOut = S_t from sIn = S_{t−1} (n × n each, may be the same); y and sa (n) when not 0. */
@inline function wkv7TrainStep(sOut: usize, sIn: usize, r: usize, w: usize, k: usize, v: usize, kk: usize, a: usize, n: i32, y: usize, sa: usize): void {
  const nb = (n as usize) << 2;
  for (let i: usize = 0; i < (n as usize); i++) {
    const ri = sIn + i * nb;
    const ro = sOut + i * nb;
    let acc = f32x4.splat(0);
    for (let j: usize = 0; j < nb; j += 16) acc = fma(v128.load(ri + j), v128.load(kk + j), acc);
    const s = -hsum(acc);
    if (sa != 0) store<f32>(sa + (i << 2), s);
    const sv = f32x4.splat(s);
    const vi = f32x4.splat(load<f32>(v + (i << 2)));
    let yacc = f32x4.splat(0);
    for (let j: usize = 0; j < nb; j += 16) {
      const bj = f32x4.mul(v128.load(kk + j), v128.load(a + j));
      const x = fma(vi, v128.load(k + j), fma(sv, bj, f32x4.mul(v128.load(ri + j), v128.load(w + j))));
      v128.store(ro + j, x);
      yacc = fma(x, v128.load(r + j), yacc);
    }
    if (y != 0) store<f32>(y + (i << 2), hsum(yacc));
  }
}

/** Bytes of one thread's scratch of the WKV-7 training kernels: chunk + 1 states, chunk × n of sa, G, 5 × n accumulators. */
export function wkv7TrainScratchBytes(n: i32, chunk: i32): i32 {
  return ((chunk + 2) * n * n + chunk * n + 5 * n) << 2;
}

/**
 * The forward of pairs [p0, p1) (pair = sequence · heads + head): y, and the checkpoints. Each sequence
 * starts from zero, or (s0 ≠ 0) from s0's state of its head (heads × n × n: a tuned initial state).
 */
export function wkv7TrainForward(base: usize, b: i32, t: i32, heads: i32, n: i32, chunk: i32, scratch: usize, s0: usize, p0: i32, p1: i32): void {
  const c = heads * n;
  const plane = ((b * t * c) as usize) << 2;
  const nn = (n * n) as usize;
  const chunks = (t + chunk - 1) / chunk;
  const cb = (c as usize) << 2;
  const r = base, w = r + plane, k = w + plane, v = k + plane, kk = v + plane, a = kk + plane, y = a + plane, ck = y + plane;
  const s = scratch;
  for (let pair = p0; pair < p1; pair++) {
    const seq = pair / heads, h = pair % heads;
    if (s0 != 0) memory.copy(s, s0 + (((h as usize) * nn) << 2), nn << 2);
    else memory.fill(s, 0, nn << 2);
    for (let p = 0; p < t; p++) {
      if (p % chunk == 0) memory.copy(ck + ((((seq * chunks + p / chunk) * heads + h) as usize) * nn << 2), s, nn << 2);
      const o = ((seq * t + p) as usize) * cb + ((h * n) as usize << 2);
      wkv7TrainStep(s, s, r + o, w + o, k + o, v + o, kk + o, a + o, n, y + o, 0);
    }
  }
}

/**
 * The backward of pairs [p0, p1): re-runs each chunk from its checkpoint, then walks it backwards. With
 * ds0 ≠ 0, writes each pair's ∂L/∂(initial state) there (B·H × n × n, [pair][n × n]) for the caller to
 * sum over the sequences.
 */
export function wkv7TrainBackward(base: usize, b: i32, t: i32, heads: i32, n: i32, chunk: i32, scratch: usize, ds0: usize, p0: i32, p1: i32): void {
  const c = heads * n;
  const plane = ((b * t * c) as usize) << 2;
  const nn = (n * n) as usize;
  const nb = (n as usize) << 2;
  const chunks = (t + chunk - 1) / chunk;
  const cb = (c as usize) << 2;
  const r = base, w = r + plane, k = w + plane, v = k + plane, kk = v + plane, a = kk + plane, dy = a + plane, ck = dy + plane;
  const out = ck + ((((b * chunks * heads) as usize) * nn) << 2);
  const dr = out, dw = dr + plane, dk = dw + plane, dv = dk + plane, dkk = dv + plane, da = dkk + plane;
  const states = scratch;
  const sas = states + (((chunk + 1) as usize) * nn << 2);
  const g = sas + (((chunk * n) as usize) << 2);
  const dhat = g + (nn << 2), db = dhat + nb, dwAcc = db + nb, dkAcc = dwAcc + nb, drAcc = dkAcc + nb;
  for (let pair = p0; pair < p1; pair++) {
    const seq = pair / heads, h = pair % heads;
    const ho = (h * n) as usize << 2;
    memory.fill(g, 0, nn << 2);
    for (let ci = chunks - 1; ci >= 0; ci--) {
      const c0 = ci * chunk;
      const c1 = min(t, c0 + chunk);
      memory.copy(states, ck + ((((seq * chunks + ci) * heads + h) as usize) * nn << 2), nn << 2);
      for (let p = c0; p < c1; p++) {
        const at = (p - c0) as usize;
        const o = ((seq * t + p) as usize) * cb + ho;
        wkv7TrainStep(states + ((at + 1) * nn << 2), states + (at * nn << 2), r + o, w + o, k + o, v + o, kk + o, a + o, n, 0, sas + ((at * (n as usize)) << 2));
      }
      for (let p = c1 - 1; p >= c0; p--) {
        const at = (p - c0) as usize;
        const o = ((seq * t + p) as usize) * cb + ho;
        const prev = states + (at * nn << 2); // S_{t−1}
        const cur = prev + (nn << 2); // S_t
        const sa = sas + ((at * (n as usize)) << 2);
        memory.fill(dhat, 0, 5 * nb);
        for (let i: usize = 0; i < (n as usize); i++) {
          const dyi = f32x4.splat(load<f32>(dy + o + (i << 2)));
          const vi = f32x4.splat(load<f32>(v + o + (i << 2)));
          const sai = f32x4.splat(load<f32>(sa + (i << 2)));
          const gi = g + i * nb, pi = prev + i * nb, si = cur + i * nb;
          let dvAcc = f32x4.splat(0), gbAcc = f32x4.splat(0);
          for (let j: usize = 0; j < nb; j += 16) {
            const x = fma(dyi, v128.load(r + o + j), v128.load(gi + j));
            v128.store(gi + j, x);
            v128.store(drAcc + j, fma(v128.load(si + j), dyi, v128.load(drAcc + j)));
            dvAcc = fma(x, v128.load(k + o + j), dvAcc);
            v128.store(dkAcc + j, fma(x, vi, v128.load(dkAcc + j)));
            v128.store(dwAcc + j, fma(v128.load(pi + j), x, v128.load(dwAcc + j)));
            gbAcc = fma(x, f32x4.mul(v128.load(kk + o + j), v128.load(a + o + j)), gbAcc);
            v128.store(db + j, fma(x, sai, v128.load(db + j)));
          }
          store<f32>(dv + o + (i << 2), hsum(dvAcc));
          // Row i of G is complete: dâ's share, then G_{t−1}'s row = G_t's row·diag(w) + gb·âᵀ (â = −kk).
          const gb = f32x4.splat(hsum(gbAcc));
          for (let j: usize = 0; j < nb; j += 16) {
            v128.store(dhat + j, fma(v128.load(pi + j), gb, v128.load(dhat + j)));
            v128.store(gi + j, f32x4.sub(f32x4.mul(v128.load(gi + j), v128.load(w + o + j)), f32x4.mul(gb, v128.load(kk + o + j))));
          }
        }
        for (let j: usize = 0; j < nb; j += 16) {
          v128.store(dr + o + j, v128.load(drAcc + j));
          v128.store(dk + o + j, v128.load(dkAcc + j));
          v128.store(dw + o + j, v128.load(dwAcc + j));
          const dbj = v128.load(db + j);
          v128.store(dkk + o + j, fma(dbj, v128.load(a + o + j), f32x4.neg(v128.load(dhat + j))));
          v128.store(da + o + j, f32x4.mul(dbj, v128.load(kk + o + j)));
        }
      }
    }
    // g is now G_{−1}: the gradient of the state this sequence started from.
    if (ds0 != 0) memory.copy(ds0 + (((pair as usize) * nn) << 2), g, nn << 2);
  }
}

// --- WKV of one token, v5/v6/v7 (RNN mode) -----------------------------------------------------------------
// The per-head matrix state S (N × N floats per head, H heads one after another) is updated in place.

/**
 * v5/v6: for each head, row i = key channel, column j = value channel:
 *   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij
 * r, k, v, w, u and y have H·N values (w and u per channel). N must be a multiple of 4.
 */
export function wkv5(s: usize, r: usize, k: usize, v: usize, w: usize, u: usize, y: usize, heads: i32, n: i32): void {
  const nb = (n as usize) << 2;
  for (let h = 0; h < heads; h++) {
    const o = (h as usize) * nb; // this head's first channel, in bytes
    const sh = s + (h as usize) * (n as usize) * nb;
    for (let j: usize = 0; j < nb; j += 16) v128.store(y + o + j, f32x4.splat(0));
    for (let i = 0; i < n; i++) {
      const io = o + ((i as usize) << 2);
      const ki = f32x4.splat(load<f32>(k + io));
      const ri = f32x4.splat(load<f32>(r + io));
      const ui = f32x4.splat(load<f32>(u + io));
      const wi = f32x4.splat(load<f32>(w + io));
      const row = sh + (i as usize) * nb;
      for (let j: usize = 0; j < nb; j += 16) {
        const kv = f32x4.mul(ki, v128.load(v + o + j));
        const sij = v128.load(row + j);
        v128.store(y + o + j, fma(ri, fma(ui, kv, sij), v128.load(y + o + j)));
        v128.store(row + j, fma(wi, sij, kv));
      }
    }
  }
}

/**
 * v7: for each head, row i = value channel, column j = key channel:
 *   sa_i = Σ_j S_ij·kk_j;  S_ij ← S_ij·w_j − sa_i·kk_j·a_j + v_i·k_j;  y_i = Σ_j S_ij·r_j
 * All vectors have H·N values. N must be a multiple of 4.
 */
export function wkv7(s: usize, r: usize, w: usize, k: usize, v: usize, kk: usize, a: usize, y: usize, heads: i32, n: i32): void {
  const nb = (n as usize) << 2;
  for (let h = 0; h < heads; h++) {
    const o = (h as usize) * nb;
    const sh = s + (h as usize) * (n as usize) * nb;
    for (let i = 0; i < n; i++) {
      const row = sh + (i as usize) * nb;
      let sa = f32x4.splat(0);
      for (let j: usize = 0; j < nb; j += 16) sa = fma(v128.load(row + j), v128.load(kk + o + j), sa);
      const saS = f32x4.splat(hsum(sa));
      const vi = f32x4.splat(load<f32>(v + o + ((i as usize) << 2)));
      let acc = f32x4.splat(0);
      for (let j: usize = 0; j < nb; j += 16) {
        const q = o + j;
        // S·w − sa·(kk·a) + v·k
        let sij = f32x4.mul(v128.load(row + j), v128.load(w + q));
        sij = f32x4.sub(sij, f32x4.mul(saS, f32x4.mul(v128.load(kk + q), v128.load(a + q))));
        sij = fma(vi, v128.load(k + q), sij);
        v128.store(row + j, sij);
        acc = fma(sij, v128.load(r + q), acc);
      }
      store<f32>(y + o + ((i as usize) << 2), hsum(acc));
    }
  }
}

// --- several products in one job ------------------------------------------------------------------------

/**
 * Rows [g0, g1) of a batch of matrix-vector products laid end to end. `table` holds `count` entries of
 * 48 bytes: dtype, W, x (prepared), y, cols, rows, first row of the batch, for int8 rows the
 * activations' f32 scale, and the function applied to each result (0 none, 1 relu², 2 σ, 3 tanh). Threads
 * split the batch's rows, so one job covers several small products.
 */
export function matvecBatch(table: usize, count: i32, g0: i32, g1: i32): void {
  for (let i = 0; i < count; i++) {
    const e = table + (i as usize) * JOB_BYTES;
    const rows = load<i32>(e, JOB_ROWS);
    const start = load<i32>(e, JOB_START);
    const lo = max(g0, start);
    const hi = min(g1, start + rows);
    if (lo >= hi) continue;
    const dtype = load<i32>(e, JOB_DTYPE);
    const y = load<u32>(e, JOB_Y);
    if (dtype == DTYPE_INT8) {
      matvecInt8(load<u32>(e, JOB_WEIGHTS), load<u32>(e, JOB_X), load<f32>(e, JOB_X_SCALE), y, load<i32>(e, JOB_COLS), lo - start, hi - start);
    } else {
      matvec(dtype, load<u32>(e, JOB_WEIGHTS), load<u32>(e, JOB_X), y, load<i32>(e, JOB_COLS), lo - start, hi - start);
    }
    const fn = load<i32>(e, JOB_FN);
    if (fn != FN_NONE) applyFunction(fn, y, lo - start, hi - start);
  }
}

/**
 * y[i] ← f(y[i]) for i in [i0, i1): 1 relu(y)², 2 σ(y), 3 tanh(y) = 2σ(2y) − 1. Exported too, for the
 * results of longer products and `unary` (the JS loop of Math.exp is ~10× slower).
 */
export function applyFunction(fn: i32, y: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const p = y + ((i as usize) << 2);
    const v = v128.load(p);
    let out: v128;
    if (fn == FN_RELU2) {
      const r = f32x4.max(v, f32x4.splat(0));
      out = f32x4.mul(r, r);
    } else if (fn == FN_SIGMOID) {
      out = sigmoidx4(v);
    } else {
      out = f32x4.sub(f32x4.mul(sigmoidx4(f32x4.add(v, v)), f32x4.splat(2)), f32x4.splat(1));
    }
    v128.store(p, out);
  }
  for (; i < i1; i++) {
    const p = y + ((i as usize) << 2);
    const v = load<f32>(p);
    let out: f32;
    if (fn == FN_RELU2) {
      const r = max<f32>(v, 0);
      out = r * r;
    } else if (fn == FN_SIGMOID) {
      out = 1 / (1 + Mathf.exp(-v));
    } else {
      out = Mathf.tanh(v);
    }
    store<f32>(p, out);
  }
}

// --- elementwise over rows ---------------------------------------------------------------------------------

/**
 * Over rows × c: out = a + (b − a)·mu (EW_LERP), a + b (EW_ADD) or a·b (EW_MUL). Each operand's row step (in
 * floats) is c, or 0 for one row broadcast to every row; out may be a or b (each value is read before its
 * result is written). No fused multiply-add, so every platform rounds alike.
 */
export function elementwise(op: i32, a: usize, b: usize, mu: usize, out: usize, rows: i32, c: i32, aStep: i32, bStep: i32, muStep: i32): void {
  for (let r = 0; r < rows; r++) {
    const pa = a + (((r as usize) * (aStep as usize)) << 2);
    const pb = b + (((r as usize) * (bStep as usize)) << 2);
    const pm = mu + (((r as usize) * (muStep as usize)) << 2);
    const po = out + (((r as usize) * (c as usize)) << 2);
    let i = 0;
    for (; i + 4 <= c; i += 4) {
      const o = (i as usize) << 2;
      const va = v128.load(pa + o);
      const vb = v128.load(pb + o);
      let v: v128;
      if (op == EW_LERP) v = f32x4.add(va, f32x4.mul(f32x4.sub(vb, va), v128.load(pm + o)));
      else if (op == EW_ADD) v = f32x4.add(va, vb);
      else v = f32x4.mul(va, vb);
      v128.store(po + o, v);
    }
    for (; i < c; i++) {
      const o = (i as usize) << 2;
      const va = load<f32>(pa + o);
      const vb = load<f32>(pb + o);
      let v: f32;
      if (op == EW_LERP) v = va + (vb - va) * load<f32>(pm + o);
      else if (op == EW_ADD) v = va + vb;
      else v = va * vb;
      store<f32>(po + o, v);
    }
  }
}

