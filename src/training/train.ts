// The training loop: options → data → model of the chosen architecture (architecture.ts: fresh init,
// --init from a checkpoint, or --resume)
// → steps of forward, backward, clipping, AdamW at the scheduled learning rate → log lines, held-out
// evaluations and checkpoints (the step loop, log and run-directory check: run-loop.ts, shared with
// state-tune.ts). Front ends (the CLI) watch it through callbacks.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError } from '../errors.js';
import { Rng } from '../util/rng.js';
import { KNOWN_VOCABULARIES, loadTokenizer, tokenizerForModel } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { AdamW } from './adamw.js';
import { architecture, architectureOf, type ModelShape, type TrainModel } from './architecture.js';
import { loadTrainingState, MODEL_FILE, readProgress, saveTrainingState, STATE_FILE, type Progress } from './checkpoint.js';
import { evalBatches, prepareTokens, randomBatch, splitTokens } from './data.js';
import type { Gemm } from './gemm.js';
import { exportLike, exportName, sameAsTrained, storageOf } from './export-like.js';
import { growCheckpoint, grownPosition } from './grow.js';
import { LORA_FILE, LoraAdapter } from './lora.js';
import { checkRunDirectory, meanLoss, openRunLog, runSteps, type StepReport } from './run-loop.js';
import { resolveTemplate } from '../generation/chat-template-file.js';
import { parseLoraTargets } from '../formats/lora.js';

export interface TrainOptions {
  /** Text files, directories of them, or one token file (on --resume: the run's own unless given). */
  data?: string[];
  /** The run directory: token cache, log, checkpoints. */
  out: string;
  /** The architecture (architecture.ts ARCHITECTURES): 'rwkv4' (default) or 'gpt'. */
  arch?: string;
  /** GPT: attention heads (default width/64). */
  heads?: number;
  /** GPT: a separate output matrix instead of the tied token embedding. */
  untiedHead?: boolean;
  layers?: number;
  width?: number;
  context?: number;
  batch?: number;
  steps?: number;
  lr?: number;
  /** Learning rate at the last step (default lr/10). */
  lrFinal?: number;
  /** Warm-up steps (default min(100, steps/10)). */
  warmup?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Global gradient-norm clip (0: none). */
  clip?: number;
  /** 'bytes', a World vocabulary or a tokenizer.json. */
  tokenizer?: string;
  /** Fine-tune this checkpoint (RWKV-4: any supported format; GPT: its model.safetensors + config.json) instead of a fresh init. */
  init?: string;
  /** Continue the run in `out` from its last checkpoint. */
  resume?: boolean;
  /** Start afresh in an `out` that already holds a run (its model, optimizer state and log are replaced). */
  overwrite?: boolean;
  seed?: number;
  /** Fraction of the tokens held out for validation. */
  valFraction?: number;
  /** Evaluate every this many steps (and at the end). */
  evalEvery?: number;
  /** Batches per evaluation. */
  evalBatches?: number;
  /** Checkpoint every this many steps (and at the end). */
  saveEvery?: number;
  /** Half-width of the embedding's uniform init. */
  embScale?: number;
  /** LoRA (lora.ts): train only rank-r adapters of the --init model's matrices; 0 (default): train every weight. */
  loraRank?: number;
  /** LoRA's α (the adapters are scaled by α/r); default: the rank (scale 1). */
  loraAlpha?: number;
  /** The matrix groups LoRA adapts (comma-separated: att, ffn); default both. */
  loraTargets?: string;
  /** The chat template of .jsonl conversations (chat-data.ts): 'world' (default), 'raven' or a JSON file. */
  chatTemplate?: string;
}

export type ResolvedOptions = Required<Omit<TrainOptions, 'init' | 'resume' | 'overwrite' | 'heads' | 'loraAlpha'>> & {
  init: string | undefined;
  heads: number | undefined;
  loraAlpha: number;
};

export const TRAIN_DEFAULTS = {
  arch: 'rwkv4',
  untiedHead: false,
  layers: 4,
  width: 256,
  context: 256,
  batch: 8,
  steps: 1000,
  lr: 6e-4,
  weightDecay: 0.01,
  beta1: 0.9,
  beta2: 0.99,
  eps: 1e-8,
  clip: 1,
  tokenizer: 'bytes',
  seed: 42,
  valFraction: 0.05,
  evalEvery: 100,
  evalBatches: 8,
  saveEvery: 500,
  embScale: 1e-4,
  loraRank: 0,
  loraTargets: 'att,ffn',
  chatTemplate: 'world',
} as const;

export type { StepReport } from './run-loop.js';

export interface StartInfo {
  /** The architecture's name and title, and its one-line description of the shape. */
  arch: string;
  title: string;
  description: string;
  shape: ModelShape;
  parameters: number;
  /** Values the optimizer updates: every parameter, or a LoRA run's adapters. */
  trained: number;
  /** A fine-tune's copy in the --init file's format and storage (e.g. model.bf16.pth), when there is one. */
  exported: string | undefined;
  trainTokens: number;
  valTokens: number;
  tokenFile: string;
  tokensReused: boolean;
  /** First step to run (0, or where a resumed run left off). */
  startStep: number;
  options: ResolvedOptions;
  kernels: string;
  from: 'init' | 'checkpoint' | 'resume';
}

export interface TrainCallbacks {
  onStart?(info: StartInfo): void;
  onStep?(report: StepReport): void;
  onEval?(step: number, loss: number): void;
  onSave?(step: number, files: string[]): void;
  /** Something the user should know about the run (e.g. how a fine-tune's file is stored). */
  onNote?(message: string): void;
  /** Polled after every step: true saves a checkpoint and returns. */
  shouldStop?(): boolean;
  /** Tokenizing a data file (when the token cache is made). */
  onTokenize?(file: string, tokens: number): void;
}

export interface TrainResult {
  /** Training loss of each step run by this call, in order. */
  losses: number[];
  /** (step, held-out loss) of each evaluation. */
  valLosses: [number, number][];
  /** Steps done in all (including those before a resume). */
  step: number;
  stopped: boolean;
  seconds: number;
  tokensPerSecond: number;
  model: TrainModel;
  dir: string;
  /** The run's main output: DIR/model.safetensors, or a LoRA run's DIR/lora.safetensors. */
  output: string;
}

export const LOG_FILE = 'log.jsonl';
export const TOKENS_FILE = 'tokens.bin';

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${name} must be an integer ≥ 1, got ${v}`);
}

function nonNegative(name: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0)) throw new ArgumentError(`${name} must be a number ≥ 0, got ${v}`);
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Defaults, then (on resume) the saved run's options, then what was given. */
export function resolveOptions(given: TrainOptions, saved?: Record<string, unknown>): ResolvedOptions {
  const { resume: _resume, overwrite: _overwrite, ...rest } = given;
  if (rest.data !== undefined && rest.data.length === 0) delete rest.data;
  const merged = { ...TRAIN_DEFAULTS, init: undefined, heads: undefined, ...(saved ?? {}), ...defined(rest) } as Record<string, unknown>;
  const steps = merged.steps as number;
  const lr = merged.lr as number;
  const o = {
    ...merged,
    lrFinal: (merged.lrFinal as number | undefined) ?? lr / 10,
    warmup: (merged.warmup as number | undefined) ?? Math.min(100, Math.floor(steps / 10)),
    loraAlpha: (merged.loraAlpha as number | undefined) ?? (merged.loraRank as number),
  } as ResolvedOptions;
  if (!Array.isArray(o.data) || o.data.length === 0) throw new ArgumentError('no training data given (--data FILE_OR_DIRECTORY ...)');
  // Absolute, so that a run resumed from another directory finds them.
  o.data = o.data.map((p) => path.resolve(p));
  if (o.init !== undefined) o.init = path.resolve(o.init);
  for (const k of ['layers', 'width', 'context', 'batch', 'steps', 'evalEvery', 'evalBatches', 'saveEvery'] as const) positiveInt(`--${k}`, o[k]);
  if (o.heads !== undefined) positiveInt('--heads', o.heads);
  architecture(o.arch); // known
  for (const k of ['lr', 'lrFinal', 'warmup', 'weightDecay', 'eps', 'clip', 'embScale'] as const) nonNegative(k, o[k]);
  if (!(o.lr > 0)) throw new ArgumentError(`--lr must be > 0, got ${o.lr}`);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw new ArgumentError('β1 and β2 must be in [0, 1)');
  if (!Number.isInteger(o.seed)) throw new ArgumentError(`--seed must be an integer, got ${o.seed}`);
  if (!Number.isInteger(o.loraRank) || o.loraRank < 0) throw new ArgumentError(`--lora-rank must be an integer ≥ 1, got ${o.loraRank}`);
  if (o.loraRank > 0) {
    if (o.init === undefined) throw new ArgumentError('--lora-rank trains adapters of an existing model: give it with --init MODEL');
    if (!(Number.isFinite(o.loraAlpha) && o.loraAlpha > 0)) throw new ArgumentError(`--lora-alpha must be a number > 0, got ${o.loraAlpha}`);
    parseLoraTargets(o.loraTargets);
  }
  return o;
}

/** Runs (or resumes) a training run. */
export async function train(given: TrainOptions, gemm: Gemm, callbacks: TrainCallbacks = {}): Promise<TrainResult> {
  const dir = given.out;
  const statePath = path.join(dir, STATE_FILE);
  // A fresh run would replace these: a run's weights, optimizer state and log are not to be lost to a typo.
  checkRunDirectory(dir, [MODEL_FILE, STATE_FILE, LOG_FILE, LORA_FILE], given, 'a training run');
  fs.mkdirSync(dir, { recursive: true });
  let saved: Progress | undefined;
  if (given.resume === true) {
    if (!fs.existsSync(statePath)) throw new ArgumentError(`--resume: there is no ${STATE_FILE} in ${dir}`);
    saved = await readProgress(statePath);
  }
  // A state from before the choice of architecture is RWKV-4's.
  if (saved !== undefined && given.arch !== undefined && given.arch !== (saved.arch ?? 'rwkv4')) {
    throw new ArgumentError(`--arch ${given.arch} contradicts the run in ${dir}, which is ${saved.arch ?? 'rwkv4'}`);
  }
  const o = resolveOptions(given, saved === undefined ? undefined : { arch: saved.arch ?? 'rwkv4', ...saved.options });
  // Fine-tuning without --arch: the --init file's own architecture.
  if (saved === undefined && given.arch === undefined && o.init !== undefined) o.arch = await architectureOf(o.init);
  const arch = architecture(o.arch);

  // The tokenizer: as given; for a fine-tune without one, the one the checkpoint's vocabulary implies.
  // A LoRA run reads its base model again on resume: its checkpoints hold only the adapters.
  const lora = o.loraRank > 0;
  let init: { shape: ModelShape; values: Map<string, Float32Array> } | undefined;
  if ((saved === undefined || lora) && o.init !== undefined) init = await arch.readWeights(o.init);
  let tokenizer: Tokenizer;
  const tokenizerGiven = given.tokenizer !== undefined || saved !== undefined;
  if (init !== undefined && !tokenizerGiven && saved === undefined) {
    const known = KNOWN_VOCABULARIES.find((k) => k.vocabSize === init!.shape.nVocab);
    tokenizer = await tokenizerForModel(init.shape.nVocab, undefined, [path.dirname(o.init!)]);
    o.tokenizer = known?.file === undefined ? 'bytes' : path.resolve(path.dirname(o.init!), known.file);
  } else {
    if (o.tokenizer !== 'bytes') o.tokenizer = path.resolve(o.tokenizer);
    tokenizer = await loadTokenizer(o.tokenizer);
  }
  const tokenizerSpec = o.tokenizer;

  // The model's shape: from the checkpoint, the saved run, or the flags.
  let shape: ModelShape;
  let grownFrom: number | undefined;
  const sameShape = (s: ModelShape, what: string): void => {
    for (const [flag, v, have] of [
      ['--layers', given.layers, s.nLayer],
      ['--width', given.width, s.nEmbd],
    ] as const) {
      if (v !== undefined && v !== have) throw new ArgumentError(`${flag} ${v} contradicts ${what}, which has ${have}`);
    }
  };
  if (saved !== undefined) {
    shape = saved.shape;
    sameShape(shape, `the run in ${dir}`);
  } else if (init !== undefined) {
    // --layers above the checkpoint's depth grows it (grow.ts): the same function, new blocks to train.
    if (given.layers !== undefined && given.layers > init.shape.nLayer && !lora) {
      if (arch.name === 'gpt') throw new ArgumentError(`--layers ${given.layers}: only RWKV models can be grown (${o.init} is GPT-2)`);
      grownFrom = init.shape.nLayer;
      init = { shape: { ...init.shape, nLayer: given.layers }, values: growCheckpoint(init.values, grownFrom, given.layers, o.init!) };
      callbacks.onNote?.(`growing ${o.init} from ${grownFrom} to ${given.layers} layers: its blocks at positions ${Array.from({ length: grownFrom }, (_, k) => grownPosition(k, grownFrom!, given.layers!)).join(', ')}, fresh (identity) blocks between`);
    }
    shape = init.shape;
    sameShape(shape, `--init ${o.init}`);
    if (tokenizer.vocabSize > shape.nVocab) {
      throw new ArgumentError(`the tokenizer has ${tokenizer.vocabSize} ids, more than the checkpoint's vocabulary of ${shape.nVocab}`);
    }
    o.layers = shape.nLayer;
    o.width = shape.nEmbd;
  } else {
    // World's ids end at 65529; its models have 65536 rows, which is also how inference recognises them.
    const nVocab = tokenizer.name === 'world' ? Math.max(65536, tokenizer.vocabSize) : tokenizer.vocabSize;
    shape = arch.shapeFor({ layers: o.layers, width: o.width, nVocab, context: o.context, heads: o.heads, untiedHead: o.untiedHead });
  }

  const runFiles = [LOG_FILE, MODEL_FILE, STATE_FILE].map((f) => path.join(dir, f));
  const template = await resolveTemplate(o.chatTemplate, '--chat-template');
  const data = prepareTokens(o.data, tokenizer, tokenizerSpec, path.join(dir, TOKENS_FILE), callbacks.onTokenize, runFiles, template);
  // With .jsonl conversations, a mask says which targets carry loss (the assistant's answers).
  const split = splitTokens(data.tokens, o.valFraction, o.context, data.mask);
  for (const id of data.tokens) {
    if (id >= shape.nVocab) throw new ArgumentError(`the data has token id ${id}, outside the model's vocabulary of ${shape.nVocab}`);
  }

  const model = arch.create(shape, gemm);
  if (grownFrom !== undefined) {
    // A grown model: fresh blocks everywhere, then the checkpoint's blocks at their new positions.
    arch.init(model, { seed: o.seed, embScale: o.embScale });
    for (const p of model.params) {
      const v = init!.values.get(p.name);
      if (v !== undefined) p.data.set(v);
    }
  } else if (init !== undefined) for (const p of model.params) p.data.set(init.values.get(p.name)!);
  else if (saved === undefined) arch.init(model, { seed: o.seed, embScale: o.embScale });
  // What the optimizer updates: the model's parameters, or (LoRA) the adapters, the weights frozen.
  const adapter = lora ? new LoraAdapter(model, gemm, { rank: o.loraRank, alpha: o.loraAlpha, targets: parseLoraTargets(o.loraTargets) }, o.seed) : undefined;
  const trained = adapter ?? model;
  const opt = new AdamW(trained.params, { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay });
  const rng = new Rng((o.seed ^ 0x5eed1234) >>> 0);
  let startStep = 0;
  if (saved !== undefined) {
    await loadTrainingState(statePath, trained, opt);
    rng.restore(saved.rng);
    startStep = saved.step;
  }
  adapter?.apply();
  if (startStep > o.steps) throw new ArgumentError(`the run in ${dir} is already at step ${startStep}, past --steps ${o.steps}`);

  // The log: a fresh run starts it anew; a resumed one drops what came after its checkpoint.
  const log = openRunLog(path.join(dir, LOG_FILE), saved === undefined ? undefined : startStep);

  // A fine-tune of an RWKV file is also saved as that file was (format and storage), to ship.
  const likeInit = o.init !== undefined && !lora && arch.name !== 'gpt' ? await storageOf(o.init) : undefined;
  const like = likeInit !== undefined && !sameAsTrained(likeInit) ? likeInit : undefined;
  if (like?.note !== undefined) callbacks.onNote?.(like.note);
  callbacks.onStart?.({
    arch: arch.name,
    title: arch.title,
    description: arch.describe(shape),
    shape,
    parameters: model.size,
    trained: adapter?.size ?? model.size,
    exported: like !== undefined ? path.join(dir, exportName(like)) : undefined,
    trainTokens: split.train.length,
    valTokens: split.val.length,
    tokenFile: data.file,
    tokensReused: data.reused,
    startStep,
    options: o,
    kernels: gemm.name,
    from: saved !== undefined ? 'resume' : init !== undefined ? 'checkpoint' : 'init',
  });

  const evalSet = split.val.length >= o.context + 1 ? evalBatches(split.val, o.batch, o.context, o.evalBatches, split.valMask) : [];
  const progress = (step: number): Progress => ({ step, rng: rng.snapshot(), options: { ...o } as Record<string, unknown>, arch: arch.name, shape });
  const save = (step: number): void => {
    let files: string[];
    if (adapter !== undefined) {
      const file = path.join(dir, LORA_FILE);
      adapter.save(file, { base: { file: o.init!, arch: arch.name, nLayer: shape.nLayer, nEmbd: shape.nEmbd, nVocab: shape.nVocab } }, { step: String(step), trainer: 'rwkv-ts' });
      files = [file];
    } else {
      files = arch.saveModel(model, path.join(dir, MODEL_FILE), { step: String(step), trainer: 'rwkv-ts' });
      if (like !== undefined) {
        const file = path.join(dir, exportName(like));
        exportLike(model.params, file, like);
        files.push(file);
      }
    }
    saveTrainingState(statePath, trained, opt, progress(step));
    files.push(statePath);
    callbacks.onSave?.(step, files);
  };

  const run = await runSteps({
    startStep,
    steps: o.steps,
    batch: o.batch,
    context: o.context,
    schedule: { lr: o.lr, lrFinal: o.lrFinal, warmup: o.warmup, steps: o.steps },
    clip: o.clip,
    params: trained.params,
    optimizer: opt,
    evalEvery: o.evalEvery,
    saveEvery: o.saveEvery,
    nextBatch: () => randomBatch(split.train, o.batch, o.context, rng, split.trainMask),
    model,
    gradients: () => {
      model.backward();
      adapter?.gradients();
    },
    afterUpdate: () => adapter?.apply(),
    // The mean over every counted target (a batch's loss is the mean over its own; −1 targets count none).
    evaluate: () => meanLoss(model, evalSet, o.context),
    save,
    log,
    callbacks,
  });
  return {
    losses: run.losses,
    valLosses: run.valLosses,
    step: run.step,
    stopped: run.stopped,
    seconds: run.seconds,
    tokensPerSecond: run.tokensPerSecond,
    model,
    dir,
    output: path.join(dir, adapter !== undefined ? LORA_FILE : MODEL_FILE),
  };
}
