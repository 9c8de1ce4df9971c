// The harness on a real (tiny, byte-level) fixture model: every task's log-likelihoods and greedy flags
// against an independent float64 computation — the reference backend fed the prefix token, the context and
// the continuation one token at a time (RNN mode), log-softmax summed in float64 — on hand-made items whose
// exact context and continuation strings are written out here; the same through the WebAssembly kernels;
// no prefix token; the metrics from the samples; abort; evaluateText.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AbortError } from '../src/errors.js';
import { evaluate, evaluateText, type ChoiceSample, type DocumentSample, type EvalSample } from '../src/eval/evaluate.js';
import { argmax, choiceMetrics, lambadaMetrics, perplexityMetrics } from '../src/eval/metrics.js';
import { TASK_NAMES } from '../src/eval/tasks.js';
import { wikitextDetokenize, wikitextDocuments } from '../src/eval/wikitext.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { loadModel } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';

const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';
const NL = 10; // the byte "\n", the default prefix token of a byte-level model

// A hellaswag file of two items (6 lines each), bzip2-compressed by Python's bz2 module:
// "Baking cookies: A woman puts flour in a bowl. she" / 2 / "throws the bowl at the wall." / "sings [title] a song." /
// "mixes the flour with eggs and sugar." / "leaves the room  quickly." / "Running: A man ties his shoes. he" / 0 /
// "starts to run down the street." / "eats the shoes." / "flies to the moon." / "[step] reads a book."
const HELLASWAG_BZ2 =
  'QlpoOTFBWSZTWYIHofEAACVfgAAQQAFQEDAAEAo/7//gMADADTSMiNGImImEPIYyYmmE0xMBNMBjJiaYTTEwE0wWEABFuJD2PFV8XxO78O2S+7xe9IeZrOi94BiJ/CoalPXTyk9rwO4hC4ghp8VF788CM6K4KfpzPbhAK2qqthPrpdwcsJDJOorXFuyoiqFc57sZPbWWtRr/tQvblyMpjNjpaWBcxUizYioZJG3Nt9NBEeY7XGYutTWC7TLS0uogCA6ak8qMI6CcURy8FEcpZw6XrYenmIITh2+i7kinChIQQPQ+IA==';

const WIKI_RAW = ' \n = Alpha = \n \n Alpha is a letter , used @-@ often . \n \n = Beta = \n \n Beta ( b ) is " two " . \n \n';

const jsonl = (...records: unknown[]): string => records.map((r) => `${JSON.stringify(r)}\n`).join('');

const FILES: Record<string, string | Uint8Array> = {
  'lambada/lambada_test.jsonl': jsonl({ text: 'The cat sat on the mat' }, { text: 'She said "good night" and went to bed' }),
  'piqa/valid.jsonl': jsonl({ goal: 'Open a jar', sol1: 'Twist the lid.', sol2: 'Eat the jar.' }, { goal: 'Dry wet hair', sol1: 'Use a fire.', sol2: 'Use a towel.' }),
  'piqa/valid-labels.lst': '0\n1\n',
  'hellaswag/hellaswag_val_full.txt.bz2': Buffer.from(HELLASWAG_BZ2, 'base64'),
  'winogrande/winogrande.llm-foundry.jsonl': jsonl({ context_options: ['Tom thanked Bob because Bob', 'Tom thanked Bob because Tom'], continuation: 'had helped.', gold: 0 }),
  'arc/arc_easy_test.jsonl': jsonl({ query: 'Question: What is ice?', choices: ['frozen water', 'hot air', 'sand'], gold: 0 }),
  'arc/arc_challenge_test.jsonl': jsonl({ query: 'Question: Which one is a planet?', choices: ['Mars', 'the Moon', 'the Sun', 'a comet', 'Pluto'], gold: 0 }),
  'openbookqa/openbookqa_test.llm-foundry.jsonl': jsonl({ query: 'Plants need', choices: ['light', 'shoes', 'cars', 'music'], gold: 0 }),
  'copa/copa_val.llm-foundry.jsonl': jsonl({ query: 'The glass fell, therefore', choices: ['It broke.', 'it sang.'], gold: 0 }),
  'boolq/boolq_dev.llm-foundry.jsonl': jsonl({ query: 'Passage: The sky is blue.\nQuestion: is the sky blue?', choices: ['no', 'yes'], gold: 1 }),
  'wikitext/wiki.test.raw.reconstructed': WIKI_RAW,
};

const reader = async (file: string): Promise<Uint8Array> => {
  const v = FILES[file];
  if (v === undefined) throw new Error(`no ${file}`);
  return typeof v === 'string' ? new TextEncoder().encode(v) : v;
};

/** The requests lm-eval v0.3.0 builds from the records above, written out by hand: [context, continuations, gold]. */
const EXPECTED: Record<string, [string | string[], string[], number][]> = {
  lambada: [
    ['The cat sat on the', [' mat'], 0],
    ['She said "good night" and went to', [' bed'], 0],
  ],
  piqa: [
    ['Question: Open a jar\nAnswer:', [' Twist the lid.', ' Eat the jar.'], 0],
    ['Question: Dry wet hair\nAnswer:', [' Use a fire.', ' Use a towel.'], 1],
  ],
  hellaswag: [
    ['Baking cookies: A woman puts flour in a bowl. she', [' throws the bowl at the wall.', ' sings. a song.', ' mixes the flour with eggs and sugar.', ' leaves the room quickly.'], 2],
    ['Running: A man ties his shoes. he', [' starts to run down the street.', ' eats the shoes.', ' flies to the moon.', '  reads a book.'], 0],
  ],
  winogrande: [[['Tom thanked Bob because Bob', 'Tom thanked Bob because Tom'], [' had helped.', ' had helped.'], 0]],
  arc_easy: [['Question: What is ice?\nAnswer:', [' frozen water', ' hot air', ' sand'], 0]],
  arc_challenge: [['Question: Which one is a planet?\nAnswer:', [' Mars', ' the Moon', ' the Sun', ' a comet', ' Pluto'], 0]],
  openbookqa: [['Plants need', [' light', ' shoes', ' cars', ' music'], 0]],
  copa: [['The glass fell therefore', [' it broke.', ' it sang.'], 0]],
  boolq: [['The sky is blue.\nQuestion: is the sky blue?\nAnswer:', [' no', ' yes'], 1]],
};

const bytes = (s: string): number[] => [...new TextEncoder().encode(s)];

function logSoftmax64(logits: Float32Array, id: number): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[id]! - max - Math.log(sum);
}

/** log p(cont | prefix, ctx), RNN mode one token at a time, float64 sums; and whether greedy decoding gives cont. */
async function oracle(model: RwkvModel, prefix: number[], ctx: number[], cont: number[]): Promise<{ ll: number; greedy: boolean }> {
  const state = model.createState();
  let logits: Float32Array | undefined;
  for (const t of [...prefix, ...ctx]) logits = await model.forward(t, state);
  let ll = 0;
  let greedy = true;
  for (const t of cont) {
    ll += logSoftmax64(logits!, t);
    greedy &&= argmax(logits!) === t;
    logits = await model.forward(t, state);
  }
  return { ll, greedy };
}

let referenceModel: Promise<RwkvModel> | undefined;
function reference(file: string): Promise<RwkvModel> {
  referenceModel ??= loadModel(file, { backend: new ReferenceBackend() });
  return referenceModel;
}

async function run(rwkv: Rwkv, prefixToken: string | null, tasks: readonly string[] = TASK_NAMES) {
  const samples: EvalSample[] = [];
  const progress: number[] = [];
  const results = await evaluate(rwkv, { tasks, data: reader, prefixToken, concurrency: 3, onSample: (s) => samples.push(s), onProgress: (p) => progress.push(p.done) });
  return { results, samples, progress };
}

/** Every sample against the oracle; returns the largest |Δll|. */
async function checkAgainstOracle(model: RwkvModel, samples: readonly EvalSample[], prefix: number[], tolerance: number): Promise<number> {
  let worst = 0;
  const docs = wikitextDocuments(WIKI_RAW);
  for (const s of samples) {
    if (s.task === 'wikitext') {
      const ids = bytes(wikitextDetokenize(docs[s.doc]!));
      const { ll } = prefix.length > 0 ? await oracle(model, prefix, [], ids) : await oracle(model, [], ids.slice(0, 1), ids.slice(1));
      assert.equal(s.words, docs[s.doc]!.split(/\s+/).length);
      assert.equal(s.bytes, bytes(docs[s.doc]!).length);
      worst = Math.max(worst, Math.abs(s.loglikelihood - ll));
      assert.ok(Math.abs(s.loglikelihood - ll) <= tolerance, `wikitext ${s.doc}: ${s.loglikelihood} vs ${ll}`);
      continue;
    }
    const [context, conts, gold] = EXPECTED[s.task]![s.doc]!;
    assert.equal(s.gold, gold, `${s.task} ${s.doc} gold`);
    assert.equal(s.loglikelihoods.length, conts.length);
    for (let i = 0; i < conts.length; i++) {
      const ctx = Array.isArray(context) ? context[i]! : context;
      const want = await oracle(model, prefix, bytes(ctx), bytes(conts[i]!));
      worst = Math.max(worst, Math.abs(s.loglikelihoods[i]! - want.ll));
      assert.ok(Math.abs(s.loglikelihoods[i]! - want.ll) <= tolerance, `${s.task} ${s.doc} choice ${i}: ${s.loglikelihoods[i]} vs ${want.ll}`);
      assert.equal(s.is_greedy[i], want.greedy, `${s.task} ${s.doc} choice ${i} greedy`);
    }
  }
  return worst;
}

test('every task on hand-made items: log-likelihoods and greedy flags equal a float64 RNN-mode computation (reference backend, then WASM)', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const model = await reference(file);
  const ref = await run(await Rwkv.fromModel(model), '\n');
  // One sample per item, in task order then file order.
  const order = ref.samples.map((s) => `${s.task}:${s.doc}`);
  const expectedOrder = TASK_NAMES.flatMap((task) => (task === 'wikitext' ? [0, 1] : EXPECTED[task]!.map((_, i) => i)).map((i) => `${task}:${i}`));
  assert.deepEqual(order, expectedOrder);
  assert.deepEqual(ref.progress, [0, ...order.map((_, i) => i + 1)]);
  const worstRef = await checkAgainstOracle(model, ref.samples, [NL], 1e-4);
  // The greedy flag is exercised both ways somewhere in the set.
  const flags = ref.samples.flatMap((s) => (s.task === 'wikitext' ? [] : s.is_greedy));
  assert.ok(flags.includes(false));

  const fast = await run(await Rwkv.fromModel(await loadModel(file, { backend: await testBackend() })), '\n');
  const worstWasm = await checkAgainstOracle(model, fast.samples, [NL], 2e-3);
  console.log(`# max |Δ log-likelihood| vs the float64 oracle: reference ${worstRef.toExponential(2)}, wasm ${worstWasm.toExponential(2)}`);

  // The metrics are lm-eval's aggregation of exactly these samples.
  const r = ref.results;
  assert.equal(r.prefixToken, '\n');
  assert.equal(r.limit, null);
  const choice = (task: string): ChoiceSample[] => ref.samples.filter((s): s is ChoiceSample => s.task === task);
  const outcomes = (task: string) =>
    choice(task).map((s) => {
      const [, conts] = EXPECTED[task]![s.doc]!;
      return { loglikelihoods: s.loglikelihoods, isGreedy: s.is_greedy, gold: s.gold, normLengths: conts.map((c) => [...c.slice(1)].length) };
    });
  assert.deepEqual(r.tasks.lambada, lambadaMetrics(outcomes('lambada')));
  for (const task of ['piqa', 'hellaswag', 'arc_easy', 'arc_challenge', 'openbookqa'] as const) assert.deepEqual(r.tasks[task], choiceMetrics(outcomes(task), true), task);
  for (const task of ['winogrande', 'copa', 'boolq'] as const) assert.deepEqual(r.tasks[task], choiceMetrics(outcomes(task), false), task);
  assert.deepEqual(r.tasks.wikitext, perplexityMetrics(ref.samples.filter((s): s is DocumentSample => s.task === 'wikitext')));
});

test('--prefix-token none: contexts are read from a fresh state as they are; a WikiText page\'s first token is read unscored', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const model = await reference(file);
  const { results, samples } = await run(await Rwkv.fromModel(model), null, ['piqa', 'copa', 'wikitext']);
  assert.equal(results.prefixToken, null);
  await checkAgainstOracle(model, samples, [], 1e-4);
});

test('a prefix token that is not one token is refused; abort stops the evaluation', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const rwkv = await Rwkv.fromModel(await loadModel(file, { backend: await testBackend() }));
  await assert.rejects(evaluate(rwkv, { tasks: ['copa'], data: reader, prefixToken: 'ab' }), /2 tokens/);
  const controller = new AbortController();
  await assert.rejects(
    evaluate(rwkv, { tasks: ['hellaswag', 'piqa', 'wikitext'], data: reader, signal: controller.signal, onProgress: () => controller.abort() }),
    (e: unknown) => e instanceof AbortError,
  );
  await assert.rejects(evaluate(rwkv, { tasks: ['copa'], data: reader, limit: 0 }), /limit/);
});

test('evaluateText: a whole text scored after the prefix token equals Rwkv.score from that state; bits per byte from it', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const rwkv = await Rwkv.fromModel(await loadModel(file, { backend: await testBackend() }));
  const text = 'It was the best of times, it was the worst of times. '.repeat(12);
  const [r, r2] = await evaluateText(rwkv, [
    { name: 'a', content: text },
    { name: 'b', content: new TextEncoder().encode(text) },
  ]);
  const state = rwkv.createState();
  await rwkv.feed(state, [NL]);
  const want = await rwkv.score(text, { state });
  assert.equal(r!.tokens, text.length);
  assert.equal(r!.bytes, text.length);
  assert.ok(Math.abs(r!.loglikelihood - want.total) < 1e-3, `${r!.loglikelihood} vs ${want.total}`);
  assert.ok(Math.abs(r!.bits_per_byte - -want.total / text.length / Math.LN2) < 1e-6);
  assert.ok(Math.abs(r2!.loglikelihood - r!.loglikelihood) < 1e-3);
  assert.equal(r!.words, text.split(/\s+/).length);
});
