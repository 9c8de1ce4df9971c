// The one place that picks a backend: the CLI, the library and training all come here.
import { ArgumentError } from '../errors.js';
import type { Backend, BackendKind } from './backend.js';
import { ReferenceBackend } from './reference-backend.js';
import { WasmBackend } from './wasm-backend.js';

export interface BackendOptions {
  /**
   * 'wasm' (default): WebAssembly SIMD kernels and a worker pool; 'reference': plain TypeScript, float64 sums,
   * slow; 'webgpu': WGSL compute shaders on navigator.gpu, or on Node the optional `webgpu` package;
   * 'auto': WebGPU when an adapter opens, else WebAssembly (onFallback hears why).
   */
  kind?: BackendKind | 'auto';
  /** With 'auto': called with the reason when WebGPU could not start and WebAssembly is used instead. */
  onFallback?: (reason: string) => void;
  /** Threads of the WebAssembly kernels, the calling thread included. Default: every core. */
  threads?: number;
  /** WebAssembly: false for one thread over an unshared memory (no SharedArrayBuffer). See WasmKernelsOptions. */
  shared?: boolean;
  /** WebAssembly, unshared: the memory's fixed size in bytes. */
  memoryBytes?: number;
  /**
   * true: multiply quantized weights by exact f32 activations. Default false: the activations of each product
   * with quantized weights are quantized per block first, as ggml does (Q8_0, Q8_1, Q8_K), which is faster and
   * gives rwkv.cpp's and llama.cpp's logits. (WebGPU keeps activations exact either way.)
   */
  exactActivations?: boolean;
}

export async function createBackend(options: BackendOptions = {}): Promise<Backend> {
  const kind = options.kind ?? 'wasm';
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1 || options.threads > 64)) {
    throw new ArgumentError(`threads must be an integer from 1 to 64, got ${options.threads}`);
  }
  switch (kind) {
    case 'reference':
      return new ReferenceBackend({ exactActivations: options.exactActivations === true });
    case 'wasm':
      return WasmBackend.create({
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.shared !== undefined ? { shared: options.shared } : {}),
        ...(options.memoryBytes !== undefined ? { memoryBytes: options.memoryBytes } : {}),
        exactActivations: options.exactActivations === true,
      });
    case 'webgpu':
      return createWebGpu();
    case 'auto': {
      let reason: string;
      try {
        return await createWebGpu();
      } catch (e) {
        // Any failure to start (no navigator.gpu, no `webgpu` package, no adapter, no device) means "not here".
        reason = e instanceof Error ? e.message : String(e);
      }
      const backend = await createBackend({ ...options, kind: 'wasm' });
      options.onFallback?.(reason);
      return backend;
    }
    default:
      throw new ArgumentError(`unknown backend '${String(kind)}' (known: wasm, reference, webgpu, auto)`);
  }
}

async function createWebGpu(): Promise<Backend> {
  // Imported when asked for: the backend's shaders stay out of programs that never use it.
  const { WebGpuBackend } = await import('./webgpu/webgpu-backend.js');
  return WebGpuBackend.create();
}
