// `rwkv tokenize`: stdin → JSON ids, and with --decode back to exactly the bytes. Tested through
// runTokenize (in-process) and as a separate process, as a user runs it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runTokenize, type TokenizeArgs } from '../src/cli/tokenize.js';
import { ArgumentError } from '../src/errors.js';
import { loadTokenizer } from '../src/tokenizers/load.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

async function tokenize(args: TokenizeArgs, input: Uint8Array | string): Promise<Buffer> {
  const out: Uint8Array[] = [];
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  await runTokenize(args, {
    // Two chunks, split inside the input, as a pipe may deliver it.
    input: (async function* () {
      yield bytes.subarray(0, bytes.length >> 1);
      yield bytes.subarray(bytes.length >> 1);
    })(),
    write: async (b) => {
      out.push(b);
    },
  });
  return Buffer.concat(out);
}

function rwkv(args: string[], input: Uint8Array | string): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Whether main.ts has the tokenize command yet (it is wired separately from this module). */
function cliHasTokenize(): boolean {
  const r = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8', timeout: 60_000 });
  return /^\s*tokenize\b/m.test(r.stdout);
}

// Bytes a text editor or a shell would be tempted to touch: BOM, CRLF, NUL, trailing whitespace and newline.
const AWKWARD = Buffer.concat([Buffer.from('\ufeffline one\r\n\u0000tab\there  \n', 'utf8'), Buffer.from('你好\n', 'utf8')]);

test('runTokenize: bytes tokenizer, byte-exact, ids as one JSON line', async () => {
  const out = await tokenize({ tokenizer: 'bytes' }, AWKWARD);
  assert.equal(out.toString('utf8'), `${JSON.stringify([...AWKWARD])}\n`);
  assert.deepEqual(await tokenize({ tokenizer: 'bytes', decode: true }, out), AWKWARD);
  assert.equal((await tokenize({ tokenizer: 'bytes' }, '')).toString(), '[]\n');
  assert.deepEqual(await tokenize({ tokenizer: 'bytes', decode: true }, ' [ ] \n'), Buffer.alloc(0));
});

test('runTokenize --decode: refuses what is not a JSON array of integer ids', async () => {
  for (const bad of ['', 'nope', '{"a":1}', '[1, "2"]', '[1.5]', '[300]', '[-1]']) {
    await assert.rejects(tokenize({ tokenizer: 'bytes', decode: true }, bad), ArgumentError, bad);
  }
});

test('runTokenize: World ids as the library gives them, and any bytes (even invalid UTF-8) back exactly', async (t) => {
  const vocab = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  if (vocab === undefined) return;
  const world = await loadTokenizer(vocab);
  const out = await tokenize({ tokenizer: vocab }, AWKWARD);
  const ids = JSON.parse(out.toString('utf8')) as number[];
  assert.deepEqual(ids, world.encodeBytes(AWKWARD));
  assert.deepEqual(await tokenize({ tokenizer: vocab, decode: true }, out), AWKWARD);
  const invalid = Buffer.from([0xff, 0xfe, 0x41, 0xe4, 0xbd]);
  assert.deepEqual(await tokenize({ tokenizer: vocab, decode: true }, await tokenize({ tokenizer: vocab }, invalid)), invalid);
});

test('rwkv tokenize: stdin to ids and back, as a separate process', async (t) => {
  if (!cliHasTokenize()) {
    const reason = 'the tokenize command is not wired into src/cli/main.ts yet';
    console.log(`# skip: ${reason}`);
    t.skip(reason);
    return;
  }
  let r = rwkv(['tokenize', '--tokenizer', 'bytes'], AWKWARD);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.toString('utf8'), `${JSON.stringify([...AWKWARD])}\n`);
  r = rwkv(['tokenize', '--tokenizer', 'bytes', '--decode'], r.stdout);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout, AWKWARD);

  // A user error is one line on stderr and exit status 1.
  r = rwkv(['tokenize', '--tokenizer', path.join(REPO_ROOT, 'no-such-vocab.txt')], 'x');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^rwkv: .*no-such-vocab\.txt: no such tokenizer file\n$/);
  r = rwkv(['tokenize', '--tokenizer', 'bytes', '--decode'], '[1, 2');
  assert.equal(r.status, 1);
  assert.equal(r.stderr.split('\n').length, 2, r.stderr);

  const vocab = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  const neox = fixture(t, 'tokenizers/20B_tokenizer.json');
  const casesFile = fixture(t, 'tokenizers/cases.jsonl');
  if (vocab === undefined || neox === undefined || casesFile === undefined) return;
  // All the reference texts in one input: a process per direction and tokenizer (each loads a vocabulary).
  const input = fs
    .readFileSync(casesFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (JSON.parse(l) as { text: string }).text)
    .join('\n');
  for (const file of [vocab, neox]) {
    r = rwkv(['tokenize', '--tokenizer', file], input);
    assert.equal(r.status, 0, r.stderr);
    const ids = JSON.parse(r.stdout.toString('utf8')) as number[];
    assert.deepEqual(ids, (await loadTokenizer(file)).encode(input), path.basename(file));
    r = rwkv(['tokenize', '--tokenizer', file, '--decode'], JSON.stringify(ids));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.toString('utf8'), input, path.basename(file));
  }
});
