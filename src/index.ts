// Public API of rwkv-ts.
export { RwkvError, FormatError, ModelError, StateError, ArgumentError, type RwkvErrorCode } from './errors.js';
export type { DType } from './tensor/dtype.js';
export type { Tensor } from './tensor/tensor.js';
export type { TensorSource, TensorAllocator } from './formats/tensor-source.js';
export { readRwkvCpp, type RwkvCppFile, type RwkvCppHeader } from './formats/rwkvcpp.js';
export { openCheckpoint } from './formats/open.js';
export type { ModelConfig, RwkvVersion } from './models/config.js';
export type { RwkvModel } from './models/model.js';
export { State } from './models/state.js';
export { loadModel, modelFromSource, detectVersion, type LoadOptions } from './models/load.js';
export { describeModel, summarize, type ModelSummary } from './models/describe.js';
export type { Tokenizer } from './tokenizers/tokenizer.js';
export { StreamDecoder, decodeText } from './tokenizers/tokenizer.js';
export { ByteTokenizer } from './tokenizers/bytes.js';
export { feed, generateTokens, validateGenerateOptions, type GenerateOptions, type GeneratedToken } from './generation/generate.js';
export { sample, softmax, type SamplerOptions } from './generation/sampler.js';
export { Rng } from './generation/rng.js';
