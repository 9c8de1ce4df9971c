// Loading a model for a CLI command: the WebAssembly kernels with --threads threads (default: every core),
// or the plain TypeScript reference kernels with --kernels reference.
import { ArgumentError } from '../errors.js';
import { WasmBackend } from '../kernels/wasm-backend.js';
import { loadModel } from '../models/load.js';
import type { RwkvModel } from '../models/model.js';

export interface KernelArgs {
  threads?: number;
  kernels?: 'wasm' | 'reference';
  /** Opt-in lossy int8 weights and activations. */
  int8?: boolean;
}

export interface OpenedModel {
  model: RwkvModel;
  /** Stops the worker threads. */
  close(): Promise<void>;
  /** e.g. "wasm relaxed-simd × 2 threads" */
  kernels: string;
}

export async function openModel(path: string, args: KernelArgs): Promise<OpenedModel> {
  if (args.threads !== undefined && (!Number.isInteger(args.threads) || args.threads < 1)) {
    throw new ArgumentError(`--threads must be an integer ≥ 1, got ${args.threads}`);
  }
  if (args.kernels === 'reference') {
    const model = loadModel(path, { int8: args.int8 === true });
    return { model, close: async () => {}, kernels: 'reference (TypeScript, 1 thread)' };
  }
  const backend = await WasmBackend.create(args.threads !== undefined ? { threads: args.threads } : {});
  try {
    const model = loadModel(path, { backend, int8: args.int8 === true });
    const mode = args.int8 === true ? ', int8 weights and activations' : '';
    return { model, close: () => backend.close(), kernels: `wasm ${backend.flavour} × ${backend.threads} thread(s)${mode}` };
  } catch (e) {
    await backend.close();
    throw e;
  }
}
