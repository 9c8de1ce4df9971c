// ggml's K-quants (Q2_K … Q6_K): super-blocks of 256 values, decoded exactly as ggml's reference
// dequantizers (ggml-quants.c dequantize_row_qN_K) do. Every value is an f16 super-block scale times a
// small integer sub-block scale (an exact product in f32), times a small integer quant, minus (for
// Q2_K/Q4_K/Q5_K) an f16 super-block min times an integer sub-block min (also exact), rounded once to f32.
// The product scale × quant is exact in float64 and in f32 alike, and float64's one extra rounding of the
// difference is harmless (53 ≥ 2·24 + 2 bits), so `Math.fround(a * q - m)` is bit-identical to ggml's f32
// arithmetic, with or without a fused multiply-add.
import type { KQuantDType } from '../tensor/dtype.js';
import { f16ToF32Table } from '../tensor/dtype.js';

/** Values per K-quant super-block (ggml's QK_K). */
export const QK_K = 256;

const f16 = f16ToF32Table();
const fround = Math.fround;

function half(b: Uint8Array, o: number): number {
  return f16[b[o]! | (b[o + 1]! << 8)]!;
}

/** Decodes the 256 values of one super-block starting at byte `o` of `b` into `out[p ..]`. */
export type SuperBlockDecoder = (b: Uint8Array, o: number, out: Float32Array, p: number) => void;

// block_q2_K, 84 bytes:
//   [0, 16)   scales: one byte per 16 values, low nibble the scale, high nibble the min
//   [16, 80)  qs: 2-bit quants; byte 32·h + l holds, at bits 2j..2j+1, value 128·h + 32·j + l (l < 32)
//   [80, 82)  f16 d      [82, 84) f16 dmin
// x = d·(scale) · q − dmin·(min), values 16·i … 16·i + 15 using scales[i].
const decodeQ2K: SuperBlockDecoder = (b, o, out, p) => {
  const d = half(b, o + 80);
  const dmin = half(b, o + 82);
  for (let h = 0; h < 2; h++) {
    for (let j = 0; j < 4; j++) {
      const shift = 2 * j;
      for (let sub = 0; sub < 2; sub++) {
        const sc = b[o + 8 * h + 2 * j + sub]!;
        const dl = d * (sc & 0x0f);
        const ml = dmin * (sc >> 4);
        const q = o + 16 + 32 * h + 16 * sub;
        const y = p + 128 * h + 32 * j + 16 * sub;
        for (let l = 0; l < 16; l++) out[y + l] = fround(dl * ((b[q + l]! >> shift) & 3) - ml);
      }
    }
  }
};

/** Q3_K's 16 six-bit scales from its 12 bytes at `s`: low 4 bits in bytes 0..7 (low, then high nibbles), high 2 bits in bytes 8..11. */
function q3Scale(b: Uint8Array, s: number, k: number): number {
  const low = k < 8 ? b[s + k]! & 0x0f : b[s + k - 8]! >> 4;
  const high = (b[s + 8 + (k & 3)]! >> (2 * (k >> 2))) & 3;
  return low | (high << 4);
}

// block_q3_K, 110 bytes:
//   [0, 32)    hmask: bit 4·h + j of byte l is the high bit of value 128·h + 32·j + l
//   [32, 96)   qs: low 2 bits, laid out as Q2_K's
//   [96, 108)  scales: 16 six-bit scales (see q3Scale), stored + 32
//   [108, 110) f16 d
// x = d·(scale − 32) · (q − 4 if the high bit is clear, else q), values 16·i … 16·i + 15 using scale i.
const decodeQ3K: SuperBlockDecoder = (b, o, out, p) => {
  const d = half(b, o + 108);
  for (let h = 0; h < 2; h++) {
    for (let j = 0; j < 4; j++) {
      const shift = 2 * j;
      const mask = 1 << (4 * h + j);
      for (let sub = 0; sub < 2; sub++) {
        const dl = d * (q3Scale(b, o + 96, 8 * h + 2 * j + sub) - 32);
        const q = o + 32 + 32 * h + 16 * sub;
        const hm = o + 16 * sub;
        const y = p + 128 * h + 32 * j + 16 * sub;
        for (let l = 0; l < 16; l++) {
          const v = ((b[q + l]! >> shift) & 3) - (b[hm + l]! & mask ? 0 : 4);
          out[y + l] = dl * v; // exact: an f16 times a 6-bit times a 3-bit integer
        }
      }
    }
  }
};

/** The 6-bit scale and min of sub-block `j` (0..7) of Q4_K/Q5_K's 12 scale bytes at `s` (ggml's get_scale_min_k4). */
export function scaleMinK4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j]! & 63, b[s + j + 4]! & 63];
  return [(b[s + j + 4]! & 0x0f) | ((b[s + j - 4]! >> 6) << 4), (b[s + j + 4]! >> 4) | ((b[s + j]! >> 6) << 4)];
}

// block_q4_K, 144 bytes:
//   [0, 2) f16 d    [2, 4) f16 dmin
//   [4, 16)   scales: 8 six-bit scales and 8 six-bit mins (see scaleMinK4)
//   [16, 144) qs: byte 32·g + l holds value 64·g + l (low nibble) and 64·g + 32 + l (high nibble)
// x = d·scale · q − dmin·min, values 32·i … 32·i + 31 using sub-block i.
const decodeQ4K: SuperBlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  const dmin = half(b, o + 2);
  for (let g = 0; g < 4; g++) {
    const [s1, m1] = scaleMinK4(b, o + 4, 2 * g);
    const [s2, m2] = scaleMinK4(b, o + 4, 2 * g + 1);
    const d1 = d * s1;
    const n1 = dmin * m1;
    const d2 = d * s2;
    const n2 = dmin * m2;
    const q = o + 16 + 32 * g;
    const y = p + 64 * g;
    for (let l = 0; l < 32; l++) {
      const byte = b[q + l]!;
      out[y + l] = fround(d1 * (byte & 0x0f) - n1);
      out[y + 32 + l] = fround(d2 * (byte >> 4) - n2);
    }
  }
};

// block_q5_K, 176 bytes:
//   [0, 2) f16 d    [2, 4) f16 dmin
//   [4, 16)   scales: as Q4_K's
//   [16, 48)  qh: bit 2·g (2·g + 1) of byte l is the fifth bit of value 64·g + l (64·g + 32 + l)
//   [48, 176) qs: low nibbles, laid out as Q4_K's
// x = d·scale · q − dmin·min, q in 0..31.
const decodeQ5K: SuperBlockDecoder = (b, o, out, p) => {
  const d = half(b, o);
  const dmin = half(b, o + 2);
  for (let g = 0; g < 4; g++) {
    const [s1, m1] = scaleMinK4(b, o + 4, 2 * g);
    const [s2, m2] = scaleMinK4(b, o + 4, 2 * g + 1);
    const d1 = d * s1;
    const n1 = dmin * m1;
    const d2 = d * s2;
    const n2 = dmin * m2;
    const u1 = 1 << (2 * g);
    const u2 = 2 << (2 * g);
    const q = o + 48 + 32 * g;
    const y = p + 64 * g;
    for (let l = 0; l < 32; l++) {
      const byte = b[q + l]!;
      const hi = b[o + 16 + l]!;
      out[y + l] = fround(d1 * ((byte & 0x0f) + (hi & u1 ? 16 : 0)) - n1);
      out[y + 32 + l] = fround(d2 * ((byte >> 4) + (hi & u2 ? 16 : 0)) - n2);
    }
  }
};

// block_q6_K, 210 bytes:
//   [0, 128)   ql: byte 64·h + l holds the low 4 bits of value 128·h + l (low nibble) and 128·h + 64 + l
//              (high nibble); byte 64·h + 32 + l those of 128·h + 32 + l and 128·h + 96 + l (l < 32)
//   [128, 192) qh: bits 2k..2k+1 of byte 32·h + l are the high 2 bits of value 128·h + 32·k + l
//   [192, 208) scales: 16 int8, one per 16 values
//   [208, 210) f16 d
// x = d·scale · (q − 32), q in 0..63: (d·scale) is exact in f32, the product with q is rounded once.
const decodeQ6K: SuperBlockDecoder = (b, o, out, p) => {
  const d = half(b, o + 208);
  for (let h = 0; h < 2; h++) {
    const ql = o + 64 * h;
    const qh = o + 128 + 32 * h;
    const sc = o + 192 + 8 * h;
    const y = p + 128 * h;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const a = b[ql + l]!;
      const c = b[ql + 32 + l]!;
      const hi = b[qh + l]!;
      out[y + l] = fround(d * ((b[sc + is]! << 24) >> 24) * (((a & 0x0f) | ((hi & 3) << 4)) - 32));
      out[y + 32 + l] = fround(d * ((b[sc + is + 2]! << 24) >> 24) * (((c & 0x0f) | (((hi >> 2) & 3) << 4)) - 32));
      out[y + 64 + l] = fround(d * ((b[sc + is + 4]! << 24) >> 24) * (((a >> 4) | (((hi >> 4) & 3) << 4)) - 32));
      out[y + 96 + l] = fround(d * ((b[sc + is + 6]! << 24) >> 24) * (((c >> 4) | (((hi >> 6) & 3) << 4)) - 32));
    }
  }
};

export const K_DECODERS: Readonly<Record<KQuantDType, SuperBlockDecoder>> = {
  q2_k: decodeQ2K,
  q3_k: decodeQ3K,
  q4_k: decodeQ4K,
  q5_k: decodeQ5K,
  q6_k: decodeQ6K,
};

/** Whether `dtype` is a K-quant. */
export function isKQuant(dtype: string): dtype is KQuantDType {
  return Object.prototype.hasOwnProperty.call(K_DECODERS, dtype);
}

/**
 * Byte offsets of the f16 factors a power-of-two rescaling must multiply in each super-block (every value
 * is linear in them): d, and dmin where there is one.
 */
export const K_SCALE_OFFSETS: Readonly<Record<KQuantDType, readonly number[]>> = {
  q2_k: [80, 82],
  q3_k: [108],
  q4_k: [0, 2],
  q5_k: [0, 2],
  q6_k: [208],
};
