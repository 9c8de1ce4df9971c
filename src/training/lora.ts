// LoRA training on any of the trainer's graphs, without touching them. The adapted matrices hold
// W = W₀ + s·B·A (s = α/r) during the forward; the graph's backward then leaves ∂L/∂W in their gradients,
// and the adapters' gradients follow exactly by the chain rule:
//   ∂L/∂A = s·Bᵀ·∂L/∂W  [r, in]        ∂L/∂B = s·∂L/∂W·Aᵀ  [out, r]
// Only A and B are optimized (the frozen W₀ is kept as a copy, so W never drifts by rounding). The graph
// still computes the full weight gradients of every matrix — LoRA here saves the optimizer's memory
// (2 moments per trained value) and the checkpoint's size, not the backward's arithmetic.
//
// Init as PEFT: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0, so training starts at W₀.
import { ArgumentError } from '../errors.js';
import { isLoraTarget, LORA_META_KEY, loraTensorNames, peftAdapterConfig, type LoraMetadata, type LoraTargetGroup } from '../formats/lora.js';
import { writeSafetensors } from '../formats/safetensors-writer.js';
import type { OutTensor } from '../formats/writer.js';
import { Rng } from '../util/rng.js';
import type { TrainModel } from './architecture.js';
import type { Gemm } from './gemm.js';
import type { Param } from './model.js';
import type { Vec } from './ops.js';

export const LORA_FILE = 'lora.safetensors';

export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: LoraTargetGroup[];
}

interface Adapted {
  /** The graph's matrix W [out, in]. */
  weight: Param;
  /** W₀, frozen. */
  frozen: Vec;
  a: Param;
  b: Param;
  /** Aᵀ [in, r], refreshed before each product. */
  aT: Vec;
  rows: number;
  cols: number;
}

function vec(like: Gemm, n: number): Vec {
  return like.precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
}

export class LoraAdapter {
  readonly config: LoraConfig;
  /** α / r. */
  readonly scale: number;
  /** The trained tensors: for each adapted matrix its lora_A then its lora_B (PEFT names). */
  readonly params: readonly Param[];
  private readonly adapted: Adapted[] = [];
  private readonly gemm: Gemm;
  private delta: Vec = new Float64Array(0);

  constructor(model: TrainModel, gemm: Gemm, config: LoraConfig, seed: number) {
    if (!Number.isInteger(config.rank) || config.rank < 1) throw new ArgumentError(`--lora-rank must be an integer ≥ 1, got ${config.rank}`);
    if (!(Number.isFinite(config.alpha) && config.alpha > 0)) throw new ArgumentError(`--lora-alpha must be a number > 0, got ${config.alpha}`);
    this.config = config;
    this.scale = config.alpha / config.rank;
    this.gemm = gemm;
    const rng = new Rng((seed ^ 0x10ca) >>> 0);
    const params: Param[] = [];
    for (const weight of model.params) {
      if (!isLoraTarget(weight.name, weight.shape, config.targets)) continue;
      const [rows, cols] = weight.shape as [number, number];
      const r = config.rank;
      if (r > Math.min(rows, cols)) throw new ArgumentError(`--lora-rank ${r} is more than the smaller side of ${weight.name} [${rows}, ${cols}]`);
      const names = loraTensorNames(weight.name);
      const a: Param = { name: names.a, shape: [r, cols], data: gemm.allocate(r * cols), grad: vec(gemm, r * cols), decay: true };
      const b: Param = { name: names.b, shape: [rows, r], data: gemm.allocate(rows * r), grad: vec(gemm, rows * r), decay: true };
      const bound = 1 / Math.sqrt(cols);
      for (let i = 0; i < a.data.length; i++) a.data[i] = (2 * rng.next() - 1) * bound;
      const frozen = vec(gemm, rows * cols);
      frozen.set(weight.data);
      this.adapted.push({ weight, frozen, a, b, aT: vec(gemm, cols * r), rows, cols });
      params.push(a, b);
    }
    if (params.length === 0) throw new ArgumentError(`--lora-targets ${config.targets.join(',')}: the model has no matrix to adapt there`);
    this.params = params;
  }

  /** Trained values. */
  get size(): number {
    return this.params.reduce((s, p) => s + p.data.length, 0);
  }

  /** The adapted matrices' names. */
  get targets(): string[] {
    return this.adapted.map((x) => x.weight.name);
  }

  /** W ← W₀ + s·B·A in every adapted matrix (before a forward, after each update). */
  apply(): void {
    const r = this.config.rank;
    for (const x of this.adapted) {
      const n = x.rows * x.cols;
      if (this.delta.length < n || this.delta.constructor !== x.frozen.constructor) this.delta = vec(this.gemm, n);
      const delta = this.delta.subarray(0, n);
      transposeInto(x.aT, x.a.data, r, x.cols);
      this.gemm.forward(delta, x.b.data, x.aT, x.rows, x.cols, r); // B [out, r] · (Aᵀ)ᵀ → [out, in]
      const w = x.weight.data;
      const w0 = x.frozen;
      const s = this.scale;
      for (let i = 0; i < n; i++) w[i] = w0[i] + s * delta[i];
    }
  }

  /** The adapters' gradients from the adapted matrices' (after the graph's backward). */
  gradients(): void {
    const r = this.config.rank;
    const s = this.scale;
    for (const x of this.adapted) {
      const dW = x.weight.grad;
      // ∂L/∂B = s·dW·Aᵀ: dW [out, in] times A [r, in]ᵀ.
      this.gemm.forward(x.b.grad, dW, x.a.data, x.rows, r, x.cols);
      // ∂L/∂A = s·Bᵀ·dW: dA += Bᵀ·dW, with B as dY [out, r] and dW as X [out, in].
      x.a.grad.fill(0);
      this.gemm.backwardWeight(x.a.grad, x.b.data, dW, x.rows, r, x.cols);
      for (const g of [x.a.grad, x.b.grad]) for (let i = 0; i < g.length; i++) g[i] *= s;
    }
  }

  /** Writes the adapters as a PEFT-named safetensors file (atomically). */
  save(file: string, meta: Omit<LoraMetadata, 'rank' | 'alpha' | 'targets'>, extra: Record<string, string> = {}): void {
    const full: LoraMetadata = { rank: this.config.rank, alpha: this.config.alpha, targets: this.config.targets, ...meta };
    const tensors: OutTensor[] = this.params.map((p) => {
      const values = p.data instanceof Float32Array ? p.data : Float32Array.from(p.data);
      return {
        name: p.name,
        dtype: 'f32',
        shape: p.shape,
        byteLength: values.byteLength,
        bytes: () => new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      };
    });
    writeSafetensors(file, tensors, { ...extra, [LORA_META_KEY]: JSON.stringify(full), adapter_config: peftAdapterConfig(full, this.targets), format: 'pt' });
  }
}

function transposeInto(out: Vec, a: Vec, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
}
