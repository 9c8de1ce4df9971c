// Picking the next token from logits, with ChatRWKV's semantics: softmax, then top-p (nucleus) cut on the
// untempered probabilities, then temperature applied as probs^(1/T), renormalise, draw.
import { ArgumentError } from '../errors.js';
import type { Rng } from './rng.js';

export interface SamplerOptions {
  /** 0 picks the most likely token; 1 leaves probabilities as they are. Default 1. */
  temperature?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches this; in (0, 1]. Default 1. */
  topP?: number;
}

export function validateSamplerOptions(o: SamplerOptions): Required<SamplerOptions> {
  const temperature = o.temperature ?? 1;
  const topP = o.topP ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new ArgumentError(`temperature must be a number ≥ 0, got ${temperature}`);
  }
  if (!Number.isFinite(topP) || topP <= 0 || topP > 1) throw new ArgumentError(`top-p must be in (0, 1], got ${topP}`);
  return { temperature, topP };
}

/** Probabilities (float64) of `logits` by a numerically safe softmax. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i]! - max);
    p[i] = e;
    sum += e;
  }
  for (let i = 0; i < p.length; i++) p[i] = p[i]! / sum;
  return p;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Zeroes every probability below the top-p cut-off (ties with the cut-off are kept, as ChatRWKV does). */
export function applyTopP(probs: Float64Array, topP: number): void {
  if (topP >= 1) return;
  const sorted = Float64Array.from(probs).sort().reverse();
  let cumulative = 0;
  let cutoff = sorted[0]!;
  for (let i = 0; i < sorted.length; i++) {
    cumulative += sorted[i]!;
    if (cumulative >= topP) {
      cutoff = sorted[i]!;
      break;
    }
  }
  for (let i = 0; i < probs.length; i++) if (probs[i]! < cutoff) probs[i] = 0;
}

/** Draws a token id from `logits`. */
export function sample(logits: ArrayLike<number>, options: Required<SamplerOptions>, rng: Rng): number {
  if (options.temperature === 0) return argmax(logits);
  const probs = softmax(logits);
  applyTopP(probs, options.topP);
  if (options.temperature !== 1) {
    const inv = 1 / options.temperature;
    for (let i = 0; i < probs.length; i++) probs[i] = probs[i]! ** inv;
  }
  let sum = 0;
  for (let i = 0; i < probs.length; i++) sum += probs[i]!;
  if (!(sum > 0)) return argmax(logits); // every probability underflowed at a tiny temperature
  let u = rng.next() * sum;
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i]!;
    if (u < 0) return i;
  }
  // Rounding left u ≥ 0: the last token with non-zero probability.
  for (let i = probs.length - 1; i >= 0; i--) if (probs[i]! > 0) return i;
  return argmax(logits);
}
