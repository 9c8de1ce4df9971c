// LayerNorm and GroupNorm, the one definition: ReferenceBackend.norm and the trainer's LayerNorm forward
// (training/ops.ts) run this code. Means and variances are taken in float64 (JS numbers); the variance is
// the biased one, as torch.nn.functional.layer_norm / group_norm use.

/** Storage of the reference kernels: f32 (inference, training) or f64 (gradient checks). */
export type Vec = Float32Array | Float64Array;

/**
 * Each of `rows` rows of C = weight.length values, per group of C/groups values (groups = 1: LayerNorm):
 *   out = (x − mean)·rstd·weight + bias,  rstd = 1/sqrt(var + eps).
 * x, out: rows × C (`out` may be `x`); weight, bias: C. With `mean` and `rstd` (rows·groups each), keeps
 * each group's statistics there (the trainer's backward needs them).
 */
export function normRows(
  x: Vec,
  weight: Vec,
  bias: Vec,
  out: Vec,
  rows: number,
  groups: number,
  eps: number,
  mean?: Vec,
  rstd?: Vec,
): void {
  const c = weight.length;
  const size = c / groups;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const w = g * size;
      const o = r * c + w;
      let m = 0;
      for (let i = 0; i < size; i++) m += x[o + i]!;
      m /= size;
      let v = 0;
      for (let i = 0; i < size; i++) {
        const d = x[o + i]! - m;
        v += d * d;
      }
      const s = 1 / Math.sqrt(v / size + eps);
      for (let i = 0; i < size; i++) out[o + i] = (x[o + i]! - m) * s * weight[w + i]! + bias[w + i]!;
      if (mean !== undefined) mean[r * groups + g] = m;
      if (rstd !== undefined) rstd[r * groups + g] = s;
    }
  }
}

/** `normRows` of one row (x, out: C). */
export function groupNorm(x: Vec, weight: Vec, bias: Vec, out: Vec, groups: number, eps: number): void {
  normRows(x, weight, bias, out, 1, groups, eps);
}
