// What a new user hit (issue 16): runs that could be lost, interruptions that lost work, options accepted
// with a typo or the wrong type, seeds that wrapped, files of the wrong kind, and messages in two styles.
// Each test fails on the code before its fix.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Rwkv, type RwkvGenerateOptions, type RwkvOptions } from '../src/generation/rwkv.js';
import { threadsWarning } from '../src/cli/open-model.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';

function rwkv(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-traps-'));
}

/** Asserts that `f` throws (or rejects with) an ArgumentError whose message matches every pattern. */
async function rejectsWith(f: () => unknown, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(
    async () => {
      await f();
    },
    (e: Error) => {
      assert.equal(e.name, 'ArgumentError', e.message);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    },
  );
}

test('Ctrl-C during generate: stops at the next token, prints the stats, writes --state-out, exits 130', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tmpDir();
  const stateFile = path.join(dir, 'after.state');
  const child = spawn(process.execPath, [CLI, 'generate', '--model', model, '--max-tokens', '1000000', '--seed', '1', '--state-out', stateFile, 'Hi']);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const interrupted = new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
      if (stdout.length > 200 && !child.killed) {
        child.kill('SIGINT');
        resolve();
      }
    });
  });
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await interrupted;
  assert.equal(status, 130, stderr);
  assert.match(stderr, /generated: \d+ tokens, [\d.]+ tokens\/s; finished: interrupted; seed 1\]/);
  const generated = Number(/generated: (\d+) tokens/.exec(stderr)![1]);
  assert.ok(generated > 0 && generated < 1_000_000);
  // The state saw the prompt and every generated token (its header records the count: docs/state-files.md).
  const rw = await Rwkv.load(model);
  try {
    const state = await rw.loadState(stateFile);
    assert.equal(state.tokenCount, rw.encode('Hi').length + generated);
  } finally {
    await rw.close();
  }
  fs.rmSync(dir, { recursive: true });
});

test('--state-out into a missing directory fails before anything is generated', (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const missing = path.join(tmpDir(), 'no', 'such', 'dir', 's.state');
  const r = rwkv('generate', '--model', model, '--max-tokens', '20', '--state-out', missing, 'Hi');
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '', 'nothing may be generated first');
  assert.match(r.stderr, /^rwkv: --state-out .*s\.state: the directory .*dir does not exist/);
});

test('seeds: 0 … 2^32 − 1 exactly; larger or rounded seeds are refused, not wrapped', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const top = rwkv('generate', '--model', model, '--max-tokens', '8', '--seed', '4294967295', 'a');
  assert.equal(top.status, 0, top.stderr);
  assert.match(top.stderr, /seed 4294967295\]/);
  for (const seed of ['4294967296', '18446744073709551615', '-1', '1.5']) {
    const r = rwkv('generate', '--model', model, '--max-tokens', '8', '--seed', seed, 'a');
    assert.equal(r.status, 1, seed);
    assert.match(r.stderr, /^rwkv: option '--seed <s>' argument .* is invalid\. --seed must be an integer from 0 to 4294967295/, seed);
  }
  const rw = await Rwkv.load(model);
  try {
    await rejectsWith(() => rw.generate('a', { seed: 2 ** 32 }), /seed must be an integer from 0 to 4294967295, got 4294967296/);
    await rejectsWith(() => rw.generate('a', { seed: -1 }), /seed/);
  } finally {
    await rw.close();
  }
});

test('library options are checked at the call, by name, with the received type', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  // Checked before the file is read: a bad option on a missing file names the option, not the file.
  await rejectsWith(() => Rwkv.load('/no/such/model.bin', { kernels: 'foo' } as unknown as RwkvOptions), /kernels must be 'wasm', 'reference', 'webgpu' or 'auto', got "foo" \(a string\)/);
  await rejectsWith(() => Rwkv.load('/no/such/model.bin', { threadz: 2 } as unknown as RwkvOptions), /unknown option 'threadz' \(did you mean 'threads'\?\)/);
  await rejectsWith(() => Rwkv.load('/no/such/model.bin', { promptBlock: 0 }), /promptBlock must be an integer ≥ 1, got 0/);
  await rejectsWith(() => Rwkv.load('/no/such/model.bin', { batch: { maxRows: 0 } }), /batch\.maxRows/);
  await rejectsWith(() => Rwkv.load('/no/such/model.bin', { int8: 'yes' } as unknown as RwkvOptions), /int8 must be true or false, got "yes" \(a string\)/);
  const rw = await Rwkv.load(model);
  try {
    await rejectsWith(() => rw.generate('a', { maxTokenz: 5 } as unknown as RwkvGenerateOptions), /generate: unknown option 'maxTokenz' \(did you mean 'maxTokens'\?\)/);
    await rejectsWith(() => rw.generate('a', { maxTokens: '5' } as unknown as RwkvGenerateOptions), /max tokens must be an integer ≥ 0, got "5" \(a string\)/);
    await rejectsWith(() => rw.generate('a', { stop: [''] }), /stop strings must be non-empty strings, got "" \(a string\)/);
    await rejectsWith(() => rw.generate('a', { temperature: '1' } as unknown as RwkvGenerateOptions), /temperature must be a number ≥ 0, got "1" \(a string\)/);
    await rejectsWith(() => rw.generate(42 as unknown as string), /generate takes a string or an array of token ids, got 42/);
    await rejectsWith(() => rw.encode(123 as unknown as string), /encode takes a string, got 123/);
    await rejectsWith(() => rw.decode([1, 999]), /decode: 999 is not a token id/);
    await rejectsWith(() => rw.score('abc', { signa: undefined } as unknown as { signal?: AbortSignal }), /score: unknown option 'signa' \(did you mean 'signal'\?\)/);
    // Correct options still work.
    assert.equal(typeof (await rw.generate('a', { maxTokens: 3, seed: 1, stop: ['\n\n'] }).text()), 'string');
  } finally {
    await rw.close();
  }
});

test('one error style: commander errors start with "rwkv:" too; zero tokens have no rate', (t) => {
  const unknown = rwkv('generate', '--bogus');
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /^rwkv: unknown option '--bogus'/);
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const zero = rwkv('generate', '--model', model, '--max-tokens', '0', 'Hi');
  assert.equal(zero.status, 0, zero.stderr);
  assert.doesNotMatch(zero.stderr, /∞/);
  assert.match(zero.stderr, /generated: 0 tokens; finished: length/);
});

test('logits --tokenizer with a vocabulary larger than the model: the same clear message as generate', (t) => {
  const model = fixture(t, MODEL);
  const vocab = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  if (model === undefined || vocab === undefined) return;
  const dir = tmpDir();
  const input = path.join(dir, 'in.txt');
  fs.writeFileSync(input, 'hello world');
  const r = rwkv('logits', '--model', model, '--tokenizer', vocab, '--input', input, '--out', path.join(dir, 'out.bin'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^rwkv: the tokenizer .* has 65\d\d\d ids, more than the model's vocabulary of 256/);
  fs.rmSync(dir, { recursive: true });
});

test('plot refuses an output it would not really write (.png); quantize warns on an already quantized file', (t) => {
  const dir = tmpDir();
  const log = path.join(dir, 'log.jsonl');
  fs.writeFileSync(log, JSON.stringify({ step: 1, loss: 2.5 }) + '\n');
  const png = rwkv('plot', log, '--out', path.join(dir, 'loss.png'));
  assert.equal(png.status, 1);
  assert.match(png.stderr, /^rwkv: --out .*loss\.png: rwkv plot writes \.svg or \.html/);
  assert.equal(fs.existsSync(path.join(dir, 'loss.png')), false);
  const q = fixture(t, 'tiny-rwkv-4v0-660K-Q5_0.bin');
  if (q === undefined) return;
  const r = rwkv('quantize', '--in', q, '--out', path.join(dir, 'q8.bin'), '--type', 'Q8_0');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: .*Q5_0\.bin is already quantized \(\d+ tensors, e\.g\. .* in Q5_0\)/);
  fs.rmSync(dir, { recursive: true });
});

test('--threads above the cores: a warning that gives the default', () => {
  assert.equal(threadsWarning(2, 2), undefined);
  assert.equal(threadsWarning(undefined, 2), undefined);
  assert.match(threadsWarning(64, 2)!, /--threads 64 is more than the 2 core\(s\).*the default is one thread per core \(2\)/);
  const r = rwkv('info', '--threads', '512', '--model', '/no/such/file.bin');
  assert.match(r.stderr, /warning: --threads 512 is more than the \d+ core\(s\)/);
});

test('CLI habits: --version; the prompt from stdin, --prompt-file or "-", one way only; tokenize without --tokenizer', (t) => {
  const version = rwkv('--version');
  assert.equal(version.status, 0);
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version);
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tmpDir();
  const promptFile = path.join(dir, 'prompt.txt');
  fs.writeFileSync(promptFile, 'Once upon');
  const args = ['generate', '--model', model, '--max-tokens', '12', '--temperature', '0'];
  const direct = rwkv(...args, 'Once upon');
  assert.equal(direct.status, 0, direct.stderr);
  const fromFile = rwkv(...args, '--prompt-file', promptFile);
  assert.equal(fromFile.stdout, direct.stdout);
  // A pipe and a redirected file, as a shell makes them (a child's default stdin is a socket, never read).
  const sh = (cmd: string): string => spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 60_000 }).stdout;
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a}'`).join(' ');
  assert.equal(sh(`printf 'Once upon' | ${quoted}`), direct.stdout);
  assert.equal(sh(`${quoted} - < '${promptFile}'`), direct.stdout);
  assert.match(direct.stderr, /prompt: 9 tokens/);
  const both = rwkv(...args, '--prompt', 'x', '--prompt-file', promptFile);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /^rwkv: give the prompt one way, not several \(--prompt, --prompt-file\)/);
  // tokenize: the model's tokenizer (here bytes, for a 256-token model) without --tokenizer.
  const tok = spawnSync(process.execPath, [CLI, 'tokenize', '--model', model], { input: 'Hi!', encoding: 'utf8' });
  assert.equal(tok.status, 0, tok.stderr);
  assert.equal(tok.stdout, '[72,105,33]\n');
  fs.rmSync(dir, { recursive: true });
});

test('chat --system and --template: the speakers of the template, the system text fed before the first turn and after /reset', (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const chat = (...extra: string[]) =>
    spawnSync(process.execPath, [CLI, 'chat', '--model', model, '--max-tokens', '5', '--seed', '1', ...extra], { input: 'hello\n/reset\n', encoding: 'utf8', timeout: 60_000 });
  const plain = chat();
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stderr, /; 0 tokens in the state/);
  assert.match(plain.stdout, /User: hello\nAssistant:/);
  const raven = chat('--template', 'raven', '--system', 'The assistant answers briefly.');
  assert.equal(raven.status, 0, raven.stderr);
  // 'The assistant answers briefly.\n\n' is 32 bytes: fed before the first message.
  assert.match(raven.stderr, /; 32 tokens in the state/);
  assert.match(raven.stdout, /Bob: hello\nAlice:/);
  assert.match(raven.stdout, /\[reset: a fresh state \(with the system text\)\]/);
  const dir = tmpDir();
  const file = path.join(dir, 'template.json');
  fs.writeFileSync(file, JSON.stringify({ user: 'Q', assistant: 'A', system: 'S' }));
  const custom = chat('--template', file, '--system', 'Be brief.');
  assert.equal(custom.status, 0, custom.stderr);
  assert.match(custom.stderr, /; 14 tokens in the state/); // 'S: Be brief.\n\n'
  assert.match(custom.stdout, /Q: hello\nA:/);
  const bad = chat('--template', 'klingon');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^rwkv: --template must be world, raven or a JSON file, got 'klingon'/);
  fs.rmSync(dir, { recursive: true });
});

test('a state saved mid-generation continues exactly: one-shot text = first part + continuation from the state file (seed, RNG position, penalties)', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tmpDir();
  const sampling = ['--max-tokens', '30', '--seed', '11', '--presence-penalty', '0.7', '--frequency-penalty', '0.4', '--penalty-decay', '0.9'];
  const oneShot = rwkv('generate', '--model', model, ...sampling.map((a) => (a === '30' ? '60' : a)), 'The');
  const first = rwkv('generate', '--model', model, ...sampling, '--state-out', path.join(dir, 'mid.state'), 'The');
  const rest = rwkv('generate', '--model', model, ...sampling, '--state-in', path.join(dir, 'mid.state'));
  for (const r of [oneShot, first, rest]) assert.equal(r.status, 0, r.stderr);
  assert.equal(Buffer.from(first.stdout + rest.stdout, 'utf8').length > 40, true);
  assert.equal(first.stdout + rest.stdout, oneShot.stdout);
  // Without --seed the saved seed is taken (and reported); another seed starts a fresh sampler.
  const noSeed = rwkv('generate', '--model', model, ...sampling.filter((a, i, all) => a !== '--seed' && all[i - 1] !== '--seed'), '--state-in', path.join(dir, 'mid.state'));
  assert.equal(noSeed.stdout, rest.stdout);
  assert.match(noSeed.stderr, /seed 11\]/);
  // In the library: a new prompt, or anything fed, ends the continuation.
  const rw = await Rwkv.load(model);
  try {
    const state = await rw.loadState(path.join(dir, 'mid.state'));
    assert.equal(state.sampler?.seed, 11);
    await rw.feed(state, ' and');
    assert.equal(state.sampler, undefined);
  } finally {
    await rw.close();
  }
  fs.rmSync(dir, { recursive: true });
});

test('state files: format 1 (no sampler record) is still read; a damaged sampler record is refused by name', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const rw = await Rwkv.load(model);
  try {
    const state = rw.createState();
    await rw.feed(state, 'Hello');
    const v2 = rw.encodeState(state);
    // Format 1: the same bytes without the record's length word.
    const v1 = v2.slice(0, v2.length - 4);
    new DataView(v1.buffer).setUint32(8, 1, true);
    const back = rw.decodeState(v1);
    assert.deepEqual(back.logits, state.logits);
    assert.equal(back.sampler, undefined);
    // A generation leaves a record; spoil its JSON.
    await rw.generate('', { state, maxTokens: 3, seed: 5 }).text();
    const withRecord = rw.encodeState(state);
    assert.equal(rw.decodeState(withRecord).sampler?.seed, 5);
    const spoiled = withRecord.slice();
    const at = spoiled.lastIndexOf('{'.charCodeAt(0));
    spoiled[at] = 'x'.charCodeAt(0);
    assert.throws(() => rw.decodeState(spoiled), /bad sampler record: not JSON/);
  } finally {
    await rw.close();
  }
});

test('reading a large model shows a progress bar on a terminal (not for small files, not when stderr is not a terminal)', async () => {
  const { readProgress, BAR_MIN_BYTES } = await import('../src/cli/progress.js');
  const fake = (tty: boolean) => {
    let out = '';
    const stream = { isTTY: tty, columns: 100, write: (s: string) => ((out += s), true), cursorTo: () => true, clearLine: () => true, moveCursor: () => true, on: () => stream, removeListener: () => stream };
    return { stream: stream as unknown as NodeJS.WriteStream, out: () => out };
  };
  const big = fake(true);
  const p = readProgress('loading big.bin', big.stream);
  p.onProgress({ loaded: 0, total: 2 * BAR_MIN_BYTES });
  p.onProgress({ loaded: BAR_MIN_BYTES, total: 2 * BAR_MIN_BYTES });
  p.done();
  assert.match(big.out(), /loading big\.bin .* 50% \| 64\/128 MiB/);
  for (const [tty, total] of [[true, BAR_MIN_BYTES - 1], [false, 4 * BAR_MIN_BYTES]] as const) {
    const f = fake(tty);
    const q = readProgress('x', f.stream);
    q.onProgress({ loaded: total / 2, total });
    q.done();
    assert.equal(f.out(), '');
  }
});

test('rwkv embed: one JSON vector per text (arguments or stdin lines), equal to Rwkv.embed', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const r = rwkv('embed', '--model', model, 'hello', 'world');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as number[]);
  const piped = spawnSync(process.execPath, [CLI, 'embed', '--model', model, '--pooling', 'mean', '--no-normalize'], { input: 'hello\nworld\n', encoding: 'utf8' });
  assert.equal(piped.status, 0, piped.stderr);
  const mean = piped.stdout.trim().split('\n').map((l) => JSON.parse(l) as number[]);
  const rw = await Rwkv.load(model);
  try {
    const want = await rw.embed(['hello', 'world']);
    const wantMean = await rw.embed(['hello', 'world'], { pooling: 'mean', normalize: false });
    assert.equal(lines.length, 2);
    assert.equal(mean.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.deepEqual(Float32Array.from(lines[i]!), want[i]);
      assert.deepEqual(Float32Array.from(mean[i]!), wantMean[i]);
    }
    assert.notDeepEqual(lines[0], lines[1]);
  } finally {
    await rw.close();
  }
  const bad = rwkv('embed', '--model', model, '--pooling', 'max', 'x');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^rwkv: /);
});
