// GPT-2 tensors (Hugging Face names, optionally under `transformer.`) placed on a backend as a GptModel.
// HF GPT-2 stores its projections as Conv1D weights, [in, out] with y = x·W + b; the backend's matrices
// are [out, in] (y = W·x), so each is transposed once here, in its stored encoding (f32, f16 or bf16).
// c_attn ([C, 3C], columns q | k | v) becomes three C × C matrices.
import { FormatError, ModelError } from '../errors.js';
import type { TensorSource } from '../formats/tensor-source.js';
import type { Backend, DeviceMatrix, DeviceTensor } from '../kernels/backend.js';
import { matrixFromTensor } from '../kernels/matrix.js';
import { shapeString, type Tensor } from '../tensor/tensor.js';
import type { GptFileConfig } from './gpt-config.js';
import { GptModel, type GptLayer, type GptModelOptions } from './gpt.js';
import type { LayerNormWeights } from './model.js';
import { toF32 } from './weights.js';

/** Whether tensors look like a GPT-2 checkpoint (wte.weight, bare or under transformer.). */
export function looksLikeGpt2(source: Pick<TensorSource, 'tensors'>): boolean {
  return source.tensors.has('wte.weight') || source.tensors.has('transformer.wte.weight');
}

/**
 * Builds a GptModel from `source`'s tensors and config.json's sizes; every missing or misshapen tensor is
 * a ModelError naming the file and the tensor. HF's attention buffers (h.*.attn.bias, .masked_bias) are
 * not weights and are ignored.
 */
export function gptFromSource(source: TensorSource, config: GptFileConfig, backend: Backend, options: GptModelOptions = {}): GptModel {
  const file = source.file;
  const prefix = source.tensors.has('transformer.wte.weight') ? 'transformer.' : '';
  const { nLayer: L, nEmbd: c, nPositions: P, nVocab: V } = config;

  const get = (name: string): Tensor => {
    const t = source.tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
      throw new FormatError('UNSUPPORTED_DTYPE', `is ${t.dtype}; GPT weights must be f32, f16 or bf16`, { file, tensor: name });
    }
    return t;
  };
  const shaped = (name: string, shape: readonly number[], meaning: string): Tensor => {
    const t = get(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${shapeString(shape)} (${meaning})`, { file, tensor: name });
    }
    return t;
  };
  const vector = (name: string, n: number, meaning: string): Float32Array => toF32(shaped(name, [n], meaning));
  const param = (values: Float32Array): DeviceTensor => backend.upload(values, 1, values.length);
  const norm = (name: string): LayerNormWeights => ({
    weight: param(vector(`${name}.weight`, c, 'n_embd')),
    bias: param(vector(`${name}.bias`, c, 'n_embd')),
  });
  /** A stored [rows, cols] matrix as it is (wte, wpe, lm_head: already [out, in]). */
  const direct = (name: string, rows: number, cols: number, meaning: string): DeviceMatrix =>
    backend.matrix(matrixFromTensor(shaped(name, [rows, cols], meaning), rows, cols));
  /** Columns [first, first + count) of a Conv1D weight [inDim, outDim] as a count × inDim matrix. */
  const conv1d = (name: string, inDim: number, outDim: number, first: number, count: number, meaning: string): DeviceMatrix => {
    const t = shaped(name, [inDim, outDim], meaning);
    const size = t.dtype === 'f32' ? 4 : 2;
    const bytes = backend.allocateBytes(count * inDim * size);
    const src = t.data;
    for (let r = 0; r < count; r++) {
      for (let i = 0; i < inDim; i++) {
        const from = (i * outDim + first + r) * size;
        const to = (r * inDim + i) * size;
        for (let b = 0; b < size; b++) bytes[to + b] = src[from + b]!;
      }
    }
    return backend.matrix(matrixFromTensor({ name: `${name}[:, ${first}:${first + count}]ᵀ`, dtype: t.dtype, shape: [count, inDim], data: bytes }, count, inDim));
  };

  const wte = direct(`${prefix}wte.weight`, V, c, 'vocab_size × n_embd');
  const wpe = direct(`${prefix}wpe.weight`, P, c, 'n_positions × n_embd');
  const layers: GptLayer[] = [];
  for (let l = 0; l < L; l++) {
    const p = `${prefix}h.${l}`;
    const attn = `${p}.attn.c_attn`;
    const qkvBias = vector(`${attn}.bias`, 3 * c, '3 · n_embd: q | k | v');
    layers.push({
      ln1: norm(`${p}.ln_1`),
      q: conv1d(`${attn}.weight`, c, 3 * c, 0, c, 'n_embd × 3·n_embd'),
      k: conv1d(`${attn}.weight`, c, 3 * c, c, c, 'n_embd × 3·n_embd'),
      v: conv1d(`${attn}.weight`, c, 3 * c, 2 * c, c, 'n_embd × 3·n_embd'),
      qBias: param(qkvBias.slice(0, c)),
      kBias: param(qkvBias.slice(c, 2 * c)),
      vBias: param(qkvBias.slice(2 * c)),
      attnProj: conv1d(`${p}.attn.c_proj.weight`, c, c, 0, c, 'n_embd × n_embd'),
      attnProjBias: param(vector(`${p}.attn.c_proj.bias`, c, 'n_embd')),
      ln2: norm(`${p}.ln_2`),
      fc: conv1d(`${p}.mlp.c_fc.weight`, c, 4 * c, 0, 4 * c, 'n_embd × 4·n_embd'),
      fcBias: param(vector(`${p}.mlp.c_fc.bias`, 4 * c, '4 · n_embd')),
      mlpProj: conv1d(`${p}.mlp.c_proj.weight`, 4 * c, c, 0, c, '4·n_embd × n_embd'),
      mlpProjBias: param(vector(`${p}.mlp.c_proj.bias`, c, 'n_embd')),
    });
  }
  const lnF = norm(`${prefix}ln_f`);
  // The head: lm_head.weight when stored (HF keeps it outside `transformer.`), else wte — unless
  // config.json says the head is not tied, when it must be there.
  const headName = ['lm_head.weight', `${prefix}lm_head.weight`].find((n) => source.tensors.has(n));
  if (headName === undefined && !config.tieWordEmbeddings) {
    throw new ModelError('MISSING_TENSOR', 'is missing, and config.json says tie_word_embeddings: false', { file, tensor: 'lm_head.weight' });
  }
  const head = headName === undefined ? wte : direct(headName, V, c, 'vocab_size × n_embd');
  return new GptModel(config, { wte, wpe, layers, lnF, head, tied: headName === undefined }, backend, { file, ...options });
}
