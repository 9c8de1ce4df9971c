// The learning rate at each step: linear warm-up from lr/warmup to lr over `warmup` steps, then a cosine
// decay to `lrFinal` at the last step.

export interface Schedule {
  /** Peak learning rate. */
  lr: number;
  /** Learning rate at the last step. */
  lrFinal: number;
  /** Warm-up steps. */
  warmup: number;
  /** Total steps. */
  steps: number;
}

/** The learning rate of step `step` (0-based). */
export function learningRate(step: number, s: Schedule): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const span = Math.max(1, s.steps - 1 - s.warmup);
  const progress = Math.min(1, (step - s.warmup) / span);
  return s.lrFinal + 0.5 * (s.lr - s.lrFinal) * (1 + Math.cos(Math.PI * progress));
}
