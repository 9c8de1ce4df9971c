// AdamW (Loshchilov & Hutter): decoupled weight decay, applied to matrices only (Param.decay), with bias-
// corrected moments; and global gradient-norm clipping. PyTorch's torch.optim.AdamW semantics:
//   θ ← θ·(1 − lr·wd)   (matrices only)
//   m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//   θ ← θ − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)
// The moments have the parameters' precision, so a resumed f32 run continues bit for bit.
import type { Param } from './model.js';
import type { Vec } from './ops.js';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** RWKV-LM's defaults for β and ε; weight decay as nanoGPT's small models use. */
export const ADAMW_DEFAULTS: AdamWOptions = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 };

export class AdamW {
  readonly options: AdamWOptions;
  readonly params: readonly Param[];
  /** First and second moments, one per parameter, in the parameters' order. */
  readonly m: readonly Vec[];
  readonly v: readonly Vec[];
  /** Updates done so far. */
  t = 0;

  constructor(params: readonly Param[], options: AdamWOptions = ADAMW_DEFAULTS) {
    this.options = options;
    this.params = params;
    const make = (p: Param): Vec => (p.data instanceof Float64Array ? new Float64Array(p.data.length) : new Float32Array(p.data.length));
    this.m = params.map(make);
    this.v = params.map(make);
  }

  /** One update with learning rate `lr` from the parameters' current gradients. */
  step(lr: number): void {
    this.t++;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const c1 = 1 / (1 - beta1 ** this.t);
    const c2 = 1 / (1 - beta2 ** this.t);
    for (let j = 0; j < this.params.length; j++) {
      const p = this.params[j]!;
      const { data, grad } = p;
      const m = this.m[j]!;
      const v = this.v[j]!;
      const shrink = p.decay ? 1 - lr * weightDecay : 1;
      for (let i = 0; i < data.length; i++) {
        const g = grad[i];
        const mi = beta1 * m[i] + (1 - beta1) * g;
        const vi = beta2 * v[i] + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        data[i] = data[i] * shrink - (lr * (mi * c1)) / (Math.sqrt(vi * c2) + eps);
      }
    }
  }
}

/** The global L2 norm of all gradients. */
export function gradNorm(params: readonly Param[]): number {
  let s = 0;
  for (const p of params) {
    const g = p.grad;
    for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  }
  return Math.sqrt(s);
}

/**
 * Scales every gradient so that their global norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_).
 * Returns the norm before clipping.
 */
export function clipGradNorm(params: readonly Param[], maxNorm: number): number {
  const norm = gradNorm(params);
  const scale = maxNorm / (norm + 1e-6);
  if (scale < 1) {
    for (const p of params) {
      const g = p.grad;
      for (let i = 0; i < g.length; i++) g[i] *= scale;
    }
  }
  return norm;
}
