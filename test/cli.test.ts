// The `rwkv` command, run as a user would run it: as a separate process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { fixture, maxAbsDiff, readF32, REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

function rwkv(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-cli-'));
}

test('logits: the last position of `"in` matches the official expected logits', (t) => {
  const model = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  const expected = fixture(t, 'expected-logits-official-4v0-660K.bin');
  if (model === undefined || expected === undefined) return;
  const dir = tmpDir();
  const input = path.join(dir, 'in.txt');
  const out = path.join(dir, 'out.bin');
  fs.writeFileSync(input, Buffer.from([0x22, 0x69, 0x6e]));
  const r = rwkv('logits', '--model', model, '--input', input, '--out', out);
  assert.equal(r.status, 0, r.stderr);
  const logits = readF32(out);
  assert.equal(logits.length, 256);
  assert.ok(maxAbsDiff(logits, readF32(expected)) <= 1e-4);
  fs.rmSync(dir, { recursive: true });
});

test('logits --all: positions × vocab, row-major, each row what the library computes in RNN mode (≤ 1e-4)', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-5v2-730K-FP32.bin');
  if (modelPath === undefined) return;
  const dir = tmpDir();
  const input = path.join(dir, 'in.txt');
  const out = path.join(dir, 'out.bin');
  const text = 'Hello, RWKV!';
  fs.writeFileSync(input, text);
  const r = rwkv('logits', '--model', modelPath, '--input', input, '--out', out, '--all');
  assert.equal(r.status, 0, r.stderr);
  const all = readF32(out);
  assert.equal(all.length, text.length * 256);
  const model = await loadModel(modelPath);
  const state = model.createState();
  for (let i = 0; i < text.length; i++) {
    const logits = await model.forward(text.charCodeAt(i), state);
    assert.ok(maxAbsDiff(all.subarray(i * 256, (i + 1) * 256), logits) <= 1e-4, `position ${i}`);
  }
  fs.rmSync(dir, { recursive: true });
});

test('generate: the same seed gives the same text; the prompt may be positional or --prompt', (t) => {
  const model = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (model === undefined) return;
  const a = rwkv('generate', '--model', model, 'The license', '--max-tokens', '40', '--seed', '7');
  const b = rwkv('generate', '--model', model, '--prompt', 'The license', '--max-tokens', '40', '--seed', '7');
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.ok(a.stdout.length > 0, 'generated nothing');
  assert.ok(!a.stdout.includes('The license'), 'stdout must hold only the generated text');
  assert.match(a.stderr, /tokens\/s/);
});

test('generate: a state saved after the prompt (--max-tokens 0 --state-out) continues exactly as a one-shot run', (t) => {
  const model = fixture(t, 'tiny-rwkv-5v2-730K-FP32.bin');
  if (model === undefined) return;
  const dir = tmpDir();
  const state = path.join(dir, 'prompt.state');
  const sampling = ['--seed', '7', '--top-k', '30', '--min-p', '0.01', '--presence-penalty', '0.3', '--frequency-penalty', '0.2', '--logit-bias', '101=0.5', '--ban', '0,10'];
  const oneShot = rwkv('generate', '--model', model, 'The license', '--max-tokens', '30', ...sampling);
  const primed = rwkv('generate', '--model', model, 'The license', '--max-tokens', '0', '--state-out', state);
  const resumed = rwkv('generate', '--model', model, '--state-in', state, '--max-tokens', '30', ...sampling);
  for (const r of [oneShot, primed, resumed]) assert.equal(r.status, 0, r.stderr);
  assert.equal(primed.stdout, '');
  assert.ok(oneShot.stdout.length > 0);
  assert.equal(resumed.stdout, oneShot.stdout);
  // A state from another model is refused in one line.
  const other = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (other === undefined) return;
  const refused = rwkv('generate', '--model', other, '--state-in', state);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^rwkv: .*prompt\.state: it belongs to RWKV v5\.2.*; this model is RWKV v4.*\n$/);
  fs.rmSync(dir, { recursive: true });
});

test('generate: an empty prompt is valid; --stop cuts the text (escapes like \\n work)', (t) => {
  const model = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (model === undefined) return;
  const free = rwkv('generate', '--model', model, '', '--max-tokens', '60', '--seed', '2');
  assert.equal(free.status, 0, free.stderr);
  assert.ok(free.stdout.length > 0);
  const cut = free.stdout.slice(10, 12);
  const escaped = cut.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  const stopped = rwkv('generate', '--model', model, '', '--max-tokens', '60', '--seed', '2', '--stop', escaped);
  assert.equal(stopped.status, 0, stopped.stderr);
  assert.equal(stopped.stdout, free.stdout.slice(0, free.stdout.indexOf(cut)));
  assert.match(stopped.stderr, /finished: stop/);
});

test('logits --mode rnn and --mode parallel (1 thread) agree (≤ 1e-4); --kernels reference agrees too', (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-6v0-1m-FP32.bin');
  const inputPath = fixture(t, 'input-1024.txt');
  if (modelPath === undefined || inputPath === undefined) return;
  const dir = tmpDir();
  const outs = [
    ['--mode', 'rnn'],
    ['--mode', 'parallel', '--threads', '1'],
    ['--mode', 'rnn', '--kernels', 'reference'],
  ].map((extra, i) => {
    const out = path.join(dir, `out${i}.bin`);
    const r = rwkv('logits', '--model', modelPath, '--input', inputPath, '--out', out, '--all', ...extra);
    assert.equal(r.status, 0, r.stderr);
    return readF32(out);
  });
  assert.equal(outs[0]!.length, 1024 * 256);
  assert.ok(maxAbsDiff(outs[0]!, outs[1]!) <= 1e-4);
  assert.ok(maxAbsDiff(outs[0]!, outs[2]!) <= 1e-4);
  fs.rmSync(dir, { recursive: true });
});

test('generate: temperature 0 picks the argmax at every step', async (t) => {
  const modelPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (modelPath === undefined) return;
  const r = rwkv('generate', '--model', modelPath, 'The', '--max-tokens', '20', '--temperature', '0', '--kernels', 'reference');
  assert.equal(r.status, 0, r.stderr);
  const model = await loadModel(modelPath);
  const state = model.createState();
  let logits: Float32Array = new Float32Array(0);
  for (const b of Buffer.from('The')) logits = await model.forward(b, state);
  const ids: number[] = [];
  for (let i = 0; i < 20; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
    ids.push(best);
    logits = await model.forward(best, state);
  }
  assert.equal(r.stdout, Buffer.from(ids).toString('utf8'));
});

for (const [what, args, pattern] of [
  ['a missing model file', ['generate', '--model', '/nonexistent/model.bin', 'x'], /\/nonexistent\/model\.bin: no such file/],
  ['a directory as the model', ['generate', '--model', os.tmpdir(), 'x'], /is a directory/],
  ['top-p outside (0, 1]', ['generate', '--model', 'unused.bin', '--top-p', '1.5', 'x'], /top-p must be in \(0, 1\]/],
  ['a negative temperature', ['generate', '--model', 'unused.bin', '--temperature', '-1', 'x'], /temperature/],
  ['a non-numeric --max-tokens', ['generate', '--model', 'unused.bin', '--max-tokens', 'lots', 'x'], /--max-tokens must be an integer/],
  ['a negative --top-k', ['generate', '--model', 'unused.bin', '--top-k', '-1', 'x'], /top-k must be an integer ≥ 0/],
  ['--min-p of 1', ['generate', '--model', 'unused.bin', '--min-p', '1', 'x'], /min-p must be in \[0, 1\)/],
  ['a malformed --logit-bias', ['generate', '--model', 'unused.bin', '--logit-bias', '5:1', 'x'], /--logit-bias takes ID=BIAS pairs/],
  ['a non-numeric --ban', ['chat', '--model', 'unused.bin', '--ban', 'x'], /--ban takes token ids/],
  ['a --penalty-decay above 1', ['chat', '--model', 'unused.bin', '--penalty-decay', '1.5'], /penalty decay must be in \(0, 1\]/],
  ['a missing required option', ['logits', '--model', 'm.bin'], /required option/],
  ['an unknown command', ['frobnicate'], /unknown command/],
] as const) {
  test(`a user error (${what}) is one line on stderr and exit status 1`, () => {
    const r = rwkv(...args);
    assert.equal(r.status, 1);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `stderr: ${r.stderr}`);
    assert.match(lines[0]!, pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace without --verbose');
  });
}

test('--verbose adds the stack trace', () => {
  const r = rwkv('generate', '--model', '/nonexistent/model.bin', 'x', '--verbose');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\n\s+at /);
});
