// A GPT-2 model with random weights in memory, in Hugging Face's layout and names (Conv1D [in, out]):
// for the scaling benchmark at a chosen size, and for tests that write it out as a checkpoint.
import type { TensorSource } from '../formats/tensor-source.js';
import type { Tensor } from '../tensor/tensor.js';
import { Rng } from '../util/rng.js';
import type { GptFileConfig } from './gpt-config.js';

export interface RandomGptOptions {
  seed?: number;
  /** Store the head as lm_head.weight (untied). Default: tied (no lm_head). */
  untied?: boolean;
  /** Put every name except lm_head under `transformer.`, as GPT2LMHeadModel saves. Default false. */
  transformerPrefix?: boolean;
  /** Standard deviation of the weight matrices (default 0.02, GPT-2's init; tests take larger ones so
   * that activations are O(1) and every nonlinearity matters). */
  std?: number;
}

/** Parameters of a GPT-2 of these sizes (tied head: wte counted once). */
export function gptParameterCount(c: Pick<GptFileConfig, 'nLayer' | 'nEmbd' | 'nVocab' | 'nPositions'>, untied = false): number {
  const d = c.nEmbd;
  const perLayer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
  return c.nVocab * d * (untied ? 2 : 1) + c.nPositions * d + c.nLayer * perLayer + 2 * d;
}

/** Random f32 tensors of a GPT-2 with `config`'s sizes: weights ±0.02·√3 (std 0.02 as GPT-2 initialises), norms near 1. */
export function randomGptSource(config: GptFileConfig, options: RandomGptOptions = {}): TensorSource {
  const rng = new Rng(options.seed ?? 1);
  const p = options.transformerPrefix === true ? 'transformer.' : '';
  const tensors = new Map<string, Tensor>();
  const add = (name: string, shape: number[], fill: (i: number) => number): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = fill(i);
    tensors.set(name, { name, dtype: 'f32', shape, data: new Uint8Array(v.buffer) });
  };
  const uniform = (scale: number) => (): number => (rng.next() * 2 - 1) * scale;
  const w = uniform((options.std ?? 0.02) * Math.sqrt(3));
  const { nLayer: L, nEmbd: c, nVocab: V, nPositions: P } = config;
  add(`${p}wte.weight`, [V, c], w);
  add(`${p}wpe.weight`, [P, c], uniform(0.01));
  for (let l = 0; l < L; l++) {
    const h = `${p}h.${l}`;
    for (const ln of ['ln_1', 'ln_2']) {
      add(`${h}.${ln}.weight`, [c], () => 1 + (rng.next() - 0.5) * 0.2);
      add(`${h}.${ln}.bias`, [c], uniform(0.05));
    }
    add(`${h}.attn.c_attn.weight`, [c, 3 * c], w);
    add(`${h}.attn.c_attn.bias`, [3 * c], uniform(0.05));
    add(`${h}.attn.c_proj.weight`, [c, c], w);
    add(`${h}.attn.c_proj.bias`, [c], uniform(0.05));
    add(`${h}.mlp.c_fc.weight`, [c, 4 * c], w);
    add(`${h}.mlp.c_fc.bias`, [4 * c], uniform(0.05));
    add(`${h}.mlp.c_proj.weight`, [4 * c, c], w);
    add(`${h}.mlp.c_proj.bias`, [c], uniform(0.05));
  }
  add(`${p}ln_f.weight`, [c], () => 1 + (rng.next() - 0.5) * 0.2);
  add(`${p}ln_f.bias`, [c], uniform(0.05));
  if (options.untied === true) add('lm_head.weight', [V, c], w);
  return { format: 'memory', file: '<random gpt>', tensors, encoding: 'official', declared: {} };
}
