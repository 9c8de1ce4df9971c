// The evaluation harness without a model: every prompt template on hand-made items (exact context and
// continuation strings, as lm-eval v0.3.0 builds them), Python's whitespace and lengths, WikiText's
// documents and detokenizer, hellaswag's preprocessing, the metrics on constructed log-likelihoods, the
// shared data files as read, and bad input (a missing file, a malformed record, an unknown task).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ArgumentError } from '../src/errors.js';
import { DataFiles, EvalDataError } from '../src/eval/data.js';
import {
  accuracy,
  argmax,
  bitsPerByte,
  choiceMetrics,
  lambadaMetrics,
  meanStderr,
  normalizedAccuracy,
  perplexity,
  perplexityMetrics,
  weightedPerplexity,
} from '../src/eval/metrics.js';
import {
  arcRequests,
  boolqRequests,
  copaRequests,
  hellaswagPreprocess,
  hellaswagRequests,
  lambadaRequest,
  loadTask,
  openbookqaRequests,
  parseTasks,
  piqaRequests,
  TASK_NAMES,
  taskInfo,
  winograndeRequests,
} from '../src/eval/tasks.js';
import { pyLen, pySplitCount, pyStrip, utf8Length } from '../src/eval/text.js';
import { wikitextDetokenize, wikitextDocuments } from '../src/eval/wikitext.js';
import { DATA_DIR, dataFile } from './helpers/data.js';
import { tempDir } from './helpers/formats.js';

const ctxs = (rs: readonly { context: string }[]): string[] => rs.map((r) => r.context);
const conts = (rs: readonly { continuation: string }[]): string[] => rs.map((r) => r.continuation);

// ---- templates ----

test('lambada: context up to the last space, target " " + the last word; no space is refused', () => {
  assert.deepEqual(lambadaRequest('He said "hello" to Ann'), { context: 'He said "hello" to', continuation: ' Ann' });
  // Python's rsplit(" ", 1) splits at the last single space, whatever precedes it.
  assert.deepEqual(lambadaRequest('a\n\nb  c'), { context: 'a\n\nb ', continuation: ' c' });
  assert.deepEqual(lambadaRequest('end with space '), { context: 'end with space', continuation: ' ' });
  assert.throws(() => lambadaRequest('oneword'), /no space/);
});

test('piqa: "Question: {goal}\\nAnswer:" and " {sol}"', () => {
  const rs = piqaRequests('How do I open a jar?', 'Twist the lid. ', 'Hit it.');
  assert.deepEqual(ctxs(rs), ['Question: How do I open a jar?\nAnswer:', 'Question: How do I open a jar?\nAnswer:']);
  assert.deepEqual(conts(rs), [' Twist the lid. ', ' Hit it.']);
});

test('arc: "{query}\\nAnswer:" (query starts with "Question: ") and " {choice}"; other queries refused', () => {
  const rs = arcRequests('Question: Which is a gas?', ['ice', 'steam', 'rock']);
  assert.deepEqual(ctxs(rs), Array(3).fill('Question: Which is a gas?\nAnswer:'));
  assert.deepEqual(conts(rs), [' ice', ' steam', ' rock']);
  assert.throws(() => arcRequests('Which is a gas?', ['a']), /Question: /);
});

test('openbookqa: the question stem as it is and " {choice}"', () => {
  const rs = openbookqaRequests('Predators eat', ['lions', 'bunnies']);
  assert.deepEqual(ctxs(rs), ['Predators eat', 'Predators eat']);
  assert.deepEqual(conts(rs), [' lions', ' bunnies']);
});

test('copa: the comma before the connector removed (= lm-eval\'s premise[:-1] + " because"); choices first letter lower-cased', () => {
  // lm-eval builds the context from the raw premise: premise.strip()[:-1] + " " + connector.
  const premise = 'The man turned on the faucet.';
  const lmEval = `${pyStrip(premise).slice(0, -1)} therefore`;
  const rs = copaRequests('The man turned on the faucet, therefore', ['The toilet filled with water.', 'water flowed from the spout.']);
  assert.deepEqual(ctxs(rs), [lmEval, lmEval]);
  assert.equal(rs[0]!.context, 'The man turned on the faucet therefore');
  assert.deepEqual(conts(rs), [' the toilet filled with water.', ' water flowed from the spout.']);
  assert.equal(copaRequests('I was tired, because', ['Éa'])[0]!.context, 'I was tired because');
  assert.equal(copaRequests('I was tired, because', ['Éa'])[0]!.continuation, ' éa');
  assert.throws(() => copaRequests('I was tired because', ['x']), /therefore|because/);
});

test('boolq: "{passage}\\nQuestion: {question}?\\nAnswer:" from the file\'s "Passage: …\\nQuestion: …?"; " no", " yes"', () => {
  const passage = 'Ethanol fuel is made from corn.';
  const question = 'is ethanol made from corn';
  const lmEval = `${passage}\nQuestion: ${question}?\nAnswer:`;
  const rs = boolqRequests(`Passage: ${passage}\nQuestion: ${question}?`);
  assert.deepEqual(ctxs(rs), [lmEval, lmEval]);
  assert.deepEqual(conts(rs), [' no', ' yes']);
  assert.throws(() => boolqRequests(`${passage}\nQuestion: ${question}?`), /Passage: /);
  assert.throws(() => boolqRequests(`Passage: ${passage}\nQuestion: ${question}`), /\?/);
});

test('winogrande: " {continuation}" after each context option (partial scoring)', () => {
  const rs = winograndeRequests(['Sarah was better than Maria so Sarah', 'Sarah was better than Maria so Maria'], 'got the easier cases.');
  assert.deepEqual(ctxs(rs), ['Sarah was better than Maria so Sarah', 'Sarah was better than Maria so Maria']);
  assert.deepEqual(conts(rs), [' got the easier cases.', ' got the easier cases.']);
  assert.throws(() => winograndeRequests(['only one'], 'x'), /two/);
});

test('hellaswag: preprocess strips, " [title]" → ". ", drops every […], folds double spaces once (values from Python)', () => {
  assert.equal(hellaswagPreprocess('  Home [title] How to cook [step] Boil   water.  '), 'Home. How to cook Boil  water.');
  assert.equal(hellaswagPreprocess('A [header] b [substeps]\u00a0c '), 'A b \u00a0c');
  assert.equal(hellaswagPreprocess('x [a\nb] y'), 'x [a\nb] y'); // Python's "." does not cross a newline
  const rs = hellaswagRequests('Baking: A woman [step] mixes. she', ['stirs  the bowl.', ' [title] bakes']);
  assert.deepEqual(ctxs(rs), ['Baking: A woman mixes. she', 'Baking: A woman mixes. she']);
  assert.deepEqual(conts(rs), [' stirs the bowl.', '  bakes']); // stripped first, so "[title]" has no space before it
});

// ---- Python's strings ----

test('Python whitespace, strip, len and re.split counts (values from Python 3)', () => {
  assert.equal(pyStrip('\x1c\x85 a b\u3000\n'), 'a b');
  assert.equal(pyStrip('\ufeffa'), '\ufeffa'); // not whitespace in Python
  assert.equal(pySplitCount(' a  b\n'), 4);
  assert.equal(pySplitCount(''), 1);
  assert.equal(pySplitCount('\x1ca\x85b\ufeffc'), 3);
  assert.equal(pySplitCount('one'), 1);
  assert.equal(pyLen('a😀é'), 3);
  assert.equal('a😀é'.length, 4);
  for (const s of ['plain', 'é', '😀 x', '\u2028', 'a\ud800b']) assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
});

// ---- WikiText ----

test('wikitext detokenizer: outputs equal Python lm-eval v0.3.0 on constructed pages', () => {
  const cases: [string, string][] = [
    [
      ' = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role in 2 @,@ 000 and 3 @.@ 5 m . \n',
      ' = Robert Boulter =\n\nRobert Boulter is an English film, television and theatre actor. He had a guest-starring role in 2,000 and 3.5 m.\n',
    ],
    [
      ' = = Career = = \n \n He said " It \'s fine " ( in 1999 ) ; the players \' wages [ sic ] { x } rose 5 \u00b0 C : N of them ! Why ? \n = = = Sub = = = \n',
      ' == Career ==\n\nHe said "It\'s fine" (in 1999); the players\' wages [sic] {x} rose 5\u00b0C: 1 of them! Why?\n=== Sub ===\n',
    ],
    ["It was ' quoted ' and /' 9/ and ( \n multi \n line ) done", "It was'quoted' and /'[0-9]/ and (multi\nline) done"],
  ];
  for (const [raw, expected] of cases) assert.equal(wikitextDetokenize(raw), expected);
});

test('wikitext documents: a new one at each top-level heading; whitespace-only pages dropped; the last kept', () => {
  const raw = [' ', ' = A = ', ' ', ' text a . ', ' = = Sub = = ', ' more ', ' = = = Deeper = = = ', ' = B = ', ' b ', ''].join('\n');
  const docs = wikitextDocuments(raw);
  assert.deepEqual(docs, [' = A = \n \n text a . \n = = Sub = = \n more \n = = = Deeper = = = ', ' = B = \n b \n']);
});

test('wikitext: the shared test file gives 62 documents, each starting at a heading', async (t) => {
  const file = dataFile(t, 'wikitext/wiki.test.raw.reconstructed');
  if (file === undefined) return;
  const task = await loadTask('wikitext', new DataFiles(DATA_DIR));
  assert.equal(task.items.length, 62);
  const docs = wikitextDocuments(fs.readFileSync(file, 'utf8'));
  for (const d of docs) assert.match(d, /^ = [^=].* = $/m);
  // Words and bytes are counted on the raw pages, which together are the whole file.
  const bytes = task.items.reduce((a, d) => a + (d as { bytes: number }).bytes, 0);
  assert.equal(bytes + 61 + 2, fs.statSync(file).size); // + the 61 joins between pages and the dropped leading " \n"
});

// ---- metrics ----

test('argmax is numpy\'s (first maximum, NaN wins); acc and acc_norm on constructed log-likelihoods', () => {
  assert.equal(argmax([1, 3, 3]), 1);
  assert.equal(argmax([1, NaN, 3]), 1);
  assert.equal(accuracy([-10, -12], 0), 1);
  assert.equal(accuracy([-10, -12], 1), 0);
  // ll ÷ length: −10/5 = −2 against −12/20 = −0.6: the longer choice wins once normalised.
  assert.equal(normalizedAccuracy([-10, -12], [5, 20], 1), 1);
  assert.equal(normalizedAccuracy([-10, -12], [5, 20], 0), 0);
});

test('stderr = sample standard deviation ÷ √n; perplexities; bits per byte', () => {
  // [1, 0, 1, 1]: mean 0.75, sample variance (3·0.0625 + 0.5625)/3 = 0.25, so 0.5/√4 = 0.25.
  assert.equal(meanStderr([1, 0, 1, 1]), 0.25);
  assert.ok(Number.isNaN(meanStderr([1])));
  assert.ok(Math.abs(perplexity([-1, -3]) - Math.exp(2)) < 1e-12);
  assert.ok(Math.abs(weightedPerplexity([-10, -20], [5, 10]) - Math.exp(2)) < 1e-12);
  assert.ok(Math.abs(bitsPerByte([-8 * Math.LN2, -8 * Math.LN2], [4, 4]) - 2) < 1e-12);
  const w = perplexityMetrics([
    { loglikelihood: -30, words: 10, bytes: 40 },
    { loglikelihood: -10, words: 10, bytes: 20 },
  ]);
  assert.equal(w.n, 2);
  assert.ok(Math.abs(w.word_perplexity - Math.exp(2)) < 1e-12);
  assert.ok(Math.abs(w.byte_perplexity - Math.exp(40 / 60)) < 1e-12);
  assert.ok(Math.abs(w.bits_per_byte - 40 / 60 / Math.LN2) < 1e-12);
});

test('task metrics: choice (acc, acc_norm), lambada (ppl of the mean ll, greedy acc)', () => {
  // acc per item: 0, 1, 1; acc_norm (ll ÷ length: [−1, −0.2], [−3, −0.2], [−5, −0.9]): 1, 1, 0.
  const outcomes = [
    { loglikelihoods: [-1, -2], isGreedy: [false, false], gold: 1, normLengths: [1, 10] },
    { loglikelihoods: [-3, -2], isGreedy: [false, false], gold: 1, normLengths: [1, 10] },
    { loglikelihoods: [-5, -9], isGreedy: [false, false], gold: 0, normLengths: [1, 10] },
  ];
  const m = choiceMetrics(outcomes, true);
  assert.equal(m.n, 3);
  assert.ok(Math.abs(m.acc - 2 / 3) < 1e-12);
  assert.ok(Math.abs(m.acc_norm! - 2 / 3) < 1e-12);
  assert.ok(Math.abs(m.acc_stderr - meanStderr([0, 1, 1])) < 1e-15);
  assert.ok(Math.abs(m.acc_stderr - Math.sqrt(1 / 3) / Math.sqrt(3)) < 1e-12);
  assert.equal(choiceMetrics(outcomes, false).acc_norm, undefined);
  const l = lambadaMetrics([
    { loglikelihoods: [-2], isGreedy: [true], gold: 0 },
    { loglikelihoods: [-4], isGreedy: [false], gold: 0 },
  ]);
  assert.ok(Math.abs(l.ppl - Math.exp(3)) < 1e-12);
  assert.equal(l.acc, 0.5);
});

// ---- data files ----

test('every task reads its shared data file; counts are lm-eval\'s', async (t) => {
  const counts: Record<string, number> = {
    lambada: 5153, piqa: 1838, hellaswag: 10042, winogrande: 1267, arc_easy: 2376, arc_challenge: 1172, openbookqa: 500, copa: 100, boolq: 3270, wikitext: 62,
  };
  for (const name of TASK_NAMES) {
    if (taskInfo(name).files.some((f) => dataFile(t, f) === undefined)) return;
  }
  const files = new DataFiles(DATA_DIR);
  for (const name of TASK_NAMES) {
    const task = await loadTask(name, files);
    assert.equal(task.items.length, counts[name], name);
    if (task.kind !== 'perplexity') {
      for (const item of task.items) {
        assert.ok(item.gold >= 0 && item.gold < item.requests.length, `${name} ${item.doc}`);
        if (task.kind === 'choice_norm') assert.equal(item.normLengths!.length, item.requests.length);
      }
    }
  }
  // Spot checks against the files' first records.
  const piqa = await loadTask('piqa', files, 1);
  assert.equal(piqa.kind === 'choice_norm' && piqa.items[0]!.requests[0]!.context, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  const limited = await loadTask('hellaswag', files, 3);
  assert.equal(limited.items.length, 3);
});

// ---- bad input ----

function dataDir(files: Record<string, string>): string {
  const dir = tempDir('eval-data');
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(dir, path.dirname(name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

async function rejects(p: Promise<unknown>, check: (e: unknown) => void): Promise<void> {
  let thrown: unknown;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  assert.ok(thrown !== undefined, 'expected an error');
  check(thrown);
}

test('a missing data file is one EvalDataError naming it', async () => {
  const dir = dataDir({});
  await rejects(loadTask('copa', new DataFiles(dir)), (e) => {
    assert.ok(e instanceof EvalDataError);
    assert.equal(e.code, 'FILE_NOT_FOUND');
    assert.ok(e.message.includes(path.join(dir, 'copa/copa_val.llm-foundry.jsonl')), e.message);
    assert.ok(!e.message.includes('\n'));
  });
  // Through a reader, the file's name is given.
  await rejects(loadTask('piqa', new DataFiles(async (f) => { throw new Error(`nothing at ${f}`); })), (e) => {
    assert.ok(e instanceof EvalDataError && e.message.startsWith('piqa/valid.jsonl: '), String(e));
  });
});

test('a malformed record is one EvalDataError naming file:line and what is wrong', async () => {
  const good = '{"query": "It rained, therefore", "choices": ["a", "b"], "gold": 0}';
  const cases: [string, string, RegExp][] = [
    [`${good}\n{"query": broken\n`, ':2', /not a JSON record/],
    [`${good}\n\n${good}\n{"choices": ["a"], "gold": 0}\n`, ':4', /"query"/],
    [`${good}\n{"query": "x, therefore", "choices": ["a", "b"], "gold": 2}\n`, ':2', /"gold".*0 to 1/],
    [`{"query": "no connector", "choices": ["a", "b"], "gold": 0}\n`, ':1', /therefore/],
    [`[1, 2]\n`, ':1', /JSON object/],
  ];
  for (const [text, line, why] of cases) {
    const dir = dataDir({ 'copa/copa_val.llm-foundry.jsonl': text });
    await rejects(loadTask('copa', new DataFiles(dir)), (e) => {
      assert.ok(e instanceof EvalDataError, String(e));
      assert.equal(e.code, 'BAD_DATA');
      assert.ok(e.message.startsWith(`${path.join(dir, 'copa/copa_val.llm-foundry.jsonl')}${line}: `), e.message);
      assert.match(e.message, why);
    });
  }
  // piqa: a bad label names the labels file and its line.
  const dir = dataDir({ 'piqa/valid.jsonl': '{"goal": "g", "sol1": "a", "sol2": "b"}\n'.repeat(2), 'piqa/valid-labels.lst': '0\n2\n' });
  await rejects(loadTask('piqa', new DataFiles(dir)), (e) => {
    assert.ok(e instanceof EvalDataError && e.message.startsWith(`${path.join(dir, 'piqa/valid-labels.lst')}:2: `), String(e));
  });
  // hellaswag: not bzip2.
  const hs = dataDir({ 'hellaswag/hellaswag_val_full.txt.bz2': 'plain text' });
  await rejects(loadTask('hellaswag', new DataFiles(hs)), (e) => {
    assert.ok(e instanceof EvalDataError && /bzip2/.test(e.message), String(e));
  });
});

test('an unknown task is one ArgumentError listing the known ones', () => {
  assert.throws(
    () => parseTasks(['piqa', 'hellaswagg']),
    (e: unknown) => e instanceof ArgumentError && e.message.includes("'hellaswagg'") && e.message.includes('wikitext'),
  );
  assert.deepEqual(parseTasks(['piqa', ' copa', 'piqa']), ['piqa', 'copa']);
});
