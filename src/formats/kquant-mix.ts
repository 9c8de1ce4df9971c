// llama-quantize's K-quant mixes (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K) for llama.cpp's rwkv6 and
// rwkv7 GGUF layouts: which tensors it quantizes at all (tensor_allows_quantization), the type it picks
// for each (llama_tensor_get_type), and its fallback when a row is not a whole number of 256-value
// super-blocks (tensor_type_fallback). RWKV has none of the tensors the _S/_M/_L variants treat
// specially (attn_v, attn_output, attn_qkv, ffn_down/up/gate), so for it a mix differs from the plain
// type only in token_embd and output.
import { ArgumentError } from '../errors.js';
import { isKQuant } from '../kernels/kquants.js';
import { DTYPES, type DType, type KQuantDType } from '../tensor/dtype.js';

export type KQuantMix = 'q2_k' | 'q3_k_s' | 'q3_k_m' | 'q3_k_l' | 'q4_k_s' | 'q4_k_m' | 'q5_k_s' | 'q5_k_m' | 'q6_k';

/** Every name `--type` accepts for a K-quant mix; Q3_K, Q4_K and Q5_K are llama-quantize's aliases for the _M mixes. */
export const KQUANT_MIX_NAMES: readonly string[] = ['q2_k', 'q3_k_s', 'q3_k_m', 'q3_k_l', 'q3_k', 'q4_k_s', 'q4_k_m', 'q4_k', 'q5_k_s', 'q5_k_m', 'q5_k', 'q6_k'];

const ALIASES: Readonly<Record<string, KQuantMix>> = { q3_k: 'q3_k_m', q4_k: 'q4_k_m', q5_k: 'q5_k_m' };

/** The mix a --type names (case-insensitive), or undefined. */
export function kQuantMixOf(name: string): KQuantMix | undefined {
  const n = name.toLowerCase();
  if (!KQUANT_MIX_NAMES.includes(n)) return undefined;
  return ALIASES[n] ?? (n as KQuantMix);
}

/** The type most tensors of a mix get (llama_ftype_get_default_type). */
const DEFAULT_TYPE: Readonly<Record<KQuantMix, KQuantDType>> = {
  q2_k: 'q2_k',
  q3_k_s: 'q3_k',
  q3_k_m: 'q3_k',
  q3_k_l: 'q3_k',
  q4_k_s: 'q4_k',
  q4_k_m: 'q4_k',
  q5_k_s: 'q5_k',
  q5_k_m: 'q5_k',
  q6_k: 'q6_k',
};

/** llama_ftype, written as general.file_type. */
export const MIX_FILE_TYPE: Readonly<Record<KQuantMix, number>> = {
  q2_k: 10,
  q3_k_s: 11,
  q3_k_m: 12,
  q3_k_l: 13,
  q4_k_s: 14,
  q4_k_m: 15,
  q5_k_s: 16,
  q5_k_m: 17,
  q6_k: 18,
};

/** tensor_type_fallback: a K-quant whose rows do not split into super-blocks becomes a 32-block type. */
const FALLBACK: Readonly<Record<KQuantDType, DType>> = {
  q2_k: 'q4_0',
  q3_k: 'q4_0',
  q4_k: 'q5_0',
  q5_k: 'q5_1',
  q6_k: 'q8_0',
};

// llama.cpp keeps RWKV's small 2-D tensors (LoRA factors, fused lerps, time_first) as they are.
const RWKV_KEPT = [
  'time_mix_first.weight',
  'time_mix_w0.weight',
  'time_mix_w1.weight',
  'time_mix_w2.weight',
  'time_mix_v0.weight',
  'time_mix_v1.weight',
  'time_mix_v2.weight',
  'time_mix_a0.weight',
  'time_mix_a1.weight',
  'time_mix_a2.weight',
  'time_mix_g1.weight',
  'time_mix_g2.weight',
  'time_mix_decay_w1.weight',
  'time_mix_decay_w2.weight',
  'time_mix_lerp_fused.weight',
];

/** ggml_n_dims of a tensor given in PyTorch order: its dimensions less the outer ones of size 1 (at least 1). */
function ggmlDims(shape: readonly number[]): number {
  let i = 0;
  while (i < shape.length - 1 && shape[i] === 1) i++;
  return Math.max(1, shape.length - i);
}

/** Whether llama-quantize would quantize a tensor of this GGUF name and shape (tensor_allows_quantization, for rwkv6/rwkv7). */
export function llamaQuantizes(ggufName: string, shape: readonly number[]): boolean {
  if (ggmlDims(shape) < 2) return false;
  if (!ggufName.endsWith('weight')) return false;
  if (ggufName.includes('_norm.weight')) return false;
  return !RWKV_KEPT.some((k) => ggufName.includes(k));
}

/**
 * The type llama-quantize gives a tensor under `mix` (llama_tensor_get_type for rwkv6/rwkv7, no imatrix,
 * no overrides), or undefined when it keeps the tensor's own type. Shapes are in PyTorch order, so a row is
 * the last dimension.
 */
export function llamaTensorType(mix: KQuantMix, ggufName: string, shape: readonly number[]): DType | undefined {
  if (!llamaQuantizes(ggufName, shape)) return undefined;
  const ncols = shape[shape.length - 1]!;
  let t: DType = DEFAULT_TYPE[mix];
  // output.weight: Q6_K whenever its rows fit super-blocks, else Q8_0 (not the fallback table).
  // token_embd.weight is untied in RWKV files (output.weight exists), so it keeps the default type.
  if (ggufName === 'output.weight') t = ncols % 256 !== 0 ? 'q8_0' : 'q6_k';
  if (ncols % DTYPES[t].blockSize !== 0) {
    const f = isKQuant(t) ? FALLBACK[t] : undefined;
    // llama.cpp has no fallback for a 32-block type either and stops.
    if (f === undefined) throw new ArgumentError(`${ggufName}: rows of ${ncols} values cannot be stored as ${t.toUpperCase()}`);
    t = ncols % DTYPES[f].blockSize === 0 ? f : 'f16';
  }
  return t;
}

/** The error for a --type that is not a known type. */
export function unknownTypeError(given: string, legacy: readonly string[]): ArgumentError {
  const names = [...legacy, ...KQUANT_MIX_NAMES].map((q) => q.toUpperCase());
  return new ArgumentError(`--type must be one of ${names.join(', ')}, got '${given}'`);
}
