// State tuning: a real trained tiny RWKV-7 (7v0-834K, bytes) tuned on a small English text. What the run
// writes (RUN_DIR/state.bin) is read by the inference engine (Rwkv.loadState) and scored there
// (evaluateText from that state) against a fresh state; the file refuses another model; a stopped and
// resumed run ends with the same states as an uninterrupted one.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { runEval } from '../src/cli/eval.js';
import { StateError } from '../src/errors.js';
import { writeSafetensors } from '../src/formats/safetensors-writer.js';
import { evaluateText } from '../src/eval/evaluate.js';
import { Rwkv } from '../src/generation/rwkv.js';
import { readStateFileHeader } from '../src/generation/state-file.js';
import { WasmGemm } from '../src/training/gemm.js';
import { loadRwkv7Train, Rwkv7Train, type Rwkv7Shape } from '../src/training/rwkv7.js';
import { STATE_TUNE_CHECKPOINT, stateTune, type StateTuneOptions } from '../src/training/state-tune.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';

const MODEL = 'converted/tiny-rwkv-7v0-834K-FP32.safetensors';

function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `state-tune-${tag}-`));
}

/** Mean nats per scored token of `text` (after the "\n" prefix token), from `state` or a fresh one. */
async function textLoss(rwkv: Rwkv, text: Uint8Array, state?: Awaited<ReturnType<Rwkv['loadState']>>): Promise<number> {
  const [r] = await evaluateText(rwkv, [{ name: 'text', content: text }], state !== undefined ? { state } : {});
  return -r!.loglikelihood / r!.tokens;
}

test('a tuned state lowers the loss of its tuning documents, as the inference engine measures it from state.bin; held out too', async (t) => {
  const model = fixture(t, MODEL);
  const input = fixture(t, 'input-1024.txt');
  if (model === undefined || input === undefined) return;
  const dir = tempDir('tune');
  // Documents: the fixture's lines, each after "\n" and a fixed opening that only a tuned state can foresee.
  const lines = fs.readFileSync(input, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const docs = lines.map((l) => `rwkv says: ${l}`);
  const text = path.join(dir, 'docs.txt');
  fs.writeFileSync(text, docs.map((d) => `\n${d}`).join(''));
  const gemm = new WasmGemm((await testBackend()).kernels);
  const options: StateTuneOptions = { init: model, data: [text], out: path.join(dir, 'run'), separator: '\n', context: 24, batch: 8, steps: 30, evalEvery: 15, valFraction: 0.2 };
  const res = await stateTune(options, gemm);
  assert.ok(res.fresh !== undefined && res.tuned !== undefined && res.fresh.val !== undefined && res.tuned.val !== undefined);
  console.log(
    `# 7v0-834K, 30 steps of B8 T24 (lr 1 → 0.01): trainer's loss on the tuning windows ${res.fresh.train.toFixed(4)} → ${res.tuned.train.toFixed(4)}, held out ${res.fresh.val.toFixed(4)} → ${res.tuned.val.toFixed(4)} nats/byte (${res.tokensPerSecond.toFixed(0)} tokens/s)`,
  );
  assert.ok(res.tuned.train < res.fresh.train - 0.01, 'the trainer sees the tuning loss fall');

  // The inference engine, loading the file the run wrote, scores every document as `rwkv eval --text` does
  // (after the "\n" prefix token) from a fresh state and from the tuned one.
  const rwkv = await Rwkv.load(model, { tokenizer: 'bytes', threads: 1 });
  try {
    const state = await rwkv.loadState(res.stateFile);
    assert.equal(state.logits, undefined, 'an initial state: nothing read yet');
    const tuningBytes = fs.statSync(text).size - Math.floor(fs.statSync(text).size * 0.2);
    let at = 0;
    const tuning: string[] = [];
    const heldOut: string[] = [];
    for (const d of docs) {
      (at + d.length + 1 <= tuningBytes ? tuning : heldOut).push(d);
      at += d.length + 1;
    }
    const loss = async (set: string[], from?: typeof state): Promise<number> => {
      const r = await evaluateText(rwkv, set.map((d, i) => ({ name: String(i), content: d })), from !== undefined ? { state: from } : {});
      return -r.reduce((a, x) => a + x.loglikelihood, 0) / set.length;
    };
    const [freshTune, tunedTune, freshHeld, tunedHeld] = [await loss(tuning), await loss(tuning, state), await loss(heldOut), await loss(heldOut, state)];
    console.log(
      `# inference from state.bin, nats per document: ${tuning.length} tuning documents ${freshTune.toFixed(3)} → ${tunedTune.toFixed(3)}, ${heldOut.length} held-out ${freshHeld.toFixed(3)} → ${tunedHeld.toFixed(3)}`,
    );
    assert.ok(tunedTune < freshTune - 0.3, `tuning documents: ${freshTune} → ${tunedTune} nats each`);
    assert.ok(tunedHeld < freshHeld, `held-out documents: ${freshHeld} → ${tunedHeld} nats each`);
    // The log: a line per step, evaluations, and the result.
    const log = fs.readFileSync(path.join(options.out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number });
    assert.equal(log.filter((e) => e.type === 'train').length, 30);
    assert.deepEqual(log.filter((e) => e.type === 'val').map((e) => e.step), [15, 30]);
    assert.equal(log.at(-1)!.type, 'result');
  } finally {
    await rwkv.close();
  }
  fs.rmSync(dir, { recursive: true });
});

test('state.bin: a state file of the model; another model refuses it with a message naming both', async (t) => {
  const model = fixture(t, MODEL);
  const input = fixture(t, 'input-1024.txt');
  if (model === undefined || input === undefined) return;
  const dir = tempDir('wrong');
  const gemm = new WasmGemm((await testBackend()).kernels);
  const res = await stateTune({ init: model, data: [input], out: path.join(dir, 'run'), context: 32, batch: 2, steps: 2, valFraction: 0 }, gemm);
  const header = readStateFileHeader(fs.readFileSync(res.stateFile), res.stateFile);
  assert.equal(header.version, '7');
  assert.equal(header.name, path.basename(model));
  assert.equal(header.logitFloats, 0);
  const shape = res.model.shape;
  const save = (m: Rwkv7Train, file: string): void =>
    writeSafetensors(
      file,
      m.params.map((p) => {
        const a = Float32Array.from(p.data);
        return { name: p.name, dtype: 'f32' as const, shape: p.shape, byteLength: a.byteLength, bytes: () => new Uint8Array(a.buffer) };
      }),
    );
  // Same shape, other weights (ln vectors changed): refused as another model of the same shape.
  const other = new Rwkv7Train(shape, gemm);
  for (const p of other.params) p.data.set(res.model.param(p.name).data);
  other.param('ln_out.weight').data.fill(0.5);
  const sameShape = path.join(dir, 'same-shape.safetensors');
  save(other, sameShape);
  // Another shape.
  const small: Rwkv7Shape = { nLayer: 1, nEmbd: 16, nVocab: 256, headSize: 8, ffnSize: 32, wLora: 4, aLora: 4, vLora: 4, gLora: 4 };
  const smallFile = path.join(dir, 'small.safetensors');
  save(new Rwkv7Train(small, gemm), smallFile);
  // `rwkv eval --text FILE --state-in state.bin`: the same text scored from the file's state differs from a fresh state's score.
  const doc = path.join(dir, 'doc.txt');
  fs.writeFileSync(doc, fs.readFileSync(input).subarray(0, 200));
  const evalOut = async (stateIn?: string): Promise<{ loglikelihood: number; stateIn?: string }> => {
    const out = path.join(dir, `eval-${stateIn === undefined ? 'fresh' : 'tuned'}.json`);
    await runEval({ model, tasks: [], text: [doc], tokenizer: 'bytes', threads: 1, progress: false, out, ...(stateIn !== undefined ? { stateIn } : {}) });
    const j = JSON.parse(fs.readFileSync(out, 'utf8')) as { stateIn?: string; texts: Record<string, { loglikelihood: number }> };
    return { loglikelihood: j.texts[doc]!.loglikelihood, ...(j.stateIn !== undefined ? { stateIn: j.stateIn } : {}) };
  };
  const [fromFresh, fromState] = [await evalOut(), await evalOut(res.stateFile)];
  assert.equal(fromState.stateIn, res.stateFile);
  assert.notEqual(fromState.loglikelihood, fromFresh.loglikelihood);
  await assert.rejects(runEval({ model, tasks: ['lambada_openai'], stateIn: res.stateFile }), /--state-in applies to --text/);
  for (const [file, pattern] of [
    [sameShape, /same shape but other weights/],
    [smallFile, /it belongs to RWKV v7, \d+ layers, n_embd 64.*this model is RWKV v7, 1 layers, n_embd 16/],
  ] as const) {
    const rwkv = await Rwkv.load(file, { tokenizer: 'bytes', threads: 1 });
    try {
      await assert.rejects(rwkv.loadState(res.stateFile), (e: unknown) => e instanceof StateError && pattern.test(e.message), file);
    } finally {
      await rwkv.close();
    }
  }
  fs.rmSync(dir, { recursive: true });
});

test('a stopped run resumed from its checkpoint ends with the same states as an uninterrupted one', async (t) => {
  const model = fixture(t, MODEL);
  const input = fixture(t, 'input-1024.txt');
  if (model === undefined || input === undefined) return;
  const dir = tempDir('resume');
  const gemm = new WasmGemm((await testBackend()).kernels);
  const base = { init: model, data: [input], context: 32, batch: 2, steps: 12, evalEvery: 4, saveEvery: 100 };
  const whole = await stateTune({ ...base, out: path.join(dir, 'whole') }, gemm);
  const want = whole.model.initialState!.map((p) => Float32Array.from(p.data));
  let steps = 0;
  const first = await stateTune({ ...base, out: path.join(dir, 'split') }, gemm, { onStep: () => void steps++, shouldStop: () => steps === 5 });
  assert.ok(first.stopped);
  assert.equal(first.step, 5);
  assert.ok(fs.existsSync(path.join(dir, 'split', STATE_TUNE_CHECKPOINT)));
  await assert.rejects(stateTune({ ...base, out: path.join(dir, 'split') }, gemm), /already holds a run/);
  const rest = await stateTune({ ...base, out: path.join(dir, 'split'), resume: true }, gemm);
  assert.equal(rest.step, 12);
  assert.deepEqual(rest.losses, whole.losses.slice(5), 'the same batches and losses after the resume');
  rest.model.initialState!.forEach((p, l) => assert.deepEqual(Float32Array.from(p.data), want[l], p.name));
  assert.deepEqual(fs.readFileSync(path.join(dir, 'split', 'state.bin')), fs.readFileSync(whole.stateFile));
  fs.rmSync(dir, { recursive: true });
});

test('.jsonl conversations: the tuning loss is the mean over only the assistant answers (the mask of `rwkv train`)', async (t) => {
  const model = fixture(t, MODEL);
  if (model === undefined) return;
  const dir = tempDir('chat');
  const conversations = [
    [
      { role: 'user', content: 'What colour is the sky?' },
      { role: 'assistant', content: 'Qzv xjq 7#kw!' },
    ],
    [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'And the grass?' },
      { role: 'assistant', content: 'Zk9 wvq@ XJ.' },
    ],
  ];
  const data = path.join(dir, 'chat.jsonl');
  fs.writeFileSync(data, conversations.map((messages) => JSON.stringify({ messages })).join('\n') + '\n');
  // Answers no English-trained model foresees, so that their mean is far from the mean over every target.
  // The rendered text (World's template; the model's tokenizer is bytes, one token per character here) and,
  // independently of the trainer, which of its tokens are targets: an answer's text after "Assistant:".
  let text = '';
  const trained: boolean[] = [];
  for (const messages of conversations) {
    for (const { role, content } of messages) {
      const cue = { system: 'System:', user: 'User:', assistant: 'Assistant:' }[role]!;
      const turn = `${cue} ${content}\n\n`;
      for (let i = 0; i < turn.length; i++) trained.push(role === 'assistant' && i >= cue.length);
      text += turn;
    }
  }
  // One window of the whole text (context = length − 1), so that every batch row is that window.
  const context = text.length - 1;
  const gemm = new WasmGemm((await testBackend()).kernels);
  const res = await stateTune({ init: model, data: [data], out: path.join(dir, 'run'), context, batch: 2, steps: 1, valFraction: 0 }, gemm);

  // The same window through an untuned copy of the model (a zero initial state, as at the first step).
  const frozen = await loadRwkv7Train(model, gemm, { frozen: true });
  frozen.enableInitialState();
  const ids = Int32Array.from(text.slice(0, context), (c) => c.charCodeAt(0));
  const logits = frozen.logits(ids, 1, context);
  const V = frozen.shape.nVocab;
  let masked = 0;
  let counted = 0;
  let all = 0;
  for (let p = 0; p < context; p++) {
    const row = logits.subarray(p * V, (p + 1) * V);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let z = 0;
    for (const x of row) z += Math.exp(x - max);
    const nll = Math.log(z) + max - row[text.charCodeAt(p + 1)]!;
    all += nll;
    if (trained[p + 1]) {
      masked += nll;
      counted++;
    }
  }
  const want = masked / counted;
  const unmasked = all / context;
  console.log(`# ${counted} of ${context} targets are answers: first-step loss ${res.losses[0]!.toFixed(5)}, their mean ${want.toFixed(5)} (all targets: ${unmasked.toFixed(5)})`);
  assert.ok(Math.abs(unmasked - want) > 0.1, 'the check tells the masked mean from the unmasked one');
  assert.ok(Math.abs(res.losses[0]! - want) < 1e-4 * want, `first-step loss ${res.losses[0]} vs the answers' mean ${want}`);
  // The end-of-run measure from a zero state is over the same window, with the same mask.
  assert.ok(Math.abs(res.fresh!.train - want) < 1e-4 * want, `fresh ${res.fresh!.train} vs ${want}`);
  fs.rmSync(dir, { recursive: true });
});
