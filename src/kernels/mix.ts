// The interpolation behind every token-shift mix, the one definition: ReferenceBackend.lerp runs it and
// the trainer's mix (training/ops.ts) runs mixV4; models/blocks.ts `mixShift` picks lerp's operands on the
// backend the same way.

/** a + (b − a)·μ (Backend.lerp). */
export function lerp(a: number, b: number, mu: number): number {
  return a + (b - a) * mu;
}

/** v4/v5's token-shift mix x·μ + prev·(1 − μ), as lerp(prev, x, μ) (blocks.ts style 'v4'). */
export function mixV4(x: number, prev: number, mu: number): number {
  return lerp(prev, x, mu);
}
