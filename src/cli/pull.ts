// `rwkv pull hf:OWNER/REPO/FILE`, and the hook that lets every file option take such a reference: the file
// is downloaded into the cache (model-ref.ts) with a progress bar on a terminal, and its local path used.
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { isModelReference, pullModel, type DownloadProgress, type DownloadStart, type ResolveOptions } from './model-ref.js';

/** The options whose value may be an `hf:` reference: model and checkpoint inputs, and tokenizer files. */
const FILE_OPTIONS = ['model', 'in', 'init', 'tokenizer'] as const;

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function formatEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** Download callbacks for the CLI: a bar (bytes, rate, ETA) when stderr is a terminal, else one line per download. */
export function downloadReporter(err: NodeJS.WriteStream = process.stderr): Pick<ResolveOptions, 'onStart' | 'onProgress' | 'onEnd'> {
  let bar: SingleBar | undefined;
  let t0 = 0;
  let from = 0;
  let total: number | undefined;
  let last: DownloadProgress | undefined;
  return {
    onStart: (info: DownloadStart) => {
      t0 = performance.now();
      from = info.resumedFrom;
      total = info.total;
      last = undefined;
      const size = info.total !== undefined ? formatBytes(info.total) : 'size unknown';
      const resume = info.resumedFrom > 0 ? `, resuming at ${formatBytes(info.resumedFrom)}` : '';
      err.write(`rwkv: downloading ${info.url} (${size}${resume})\n`);
      if (err.isTTY === true && info.total !== undefined) {
        bar = new SingleBar(
          { format: ' {bar} {percentage}% | {done} / {size} | {rate} | ETA {left}', hideCursor: true, stream: err, fps: 5 },
          Presets.shades_classic,
        );
        bar.start(info.total, info.resumedFrom, { done: formatBytes(info.resumedFrom), size, rate: '–', left: '?' });
      }
    },
    onProgress: (p: DownloadProgress) => {
      last = p;
      if (bar === undefined) return;
      const s = (performance.now() - t0) / 1000;
      const perSecond = s > 0 ? (p.loaded - from) / s : 0;
      const eta = total !== undefined && perSecond > 0 ? (total - p.loaded) / perSecond : Infinity;
      bar.update(p.loaded, { done: formatBytes(p.loaded), rate: `${formatBytes(perSecond)}/s`, left: formatEta(eta) });
    },
    onEnd: () => {
      bar?.stop();
      bar = undefined;
      if (last !== undefined && err.isTTY !== true) {
        const s = (performance.now() - t0) / 1000;
        err.write(`rwkv: ${formatBytes(last.loaded - from)} in ${s.toFixed(1)} s\n`);
      }
    },
  };
}

/** Whether the CLI runs offline: --offline, or $HF_HUB_OFFLINE as huggingface_hub reads it. */
function offline(root: Command): boolean {
  const v = process.env.HF_HUB_OFFLINE;
  return root.opts().offline === true || v === '1' || v?.toLowerCase() === 'true';
}

/**
 * The preAction hook: each file option of the command about to run that holds an `hf:` reference is
 * replaced by the cached file's path (downloaded first when needed).
 */
export async function resolveReferenceOptions(root: Command, action: Command): Promise<void> {
  const opts = action.opts() as Record<string, unknown>;
  for (const name of FILE_OPTIONS) {
    const value = opts[name];
    if (typeof value !== 'string' || !isModelReference(value)) continue;
    const pulled = await pullModel(value, {
      offline: offline(root),
      // A model from the hub finds its vocabulary beside it if the repository has one.
      withTokenizer: name !== 'tokenizer' && opts.tokenizer === undefined,
      ...downloadReporter(),
    });
    action.setOptionValue(name, pulled.path);
  }
}

/** Adds `rwkv pull`. */
export function addPullCommand(program: Command): Command {
  return program
    .command('pull')
    .description('download hf:OWNER/REPO[@REVISION]/FILE into the cache ($RWKV_CACHE) and print its local path')
    .argument('<refs...>', 'references like hf:BlinkDL/rwkv-7-world/RWKV-x070-World-0.1B-v2.8-20241210-ctx4096.pth')
    .option('--force', 'download again even when cached')
    .option('--no-tokenizer', "don't also try the repository's tokenizer file beside the model")
    .action(async (refs: string[], opts: { force?: boolean; tokenizer?: boolean }, cmd: Command) => {
      const root = cmd.parent ?? cmd;
      for (const ref of refs) {
        const pulled = await pullModel(ref, {
          offline: offline(root),
          ...(opts.force === true ? { force: true } : {}),
          withTokenizer: opts.tokenizer !== false,
          ...downloadReporter(),
        });
        for (const c of pulled.companions) process.stderr.write(`rwkv: also pulled ${c}\n`);
        process.stdout.write(`${pulled.path}\n`);
      }
    });
}
