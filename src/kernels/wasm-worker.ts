// A worker of the WebAssembly backend's pool, in Node (worker_threads) or a browser (module Web Worker):
// receives the kernels, the shared memory and its index in one message, instantiates the kernels on that
// memory, then waits on the control block for work, runs its share of each product, and reports done.
import { isNode, type WorkerInit } from './wasm-platform.js';
import { Ctrl, Op, runChunks, type KernelExports } from './wasm-pool.js';

/** The helper worker's nice value (0 is the host thread's; 19 the lowest). */
const HELPER_NICE = 10;

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
if (init.helper && isNode()) {
  // The helper computes while the calling thread has handed the job over to go back to its host: when
  // the host thread wakes (a timer, a request) it must win a core from the helper, not wait for the
  // scheduler's next turn. On Linux setpriority(0) sets the calling thread's nice value.
  try {
    (await import('node:os')).setPriority(HELPER_NICE);
  } catch {
    // not permitted: the helper keeps the host's priority
  }
}
const kernels = new WebAssembly.Instance(init.module, { env: { memory: init.memory } }).exports as unknown as KernelExports;
// The control block never moves, and a shared memory's buffer is never detached by growth.
const ctrl = new Int32Array(init.memory.buffer, init.ctrlOffset, 64);
ready();

// Spin a little before sleeping: during generation the next product follows within microseconds.
const SPINS = 100_000;
// What this worker waits on: the pool's workers on every job's generation, the helper on its own word.
const wakeSlot = init.helper ? Ctrl.HelperWake : Ctrl.Generation;
let seen = Atomics.load(ctrl, wakeSlot);
for (;;) {
  let spins = 0;
  while (Atomics.load(ctrl, wakeSlot) === seen) {
    if (++spins > SPINS) {
      Atomics.wait(ctrl, wakeSlot, seen);
      spins = 0;
    }
  }
  seen = Atomics.load(ctrl, wakeSlot);
  if (ctrl[Ctrl.Op] === Op.Exit) break;
  runChunks(kernels, ctrl, init.index, Atomics.load(ctrl, Ctrl.Generation));
}
