// Models with random weights in memory, in the official tensor layout: for benchmarks at real model shapes
// (RWKV-4 169M, RWKV-7 0.1B) without downloading a checkpoint, and for tests that need a given shape.
// Matrices can be stored as f16/bf16 or ggml blocks, as a converted or quantized checkpoint would be.
import { ArgumentError } from '../errors.js';
import { defaultAllocator, type TensorAllocator, type TensorSource } from '../formats/tensor-source.js';
import { Rng } from '../util/rng.js';
import { encodeHalf, isQuantType, quantizeInto } from '../kernels/quantize.js';
import { byteSize, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

export interface RandomShape {
  version: '4' | '7';
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** Default 4·nEmbd. */
  ffnSize?: number;
  /** v7 only: head size (default 64). */
  headSize?: number;
}

/** RWKV-4 169M (the Pile model's shape): 12 layers, 768 wide, vocabulary 50277. */
export const RWKV4_169M: RandomShape = { version: '4', nLayer: 12, nEmbd: 768, nVocab: 50277 };
/** RWKV-7 0.1B (World): 12 layers, 768 wide, head size 64, vocabulary 65536. */
export const RWKV7_0B1: RandomShape = { version: '7', nLayer: 12, nEmbd: 768, nVocab: 65536, headSize: 64 };

export interface RandomOptions {
  seed?: number;
  /**
   * How the big matrices are stored. f32/f16/bf16 apply to every matrix (embedding and head included,
   * as in official bf16 checkpoints); block types apply to the time-mix and channel-mix matrices only,
   * with the embedding and head kept f32, as rwkv.cpp's quantizer does.
   */
  dtype?: DType;
  /** Where tensor bytes go (e.g. a WasmKernels's memory). */
  allocate?: TensorAllocator;
}

/** A random model of `shape` with official names and raw parameters (format 'memory'). */
export function randomSource(shape: RandomShape, options: RandomOptions = {}): TensorSource {
  const rng = new Rng(options.seed ?? 1);
  const dtype = options.dtype ?? 'f32';
  const allocate = options.allocate ?? defaultAllocator;
  const c = shape.nEmbd;
  const f = shape.ffnSize ?? 4 * c;
  const tensors = new Map<string, Tensor>();

  const store = (name: string, dims: number[], values: Float32Array, as: DType): void => {
    const bytes = byteSize(as, values.length);
    if (bytes === undefined) throw new ArgumentError(`${name}: ${values.length} values do not fill ${as} blocks`);
    const data = allocate(bytes);
    if (as === 'f32') new Float32Array(data.buffer, data.byteOffset, values.length).set(values);
    else if (as === 'f16' || as === 'bf16') encodeHalf(as, values, data);
    else if (isQuantType(as)) quantizeInto(as, values, data);
    tensors.set(name, { name, dtype: as, shape: dims, data });
  };
  const values = (n: number, fill: (i: number) => number): Float32Array => {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = fill(i);
    return v;
  };
  const uniform = (scale: number) => () => (rng.next() * 2 - 1) * scale;
  /** Uniform ±scale from a xorshift32 seeded by the model's generator: fast enough for 10⁸ weights. */
  const fastUniform = (n: number, scale: number): Float32Array => {
    const v = new Float32Array(n);
    let x = rng.nextU32() | 1;
    const k = (2 * scale) / 4294967296;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      v[i] = (x >>> 0) * k - scale;
    }
    return v;
  };
  const vector = (name: string, dims: number[], fill: (i: number) => number): void =>
    store(name, dims, values(dims.reduce((a, b) => a * b, 1), fill), 'f32');
  /** A [rows, cols] matrix; `big` ones take the requested dtype. */
  const matrix = (name: string, rows: number, cols: number, kind: 'big' | 'edge' | 'small'): void => {
    const as =
      kind === 'small' ? 'f32' : kind === 'edge' ? (isQuantType(dtype) ? 'f32' : dtype) : dtype;
    store(name, [rows, cols], fastUniform(rows * cols, 1 / Math.sqrt(cols)), as);
  };
  const ln = (prefix: string): void => {
    vector(`${prefix}.weight`, [c], () => 1);
    vector(`${prefix}.bias`, [c], () => 0);
  };

  store('emb.weight', [shape.nVocab, c], fastUniform(shape.nVocab * c, 1e-2), isQuantType(dtype) ? 'f32' : dtype);
  for (let l = 0; l < shape.nLayer; l++) {
    const b = `blocks.${l}`;
    if (l === 0) ln(`${b}.ln0`);
    ln(`${b}.ln1`);
    ln(`${b}.ln2`);
    if (shape.version === '4') {
      // time_decay raw in [−5, 3] across channels (decay −exp(·)), time_first around log(0.3).
      vector(`${b}.att.time_decay`, [c], (i) => -5 + (8 * i) / Math.max(1, c - 1));
      vector(`${b}.att.time_first`, [c], () => Math.log(0.3) + (rng.next() - 0.5) * 0.5);
      for (const m of ['k', 'v', 'r']) vector(`${b}.att.time_mix_${m}`, [1, 1, c], () => rng.next());
      for (const m of ['key', 'value', 'receptance', 'output']) matrix(`${b}.att.${m}.weight`, c, c, 'big');
      for (const m of ['k', 'r']) vector(`${b}.ffn.time_mix_${m}`, [1, 1, c], () => rng.next());
      matrix(`${b}.ffn.receptance.weight`, c, c, 'big');
    } else {
      const n = shape.headSize ?? 64;
      if (c % n !== 0) throw new ArgumentError(`n_embd ${c} is not a multiple of the head size ${n}`);
      for (const m of ['r', 'w', 'k', 'v', 'a', 'g']) vector(`${b}.att.x_${m}`, [1, 1, c], () => rng.next());
      vector(`${b}.att.w0`, [1, 1, c], () => -6 + 5 * rng.next());
      vector(`${b}.att.a0`, [1, 1, c], () => 0);
      vector(`${b}.att.k_k`, [1, 1, c], () => 0.85);
      vector(`${b}.att.k_a`, [1, 1, c], () => 1);
      vector(`${b}.att.r_k`, [c / n, n], uniform(0.1));
      // LoRA ranks of the 0.1B model: decay 64, in-context rate 64, value residual 32, gate 128.
      const lora = (name: string, rank: number): void => {
        matrix(`${b}.att.${name}1`, c, rank, 'small');
        matrix(`${b}.att.${name}2`, rank, c, 'small');
      };
      lora('w', 64);
      lora('a', 64);
      if (l > 0) {
        vector(`${b}.att.v0`, [1, 1, c], () => 1);
        lora('v', 32);
      }
      lora('g', 128);
      for (const m of ['receptance', 'key', 'value', 'output']) matrix(`${b}.att.${m}.weight`, c, c, 'big');
      vector(`${b}.att.ln_x.weight`, [c], () => 1);
      vector(`${b}.att.ln_x.bias`, [c], () => 0);
      vector(`${b}.ffn.x_k`, [1, 1, c], () => rng.next());
    }
    matrix(`${b}.ffn.key.weight`, f, c, 'big');
    matrix(`${b}.ffn.value.weight`, c, f, 'big');
  }
  ln('ln_out');
  matrix('head.weight', shape.nVocab, c, 'edge');
  return {
    format: 'memory',
    encoding: 'official',
    file: `random RWKV-${shape.version} ${shape.nLayer}×${c} ${dtype} (seed ${options.seed ?? 1})`,
    tensors,
    declared: {},
  };
}
