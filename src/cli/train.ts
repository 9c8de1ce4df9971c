// `rwkv train --data PATH... --out DIR [--arch rwkv4|gpt]`: trains an RWKV-4 or a GPT baseline (fresh,
// --init CHECKPOINT to fine-tune, or --resume), showing a progress bar (step, loss, tokens/s, ETA) on a terminal or a line every few steps
// otherwise. Ctrl-C stops after the current step with a checkpoint (a second Ctrl-C aborts). Writes
// DIR/model.safetensors (official names: `rwkv generate`, `rwkv convert` → .pth; a GPT's in Hugging Face
// GPT-2 names with DIR/config.json), DIR/train-state.safetensors
// (for --resume), DIR/log.jsonl (`rwkv plot`) and DIR/tokens.bin (the tokenized data, reused).
import { Presets, SingleBar } from 'cli-progress';
import * as path from 'node:path';
import { ArgumentError } from '../errors.js';
import { createBackend } from '../kernels/create-backend.js';
import { gemmFor } from '../training/gemm.js';
import { MODEL_FILE } from '../training/checkpoint.js';
import { LOG_FILE, train, type StartInfo, type StepReport, type TrainOptions, type TrainResult } from '../training/train.js';

export interface TrainArgs extends TrainOptions {
  /** Threads for the matrix products (default: every core). */
  threads?: number;
  /** wasm (default) or reference (plain TypeScript, slow). */
  kernels?: 'wasm' | 'reference';
  /** false: no progress output (a summary line only). */
  progress?: boolean;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

/** A number with at most 4 significant digits (no binary-fraction noise such as 0.00030000000000000003). */
function num(x: number): string {
  return String(Number(x.toPrecision(4)));
}

function describeStart(i: StartInfo): string {
  const from = i.from === 'resume' ? `resuming at step ${i.startStep}` : i.from === 'checkpoint' ? `fine-tuning ${i.options.init}` : `fresh ${i.title} init`;
  return (
    `rwkv train: ${i.title}, ${i.description}, ${(i.parameters / 1e6).toFixed(2)}M parameters; ${from}\n` +
    (i.options.loraRank > 0
      ? `  LoRA rank ${i.options.loraRank}, alpha ${num(i.options.loraAlpha)} on ${i.options.loraTargets}: ${(i.trained / 1e6).toFixed(3)}M trained values (${((100 * i.trained) / i.parameters).toFixed(2)} %), the weights frozen\n`
      : '') +
    (i.exported !== undefined ? `  saved also as ${i.exported} (the --init file's format and storage)\n` : '') +
    `  data: ${i.trainTokens} training + ${i.valTokens} held-out tokens (${i.tokensReused ? 'reused ' : ''}${i.tokenFile})\n` +
    `  ${i.options.steps} steps × ${i.options.batch} × ${i.options.context} tokens, lr ${num(i.options.lr)} → ${num(i.options.lrFinal)} (warm-up ${i.options.warmup}), kernels ${i.kernels}\n`
  );
}

export async function runTrain(args: TrainArgs): Promise<TrainResult> {
  if (args.out === undefined || args.out === '') throw new ArgumentError('--out DIR is required');
  if (args.resume !== true && (args.data === undefined || args.data.length === 0)) {
    throw new ArgumentError('--data PATH... is required (text files, directories of them, or a token file)');
  }
  if (args.threads !== undefined && (!Number.isInteger(args.threads) || args.threads < 1)) {
    throw new ArgumentError(`--threads must be an integer ≥ 1, got ${args.threads}`);
  }
  const { threads, kernels, progress, ...rest } = args;
  const backend = await createBackend({ kind: kernels ?? 'wasm', ...(threads !== undefined ? { threads } : {}) });
  const gemm = gemmFor(backend);
  const err = process.stderr;
  const tty = progress !== false && err.isTTY === true;
  const plain = progress !== false && !tty;
  let bar: SingleBar | undefined;
  let lastVal = '–';
  let stop = false;
  const onSigint = (): void => {
    if (stop) process.exit(130);
    stop = true;
    bar?.stop(); // the bar would draw over the message
    bar = undefined;
    err.write('rwkv train: stopping after this step and saving a checkpoint (Ctrl-C again to abort)\n');
  };
  process.on('SIGINT', onSigint);
  let every = 1;
  try {
    // On resume the data (like every option not given again) comes from the run's saved options.
    const result = await train(rest, gemm, {
      onNote: (message) => {
        if (progress !== false) err.write(`rwkv train: ${message}\n`);
      },
      onTokenize: (file, n) => {
        if (progress !== false) err.write(`  tokenized ${file}: ${n} tokens\n`);
      },
      onStart: (info) => {
        if (progress !== false) err.write(describeStart(info));
        every = Math.max(1, Math.round(info.options.steps / 20));
        if (tty) {
          bar = new SingleBar(
            {
              format: ' {bar} {value}/{total} | loss {loss} | val {val} | {tps} tok/s | ETA {etaText}',
              hideCursor: true,
              stream: err,
              fps: 5,
            },
            Presets.shades_classic,
          );
          bar.start(info.options.steps, info.startStep, { loss: '–', val: lastVal, tps: '–', etaText: '?' });
        }
      },
      onStep: (r: StepReport) => {
        const payload = { loss: r.loss.toFixed(4), val: lastVal, tps: r.tokensPerSecond.toFixed(0), etaText: formatDuration(r.eta) };
        if (bar !== undefined) bar.update(r.step, payload);
        else if (plain && (r.step % every === 0 || r.step === r.steps)) {
          err.write(`  step ${r.step}/${r.steps}  loss ${payload.loss}  val ${lastVal}  lr ${r.lr.toExponential(2)}  ${payload.tps} tok/s  ETA ${payload.etaText}\n`);
        }
      },
      onEval: (_step, loss) => {
        lastVal = loss.toFixed(4);
        bar?.update({ val: lastVal });
      },
      shouldStop: () => stop,
    });
    bar?.stop();
    const first = result.losses[0];
    const lastLoss = result.losses[result.losses.length - 1];
    const val = result.valLosses[result.valLosses.length - 1];
    err.write(
      `rwkv train: ${result.stopped ? 'stopped at' : 'done,'} step ${result.step} in ${formatDuration(result.seconds)} ` +
        `(${result.tokensPerSecond.toFixed(0)} tok/s)` +
        (first !== undefined ? `; loss ${first.toFixed(4)} → ${lastLoss!.toFixed(4)}` : '') +
        (val !== undefined ? `, held-out ${val[1].toFixed(4)}` : '') +
        `\n  wrote ${result.output} and ${path.join(result.dir, LOG_FILE)}\n`,
    );
    return result;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    await backend.close();
  }
}
