// A progress bar for reading a model file, on stderr when it is a terminal: every command that loads or
// reads a checkpoint (generate, chat, logits, info, eval, convert, quantize) shows the same one. Small
// files (a fixture, the shipped model) load in a blink and get none.
import { Presets, SingleBar } from 'cli-progress';
import type { LoadProgress } from '../formats/byte-source.js';

/** Files below this size load without a bar. */
export const BAR_MIN_BYTES = 64 * 2 ** 20;

export interface ReadProgress {
  /** Pass as the reader's `onProgress`. */
  onProgress: (p: LoadProgress) => void;
  /** Removes the bar (call when reading ended, also on failure). */
  done(): void;
}

/** A bar labelled `label` (e.g. "loading model.bin") that appears once the first report shows a large file. */
export function readProgress(label: string, stream: NodeJS.WriteStream = process.stderr): ReadProgress {
  let bar: SingleBar | undefined;
  const tty = stream.isTTY === true;
  return {
    onProgress: ({ loaded, total }) => {
      if (!tty || total < BAR_MIN_BYTES) return;
      if (bar === undefined) {
        bar = new SingleBar(
          {
            format: ` ${label} {bar} {percentage}% | {loadedMiB}/{totalMiB} MiB | ETA {eta_formatted}`,
            hideCursor: true,
            stream,
            fps: 5,
            clearOnComplete: true,
          },
          Presets.shades_classic,
        );
        bar.start(total, 0, { loadedMiB: '0', totalMiB: (total / 2 ** 20).toFixed(0) });
      }
      bar.update(loaded, { loadedMiB: (loaded / 2 ** 20).toFixed(0) });
    },
    done: () => {
      bar?.stop();
      bar = undefined;
    },
  };
}
