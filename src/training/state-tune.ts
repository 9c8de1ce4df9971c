// State tuning (RWKV-PEFT's `--train_type state`) for RWKV-7: the weights of an existing model stay frozen;
// only the initial WKV state of every layer (L × [H, N, N], S[h][value i][key j]) is trained, every
// sequence of a batch starting from it (token-shift states stay zero, as RWKV-PEFT leaves them). The result
// is an ordinary state file (RUN_DIR/state.bin, docs/state-files.md) that `rwkv generate --state-in`,
// `rwkv chat`, `rwkv eval --text … --state-in` and `Rwkv.loadState` read. The data may be .jsonl
// conversations (chat-data.ts): only the assistant's answers then carry loss, as in `rwkv train`. The step
// loop, the log and the run-directory check are the trainer's (run-loop.ts).
//
// Run directory:
//   tokens.bin                 the token cache (data.ts)
//   log.jsonl                  {type:'train', step, loss, lr, grad_norm, tokens, time_s} per step,
//                              {type:'val', step, loss, tokens} per evaluation, and at the end
//                              {type:'result', step, fresh:{train,val}, tuned:{train,val}}
//   state.bin                  the tuned state (rewritten, atomically, at every checkpoint)
//   state-tune.safetensors     the resumable checkpoint, written atomically: `blocks.{l}.att.time_state`
//                              and AdamW's moments (`adam.m.…`, `adam.v.…`), the step, the data
//                              generator's state and the options in the metadata
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, ModelError } from '../errors.js';
import { resolveTemplate } from '../generation/chat-template-file.js';
import { readSafetensors } from '../formats/safetensors.js';
import { writeSafetensors } from '../formats/safetensors-writer.js';
import { decodeF32 } from '../formats/values.js';
import type { OutTensor } from '../formats/writer.js';
import { RwkvState } from '../generation/context.js';
import { encodeStateFile, type ModelIdentity } from '../generation/state-file.js';
import type { ModelConfig } from '../models/config.js';
import { State } from '../models/state.js';
import { KNOWN_VOCABULARIES, tokenizerForModel } from '../tokenizers/load.js';
import { Rng } from '../util/rng.js';
import { AdamW } from './adamw.js';
import { evalBatches, prepareTokens, randomBatch, splitTokens, windowBatch, type Batch } from './data.js';
import type { Gemm } from './gemm.js';
import type { Param } from './model.js';
import type { Vec } from './ops.js';
import { checkRunDirectory, meanLoss, openRunLog, runSteps, type StepReport } from './run-loop.js';
import { loadRwkv7Train, type Rwkv7Shape, type Rwkv7Train } from './rwkv7.js';

export const STATE_TUNE_LOG = 'log.jsonl';
export const STATE_TUNE_TOKENS = 'tokens.bin';
export const STATE_TUNE_OUTPUT = 'state.bin';
export const STATE_TUNE_CHECKPOINT = 'state-tune.safetensors';
const META_KEY = 'rwkv-ts-state-tuning';

export interface StateTuneOptions {
  /** The RWKV-7 model whose initial state is tuned (any supported format); its weights stay as they are. */
  init: string;
  /** Text files, directories of them, or one token file (on resume: the run's own unless given). */
  data?: string[];
  /** The run directory. */
  out: string;
  /** Tokens per sequence (RWKV-PEFT advises short ones for state tuning). */
  context?: number;
  /**
   * Documents: text of one token (e.g. "\n") that starts each document. Every window then starts at one
   * of its occurrences (its first input is the separator, as `rwkv eval --text` reads its "\n" prefix
   * token first), so that the state is tuned as the start of a document, as RWKV-PEFT's samples are.
   * Default: windows at random positions.
   */
  separator?: string;
  batch?: number;
  steps?: number;
  /** Peak learning rate (RWKV-PEFT's state-tuning advice: lr_init 1). */
  lr?: number;
  /** At the last step (RWKV-PEFT: lr_final 0.01). */
  lrFinal?: number;
  /** Warm-up steps (RWKV-PEFT: 10). */
  warmup?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Global gradient-norm clip (0: none). */
  clip?: number;
  /** 'bytes', a World vocabulary or a tokenizer.json; default: by the model's vocabulary, beside it. */
  tokenizer?: string;
  seed?: number;
  /** Fraction of the tokens held out (the held-out check). */
  valFraction?: number;
  evalEvery?: number;
  /** Batches per evaluation (of the held-out data; as many windows of the tuning data at the end). */
  evalBatches?: number;
  saveEvery?: number;
  /** The chat template of .jsonl conversations (chat-data.ts): 'world' (default), 'raven' or a JSON file. */
  chatTemplate?: string;
  resume?: boolean;
  overwrite?: boolean;
}

export type ResolvedStateTuneOptions = Required<Omit<StateTuneOptions, 'tokenizer' | 'separator' | 'resume' | 'overwrite'>> & {
  tokenizer: string | undefined;
  separator: string | undefined;
};

export const STATE_TUNE_DEFAULTS = {
  context: 128,
  batch: 4,
  steps: 200,
  lr: 1,
  lrFinal: 0.01,
  warmup: 10,
  beta1: 0.9,
  beta2: 0.99,
  eps: 1e-8,
  clip: 1,
  seed: 42,
  valFraction: 0.1,
  evalEvery: 50,
  evalBatches: 8,
  saveEvery: 100,
  chatTemplate: 'world',
} as const;

export type StateTuneStep = StepReport;

export interface StateTuneStart {
  shape: Rwkv7Shape;
  /** Trained values: L·H·N². */
  stateParameters: number;
  trainTokens: number;
  valTokens: number;
  tokenFile: string;
  startStep: number;
  options: ResolvedStateTuneOptions;
  kernels: string;
}

export interface StateTuneCallbacks {
  onStart?(info: StateTuneStart): void;
  onStep?(report: StateTuneStep): void;
  onEval?(step: number, loss: number): void;
  onSave?(step: number, files: string[]): void;
  /** Polled after every step: true saves a checkpoint and returns. */
  shouldStop?(): boolean;
  onTokenize?(file: string, tokens: number): void;
}

/** Mean cross-entropy (nats per token) of the tuning data's and the held-out data's evaluation windows. */
export interface LossPair {
  train: number;
  /** undefined when nothing is held out. */
  val: number | undefined;
}

export interface StateTuneResult {
  losses: number[];
  valLosses: [number, number][];
  step: number;
  stopped: boolean;
  seconds: number;
  tokensPerSecond: number;
  /** From a zero state and from the tuned one (measured at the end; undefined when stopped early). */
  fresh: LossPair | undefined;
  tuned: LossPair | undefined;
  /** RUN_DIR/state.bin */
  stateFile: string;
  dir: string;
  model: Rwkv7Train;
}

interface Progress {
  step: number;
  rng: [number, number, number, number];
  options: ResolvedStateTuneOptions;
  shape: Rwkv7Shape;
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${name} must be an integer ≥ 1, got ${v}`);
}

function resolve(given: StateTuneOptions, saved: ResolvedStateTuneOptions | undefined): ResolvedStateTuneOptions {
  const { resume: _r, overwrite: _o, ...rest } = given;
  if (rest.data !== undefined && rest.data.length === 0) delete rest.data;
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  const o = { ...STATE_TUNE_DEFAULTS, tokenizer: undefined, separator: undefined, ...(saved ?? {}), ...defined } as ResolvedStateTuneOptions;
  if (!Array.isArray(o.data) || o.data.length === 0) throw new ArgumentError('no tuning data given (--data FILE_OR_DIRECTORY ...)');
  o.data = o.data.map((p) => path.resolve(p));
  o.init = path.resolve(o.init);
  if (o.tokenizer !== undefined && o.tokenizer !== 'bytes') o.tokenizer = path.resolve(o.tokenizer);
  // A template file (not a name), absolute so that a run resumed from another directory finds it.
  if (/[./\\]/.test(o.chatTemplate)) o.chatTemplate = path.resolve(o.chatTemplate);
  for (const k of ['context', 'batch', 'steps', 'evalEvery', 'evalBatches', 'saveEvery'] as const) positiveInt(`--${k}`, o[k]);
  for (const k of ['lr', 'lrFinal', 'warmup', 'eps', 'clip'] as const) {
    if (!(Number.isFinite(o[k]) && o[k] >= 0)) throw new ArgumentError(`${k} must be a number ≥ 0, got ${o[k]}`);
  }
  if (!(o.lr > 0)) throw new ArgumentError(`--lr must be > 0, got ${o.lr}`);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new ArgumentError('β1 and β2 must be in [0, 1)');
  if (!Number.isInteger(o.seed)) throw new ArgumentError(`--seed must be an integer, got ${o.seed}`);
  return o;
}

/** The inference configuration of a v7 training shape. */
export function rwkv7Config(shape: Rwkv7Shape): ModelConfig {
  return { version: '7', nLayer: shape.nLayer, nEmbd: shape.nEmbd, nVocab: shape.nVocab, nHead: shape.nEmbd / shape.headSize, headSize: shape.headSize, ffnSize: shape.ffnSize };
}

/**
 * What a state file records of the model (state-file.ts `modelIdentity`), from its official-named weights
 * rather than a loaded inference model: the same vectors sampled the same way.
 */
export function rwkv7Identity(shape: Rwkv7Shape, weight: (name: string) => Vec | undefined, file: string): ModelIdentity {
  const names = ['blocks.0.ln1.weight', 'blocks.0.ln1.bias', `blocks.${shape.nLayer - 1}.ln2.weight`, 'ln_out.weight', 'ln_out.bias'];
  const values: number[] = [];
  for (const name of names) {
    const v = weight(name);
    if (v === undefined) continue;
    for (let i = 0; i < 8; i++) values.push(v[Math.floor(((i + 0.5) * v.length) / 8)]!);
  }
  const c = rwkv7Config(shape);
  return {
    version: '7',
    nLayer: c.nLayer,
    nEmbd: c.nEmbd,
    nVocab: c.nVocab,
    nHead: c.nHead,
    headSize: c.headSize,
    name: path.basename(file),
    fingerprint: Float32Array.from(values),
  };
}

/** The inference State of tuned initial states: per layer ffn_x = att_x = 0 (fresh), then S as trained. */
export function stateOf(config: ModelConfig, states: readonly Param[]): State {
  const state = new State(config);
  const c = config.nEmbd;
  states.forEach((p, l) => state.layer(l).set(p.data, 2 * c));
  return state;
}

function f32Out(name: string, shape: readonly number[], values: Vec): OutTensor {
  const a = values instanceof Float32Array ? values : Float32Array.from(values);
  return { name, dtype: 'f32', shape, byteLength: a.byteLength, bytes: () => new Uint8Array(a.buffer, a.byteOffset, a.byteLength) };
}

function writeAtomic(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Tunes (or, with `resume`, continues tuning) the initial state of an RWKV-7 model. */
export async function stateTune(given: StateTuneOptions, gemm: Gemm, callbacks: StateTuneCallbacks = {}): Promise<StateTuneResult> {
  const dir = given.out;
  const ckptPath = path.join(dir, STATE_TUNE_CHECKPOINT);
  const logPath = path.join(dir, STATE_TUNE_LOG);
  const stateFile = path.join(dir, STATE_TUNE_OUTPUT);
  checkRunDirectory(dir, [STATE_TUNE_CHECKPOINT, STATE_TUNE_OUTPUT, STATE_TUNE_LOG], given);
  fs.mkdirSync(dir, { recursive: true });
  let saved: Awaited<ReturnType<typeof readSafetensors>> | undefined;
  let progress: Progress | undefined;
  if (given.resume === true) {
    if (!fs.existsSync(ckptPath)) throw new ArgumentError(`--resume: there is no ${STATE_TUNE_CHECKPOINT} in ${dir}`);
    saved = await readSafetensors(ckptPath);
    const raw = saved.metadata.get(META_KEY);
    if (raw === undefined) throw new ModelError('BAD_HEADER', `not a state-tuning checkpoint (no '${META_KEY}' metadata)`, { file: ckptPath });
    progress = JSON.parse(raw) as Progress;
  }
  const o = resolve(given, progress?.options);

  // The frozen model, its weights decoded tensor by tensor into the Gemm's storage.
  const model = await loadRwkv7Train(o.init, gemm, { frozen: true });
  const shape = model.shape;
  if (progress !== undefined && JSON.stringify(progress.shape) !== JSON.stringify(shape)) {
    throw new ArgumentError(`--init ${o.init} is not the model the run in ${dir} tuned (${JSON.stringify(progress.shape)})`);
  }
  const identity = rwkv7Identity(shape, (n) => model.param(n).data, o.init);
  const config = rwkv7Config(shape);
  const states = model.enableInitialState();

  // The tokenizer: as given, else the one the vocabulary implies (its file beside the model), as `rwkv train --init` does.
  const tokenizer = await tokenizerForModel(shape.nVocab, o.tokenizer, [path.dirname(o.init)]);
  const known = KNOWN_VOCABULARIES.find((k) => k.vocabSize === shape.nVocab);
  const tokenizerSpec = o.tokenizer ?? (known?.file === undefined ? 'bytes' : path.resolve(path.dirname(o.init), known.file));
  const runFiles = [STATE_TUNE_LOG, STATE_TUNE_CHECKPOINT, STATE_TUNE_OUTPUT].map((f) => path.join(dir, f));
  const template = await resolveTemplate(o.chatTemplate, '--chat-template');
  const data = prepareTokens(o.data, tokenizer, tokenizerSpec, path.join(dir, STATE_TUNE_TOKENS), callbacks.onTokenize, runFiles, template);
  // With .jsonl conversations, a mask says which targets carry loss (the assistant's answers).
  const split = splitTokens(data.tokens, o.valFraction, o.context, data.mask);
  for (const id of data.tokens) {
    if (id >= shape.nVocab) throw new ArgumentError(`the data has token id ${id}, outside the model's vocabulary of ${shape.nVocab}`);
  }

  // Document mode: windows start at the separator's occurrences (that leave a whole window).
  let trainStarts: Uint32Array | undefined;
  let valStarts: Uint32Array | undefined;
  if (o.separator !== undefined) {
    const ids = tokenizer.encode(o.separator);
    if (ids.length !== 1) throw new ArgumentError(`--separator ${JSON.stringify(o.separator)} is ${ids.length} tokens; it must be one`);
    trainStarts = separatorStarts(split.train, ids[0]!, o.context);
    valStarts = separatorStarts(split.val, ids[0]!, o.context);
    if (trainStarts.length === 0) throw new ArgumentError(`no ${JSON.stringify(o.separator)} in the tuning data leaves a window of --context ${o.context} + 1 tokens`);
  }

  // RWKV-PEFT trains the state without weight decay.
  const opt = new AdamW(states, { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: 0 });
  const rng = new Rng((o.seed ^ 0x57a7e) >>> 0);
  let startStep = 0;
  if (saved !== undefined && progress !== undefined) {
    const fill = (name: string, into: Vec): void => {
      const t = saved!.tensors.get(name);
      if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the state-tuning checkpoint', { file: ckptPath, tensor: name });
      const v = decodeF32(t);
      if (v.length !== into.length) throw new ModelError('BAD_SHAPE', `has ${v.length} values, expected ${into.length}`, { file: ckptPath, tensor: name });
      into.set(v);
    };
    states.forEach((p, i) => {
      fill(p.name, p.data);
      fill(`adam.m.${p.name}`, opt.m[i]!);
      fill(`adam.v.${p.name}`, opt.v[i]!);
    });
    opt.t = progress.step;
    rng.restore(progress.rng);
    startStep = progress.step;
  }
  if (startStep > o.steps) throw new ArgumentError(`the run in ${dir} is already at step ${startStep}, past --steps ${o.steps}`);

  const log = openRunLog(logPath, progress === undefined ? undefined : startStep, ['result']);

  callbacks.onStart?.({
    shape,
    stateParameters: states.reduce((a, p) => a + p.data.length, 0),
    trainTokens: split.train.length,
    valTokens: split.val.length,
    tokenFile: data.file,
    startStep,
    options: o,
    kernels: gemm.name,
  });

  const evalSet = (tokens: Uint16Array | Uint32Array, mask: Uint8Array | undefined, starts: Uint32Array | undefined): { batch: Batch; rows: number }[] =>
    starts === undefined
      ? tokens.length >= o.context + 1
        ? evalBatches(tokens, o.batch, o.context, o.evalBatches, mask)
        : []
      : windowBatches(tokens, starts.subarray(0, o.batch * o.evalBatches), o.batch, o.context, mask);
  const valSet = evalSet(split.val, split.valMask, valStarts);
  const trainSet = evalSet(split.train, split.trainMask, trainStarts);
  const loss = (set: { batch: Batch; rows: number }[]): number | undefined => meanLoss(model, set, o.context);
  const save = (step: number): void => {
    if (opt.t !== step) throw new Error(`internal: optimizer at update ${opt.t}, progress at step ${step}`);
    const tensors: OutTensor[] = [];
    states.forEach((p, i) => tensors.push(f32Out(p.name, p.shape, p.data), f32Out(`adam.m.${p.name}`, p.shape, opt.m[i]!), f32Out(`adam.v.${p.name}`, p.shape, opt.v[i]!)));
    const meta: Progress = { step, rng: rng.snapshot(), options: o, shape };
    writeSafetensors(ckptPath, tensors, { [META_KEY]: JSON.stringify(meta) });
    writeAtomic(stateFile, encodeStateFile(identity, RwkvState.from(stateOf(config, states))));
    callbacks.onSave?.(step, [stateFile, ckptPath]);
  };

  const run = await runSteps({
    startStep,
    steps: o.steps,
    batch: o.batch,
    context: o.context,
    schedule: { lr: o.lr, lrFinal: o.lrFinal, warmup: o.warmup, steps: o.steps },
    clip: o.clip,
    params: states,
    optimizer: opt,
    evalEvery: o.evalEvery,
    saveEvery: o.saveEvery,
    nextBatch: () =>
      trainStarts === undefined
        ? randomBatch(split.train, o.batch, o.context, rng, split.trainMask)
        : windowBatch(split.train, Uint32Array.from({ length: o.batch }, () => trainStarts![rng.nextU32() % trainStarts!.length]!), o.context, split.trainMask),
    model,
    gradients: () => model.backward(),
    evaluate: () => loss(valSet),
    save,
    log,
    callbacks,
  });
  const { step, stopped } = run;
  if (step === startStep && step === o.steps && !fs.existsSync(stateFile)) save(step);

  // What the state buys: the same windows from the tuned state and from a zero one.
  let fresh: LossPair | undefined;
  let tuned: LossPair | undefined;
  if (!stopped) {
    tuned = { train: loss(trainSet)!, val: loss(valSet) };
    const kept = states.map((p) => p.data.slice());
    for (const p of states) p.data.fill(0);
    fresh = { train: loss(trainSet)!, val: loss(valSet) };
    states.forEach((p, i) => p.data.set(kept[i]!));
    log({ type: 'result', step, fresh, tuned });
  }
  return {
    losses: run.losses,
    valLosses: run.valLosses,
    step,
    stopped,
    seconds: (performance.now() - run.startedAt) / 1000,
    tokensPerSecond: run.tokensPerSecond,
    fresh,
    tuned,
    stateFile,
    dir,
    model,
  };
}

/** Positions of `id` in `tokens` from which a window of t + 1 tokens fits. */
export function separatorStarts(tokens: Uint16Array | Uint32Array, id: number, t: number): Uint32Array {
  const out: number[] = [];
  for (let p = 0; p + t < tokens.length; p++) if (tokens[p] === id) out.push(p);
  return Uint32Array.from(out);
}

/** Batches of b windows (t inputs, t targets) at the given starts (the last batch may be smaller); with `mask`, untrained targets are -1. */
function windowBatches(tokens: Uint16Array | Uint32Array, starts: Uint32Array, b: number, t: number, mask: Uint8Array | undefined): { batch: Batch; rows: number }[] {
  const out: { batch: Batch; rows: number }[] = [];
  for (let w0 = 0; w0 < starts.length; w0 += b) {
    const rows = Math.min(b, starts.length - w0);
    out.push({ batch: windowBatch(tokens, starts.subarray(w0, w0 + rows), t, mask), rows });
  }
  return out;
}
