// The GPT-2 baseline: a random checkpoint written as safetensors + config.json, loaded through the
// engine, against an independent float64 GPT-2 forward written here from the Hugging Face definition.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ModelError, RwkvError } from '../src/errors.js';
import { writeSafetensors } from '../src/formats/safetensors-writer.js';
import { outTensor } from '../src/formats/writer.js';
import { gptConfigJson, type GptFileConfig } from '../src/models/gpt-config.js';
import { gptTokenizer, loadGpt } from '../src/models/gpt-load.js';
import { randomGptSource, type RandomGptOptions } from '../src/models/gpt-random.js';
import { loadModel } from '../src/models/load.js';
import { rowLayout } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference-backend.js';
import { attentionKernel } from '../src/kernels/wasm-attention.js';
import { SeededRandom } from './helpers/conformance-f64.js';
import { encodeHalf } from '../src/kernels/quantize.js';
import { decodeBF16, decodeF16 } from '../src/tensor/dtype.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { testBackend } from './helpers/backend.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
/** f32 kernels against float64: relative to the logits' largest magnitude. */
const REL_TOL = 1e-4;

const CONFIG: GptFileConfig = { nLayer: 2, nEmbd: 16, nHead: 4, nPositions: 32, nVocab: 256, layerNormEps: 1e-5, tieWordEmbeddings: true };
const TOKENS = [72, 101, 108, 108, 111, 44, 32, 71, 80, 84, 33];

const made: string[] = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-gpt-'));
  made.push(dir);
  return dir;
}

/** Writes a random checkpoint into a fresh directory; returns the directory and the tensors written. */
function writeCheckpoint(options: RandomGptOptions & { config?: GptFileConfig; edit?: (t: Map<string, Tensor>) => void } = {}): { dir: string; tensors: Map<string, Tensor> } {
  const config = options.config ?? CONFIG;
  // std 0.3: activations of order 1, so that GELU's cubic term, the softmax and the norms all matter.
  const source = randomGptSource(config, { std: 0.3, ...options });
  const tensors = new Map(source.tensors);
  options.edit?.(tensors);
  const dir = tmpDir();
  writeSafetensors(path.join(dir, 'model.safetensors'), [...tensors.values()].map((t) => outTensor(t)));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...gptConfigJson(config), tie_word_embeddings: options.untied !== true }));
  return { dir, tensors };
}

/** A tensor's values as float64. */
function f64(tensors: Map<string, Tensor>, name: string): Float64Array {
  const t = tensors.get(name);
  assert.ok(t !== undefined, name);
  return Float64Array.from(new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4));
}

/**
 * GPT-2's forward in float64, straight from the definition (Conv1D: y = x·W + b with W [in, out]);
 * every position's logits, T × V.
 */
function referenceLogits(tensors: Map<string, Tensor>, config: GptFileConfig, tokens: readonly number[], prefix = ''): Float64Array[] {
  const { nLayer: L, nEmbd: C, nHead: H, nVocab: V, layerNormEps: eps } = config;
  const N = C / H;
  const p = (n: string): Float64Array => f64(tensors, `${prefix}${n}`);
  const layerNorm = (x: Float64Array, w: Float64Array, b: Float64Array): Float64Array => {
    let mean = 0;
    for (const v of x) mean += v / x.length;
    let varSum = 0;
    for (const v of x) varSum += (v - mean) ** 2;
    const inv = 1 / Math.sqrt(varSum / x.length + eps);
    return x.map((v, i) => (v - mean) * inv * w[i]! + b[i]!);
  };
  const conv1d = (x: Float64Array, w: Float64Array, b: Float64Array, out: number): Float64Array => {
    const y = Float64Array.from(b);
    for (let i = 0; i < x.length; i++) for (let o = 0; o < out; o++) y[o]! += x[i]! * w[i * out + o]!;
    return y;
  };
  const gelu = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const wte = p('wte.weight');
  const wpe = p('wpe.weight');
  let xs = tokens.map((t, pos) => Float64Array.from({ length: C }, (_, i) => wte[t * C + i]! + wpe[pos * C + i]!));
  for (let l = 0; l < L; l++) {
    const h = `h.${l}`;
    const qkv = xs.map((x) => conv1d(layerNorm(x, p(`${h}.ln_1.weight`), p(`${h}.ln_1.bias`)), p(`${h}.attn.c_attn.weight`), p(`${h}.attn.c_attn.bias`), 3 * C));
    const att = xs.map((_, i) => {
      const out = new Float64Array(C);
      for (let hd = 0; hd < H; hd++) {
        const scores = Array.from({ length: i + 1 }, (_, j) => {
          let s = 0;
          for (let d = 0; d < N; d++) s += qkv[i]![hd * N + d]! * qkv[j]![C + hd * N + d]!;
          return s / Math.sqrt(N);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) for (let d = 0; d < N; d++) out[hd * N + d]! += (e[j]! / sum) * qkv[j]![2 * C + hd * N + d]!;
      }
      return out;
    });
    xs = xs.map((x, i) => {
      const a = conv1d(att[i]!, p(`${h}.attn.c_proj.weight`), p(`${h}.attn.c_proj.bias`), C);
      const x1 = x.map((v, k) => v + a[k]!);
      const hid = conv1d(layerNorm(x1, p(`${h}.ln_2.weight`), p(`${h}.ln_2.bias`)), p(`${h}.mlp.c_fc.weight`), p(`${h}.mlp.c_fc.bias`), 4 * C).map(gelu);
      const m = conv1d(hid, p(`${h}.mlp.c_proj.weight`), p(`${h}.mlp.c_proj.bias`), C);
      return x1.map((v, k) => v + m[k]!);
    });
  }
  const head = tensors.has('lm_head.weight') ? f64(tensors, 'lm_head.weight') : wte;
  return xs.map((x) => {
    const n = layerNorm(x, p('ln_f.weight'), p('ln_f.bias'));
    return Float64Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let i = 0; i < C; i++) s += n[i]! * head[v * C + i]!;
      return s;
    });
  });
}

/** max |a − b| over max |b| (b the float64 reference). */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let mag = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    mag = Math.max(mag, Math.abs(b[i]!));
  }
  return diff / mag;
}

const backend = await testBackend();

test('attention: the SIMD kernel (wasm) equals the reference over long caches, every head size path', async () => {
  assert.ok(attentionKernel(backend.kernels.memory) !== undefined, 'dist/wasm/attention-simd.wasm loads and links');
  const ref = new ReferenceBackend();
  const rnd = new SeededRandom(21);
  // (C, heads, cached rows, new rows): head sizes 64 (16-channel sweeps), 8 and 4 (4-channel tail),
  // visible counts not multiples of 4 (the exp tail).
  for (const [c, heads, past, rows] of [[256, 4, 301, 1], [24, 3, 57, 5], [16, 4, 0, 7]] as const) {
    const cap = past + rows;
    const kc = rnd.values(cap * c, -1, 1);
    const vc = rnd.values(cap * c, -1, 1);
    const [q, k, v] = [0, 1, 2].map(() => rnd.values(rows * c, -2, 2));
    const run = async (b: typeof ref | typeof backend): Promise<Float32Array> => {
      const slot = { k: b.upload(kc, cap, c), v: b.upload(vc, cap, c), length: past };
      const out = b.tensor(rows, c);
      b.attention(rowLayout([rows]), [slot], heads, b.upload(q!, rows, c), b.upload(k!, rows, c), b.upload(v!, rows, c), out);
      return b.read(out);
    };
    const want = await run(ref);
    const got = await run(backend);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    assert.ok(err < 2e-5, `C ${c}, ${heads} heads, ${past} + ${rows} rows: max error ${err}`);
  }
});

for (const kernels of ['wasm', 'reference'] as const) {
  for (const variant of [{ untied: false, transformerPrefix: false }, { untied: true, transformerPrefix: true }]) {
    const label = `${variant.untied ? 'untied' : 'tied'} head${variant.transformerPrefix ? ', transformer. prefix' : ''}`;
    test(`GPT (${kernels} kernels, ${label}): every position's logits within ${REL_TOL} (relative) of a float64 GPT-2`, async () => {
      const { dir, tensors } = writeCheckpoint({ seed: 3, ...variant });
      const model = await loadGpt(dir, kernels === 'wasm' ? { backend } : {});
      assert.equal(model.tied, !variant.untied);
      const logits = await model.forwardSequence(TOKENS, model.createState(), { allLogits: true });
      const expected = referenceLogits(tensors, CONFIG, TOKENS, variant.transformerPrefix ? 'transformer.' : '');
      const V = CONFIG.nVocab;
      for (let i = 0; i < TOKENS.length; i++) {
        const err = relError(logits.subarray(i * V, (i + 1) * V), expected[i]!);
        assert.ok(err < REL_TOL, `position ${i}: relative error ${err}`);
      }
      model.dispose();
    });
  }
}

for (const dtype of ['f16', 'bf16'] as const) {
  test(`GPT: a ${dtype} checkpoint gives the float64 logits of its ${dtype} weights (the Conv1D transposes keep the encoding)`, async () => {
    // Stored as dtype; the reference sees the same rounded values, as f32.
    const rounded = new Map<string, Tensor>();
    const { dir } = writeCheckpoint({
      seed: 14,
      untied: true,
      edit: (t) => {
        for (const [name, x] of t) {
          const v = new Float32Array(x.data.buffer, x.data.byteOffset, x.data.byteLength / 4);
          const half = new Uint8Array(v.length * 2);
          encodeHalf(dtype, v, half);
          const bits = new Uint16Array(half.buffer);
          const back = Float32Array.from(bits, (h) => (dtype === 'f16' ? decodeF16(h) : decodeBF16(h)));
          rounded.set(name, { ...x, data: new Uint8Array(back.buffer) });
          t.set(name, { ...x, dtype, data: half });
        }
      },
    });
    const model = await loadGpt(dir, { backend });
    const logits = await model.forwardSequence(TOKENS, model.createState(), { allLogits: true });
    const expected = referenceLogits(rounded, CONFIG, TOKENS);
    const V = CONFIG.nVocab;
    for (let i = 0; i < TOKENS.length; i++) {
      const err = relError(logits.subarray(i * V, (i + 1) * V), expected[i]!);
      assert.ok(err < REL_TOL, `position ${i}: relative error ${err}`);
    }
  });
}

test('GPT: the tied and the untied head give different logits; a state of another model is refused', async () => {
  const mt = await loadGpt(writeCheckpoint({ seed: 4 }).dir, { backend });
  const mu = await loadGpt(writeCheckpoint({ seed: 4, untied: true }).dir, { backend });
  const lt = await mt.forwardSequence(TOKENS, mt.createState());
  const lu = await mu.forwardSequence(TOKENS, mu.createState());
  assert.ok(relError(lt, lu) > 0.1, 'the heads differ');
  await assert.rejects(mt.forward(1, mu.createState()), /does not belong/);
});

test('GPT: the KV cache (token by token, and in slices) gives the no-cache logits', async () => {
  const { dir } = writeCheckpoint({ seed: 5 });
  const cached = await loadGpt(dir, { backend });
  const uncached = await loadGpt(dir, { backend, kvCache: false });
  const V = CONFIG.nVocab;
  const sc = cached.createState();
  const su = uncached.createState();
  const sliced = cached.createState();
  await cached.forwardSequence(TOKENS.slice(0, 4), sliced);
  const rest = await cached.forwardSequence(TOKENS.slice(4), sliced, { allLogits: true });
  for (let i = 0; i < TOKENS.length; i++) {
    const a = await cached.forward(TOKENS[i]!, sc);
    const b = await uncached.forward(TOKENS[i]!, su);
    assert.ok(relError(a, b) < 1e-5, `position ${i}: cached vs uncached ${relError(a, b)}`);
    if (i >= 4) assert.ok(relError(rest.subarray((i - 4) * V, (i - 3) * V), b) < 1e-5, `position ${i}: sliced`);
  }
  assert.equal(sc.bytes, 2 * CONFIG.nLayer * TOKENS.length * CONFIG.nEmbd * 4);
  assert.equal(su.bytes, 0);
  // The context ends at n_positions.
  await assert.rejects(cached.forwardSequence(new Array<number>(CONFIG.nPositions).fill(1), sc), /n_positions/);
});

test('GPT: the safetensors file as the model path finds config.json beside it; vocab 256 → bytes', async () => {
  const { dir } = writeCheckpoint({ seed: 6 });
  const byDir = await loadGpt(dir, { backend });
  const byFile = await loadGpt(path.join(dir, 'model.safetensors'), { backend });
  assert.deepEqual(await byDir.forwardSequence(TOKENS, byDir.createState()), await byFile.forwardSequence(TOKENS, byFile.createState()));
  assert.equal((await gptTokenizer(dir, 256)).vocabSize, 256);
  await assert.rejects(gptTokenizer(dir, 1000), (e: unknown) => e instanceof RwkvError && /tokenizer\.json/.test(e.message));
});

test('GPT: old HF buffers (h.*.attn.bias, .masked_bias) are ignored', async () => {
  const { dir } = writeCheckpoint({
    seed: 7,
    edit: (t) => {
      const mask = new Float32Array(CONFIG.nPositions * CONFIG.nPositions).fill(1);
      t.set('h.0.attn.bias', { name: 'h.0.attn.bias', dtype: 'f32', shape: [1, 1, CONFIG.nPositions, CONFIG.nPositions], data: new Uint8Array(mask.buffer) });
      t.set('h.0.attn.masked_bias', { name: 'h.0.attn.masked_bias', dtype: 'f32', shape: [], data: new Uint8Array(new Float32Array([-1e4]).buffer) });
    },
  });
  const model = await loadGpt(dir, { backend });
  assert.equal((await model.forward(1, model.createState())).length, CONFIG.nVocab);
});

test('GPT: bad checkpoints are typed errors naming the file and the tensor', async () => {
  // No config.json: the directory names it; the .safetensors path alone says it is GPT-2 without one.
  const noConfig = writeCheckpoint({ seed: 8 });
  fs.rmSync(path.join(noConfig.dir, 'config.json'));
  await assert.rejects(loadGpt(noConfig.dir), (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.file === path.join(noConfig.dir, 'config.json'));
  await assert.rejects(loadModel(path.join(noConfig.dir, 'model.safetensors')), (e: unknown) => e instanceof ModelError && /config\.json/.test(e.message));
  // A tensor of the wrong shape.
  const badShape = writeCheckpoint({
    seed: 9,
    edit: (t) => {
      const w = t.get('h.1.mlp.c_fc.weight')!;
      t.set(w.name, { ...w, shape: [4 * CONFIG.nEmbd, CONFIG.nEmbd] });
    },
  });
  await assert.rejects(loadGpt(badShape.dir), (e: unknown) => e instanceof ModelError && e.code === 'BAD_SHAPE' && e.tensor === 'h.1.mlp.c_fc.weight' && e.file === path.join(badShape.dir, 'model.safetensors'));
  // A missing tensor.
  const missing = writeCheckpoint({ seed: 10, edit: (t) => t.delete('h.1.ln_2.bias') });
  await assert.rejects(loadGpt(missing.dir), (e: unknown) => e instanceof ModelError && e.code === 'MISSING_TENSOR' && e.tensor === 'h.1.ln_2.bias');
  // Untied in config.json, but no lm_head.
  const noHead = writeCheckpoint({ seed: 11 });
  fs.writeFileSync(path.join(noHead.dir, 'config.json'), JSON.stringify({ ...gptConfigJson(CONFIG), tie_word_embeddings: false }));
  await assert.rejects(loadGpt(noHead.dir), (e: unknown) => e instanceof ModelError && e.tensor === 'lm_head.weight');
  // A config.json that disagrees with the tensors, and a bad one.
  fs.writeFileSync(path.join(noHead.dir, 'config.json'), JSON.stringify({ ...gptConfigJson({ ...CONFIG, nVocab: 300 }) }));
  await assert.rejects(loadGpt(noHead.dir), (e: unknown) => e instanceof ModelError && e.code === 'BAD_SHAPE' && e.tensor === 'wte.weight');
  fs.writeFileSync(path.join(noHead.dir, 'config.json'), JSON.stringify({ ...gptConfigJson(CONFIG), n_head: 5 }));
  await assert.rejects(loadGpt(noHead.dir), (e: unknown) => e instanceof ModelError && /n_head/.test(e.message) && e.file === path.join(noHead.dir, 'config.json'));
});

test('CLI: rwkv logits on a GPT checkpoint writes the float64 reference\'s logits (parallel and rnn modes)', () => {
  const { dir, tensors } = writeCheckpoint({ seed: 12 });
  const input = path.join(dir, 'input.txt');
  fs.writeFileSync(input, Buffer.from(TOKENS));
  const expected = referenceLogits(tensors, CONFIG, TOKENS);
  for (const mode of ['parallel', 'rnn']) {
    const out = path.join(dir, `logits-${mode}.bin`);
    const r = spawnSync(process.execPath, [CLI, 'logits', '--model', dir, '--input', input, '--out', out, '--all', '--mode', mode, '--threads', '1'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const bytes = fs.readFileSync(out);
    const got = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const V = CONFIG.nVocab;
    assert.equal(got.length, TOKENS.length * V);
    for (let i = 0; i < TOKENS.length; i++) assert.ok(relError(got.subarray(i * V, (i + 1) * V), expected[i]!) < REL_TOL, `${mode} position ${i}`);
  }
  // A GPT safetensors without its config.json: one line naming the file.
  fs.rmSync(path.join(dir, 'config.json'));
  const r = spawnSync(process.execPath, [CLI, 'logits', '--model', path.join(dir, 'model.safetensors'), '--input', input, '--out', path.join(dir, 'x.bin'), '--threads', '1'], { encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /config\.json/);
});

test('CLI: rwkv generate on a GPT checkpoint streams text and stats', () => {
  const { dir } = writeCheckpoint({ seed: 13 });
  const r = spawnSync(process.execPath, [CLI, 'generate', '--model', dir, 'Hi', '--max-tokens', '8', '--seed', '1', '--threads', '1'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /generated: 8 tokens/);
});
