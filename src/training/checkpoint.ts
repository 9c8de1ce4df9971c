// Checkpoints. Two safetensors files in the run directory, each written atomically (temp file + rename,
// by the formats layer's writer):
//   model.safetensors        the weights under their official names and shapes, f32 (written by the
//                            architecture's saveModel: RWKV-4's below, GPT's in gpt-checkpoint.ts) — what `rwkv
//                            generate`, `loadModel` and `rwkv convert` (→ .pth for ChatRWKV / RWKV-LM) read
//   train-state.safetensors  everything a resumed run needs, in one file so that it is never half
//                            updated: the weights again, AdamW's moments (`adam.m.<name>`, `adam.v.<name>`)
//                            and, in the metadata, the step, the data generator's state and the options
// Both hold f32 exactly as trained, so a resumed run continues bit for bit.
import { ArgumentError, ModelError } from '../errors.js';
import { openCheckpoint } from '../formats/open.js';
import { readSafetensors } from '../formats/safetensors.js';
import { writeSafetensors } from '../formats/safetensors-writer.js';
import { toEncoding } from '../formats/transform.js';
import { decodeF32 } from '../formats/values.js';
import { detectVersion } from '../formats/version.js';
import type { OutTensor } from '../formats/writer.js';
import { elementCount, shapeString } from '../tensor/tensor.js';
import type { AdamW } from './adamw.js';
import type { ModelShape, TrainModel } from './architecture.js';
import { rwkv4ParamShapes, type Param, type Rwkv4Shape } from './model.js';
import type { Vec } from './ops.js';

export const MODEL_FILE = 'model.safetensors';
export const STATE_FILE = 'train-state.safetensors';
const STATE_KEY = 'rwkv-ts-training';

function f32Out(name: string, shape: readonly number[], values: Vec): OutTensor {
  return {
    name,
    dtype: 'f32',
    shape,
    byteLength: values.length * 4,
    bytes: () => {
      const a = values instanceof Float32Array ? values : Float32Array.from(values);
      return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    },
  };
}

/** Writes the weights under their official names (atomically). */
export function saveModel(model: TrainModel, file: string, metadata: Record<string, string> = {}): void {
  writeSafetensors(
    file,
    model.params.map((p) => f32Out(p.name, p.shape, p.data)),
    metadata,
  );
}

/** What a resumed run restores besides the tensors. */
export interface Progress {
  /** Steps done. */
  step: number;
  /** The data generator's state after `step` steps. */
  rng: [number, number, number, number];
  /** The run's options, as resolved (JSON). */
  options: Record<string, unknown>;
  /** The architecture (architecture.ts); absent in states written before there was a choice: 'rwkv4'. */
  arch?: string;
  /** The architecture's shape (Rwkv4Shape, GptShape, …). */
  shape: ModelShape;
}

/** `trained`: what the optimizer updates — a model's parameters, or a LoRA adapter's (lora.ts). */
export function saveTrainingState(file: string, trained: { readonly params: readonly Param[] }, opt: AdamW, progress: Progress): void {
  if (opt.t !== progress.step) throw new Error(`internal: optimizer at update ${opt.t}, progress at step ${progress.step}`);
  const tensors: OutTensor[] = [];
  trained.params.forEach((p, i) => {
    tensors.push(f32Out(p.name, p.shape, p.data));
    tensors.push(f32Out(`adam.m.${p.name}`, p.shape, opt.m[i]!));
    tensors.push(f32Out(`adam.v.${p.name}`, p.shape, opt.v[i]!));
  });
  writeSafetensors(file, tensors, { [STATE_KEY]: JSON.stringify(progress) });
}

/** Restores the trained tensors and their moments into `trained` and `opt`; returns the progress. */
export async function loadTrainingState(file: string, trained: { readonly params: readonly Param[] }, opt: AdamW): Promise<Progress> {
  const st = await readSafetensors(file);
  const raw = st.metadata.get(STATE_KEY);
  if (raw === undefined) throw new ModelError('BAD_HEADER', `not a training state (no '${STATE_KEY}' metadata)`, { file });
  const progress = JSON.parse(raw) as Progress;
  const fill = (name: string, into: Vec): void => {
    const t = st.tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the training state', { file, tensor: name });
    if (t.dtype !== 'f32' || elementCount(t.shape) !== into.length) {
      throw new ModelError('BAD_SHAPE', `has ${t.dtype} ${shapeString(t.shape)}, expected f32 × ${into.length}`, { file, tensor: name });
    }
    into.set(decodeF32(t));
  };
  trained.params.forEach((p, i) => {
    fill(p.name, p.data);
    fill(`adam.m.${p.name}`, opt.m[i]!);
    fill(`adam.v.${p.name}`, opt.v[i]!);
  });
  opt.t = progress.step;
  return progress;
}

/** Reads the shape and run progress of a training state without loading tensors into a model. */
export async function readProgress(file: string): Promise<Progress> {
  const st = await readSafetensors(file);
  const raw = st.metadata.get(STATE_KEY);
  if (raw === undefined) throw new ModelError('BAD_HEADER', `not a training state (no '${STATE_KEY}' metadata)`, { file });
  return JSON.parse(raw) as Progress;
}

/**
 * The weights of an existing RWKV-4 checkpoint of any supported format (rwkv.cpp .bin, GGUF cannot hold
 * v4, .pth, safetensors; any dtype, dequantized to f32), under official names and encodings, with the
 * shape they imply.
 */
export async function readInitWeights(file: string): Promise<{ shape: Rwkv4Shape; values: Map<string, Float32Array> }> {
  const source = toEncoding(await openCheckpoint(file), 'official');
  const version = detectVersion(source);
  if (version !== '4') throw new ArgumentError(`${file} is an RWKV v${version} model, not RWKV-4: train it with --arch rwkv7 (v7) or without --arch`);
  const emb = source.tensors.get('emb.weight');
  const fk = source.tensors.get('blocks.0.ffn.key.weight');
  if (emb === undefined || emb.shape.length !== 2) throw new ModelError('MISSING_TENSOR', 'is missing or not 2-D', { file, tensor: 'emb.weight' });
  if (fk === undefined || fk.shape.length !== 2) throw new ModelError('MISSING_TENSOR', 'is missing or not 2-D', { file, tensor: 'blocks.0.ffn.key.weight' });
  let nLayer = 0;
  while (source.tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  const shape: Rwkv4Shape = { nLayer, nEmbd: emb.shape[1]!, nVocab: emb.shape[0]!, ffnSize: fk.shape[0]! };
  const expected = rwkv4ParamShapes(shape);
  const known = new Set(expected.map((e) => e.name));
  const extra = [...source.tensors.keys()].filter((n) => !known.has(n));
  if (extra.length > 0) {
    throw new ModelError('UNKNOWN_MODEL', `has tensors a plain RWKV-4 does not (${extra.slice(0, 4).join(', ')}${extra.length > 4 ? ', …' : ''})`, { file });
  }
  const values = new Map<string, Float32Array>();
  for (const { name, shape: s } of expected) {
    const t = source.tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    if (elementCount(t.shape) !== elementCount(s)) {
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${shapeString(s)}`, { file, tensor: name });
    }
    values.set(name, decodeF32(t));
  }
  return { shape, values };
}
