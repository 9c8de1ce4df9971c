// Loading a model for a CLI command on the backend createBackend picks: the WebAssembly kernels with
// --threads threads (default: every core), or the plain TypeScript reference with --kernels reference.
import * as os from 'node:os';
import { ArgumentError } from '../errors.js';
import { createBackend } from '../kernels/create-backend.js';
import { Rwkv, type RwkvOptions } from '../generation/rwkv.js';
import { readLoraSpecs } from '../formats/lora.js';
import { loadModel } from '../models/load.js';
import { readProgress } from './progress.js';
import type { RwkvModel } from '../models/model.js';
import type { GptModel } from '../models/gpt.js';
import { loadGpt } from '../models/gpt-load.js';

export interface KernelArgs {
  threads?: number;
  kernels?: 'wasm' | 'reference' | 'webgpu' | 'auto';
  /** Opt-in lossy int8 weights and activations. */
  int8?: boolean;
  /** Quantized weights times exact activations (not ggml's 8-bit ones). */
  exactActivations?: boolean;
  /** LoRA adapters applied at load: "FILE" or "FILE:SCALE" each. */
  lora?: string[];
}

export interface OpenedModel {
  model: RwkvModel;
  /** Stops the worker threads. */
  close(): Promise<void>;
  /** e.g. "wasm relaxed-simd × 2 thread(s)" */
  kernels: string;
}

export async function openModel(path: string, args: KernelArgs): Promise<OpenedModel> {
  const backend = await createBackend({ kind: args.kernels ?? 'wasm', ...(args.threads !== undefined ? { threads: args.threads } : {}), exactActivations: args.exactActivations === true, onFallback: printFallback });
  try {
    const progress = readProgress(`loading ${basename(path)}`);
    let model: RwkvModel;
    try {
      const lora = args.lora !== undefined && args.lora.length > 0 ? await readLoraSpecs(args.lora) : undefined;
      model = await loadModel(path, { backend, int8: args.int8 === true, onProgress: progress.onProgress, ...(lora !== undefined ? { lora } : {}) });
    } finally {
      progress.done();
    }
    const mode = args.int8 === true ? ', int8 weights and activations' : '';
    return { model, close: () => backend.close(), kernels: `${backend.description}${mode}` };
  } catch (e) {
    await backend.close();
    throw e;
  }
}

/** A GPT-2 checkpoint (models/gpt-load.ts) on the backend --kernels/--threads pick, as `openModel` does. */
export async function openGpt(path: string, args: KernelArgs): Promise<{ model: GptModel; close(): Promise<void>; kernels: string }> {
  if (args.int8 === true) throw new ArgumentError('--int8 is not supported for GPT models');
  if (args.lora !== undefined && args.lora.length > 0) throw new ArgumentError('--lora is not supported for GPT models (apply it with rwkv merge first)');
  const backend = await createBackend({ kind: args.kernels ?? 'wasm', ...(args.threads !== undefined ? { threads: args.threads } : {}), exactActivations: args.exactActivations === true, onFallback: printFallback });
  try {
    const progress = readProgress(`loading ${basename(path)}`);
    let model: GptModel;
    try {
      model = await loadGpt(path, { backend, onProgress: progress.onProgress });
    } finally {
      progress.done();
    }
    return { model, close: () => backend.close(), kernels: backend.description };
  } catch (e) {
    await backend.close();
    throw e;
  }
}

/** --kernels auto without WebGPU: one line on stderr, so a user who expected the GPU learns why not. */
export function printFallback(reason: string): void {
  process.stderr.write(`rwkv: WebGPU unavailable (${reason}); using WebAssembly\n`);
}

/**
 * A warning (or undefined) for --threads above the machine's cores: the threads then take turns on the
 * cores and every product waits for the slowest (64 threads on 2 cores ran 8× slower here).
 */
export function threadsWarning(threads: unknown, cores = os.availableParallelism()): string | undefined {
  if (typeof threads !== 'number' || threads <= cores) return undefined;
  return `rwkv: warning: --threads ${threads} is more than the ${cores} core(s) of this machine, which makes every step slower; the default is one thread per core (${cores})\n`;
}

/** The last part of a path or URL, for a progress label. */
export function basename(path: string): string {
  return path.split(/[\\/]/).pop() ?? path;
}

/**
 * `Rwkv.load` for a CLI command: --threads, --kernels, --int8 and --tokenizer as given, a progress bar
 * while the file is read, and the command's own options (`extra`) on top.
 */
export async function loadRwkv(model: string, args: KernelArgs & { tokenizer?: string }, extra: RwkvOptions = {}): Promise<Rwkv> {
  const progress = readProgress(`loading ${basename(model)}`);
  try {
    return await Rwkv.load(model, {
      onProgress: progress.onProgress,
      ...(args.threads !== undefined ? { threads: args.threads } : {}),
      ...(args.kernels !== undefined ? { kernels: args.kernels } : {}),
      onFallback: printFallback,
      int8: args.int8 === true,
      exactActivations: args.exactActivations === true,
      ...(args.lora !== undefined && args.lora.length > 0 ? { lora: args.lora } : {}),
      ...(args.tokenizer !== undefined ? { tokenizer: args.tokenizer } : {}),
      ...extra,
    });
  } finally {
    progress.done();
  }
}
