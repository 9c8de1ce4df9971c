// `rwkv train --state-tune --init MODEL --data PATH... --out DIR`: tunes only an RWKV-7 model's initial
// WKV state (training/state-tune.ts), weights frozen; writes DIR/state.bin for `rwkv generate --state-in`,
// `rwkv chat --state-in` and the library's loadState. A line per few steps on stderr; Ctrl-C saves and stops.
import { ArgumentError } from '../errors.js';
import { createBackend } from '../kernels/create-backend.js';
import { gemmFor } from '../training/gemm.js';
import { stateTune, type StateTuneOptions, type StateTuneResult } from '../training/state-tune.js';
import { formatDuration } from './train.js';

/** The `rwkv train` options state tuning reads (the rest of them are the trainer's). */
export interface StateTuneArgs extends Omit<StateTuneOptions, 'init' | 'out'> {
  init?: string;
  out?: string;
  threads?: number;
  kernels?: 'wasm' | 'reference';
  progress?: boolean;
}

const nats = (x: number | undefined): string => (x === undefined ? '–' : x.toFixed(4));

export async function runStateTune(args: StateTuneArgs): Promise<StateTuneResult> {
  if (args.init === undefined) throw new ArgumentError('--state-tune needs --init MODEL (the RWKV-7 model whose initial state is tuned)');
  if (args.out === undefined || args.out === '') throw new ArgumentError('--out DIR is required');
  if (args.resume !== true && (args.data === undefined || args.data.length === 0)) {
    throw new ArgumentError('--data PATH... is required (text files, directories of them, or a token file)');
  }
  const { threads, kernels, progress, init, out, ...rest } = args;
  const backend = await createBackend({ kind: kernels ?? 'wasm', ...(threads !== undefined ? { threads } : {}) });
  const err = process.stderr;
  let stop = false;
  const onSigint = (): void => {
    if (stop) process.exit(130);
    stop = true;
    err.write('rwkv train: stopping after this step and saving the state (Ctrl-C again to abort)\n');
  };
  process.on('SIGINT', onSigint);
  let every = 1;
  try {
    const result = await stateTune({ ...rest, init, out }, gemmFor(backend), {
      onTokenize: (file, n) => {
        if (progress !== false) err.write(`  tokenized ${file}: ${n} tokens\n`);
      },
      onStart: (i) => {
        every = Math.max(1, Math.round(i.options.steps / 20));
        if (progress !== false) {
          err.write(
            `rwkv train --state-tune: ${init} (${i.shape.nLayer} layers × ${i.shape.nEmbd}), ${i.stateParameters} state values trained, weights frozen; ${i.startStep > 0 ? `resuming at step ${i.startStep}` : 'from a zero state'}\n` +
              `  data: ${i.trainTokens} tuning + ${i.valTokens} held-out tokens (${i.tokenFile})\n` +
              `  ${i.options.steps} steps × ${i.options.batch} × ${i.options.context} tokens, lr ${i.options.lr} → ${i.options.lrFinal}, kernels ${i.kernels}\n`,
          );
        }
      },
      onStep: (r) => {
        if (progress !== false && (r.step % every === 0 || r.step === r.steps)) {
          err.write(`  step ${r.step}/${r.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${r.tokensPerSecond.toFixed(0)} tok/s  ETA ${formatDuration(r.eta)}\n`);
        }
      },
      shouldStop: () => stop,
    });
    err.write(
      `rwkv train --state-tune: ${result.stopped ? 'stopped at' : 'done,'} step ${result.step} in ${formatDuration(result.seconds)} (${result.tokensPerSecond.toFixed(0)} tok/s)\n` +
        (result.fresh !== undefined && result.tuned !== undefined
          ? `  loss (nats/token) from a zero state: tuning data ${nats(result.fresh.train)}, held-out ${nats(result.fresh.val)}; tuned state: ${nats(result.tuned.train)}, held-out ${nats(result.tuned.val)}\n`
          : '') +
        `  wrote ${result.stateFile}: rwkv generate --model ${init} --state-in ${result.stateFile} "…"\n`,
    );
    return result;
  } finally {
    process.off('SIGINT', onSigint);
    await backend.close();
  }
}
