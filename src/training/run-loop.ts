// What every trainer's run shares (train.ts's full training, state-tune.ts's state tuning): the check that a
// fresh run does not replace another, the run's log (a fresh run starts it anew, a resumed one keeps what
// came up to its checkpoint), the held-out mean loss, and the step loop — a batch, forward (a NaN or
// infinite loss stops the run naming the step), backward, gradient clipping, AdamW at the scheduled
// learning rate, a log line, evaluations every `evalEvery` steps and at the end, a yield to the event loop
// (so that a Ctrl-C handler can set the flag `shouldStop` reads), and checkpoints every `saveEvery` steps,
// at the end and when stopped. Each trainer brings its own model, trained parameters and checkpoint.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError } from '../errors.js';
import { clipGradNorm } from './adamw.js';
import type { Batch } from './data.js';
import type { Param } from './model.js';
import { learningRate, type Schedule } from './schedule.js';

/**
 * Refuses `--resume` with `--overwrite`, and (unless one of them is given) a `dir` that already holds any
 * of `files` — a run's weights, optimizer state and log are not to be lost to a typo. `what` names the run
 * in the message ("a training run", "a run").
 */
export function checkRunDirectory(dir: string, files: readonly string[], given: { resume?: boolean; overwrite?: boolean }, what = 'a run'): void {
  if (given.resume === true && given.overwrite === true) throw new ArgumentError('--resume and --overwrite contradict each other: give one');
  if (given.resume === true || given.overwrite === true) return;
  const existing = files.filter((f) => fs.existsSync(path.join(dir, f)));
  if (existing.length > 0) {
    throw new ArgumentError(
      `${dir} already holds ${what} (${existing.join(', ')}): continue it with --resume, start afresh there with --overwrite, or choose another --out`,
    );
  }
}

/** Appends one JSON entry (a line) to a run's log. */
export type RunLog = (entry: Record<string, unknown>) => void;

/**
 * The run's log at `file`: a fresh run (`resumedStep` undefined) empties it; a resumed one keeps only the
 * entries of steps ≤ `resumedStep`, less those whose type is in `dropTypes` (and lines that do not parse).
 */
export function openRunLog(file: string, resumedStep: number | undefined, dropTypes: readonly string[] = []): RunLog {
  if (resumedStep === undefined) fs.writeFileSync(file, '');
  else if (fs.existsSync(file)) {
    const kept = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => {
        if (line.trim() === '') return false;
        try {
          const e = JSON.parse(line) as { step: number; type: string };
          return e.step <= resumedStep && !dropTypes.includes(e.type);
        } catch {
          return false;
        }
      });
    fs.writeFileSync(file, kept.map((l) => `${l}\n`).join(''));
  }
  return (entry) => fs.appendFileSync(file, `${JSON.stringify(entry)}\n`);
}

/** What the loop and the evaluation need of a model: a forward pass that returns the mean loss. */
export interface LossModel {
  forward(ids: Int32Array, targets: Int32Array, b: number, t: number): number;
}

/**
 * The mean loss over every counted target of `batches` (a batch's loss is the mean over its own; a target
 * of −1 carries none, and a batch with none counted is skipped); undefined when nothing is counted.
 */
export function meanLoss(model: LossModel, batches: readonly { batch: Batch; rows: number }[], context: number): number | undefined {
  if (batches.length === 0) return undefined;
  let sum = 0;
  let counted = 0;
  for (const { batch, rows } of batches) {
    let c = 0;
    for (const id of batch.targets) if (id >= 0) c++;
    if (c === 0) continue;
    sum += model.forward(batch.ids, batch.targets, rows, context) * c;
    counted += c;
  }
  return counted > 0 ? sum / counted : undefined;
}

/** A step's report to the front end. */
export interface StepReport {
  /** Steps done (1-based). */
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Tokens per second over recent steps. */
  tokensPerSecond: number;
  /** Seconds to the last step at that rate. */
  eta: number;
}

export interface StepCallbacks {
  onStep?(report: StepReport): void;
  onEval?(step: number, loss: number): void;
  /** Polled after every step: true saves a checkpoint and returns. */
  shouldStop?(): boolean;
}

export interface StepLoop {
  /** Steps already done (a resumed run's checkpoint step), and the last step. */
  startStep: number;
  steps: number;
  /** Rows and tokens per row of a batch. */
  batch: number;
  context: number;
  schedule: Schedule;
  /** Global gradient-norm clip of `params` (0: none; the reported norm is then NaN). */
  clip: number;
  /** What the optimizer updates (their gradients are clipped). */
  params: readonly Param[];
  optimizer: { step(lr: number): void };
  evalEvery: number;
  saveEvery: number;
  /** The next training batch (b = `batch` rows of `context` tokens). */
  nextBatch(): Batch;
  model: LossModel;
  /** After the forward pass: the gradients of `params` (the backward pass, and whatever maps it to them). */
  gradients(): void;
  /** After the optimizer's update (e.g. a LoRA adapter applied to the weights). */
  afterUpdate?(): void;
  /** The held-out loss, or undefined when nothing is held out. */
  evaluate(): number | undefined;
  /** A checkpoint at `step`. */
  save(step: number): void;
  log: RunLog;
  callbacks: StepCallbacks;
}

export interface StepLoopResult {
  /** Training loss of each step run, in order. */
  losses: number[];
  /** (step, held-out loss) of each evaluation. */
  valLosses: [number, number][];
  /** Steps done in all. */
  step: number;
  stopped: boolean;
  /** performance.now() when the loop began. */
  startedAt: number;
  /** Seconds since then (at the end of the loop). */
  seconds: number;
  /** Over the steps' own time (evaluations and checkpoints left out). */
  tokensPerSecond: number;
}

/** Runs steps startStep + 1 … steps (or until `shouldStop`). */
export async function runSteps(l: StepLoop): Promise<StepLoopResult> {
  const tokensPerStep = l.batch * l.context;
  const losses: number[] = [];
  const valLosses: [number, number][] = [];
  const recent: number[] = []; // seconds of recent steps
  let trainSeconds = 0;
  let stopped = false;
  let step = l.startStep;
  let saved: number | undefined = l.startStep > 0 ? l.startStep : undefined;
  // A non-finite loss or gradient stops the run before its update (a NaN would spread into every weight).
  const diverged = (what: string, value: number): ArgumentError =>
    new ArgumentError(`the ${what} is ${value} at step ${step + 1}: training diverged; lower --lr (last checkpoint: ${saved !== undefined ? `step ${saved}` : 'none yet'})`);
  const t0 = performance.now();
  while (step < l.steps) {
    const s0 = performance.now();
    const { ids, targets } = l.nextBatch();
    const loss = l.model.forward(ids, targets, l.batch, l.context);
    if (!Number.isFinite(loss)) throw diverged('loss', loss);
    l.gradients();
    const norm = l.clip > 0 ? clipGradNorm(l.params, l.clip) : Number.NaN;
    if (l.clip > 0 && !Number.isFinite(norm)) throw diverged('gradient norm', norm);
    const lr = learningRate(step, l.schedule);
    l.optimizer.step(lr);
    l.afterUpdate?.();
    step++;
    const seconds = (performance.now() - s0) / 1000;
    trainSeconds += seconds;
    recent.push(seconds);
    if (recent.length > 20) recent.shift();
    const perStep = recent.reduce((a, b) => a + b, 0) / recent.length;
    losses.push(loss);
    l.log({ type: 'train', step, loss, lr, grad_norm: norm, tokens: step * tokensPerStep, time_s: (performance.now() - t0) / 1000 });
    l.callbacks.onStep?.({ step, steps: l.steps, loss, lr, gradNorm: norm, tokensPerSecond: tokensPerStep / perStep, eta: perStep * (l.steps - step) });
    const last = step === l.steps;
    if (step % l.evalEvery === 0 || last) {
      const v = l.evaluate();
      if (v !== undefined) {
        valLosses.push([step, v]);
        l.log({ type: 'val', step, loss: v, tokens: step * tokensPerStep });
        l.callbacks.onEval?.(step, v);
      }
    }
    // Let signal handlers run (a Ctrl-C sets the flag that shouldStop reads).
    await new Promise((resolve) => setImmediate(resolve));
    stopped = !last && l.callbacks.shouldStop?.() === true;
    if (step % l.saveEvery === 0 || last || stopped) {
      l.save(step);
      saved = step;
    }
    if (stopped) break;
  }
  return {
    losses,
    valLosses,
    step,
    stopped,
    startedAt: t0,
    seconds: (performance.now() - t0) / 1000,
    tokensPerSecond: trainSeconds > 0 ? (losses.length * tokensPerStep) / trainSeconds : 0,
  };
}
