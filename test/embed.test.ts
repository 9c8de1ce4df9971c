// Embeddings (Rwkv.embed, the `hidden` rows of RwkvModel.run) and per-token alternatives (topLogProbs),
// checked against independent float64 arithmetic: the head weight read from the checkpoint times the hidden
// row must give the logits the model returns, and the alternatives must be a float64 log-softmax of them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArgumentError } from '../src/errors.js';
import { openCheckpoint } from '../src/formats/open.js';
import { Rwkv, type GenerationPiece } from '../src/generation/rwkv.js';
import { loadModel } from '../src/models/load.js';
import { f32View } from '../src/tensor/tensor.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';

const backend = await testBackend();

const FIXTURES = ['tiny-rwkv-4v0-660K-FP32.bin', 'tiny-rwkv-5v2-730K-FP32.bin', 'tiny-rwkv-6v0-1m-FP32.bin', 'tiny-rwkv-7v0-834K-FP32.bin'];

async function open(t: Parameters<typeof fixture>[0], name: string): Promise<{ rwkv: Rwkv; head: Float32Array } | undefined> {
  const file = fixture(t, name);
  if (file === undefined) return undefined;
  const source = await openCheckpoint(file);
  const tensor = source.tensors.get('head.weight');
  assert.ok(tensor !== undefined && tensor.dtype === 'f32', 'an FP32 head');
  const rwkv = await Rwkv.fromModel(await loadModel(file, { backend }), { prefixCache: false });
  return { rwkv, head: f32View(tensor) };
}

/** head · h in float64 (nVocab). */
function headTimes(head: Float32Array, h: Float32Array): Float64Array {
  const c = h.length;
  const out = new Float64Array(head.length / c);
  for (let v = 0; v < out.length; v++) {
    let s = 0;
    for (let i = 0; i < c; i++) s += head[v * c + i]! * h[i]!;
    out[v] = s;
  }
  return out;
}

function logSoftmax64(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

/** max |a − b| / max |b|. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

for (const name of FIXTURES) {
  test(`${name}: hidden rows are what the head multiplies; embed pools and normalises them`, async (t) => {
    const opened = await open(t, name);
    if (opened === undefined) return;
    const { rwkv, head } = opened;
    try {
      const model = rwkv.model;
      const { nVocab, nEmbd: c } = model.config;
      const text = 'The quick brown fox';
      const ids = [0, ...rwkv.encode(text)];
      const T = ids.length;

      // One pass: every position's logits and hidden rows.
      const hidden: Float32Array[] = [];
      const [logits] = await model.run([{ tokens: ids, state: model.createState(), logits: 'all', hidden: (p, row) => (hidden[p] = row.slice()) }]);
      assert.equal(hidden.length, T);
      for (let p = 0; p < T; p++) {
        assert.equal(hidden[p]!.length, c);
        const expected = headTimes(head, hidden[p]!);
        const got = logits!.subarray(p * nVocab, (p + 1) * nVocab);
        assert.ok(relDiff(got, expected) <= 1e-4, `position ${p}: logits ≠ head · hidden (rel ${relDiff(got, expected)})`);
      }

      // A hidden-only pass (no head) gives the same rows.
      const only: Float32Array[] = [];
      const [none] = await model.run([{ tokens: ids, state: model.createState(), logits: 'none', hidden: (p, row) => (only[p] = row.slice()) }]);
      assert.equal(none!.length, 0);
      for (let p = 0; p < T; p++) assert.ok(relDiff(only[p]!, hidden[p]!) <= 1e-6);

      // score's convention (a fresh state sees token 0 first) is embed's: its log-probs come from these rows.
      const scored = await rwkv.score(text);
      for (let i = 0; i < scored.ids.length; i++) {
        const expected = logSoftmax64(headTimes(head, hidden[i]!))[scored.ids[i]!]!;
        assert.ok(Math.abs(scored.logProbs[i]! - expected) <= 1e-4 * Math.max(1, Math.abs(expected)), `score at ${i}`);
      }

      // last pooling: the last token's row; mean pooling: the mean over the text's tokens (not token 0).
      const [lastRaw] = await rwkv.embed(text, { normalize: false });
      assert.ok(relDiff(lastRaw!, hidden[T - 1]!) <= 1e-5);
      const [meanRaw] = await rwkv.embed([text], { pooling: 'mean', normalize: false });
      const mean = new Float64Array(c);
      for (let p = 1; p < T; p++) for (let i = 0; i < c; i++) mean[i] += hidden[p]![i]! / (T - 1);
      assert.ok(relDiff(meanRaw!, mean) <= 1e-5);

      // Normalised (the default): unit length, same direction.
      const [last, meanUnit] = [(await rwkv.embed(text))[0]!, (await rwkv.embed(text, { pooling: 'mean' }))[0]!];
      assert.ok(Math.abs(norm(last) - 1) <= 1e-6);
      assert.ok(Math.abs(norm(meanUnit) - 1) <= 1e-6);
      const scale = norm(lastRaw!);
      assert.ok(relDiff(last, Float64Array.from(lastRaw!, (v) => v / scale)) <= 1e-6);
    } finally {
      await rwkv.close();
    }
  });
}

test('embed: several texts share passes and each equals its own; long texts, the empty text, bad options', async (t) => {
  const opened = await open(t, 'tiny-rwkv-7v0-834K-FP32.bin');
  if (opened === undefined) return;
  const { rwkv } = opened;
  try {
    const model = rwkv.model;
    const long = 'A text longer than one 64-row piece of the batcher, so that it is fed in several passes. '.repeat(3);
    const texts = ['one', 'two words', long, ''];
    for (const pooling of ['last', 'mean'] as const) {
      const together = await rwkv.embed(texts, { pooling, normalize: false });
      assert.equal(together.length, texts.length);
      for (let i = 0; i < texts.length; i++) {
        const [alone] = await rwkv.embed(texts[i]!, { pooling, normalize: false });
        assert.ok(relDiff(together[i]!, alone!) <= 1e-5, `${pooling} text ${i}`);
      }
      // The long text against one unsliced pass of the model.
      const ids = [0, ...rwkv.encode(long)];
      assert.ok(ids.length > 128);
      const rows: Float32Array[] = [];
      await model.run([{ tokens: ids, state: model.createState(), logits: 'none', hidden: (p, row) => (rows[p] = row.slice()) }]);
      const c = model.config.nEmbd;
      const expected = new Float64Array(c);
      if (pooling === 'last') expected.set(rows[ids.length - 1]!);
      else for (let p = 1; p < ids.length; p++) for (let i = 0; i < c; i++) expected[i] += rows[p]![i]! / (ids.length - 1);
      assert.ok(relDiff(together[2]!, expected) <= 1e-4, `${pooling} long text`);
      // The empty text: the row after the start token 0.
      assert.ok(relDiff(together[3]!, rows[0]!) <= 1e-5);
    }
    await assert.rejects(rwkv.embed('x', { poling: 'mean' } as never), (e: unknown) => e instanceof ArgumentError && /did you mean 'pooling'/.test(e.message));
    await assert.rejects(rwkv.embed('x', { pooling: 'max' } as never), ArgumentError);
    await assert.rejects(rwkv.embed('x', { normalize: 'yes' } as never), ArgumentError);
    await assert.rejects(rwkv.embed([1] as never), ArgumentError);
    await assert.rejects(rwkv.embed('x', { signal: AbortSignal.abort() }), (e: unknown) => (e as Error).name === 'AbortError');
  } finally {
    await rwkv.close();
  }
});

async function tokensOf(g: AsyncIterable<GenerationPiece>) {
  const out = [];
  for await (const piece of g) out.push(...piece.tokens);
  return out;
}

for (const name of ['tiny-rwkv-4v0-660K-FP32.bin', 'tiny-rwkv-7v0-834K-FP32.bin']) {
  test(`${name}: topLogProbs gives the N most likely tokens under the raw logits' log-softmax`, async (t) => {
    const opened = await open(t, name);
    if (opened === undefined) return;
    const { rwkv } = opened;
    try {
      const model = rwkv.model;
      const { nVocab } = model.config;
      const prompt = 'The license';
      const N = 7;
      // Penalties, bias and temperature change what is drawn, not the alternatives' distribution.
      const generated = await tokensOf(
        rwkv.generate(prompt, { maxTokens: 20, seed: 3, temperature: 1.3, presencePenalty: 0.5, logitBias: { 101: 2 }, topLogProbs: N }),
      );
      assert.equal(generated.length, 20);
      const promptIds = rwkv.encode(prompt);
      const [logits] = await model.run([{ tokens: [...promptIds, ...generated.map((g) => g.id)], state: model.createState(), logits: 'all' }]);
      let among = 0;
      generated.forEach((tok, k) => {
        const alts = tok.alternatives!;
        assert.equal(alts.length, N);
        for (let j = 1; j < N; j++) assert.ok(alts[j - 1]!.logProb >= alts[j]!.logProb, 'descending');
        const row = logits!.subarray((promptIds.length - 1 + k) * nVocab, (promptIds.length + k) * nVocab);
        const lsm = logSoftmax64(row);
        const order = [...lsm.keys()].sort((a, b) => lsm[b]! - lsm[a]! || a - b).slice(0, N);
        assert.deepEqual(alts.map((a) => a.id), order, `token ${k}: the top ${N}`);
        for (const a of alts) assert.ok(Math.abs(a.logProb - lsm[a.id]!) <= 1e-4, `token ${k}: id ${a.id}`);
        assert.ok(Math.abs(tok.logProb - lsm[tok.id]!) <= 1e-4);
        const own = alts.find((a) => a.id === tok.id);
        if (own !== undefined) {
          among++;
          assert.equal(own.logProb, tok.logProb);
        }
      });
      assert.ok(among > 0, 'some drawn token is among the alternatives');

      // Greedy without adjustments: the chosen token is the first alternative.
      for (const tok of await tokensOf(rwkv.generate(prompt, { maxTokens: 5, temperature: 0, topLogProbs: 1 }))) {
        assert.equal(tok.alternatives!.length, 1);
        assert.equal(tok.alternatives![0]!.id, tok.id);
        assert.equal(tok.alternatives![0]!.logProb, tok.logProb);
      }
      // Default 0: no alternatives.
      for (const tok of await tokensOf(rwkv.generate(prompt, { maxTokens: 3, seed: 1 }))) assert.equal(tok.alternatives, undefined);
      for (const bad of [21, -1, 1.5, '3']) {
        assert.throws(() => rwkv.generate(prompt, { topLogProbs: bad as never }), ArgumentError);
      }
      assert.throws(() => rwkv.generate(prompt, { topLogprobs: 2 } as never), /did you mean 'topLogProbs'/);
    } finally {
      await rwkv.close();
    }
  });
}
