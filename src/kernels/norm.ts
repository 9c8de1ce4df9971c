// Normalisations, reference kernels. Means and variances are taken in float64 (JS numbers) over f32
// inputs; the variance is the biased one, as torch.nn.functional.layer_norm / group_norm use.

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
