// A worker of the WebAssembly backend's pool: instantiates the kernels on the shared memory, then waits on
// the control block for work, runs its share of each product, and reports done.
import { parentPort, workerData } from 'node:worker_threads';
import { Ctrl, Op, runChunks, type KernelExports } from './wasm-backend.js';

interface PoolWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  index: number;
  ctrlOffset: number;
}

const data = workerData as PoolWorkerData;
const kernels = new WebAssembly.Instance(data.module, { env: { memory: data.memory } }).exports as unknown as KernelExports;
// The control block never moves, and a shared memory's buffer is never detached by growth.
const ctrl = new Int32Array(data.memory.buffer, data.ctrlOffset, 64);
parentPort!.postMessage('ready');

// Spin a little before sleeping: during generation the next product follows within microseconds.
const SPINS = 20_000;
let generation = Atomics.load(ctrl, Ctrl.Generation);
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
  runChunks(kernels, ctrl, data.index, generation);
}
