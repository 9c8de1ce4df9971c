// Picking the next token from logits, with ChatRWKV's semantics (rwkv/utils.py PIPELINE.sample_logits and
// PIPELINE.generate):
//   1. logits: + logit bias, banned tokens → −∞, then the penalties: logit −= presence + count · frequency
//      for every token generated so far (counts decay by penaltyDecay each step — see Penalties);
//   2. softmax (float64);
//   3. cuts on these *untempered* probabilities: top-p (keep every token whose probability is at least that
//      of the token where the sorted cumulative sum first reaches top-p — ties with it are kept), top-k (the
//      k most likely), min-p (not in ChatRWKV: drop tokens below min-p × the largest probability);
//   4. temperature as probs^(1/T), renormalise, draw with the seeded generator.
// Temperature 0 takes the most likely adjusted logit (ChatRWKV turns it into top-p 0, which keeps the same
// token barring exact ties).
import { ArgumentError } from '../errors.js';
import { describeValue } from '../util/options.js';
import type { Rng } from '../util/rng.js';

export interface SamplerOptions {
  /** 0 picks the most likely token; 1 leaves probabilities as they are. Default 1. */
  temperature?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches this; in (0, 1]. Default 1 (off). */
  topP?: number;
  /** Keep only the k most likely tokens; an integer ≥ 0, 0 = off. Default 0. */
  topK?: number;
  /** Drop tokens whose probability is below this fraction of the most likely one's; in [0, 1). Default 0 (off). */
  minP?: number;
  /** Subtracted once from the logit of every token already generated. Default 0. */
  presencePenalty?: number;
  /** Subtracted from a generated token's logit for each (decayed) time it occurred. Default 0. */
  frequencyPenalty?: number;
  /** After each generated token, every occurrence count is multiplied by this; in (0, 1]. Default 0.996 (ChatRWKV's). */
  penaltyDecay?: number;
  /**
   * ChatRWKV: a token whose text is a run of spaces, tabs or digits (its decoded text is a substring of
   * " \t0123456789") adds 0 to its count instead of 1, so the frequency penalty spares it; it still gets
   * the presence penalty once generated. Needs a tokenizer (ignored by the token-level API). Default true.
   */
  exemptWhitespaceAndDigits?: boolean;
  /** Added to the logits of these token ids before anything else: a map or a record id → bias. */
  logitBias?: ReadonlyMap<number, number> | Readonly<Record<number, number>>;
  /** Token ids that are never generated. */
  bannedTokens?: readonly number[];
}

/** Sampler options checked and with defaults filled in. */
export interface ResolvedSamplerOptions {
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly minP: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  readonly penaltyDecay: number;
  readonly exemptWhitespaceAndDigits: boolean;
  /** [id, bias] pairs. */
  readonly logitBias: readonly (readonly [number, number])[];
  readonly bannedTokens: readonly number[];
}

/** Checks a token id given by the caller against the vocabulary (when known). */
export function checkTokenId(id: number, what: string, nVocab: number | undefined): void {
  if (!Number.isInteger(id) || id < 0 || (nVocab !== undefined && id >= nVocab)) {
    const range = nVocab !== undefined ? ` (the vocabulary is 0..${nVocab - 1})` : '';
    throw new ArgumentError(`${what}: ${describeValue(id)} is not a token id${range}`);
  }
}

/** Checks every sampler option; `nVocab` (when given) bounds the token ids of logitBias and bannedTokens. */
export function validateSamplerOptions(o: SamplerOptions, nVocab?: number): ResolvedSamplerOptions {
  const temperature = o.temperature ?? 1;
  const topP = o.topP ?? 1;
  const topK = o.topK ?? 0;
  const minP = o.minP ?? 0;
  const presencePenalty = o.presencePenalty ?? 0;
  const frequencyPenalty = o.frequencyPenalty ?? 0;
  const penaltyDecay = o.penaltyDecay ?? 0.996;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new ArgumentError(`temperature must be a number ≥ 0, got ${describeValue(temperature)}`);
  }
  if (typeof topP !== 'number' || !Number.isFinite(topP) || topP <= 0 || topP > 1) {
    throw new ArgumentError(`top-p must be in (0, 1], got ${describeValue(topP)}`);
  }
  if (!Number.isInteger(topK) || topK < 0) throw new ArgumentError(`top-k must be an integer ≥ 0 (0 = off), got ${describeValue(topK)}`);
  if (typeof minP !== 'number' || !Number.isFinite(minP) || minP < 0 || minP >= 1) {
    throw new ArgumentError(`min-p must be in [0, 1), got ${describeValue(minP)}`);
  }
  for (const [name, v] of [
    ['presence penalty', presencePenalty],
    ['frequency penalty', frequencyPenalty],
  ] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(`${name} must be a finite number, got ${describeValue(v)}`);
  }
  if (typeof penaltyDecay !== 'number' || !Number.isFinite(penaltyDecay) || penaltyDecay <= 0 || penaltyDecay > 1) {
    throw new ArgumentError(`penalty decay must be in (0, 1], got ${describeValue(penaltyDecay)}`);
  }
  const entries: [number, number][] =
    o.logitBias === undefined
      ? []
      : o.logitBias instanceof Map
        ? [...o.logitBias.entries()]
        : Object.entries(o.logitBias).map(([k, v]) => [Number(k), v]);
  for (const [id, bias] of entries) {
    checkTokenId(id, 'logit bias', nVocab);
    if (typeof bias !== 'number' || !Number.isFinite(bias)) {
      throw new ArgumentError(`logit bias of token ${id} must be a finite number (ban a token to exclude it), got ${describeValue(bias)}`);
    }
  }
  const banned = [...new Set(o.bannedTokens ?? [])];
  for (const id of banned) checkTokenId(id, 'banned token', nVocab);
  if (nVocab !== undefined && banned.length >= nVocab) throw new ArgumentError('every token of the vocabulary is banned');
  return {
    temperature,
    topP,
    topK,
    minP,
    presencePenalty,
    frequencyPenalty,
    penaltyDecay,
    exemptWhitespaceAndDigits: o.exemptWhitespaceAndDigits ?? true,
    logitBias: entries,
    bannedTokens: banned,
  };
}

/**
 * Occurrence counts of generated tokens, as ChatRWKV keeps them: after each generated token every count is
 * multiplied by the decay, then the token's count grows by its weight (1, or 0 for an exempt token). A
 * token with a count — even 0 — gets `presence + count · frequency` subtracted from its logit.
 */
export class Penalties {
  readonly counts = new Map<number, number>();
  private readonly presence: number;
  private readonly frequency: number;
  private readonly decay: number;

  constructor(options: Pick<ResolvedSamplerOptions, 'presencePenalty' | 'frequencyPenalty' | 'penaltyDecay'>) {
    this.presence = options.presencePenalty;
    this.frequency = options.frequencyPenalty;
    this.decay = options.penaltyDecay;
  }

  /** True when applying them can change a logit. */
  get active(): boolean {
    return this.presence !== 0 || this.frequency !== 0;
  }

  /** logits[id] −= presence + count · frequency for every counted token (in place). */
  apply(logits: Float32Array | Float64Array): void {
    if (!this.active) return;
    for (const [id, count] of this.counts) logits[id] = logits[id]! - (this.presence + count * this.frequency);
  }

  /** Records a generated token: decay every count, then add `weight` to this token's. */
  update(id: number, weight = 1): void {
    if (this.decay !== 1) for (const [k, v] of this.counts) this.counts.set(k, v * this.decay);
    this.counts.set(id, (this.counts.get(id) ?? 0) + weight);
  }

  clear(): void {
    this.counts.clear();
  }
}

/** Step 1: logit bias, bans, penalties, in place. */
export function adjustLogits(logits: Float32Array | Float64Array, options: ResolvedSamplerOptions, penalties?: Penalties): void {
  for (const [id, bias] of options.logitBias) logits[id] = logits[id]! + bias;
  for (const id of options.bannedTokens) logits[id] = -Infinity;
  penalties?.apply(logits);
}

/** Probabilities (float64) of `logits` by a numerically safe softmax; −∞ logits get probability 0. */
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

/**
 * Probabilities grouped by their float64 exponent (one bucket per power of two): how many and their sum.
 * Walking the buckets from the top finds the bucket that holds a top-p or top-k cut-off in one pass over
 * the vocabulary; only that bucket is then searched. (Sorting 65536 probabilities each token would cost
 * more than a small model's forward pass.)
 */
class ExponentHistogram {
  readonly counts = new Uint32Array(2048);
  readonly sums = new Float64Array(2048);
  private readonly probs: Float64Array;
  private readonly hi: Uint32Array;

  constructor(probs: Float64Array) {
    this.probs = probs;
    this.hi = new Uint32Array(probs.buffer, probs.byteOffset, probs.length * 2);
    for (let i = 0; i < probs.length; i++) {
      const e = this.exponent(i);
      this.counts[e]++;
      this.sums[e] = this.sums[e]! + probs[i]!;
    }
  }

  /** The biased exponent of probs[i] (probabilities are ≥ 0: no sign bit; 0 and subnormals → 0). */
  private exponent(i: number): number {
    return (this.hi[2 * i + 1]! >>> 20) & 0x7ff;
  }

  /** The values of bucket `e`, in a new array. */
  bucket(e: number): Float64Array {
    const out = new Float64Array(this.counts[e]!);
    let n = 0;
    for (let i = 0; i < this.probs.length; i++) if (this.exponent(i) === e) out[n++] = this.probs[i]!;
    return out;
  }

  /**
   * Top-p cut-off: the probability at which the cumulative sum of the sorted probabilities first reaches
   * `topP` (0 when it never does, by rounding: keep everything).
   */
  topPCutoff(topP: number): number {
    let need = topP;
    for (let e = 2047; e > 0; e--) {
      const sum = this.sums[e]!;
      if (sum === 0) continue;
      if (sum >= need) return topPWithin(this.bucket(e), need) ?? minPositive(this.bucket(e));
      need -= sum;
    }
    return 0;
  }

  /** The k-th largest probability (k ≥ 1, k < n). */
  kthLargest(k: number): number {
    let left = k;
    for (let e = 2047; e >= 0; e--) {
      const count = this.counts[e]!;
      if (count >= left) return kthLargest(this.bucket(e), left);
      left -= count;
    }
    return 0;
  }
}

/** Within sorted-descending order of `a` (reordered in place): the value at which the running sum reaches `need`. */
function topPWithin(a: Float64Array, need: number): number | undefined {
  let lo = 0;
  let hi = a.length;
  while (hi - lo > 32) {
    const x = a[lo]!;
    const y = a[(lo + hi) >>> 1]!;
    const z = a[hi - 1]!;
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z)); // median of three
    // Three-way partition, larger values first: [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < pivot.
    let gt = lo;
    let i = lo;
    let lt = hi;
    while (i < lt) {
      const v = a[i]!;
      if (v > pivot) {
        a[i] = a[gt]!;
        a[gt++] = v;
        i++;
      } else if (v < pivot) {
        a[i] = a[--lt]!;
        a[lt] = v;
      } else {
        i++;
      }
    }
    let above = 0;
    for (let j = lo; j < gt; j++) above += a[j]!;
    if (above >= need) {
      hi = gt;
      continue;
    }
    need -= above;
    for (let j = gt; j < lt; j++) {
      need -= pivot;
      if (need <= 0) return pivot;
    }
    lo = lt;
  }
  const rest = a.subarray(lo, hi).sort().reverse();
  for (const v of rest) {
    need -= v;
    if (need <= 0) return v;
  }
  return undefined;
}

function minPositive(a: Float64Array): number {
  let m = Infinity;
  for (const v of a) if (v > 0 && v < m) m = v;
  return m === Infinity ? 0 : m;
}

/** The k-th largest value (1 ≤ k ≤ a.length), by quickselect (reorders `a`): O(n) on average. */
function kthLargest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! > pivot) i++;
      while (a[j]! < pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target]!;
  }
  return a[target]!;
}

/**
 * Step 3, in place: zeroes what top-p, top-k and min-p cut. Each cut is a threshold on these probabilities,
 * so they are found first and applied in one pass; top-k keeps, among probabilities equal to its
 * threshold, the lowest ids. Returns the sum of what is kept.
 */
export function applyCuts(probs: Float64Array, cuts: Pick<ResolvedSamplerOptions, 'topP' | 'topK' | 'minP'>): number {
  const useP = cuts.topP < 1;
  const useK = cuts.topK > 0 && cuts.topK < probs.length;
  let floor = 0;
  let kth = -1;
  let tiesLeft = 0;
  if (useP || useK) {
    const h = new ExponentHistogram(probs);
    if (useP) floor = h.topPCutoff(cuts.topP);
    if (useK) {
      kth = h.kthLargest(cuts.topK);
      // Top-p keeps a top set: when it keeps more than k, top-k's threshold is the k-th largest of all.
      if (kth < floor) kth = -1;
    }
  }
  if (cuts.minP > 0) {
    let max = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i]! > max) max = probs[i]!;
    floor = Math.max(floor, cuts.minP * max);
  }
  if (kth >= 0) {
    let above = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i]! > kth) above++;
    tiesLeft = cuts.topK - above;
  }
  let sum = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]!;
    let keep = p >= floor;
    if (keep && kth >= 0 && p <= kth) {
      if (p === kth && tiesLeft > 0) tiesLeft--;
      else keep = false;
    }
    if (keep) sum += p;
    else probs[i] = 0;
  }
  return sum;
}

/**
 * Top-p alone: zeroes every probability below the cut-off, the probability of the token at which the
 * cumulative sum of the sorted probabilities first reaches `topP` (ties with it are kept, as ChatRWKV does).
 */
export function applyTopP(probs: Float64Array, topP: number): void {
  applyCuts(probs, { topP, topK: 0, minP: 0 });
}

/** Top-k alone: keeps exactly the k largest probabilities (among equal ones, the lowest ids), zeroes the rest. */
export function applyTopK(probs: Float64Array, k: number): void {
  applyCuts(probs, { topP: 1, topK: k, minP: 0 });
}

/** Min-p alone: zeroes every probability below minP × the largest one. */
export function applyMinP(probs: Float64Array, minP: number): void {
  applyCuts(probs, { topP: 1, topK: 0, minP });
}

/**
 * Steps 3–4 on probabilities (softmax of the adjusted logits), in place: the cuts, then the temperature.
 * Returns the sum of the resulting weights (the draw normalises by it).
 */
export function applyCutsAndTemperature(probs: Float64Array, options: ResolvedSamplerOptions): number {
  let sum = applyCuts(probs, options);
  if (options.temperature !== 1 && options.temperature !== 0) {
    const inv = 1 / options.temperature;
    sum = 0;
    for (let i = 0; i < probs.length; i++) {
      const p = probs[i]!;
      if (p > 0) sum += probs[i] = p ** inv;
    }
  }
  return sum;
}

/** Steps 2–4 on already adjusted logits: the weights the draw uses (not normalised). For tests and inspection. */
export function samplingWeights(adjustedLogits: ArrayLike<number>, options: ResolvedSamplerOptions): Float64Array {
  const probs = softmax(adjustedLogits);
  applyCutsAndTemperature(probs, options);
  return probs;
}

/** Draws an index with probability weights[i] / sum, using exactly one rng.next(). */
export function drawIndex(weights: Float64Array, sum: number, rng: Rng): number | undefined {
  const u0 = rng.next();
  if (!(sum > 0)) return undefined; // every weight underflowed at a tiny temperature
  let u = u0 * sum;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!;
    if (u < 0) return i;
  }
  // Rounding left u ≥ 0: the last index with a non-zero weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return undefined;
}

/**
 * Draws a token id from `adjustedLogits` (bias, bans and penalties already applied: see adjustLogits).
 * Uses exactly one `rng.next()` per call unless the temperature is 0.
 */
export function sample(adjustedLogits: ArrayLike<number>, options: ResolvedSamplerOptions, rng: Rng): number {
  if (options.temperature === 0) return argmax(adjustedLogits);
  const probs = softmax(adjustedLogits);
  const sum = applyCutsAndTemperature(probs, options);
  return drawIndex(probs, sum, rng) ?? argmax(adjustedLogits);
}

/** ChatRWKV's exemption test: the token's text is a substring of " \t0123456789" (so '' and '12' count). */
export function isWhitespaceOrDigits(text: string): boolean {
  return ' \t0123456789'.includes(text);
}
