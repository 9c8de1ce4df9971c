// Token-level generation: prompts are read in parallel mode (forwardSequence) in blocks aligned to the
// prefix cache's boundaries; new tokens are drawn one at a time and fed in RNN mode (forward).
import { AbortError, ArgumentError } from '../errors.js';
import { checkInteger } from '../util/options.js';
import type { RwkvModel } from '../models/model.js';
import type { State } from '../models/state.js';
import { RwkvState, type SamplerSnapshot } from './context.js';
import type { PrefixCache } from './prefix-cache.js';
import { Rng } from '../util/rng.js';
import {
  adjustLogits,
  applyCutsAndTemperature,
  argmax,
  checkTokenId,
  drawIndex,
  Penalties,
  validateSamplerOptions,
  type ResolvedSamplerOptions,
  type SamplerOptions,
} from './sampler.js';

/** Options of token-level generation. */
export interface GenerateOptions extends SamplerOptions {
  /** Tokens to generate after the prompt. Default 100. */
  maxTokens?: number;
  /** Seed of the sampler's generator; the same seed, model, prompt and options give the same tokens. */
  seed?: number;
  /** Generation ends, without emitting or feeding it, when one of these token ids is drawn. */
  stopTokens?: readonly number[];
  /**
   * Give each generated token its `alternatives`: the N most likely tokens (0..20; default 0, none) under
   * the same distribution as `logProb` (the raw logits' log-softmax).
   */
  topLogProbs?: number;
}

/** A token and its log-probability. */
export interface TokenLogProb {
  id: number;
  logProb: number;
}

export interface GeneratedToken {
  id: number;
  /** Natural log of the token's probability under the model (raw logits: before penalties, cuts and temperature). */
  logProb: number;
  /**
   * With `topLogProbs: N`: the N most likely tokens at this step, most likely first, by the raw
   * (unadjusted) logits' log-softmax — the distribution `logProb` is taken from, whatever the sampler
   * then did (penalties, bias, bans, cuts, temperature).
   */
  alternatives?: TokenLogProb[];
}

export interface ResolvedGenerateOptions {
  sampler: ResolvedSamplerOptions;
  maxTokens: number;
  seed: number;
  stopTokens: ReadonlySet<number>;
  topLogProbs: number;
}

/** Checks every option; returns them with defaults filled in (a random seed when none is given). */
export function validateGenerateOptions(options: GenerateOptions, nVocab?: number): ResolvedGenerateOptions {
  const sampler = validateSamplerOptions(options, nVocab);
  const maxTokens = options.maxTokens ?? 100;
  checkInteger('max tokens', maxTokens, 0);
  // The generator is seeded with 32 bits: a larger seed would silently share the text of seed mod 2^32.
  const seed = options.seed ?? (Math.random() * 2 ** 32) >>> 0;
  checkInteger('seed', seed, 0, 2 ** 32 - 1);
  for (const id of options.stopTokens ?? []) checkTokenId(id, 'stop token', nVocab);
  checkInteger('topLogProbs', options.topLogProbs, 0, 20);
  return { sampler, maxTokens, seed, stopTokens: new Set(options.stopTokens ?? []), topLogProbs: options.topLogProbs ?? 0 };
}

/**
 * Draws tokens: adjusts a copy of the logits (bias, bans, penalties), samples with the seeded generator,
 * and keeps the penalty counts. One per generation.
 */
export class TokenSampler {
  readonly options: ResolvedSamplerOptions;
  readonly penalties: Penalties;
  private readonly rng: Rng;
  private readonly weightOf: ((id: number) => number) | undefined;
  private adjusted: Float32Array | undefined;
  private probs: Float64Array | undefined;
  /** 1 for the ids whose logit the adjustments may change: biased and banned ones (fixed), penalised ones (per draw). */
  private changed: Uint8Array | undefined;

  /** `weightOf` gives what a generated token adds to its penalty count (default 1). */
  constructor(options: ResolvedSamplerOptions, seed: number, weightOf?: (id: number) => number) {
    this.options = options;
    this.penalties = new Penalties(options);
    this.rng = new Rng(seed);
    this.weightOf = weightOf;
  }

  /** Where this sampler stands (see SamplerSnapshot), for `seed`, the seed it was made with. */
  snapshot(seed: number): SamplerSnapshot {
    return { seed, rng: this.rng.snapshot(), counts: [...this.penalties.counts.entries()] };
  }

  /** Continues from a snapshot: the generator's position and the penalty counts. */
  restore(s: SamplerSnapshot): void {
    this.rng.restore(s.rng);
    this.penalties.clear();
    for (const [id, count] of s.counts) this.penalties.counts.set(id, count);
  }

  /** The next token id for `logits` (not modified). */
  draw(logits: Float32Array): number {
    return this.next(logits).id;
  }

  /**
   * The next token for `logits` (not modified), with its log-probability under them. With `mask`, only ids
   * whose entry is 1 may be drawn (a grammar's allowed tokens), before the cuts and the temperature.
   */
  next(logits: Float32Array, mask?: Uint8Array): GeneratedToken {
    const n = logits.length;
    if (this.adjusted?.length !== n) {
      this.adjusted = new Float32Array(n);
      this.probs = new Float64Array(n);
      this.changed = new Uint8Array(n);
      for (const [id] of this.options.logitBias) this.changed[id] = 1;
      for (const id of this.options.bannedTokens) this.changed[id] = 1;
    }
    const adjusted = this.adjusted;
    const probs = this.probs!;
    const changed = this.changed!;
    adjusted.set(logits);
    adjustLogits(adjusted, this.options, this.penalties);
    if (mask !== undefined) for (let i = 0; i < n; i++) if (mask[i] === 0) adjusted[i] = -Infinity;
    if (this.options.temperature === 0) {
      const id = argmax(adjusted);
      return { id, logProb: logSoftmaxAt(logits, id) };
    }
    // The raw logits' log-sum-exp (for logProb) comes from the same pass: an untouched logit is shared by
    // both softmaxes, so only the changed ones need an exp of their own (no second pass over the vocabulary).
    const penalised: number[] = [];
    if (this.penalties.active) {
      for (const id of this.penalties.counts.keys()) {
        if (changed[id] === 0) {
          changed[id] = 1;
          penalised.push(id);
        }
      }
    }
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (adjusted[i]! > max) max = adjusted[i]!;
    let total = 0;
    let rawSum = 0;
    let rawMax = -Infinity;
    for (let i = 0; i < n; i++) {
      const e = Math.exp(adjusted[i]! - max);
      probs[i] = e;
      total += e;
      if (changed[i] === 0 && (mask === undefined || mask[i] === 1)) rawSum += e;
      else {
        const d = logits[i]! - max;
        if (d > rawMax) rawMax = d;
        rawSum += Math.exp(d);
      }
    }
    for (const id of penalised) changed[id] = 0;
    for (let i = 0; i < n; i++) probs[i] = probs[i]! / total; // as softmax() does: sample() draws the same
    const safe = rawMax <= 700; // else exp overflowed: take the slow path below
    const sum = applyCutsAndTemperature(probs, this.options);
    const id = drawIndex(probs, sum, this.rng) ?? argmax(adjusted);
    const logProb = safe ? logits[id]! - max - Math.log(rawSum) : logSoftmaxAt(logits, id);
    return { id, logProb };
  }

  /** Records a token that was generated (for the penalties). */
  accept(id: number): void {
    this.penalties.update(id, this.weightOf?.(id) ?? 1);
  }
}

export interface PrefillOptions {
  /** Block length of prompt processing; blocks end at multiples of it (counted from a fresh state). Default 64. */
  block?: number;
  /** Reuse and record snapshots here (only for a fresh state). */
  cache?: PrefixCache;
  /** How blocks reach the model (e.g. a Batcher's forward); default model.forwardSequence. */
  forward?: ForwardFn;
  /** Stops reading between blocks. */
  signal?: AbortSignal;
}

export interface PrefillResult {
  /** Tokens the model read. */
  processed: number;
  /** Tokens taken from the cache instead. */
  reused: number;
}

/**
 * Feeds `ids` into `ctx` in parallel mode, in blocks whose ends fall on multiples of `block` from a fresh
 * state; leaves the logits after the last token in `ctx.logits`. A fresh `ctx` may resume from the cache.
 */
export async function prefill(model: RwkvModel, ctx: RwkvState, ids: readonly number[], options: PrefillOptions = {}): Promise<PrefillResult> {
  const block = options.block ?? 64;
  if (!Number.isInteger(block) || block < 1) throw new ArgumentError(`prompt block must be an integer ≥ 1, got ${block}`);
  for (const id of ids) checkTokenId(id, 'prompt token', model.config.nVocab);
  if (ids.length === 0) return { processed: 0, reused: 0 };
  const cache = ctx.isFresh ? options.cache : undefined;
  let pos = 0;
  if (cache !== undefined) {
    const hit = cache.lookup(ids, block);
    if (hit !== undefined) {
      ctx.state.data.set(hit.state);
      ctx.advance(hit.length, hit.logits);
      pos = hit.length;
    }
  }
  const reused = pos;
  const snapshots: { length: number; state: Float32Array; logits: Float32Array }[] = [];
  const run = options.forward ?? ((tokens: readonly number[], state: State) => model.forwardSequence(tokens, state));
  while (pos < ids.length) {
    if (options.signal?.aborted === true) throw new AbortError('aborted while reading the prompt');
    const end = Math.min(ids.length, pos + block - (ctx.tokenCount % block));
    const logits = await run(ids.slice(pos, end), ctx.state);
    ctx.advance(end - pos, logits);
    pos = end;
    if (cache !== undefined && (ctx.tokenCount % block === 0 || pos === ids.length)) {
      snapshots.push({ length: pos, state: ctx.state.data.slice(), logits });
    }
  }
  cache?.store(ids, snapshots);
  return { processed: ids.length - reused, reused };
}

/** Feeds `ids` into `state` one token at a time (RNN mode); returns the logits after the last one (undefined if none). */
export async function feed(model: RwkvModel, state: State, ids: readonly number[]): Promise<Float32Array | undefined> {
  let logits: Float32Array | undefined;
  for (const id of ids) logits = await model.forward(id, state);
  return logits;
}

/**
 * Yields generated tokens one by one. `logits` are the model's output for the last token already fed into
 * `state` (from `feed`); generation needs them to draw the first token. Every yielded token is fed into
 * `state` (a drawn stop token is neither yielded nor fed). Text-level features (stop strings, the
 * whitespace exemption of the penalties) belong to `Rwkv.generate`.
 */
export async function* generateTokens(
  model: RwkvModel,
  state: State,
  logits: Float32Array,
  options: GenerateOptions = {},
): AsyncGenerator<GeneratedToken> {
  const resolved = validateGenerateOptions(options, model.config.nVocab);
  const ctx = RwkvState.from(state, logits.slice());
  const sampler = new TokenSampler(resolved.sampler, resolved.seed);
  for (let n = 0; n < resolved.maxTokens; n++) {
    const step = drawStep(ctx, sampler, resolved.stopTokens, resolved.topLogProbs);
    if (step == null) return;
    try {
      yield step;
    } finally {
      // Also when the caller stops early: the state has seen every token it was given.
      await feedToken((tokens, st) => model.forwardSequence(tokens, st), ctx, step.id);
    }
  }
}

/**
 * Draws the next token from `ctx.logits`; undefined for a stop token, null when the constraint allows no
 * token at all. Does not feed it. With `top` > 0 the token carries its `alternatives` (topLogProbs).
 */
export function drawStep(ctx: RwkvState, sampler: TokenSampler, stopTokens: ReadonlySet<number>, top = 0, constraint?: TokenConstraint): GeneratedToken | undefined | null {
  const logits = ctx.logits;
  if (logits === undefined) throw new ArgumentError('the state has no logits: feed a prompt (at least one token) first');
  let step = sampler.next(logits);
  if (constraint !== undefined && !constraint.allows(step.id)) {
    // Refused: draw again among the allowed tokens only. (Drawing first without the mask and again with it
    // picks each allowed token with its masked probability; most draws need no mask at all.)
    const mask = new Uint8Array(logits.length);
    if (constraint.mask(mask) === 0) return null;
    step = sampler.next(logits, mask);
  }
  if (stopTokens.has(step.id)) return undefined;
  sampler.accept(step.id);
  constraint?.accept(step.id);
  if (top > 0) {
    step.alternatives = topLogProbs(logits, top);
    // The same number for the chosen token in both places (they may differ in the last bit otherwise).
    const own = step.alternatives.find((a) => a.id === step.id);
    if (own !== undefined) own.logProb = step.logProb;
  }
  return step;
}

/**
 * The `k` most likely ids under log-softmax(logits), most likely first: one pass keeping a sorted list of
 * k candidates (O(n_vocab) comparisons plus O(k) per insertion), and one for the log-sum-exp.
 */
export function topLogProbs(logits: ArrayLike<number>, k: number): TokenLogProb[] {
  const n = logits.length;
  k = Math.min(k, n);
  const ids: number[] = [];
  const values: number[] = [];
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[i]!;
    if (v > max) max = v;
    if (ids.length === k && !(v > values[k - 1]!)) continue;
    // Insert keeping descending order (ties: the lower id first); when full, the smallest drops out.
    let at = ids.length < k ? ids.length : k - 1;
    while (at > 0 && v > values[at - 1]!) {
      ids[at] = ids[at - 1]!;
      values[at] = values[at - 1]!;
      at--;
    }
    ids[at] = i;
    values[at] = v;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  return ids.map((id, j) => ({ id, logProb: values[j]! - lse }));
}

/** What may be generated next (a grammar: grammar/constraint.ts); drawStep asks it about every token. */
export interface TokenConstraint {
  /** Whether `id` may come next. */
  allows(id: number): boolean;
  /** Sets mask[id] = 1 for every id that may come next (0 for the others); returns how many. */
  mask(mask: Uint8Array): number;
  /** Records the token drawn. */
  accept(id: number): void;
  /** Nothing more may be generated. */
  readonly done: boolean;
}

/** Runs tokens through the model (directly, or through a Batcher) and returns the last position's logits. */
export type ForwardFn = (tokens: readonly number[], state: State) => Promise<Float32Array>;

/** Feeds one token in RNN mode and keeps its logits in `ctx`. */
export async function feedToken(forward: ForwardFn, ctx: RwkvState, id: number): Promise<void> {
  ctx.advance(1, await forward([id], ctx.state));
}

/** log p(id) under softmax(logits). */
export function logSoftmaxAt(logits: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[id]! - max - Math.log(sum);
}
