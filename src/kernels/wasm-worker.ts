// A worker of the WebAssembly backend's pool, in Node (worker_threads) or a browser (module Web Worker):
// receives the kernels, the shared memory and its index in one message, instantiates the kernels on that
// memory, then waits on the control block for work, runs its share of each product, and reports done.
import { isNode, type WorkerInit } from './wasm-platform.js';
import { Ctrl, Op, runChunks, type KernelExports } from './wasm-pool.js';

/** The one message this worker gets, and how it says it is ready. */
async function receiveInit(): Promise<{ init: WorkerInit; ready: () => void }> {
  if (isNode()) {
    const { parentPort } = await import('node:worker_threads');
    const port = parentPort!;
    const init = await new Promise<WorkerInit>((resolve) => port.once('message', resolve));
    return { init, ready: () => port.postMessage('ready') };
  }
  const scope = globalThis as unknown as {
    addEventListener(type: 'message', listener: (event: { data: WorkerInit }) => void, options: { once: boolean }): void;
    postMessage(message: unknown): void;
  };
  const init = await new Promise<WorkerInit>((resolve) => scope.addEventListener('message', (e) => resolve(e.data), { once: true }));
  return { init, ready: () => scope.postMessage('ready') };
}

const { init, ready } = await receiveInit();
const kernels = new WebAssembly.Instance(init.module, { env: { memory: init.memory } }).exports as unknown as KernelExports;
// The control block never moves, and a shared memory's buffer is never detached by growth.
const ctrl = new Int32Array(init.memory.buffer, init.ctrlOffset, 64);
let generation = Atomics.load(ctrl, Ctrl.Generation);
ready();

// Spin a little before sleeping: during generation the next product follows within microseconds.
const SPINS = 20_000;
for (;;) {
  let spins = 0;
  while (Atomics.load(ctrl, Ctrl.Generation) === generation) {
    if (++spins > SPINS) {
      Atomics.wait(ctrl, Ctrl.Generation, generation);
      spins = 0;
    }
  }
  generation = Atomics.load(ctrl, Ctrl.Generation);
  if (ctrl[Ctrl.Op] === Op.Exit) break;
  runChunks(kernels, ctrl, init.index, generation);
}
