// A GPT's model file in Hugging Face GPT-2's layout, which the GPT inference loader (and transformers'
// GPT2LMHeadModel) read: `model.safetensors` with GPT-2's names and no prefix, f32, the Conv1D weights
// (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) as [in, out] (y = x·W + b; c_attn's columns q | k | v),
// lm_head.weight only when the head is untied; and `config.json` beside it. The trainer keeps those
// four as [out, in] (its Gemm's y = x·Wᵀ): they are transposed here, both ways.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, ModelError } from '../errors.js';
import { readSafetensors } from '../formats/safetensors.js';
import { writeSafetensors } from '../formats/safetensors-writer.js';
import { decodeF32 } from '../formats/values.js';
import type { OutTensor } from '../formats/writer.js';
import { LN_EPS } from '../models/blocks.js';
import { shapeString } from '../tensor/tensor.js';
import { checkGptShape, gptParamShapes, type GptShape, type GptTrain } from './gpt.js';
import type { Vec } from './ops.js';

export const GPT_CONFIG_FILE = 'config.json';

/** Hugging Face's GPT-2 config.json fields this trainer writes (and reads back). */
export interface Gpt2Config {
  model_type: 'gpt2';
  architectures: string[];
  n_layer: number;
  n_embd: number;
  n_head: number;
  n_positions: number;
  n_ctx: number;
  vocab_size: number;
  layer_norm_epsilon: number;
  activation_function: 'gelu_new';
  tie_word_embeddings: boolean;
}

const CONV1D = /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/;

/** Whether `name` is stored [in, out] in the file (Conv1D) and [out, in] in the trainer. */
export function isConv1d(name: string): boolean {
  return CONV1D.test(name);
}

/** rows × cols → cols × rows. */
function transposed(a: Vec, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

export function gptConfig(s: GptShape): Gpt2Config {
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    n_layer: s.nLayer,
    n_embd: s.nEmbd,
    n_head: s.nHead,
    n_positions: s.nPositions,
    n_ctx: s.nPositions,
    vocab_size: s.nVocab,
    layer_norm_epsilon: LN_EPS,
    activation_function: 'gelu_new',
    tie_word_embeddings: s.tiedHead,
  };
}

/** Writes `file` (GPT-2 names and layout, atomically) and config.json beside it; returns both paths. */
export function saveGptModel(model: GptTrain, file: string, metadata: Record<string, string> = {}): string[] {
  const tensors: OutTensor[] = model.params.map((p) => {
    const conv = isConv1d(p.name);
    const [rows, cols] = p.shape as [number, number];
    const shape = conv ? [cols, rows] : p.shape;
    return {
      name: p.name,
      dtype: 'f32',
      shape,
      byteLength: p.data.length * 4,
      bytes: () => {
        const a = conv ? transposed(p.data, rows, cols) : p.data instanceof Float32Array ? p.data : Float32Array.from(p.data);
        return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      },
    };
  });
  // transformers refuses a safetensors file without format metadata.
  writeSafetensors(file, tensors, { format: 'pt', ...metadata });
  const config = path.join(path.dirname(file), GPT_CONFIG_FILE);
  const tmp = `${config}.${process.pid}.partial`;
  fs.writeFileSync(tmp, `${JSON.stringify(gptConfig(model.shape), null, 2)}\n`);
  fs.renameSync(tmp, config);
  return [file, config];
}

/** The shape a GPT-2 config.json describes. */
export function shapeFromConfig(config: Partial<Gpt2Config>, file: string): GptShape {
  if (config.model_type !== undefined && config.model_type !== 'gpt2') throw new ArgumentError(`${file}: model_type is '${config.model_type}', not 'gpt2'`);
  if (config.activation_function !== undefined && config.activation_function !== 'gelu_new') {
    throw new ArgumentError(`${file}: activation_function '${config.activation_function}' (this trainer has GPT-2's gelu_new)`);
  }
  const shape: GptShape = {
    nLayer: Number(config.n_layer),
    nEmbd: Number(config.n_embd),
    nVocab: Number(config.vocab_size),
    nHead: Number(config.n_head),
    nPositions: Number(config.n_positions ?? config.n_ctx),
    tiedHead: config.tie_word_embeddings !== false,
  };
  checkGptShape(shape);
  return shape;
}

/**
 * The weights of a GPT-2 model file (this trainer's, or Hugging Face's without the 'transformer.' prefix)
 * with its config.json beside it, in the trainer's layout, and the shape they imply.
 */
export async function readGptWeights(file: string): Promise<{ shape: GptShape; values: Map<string, Float32Array> }> {
  const configFile = path.join(path.dirname(file), GPT_CONFIG_FILE);
  if (!fs.existsSync(configFile)) throw new ArgumentError(`${file}: a GPT model needs its ${GPT_CONFIG_FILE} beside it (n_head is not in the weights)`);
  const shape = shapeFromConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')) as Partial<Gpt2Config>, configFile);
  const st = await readSafetensors(file);
  const values = new Map<string, Float32Array>();
  for (const { name, shape: s } of gptParamShapes(shape)) {
    const t = st.tensors.get(name) ?? st.tensors.get(`transformer.${name}`);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    const conv = isConv1d(name);
    const want = conv ? [s[1]!, s[0]!] : s;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${shapeString(want)}`, { file, tensor: name });
    }
    const v = decodeF32(t);
    values.set(name, conv ? transposed(v, want[0]!, want[1]!) : v);
  }
  return { shape, values };
}
