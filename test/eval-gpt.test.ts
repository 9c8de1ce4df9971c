// `rwkv eval` on a GPT-2 checkpoint: a tiny random model (n_positions 16, byte vocabulary) written to a
// temp dir, scored through the eval engine (GptScoringModel) and checked against log-softmax sums computed
// here straight from GptModel.forwardSequence's logits: requests that fit, requests cut from the left as
// lm-eval v0.3.0 cuts them, texts longer than the context in lm-eval's rolling windows (every token
// predicted once), and a task run end to end through the CLI on a tiny data directory.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { evaluate, evaluateText, rollingWindows, scoreChoiceItem } from '../src/eval/evaluate.js';
import { Scorer } from '../src/eval/scorer.js';
import { GptScoringModel } from '../src/eval/scoring-model.js';
import { writeSafetensors } from '../src/formats/safetensors-writer.js';
import { outTensor } from '../src/formats/writer.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { gptConfigJson, type GptFileConfig } from '../src/models/gpt-config.js';
import { loadGpt } from '../src/models/gpt-load.js';
import type { GptModel } from '../src/models/gpt.js';
import { randomGptSource } from '../src/models/gpt-random.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const M = 16;
const CONFIG: GptFileConfig = { nLayer: 2, nEmbd: 16, nHead: 4, nPositions: M, nVocab: 256, layerNormEps: 1e-5, tieWordEmbeddings: true };
const NL = 10; // "\n", the default prefix token, with the byte tokenizer
const TOL = 1e-5;
const bytes = (s: string): number[] => [...new TextEncoder().encode(s)];

let dir = '';
let gpt: GptModel;
let scoring: GptScoringModel;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-eval-gpt-'));
  // std 0.3: logits far from uniform, so that a token scored at the wrong position or after the wrong context shows.
  const source = randomGptSource(CONFIG, { std: 0.3, seed: 7 });
  writeSafetensors(path.join(dir, 'model.safetensors'), [...source.tensors.values()].map((t) => outTensor(t)));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...gptConfigJson(CONFIG), tie_word_embeddings: true }));
  gpt = await loadGpt(dir, { backend: new ReferenceBackend() });
  scoring = new GptScoringModel(gpt, new ByteTokenizer());
});

after(() => {
  gpt?.dispose();
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

/** log softmax(row)[target], float64. */
function logProb(row: Float32Array, target: number): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[target]! - max - Math.log(sum);
}

/** Σ log p of the last `targets.length` tokens of `fed + [last target]`, from one fresh forwardSequence over `fed`. */
async function independent(fed: readonly number[], targets: readonly number[]): Promise<number> {
  assert.ok(fed.length <= M, `fed ${fed.length} > ${M}`);
  const state = gpt.createState();
  const all = await gpt.forwardSequence(fed, state, { allLogits: true });
  gpt.disposeState(state);
  const V = CONFIG.nVocab;
  let ll = 0;
  targets.forEach((t, j) => {
    const pos = fed.length - targets.length + j;
    ll += logProb(all.subarray(pos * V, (pos + 1) * V), t);
  });
  return ll;
}

/** lm-eval v0.3.0's _loglikelihood_tokens for one request: (ctx + cont)[-(M+1):][:-1] fed, cont scored at the end. */
async function lmEvalLoglikelihood(ctx: readonly number[], cont: readonly number[]): Promise<number> {
  const whole = [...ctx, ...cont];
  return independent(whole.slice(-(M + 1)).slice(0, -1), cont);
}

test('a context + continuation: the engine reports Σ log-softmax of forwardSequence over the continuation; longer than n_positions, cut from the left as lm-eval does', async () => {
  const requests = [
    { context: 'It rained', continuation: ' so we ran' }, // 1 + 9 + 10 − 1 = 19 fed > 16: cut
    { context: 'Hi', continuation: ' there' }, // 1 + 2 + 6 − 1 = 8: fits
    { context: 'Hi', continuation: ' you' }, // shares its context's state with the one above
    { context: 'The quick brown fox jumps over the', continuation: ' lazy dog' }, // cut: 45 tokens
    { context: 'abcdefghi', continuation: 'jklmno' }, // 1 + 9 + 6 − 1 = 15: fits, one short of the edge
    { context: 'abcdefghij', continuation: 'klmnop' }, // 1 + 10 + 6 − 1 = 16: fits exactly
    { context: 'abcdefghijk', continuation: 'lmnopq' }, // 17: the prefix token is cut
  ];
  const scorer = new Scorer(scoring, { prefix: NL });
  const got = await scoreChoiceItem(scorer, { doc: 0, gold: 0, requests });
  const expected: number[] = [];
  for (const r of requests) expected.push(await lmEvalLoglikelihood([NL, ...bytes(r.context)], bytes(r.continuation)));
  got.loglikelihoods.forEach((ll, i) => assert.ok(Math.abs(ll - expected[i]!) < TOL, `request ${i}: ${ll} vs ${expected[i]}`));
  console.log(`# loglikelihoods ${got.loglikelihoods.map((v) => v.toFixed(4)).join(', ')}`);
  // Truncation matters here: the cut request differs from the same continuation after its whole context
  // (which the model could not even read), and from a cut one token too short.
  const cut = requests[3]!;
  const whole = [NL, ...bytes(cut.context), ...bytes(cut.continuation)];
  const oneShort = await independent(whole.slice(-M).slice(0, -1), bytes(cut.continuation));
  assert.ok(Math.abs(oneShort - got.loglikelihoods[3]!) > 1e-3, 'a window of M tokens instead of M + 1 gives another number');
  // is_greedy from the same rows: every row's argmax against the token.
  assert.equal(got.isGreedy.length, requests.length);
  // A continuation longer than the context is refused, as lm-eval asserts.
  await assert.rejects(scoreChoiceItem(scorer, { doc: 1, gold: 0, requests: [{ context: 'a', continuation: 'x'.repeat(M + 1) }] }), /longer than the model's context of 16/);
});

/** lm-eval's rolling windows, written out independently: [fed tokens, predicted tokens] per window. */
function independentWindows(first: number, ids: readonly number[]): [number[], number[]][] {
  const stream = [first, ...ids]; // stream[k + 1] = ids[k]
  const out: [number[], number[]][] = [];
  for (let start = 0; start < ids.length; start += M) {
    const end = Math.min(ids.length, start + M); // predicts ids[start, end)
    // Fed: the M stream tokens before ids[end − 1]'s position, or all of them from the start.
    const fedEnd = end; // stream index of ids[end − 1] is end; fed up to (not including) it
    const fedStart = Math.max(0, fedEnd - M);
    out.push([stream.slice(fedStart, fedEnd), ids.slice(start, end)]);
  }
  return out;
}

test('--text longer than n_positions: rolling windows of 16 predicted tokens, each after as much context as fits; every token once; equals an independent computation', async () => {
  const text = 'Now is the winter of our discontent made glorious summer by this sun of York.'; // 77 bytes: windows 16·4 + 13
  const ids = bytes(text);
  // The windows: every token predicted exactly once, each window feeding at most M tokens (M exactly after the first).
  const windows = rollingWindows(NL, ids, M);
  const predicted = windows.flatMap((w) => w.predicted);
  assert.deepEqual(predicted, ids);
  assert.deepEqual(windows.map((w) => w.context.length + w.predicted.length - 1), [16, 16, 16, 16, 16]);
  assert.deepEqual(windows.map((w) => w.predicted.length), [16, 16, 16, 16, 13]);
  assert.deepEqual(rollingWindows(NL, ids, Infinity), [{ context: [NL], predicted: ids }]);

  let expected = 0;
  const windowsHere = independentWindows(NL, ids);
  assert.equal(windowsHere.length, 5);
  for (const [fed, targets] of windowsHere) {
    assert.ok(fed.length === M || fed[0] === NL);
    expected += await independent(fed, targets);
  }
  let last = { done: 0, total: 0 };
  const [r] = await evaluateText(scoring, [{ name: 't.txt', content: text }], { onProgress: (p) => (last = p) });
  assert.ok(r !== undefined);
  assert.equal(r.tokens, ids.length);
  assert.equal(last.done, ids.length);
  assert.equal(last.total, ids.length);
  assert.ok(Math.abs(r.loglikelihood - expected) < TOL, `${r.loglikelihood} vs ${expected}`);
  assert.ok(Math.abs(r.token_perplexity - Math.exp(-expected / ids.length)) < 1e-9 * r.token_perplexity);
  console.log(`# ${ids.length} tokens in 5 windows: loglikelihood ${r.loglikelihood.toFixed(6)} (independent ${expected.toFixed(6)}), token ppl ${r.token_perplexity.toFixed(3)}`);

  // No prefix token: the first byte is read unscored and plays its part.
  let headless = 0;
  for (const [fed, targets] of independentWindows(ids[0]!, ids.slice(1))) headless += await independent(fed, targets);
  const [h] = await evaluateText(scoring, [{ name: 't.txt', content: text }], { prefixToken: null });
  assert.ok(Math.abs(h!.loglikelihood - headless) < TOL, `${h!.loglikelihood} vs ${headless}`);
  // Raw bytes score as the same string.
  const [b] = await evaluateText(scoring, [{ name: 't.txt', content: new TextEncoder().encode(text) }]);
  assert.equal(b!.loglikelihood, r.loglikelihood);
});

test('rwkv eval --model GPT_DIR: copa and lambada end to end on a tiny data dir (results table, results.json, samples.jsonl equal to the engine), and --text', async () => {
  const data = path.join(dir, 'data');
  fs.mkdirSync(path.join(data, 'copa'), { recursive: true });
  fs.mkdirSync(path.join(data, 'lambada'), { recursive: true });
  const copa = [
    // Continuations of at most 16 bytes (n_positions): longer ones are refused, as lm-eval asserts.
    { query: 'The man turned on the faucet, therefore', choices: ['It flooded.', 'Water ran out.'], gold: 1 },
    { query: 'The girl found a bug in her cereal, therefore', choices: ['She ate it.', 'She lost it.'], gold: 1 },
    { query: 'It rained, because', choices: ['Clouds came.', 'Sun shone.'], gold: 0 },
  ];
  fs.writeFileSync(path.join(data, 'copa', 'copa_val.llm-foundry.jsonl'), copa.map((r) => JSON.stringify(r)).join('\n') + '\n');
  const lambada = ['He opened the door and saw his old friend Ann', 'a b c'];
  fs.writeFileSync(path.join(data, 'lambada', 'lambada_test.jsonl'), lambada.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  const out = path.join(dir, 'results.json');
  const samples = path.join(dir, 'samples.jsonl');
  const r = spawnSync(process.execPath, [CLI, 'eval', '--model', dir, '--tasks', 'copa,lambada', '--data', data, '--kernels', 'reference', '--out', out, '--samples', samples, '--no-progress'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\| Task \| n \| Metric \| Value \| ± Stderr \|/);
  assert.match(r.stdout, /\| copa \| 3 \| acc \(%\) \|/);
  assert.match(r.stdout, /\| lambada \| 2 \| ppl \|/);
  assert.match(r.stderr, /rwkv eval: \d+ tokens in/);
  const results = JSON.parse(fs.readFileSync(out, 'utf8')) as { model: string; tasks: Record<string, Record<string, number>> };
  assert.equal(results.model, dir);
  const lines = fs.readFileSync(samples, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task: string; loglikelihoods: number[] });
  assert.equal(lines.length, 5);

  // The same numbers from the engine in this process (same reference kernels), and each from forwardSequence.
  const here = await evaluate(scoring, { tasks: ['copa', 'lambada'], data });
  const flat = (tasks: object): [string, number][] =>
    Object.entries(tasks).flatMap(([task, m]) => Object.entries(m as Record<string, number | null>).map(([k, v]): [string, number] => [`${task}.${k}`, v ?? NaN]));
  const wantMetrics = flat(JSON.parse(JSON.stringify(here.tasks)) as object);
  assert.deepEqual(flat(results.tasks).map(([k]) => k), wantMetrics.map(([k]) => k));
  flat(results.tasks).forEach(([k, v], i) => assert.ok(Object.is(v, wantMetrics[i]![1]) || Math.abs(v - wantMetrics[i]![1]) <= 1e-9 * Math.max(1, Math.abs(v)), `${k}: ${v} vs ${wantMetrics[i]![1]}`));
  const copaHere: number[][] = [];
  await evaluate(scoring, { tasks: ['copa'], data, onSample: (s) => void ('loglikelihoods' in s && copaHere.push(s.loglikelihoods)) });
  for (let i = 0; i < copa.length; i++) {
    const ctx = [NL, ...bytes(copa[i]!.query.replace(/, (therefore|because)$/, ' $1'))];
    for (let j = 0; j < 2; j++) {
      const cont = bytes(` ${copa[i]!.choices[j]![0]!.toLowerCase()}${copa[i]!.choices[j]!.slice(1)}`);
      const want = await lmEvalLoglikelihood(ctx, cont);
      assert.ok(Math.abs(lines[i]!.loglikelihoods[j]! - want) < TOL, `copa ${i}/${j}: ${lines[i]!.loglikelihoods[j]} vs ${want}`);
      assert.ok(Math.abs(copaHere[i]![j]! - want) < TOL);
    }
  }
  console.log(`# copa acc ${results.tasks.copa!.acc}, lambada ppl ${results.tasks.lambada!.ppl?.toFixed(2)}`);

  // --text over a file longer than n_positions: the rolling windows, as evaluateText here.
  const textFile = path.join(dir, 'long.txt');
  const text = 'To be, or not to be, that is the question: whether tis nobler in the mind to suffer';
  fs.writeFileSync(textFile, text);
  const tout = path.join(dir, 'text.json');
  const t = spawnSync(process.execPath, [CLI, 'eval', '--model', dir, '--text', textFile, '--kernels', 'reference', '--out', tout, '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /long\.txt/);
  const [want] = await evaluateText(scoring, [{ name: textFile, content: text }]);
  const got = (JSON.parse(fs.readFileSync(tout, 'utf8')) as { texts: Record<string, { loglikelihood: number; tokens: number }> }).texts[textFile]!;
  assert.equal(got.tokens, bytes(text).length);
  assert.ok(Math.abs(got.loglikelihood - want!.loglikelihood) < TOL, `${got.loglikelihood} vs ${want!.loglikelihood}`);
  // RWKV-only options are refused in one line.
  const s = spawnSync(process.execPath, [CLI, 'eval', '--model', dir, '--text', textFile, '--state-in', textFile], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(s.status, 1);
  assert.match(s.stderr.trim(), /^rwkv: --state-in is not supported for GPT models/);
});
