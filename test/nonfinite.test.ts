// Corrupt weights are caught where logits leave a pass: a NaN or an infinity in the logits rejects with
// NonFiniteError naming the position, instead of a sampler picking token 0 forever or a score of NaN.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { NonFiniteError, type RwkvError } from '../src/errors.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { loadModel } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { testBackend } from './helpers/backend.js';
import { fixture, PROMPT_IN, REPO_ROOT } from './helpers/fixtures.js';
import { expectRwkvRejection, tempDir } from './helpers/formats.js';

const backend = await testBackend();
const dir = tempDir('nonfinite');
const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';
const I = 0x69; // 'i', the second token of `"in`

/** A copy of the fixture with `value` at [row, col] of `tensor` (an f32 matrix), written to `name`. */
async function corrupt(fixturePath: string, tensor: string, row: number, col: number, value: number, name: string): Promise<string> {
  const source = await openCheckpoint(fixturePath);
  const t = source.tensors.get(tensor)!;
  assert.equal(t.dtype, 'f32');
  new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength).setFloat32(4 * (row * t.shape[1]! + col), value, true);
  const out = path.join(dir, name);
  writeCheckpoint(source, out);
  return out;
}

function assertNamesPosition(e: RwkvError, position: number): void {
  assert.ok(e instanceof NonFiniteError, `expected a NonFiniteError, got ${e.name}`);
  assert.equal(e.position, position);
  assert.match(e.message, new RegExp(`position ${position}\\b`));
  assert.match(e.message, /corrupt/);
  assert.match(e.message, /rwkv info --check/);
}

async function nanEmbedding(model: string): Promise<RwkvModel> {
  // One value of token 'i''s embedding row: ln0 spreads it over the row, the state carries it on.
  return loadModel(await corrupt(model, 'emb.weight', I, 5, NaN, 'emb-nan.bin'), { backend });
}

test("run: a NaN in one token's embedding rejects at the first position it reaches, for 'all', a sink and 'last'", async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const model = await nanEmbedding(file);
  const tokens = [...PROMPT_IN];
  const all = await expectRwkvRejection(() => model.run([{ tokens, state: model.createState(), logits: 'all' }]), 'NON_FINITE');
  assertNamesPosition(all, 1);

  const heard: number[] = [];
  const sink = await expectRwkvRejection(
    () =>
      model.run([
        {
          tokens,
          state: model.createState(),
          logits: (p, row) => {
            assert.ok(row.every(Number.isFinite), `the sink was handed non-finite logits at ${p}`);
            heard.push(p);
          },
        },
      ]),
    'NON_FINITE',
  );
  assertNamesPosition(sink, 1);
  assert.deepEqual(heard, [0]);

  assertNamesPosition(await expectRwkvRejection(() => model.forwardSequence(tokens, model.createState()), 'NON_FINITE'), 2);
  // RNN mode: the token itself.
  assertNamesPosition(await expectRwkvRejection(() => model.forward(I, model.createState()), 'NON_FINITE'), 0);
  // Tokens that never meet the bad row still run.
  const ok = await model.forward(0x22, model.createState());
  assert.ok(ok.every(Number.isFinite));
});

test('run: a NaN in the state rejects (the logits it leads to are checked), and in a batch the sequence at fault is named by its own position', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const model = await loadModel(file, { backend });
  const state = model.createState();
  state.data[3] = NaN;
  assertNamesPosition(await expectRwkvRejection(() => model.forward(0x22, state), 'NON_FINITE'), 0);
  const inf = model.createState();
  inf.data[7] = Infinity;
  const e = await expectRwkvRejection(
    () => model.run([{ tokens: [1, 2], state: model.createState() }, { tokens: [1, 2, 3], state: inf, logits: 'all' }]),
    'NON_FINITE',
  );
  assertNamesPosition(e, 0);
});

test('generate and score on a model with a NaN in one head row reject with NonFiniteError (no plausible text, no NaN score)', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  // Row 200 of the head: only logit 200 is NaN, so a sampler would still draw plausible tokens.
  const bad = await corrupt(file, 'head.weight', 200, 3, NaN, 'head-nan.bin');
  const rwkv = await Rwkv.fromModel(await loadModel(bad, { backend }), { tokenizer: new ByteTokenizer() });
  assertNamesPosition(await expectRwkvRejection(() => rwkv.score('in the beginning'), 'NON_FINITE'), 0);
  const pieces: string[] = [];
  const e = await expectRwkvRejection(async () => {
    for await (const piece of rwkv.generate('"in', { maxTokens: 20, seed: 1 })) pieces.push(piece.text);
  }, 'NON_FINITE');
  assertNamesPosition(e, 2);
  assert.deepEqual(pieces, []);

  // An infinity is caught as well.
  const inf = await corrupt(file, 'head.weight', 17, 0, Infinity, 'head-inf.bin');
  const rwkvInf = await Rwkv.fromModel(await loadModel(inf, { backend }), { tokenizer: new ByteTokenizer() });
  await expectRwkvRejection(() => rwkvInf.score('"in'), 'NON_FINITE');
});

test('rwkv generate on a model with a NaN embedding exits 1 with one line naming the position (no endless \\0 output)', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const bad = await corrupt(file, 'emb.weight', I, 5, NaN, 'emb-nan-cli.bin');
  const r = spawnSync(process.execPath, [CLI, 'generate', '--model', bad, '--threads', '1', '--max-tokens', '10000', 'in'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 1, `status ${r.status}; stderr: ${r.stderr}`);
  assert.ok(!r.stdout.includes('\0'), 'generate printed \\0 bytes');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^rwkv: .*emb-nan-cli\.bin: .*position \d+.*corrupt.*rwkv info --check/);
});

test('a request the Batcher splits into pieces names the position counted from the start of the call', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const model = await nanEmbedding(file);
  const { Batcher } = await import('../src/generation/batcher.js');
  const batcher = new Batcher(model, { maxRows: 8 });
  // 'i' first appears at index 20: in the third piece of 8, at its position 4.
  const tokens = [...Array.from({ length: 20 }, () => 0x61), I, 0x61, 0x61];
  const e = await expectRwkvRejection(() => batcher.forward(tokens, model.createState(), 'all'), 'NON_FINITE');
  assertNamesPosition(e, 20);
  assert.equal((e.message.match(/\.bin: /g) ?? []).length, 1, 'the file is named once');
});

test('embed on a model with a NaN embedding rejects with NonFiniteError (no NaN vector)', async (t) => {
  const file = fixture(t, MODEL);
  if (file === undefined) return;
  const rwkv = await Rwkv.load(await corrupt(file, 'emb.weight', I, 5, NaN, 'emb-nan-embed.bin'));
  try {
    const e = await expectRwkvRejection(() => rwkv.embed('a' + String.fromCharCode(I) + 'b'), 'NON_FINITE');
    assert.ok(e instanceof NonFiniteError);
    assert.match(e.message, /hidden values at position 2 are not finite/);
  } finally {
    await rwkv.close();
  }
});
