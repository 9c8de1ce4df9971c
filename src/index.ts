// Public API of rwkv-ts. Nothing this module imports, directly or not, imports a node: module statically
// (test/no-node-imports.test.ts checks), so it also loads in a browser; what needs Node (file paths, saved
// states) imports node:fs when used. Writing checkpoint files is Node-only and lives in 'rwkv-ts/node'
// (src/node.ts), which re-exports all of this too. This is the user API; the engine below it (backends,
// models as backend calls, batching) is 'rwkv-ts/engine' (src/engine.ts), and the pieces of generation
// (samplers, token-level loops, Rng) are 'rwkv-ts/sampling' (src/sampling.ts).
export { RwkvError, FormatError, ModelError, NonFiniteError, StateError, ArgumentError, DeviceError, type RwkvErrorCode } from './errors.js';
export type { DType } from './tensor/dtype.js';
export type { Tensor } from './tensor/tensor.js';
export type { TensorSource, TensorAllocator } from './formats/tensor-source.js';
export { openByteSource, isByteSource, MemorySource, BlobSource, type ByteSource, type ByteSourceInput, type ByteSourceOptions, type LoadProgress } from './formats/byte-source.js';
export type { ReadOptions } from './formats/source-reader.js';
export { readRwkvCpp, type RwkvCppFile, type RwkvCppHeader } from './formats/rwkvcpp.js';
export { openCheckpoint } from './formats/open.js';
export type { ModelConfig, RwkvVersion } from './models/config.js';
export type { RwkvModel } from './models/model.js';
export { State } from './models/state.js';
export { loadModel, modelFromSource, type LoadOptions } from './models/load.js';
export { detectFormat, type CheckpointFormat } from './formats/open.js';
export { readSafetensors } from './formats/safetensors.js';
export { readPth } from './formats/pth.js';
export { readGguf } from './formats/gguf.js';
export { quantize, type QuantType } from './kernels/quantize.js';
export { describeModel, summarize, type ModelSummary } from './models/describe.js';
export type { Tokenizer } from './tokenizers/tokenizer.js';
export { StreamDecoder, decodeText } from './tokenizers/tokenizer.js';
export { ByteTokenizer } from './tokenizers/bytes.js';
export { WorldTokenizer, WORLD_END_OF_TEXT } from './tokenizers/world.js';
export { BpeTokenizer } from './tokenizers/bpe.js';
export { loadTokenizer, tokenizerForModel, tokenizerFromBytes, isTokenizer, KNOWN_VOCABULARIES, type TokenizerSpec } from './tokenizers/load.js';
export { Rwkv, Generation, type RwkvOptions, type RwkvGenerateOptions, type GenerationPiece, type GenerationStats, type FinishReason, type ScoreResult, type ScoreOptions, type EmbedOptions } from './generation/rwkv.js';
export { RwkvState } from './generation/context.js';
export { defaultModelPath } from './default-model.js';
export { PrefixCache, type PrefixCacheOptions, type CacheHit } from './generation/prefix-cache.js';
export type { GenerateOptions, GeneratedToken, TokenLogProb } from './generation/generate.js';
export type { SamplerOptions } from './generation/sampler.js';
export type { BackendKind } from './kernels/backend.js';
export { encodeStateFile, decodeStateFile, readStateFileHeader, modelIdentity, STATE_MAGIC, STATE_FORMAT_VERSION, type ModelIdentity, type StateFileHeader } from './generation/state-file.js';
export { evaluate, evaluateText, type EvaluateOptions, type EvalResults, type EvalTaskResults, type EvalProgress, type EvalSample, type ChoiceSample, type DocumentSample, type TextInput, type TextOptions, type TextResult } from './eval/evaluate.js';
export { TASK_NAMES, PAPER_PRESET, type TaskName } from './eval/tasks.js';
export { EvalDataError, type DataReader, type DataSource } from './eval/data.js';
export type { ChoiceMetrics, LambadaMetrics, PerplexityMetrics, TaskMetrics } from './eval/metrics.js';
export { GptScoringModel, RwkvScoringModel, scoringModel, type ScoringModel, type GptScoringOptions } from './eval/scoring-model.js';
export { rollingWindows } from './eval/evaluate.js';
export { parseGbnf, GrammarError, type Grammar } from './grammar/gbnf.js';
export { GrammarMatcher } from './grammar/matcher.js';
export { JSON_VALUE_GBNF, JSON_OBJECT_GBNF } from './grammar/json.js';
export { jsonSchemaToGbnf } from './grammar/json-schema.js';
