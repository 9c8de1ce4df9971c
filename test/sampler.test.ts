// The sampler on hand-made logits: each cut keeps exactly the right set, penalties and their decay change
// exactly the right logits, the same seed gives the same draws, invalid options are refused. Also the stop
// matcher and the prefix cache's lookup and eviction rules. No model needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArgumentError } from '../src/errors.js';
import { PrefixCache } from '../src/generation/prefix-cache.js';
import { Rng } from '../src/util/rng.js';
import {
  adjustLogits,
  applyTopK,
  applyTopP,
  isWhitespaceOrDigits,
  Penalties,
  sample,
  samplingWeights,
  softmax,
  validateSamplerOptions,
  type SamplerOptions,
} from '../src/generation/sampler.js';
import { TokenSampler, validateGenerateOptions } from '../src/generation/generate.js';
import { StopMatcher } from '../src/generation/stop.js';

/** Logits whose softmax is exactly proportional to `probs`. */
const logitsOf = (probs: readonly number[]): Float64Array => Float64Array.from(probs, (p) => (p > 0 ? Math.log(p) : -Infinity));

/** The ids with non-zero weight after the cuts. */
function kept(probs: readonly number[], options: SamplerOptions): number[] {
  const w = samplingWeights(logitsOf(probs), validateSamplerOptions(options));
  return [...w.keys()].filter((i) => w[i]! > 0);
}

test('top-p keeps the smallest most-likely set reaching p, ties with the cut-off included (ChatRWKV)', () => {
  const p = [0.1, 0.4, 0.2, 0.3];
  assert.deepEqual(kept(p, { topP: 0.4 }), [1]);
  assert.deepEqual(kept(p, { topP: 0.41 }), [1, 3]);
  assert.deepEqual(kept(p, { topP: 0.7 }), [1, 3]); // 0.4 + 0.3 reaches 0.7
  assert.deepEqual(kept(p, { topP: 0.75 }), [1, 2, 3]);
  assert.deepEqual(kept(p, { topP: 1 }), [0, 1, 2, 3]);
  assert.deepEqual(kept(p, { topP: 0.01 }), [1]);
  // Ties with the cut-off probability stay, as ChatRWKV's `probs[probs < cutoff] = 0` keeps them.
  assert.deepEqual(kept([0.2, 0.3, 0.3, 0.2], { topP: 0.35 }), [1, 2]);
  assert.deepEqual(kept([0.2, 0.3, 0.3, 0.2], { topP: 0.65 }), [0, 1, 2, 3]);
});

test('top-p on a 65536-token vocabulary equals a plain full sort', () => {
  const rng = new Rng(5);
  for (const topP of [0.3, 0.85, 0.999]) {
    const logits = Float64Array.from({ length: 65536 }, () => 8 * rng.next() ** 3);
    const probs = softmax(logits);
    const fast = Float64Array.from(probs);
    applyTopP(fast, topP);
    const sorted = Float64Array.from(probs).sort().reverse();
    let sum = 0;
    let cutoff = 0;
    for (const v of sorted) {
      sum += v;
      if (sum >= topP) {
        cutoff = v;
        break;
      }
    }
    const expected = probs.map((v) => (v < cutoff ? 0 : v));
    assert.deepEqual(fast, expected, `top-p ${topP}`);
  }
});

test('top-k keeps exactly k tokens (the lowest ids among equal ones)', () => {
  const p = [0.1, 0.4, 0.2, 0.3];
  assert.deepEqual(kept(p, { topK: 1 }), [1]);
  assert.deepEqual(kept(p, { topK: 2 }), [1, 3]);
  assert.deepEqual(kept(p, { topK: 3 }), [1, 2, 3]);
  assert.deepEqual(kept(p, { topK: 4 }), [0, 1, 2, 3]);
  assert.deepEqual(kept(p, { topK: 0 }), [0, 1, 2, 3]);
  assert.deepEqual(kept([0.25, 0.25, 0.25, 0.25], { topK: 2 }), [0, 1]);
  assert.deepEqual(kept([0.1, 0.3, 0.3, 0.3], { topK: 2 }), [1, 2]);
  // Against a sort on random values.
  const rng = new Rng(9);
  const probs = Float64Array.from({ length: 5000 }, () => rng.next());
  for (const k of [1, 7, 100, 4999]) {
    const w = Float64Array.from(probs);
    applyTopK(w, k);
    const kth = Float64Array.from(probs).sort().reverse()[k - 1]!;
    assert.deepEqual(w, probs.map((v) => (v >= kth ? v : 0)), `k ${k}`);
  }
});

test('min-p drops tokens below min-p × the largest probability; cuts combine as an intersection', () => {
  const p = [0.05, 0.4, 0.2, 0.3, 0.05];
  assert.deepEqual(kept(p, { minP: 0.5 }), [1, 2, 3]); // ≥ 0.2
  assert.deepEqual(kept(p, { minP: 0.51 }), [1, 3]);
  assert.deepEqual(kept(p, { minP: 0.1 }), [0, 1, 2, 3, 4]); // 0.05 ≥ 0.04
  assert.deepEqual(kept(p, { minP: 0.5, topK: 2 }), [1, 3]);
  assert.deepEqual(kept(p, { minP: 0.4, topP: 0.85 }), [1, 2, 3]);
  assert.deepEqual(kept(p, { topP: 0.95, topK: 3 }), [1, 2, 3]);
});

test('temperature raises the kept probabilities to 1/T; 0 takes the largest adjusted logit', () => {
  const probs = [0.1, 0.4, 0.2, 0.3];
  const w = samplingWeights(logitsOf(probs), validateSamplerOptions({ temperature: 0.5, topP: 0.75 }));
  assert.equal(w[0], 0); // cut before the temperature
  assert.ok(Math.abs(w[1]! / w[3]! - (0.4 / 0.3) ** 2) < 1e-12);
  assert.ok(Math.abs(w[2]! / w[3]! - (0.2 / 0.3) ** 2) < 1e-12);
  const greedy = validateSamplerOptions({ temperature: 0, bannedTokens: [1] });
  const logits = logitsOf(probs);
  adjustLogits(logits, greedy);
  assert.equal(sample(logits, greedy, new Rng(1)), 3);
});

test('logit bias, bans and penalties change exactly the right logits', () => {
  const options = validateSamplerOptions({
    logitBias: { 2: 1.5, 4: -0.25 },
    bannedTokens: [3],
    presencePenalty: 0.4,
    frequencyPenalty: 0.3,
    penaltyDecay: 0.5,
  });
  const penalties = new Penalties(options);
  for (const id of [5, 7, 5]) penalties.update(id);
  // After 5: {5: 1}; after 7: {5: 0.5, 7: 1}; after 5: {5: 0.25 + 1, 7: 0.5}.
  assert.deepEqual([...penalties.counts.entries()].sort(), [
    [5, 1.25],
    [7, 0.5],
  ]);
  const base = Float64Array.from({ length: 9 }, (_, i) => i / 10);
  const logits = Float64Array.from(base);
  adjustLogits(logits, options, penalties);
  const expected = Float64Array.from(base);
  expected[2] = expected[2]! + 1.5;
  expected[4] = expected[4]! - 0.25;
  expected[3] = -Infinity;
  expected[5] = expected[5]! - (0.4 + 1.25 * 0.3);
  expected[7] = expected[7]! - (0.4 + 0.5 * 0.3);
  assert.deepEqual(logits, expected);
});

test('whitespace and digits are spared the frequency count but not the presence penalty (ChatRWKV)', () => {
  assert.ok(isWhitespaceOrDigits(' '));
  assert.ok(isWhitespaceOrDigits('12'));
  assert.ok(isWhitespaceOrDigits('\t'));
  assert.ok(!isWhitespaceOrDigits('a'));
  assert.ok(!isWhitespaceOrDigits('  ')); // not a substring of " \t0123456789"
  const options = validateSamplerOptions({ presencePenalty: 1, frequencyPenalty: 2, penaltyDecay: 1, temperature: 0 });
  const sampler = new TokenSampler(options, 1, (id) => (id === 32 ? 0 : 1));
  sampler.accept(32);
  sampler.accept(32);
  sampler.accept(65);
  assert.deepEqual([...sampler.penalties.counts.entries()].sort(), [
    [32, 0],
    [65, 1],
  ]);
  const logits = new Float32Array(100);
  logits[32] = 0.5; // − (1 + 0·2) → −0.5
  logits[65] = 2.5; // − (1 + 1·2) → −0.5
  logits[10] = 0.1;
  assert.equal(sampler.draw(logits), 10);
});

test('the same seed gives the same draws; another seed other draws; one rng.next() per draw', () => {
  const options = validateSamplerOptions({ topP: 0.9, topK: 50, temperature: 0.8 });
  const rng = new Rng(3);
  const logits = Float64Array.from({ length: 256 }, () => 4 * rng.next());
  const draws = (seed: number): number[] => {
    const r = new Rng(seed);
    return Array.from({ length: 64 }, () => sample(logits, options, r));
  };
  assert.deepEqual(draws(42), draws(42));
  assert.notDeepEqual(draws(42), draws(43));
  const a = new Rng(7);
  const b = new Rng(7);
  sample(logits, options, a);
  b.next();
  assert.equal(a.next(), b.next());
});

test('invalid options are refused with a message naming the option', () => {
  const refuse = (o: Parameters<typeof validateGenerateOptions>[0], pattern: RegExp, nVocab = 256): void => {
    assert.throws(() => validateGenerateOptions(o, nVocab), (e: unknown) => e instanceof ArgumentError && pattern.test(e.message));
  };
  refuse({ topP: 0 }, /top-p must be in \(0, 1\], got 0/);
  refuse({ topP: 1.5 }, /top-p must be in \(0, 1\]/);
  refuse({ topP: NaN }, /top-p/);
  refuse({ temperature: -1 }, /temperature must be a number ≥ 0/);
  refuse({ topK: -1 }, /top-k must be an integer ≥ 0/);
  refuse({ topK: 2.5 }, /top-k/);
  refuse({ minP: 1 }, /min-p must be in \[0, 1\)/);
  refuse({ penaltyDecay: 0 }, /penalty decay must be in \(0, 1\]/);
  refuse({ presencePenalty: Infinity }, /presence penalty must be a finite number/);
  refuse({ bannedTokens: [256] }, /banned token: 256 is not a token id \(the vocabulary is 0\.\.255\)/);
  refuse({ bannedTokens: [-1] }, /banned token: -1/);
  refuse({ logitBias: new Map([[300, 1]]) }, /logit bias: 300 is not a token id/);
  refuse({ logitBias: { 3: NaN } }, /logit bias of token 3 must be a finite number/);
  refuse({ stopTokens: [1000] }, /stop token: 1000 is not a token id/);
  refuse({ bannedTokens: [0, 1] }, /every token of the vocabulary is banned/, 2);
  refuse({ maxTokens: -1 }, /max tokens must be an integer ≥ 0/);
  refuse({ seed: 1.5 }, /seed must be an integer/);
});

test('stop strings: text is held back only while it may start a stop string', () => {
  const m = new StopMatcher(['\n\n', 'User:']);
  assert.equal(m.push('Hello'), 'Hello');
  assert.equal(m.push(' world\n'), ' world');
  assert.equal(m.push('x'), '\nx');
  assert.equal(m.push('Us'), '');
  assert.equal(m.push('e'), '');
  assert.equal(m.push('d'), 'Used');
  assert.equal(m.push('a\n'), 'a');
  assert.equal(m.push('\nmore'), '');
  assert.equal(m.matched, '\n\n');
  assert.equal(m.push('ignored'), '');
  const n = new StopMatcher(['ab', 'b']);
  assert.equal(n.push('xab'), 'x'); // the earliest match wins
  assert.equal(n.matched, 'ab');
  const o = new StopMatcher(['END']);
  assert.equal(o.push('the EN'), 'the ');
  assert.equal(o.flush(), 'EN'); // never became a stop string
});

test('prefix cache: continues only from block boundaries, serves exact prompts, evicts tails first', () => {
  const snap = (n: number): { length: number; state: Float32Array; logits: Float32Array } => ({
    length: n,
    state: new Float32Array(4).fill(n),
    logits: new Float32Array(2).fill(-n),
  });
  const cache = new PrefixCache({ maxBytes: 3 * 24 });
  const a = Array.from({ length: 10 }, (_, i) => i);
  cache.store(a, [snap(4), snap(8), snap(10)]);
  assert.equal(cache.size, 3);
  assert.equal(cache.lookup(a, 4)!.length, 10); // exact
  assert.equal(cache.lookup([...a, 99], 4)!.length, 8); // 10 is not a boundary: continue from 8
  assert.equal(cache.lookup([...a.slice(0, 9), 50], 4)!.length, 8);
  assert.equal(cache.lookup([0, 1, 2, 3, 4, 5, 6], 4)!.length, 4);
  assert.deepEqual(cache.lookup([0, 1, 2, 3, 4], 4)!.state, new Float32Array(4).fill(4));
  assert.equal(cache.lookup([1, 2, 3, 4, 5], 4), undefined);
  assert.equal(cache.lookup([0, 1, 2], 4), undefined);
  // A new prompt's snapshots push out the least recently used; of one prompt, the longest goes first.
  const cache2 = new PrefixCache({ maxBytes: 2 * 24 });
  cache2.store(a, [snap(4), snap(8), snap(10)]);
  assert.equal(cache2.size, 2);
  assert.equal(cache2.lookup(a, 4)!.length, 8);
  assert.ok(cache2.stats.hits >= 1);
});

test('TokenSampler draws what sample() draws on the adjusted logits, and its log-probs are the raw ones', () => {
  const options = validateSamplerOptions({ topP: 0.8, topK: 30, temperature: 0.7, presencePenalty: 0.5, frequencyPenalty: 0.3, bannedTokens: [3], logitBias: { 7: 2 } });
  const rng = new Rng(21);
  const logits = Float32Array.from({ length: 300 }, () => 6 * rng.next());
  const sampler = new TokenSampler(options, 99);
  const reference = new Rng(99);
  const penalties = new Penalties(options);
  for (let step = 0; step < 50; step++) {
    const got = sampler.next(logits);
    const adjusted = Float32Array.from(logits);
    adjustLogits(adjusted, options, penalties);
    assert.equal(got.id, sample(adjusted, options, reference), `step ${step}`);
    const max = Math.max(...logits);
    const lse = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
    assert.ok(Math.abs(got.logProb - (logits[got.id]! - lse)) < 1e-9);
    sampler.accept(got.id);
    penalties.update(got.id);
  }
});
