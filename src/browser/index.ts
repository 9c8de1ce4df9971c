// The browser entry of rwkv-ts (dist/browser/rwkv.js, and the package's "browser" condition): Rwkv runs the
// model in a module Web Worker beside this file (rwkv-host.js, with the kernels' worker and .wasm files), so
// a page imports one module by URL and never blocks. See docs/browser.md.
export { Rwkv, BrowserGeneration, BrowserState, type BrowserLoadOptions, type BrowserGenerateOptions, type BrowserSource, type RwkvInfo } from './rwkv-client.js';
export { RwkvError, FormatError, ModelError, NonFiniteError, StateError, ArgumentError, AbortError, type RwkvErrorCode } from '../errors.js';
export type { ModelConfig, RwkvVersion } from '../models/config.js';
export type { GenerationPiece, GenerationStats, FinishReason, ScoreResult } from '../generation/rwkv.js';
export type { GeneratedToken, TokenLogProb } from '../generation/generate.js';
export type { LoadProgress } from '../formats/byte-source.js';
export { listCachedModels, deleteCachedModel, fetchModelCached, type CachedModelInfo, type FetchModelCachedOptions, type ModelDownloadProgress } from './model-cache.js';
