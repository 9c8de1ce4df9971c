// Tensor-name dialects, all mapped onto the official RWKV-LM / ChatRWKV names that the models read:
//   official:      emb.weight, blocks.N.ln0/ln1/ln2, blocks.N.att.*, blocks.N.ffn.*, ln_out, head.weight
//   Hugging Face:  transformers' RWKV-4 (RwkvForCausalLM) and its v5/v6 siblings:
//                  rwkv.embeddings, rwkv.blocks.N.pre_ln, rwkv.blocks.N.attention.time_mix_key, …,
//                  rwkv.blocks.N.feed_forward.*, rwkv.ln_out, head
//   GGUF:          llama.cpp's rwkv6 / rwkv7 names (token_embd, blk.N.time_mix_*, blk.N.channel_mix_*, …)
// GGUF also fuses and reshapes some tensors; that part lives in gguf.ts. This file is names only.

/** HF's spelled-out token-shift names → official ones (v4/v5 time_mix_*). */
const HF_SUFFIXES: ReadonlyMap<string, string> = new Map([
  ['time_mix_key', 'time_mix_k'],
  ['time_mix_value', 'time_mix_v'],
  ['time_mix_receptance', 'time_mix_r'],
  ['time_mix_gate', 'time_mix_g'],
]);

/** Whether a set of names is in the Hugging Face dialect (every HF RWKV checkpoint has rwkv.embeddings). */
export function isHuggingFaceNames(names: Iterable<string>): boolean {
  for (const n of names) if (n.startsWith('rwkv.')) return true;
  return false;
}

/** A Hugging Face RWKV name as the official one; names it does not know are returned unchanged. */
export function officialFromHuggingFace(name: string): string {
  if (name === 'rwkv.embeddings.weight') return 'emb.weight';
  let m = /^rwkv\.ln_out\.(weight|bias)$/.exec(name);
  if (m !== null) return `ln_out.${m[1]}`;
  m = /^rwkv\.blocks\.(\d+)\.pre_ln\.(weight|bias)$/.exec(name);
  if (m !== null) return `blocks.${m[1]}.ln0.${m[2]}`;
  m = /^rwkv\.blocks\.(\d+)\.(ln1|ln2)\.(weight|bias)$/.exec(name);
  if (m !== null) return `blocks.${m[1]}.${m[2]}.${m[3]}`;
  m = /^rwkv\.blocks\.(\d+)\.(attention|feed_forward)\.(.+)$/.exec(name);
  if (m !== null) {
    const part = m[2] === 'attention' ? 'att' : 'ffn';
    const rest = m[3]!;
    const dot = rest.indexOf('.');
    const head = dot < 0 ? rest : rest.slice(0, dot);
    const tail = dot < 0 ? '' : rest.slice(dot);
    return `blocks.${m[1]}.${part}.${HF_SUFFIXES.get(head) ?? head}${tail}`;
  }
  return name;
}

// ---------------------------------------------------------------------------------------------------
// GGUF (llama.cpp) ↔ official. Per-layer names map one-to-one except the fused token-shift tensor
// (blk.N.time_mix_lerp_fused), which gguf.ts splits and joins.

export type GgufArch = 'rwkv6' | 'rwkv7';

const GGUF_GLOBAL: ReadonlyArray<readonly [string, string]> = [
  ['token_embd.weight', 'emb.weight'],
  ['token_embd_norm.weight', 'blocks.0.ln0.weight'],
  ['token_embd_norm.bias', 'blocks.0.ln0.bias'],
  ['output_norm.weight', 'ln_out.weight'],
  ['output_norm.bias', 'ln_out.bias'],
  ['output.weight', 'head.weight'],
];

/** Per-layer [gguf suffix after blk.N., official suffix after blocks.N.], shared by rwkv6 and rwkv7. */
const GGUF_LAYER_COMMON: ReadonlyArray<readonly [string, string]> = [
  ['attn_norm.weight', 'ln1.weight'],
  ['attn_norm.bias', 'ln1.bias'],
  ['attn_norm_2.weight', 'ln2.weight'],
  ['attn_norm_2.bias', 'ln2.bias'],
  ['time_mix_key.weight', 'att.key.weight'],
  ['time_mix_value.weight', 'att.value.weight'],
  ['time_mix_receptance.weight', 'att.receptance.weight'],
  ['time_mix_output.weight', 'att.output.weight'],
  ['time_mix_ln.weight', 'att.ln_x.weight'],
  ['time_mix_ln.bias', 'att.ln_x.bias'],
  ['channel_mix_key.weight', 'ffn.key.weight'],
  ['channel_mix_value.weight', 'ffn.value.weight'],
];

const GGUF_LAYER_V6: ReadonlyArray<readonly [string, string]> = [
  ...GGUF_LAYER_COMMON,
  ['time_mix_gate.weight', 'att.gate.weight'],
  ['time_mix_lerp_x.weight', 'att.time_maa_x'],
  ['time_mix_w1.weight', 'att.time_maa_w1'],
  ['time_mix_w2.weight', 'att.time_maa_w2'],
  ['time_mix_decay.weight', 'att.time_decay'],
  ['time_mix_decay_w1.weight', 'att.time_decay_w1'],
  ['time_mix_decay_w2.weight', 'att.time_decay_w2'],
  ['time_mix_first.weight', 'att.time_faaaa'],
  ['channel_mix_lerp_k.weight', 'ffn.time_maa_k'],
  ['channel_mix_lerp_r.weight', 'ffn.time_maa_r'],
  ['channel_mix_receptance.weight', 'ffn.receptance.weight'],
];

const GGUF_LAYER_V7: ReadonlyArray<readonly [string, string]> = [
  ...GGUF_LAYER_COMMON,
  ...['w0', 'w1', 'w2', 'a0', 'a1', 'a2', 'v0', 'v1', 'v2', 'g1', 'g2', 'k_k', 'k_a', 'r_k'].map(
    (n) => [`time_mix_${n}.weight`, `att.${n}`] as const,
  ),
  ['channel_mix_lerp_k.weight', 'ffn.x_k'],
];

/** The fused token-shift tensor and the official tensors it holds, in its order. */
export const GGUF_LERP_FUSED = 'time_mix_lerp_fused.weight';
export const FUSED_LERP_PARTS: Readonly<Record<GgufArch, readonly string[]>> = {
  rwkv6: ['att.time_maa_w', 'att.time_maa_k', 'att.time_maa_v', 'att.time_maa_r', 'att.time_maa_g'],
  rwkv7: ['att.x_r', 'att.x_w', 'att.x_k', 'att.x_v', 'att.x_a', 'att.x_g'],
};

function layerTable(arch: GgufArch): ReadonlyArray<readonly [string, string]> {
  return arch === 'rwkv6' ? GGUF_LAYER_V6 : GGUF_LAYER_V7;
}

/** A GGUF name as the official one, or undefined when the name is not part of `arch`'s model. */
export function officialFromGguf(name: string, arch: GgufArch): string | undefined {
  for (const [g, o] of GGUF_GLOBAL) if (g === name) return o;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  if (m === null) return undefined;
  for (const [g, o] of layerTable(arch)) if (g === m[2]) return `blocks.${m[1]}.${o}`;
  return undefined;
}

/** An official name as the GGUF one, or undefined when `arch` has no such tensor. */
export function ggufFromOfficial(name: string, arch: GgufArch): string | undefined {
  for (const [g, o] of GGUF_GLOBAL) if (o === name) return g;
  const m = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (m === null) return undefined;
  for (const [g, o] of layerTable(arch)) if (o === m[2]) return `blk.${m[1]}.${g}`;
  return undefined;
}
