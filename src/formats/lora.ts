// LoRA adapter files (Hu et al., 2021) and their application to a model at load time.
//
// An adapter replaces a matrix W [out, in] by W + scale · (α / r) · B·A with A [r, in] and B [out, r].
// The file is safetensors with PEFT's names, so that tools that read PEFT adapters recognise it:
//   base_model.model.<module>.lora_A.weight   [r, in]   (f32)
//   base_model.model.<module>.lora_B.weight   [out, r]  (f32)
// where <module> is the adapted tensor's official name less '.weight' (e.g. blocks.0.att.key). The
// metadata holds `rwkv-ts-lora` (JSON: rank, alpha, targets, the base model's identity) and, for PEFT's
// readers, `adapter_config` (its adapter_config.json: peft_type, r, lora_alpha, target_modules).
import { ArgumentError, ModelError } from '../errors.js';
import { elementCount, shapeString, type Tensor } from '../tensor/tensor.js';
import { readSafetensors } from './safetensors.js';
import type { TensorSource } from './tensor-source.js';
import { toEncoding } from './transform.js';
import { decodeF32, f32Tensor } from './values.js';

export const LORA_META_KEY = 'rwkv-ts-lora';
const PREFIX = 'base_model.model.';

/** The matrix groups an adapter can target: the time mix (attention) and the channel mix (feed-forward). */
export type LoraTargetGroup = 'att' | 'ffn';
export const LORA_TARGET_GROUPS: readonly LoraTargetGroup[] = ['att', 'ffn'];

/** Which model it was trained on: enough to refuse the wrong one and to tell a user which to load. */
export interface LoraBaseIdentity {
  /** The base model file as given to the trainer. */
  file: string;
  arch: string;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
}

export interface LoraMetadata {
  rank: number;
  alpha: number;
  targets: LoraTargetGroup[];
  base: LoraBaseIdentity;
}

/** One adapted matrix: A [r, in], B [out, r] (f32, row-major). */
export interface LoraPair {
  /** The adapted tensor's official name, e.g. 'blocks.0.att.key.weight'. */
  target: string;
  a: Float32Array;
  b: Float32Array;
  rows: number;
  cols: number;
  rank: number;
}

export interface LoraAdapterFile {
  file: string;
  metadata: LoraMetadata;
  pairs: LoraPair[];
}

/** The official names of the matrices `groups` adapt: blocks.N.{att|ffn}.NAME.weight, 2-D (GPT-2: h.N.{attn|mlp}). */
export function isLoraTarget(name: string, shape: readonly number[], groups: readonly LoraTargetGroup[]): boolean {
  if (shape.length !== 2 || shape[0]! < 2 || shape[1]! < 2) return false;
  const m = /^(?:blocks|h)\.\d+\.(att|ffn|attn|mlp)\.[A-Za-z0-9_]+\.weight$/.exec(name);
  if (m === null) return false;
  const group: LoraTargetGroup = m[1] === 'att' || m[1] === 'attn' ? 'att' : 'ffn';
  return groups.includes(group);
}

/** Parses "att,ffn" (a --lora-targets value). */
export function parseLoraTargets(spec: string): LoraTargetGroup[] {
  const groups = spec
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (groups.length === 0) throw new ArgumentError('--lora-targets needs at least one of att, ffn');
  for (const g of groups) {
    if (!(LORA_TARGET_GROUPS as readonly string[]).includes(g)) throw new ArgumentError(`--lora-targets: unknown group '${g}' (known: ${LORA_TARGET_GROUPS.join(', ')})`);
  }
  return [...new Set(groups)] as LoraTargetGroup[];
}

export function loraTensorNames(target: string): { a: string; b: string } {
  const module = target.replace(/\.weight$/, '');
  return { a: `${PREFIX}${module}.lora_A.weight`, b: `${PREFIX}${module}.lora_B.weight` };
}

/** PEFT's adapter_config.json for these adapters. */
export function peftAdapterConfig(meta: LoraMetadata, targets: readonly string[]): string {
  return JSON.stringify({
    peft_type: 'LORA',
    r: meta.rank,
    lora_alpha: meta.alpha,
    lora_dropout: 0,
    bias: 'none',
    target_modules: [...new Set(targets.map((t) => t.replace(/\.weight$/, '').split('.').slice(2).join('.')))],
    base_model_name_or_path: meta.base.file,
  });
}

function parseMetadata(raw: string | undefined, file: string): LoraMetadata {
  if (raw === undefined) throw new ModelError('BAD_HEADER', `is not a LoRA adapter file (no '${LORA_META_KEY}' metadata)`, { file });
  let m: Partial<LoraMetadata>;
  try {
    m = JSON.parse(raw) as Partial<LoraMetadata>;
  } catch {
    throw new ModelError('BAD_HEADER', `its '${LORA_META_KEY}' metadata is not JSON`, { file });
  }
  if (!Number.isInteger(m.rank) || m.rank! < 1 || typeof m.alpha !== 'number' || !Number.isFinite(m.alpha) || !Array.isArray(m.targets) || typeof m.base !== 'object' || m.base === null) {
    throw new ModelError('BAD_HEADER', `its '${LORA_META_KEY}' metadata lacks rank, alpha, targets or base`, { file });
  }
  return m as LoraMetadata;
}

/** Reads an adapter file, checking every pair's shapes. */
export async function readLoraFile(file: string): Promise<LoraAdapterFile> {
  const st = await readSafetensors(file);
  const metadata = parseMetadata(st.metadata.get(LORA_META_KEY), file);
  const pairs: LoraPair[] = [];
  const seen = new Set<string>();
  for (const name of st.tensors.keys()) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
    if (m === null) {
      if (!/\.lora_B\.weight$/.test(name)) throw new ModelError('BAD_HEADER', 'is not a LoRA tensor (expected base_model.model.<module>.lora_A.weight / lora_B.weight)', { file, tensor: name });
      continue;
    }
    const target = `${m[1]}.weight`;
    const names = loraTensorNames(target);
    const ta = st.tensors.get(names.a)!;
    const tb = st.tensors.get(names.b);
    if (tb === undefined) throw new ModelError('MISSING_TENSOR', `is missing (its lora_A is there)`, { file, tensor: names.b });
    if (ta.shape.length !== 2 || tb.shape.length !== 2 || ta.shape[0] !== metadata.rank || tb.shape[1] !== metadata.rank) {
      throw new ModelError('BAD_SHAPE', `lora_A ${shapeString(ta.shape)} and lora_B ${shapeString(tb.shape)} do not match rank ${metadata.rank}`, { file, tensor: names.a });
    }
    pairs.push({ target, a: decodeF32(ta), b: decodeF32(tb), rows: tb.shape[0]!, cols: ta.shape[1]!, rank: metadata.rank });
    seen.add(names.b);
  }
  for (const name of st.tensors.keys()) {
    if (name.endsWith('.lora_B.weight') && !seen.has(name)) throw new ModelError('MISSING_TENSOR', 'has no lora_A beside it', { file, tensor: name });
  }
  if (pairs.length === 0) throw new ModelError('MISSING_TENSOR', 'holds no adapters', { file });
  return { file, metadata, pairs };
}

/** "FILE" or "FILE:SCALE" (a --lora value); the scale defaults to 1. */
export function parseLoraSpec(spec: string): { file: string; scale: number } {
  const m = /^(.*):(-?\d+(?:\.\d+)?(?:e-?\d+)?)$/i.exec(spec);
  if (m === null) return { file: spec, scale: 1 };
  const scale = Number(m[2]);
  if (!Number.isFinite(scale)) throw new ArgumentError(`--lora ${spec}: the scale must be a number`);
  return { file: m[1]!, scale };
}

/** ΔW = factor · B·A added to `w` (float64 sums, one rounding to f32 per element). */
export function addLowRank(w: Float32Array, pair: LoraPair, factor: number): void {
  const { rows, cols, rank, a, b } = pair;
  const acc = new Float64Array(cols);
  for (let o = 0; o < rows; o++) {
    acc.fill(0);
    for (let k = 0; k < rank; k++) {
      const bk = b[o * rank + k]!;
      if (bk === 0) continue;
      const ao = k * cols;
      for (let i = 0; i < cols; i++) acc[i] += bk * a[ao + i]!;
    }
    const wo = o * cols;
    for (let i = 0; i < cols; i++) w[wo + i] = Math.fround(w[wo + i]! + factor * acc[i]!);
  }
}

/**
 * `source` with each adapter applied: every adapted matrix becomes f32 W + scale·(α/r)·B·A (the others pass
 * through untouched). Applying several adapters adds their deltas in order.
 */
export function applyLora(source: TensorSource, adapters: readonly { adapter: LoraAdapterFile; scale: number }[]): TensorSource {
  if (adapters.length === 0) return source;
  const official = toEncoding(source, 'official');
  const tensors = new Map<string, Tensor>(official.tensors);
  for (const { adapter, scale } of adapters) {
    const factor = (scale * adapter.metadata.alpha) / adapter.metadata.rank;
    for (const pair of adapter.pairs) {
      const t = tensors.get(pair.target);
      if (t === undefined) {
        throw new ModelError('MISSING_TENSOR', `is adapted by ${adapter.file} but the model ${source.file} has no such tensor (an adapter for another model?)`, { tensor: pair.target });
      }
      if (t.shape.length !== 2 || t.shape[0] !== pair.rows || t.shape[1] !== pair.cols || elementCount(t.shape) !== pair.rows * pair.cols) {
        throw new ModelError('BAD_SHAPE', `is ${shapeString(t.shape)} in ${source.file} but the adapter ${adapter.file} is for [${pair.rows}, ${pair.cols}] (an adapter for another model?)`, { tensor: pair.target });
      }
      const w = decodeF32(t);
      addLowRank(w, pair, factor);
      tensors.set(pair.target, f32Tensor(pair.target, t.shape, w));
    }
  }
  return { ...official, tensors };
}

/** Reads each "FILE[:SCALE]" and returns what `applyLora` takes. */
export async function readLoraSpecs(specs: readonly (string | { file: string; scale?: number })[]): Promise<{ adapter: LoraAdapterFile; scale: number }[]> {
  const out: { adapter: LoraAdapterFile; scale: number }[] = [];
  for (const s of specs) {
    const { file, scale } = typeof s === 'string' ? parseLoraSpec(s) : { file: s.file, scale: s.scale ?? 1 };
    out.push({ adapter: await readLoraFile(file), scale });
  }
  return out;
}
