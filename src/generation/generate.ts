// Generation in RNN mode: feed the prompt, then sample, feed, sample …
import { ArgumentError } from '../errors.js';
import type { RwkvModel } from '../models/model.js';
import type { State } from '../models/state.js';
import { Rng } from './rng.js';
import { sample, validateSamplerOptions, type SamplerOptions } from './sampler.js';

export interface GenerateOptions extends SamplerOptions {
  /** Tokens to generate after the prompt. Default 100. */
  maxTokens?: number;
  /** Seed of the sampler's generator; the same seed, model, prompt and options give the same tokens. */
  seed?: number;
}

export interface GeneratedToken {
  id: number;
  /** Natural log of the token's probability under the model (before temperature and top-p). */
  logProb: number;
}

/** Checks every option; returns them with defaults filled in (a random seed when none is given). */
export function validateGenerateOptions(options: GenerateOptions): {
  sampler: Required<SamplerOptions>;
  maxTokens: number;
  seed: number;
} {
  const sampler = validateSamplerOptions(options);
  const maxTokens = options.maxTokens ?? 100;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new ArgumentError(`max tokens must be an integer ≥ 0, got ${maxTokens}`);
  const seed = options.seed ?? (Math.random() * 2 ** 32) >>> 0;
  if (!Number.isInteger(seed)) throw new ArgumentError(`seed must be an integer, got ${seed}`);
  return { sampler, maxTokens, seed };
}

/** Feeds `ids` into `state` one token at a time; returns the logits after the last one (undefined if none). */
export function feed(model: RwkvModel, state: State, ids: readonly number[]): Float32Array | undefined {
  let logits: Float32Array | undefined;
  for (const id of ids) logits = model.forward(id, state);
  return logits;
}

/**
 * Yields generated tokens one by one. `logits` are the model's output for the last token already fed into
 * `state` (from `feed`); generation needs them to draw the first token.
 */
export function* generateTokens(
  model: RwkvModel,
  state: State,
  logits: Float32Array,
  options: GenerateOptions = {},
): Generator<GeneratedToken> {
  const { sampler, maxTokens, seed } = validateGenerateOptions(options);
  const rng = new Rng(seed);
  let current = logits.slice();
  for (let n = 0; n < maxTokens; n++) {
    const id = sample(current, sampler, rng);
    const logProb = logSoftmaxAt(current, id);
    yield { id, logProb };
    if (n + 1 < maxTokens) current = model.forward(id, state).slice();
    else model.forward(id, state); // keep the state in step with the text: it has seen every token
  }
}

/** log p(id) under softmax(logits). */
export function logSoftmaxAt(logits: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[id]! - max - Math.log(sum);
}
