// The WebGPU backend (issue 19) on the fixture models: every version in f32 gives the official logits
// after `"in` (f32 accumulation: within 1e-4), the 16-bit files their own, a quantized file (decoded at
// placement) the reference backend's; a prompt read at once equals it read token by token; and sequences
// of different lengths in one batched pass equal each run alone. The operations themselves are held to
// the reference by the conformance suite (test/backend-conformance.test.ts). Without a WebGPU adapter the
// file skips with the reason (and fails under CI).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, test } from 'node:test';
import type { Backend } from '../src/kernels/backend.js';
import { createBackend } from '../src/kernels/create-backend.js';
import type { Matrix } from '../src/kernels/matrix.js';
import { DeviceError } from '../src/errors.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { loadModel } from '../src/models/load.js';
import type { RwkvModel } from '../src/models/model.js';
import type { State } from '../src/models/state.js';
import { fixture, maxAbsDiff, readF32 } from './helpers/fixtures.js';
import { fp32, logitsAfterIn, MODELS } from './helpers/formats.js';
import { webgpuUnavailable, whenWebGpu } from './helpers/webgpu.js';

const OFFICIAL = 1e-4;
/** A sequence in a batch against the same sequence alone. */
const BATCH_TOLERANCE = 1e-5;

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

await whenWebGpu('webgpu models', () => {
  let backend: Backend;
  before(async () => {
    backend = await createBackend({ kind: 'webgpu' });
  });
  after(async () => {
    await backend.close();
  });

  test('a device lost mid-way: the next read rejects with a DeviceError naming the loss and the operation; later calls fail at once; close still works', async () => {
    const b = await createBackend({ kind: 'webgpu' });
    const x = b.upload(new Float32Array([1, 2, 3, 4]), 1, 4);
    const y = b.tensor(1, 4);
    b.add(x, x, y);
    assert.deepEqual(Array.from(await b.read(y)), [2, 4, 6, 8]);
    // As a driver reset would: reached through the private field (no test hook in the API).
    (b as unknown as { device: GPUDevice }).device.destroy();
    b.add(x, x, y);
    const lost = (e: unknown): boolean =>
      e instanceof DeviceError && e.code === 'NO_DEVICE' && /^WebGPU: the device was lost \(destroyed[^)]*\) during /.test(e.message);
    await assert.rejects(b.read(y), lost);
    assert.throws(() => b.add(x, x, y), lost);
    assert.throws(() => b.tensor(1, 4), lost);
    await assert.rejects(b.read(y), lost);
    await b.close();
  });

  test('a matrix too large for the device: a DeviceError naming it, before anything is decoded or allocated; the backend goes on', async () => {
    const b = await createBackend({ kind: 'webgpu' });
    try {
      // A K-quant matrix is decoded to f32 when placed: 2^31 weights would need 8 GiB (bytes never read).
      const huge: Matrix = { name: 'blocks.3.att.key.weight', dtype: 'q4_k', rows: 1 << 16, cols: 1 << 15, bytes: new Uint8Array(0), f32: undefined, u16: undefined };
      assert.throws(
        () => b.matrix(huge),
        (e: unknown) => e instanceof DeviceError && /matrix blocks\.3\.att\.key\.weight \(8192 MiB\) exceeds the device's \d+ MiB storage buffer limit/.test(e.message),
      );
      const x = b.upload(new Float32Array([1, 2]), 1, 2);
      assert.deepEqual(Array.from(await b.read(x)), [1, 2]);
    } finally {
      await b.close();
    }
  });

  test('the backend says what it runs on', () => {
    assert.equal(backend.kind, 'webgpu');
    assert.match(backend.description, /^webgpu \S/);
  });

  for (const m of MODELS) {
    test(`${m} f32: logits after "in equal the official ones (≤ ${OFFICIAL})`, async (t) => {
      const model = fixture(t, fp32(m));
      const expected = fixture(t, `expected-logits-official-${m}.bin`);
      if (model === undefined || expected === undefined) return;
      const d = maxAbsDiff(await logitsAfterIn(await loadModel(model, { backend })), readF32(expected));
      assert.ok(d <= OFFICIAL, `max abs difference ${d}`);
    });

    test(`${m} f16 (decoded in the kernels): the official FP16 logits (≤ ${OFFICIAL}); Q5_1 (decoded at placement): the reference backend's`, async (t) => {
      const f16 = fixture(t, `tiny-rwkv-${m}-FP16.bin`);
      const expected = fixture(t, `expected-logits-official-${m}-FP16.bin`);
      const q = fixture(t, `tiny-rwkv-${m}-Q5_1.bin`);
      if (f16 === undefined || expected === undefined || q === undefined) return;
      const d = maxAbsDiff(await logitsAfterIn(await loadModel(f16, { backend })), readF32(expected));
      assert.ok(d <= OFFICIAL, `f16: max abs difference ${d}`);
      // WebGPU multiplies quantized weights by exact activations (not ggml's 8-bit ones): so does this reference.
      const want = await logitsAfterIn(await loadModel(q, { backend: new ReferenceBackend({ exactActivations: true }) }));
      const dq = maxAbsDiff(await logitsAfterIn(await loadModel(q, { backend })), want);
      assert.ok(dq <= OFFICIAL, `Q5_1: max abs difference ${dq}`);
    });

    test(`${m}: a prompt read at once equals it read token by token; batched sequences of different lengths equal each alone (≤ ${BATCH_TOLERANCE})`, async (t) => {
      const modelPath = fixture(t, fp32(m));
      const input = fixture(t, 'input-1024.txt');
      if (modelPath === undefined || input === undefined) return;
      const ids = Array.from(fs.readFileSync(input));
      const model: RwkvModel = await loadModel(modelPath, { backend });
      const v = model.config.nVocab;

      const prompt = ids.slice(0, 24);
      const rnnState = model.createState();
      const rnn = new Float32Array(prompt.length * v);
      for (let i = 0; i < prompt.length; i++) rnn.set(await model.forward(prompt[i]!, rnnState), i * v);
      const seqState = model.createState();
      const seq = await model.forwardSequence(prompt, seqState, { allLogits: true });
      assert.ok(maxAbsDiff(seq, rnn) <= OFFICIAL, `parallel vs RNN: ${maxAbsDiff(seq, rnn)}`);
      assert.ok(maxAbsDiff(seqState.data, rnnState.data) <= OFFICIAL * Math.max(1, maxAbs(rnnState.data)), 'parallel vs RNN: states');

      // Each sequence first reads its own prefix, so the batch starts from four different states.
      const starts = [0, 100, 300, 301];
      const lengths = [1, 23, 5, 17];
      const wanted = ['last', 'all', 'none', 'all'] as const;
      const prefixes = [3, 20, 1, 9];
      const alone: Float32Array[] = [];
      const aloneStates: State[] = [];
      const batchStates: State[] = [];
      for (let i = 0; i < starts.length; i++) {
        const a = model.createState();
        await model.forwardSequence(ids.slice(starts[i]! + 500, starts[i]! + 500 + prefixes[i]!), a);
        batchStates.push(a.clone());
        const logits = await model.forwardSequence(ids.slice(starts[i]!, starts[i]! + lengths[i]!), a, { allLogits: true });
        alone.push(wanted[i] === 'all' ? logits : wanted[i] === 'last' ? logits.slice(-v) : new Float32Array(0));
        aloneStates.push(a);
      }
      const batched = await model.run(starts.map((s, i) => ({ tokens: ids.slice(s, s + lengths[i]!), state: batchStates[i]!, logits: wanted[i] })));
      for (let i = 0; i < starts.length; i++) {
        assert.equal(batched[i]!.length, alone[i]!.length, `sequence ${i}: number of logits`);
        const d = maxAbsDiff(batched[i]!, alone[i]!);
        assert.ok(d <= BATCH_TOLERANCE, `sequence ${i}: logits differ by ${d}`);
        const ds = maxAbsDiff(batchStates[i]!.data, aloneStates[i]!.data);
        assert.ok(ds <= BATCH_TOLERANCE * Math.max(1, maxAbs(aloneStates[i]!.data)), `sequence ${i}: states differ by ${ds}`);
      }
    });
  }
});

test('rwkv generate --kernels webgpu: with no adapter, one line saying so (exit 1); with one, the same seeded text as the WebAssembly kernels', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const path = await import('node:path');
  const { REPO_ROOT } = await import('./helpers/fixtures.js');
  const cli = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  const run = (kernels: string, env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [cli, 'generate', 'The President said', '--kernels', kernels, '--max-tokens', '12', '--seed', '5'], { encoding: 'utf8', timeout: 120_000, env });
  const none = run('webgpu', { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json' });
  assert.equal(none.status, 1, none.stderr);
  assert.match(none.stderr, /^rwkv: WebGPU: no adapter/m); // (Dawn's own warnings may come first)
  assert.doesNotMatch(none.stderr, /looks like a bug/);
  const reason = await webgpuUnavailable();
  if (reason !== undefined) {
    if (process.env.CI === 'true') throw new Error(`WebGPU is unavailable under CI: ${reason}`);
    t.skip(`no WebGPU adapter: ${reason}`);
    return;
  }
  const gpu = run('webgpu', process.env);
  const cpu = run('wasm', process.env);
  assert.equal(gpu.status, 0, gpu.stderr);
  assert.equal(gpu.stdout, cpu.stdout);
});

test("kernels 'auto': with no adapter, the WebAssembly backend and the reason (and the CLI says so in one line); with one, WebGPU", async (t) => {
  const { spawnSync } = await import('node:child_process');
  const path = await import('node:path');
  const { pathToFileURL } = await import('node:url');
  const { REPO_ROOT } = await import('./helpers/fixtures.js');
  // A child process: the Vulkan loader reads VK_ICD_FILENAMES once, when Dawn first starts.
  const noAdapter = { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json' };
  const entry = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'kernels', 'create-backend.js')).href;
  const script = `
    const { createBackend } = await import(${JSON.stringify(entry)});
    let reason;
    const b = await createBackend({ kind: 'auto', threads: 1, onFallback: (r) => { reason = r; } });
    console.log(JSON.stringify({ kind: b.kind, reason }));
    await b.close();`;
  // A file, not `-e`: the WebAssembly backend's workers inherit execArgv, and `--input-type` fails there.
  const os = await import('node:os');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-auto-')), 'auto.mjs');
  fs.writeFileSync(file, script);
  const child = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000, env: noAdapter });
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  assert.equal(child.status, 0, child.stderr);
  const picked = JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as { kind: string; reason?: string };
  assert.equal(picked.kind, 'wasm');
  assert.match(picked.reason ?? '', /no adapter/);

  const cli = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  const generate = (kernels: string, env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, [cli, 'generate', 'The President said', '--kernels', kernels, '--max-tokens', '12', '--seed', '5'], { encoding: 'utf8', timeout: 120_000, env });
  const fallen = generate('auto', noAdapter);
  const cpu = generate('wasm', process.env);
  assert.equal(fallen.status, 0, fallen.stderr);
  assert.match(fallen.stderr, /^rwkv: WebGPU unavailable \(WebGPU: no adapter[^\n]*\); using WebAssembly$/m);
  assert.equal(fallen.stdout, cpu.stdout);

  const reason = await webgpuUnavailable();
  if (reason !== undefined) {
    if (process.env.CI === 'true') throw new Error(`WebGPU is unavailable under CI: ${reason}`);
    t.skip(`no WebGPU adapter: ${reason}`);
    return;
  }
  let heard: string | undefined;
  const auto = await createBackend({ kind: 'auto', onFallback: (r) => (heard = r) });
  try {
    assert.equal(auto.kind, 'webgpu');
    assert.equal(heard, undefined);
  } finally {
    await auto.close();
  }
});
