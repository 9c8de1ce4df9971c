// The Node.js entry point, 'rwkv-ts/node': everything of 'rwkv-ts' (src/index.ts) plus what only runs on
// Node because it writes files through node:fs — the checkpoint writers.
export * from './index.js';
export { writeCheckpoint, outputFormatOf, type OutputFormat, type WriteOptions, type WriteSummary, type FloatType } from './formats/convert.js';
export { writeSafetensors } from './formats/safetensors-writer.js';
export { writePth } from './formats/pth-writer.js';
export { writeGguf } from './formats/gguf-writer.js';
export { writeRwkvCpp } from './formats/rwkvcpp-writer.js';
export { outTensor, type OutTensor } from './formats/writer.js';
