// `rwkv eval` as a user runs it: every task with --limit 10 on a tiny fixture model and the shared data
// (results.json, samples.jsonl and the markdown table), --text, and bad input as one line on stderr.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { EvalResults } from '../src/eval/evaluate.js';
import { TASK_NAMES, taskInfo } from '../src/eval/tasks.js';
import { DATA_DIR, dataFile } from './helpers/data.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';
import { tempDir } from './helpers/formats.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';

function rwkv(...args: string[]): { status: number | null; stdout: string; stderr: string; seconds: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, seconds: (performance.now() - t) / 1000 };
}

test('eval --limit 10 on every task: results.json, samples.jsonl (one line per item) and the table', (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  for (const name of TASK_NAMES) for (const f of taskInfo(name).files) if (dataFile(t, f) === undefined) return;
  const dir = tempDir('eval-cli');
  const out = path.join(dir, 'results.json');
  const samples = path.join(dir, 'samples.jsonl');
  const r = rwkv('eval', '--model', model, '--tasks', TASK_NAMES.join(','), '--limit', '10', '--data', DATA_DIR, '--out', out, '--samples', samples, '--threads', '2');
  assert.equal(r.status, 0, r.stderr);
  console.log(`# rwkv eval --limit 10 on ${TASK_NAMES.length} tasks: ${r.seconds.toFixed(1)} s; ${r.stderr.trim()}`);
  const results = JSON.parse(fs.readFileSync(out, 'utf8')) as EvalResults;
  assert.equal(results.model, model);
  assert.equal(results.prefixToken, '\n');
  assert.equal(results.limit, 10);
  assert.deepEqual(Object.keys(results.tasks), [...TASK_NAMES]);
  for (const name of TASK_NAMES) assert.equal(results.tasks[name]!.n, 10, name);
  const piqa = results.tasks.piqa!;
  for (const k of ['acc', 'acc_stderr', 'acc_norm', 'acc_norm_stderr'] as const) assert.ok(piqa[k]! >= 0 && piqa[k]! <= 1, k);
  assert.deepEqual(Object.keys(results.tasks.lambada!).sort(), ['acc', 'acc_stderr', 'n', 'ppl']);
  assert.ok(results.tasks.lambada!.ppl > 1);
  assert.deepEqual(Object.keys(results.tasks.copa!).sort(), ['acc', 'acc_stderr', 'n']);
  const w = results.tasks.wikitext!;
  assert.ok(w.bits_per_byte > 0 && Math.abs(Math.exp(w.bits_per_byte * Math.LN2) - w.byte_perplexity) < 1e-9 * w.byte_perplexity);
  const lines = fs.readFileSync(samples, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 10 * TASK_NAMES.length);
  assert.deepEqual(lines.slice(0, 10).map((l) => [l.task, l.doc]), Array.from({ length: 10 }, (_, i) => ['lambada', i]));
  assert.deepEqual(Object.keys(lines[10]!), ['task', 'doc', 'gold', 'loglikelihoods', 'is_greedy']);
  assert.deepEqual(Object.keys(lines[lines.length - 1]!), ['task', 'doc', 'loglikelihood', 'words', 'bytes']);
  // The samples give the metrics: piqa's acc from its lines.
  const piqaLines = lines.filter((l) => l.task === 'piqa') as { gold: number; loglikelihoods: number[] }[];
  const acc = piqaLines.filter((l) => (l.loglikelihoods[0]! >= l.loglikelihoods[1]! ? 0 : 1) === l.gold).length / 10;
  assert.equal(piqa.acc, acc);
  assert.match(r.stdout, /^\| Task \| n \| Metric \| Value \| ± Stderr \|$/m);
  assert.match(r.stdout, /^\| wikitext \| 10 \| word_perplexity \| [\d.]+ \|/m);
});

test('eval --text FILE: per-file token count, bits per byte; results.json', (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tempDir('eval-cli-text');
  const text = path.join(dir, 'a.txt');
  fs.writeFileSync(text, 'The quick brown fox jumps over the lazy dog.\n'.repeat(20));
  const out = path.join(dir, 'r.json');
  const r = rwkv('eval', '--model', model, '--text', text, '--out', out, '--prefix-token', 'none');
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(fs.readFileSync(out, 'utf8')) as { prefixToken: null; texts: Record<string, { tokens: number; bytes: number; bits_per_byte: number }> };
  assert.equal(res.prefixToken, null);
  assert.equal(res.texts[text]!.tokens, 900);
  assert.equal(res.texts[text]!.bytes, 900);
  assert.ok(res.texts[text]!.bits_per_byte > 0 && res.texts[text]!.bits_per_byte < 8);
  assert.match(r.stdout, /\| a\.txt|a\.txt \|/);
});

test('bad input is one line on stderr and exit status 1: unknown task, missing data file, malformed record, conflicting options', (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tempDir('eval-cli-bad');
  const oneLine = (r: { status: number | null; stderr: string }, pattern: RegExp): void => {
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, pattern);
  };
  oneLine(rwkv('eval', '--model', model, '--tasks', 'piqa,hellaswagg'), /^rwkv: unknown task 'hellaswagg' \(known: lambada, piqa/);
  oneLine(rwkv('eval', '--model', model, '--tasks', 'copa', '--data', dir), new RegExp(`^rwkv: ${path.join(dir, 'copa', 'copa_val.llm-foundry.jsonl').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such data file`));
  fs.mkdirSync(path.join(dir, 'copa'));
  fs.writeFileSync(path.join(dir, 'copa', 'copa_val.llm-foundry.jsonl'), '{"query": "It rained, therefore", "choices": ["a", "b"], "gold": 0}\n{"query": "x"\n');
  oneLine(rwkv('eval', '--model', model, '--tasks', 'copa', '--data', dir), /copa_val\.llm-foundry\.jsonl:2: not a JSON record/);
  oneLine(rwkv('eval', '--model', model, '--preset', 'paper', '--tasks', 'copa'), /--tasks or --preset/);
  oneLine(rwkv('eval', '--model', model), /give --tasks/);
  oneLine(rwkv('eval', '--model', model, '--tasks', 'copa', '--prefix-token', 'ab', '--data', DATA_DIR), /prefix token "ab" is 2 tokens/);
  oneLine(rwkv('eval', '--model', model, '--text', path.join(dir, 'nope.txt')), /nope\.txt: no such text file/);
});
