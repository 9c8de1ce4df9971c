// The messages between a page's Rwkv (rwkv-client.ts) and the module worker that runs the model
// (rwkv-host.ts). Every request carries an id; the worker answers with progress, pieces of text, then one
// result or error for that id. States live in the worker and are named by numbers the page picks.
import type { ModelConfig } from '../models/config.js';
import type { GenerationPiece, GenerationStats, FinishReason, ScoreResult } from '../generation/rwkv.js';
import type { GenerateOptions } from '../generation/generate.js';

/** A model or tokenizer source that crosses to a worker: an absolute URL, a Blob/File, or bytes. */
export type TransferableSource = string | Blob | ArrayBuffer;

export interface LoadRequest {
  type: 'load';
  source: TransferableSource;
  tokenizer: TransferableSource | 'bytes' | undefined;
  threads: number | undefined;
  kernels: 'wasm' | 'reference' | 'webgpu' | 'auto' | undefined;
  memoryBytes: number | undefined;
  maxBatch: number | undefined;
  /** Keep a URL's download in the Origin Private File System (model-cache.ts) and reuse it. */
  cache: boolean;
}

/** Generate options without what cannot cross (signal) or lives in the worker (state: its number). */
export type GenerateRequestOptions = Omit<GenerateOptions, 'logitBias'> & { logitBias?: [number, number][]; stop?: string[]; cache?: boolean };

export type Request =
  | LoadRequest
  | { type: 'encode'; text: string }
  | { type: 'decode'; ids: number[] }
  | { type: 'generate'; prompt: string | number[]; options: GenerateRequestOptions; state: number | undefined }
  | { type: 'score'; text: string | number[]; state: number | undefined; topLogProbs: number | undefined }
  | { type: 'feed'; prompt: string | number[]; state: number }
  | { type: 'embed'; texts: string[]; pooling: 'last' | 'mean' | undefined; normalize: boolean | undefined }
  | { type: 'state.create'; state: number }
  | { type: 'state.clone'; from: number; state: number }
  | { type: 'state.encode'; state: number }
  | { type: 'state.logits'; state: number }
  | { type: 'state.decode'; bytes: Uint8Array; state: number }
  | { type: 'state.dispose'; state: number }
  | { type: 'abort'; target: number }
  | { type: 'close' };

export type Envelope = Request & { id: number };

/** What the page learns at load. */
export interface LoadResult {
  config: ModelConfig;
  kernels: string;
  /** kernels 'auto' without WebGPU: why, and WebAssembly ran instead. */
  fallbackReason: string | undefined;
  threads: number;
  threadsReason: string;
  crossOriginIsolated: boolean;
  tokenizer: string;
}

export interface GenerateResult {
  finishReason: FinishReason;
  stats: GenerationStats;
  seed: number;
  tokenCount: number;
}

export type Response =
  | { id: number; type: 'progress'; loaded: number; total: number | undefined }
  | { id: number; type: 'warning'; message: string }
  | { id: number; type: 'piece'; piece: GenerationPiece }
  | { id: number; type: 'result'; value: unknown }
  | { id: number; type: 'error'; error: SerializedError };

export interface SerializedError {
  name: string;
  message: string;
  code: string | undefined;
  position: number | undefined;
}

export type { ScoreResult };
