// lm-evaluation-harness v0.3.0's metrics: per item acc / acc_norm from the log-likelihoods, per task the
// mean with its standard error (sample standard deviation ÷ √n), LAMBADA's perplexity exp(−mean ll), and
// WikiText's word/byte perplexity and bits per byte weighted by the words/bytes of each document.

/** numpy's argmax: the first maximum; a NaN counts as the maximum (the first NaN wins). */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) return i;
    if (v > values[best]!) best = i;
  }
  return best;
}

/** 1 when the highest log-likelihood is the gold one's. */
export function accuracy(loglikelihoods: readonly number[], gold: number): number {
  return argmax(loglikelihoods) === gold ? 1 : 0;
}

/** acc_norm: the same on ll ÷ the choice's length in characters. */
export function normalizedAccuracy(loglikelihoods: readonly number[], lengths: readonly number[], gold: number): number {
  return argmax(loglikelihoods.map((ll, i) => ll / lengths[i]!)) === gold ? 1 : 0;
}

export function mean(values: readonly number[]): number {
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

/** Sample standard deviation (n − 1) ÷ √n: lm-eval's mean_stderr. NaN for fewer than two values. */
export function meanStderr(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return NaN;
  const mu = mean(values);
  let ss = 0;
  for (const v of values) ss += (v - mu) * (v - mu);
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
}

/** exp(−mean ll): lm-eval's perplexity (LAMBADA's ppl). */
export function perplexity(loglikelihoods: readonly number[]): number {
  return Math.exp(-mean(loglikelihoods));
}

/** Σ ll ÷ Σ weight. */
export function weightedMean(loglikelihoods: readonly number[], weights: readonly number[]): number {
  let a = 0;
  let b = 0;
  for (let i = 0; i < loglikelihoods.length; i++) {
    a += loglikelihoods[i]!;
    b += weights[i]!;
  }
  return a / b;
}

/** exp(−Σ ll ÷ Σ weight): word or byte perplexity. */
export function weightedPerplexity(loglikelihoods: readonly number[], weights: readonly number[]): number {
  return Math.exp(-weightedMean(loglikelihoods, weights));
}

/** −Σ ll ÷ Σ bytes ÷ ln 2. */
export function bitsPerByte(loglikelihoods: readonly number[], bytes: readonly number[]): number {
  return -weightedMean(loglikelihoods, bytes) / Math.LN2;
}

/** A multiple-choice task's results (acc_norm only where the task has it). */
export interface ChoiceMetrics {
  n: number;
  acc: number;
  acc_stderr: number;
  acc_norm?: number;
  acc_norm_stderr?: number;
}

/** LAMBADA's results. */
export interface LambadaMetrics {
  n: number;
  ppl: number;
  acc: number;
  acc_stderr: number;
}

/** WikiText's (or any text's) results. */
export interface PerplexityMetrics {
  n: number;
  word_perplexity: number;
  byte_perplexity: number;
  bits_per_byte: number;
}

export type TaskMetrics = ChoiceMetrics | LambadaMetrics | PerplexityMetrics;

/** What one multiple-choice item scored. */
export interface ChoiceOutcome {
  loglikelihoods: readonly number[];
  isGreedy: readonly boolean[];
  gold: number;
  normLengths?: readonly number[];
}

export function choiceMetrics(outcomes: readonly ChoiceOutcome[], withNorm: boolean): ChoiceMetrics {
  const acc = outcomes.map((o) => accuracy(o.loglikelihoods, o.gold));
  const m: ChoiceMetrics = { n: outcomes.length, acc: mean(acc), acc_stderr: meanStderr(acc) };
  if (withNorm) {
    const norm = outcomes.map((o) => normalizedAccuracy(o.loglikelihoods, o.normLengths!, o.gold));
    m.acc_norm = mean(norm);
    m.acc_norm_stderr = meanStderr(norm);
  }
  return m;
}

export function lambadaMetrics(outcomes: readonly ChoiceOutcome[]): LambadaMetrics {
  const ll = outcomes.map((o) => o.loglikelihoods[0]!);
  const acc = outcomes.map((o) => (o.isGreedy[0] === true ? 1 : 0));
  return { n: outcomes.length, ppl: perplexity(ll), acc: mean(acc), acc_stderr: meanStderr(acc) };
}

export function perplexityMetrics(docs: readonly { loglikelihood: number; words: number; bytes: number }[]): PerplexityMetrics {
  const ll = docs.map((d) => d.loglikelihood);
  const bytes = docs.map((d) => d.bytes);
  return {
    n: docs.length,
    word_perplexity: weightedPerplexity(ll, docs.map((d) => d.words)),
    byte_perplexity: weightedPerplexity(ll, bytes),
    bits_per_byte: bitsPerByte(ll, bytes),
  };
}
