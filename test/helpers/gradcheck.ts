// Gradient checks in float64: analytic gradients against central finite differences, as the relative
// error ‖g − g_fd‖ / ‖g_fd‖ over every element checked.
import { Rng } from '../../src/util/rng.js';

/** Uniform values in [lo, hi). */
export function randomF64(rng: Rng, n: number, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}

export interface CheckResult {
  /** ‖g − g_fd‖ / ‖g_fd‖ */
  relError: number;
  /** ‖g_fd‖ (a zero gradient would make the check vacuous) */
  norm: number;
  checked: number;
}

/**
 * Compares `analytic` (the gradient of `loss` with respect to `x`) with central differences of step
 * `h`, over every element of x, or over `sample` elements chosen by `rng`. `x` is perturbed in place
 * and restored.
 */
export function checkGradient(
  loss: () => number,
  x: Float64Array | Float32Array,
  analytic: ArrayLike<number>,
  options: { h?: number; sample?: number; rng?: Rng } = {},
): CheckResult {
  const h = options.h ?? 1e-5;
  let idx: number[] = Array.from({ length: x.length }, (_, i) => i);
  if (options.sample !== undefined && options.sample < x.length) {
    const rng = options.rng ?? new Rng(7);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = rng.nextU32() % (i + 1);
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    idx = idx.slice(0, options.sample);
  }
  let diff = 0;
  let norm = 0;
  for (const i of idx) {
    const x0 = x[i]!;
    x[i] = x0 + h;
    const lp = loss();
    x[i] = x0 - h;
    const lm = loss();
    x[i] = x0;
    const fd = (lp - lm) / (2 * h);
    diff += (analytic[i]! - fd) ** 2;
    norm += fd * fd;
  }
  return { relError: Math.sqrt(diff) / Math.sqrt(norm), norm: Math.sqrt(norm), checked: idx.length };
}

/** Σ a·b */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}
