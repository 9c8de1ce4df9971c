// Models with random weights in memory, in the official tensor layout: for benchmarks at real model shapes
// (e.g. RWKV-4 169M) without downloading a checkpoint, and for tests that need a model of a given shape.
import type { TensorSource } from '../formats/tensor-source.js';
import { Rng } from '../generation/rng.js';
import type { Tensor } from '../tensor/tensor.js';

export interface RandomV4Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Default 4·nEmbd. */
  ffnSize?: number;
}

/** RWKV-4 169M (the Pile model's shape): 12 layers, 768 wide, vocabulary 50277. */
export const RWKV4_169M: RandomV4Shape = { nLayer: 12, nEmbd: 768, nVocab: 50277 };

function f32Tensor(name: string, shape: number[], fill: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = fill(i);
  return { name, dtype: 'f32', shape, data: new Uint8Array(values.buffer) };
}

/**
 * An RWKV-4 with random weights of a plausible scale (matrices uniform in ±1/√in, decays spread like
 * RWKV-LM's initialisation), official names and raw parameters (format 'memory').
 */
export function randomV4Source(shape: RandomV4Shape, seed = 1): TensorSource {
  const rng = new Rng(seed);
  const c = shape.nEmbd;
  const f = shape.ffnSize ?? 4 * c;
  const tensors = new Map<string, Tensor>();
  const add = (t: Tensor): void => {
    tensors.set(t.name, t);
  };
  const uniform = (scale: number) => () => (rng.next() * 2 - 1) * scale;
  const matrix = (name: string, rows: number, cols: number): void =>
    add(f32Tensor(name, [rows, cols], uniform(1 / Math.sqrt(cols))));
  const ln = (prefix: string): void => {
    add(f32Tensor(`${prefix}.weight`, [c], () => 1));
    add(f32Tensor(`${prefix}.bias`, [c], () => 0));
  };
  add(f32Tensor('emb.weight', [shape.nVocab, c], uniform(1e-2)));
  for (let l = 0; l < shape.nLayer; l++) {
    const b = `blocks.${l}`;
    if (l === 0) ln(`${b}.ln0`);
    ln(`${b}.ln1`);
    ln(`${b}.ln2`);
    // time_decay raw in [−5, 3] across channels (decay −exp(·)), time_first around log(0.3).
    add(f32Tensor(`${b}.att.time_decay`, [c], (i) => -5 + (8 * i) / Math.max(1, c - 1)));
    add(f32Tensor(`${b}.att.time_first`, [c], () => Math.log(0.3) + (rng.next() - 0.5) * 0.5));
    for (const m of ['k', 'v', 'r']) add(f32Tensor(`${b}.att.time_mix_${m}`, [1, 1, c], () => rng.next()));
    for (const m of ['key', 'value', 'receptance', 'output']) matrix(`${b}.att.${m}.weight`, c, c);
    for (const m of ['k', 'r']) add(f32Tensor(`${b}.ffn.time_mix_${m}`, [1, 1, c], () => rng.next()));
    matrix(`${b}.ffn.key.weight`, f, c);
    matrix(`${b}.ffn.value.weight`, c, f);
    matrix(`${b}.ffn.receptance.weight`, c, c);
  }
  ln('ln_out');
  matrix('head.weight', shape.nVocab, c);
  return { format: 'memory', encoding: 'official', file: `random RWKV-4 ${shape.nLayer}×${c} (seed ${seed})`, tensors, declared: {} };
}
