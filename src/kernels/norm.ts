// Normalisations, reference kernels. Means and variances are taken in float64 (JS numbers) over f32
// inputs; the variance is the biased one, as torch.nn.functional.layer_norm / group_norm use.

/** Fast normalisation kernels (the WebAssembly backend). */
export interface NormKernels {
  /** groupNorm of each of `rows` rows of weight.length values; `out` may be `x`. */
  groupNorm(x: Float32Array, weight: Float32Array, bias: Float32Array, out: Float32Array, rows: number, groups: number, eps: number): void;
}

/** `k`'s normalisation kernels, when it has them. */
export function normKernelsOf(k: Partial<NormKernels> | undefined): NormKernels | undefined {
  return k?.groupNorm !== undefined ? (k as NormKernels) : undefined;
}

/**
 * `groupNorm` of each of `rows` consecutive rows of weight.length values of x into out (groups = 1:
 * LayerNorm), on the fast kernels when given. `out` may be `x`.
 */
export function normRows(
  fast: NormKernels | undefined,
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  out: Float32Array,
  rows: number,
  groups: number,
  eps: number,
): void {
  if (fast !== undefined) {
    fast.groupNorm(x, weight, bias, out, rows, groups, eps);
    return;
  }
  const c = weight.length;
  for (let r = 0; r < rows; r++) groupNorm(x.subarray(r * c, (r + 1) * c), weight, bias, out.subarray(r * c, (r + 1) * c), groups, eps);
}

/** out = (x − mean) / sqrt(var + eps) · weight + bias, over all n values. `out` may be `x`. */
export function layerNorm(
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  out: Float32Array,
  eps: number,
): void {
  groupNorm(x, weight, bias, out, 1, eps);
}

/** LayerNorm applied separately to each of `groups` equal slices of x (RWKV v5+'s ln_x). `out` may be `x`. */
export function groupNorm(
  x: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  out: Float32Array,
  groups: number,
  eps: number,
): void {
  const size = x.length / groups;
  for (let g = 0; g < groups; g++) {
    const o = g * size;
    let mean = 0;
    for (let i = 0; i < size; i++) mean += x[o + i]!;
    mean /= size;
    let variance = 0;
    for (let i = 0; i < size; i++) {
      const d = x[o + i]! - mean;
      variance += d * d;
    }
    variance /= size;
    const inv = 1 / Math.sqrt(variance + eps);
    for (let i = 0; i < size; i++) out[o + i] = (x[o + i]! - mean) * inv * weight[o + i]! + bias[o + i]!;
  }
}
