// Encoders for ggml's K-quants (Q2_K … Q6_K, super-blocks of 256 values), reproducing the bytes of ggml's
// reference quantizers (ggml-quants.c quantize_row_qN_K_ref), which llama-quantize runs when it has no
// importance matrix. Those are C float code compiled without fused multiply-add (ggml-base gets no -march
// flags), so every float step here is one f32 operation: Math.fround after each +, −, ×, ÷ and sqrt
// (each is exact in float64 before that one rounding, or float64's extra rounding is harmless), in C's
// evaluation order. Block layouts are the decoders' in kquants.ts.
import { f16ToF32Table, type KQuantDType } from '../tensor/dtype.js';
import { QK_K, scaleMinK4 } from './kquants.js';
import { f32ToF16Bits } from './quantize.js';

const fround = Math.fround;
const f16 = f16ToF32Table();

/** ggml's GROUP_MAX_EPS: a group whose largest magnitude is below it counts as all zero. */
const GROUP_MAX_EPS = fround(1e-15);
const TENTH = fround(0.1);
const MAGIC = 12582912; // 1.5 · 2^23: adding it in f32 rounds to an integer, half to even

const nearestScratchF = new Float32Array(1);
const nearestScratchI = new Int32Array(nearestScratchF.buffer);

/** ggml's nearest_int: round half to even through an f32 addition, read back from the bits (as C does, even out of range). */
function nearestInt(v: number): number {
  const s = fround(v + MAGIC);
  if (Math.abs(v) <= 4194303) return s - MAGIC;
  nearestScratchF[0] = s;
  return (nearestScratchI[0]! & 0x007fffff) - 0x00400000;
}

/** The f16 a value is stored as, and its f32 value again (what the encoder goes on with). */
function putHalf(out: Uint8Array, o: number, v: number): number {
  const h = f32ToF16Bits(v);
  out[o] = h & 0xff;
  out[o + 1] = h >>> 8;
  return f16[h]!;
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);
const toInt8 = (v: number): number => (v << 24) >> 24;

/**
 * make_qkx2_quants: an asymmetric grid (scale and min ≤ 0) for `n` values at x[xo..], weighted, trying
 * `nstep + 1` scales around nmax/(max − min) and keeping the least weighted error. Writes L[lo..] and
 * returns [scale, −min].
 */
function makeQkx2(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  lo: number,
  aux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
): [number, number] {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = w[0]!;
  let sumX = fround(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    sumW = fround(sumW + w[i]!);
    sumX = fround(sumX + fround(w[i]! * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return [0, -min];
  }
  let iscale = fround(nmax / fround(max - min));
  let scale = fround(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fround(iscale * fround(xi - min))), 0, nmax);
    L[lo + i] = l;
    let diff = fround(fround(fround(scale * l) + min) - xi);
    diff = useMad ? Math.abs(diff) : fround(diff * diff);
    bestError = fround(bestError + fround(w[i]! * diff));
  }
  if (nstep < 1) return [scale, -min];
  for (let is = 0; is <= nstep; is++) {
    // `min` is the best candidate's so far, as in ggml (the grid moves with it).
    iscale = fround(fround(fround(rmin + fround(rdelta * is)) + nmax) / fround(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = clamp(nearestInt(fround(iscale * fround(xi - min))), 0, nmax);
      aux[i] = l;
      const wl = fround(w[i]! * l);
      sumL = fround(sumL + wl);
      sumL2 = fround(sumL2 + fround(wl * l));
      sumXL = fround(sumXL + fround(wl * xi));
    }
    const D = fround(fround(sumW * sumL2) - fround(sumL * sumL));
    if (D > 0) {
      let thisScale = fround(fround(fround(sumW * sumXL) - fround(sumX * sumL)) / D);
      let thisMin = fround(fround(fround(sumL2 * sumX) - fround(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fround(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = fround(fround(fround(thisScale * aux[i]!) + thisMin) - x[xo + i]!);
        diff = useMad ? Math.abs(diff) : fround(diff * diff);
        curError = fround(curError + fround(w[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = aux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/**
 * make_qx_quants with rmse_type 1 and no importance weights (weights x²): a symmetric grid of
 * −nmax … nmax−1, refined over 18 nearby scales by weighted least squares. Writes L[lo..] (offset by nmax).
 */
function makeQx(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  let iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fround(iscale * xi)), -nmax, nmax - 1);
    L[lo + i] = l + nmax;
    const w = fround(xi * xi);
    sumlx = fround(sumlx + fround(fround(w * xi) * l));
    suml2 = fround(suml2 + fround(fround(w * l) * l));
  }
  let scale = suml2 !== 0 ? fround(sumlx / suml2) : 0;
  let best = fround(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fround(-fround(nmax + fround(TENTH * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = clamp(nearestInt(fround(iscale * xi)), -nmax, nmax - 1);
      const w = fround(xi * xi);
      sumlx = fround(sumlx + fround(fround(w * xi) * l));
      suml2 = fround(suml2 + fround(fround(w * l) * l));
    }
    if (suml2 > 0 && fround(sumlx * sumlx) > fround(best * suml2)) {
      for (let i = 0; i < n; i++) {
        L[lo + i] = nmax + clamp(nearestInt(fround(iscale * x[xo + i]!)), -nmax, nmax - 1);
      }
      scale = fround(sumlx / suml2);
      best = fround(scale * sumlx);
    }
  }
  return scale;
}

/**
 * make_q3_quants with do_rmse: a symmetric grid −nmax … nmax−1 weighted by x², then up to five passes that
 * move single values to the level their least-squares scale prefers. Writes L[lo..] (offset by nmax).
 */
function makeQ3(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clamp(nearestInt(fround(iscale * xi)), -nmax, nmax - 1);
    L[lo + i] = l;
    const w = fround(xi * xi);
    sumlx = fround(sumlx + fround(fround(w * xi) * l));
    suml2 = fround(suml2 + fround(fround(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const w = fround(xi * xi);
      const li = L[lo + i]!;
      let slx = fround(sumlx - fround(fround(w * xi) * li));
      if (slx > 0) {
        let sl2 = fround(suml2 - fround(fround(w * li) * li));
        const nl = clamp(nearestInt(fround(fround(xi * sl2) / slx)), -nmax, nmax - 1);
        if (nl !== li) {
          slx = fround(slx + fround(fround(w * xi) * nl));
          sl2 = fround(sl2 + fround(fround(w * nl) * nl));
          if (sl2 > 0 && fround(fround(slx * slx) * suml2) > fround(fround(sumlx * sumlx) * sl2)) {
            L[lo + i] = nl;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (changed === 0) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] = L[lo + i]! + nmax;
  return suml2 > 0 ? fround(sumlx / suml2) : 0;
}

// Scratch shared by the encoders (single-threaded, never re-entered).
const Lu = new Uint8Array(QK_K);
const Li = new Int8Array(QK_K);
const aux = new Uint8Array(32);
const weights = new Float32Array(32);
const scales = new Float32Array(16);
const mins = new Float32Array(16);

/** Packs 2-bit values L[0..256) as Q2_K/Q3_K do: byte 32·h + l holds values 128·h + 32·j + l at bits 2j. */
function pack2(L: Uint8Array | Int8Array, out: Uint8Array, q: number): void {
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const j = 128 * h + l;
      out[q + 32 * h + l] = L[j]! | (L[j + 32]! << 2) | (L[j + 64]! << 4) | (L[j + 96]! << 6);
    }
  }
}

/** Q2_K: 16 groups of 16 with 4-bit scale and min, 2-bit quants. */
function encodeQ2K(x: Float32Array, xo: number, out: Uint8Array, o: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xo + 16 * j + l]!);
    const [s, m] = makeQkx2(16, 3, x, xo + 16 * j, weights, Lu, 16 * j, aux, -0.5, TENTH, 15, true);
    scales[j] = s;
    mins[j] = m;
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  const q4scale = 15;
  let d: number;
  let dmin: number;
  if (maxScale > 0) {
    const iscale = fround(q4scale / maxScale);
    for (let j = 0; j < 16; j++) out[o + j] = nearestInt(fround(iscale * scales[j]!)) & 0xff;
    d = putHalf(out, o + 80, fround(maxScale / q4scale));
  } else {
    for (let j = 0; j < 16; j++) out[o + j] = 0;
    d = putHalf(out, o + 80, 0);
  }
  if (maxMin > 0) {
    const iscale = fround(q4scale / maxMin);
    for (let j = 0; j < 16; j++) out[o + j] = (out[o + j]! | (nearestInt(fround(iscale * mins[j]!)) << 4)) & 0xff;
    dmin = putHalf(out, o + 82, fround(maxMin / q4scale));
  } else {
    dmin = putHalf(out, o + 82, 0);
  }
  for (let j = 0; j < 16; j++) {
    const dl = fround(d * (out[o + j]! & 0x0f));
    if (dl === 0) continue; // keeps the first pass's quants, as ggml does
    const ml = fround(dmin * (out[o + j]! >> 4));
    for (let i = 0; i < 16; i++) {
      Lu[16 * j + i] = clamp(nearestInt(fround(fround(x[xo + 16 * j + i]! + ml) / dl)), 0, 3);
    }
  }
  pack2(Lu, out, o + 16);
}

/** Q3_K: 16 groups of 16 with signed 6-bit scales, 3-bit quants (low 2 bits packed, high bit in hmask). */
function encodeQ3K(x: Float32Array, xo: number, out: Uint8Array, o: number): void {
  let maxScale = 0;
  let amax = 0;
  for (let j = 0; j < 16; j++) {
    scales[j] = makeQ3(16, 4, x, xo + 16 * j, Li, 16 * j);
    const a = Math.abs(scales[j]!);
    if (a > amax) {
      amax = a;
      maxScale = scales[j]!;
    }
  }
  const sc = o + 96;
  out.fill(0, sc, sc + 12);
  let d: number;
  if (maxScale !== 0) {
    const iscale = fround(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      const l = clamp(toInt8(nearestInt(fround(iscale * scales[j]!))), -32, 31) + 32;
      if (j < 8) out[sc + j] = l & 0x0f;
      else out[sc + j - 8] = out[sc + j - 8]! | ((l & 0x0f) << 4);
      out[sc + 8 + (j % 4)] = out[sc + 8 + (j % 4)]! | ((l >> 4) << (2 * (j >> 2)));
    }
    d = putHalf(out, o + 108, fround(1 / iscale));
  } else {
    d = putHalf(out, o + 108, 0);
  }
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? out[sc + j]! & 0x0f : out[sc + j - 8]! >> 4;
    const s = (low | (((out[sc + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
    const dl = fround(d * s);
    if (dl === 0) continue;
    for (let i = 0; i < 16; i++) {
      Li[16 * j + i] = clamp(nearestInt(fround(x[xo + 16 * j + i]! / dl)), -4, 3) + 4;
    }
  }
  // High bit of value j goes to bit j/32 of hmask byte j%32; the low two bits stay.
  out.fill(0, o, o + 32);
  for (let j = 0; j < QK_K; j++) {
    if (Li[j]! > 3) {
      out[o + (j & 31)] = out[o + (j & 31)]! | (1 << (j >> 5));
      Li[j] = Li[j]! - 4;
    }
  }
  pack2(Li, out, o + 32);
}

/** Q4_K/Q5_K's 8 six-bit scales and mins into 12 bytes at `s` (the inverse of get_scale_min_k4). */
function putScaleMinK4(out: Uint8Array, s: number, j: number, ls: number, lm: number): void {
  if (j < 4) {
    out[s + j] = ls;
    out[s + j + 4] = lm;
  } else {
    out[s + j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
    out[s + j - 4] = out[s + j - 4]! | ((ls >> 4) << 6);
    out[s + j] = out[s + j]! | ((lm >> 4) << 6);
  }
}

/**
 * Q4_K and Q5_K's common part: 8 groups of 32 with 6-bit scales and mins, d and dmin at o, o+2, scales at
 * o+4; final quants (0..nmax) left in Lu.
 */
function encodeK45(x: Float32Array, xo: number, out: Uint8Array, o: number, nmax: number, rmin: number, nstep: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) {
      const v = x[xo + 32 * j + l]!;
      sumX2 = fround(sumX2 + fround(v * v));
    }
    const avX = fround(Math.sqrt(fround(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = fround(avX + Math.abs(x[xo + 32 * j + l]!));
    const [s, m] = makeQkx2(32, nmax, x, xo + 32 * j, weights, Lu, 32 * j, aux, rmin, TENTH, nstep, false);
    scales[j] = s;
    mins[j] = m;
    if (s > maxScale) maxScale = s;
    if (m > maxMin) maxMin = m;
  }
  const invScale = maxScale > 0 ? fround(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fround(63 / maxMin) : 0;
  out.fill(0, o + 4, o + 16);
  for (let j = 0; j < 8; j++) {
    // C stores nearest_int in a uint8_t before clamping to 63.
    const ls = Math.min(63, nearestInt(fround(invScale * scales[j]!)) & 0xff);
    const lm = Math.min(63, nearestInt(fround(invMin * mins[j]!)) & 0xff);
    putScaleMinK4(out, o + 4, j, ls, lm);
  }
  const d = putHalf(out, o, fround(maxScale / 63));
  const dmin = putHalf(out, o + 2, fround(maxMin / 63));
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(out, o + 4, j);
    const dl = fround(d * sc);
    if (dl === 0) continue;
    const dm = fround(dmin * m);
    for (let i = 0; i < 32; i++) {
      Lu[32 * j + i] = clamp(nearestInt(fround(fround(x[xo + 32 * j + i]! + dm) / dl)), 0, nmax);
    }
  }
}

/** Q4_K: 8 groups of 32, 4-bit quants. */
function encodeQ4K(x: Float32Array, xo: number, out: Uint8Array, o: number): void {
  encodeK45(x, xo, out, o, 15, -1, 20);
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) out[o + 16 + 32 * g + l] = Lu[64 * g + l]! | (Lu[64 * g + 32 + l]! << 4);
  }
}

/** Q5_K: 8 groups of 32, 5-bit quants (fifth bits in qh). */
function encodeQ5K(x: Float32Array, xo: number, out: Uint8Array, o: number): void {
  encodeK45(x, xo, out, o, 31, -0.5, 15);
  out.fill(0, o + 16, o + 48);
  for (let g = 0; g < 4; g++) {
    for (let l = 0; l < 32; l++) {
      let l1 = Lu[64 * g + l]!;
      let l2 = Lu[64 * g + 32 + l]!;
      let hi = out[o + 16 + l]!;
      if (l1 > 15) {
        l1 -= 16;
        hi |= 1 << (2 * g);
      }
      if (l2 > 15) {
        l2 -= 16;
        hi |= 2 << (2 * g);
      }
      out[o + 16 + l] = hi;
      out[o + 48 + 32 * g + l] = l1 | (l2 << 4);
    }
  }
}

/** Q6_K: 16 groups of 16 with int8 scales, 6-bit quants. */
function encodeQ6K(x: Float32Array, xo: number, out: Uint8Array, o: number): void {
  let maxScale = 0;
  let maxAbs = 0;
  for (let ib = 0; ib < 16; ib++) {
    const s = makeQx(16, 32, x, xo + 16 * ib, Li, 16 * ib);
    scales[ib] = s;
    if (Math.abs(s) > maxAbs) {
      maxAbs = Math.abs(s);
      maxScale = s;
    }
  }
  if (maxAbs < GROUP_MAX_EPS) {
    out.fill(0, o, o + 210);
    return;
  }
  const iscale = fround(-128 / maxScale);
  const d = putHalf(out, o + 208, fround(1 / iscale));
  for (let ib = 0; ib < 16; ib++) out[o + 192 + ib] = Math.min(127, nearestInt(fround(iscale * scales[ib]!))) & 0xff;
  for (let j = 0; j < 16; j++) {
    const dl = fround(d * toInt8(out[o + 192 + j]!));
    if (dl === 0) continue;
    for (let i = 0; i < 16; i++) {
      Li[16 * j + i] = clamp(nearestInt(fround(x[xo + 16 * j + i]! / dl)), -32, 31) + 32;
    }
  }
  for (let h = 0; h < 2; h++) {
    const ql = o + 64 * h;
    const qh = o + 128 + 32 * h;
    const y = 128 * h;
    for (let l = 0; l < 32; l++) {
      const a = Li[y + l]!;
      const b = Li[y + l + 32]!;
      const c = Li[y + l + 64]!;
      const e = Li[y + l + 96]!;
      out[ql + l] = (a & 0x0f) | ((c & 0x0f) << 4);
      out[ql + 32 + l] = (b & 0x0f) | ((e & 0x0f) << 4);
      out[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}

/** Encodes the 256 values at x[xo..] into one super-block at out[o..]. */
export type SuperBlockEncoder = (x: Float32Array, xo: number, out: Uint8Array, o: number) => void;

export const K_ENCODERS: Readonly<Record<KQuantDType, SuperBlockEncoder>> = {
  q2_k: encodeQ2K,
  q3_k: encodeQ3K,
  q4_k: encodeQ4K,
  q5_k: encodeQ5K,
  q6_k: encodeQ6K,
};

const BLOCK_BYTES: Readonly<Record<KQuantDType, number>> = { q2_k: 84, q3_k: 110, q4_k: 144, q5_k: 176, q6_k: 210 };

/** Quantizes `src` (a multiple of 256 values; a row must not straddle super-blocks) as `dtype` into `out`. */
export function kQuantizeInto(dtype: KQuantDType, src: Float32Array, out: Uint8Array): void {
  if (src.length % QK_K !== 0) throw new RangeError(`quantize: ${src.length} values is not a multiple of ${QK_K}`);
  const bb = BLOCK_BYTES[dtype];
  if (out.byteLength < (src.length / QK_K) * bb) throw new RangeError('quantize: output too small');
  const enc = K_ENCODERS[dtype];
  for (let i = 0; i < src.length / QK_K; i++) enc(src, QK_K * i, out, bb * i);
}

export function kQuantize(dtype: KQuantDType, src: Float32Array): Uint8Array {
  const out = new Uint8Array((src.length / QK_K) * BLOCK_BYTES[dtype]);
  kQuantizeInto(dtype, src, out);
  return out;
}
