// Where the WebAssembly backend runs: Node (worker_threads, the .wasm read from disk, relaxed SIMD
// switched on through node:v8) or a browser (module Web Workers, the .wasm fetched next to this file).
// Node's modules are imported dynamically, so a bundler for the browser never has to resolve them.

/** What a pool worker needs: the compiled kernels, the shared memory, its index, the control block. */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  index: number;
  ctrlOffset: number;
  /**
   * The helper worker sleeps through ordinary jobs (the calling thread works those with the pool) and
   * wakes only for asynchronous ones, in which it takes the calling thread's place.
   */
  helper: boolean;
}

export interface PoolWorker {
  /** Resolves once the worker has instantiated the kernels on the shared memory. */
  readonly ready: Promise<void>;
  terminate(): Promise<void>;
}

export interface KernelModules {
  simd: WebAssembly.Module;
  /** The relaxed-SIMD (fused multiply-add) build, when the runtime accepts it. */
  relaxed: WebAssembly.Module | undefined;
}

export interface KernelPlatform {
  readonly name: 'node' | 'browser';
  /** Whether the calling thread may block in Atomics.wait (a browser's main thread may not). */
  readonly canBlock: boolean;
  cores(): number;
  kernelModules(): Promise<KernelModules>;
  startWorker(init: WorkerInit): PoolWorker;
}

/** The compiled kernels live next to the compiled code: dist/src/kernels/ → dist/wasm/. */
function wasmUrl(name: string): URL {
  return new URL(`../../wasm/${name}`, import.meta.url);
}

const workerUrl = (): URL => new URL('./wasm-worker.js', import.meta.url);

export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return p?.versions?.node !== undefined;
}

let cached: Promise<KernelPlatform> | undefined;

/** The platform this process runs on (computed once). */
export function currentPlatform(): Promise<KernelPlatform> {
  cached ??= isNode() ? nodePlatform() : Promise.resolve(browserPlatform());
  return cached;
}

async function nodePlatform(): Promise<KernelPlatform> {
  const fs = await import('node:fs');
  const os = await import('node:os');
  const v8 = await import('node:v8');
  const { Worker } = await import('node:worker_threads');
  let modules: KernelModules | undefined;
  return {
    name: 'node',
    canBlock: true,
    cores: () => os.availableParallelism(),
    kernelModules: async () => {
      if (modules !== undefined) return modules;
      const simd = new WebAssembly.Module(fs.readFileSync(wasmUrl('kernels-simd.wasm')));
      let relaxed: WebAssembly.Module | undefined;
      try {
        // Node 20 ships relaxed SIMD behind a flag, which is refused in NODE_OPTIONS but may be set at run
        // time before the module is compiled.
        v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
        relaxed = new WebAssembly.Module(fs.readFileSync(wasmUrl('kernels-relaxed.wasm')));
      } catch {
        relaxed = undefined; // the runtime does not accept relaxed SIMD: plain SIMD it is
      }
      modules = { simd, relaxed };
      return modules;
    },
    startWorker: (init) => {
      const worker = new Worker(workerUrl());
      const ready = new Promise<void>((resolve, reject) => {
        worker.once('message', () => {
          worker.off('error', reject);
          worker.unref(); // idle workers must not keep the process alive
          resolve();
        });
        worker.once('error', reject);
      });
      worker.postMessage(init);
      return {
        ready,
        terminate: async () => {
          await worker.terminate();
        },
      };
    },
  };
}

/** The parts of a browser's Worker this backend uses (the DOM typings are not part of this build). */
interface WebWorker {
  postMessage(message: unknown): void;
  terminate(): void;
  addEventListener(type: 'message' | 'error', listener: (event: { data?: unknown; message?: string }) => void): void;
}
type WebWorkerConstructor = new (url: URL, options: { type: 'module' }) => WebWorker;

function browserPlatform(): KernelPlatform {
  const g = globalThis as {
    Worker?: WebWorkerConstructor;
    navigator?: { hardwareConcurrency?: number };
    crossOriginIsolated?: boolean;
    document?: unknown;
  };
  let modules: Promise<KernelModules> | undefined;
  const compile = async (name: string): Promise<WebAssembly.Module> => {
    const response = await fetch(wasmUrl(name));
    if (!response.ok) throw new Error(`cannot fetch ${name}: HTTP ${response.status}`);
    return WebAssembly.compile(await response.arrayBuffer());
  };
  return {
    name: 'browser',
    // Window threads may not block; worker threads may.
    canBlock: g.document === undefined,
    cores: () => g.navigator?.hardwareConcurrency ?? 1,
    kernelModules: () => {
      modules ??= (async () => {
        if (g.crossOriginIsolated === false) {
          throw new Error('the WebAssembly backend needs SharedArrayBuffer: serve the page cross-origin isolated (COOP: same-origin, COEP: require-corp)');
        }
        const simd = await compile('kernels-simd.wasm');
        const relaxed = await compile('kernels-relaxed.wasm').catch(() => undefined);
        return { simd, relaxed };
      })();
      return modules;
    },
    startWorker: (init) => {
      if (g.Worker === undefined) throw new Error('this runtime has no Web Workers');
      const worker = new g.Worker(workerUrl(), { type: 'module' });
      const ready = new Promise<void>((resolve, reject) => {
        worker.addEventListener('message', () => resolve());
        worker.addEventListener('error', (e) => reject(new Error(`a kernel worker failed to start: ${e.message ?? 'unknown error'}`)));
      });
      worker.postMessage(init);
      return {
        ready,
        terminate: async () => worker.terminate(),
      };
    },
  };
}
