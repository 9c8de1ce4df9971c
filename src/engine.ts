// 'rwkv-ts/engine': the engine below the user API, for those who build on it (a new backend, a server,
// benchmarks): backends and their tensors, models as ordered lists of backend calls, batches of sequences,
// continuous batching. Like the top-level module, it imports no node: module statically.
export {
  type Backend,
  type BackendKind,
  type DeviceMatrix,
  type DeviceTensor,
  type MatmulJob,
  type RowLayout,
  type StateSlot,
  type UnaryFunction,
  rowLayout,
  checkOwner,
} from './kernels/backend.js';
export { createBackend, type BackendOptions } from './kernels/create-backend.js';
export { ReferenceBackend } from './kernels/reference-backend.js';
export { WasmBackend } from './kernels/wasm-backend.js';
export { WasmKernels, type WasmKernelsOptions } from './kernels/wasm-kernels.js';
export type { Matrix, MatrixDType } from './kernels/matrix.js';
export { RwkvModel, type SequenceInput, type LogitsWanted, type LogitsSink, type HiddenSink, type SequenceOptions } from './models/model.js';
export { State } from './models/state.js';
export { loadModel, modelFromSource, type LoadOptions } from './models/load.js';
export { randomSource, RWKV4_169M, RWKV7_0B1, type RandomShape, type RandomOptions } from './models/random.js';
export { describeModel, summarize, type ModelSummary } from './models/describe.js';
export { detectVersion } from './formats/version.js';
export { toEncoding } from './formats/transform.js';
export { Batcher, type BatcherOptions } from './generation/batcher.js';
export { PACE_MS, pace, yieldToHost } from './util/host.js';
