// Scalar activations used by every RWKV version.

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** x·σ(x) (SiLU), v5.2/v6's gate. */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** relu(x)², the channel-mix key activation. */
export function reluSquared(x: number): number {
  return x > 0 ? x * x : 0;
}
