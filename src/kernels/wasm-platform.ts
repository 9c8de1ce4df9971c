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
  /** Whether shared memory (SharedArrayBuffer) exists here: a browser page must be cross-origin isolated. */
  readonly canShareMemory: boolean;
  cores(): number;
  /** The kernels built for a shared memory (threads), or for an unshared one (`shared` false: one thread). */
  kernelModules(shared?: boolean): Promise<KernelModules>;
  startWorker(init: WorkerInit): PoolWorker;
}

/** Set (to true) by the browser bundle's build, where the .wasm files sit beside the bundled module. */
declare const __RWKV_BUNDLED__: boolean | undefined;

/** The compiled kernels live next to the compiled code: dist/src/kernels/ → dist/wasm/ (bundled: beside it). */
function wasmUrl(name: string): URL {
  return typeof __RWKV_BUNDLED__ !== 'undefined' && __RWKV_BUNDLED__ ? new URL(`./${name}`, import.meta.url) : new URL(`../../wasm/${name}`, import.meta.url);
}

/** The kernel builds: for a shared memory (threads), or an unshared one (`-solo`: one thread, no pool). */
function wasmName(flavour: 'simd' | 'relaxed', shared: boolean): string {
  return `kernels-${flavour}${shared ? '' : '-solo'}.wasm`;
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
  const modules = new Map<boolean, KernelModules>();
  return {
    name: 'node',
    canBlock: true,
    canShareMemory: true,
    cores: () => os.availableParallelism(),
    kernelModules: async (shared = true) => {
      const known = modules.get(shared);
      if (known !== undefined) return known;
      const simd = new WebAssembly.Module(fs.readFileSync(wasmUrl(wasmName('simd', shared))));
      let relaxed: WebAssembly.Module | undefined;
      try {
        // Node 20 ships relaxed SIMD behind a flag, which is refused in NODE_OPTIONS but may be set at run
        // time before the module is compiled.
        v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
        relaxed = new WebAssembly.Module(fs.readFileSync(wasmUrl(wasmName('relaxed', shared))));
      } catch {
        relaxed = undefined; // the runtime does not accept relaxed SIMD: plain SIMD it is
      }
      const found = { simd, relaxed };
      modules.set(shared, found);
      return found;
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
  const modules = new Map<boolean, Promise<KernelModules>>();
  const compile = async (name: string): Promise<WebAssembly.Module> => {
    const url = wasmUrl(name);
    const response = await fetch(url);
    if (!response.ok) throw new Error(`cannot fetch the kernels ${url.href}: HTTP ${response.status}`);
    return WebAssembly.compile(await response.arrayBuffer());
  };
  // SharedArrayBuffer exists only in a cross-origin isolated page (COOP same-origin + COEP require-corp).
  const canShareMemory = typeof SharedArrayBuffer === 'function' && g.crossOriginIsolated !== false;
  return {
    name: 'browser',
    // Window threads may not block; worker threads may.
    canBlock: g.document === undefined,
    canShareMemory,
    cores: () => g.navigator?.hardwareConcurrency ?? 1,
    kernelModules: (shared = true) => {
      let found = modules.get(shared);
      if (found === undefined) {
        found = (async () => {
          if (shared && !canShareMemory) {
            throw new Error('threads need SharedArrayBuffer: serve the page cross-origin isolated (COOP: same-origin, COEP: require-corp), or use one thread');
          }
          const simd = await compile(wasmName('simd', shared));
          const relaxed = await compile(wasmName('relaxed', shared)).catch(() => undefined);
          return { simd, relaxed };
        })();
        modules.set(shared, found);
      }
      return found;
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
