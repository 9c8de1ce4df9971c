// Rwkv for a web page: the library's API, with the model in a module Web Worker (rwkv-host.ts) so that the
// page's thread never computes. What needs the model's data is asynchronous here (encode, decode, state
// bytes); generation is the same async iterator of text pieces as in Node.
import { AbortError, ArgumentError, FormatError, ModelError, NonFiniteError, RwkvError, StateError, type RwkvErrorCode } from '../errors.js';
import type { LoadProgress } from '../formats/byte-source.js';
import type { TokenLogProb } from '../generation/generate.js';
import type { EmbedOptions, FinishReason, GenerationPiece, GenerationStats, RwkvGenerateOptions, ScoreResult } from '../generation/rwkv.js';
import type { ModelConfig } from '../models/config.js';
import type { Envelope, GenerateRequestOptions, GenerateResult, LoadResult, Request, Response, SerializedError, TransferableSource } from './protocol.js';

/** A model or tokenizer for a page: a URL (absolute, or relative to the page), a File/Blob, or the bytes. */
export type BrowserSource = string | URL | Blob | ArrayBuffer | ArrayBufferView;

export interface BrowserLoadOptions {
  /** Kernel threads. Default: one per core when the page is cross-origin isolated, else 1 (and info says why). */
  threads?: number;
  /** A tokenizer file (World vocabulary or tokenizer.json) or 'bytes'. Default: by vocabulary size (256: bytes). */
  tokenizer?: BrowserSource | 'bytes';
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  /**
   * 'wasm' (default); 'reference' (plain TypeScript, slow: for checking); 'webgpu' (the worker's
   * navigator.gpu; fails without an adapter); 'auto' (WebGPU when an adapter opens, else WebAssembly, and
   * info.fallbackReason says why).
   */
  kernels?: 'wasm' | 'reference' | 'webgpu' | 'auto';
  /** One-thread mode: the fixed memory for weights and work (default: the file's size × 1.25 + 256 MiB). */
  memoryBytes?: number;
  /** Most sequences in one batched pass (concurrent generate/score calls share passes). Default 8. */
  maxBatch?: number;
  /**
   * A model given by URL is kept in the Origin Private File System and read from there next time, while
   * the server still has the same file (ETag and size). Default true; false downloads it every time.
   */
  cache?: boolean;
  /** Storage full (the download is kept in memory), or the server unreachable (the stored copy is used). */
  onWarning?: (message: string) => void;
}

/** How the model runs: threads, and why that many. */
export interface RwkvInfo {
  threads: number;
  threadsReason: string;
  /** What runs the model, e.g. "wasm relaxed-simd × 4 thread(s)" or "webgpu …" (the adapter). */
  kernels: string;
  /** kernels 'auto' when WebGPU did not start: why (WebAssembly runs instead). */
  fallbackReason?: string;
  crossOriginIsolated: boolean;
  tokenizer: string;
}

export type BrowserGenerateOptions = Omit<RwkvGenerateOptions, 'state'> & { state?: BrowserState };

/** A state held in the worker; clone, save and load it as in Node (saving gives the state file's bytes). */
export class BrowserState {
  /** @internal */
  readonly id: number;
  private readonly owner: Rwkv;
  /** Tokens this state has seen (updated when a call on it ends). */
  tokenCount: number;

  /** @internal Use Rwkv.createState, loadState or clone. */
  constructor(owner: Rwkv, id: number, tokenCount: number) {
    this.owner = owner;
    this.id = id;
    this.tokenCount = tokenCount;
  }

  /** An independent copy. */
  clone(): BrowserState {
    return this.owner.cloneState(this);
  }

  /** The logits after the last token this state has seen (undefined for a fresh state). */
  async logits(): Promise<Float32Array | undefined> {
    return (await this.owner.stateLogits(this)) ?? undefined;
  }

  /** Frees it in the worker. */
  dispose(): void {
    this.owner.disposeState(this);
  }
}

/** A generation in progress: an async iterator of text pieces; finishReason, stats and seed once it ends. */
export class BrowserGeneration implements AsyncIterableIterator<GenerationPiece> {
  finishReason: FinishReason | undefined;
  stats: GenerationStats | undefined;
  seed: number | undefined;
  private readonly queue: GenerationPiece[] = [];
  private waiting: { resolve: (r: IteratorResult<GenerationPiece, void>) => void; reject: (e: unknown) => void } | undefined;
  private failed: unknown;
  private ended = false;
  private readonly stop: () => void;

  /** @internal */
  constructor(stop: () => void) {
    this.stop = stop;
  }

  /** @internal A piece from the worker. */
  push(piece: GenerationPiece): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w !== undefined) w.resolve({ value: piece, done: false });
    else this.queue.push(piece);
  }

  /** @internal The worker's result (or error): the iteration ends after the queued pieces. */
  end(result: GenerateResult | undefined, error?: unknown): void {
    this.ended = true;
    if (result !== undefined) {
      this.finishReason = result.finishReason;
      this.stats = result.stats;
      this.seed = result.seed;
    }
    this.failed = error;
    const w = this.waiting;
    this.waiting = undefined;
    if (w !== undefined) {
      if (error !== undefined) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<GenerationPiece, void>> {
    const piece = this.queue.shift();
    if (piece !== undefined) return Promise.resolve({ value: piece, done: false });
    if (this.ended) return this.failed !== undefined ? Promise.reject(this.failed) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Stopping early (break in for await) stops the worker's generation at its next token. */
  return(): Promise<IteratorResult<GenerationPiece, void>> {
    if (!this.ended) this.stop();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Runs to the end; the whole generated text. */
  async text(): Promise<string> {
    let out = '';
    for await (const piece of this) out += piece.text;
    return out;
  }
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (e: unknown) => void;
  onPiece?: (piece: GenerationPiece) => void;
  onProgress?: (p: LoadProgress) => void;
  onWarning?: (message: string) => void;
}

interface BrowserWorker {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  terminate(): void;
  addEventListener(type: 'message', listener: (event: MessageEvent<Response>) => void): void;
  addEventListener(type: 'error', listener: (event: ErrorEvent) => void): void;
}

export class Rwkv {
  readonly config: ModelConfig;
  readonly info: RwkvInfo;
  private readonly worker: BrowserWorker;
  private readonly pending: Map<number, Pending>;
  private nextId: { value: number };
  private nextState = 1;
  private closed = false;

  private constructor(worker: BrowserWorker, pending: Map<number, Pending>, nextId: { value: number }, loaded: LoadResult) {
    this.worker = worker;
    this.pending = pending;
    this.nextId = nextId;
    this.config = loaded.config;
    this.info = {
      threads: loaded.threads,
      threadsReason: loaded.threadsReason,
      kernels: loaded.kernels,
      ...(loaded.fallbackReason !== undefined ? { fallbackReason: loaded.fallbackReason } : {}),
      crossOriginIsolated: loaded.crossOriginIsolated,
      tokenizer: loaded.tokenizer,
    };
  }

  /** Starts a worker and loads the model into it (progress as bytes read; the signal cancels). */
  static async load(source: BrowserSource, options: BrowserLoadOptions = {}): Promise<Rwkv> {
    const WorkerClass = (globalThis as { Worker?: new (url: URL, options: { type: 'module'; name?: string }) => BrowserWorker }).Worker;
    if (WorkerClass === undefined) throw new ArgumentError('Web Workers are not available here (in Node, use the library of rwkv-ts/node)');
    if (options.signal?.aborted === true) throw new AbortError('loading aborted');
    const worker = new WorkerClass(new URL('./rwkv-host.js', import.meta.url), { type: 'module', name: 'rwkv' });
    const pending = new Map<number, Pending>();
    const nextId = { value: 1 };
    let failure: Error | undefined;
    worker.addEventListener('message', (event) => {
      const m = event.data;
      const p = pending.get(m.id);
      if (p === undefined) return;
      if (m.type === 'progress') p.onProgress?.({ loaded: m.loaded, total: m.total ?? 0 } as LoadProgress);
      else if (m.type === 'warning') (p.onWarning ?? console.warn)(`rwkv: ${m.message}`);
      else if (m.type === 'piece') p.onPiece?.(m.piece);
      else {
        pending.delete(m.id);
        if (m.type === 'result') p.resolve(m.value);
        else p.reject(revive(m.error));
      }
    });
    worker.addEventListener('error', (event) => {
      // The worker's script failed to load or threw outside a request: every caller hears it.
      failure = new RwkvError('BAD_ARGUMENT', `the model worker failed: ${event.message || 'could not start (is rwkv-host.js beside rwkv.js?)'}`);
      for (const p of pending.values()) p.reject(failure);
      pending.clear();
    });
    const id = nextId.value++;
    const request: Request = {
      type: 'load',
      source: await transferable(source),
      tokenizer: options.tokenizer === undefined || options.tokenizer === 'bytes' ? options.tokenizer : await transferable(options.tokenizer),
      threads: options.threads,
      kernels: options.kernels,
      memoryBytes: options.memoryBytes,
      maxBatch: options.maxBatch,
      cache: options.cache !== false,
    };
    const onAbort = (): void => worker.postMessage({ id: nextId.value++, type: 'abort', target: id } satisfies Envelope);
    options.signal?.addEventListener('abort', onAbort);
    try {
      const loaded = await new Promise<LoadResult>((resolve, reject) => {
        if (failure !== undefined) reject(failure);
        pending.set(id, {
          resolve: resolve as (v: unknown) => void,
          reject,
          ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
          ...(options.onWarning !== undefined ? { onWarning: options.onWarning } : {}),
        });
        worker.postMessage({ ...request, id });
      });
      return new Rwkv(worker, pending, nextId, loaded);
    } catch (e) {
      worker.terminate();
      throw e;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  private call<T>(request: Request, extra: Omit<Pending, 'resolve' | 'reject'> = {}, signal?: AbortSignal, transfer: Transferable[] = []): Promise<T> {
    if (this.closed) return Promise.reject(new ArgumentError('this model has been closed'));
    if (signal?.aborted === true) return Promise.reject(new AbortError('aborted'));
    const id = this.nextId.value++;
    const onAbort = (): void => this.worker.postMessage({ id: this.nextId.value++, type: 'abort', target: id } satisfies Envelope);
    signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        ...extra,
      });
      this.worker.postMessage({ ...request, id }, transfer);
    });
  }

  encode(text: string): Promise<number[]> {
    return this.call({ type: 'encode', text });
  }

  decode(ids: readonly number[]): Promise<string> {
    return this.call({ type: 'decode', ids: [...ids] });
  }

  /** A fresh state (nothing seen yet), held in the worker. */
  createState(): BrowserState {
    const s = new BrowserState(this, this.nextState++, 0);
    void this.call({ type: 'state.create', state: s.id }).catch(() => undefined);
    return s;
  }

  /** @internal BrowserState.clone */
  cloneState(from: BrowserState): BrowserState {
    const s = new BrowserState(this, this.nextState++, from.tokenCount);
    void this.call({ type: 'state.clone', from: from.id, state: s.id }).catch(() => undefined);
    return s;
  }

  /** @internal BrowserState.logits */
  stateLogits(state: BrowserState): Promise<Float32Array | null> {
    return this.call({ type: 'state.logits', state: state.id });
  }

  /** @internal BrowserState.dispose */
  disposeState(state: BrowserState): void {
    void this.call({ type: 'state.dispose', state: state.id }).catch(() => undefined);
  }

  /** Feeds a prompt into a state (parallel mode), leaving it ready for generation. */
  async feed(state: BrowserState, prompt: string | readonly number[], options: { signal?: AbortSignal } = {}): Promise<void> {
    state.tokenCount = await this.call<number>({ type: 'feed', prompt: typeof prompt === 'string' ? prompt : [...prompt], state: state.id }, {}, options.signal);
  }

  /** The bytes of a state file (the same format Node's saveState writes). */
  saveState(state: BrowserState): Promise<Uint8Array> {
    return this.call({ type: 'state.encode', state: state.id });
  }

  /** A state from state-file bytes (refused when it belongs to another model). */
  async loadState(bytes: Uint8Array | ArrayBuffer | Blob): Promise<BrowserState> {
    const data = bytes instanceof Blob ? new Uint8Array(await bytes.arrayBuffer()) : bytes instanceof Uint8Array ? bytes.slice() : new Uint8Array(bytes.slice(0));
    const s = new BrowserState(this, this.nextState++, 0);
    s.tokenCount = await this.call<number>({ type: 'state.decode', bytes: data, state: s.id }, {}, undefined, [data.buffer]);
    return s;
  }

  /** Generates text after `prompt`, as Rwkv.generate in Node: `for await (const piece of rwkv.generate(…))`. */
  generate(prompt: string | readonly number[], options: BrowserGenerateOptions = {}): BrowserGeneration {
    const { signal, state, logitBias, stop, ...rest } = options;
    const id = this.nextId.value;
    const generation = new BrowserGeneration(() => this.worker.postMessage({ id: this.nextId.value++, type: 'abort', target: id } satisfies Envelope));
    const bias = logitBias === undefined ? undefined : logitBias instanceof Map ? [...logitBias.entries()] : Object.entries(logitBias).map(([k, v]) => [Number(k), v] as [number, number]);
    const request: Request = {
      type: 'generate',
      prompt: typeof prompt === 'string' ? prompt : [...prompt],
      options: { ...(rest as GenerateRequestOptions), ...(bias !== undefined ? { logitBias: bias } : {}), ...(stop !== undefined ? { stop: [...stop] } : {}) },
      state: state?.id,
    };
    this.call<GenerateResult>(request, { onPiece: (piece) => generation.push(piece) }, signal).then(
      (result) => {
        if (state !== undefined) state.tokenCount = result.tokenCount;
        generation.end(result);
      },
      (e: unknown) => generation.end(undefined, e),
    );
    return generation;
  }

  /** Log-likelihoods of `text`, as Rwkv.score in Node. */
  score(text: string | readonly number[], options: { state?: BrowserState; signal?: AbortSignal; topLogProbs?: number } = {}): Promise<ScoreResult & { alternatives?: TokenLogProb[][] }> {
    return this.call({ type: 'score', text: typeof text === 'string' ? text : [...text], state: options.state?.id, topLogProbs: options.topLogProbs }, {}, options.signal);
  }

  /** Embeddings, as Rwkv.embed in Node. */
  embed(texts: string | readonly string[], options: Omit<EmbedOptions, 'signal'> = {}): Promise<Float32Array[]> {
    return this.call({ type: 'embed', texts: typeof texts === 'string' ? [texts] : [...texts], pooling: options.pooling, normalize: options.normalize });
  }

  /** Stops the worker (and its kernel threads). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.call({ type: 'close' }).catch(() => undefined);
    this.closed = true;
    this.worker.terminate();
  }
}

/** What can cross to the worker: URLs made absolute (the worker's base is its script), bytes copied. */
async function transferable(source: BrowserSource): Promise<TransferableSource> {
  if (typeof source === 'string' || source instanceof URL) {
    const base = (globalThis as { location?: { href: string } }).location?.href;
    return new URL(String(source), base).href;
  }
  if (source instanceof Blob) return source;
  if (source instanceof ArrayBuffer) return source.slice(0);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength).slice().buffer;
  throw new ArgumentError('a model source is a URL, a File or Blob, or bytes');
}

/** The worker's error as the library's typed error (instanceof works on the page). */
function revive(e: SerializedError): Error {
  const code = (e.code ?? 'BAD_ARGUMENT') as RwkvErrorCode;
  switch (e.name) {
    case 'ArgumentError':
      return new ArgumentError(e.message);
    case 'AbortError':
      return new AbortError(e.message);
    case 'NonFiniteError':
      return new NonFiniteError(e.message, e.position ?? -1);
    case 'FormatError':
      return new FormatError(code, e.message);
    case 'ModelError':
      return new ModelError(code, e.message);
    case 'StateError':
      return new StateError(code, e.message);
    case 'RwkvError':
      return new RwkvError(code, e.message);
    default: {
      const error = new Error(e.message);
      error.name = e.name;
      return error;
    }
  }
}
