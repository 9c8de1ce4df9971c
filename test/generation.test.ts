// The library API on the tiny fixture models through the fast kernels: reproducible generation, per-token
// details, stop conditions, scoring, states saved to files and refused by other models, and the prefix
// cache (the shared prefix is not read again, and results are identical to no cache).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ArgumentError, StateError } from '../src/errors.js';
import { RwkvState } from '../src/generation/context.js';
import { logSoftmaxAt } from '../src/generation/generate.js';
import { Rwkv, type GenerationPiece } from '../src/generation/rwkv.js';
import { readStateFileHeader } from '../src/generation/state-file.js';
import { loadModel, modelFromSource } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { randomSource } from '../src/models/random.js';
import { testBackend } from './helpers/backend.js';
import { fixture, maxAbsDiff } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const backend = await testBackend();
const dir = tempDir('generation');

async function open(t: Parameters<typeof fixture>[0], name = 'tiny-rwkv-5v2-730K-FP32.bin', prefixCache = true): Promise<Rwkv | undefined> {
  const file = fixture(t, name);
  if (file === undefined) return undefined;
  return Rwkv.fromModel(await loadModel(file, { backend }), { prefixCache });
}

async function collect(g: AsyncIterable<GenerationPiece>): Promise<{ text: string; ids: number[]; logProbs: number[] }> {
  let text = '';
  const ids: number[] = [];
  const logProbs: number[] = [];
  for await (const piece of g) {
    text += piece.text;
    for (const tok of piece.tokens) {
      ids.push(tok.id);
      logProbs.push(tok.logProb);
    }
  }
  return { text, ids, logProbs };
}

const ALL_OPTIONS = {
  maxTokens: 60,
  temperature: 0.9,
  topP: 0.9,
  topK: 40,
  minP: 0.02,
  presencePenalty: 0.3,
  frequencyPenalty: 0.4,
  penaltyDecay: 0.99,
  logitBias: { 101: 1, 32: -0.5 },
  bannedTokens: [0, 10],
};

test('the same seed gives the same text and tokens; per-token log-probs are those of the raw logits', async (t) => {
  const rwkv = await open(t);
  if (rwkv === undefined) return;
  const a = await collect(rwkv.generate('The license', { ...ALL_OPTIONS, seed: 11 }));
  const b = await collect(rwkv.generate('The license', { ...ALL_OPTIONS, seed: 11 }));
  const c = await collect(rwkv.generate('The license', { ...ALL_OPTIONS, seed: 12 }));
  assert.equal(a.ids.length, 60);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.ids, c.ids);
  assert.equal(a.text, rwkv.decode(a.ids));
  assert.ok(!a.ids.includes(10) && !a.ids.includes(0), 'banned tokens were generated');
  // Replay: the prompt in parallel mode, then each token in RNN mode, gives the same log-probs.
  const state = rwkv.createState();
  await rwkv.feed(state, 'The license');
  for (let i = 0; i < a.ids.length; i++) {
    assert.ok(Math.abs(a.logProbs[i]! - logSoftmaxAt(state.logits!, a.ids[i]!)) <= 1e-9, `token ${i}`);
    state.advance(1, await rwkv.model.forward(a.ids[i]!, state.state));
  }
});

test('stop strings, stop tokens, max tokens 0, an empty prompt, abort, and stopping early', async (t) => {
  const rwkv = await open(t);
  if (rwkv === undefined) return;
  const free = await collect(rwkv.generate('The', { maxTokens: 80, seed: 3 }));
  // A stop string cuts the text just before it; finishReason says why.
  const word = free.text.slice(5, 7);
  const g = rwkv.generate('The', { maxTokens: 80, seed: 3, stop: [word] });
  const stopped = await collect(g);
  assert.equal(g.finishReason, 'stop');
  assert.equal(stopped.text, free.text.slice(0, free.text.indexOf(word)));
  // A stop token ends generation without being emitted.
  const stopId = free.ids[4]!;
  const g2 = rwkv.generate('The', { maxTokens: 80, seed: 3, stopTokens: [stopId] });
  const s2 = await collect(g2);
  assert.equal(g2.finishReason, 'stop_token');
  assert.deepEqual(s2.ids, free.ids.slice(0, free.ids.indexOf(stopId)));
  // Max tokens 0 reads the prompt and generates nothing; an empty prompt starts from token 0.
  const g3 = rwkv.generate('', { maxTokens: 0 });
  assert.equal(await g3.text(), '');
  assert.equal(g3.state.tokenCount, 1);
  assert.equal(g3.finishReason, 'length');
  // An aborted signal ends at the next token; a consumer that stops early leaves every given token fed.
  const controller = new AbortController();
  controller.abort();
  const g4 = rwkv.generate('The', { maxTokens: 10, signal: controller.signal });
  assert.equal(await g4.text(), '');
  assert.equal(g4.finishReason, 'aborted');
  const g5 = rwkv.generate('The', { maxTokens: 80, seed: 3 });
  let got = 0;
  for await (const piece of g5) {
    got += piece.tokens.length;
    if (got >= 5) break;
  }
  assert.equal(g5.state.tokenCount, 3 + got);
  assert.equal(g5.finishReason, 'aborted');
});

test('a saved state restores identical logits, and generating from it repeats a one-shot run exactly', async (t) => {
  const rwkv = await open(t);
  if (rwkv === undefined) return;
  const file = path.join(dir, 'a.state');
  const options = { ...ALL_OPTIONS, seed: 5 };
  const oneShot = await collect(rwkv.generate('Hello, world', options));
  const primed = rwkv.generate('Hello, world', { maxTokens: 0 });
  await primed.text();
  await rwkv.saveState(file, primed.state);
  const loaded = await rwkv.loadState(file);
  assert.deepEqual(loaded.logits, primed.state.logits);
  assert.deepEqual(loaded.state.data, primed.state.state.data);
  assert.equal(loaded.tokenCount, primed.state.tokenCount);
  const header = readStateFileHeader(fs.readFileSync(file));
  assert.equal(header.name, 'tiny-rwkv-5v2-730K-FP32.bin');
  assert.equal(header.version, '5.2');
  // The next token's logits are bit-identical from the original and from the loaded state.
  const x = await rwkv.model.forward(65, primed.state.clone().state);
  const y = await rwkv.model.forward(65, loaded.clone().state);
  assert.deepEqual(x, y);
  assert.deepEqual(await collect(rwkv.generate('', { ...options, state: loaded })), oneShot);
  // Clones are independent.
  const c = loaded.clone();
  await rwkv.feed(c, ' more');
  assert.notDeepEqual(c.state.data, loaded.state.data);
  assert.equal(c.tokenCount, loaded.tokenCount + 5);
});

test('a state file is refused by another model (other version, or same shape and other weights) and when damaged', async (t) => {
  const rwkv = await open(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  const other = await open(t, 'tiny-rwkv-5v1-730K-FP32.bin');
  const fp16 = await open(t, 'tiny-rwkv-4v0-660K-FP16.bin');
  if (rwkv === undefined || other === undefined || fp16 === undefined) return;
  const file = path.join(dir, 'v4.state');
  const s = rwkv.createState();
  await rwkv.feed(s, 'abc');
  await rwkv.saveState(file, s);
  await assert.rejects(() => other.loadState(file), (e: unknown) => e instanceof StateError && /belongs to RWKV v4, /.test(e.message) && /this model is RWKV v5\.1/.test(e.message));
  // The same weights in FP16 accept it: the fingerprint tolerates the rounding.
  assert.deepEqual((await fp16.loadState(file)).logits, s.logits);
  // A random model of exactly the same shape is refused.
  const c = rwkv.config;
  const twin = await Rwkv.fromModel(
    modelFromSource(randomSource({ version: '4', nLayer: c.nLayer, nEmbd: c.nEmbd, nVocab: c.nVocab }, { seed: 1, allocate: (n) => backend.allocateBytes(n) }), backend),
    { tokenizer: 'bytes' },
  );
  assert.equal(twin.model.createState().data.length, s.state.data.length);
  await assert.rejects(() => twin.loadState(file), (e: unknown) => e instanceof StateError && /same shape but other weights/.test(e.message));
  // Damaged files.
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(path.join(dir, 'short.state'), bytes.subarray(0, bytes.length - 4));
  await assert.rejects(() => rwkv.loadState(path.join(dir, 'short.state')), /truncated or corrupt/);
  fs.writeFileSync(path.join(dir, 'magic.state'), Buffer.concat([Buffer.from('NOTSTATE'), bytes.subarray(8)]));
  await assert.rejects(() => rwkv.loadState(path.join(dir, 'magic.state')), /not an rwkv-ts state file/);
  await assert.rejects(() => rwkv.loadState(path.join(dir, 'missing.state')), /no such state file/);
  // A state object of another model is refused too.
  assert.throws(() => other.generate('x', { state: s }), ArgumentError);
});

/** A model that records the tokens of every sequence it is asked to read. */
function counting(model: RwkvModel): { model: RwkvModel; read: number[][] } {
  const read: number[][] = [];
  const wrapped: RwkvModel = Object.create(model, {
    run: {
      value: (batch: Parameters<RwkvModel['run']>[0]) => {
        for (const seq of batch) read.push([...seq.tokens]);
        return model.run(batch);
      },
    },
  });
  return { model: wrapped, read };
}

test('prefix cache: a shared prefix is not read again, and the results equal those without a cache', async (t) => {
  const file = fixture(t, 'tiny-rwkv-6v0-1m-FP32.bin');
  const inputPath = fixture(t, 'input-1024.txt');
  if (file === undefined || inputPath === undefined) return;
  const base = await loadModel(file, { backend });
  const { model, read } = counting(base);
  const cached = await Rwkv.fromModel(model);
  const uncached = await Rwkv.fromModel(base, { prefixCache: false });
  const prefix = fs.readFileSync(inputPath, 'latin1').slice(0, 300);
  const promptA = `${prefix} First question?`;
  const promptB = `${prefix} Second one!`;
  const options = { maxTokens: 20, seed: 9, topP: 0.9 };

  // Every generated token is read too, after the prompt.
  const a = await collect(cached.generate(promptA, options));
  assert.deepEqual(read.flat(), [...cached.encode(promptA), ...a.ids]);
  read.length = 0;
  const gb = cached.generate(promptB, options);
  const b = await collect(gb);
  // Blocks of 64 from the start: the 256 tokens of the shared prefix up to the last boundary are reused.
  const idsB = cached.encode(promptB);
  assert.equal(gb.stats.reusedTokens, 256);
  assert.deepEqual(read.flat(), [...idsB.slice(256), ...b.ids]);
  assert.equal(gb.stats.promptTokens, idsB.length);
  // The same prompt again reads none of it.
  read.length = 0;
  const a2 = await collect(cached.generate(promptA, options));
  assert.deepEqual(read.flat(), a2.ids);
  // Identical to no cache: text, tokens, log-probs, final state.
  const ua = await collect(uncached.generate(promptA, options));
  const gub = uncached.generate(promptB, options);
  const ub = await collect(gub);
  assert.deepEqual(a, ua);
  assert.deepEqual(a2, ua);
  assert.deepEqual(b, ub);
  assert.deepEqual(gb.state.state.data, gub.state.state.data);
  // The cache never changes a state given explicitly.
  const s = cached.createState();
  await cached.feed(s, 'zz');
  read.length = 0;
  const fromS = await collect(cached.generate(promptA, { ...options, state: s }));
  assert.equal(read.flat().length, cached.encode(promptA).length + fromS.ids.length);
});

test('score: per-token log-likelihoods equal RNN-mode log-softmax (≤ 1e-4); a state carries on', async (t) => {
  const rwkv = await open(t, 'tiny-rwkv-7v0-834K-FP32.bin');
  if (rwkv === undefined) return;
  const text = 'The quick brown fox jumps over the lazy dog. '.repeat(3);
  const r = await rwkv.score(text);
  const ids = rwkv.encode(text);
  assert.deepEqual(r.ids, ids);
  const state = rwkv.model.createState();
  let logits = await rwkv.model.forward(0, state);
  const expected: number[] = [];
  for (const id of ids) {
    expected.push(logSoftmaxAt(logits, id));
    logits = await rwkv.model.forward(id, state);
  }
  assert.ok(maxAbsDiff(r.logProbs, expected) <= 1e-4, `max diff ${maxAbsDiff(r.logProbs, expected)}`);
  assert.ok(Math.abs(r.total - expected.reduce((x, y) => x + y, 0)) <= 1e-3);
  assert.ok(r.perplexity > 1 && Number.isFinite(r.perplexity));
  // Scoring in two parts through a state gives the same log-probs.
  const s = rwkv.createState();
  const first = await rwkv.score(text.slice(0, 50), { state: s });
  const second = await rwkv.score(text.slice(50), { state: s });
  assert.ok(maxAbsDiff([...first.logProbs, ...second.logProbs], expected) <= 1e-4);
  assert.equal(s.tokenCount, 1 + ids.length);
  assert.deepEqual((await rwkv.score('')).logProbs, []);
});

test('invalid generate options are refused before any work, naming the problem', async (t) => {
  const rwkv = await open(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (rwkv === undefined) return;
  assert.throws(() => rwkv.generate('x', { topP: 0 }), /top-p must be in \(0, 1\]/);
  assert.throws(() => rwkv.generate('x', { temperature: -0.5 }), /temperature must be a number ≥ 0/);
  assert.throws(() => rwkv.generate('x', { bannedTokens: [256] }), /banned token: 256 is not a token id \(the vocabulary is 0\.\.255\)/);
  assert.throws(() => rwkv.generate([1, 999], {}), /prompt token 999 is not a token id/);
  assert.throws(() => rwkv.generate('', { state: RwkvState.fresh(rwkv.model), stopTokens: [-3] }), /stop token: -3/);
});
