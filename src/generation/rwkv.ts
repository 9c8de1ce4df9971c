// The library's front door: a model with its tokenizer, generation as an async iterator of text pieces,
// scoring, states you can keep (clone, save, load), and the prefix-state cache.
import { AbortError, ArgumentError, RwkvError } from '../errors.js';
import { filePathOf, isUrlString, type ByteSourceInput } from '../formats/byte-source.js';
import type { ReadOptions } from '../formats/source-reader.js';
import type { Backend } from '../kernels/backend.js';
import { createBackend } from '../kernels/create-backend.js';
import { readLoraSpecs } from '../formats/lora.js';
import { loadModel } from '../models/load.js';
import type { RwkvModel } from '../models/model.js';
import type { ModelConfig } from '../models/config.js';
import type { State } from '../models/state.js';
import { tokenizerForModel, type TokenizerSpec } from '../tokenizers/load.js';
import { decodeText, StreamDecoder, type Tokenizer } from '../tokenizers/tokenizer.js';
import { Batcher, type BatcherOptions } from './batcher.js';
import { RwkvState, type SamplerSnapshot } from './context.js';
import {
  drawStep,
  feedToken,
  logSoftmaxAt,
  prefill,
  TokenSampler,
  topLogProbs,
  validateGenerateOptions,
  type GeneratedToken,
  type GenerateOptions,
  type ResolvedGenerateOptions,
  type TokenLogProb,
} from './generate.js';
import { PrefixCache, type PrefixCacheOptions } from './prefix-cache.js';
import { isWhitespaceOrDigits } from './sampler.js';
import { decodeStateFile, encodeStateFile, modelIdentity, type ModelIdentity } from './state-file.js';
import { StopMatcher } from './stop.js';
import { GrammarConstraint } from '../grammar/constraint.js';
import { parseGbnf, type Grammar } from '../grammar/gbnf.js';
import { jsonSchemaToGbnf } from '../grammar/json-schema.js';
import { pace } from '../util/host.js';
import { checkBoolean, checkInteger, checkOptionNames, describeValue } from '../util/options.js';

export interface RwkvOptions extends ReadOptions {
  /** Threads of the WebAssembly kernels, the calling thread included. Default: every core. */
  threads?: number;
  /**
   * 'wasm' (default): the fast kernels; 'reference': plain TypeScript, slow, for checking; 'webgpu': WGSL
   * shaders on a WebGPU adapter (navigator.gpu, or on Node the `webgpu` package; first landing, untuned);
   * 'auto': WebGPU where an adapter opens, else WebAssembly (see onFallback).
   */
  kernels?: 'wasm' | 'reference' | 'webgpu' | 'auto';
  /** With kernels 'auto': hears why WebGPU did not start when WebAssembly is used instead. */
  onFallback?: (reason: string) => void;
  /** Opt-in, lossy: big matrices as int8 rows, activations rounded to int16 (about 2× fewer bytes per token). */
  int8?: boolean;
  /**
   * Quantized weights times exact f32 activations. Default false: activations are quantized per block first,
   * as ggml does — faster, and the logits of rwkv.cpp and llama.cpp on the same file.
   */
  exactActivations?: boolean;
  /**
   * LoRA adapters (`rwkv train --lora-rank` writes them) applied to the weights at load: each a file (a path
   * or URL, "FILE:SCALE" for a scale other than 1) or { file, scale }. The adapted matrices are held as f32.
   */
  lora?: readonly (string | { file: string; scale?: number })[];
  /**
   * A Tokenizer, 'bytes', or a tokenizer file for loadTokenizer (a World vocabulary or a tokenizer.json, as a
   * path, a URL, a Blob or its bytes). Default: the tokenizer a GGUF file carries (tokenizer.ggml.*); else
   * chosen by the model's vocabulary size — 256 needs no file;
   * otherwise, for a model loaded from a path, its file is looked for beside the model and in the working
   * directory (for a model from any other source there is nowhere to look, and this option is needed).
   */
  tokenizer?: TokenizerSpec;
  /** Share an existing backend (not closed by close()) instead of creating one. */
  backend?: Backend;
  /** Continuous batching of concurrent calls: most sequences and rows per pass. */
  batch?: BatcherOptions;
  /** The prefix-state cache: true (default), false, or its options. */
  prefixCache?: boolean | PrefixCacheOptions;
  /** Prompts are read in blocks ending at multiples of this many tokens (the cache's granularity). Default 64. */
  promptBlock?: number;
}

export interface RwkvGenerateOptions extends GenerateOptions {
  /** Generation ends when the text contains one of these; the stop string and what follows are not yielded. */
  stop?: readonly string[];
  /**
   * Continue this state (updated in place: it sees the prompt and every generated token). Default: a fresh
   * state, whose prompt processing may come from the prefix cache.
   */
  state?: RwkvState;
  /** Ends generation (finishReason 'aborted') at the next token. */
  signal?: AbortSignal;
  /** Use the prefix cache for this call (fresh states only). Default true. */
  cache?: boolean;
  /**
   * Only text this grammar (llama.cpp's GBNF, as text or parsed with parseGbnf) accepts is generated;
   * generation ends when the grammar is complete and nothing may follow (finishReason 'stop').
   */
  grammar?: string | Grammar;
  /** The output is JSON that validates against this JSON Schema (compiled to a grammar; see docs/grammars.md). */
  jsonSchema?: unknown;
}

/** Text released by one step of generation, and the tokens generated since the previous piece. */
export interface GenerationPiece {
  /** May be '' (e.g. an incomplete UTF-8 character, or text held back while a stop string may be starting). */
  text: string;
  tokens: GeneratedToken[];
}

/** length: max tokens reached; stop: a stop string; stop_token: a stop token id; aborted: the signal. */
export type FinishReason = 'length' | 'stop' | 'stop_token' | 'aborted';

export interface GenerationStats {
  /** Tokens of the prompt (including the start token 0 fed before an empty prompt on a fresh state). */
  promptTokens: number;
  /** Of those, taken from the prefix cache. */
  reusedTokens: number;
  generatedTokens: number;
  /** Milliseconds reading the prompt / drawing and feeding new tokens (model and sampler time only). */
  promptMs: number;
  generateMs: number;
}

export interface ScoreResult {
  ids: number[];
  /** log p(ids[i] | everything before it), natural log. */
  logProbs: number[];
  /** Sum of logProbs. */
  total: number;
  /** exp(−total / ids.length); NaN for an empty text. */
  perplexity: number;
  /** With `topLogProbs: N`: at each position, the N most likely tokens there, most likely first. */
  alternatives?: TokenLogProb[][];
}

export interface ScoreOptions {
  /** Score after this state's last logits (it advances over the text). Default: a fresh state after token 0. */
  state?: RwkvState;
  signal?: AbortSignal;
  /** Also give each position's N most likely tokens (0..20; default 0). */
  topLogProbs?: number;
}


/** Every option name of Rwkv.load, generate and score: anything else is a typo (util/options.ts). */
const LOAD_OPTIONS = ['threads', 'kernels', 'onFallback', 'int8', 'exactActivations', 'lora', 'tokenizer', 'backend', 'batch', 'prefixCache', 'promptBlock', 'name', 'headers', 'signal', 'onProgress'] as const;
const SAMPLER_OPTIONS = ['temperature', 'topP', 'topK', 'minP', 'presencePenalty', 'frequencyPenalty', 'penaltyDecay', 'exemptWhitespaceAndDigits', 'logitBias', 'bannedTokens'] as const;
const GENERATE_OPTIONS = [...SAMPLER_OPTIONS, 'maxTokens', 'seed', 'stopTokens', 'topLogProbs', 'stop', 'state', 'signal', 'cache', 'grammar', 'jsonSchema'] as const;
const SCORE_OPTIONS = ['state', 'signal', 'topLogProbs'] as const;
const EMBED_OPTIONS = ['pooling', 'normalize', 'signal'] as const;

export interface EmbedOptions {
  /** 'last' (default): the hidden row of the text's last token; 'mean': the mean of its tokens' rows. */
  pooling?: 'last' | 'mean';
  /** Scale each vector to unit L2 norm. Default true. */
  normalize?: boolean;
  signal?: AbortSignal;
}

/** Checks Rwkv.load's options before anything is read or started, so a typo fails at once. */
function checkLoadOptions(options: RwkvOptions): void {
  checkOptionNames('Rwkv.load', options, LOAD_OPTIONS);
  checkInteger('threads', options.threads, 1, 64);
  if (options.kernels !== undefined && options.kernels !== 'wasm' && options.kernels !== 'reference' && options.kernels !== 'webgpu' && options.kernels !== 'auto') {
    throw new ArgumentError(`kernels must be 'wasm', 'reference', 'webgpu' or 'auto', got ${describeValue(options.kernels)}`);
  }
  if (options.onFallback !== undefined && typeof options.onFallback !== 'function') {
    throw new ArgumentError(`onFallback must be a function, got ${describeValue(options.onFallback)}`);
  }
  checkBoolean('int8', options.int8);
  checkBoolean('exactActivations', options.exactActivations);
  if (options.lora !== undefined && !Array.isArray(options.lora)) throw new ArgumentError(`lora must be an array of adapter files, got ${describeValue(options.lora)}`);
  checkInteger('promptBlock', options.promptBlock, 1);
  if (options.batch !== undefined) {
    checkOptionNames('Rwkv.load batch', options.batch, ['maxBatch', 'maxRows']);
    checkInteger('batch.maxBatch', options.batch.maxBatch, 1);
    checkInteger('batch.maxRows', options.batch.maxRows, 1);
  }
  const cache = options.prefixCache;
  if (cache !== undefined && typeof cache !== 'boolean') {
    checkOptionNames('Rwkv.load prefixCache', cache, ['maxBytes']);
    checkInteger('prefixCache.maxBytes', cache.maxBytes, 0);
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw new ArgumentError(`onProgress must be a function, got ${describeValue(options.onProgress)}`);
  }
}

export class Rwkv {
  readonly model: RwkvModel;
  readonly tokenizer: Tokenizer;
  readonly identity: ModelIdentity;
  /** Undefined when disabled. */
  readonly cache: PrefixCache | undefined;
  readonly promptBlock: number;
  /** e.g. "wasm relaxed-simd × 2 thread(s)". */
  readonly kernels: string;
  /** Every forward pass of every call goes through it, so concurrent calls share passes. */
  readonly batcher: Batcher;
  private readonly onClose: () => Promise<void>;
  private readonly exemptWeights = new Map<number, number>();
  private undecodableIds: number[] | undefined;

  private constructor(
    model: RwkvModel,
    tokenizer: Tokenizer,
    options: RwkvOptions,
    kernels: string,
    onClose: () => Promise<void>,
  ) {
    if (tokenizer.vocabSize > model.config.nVocab) {
      throw new ArgumentError(`the tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${model.config.nVocab}`);
    }
    const block = options.promptBlock ?? 64;
    if (!Number.isInteger(block) || block < 1) throw new ArgumentError(`prompt block must be an integer ≥ 1, got ${block}`);
    this.model = model;
    this.tokenizer = tokenizer;
    this.identity = modelIdentity(model);
    this.promptBlock = block;
    this.batcher = new Batcher(model, options.batch);
    const cacheOption = options.prefixCache ?? true;
    this.cache = cacheOption === false ? undefined : new PrefixCache(cacheOption === true ? {} : cacheOption);
    this.kernels = kernels;
    this.onClose = onClose;
    // Found now, at load, rather than in the first generate (a padded vocabulary: up to O(n_vocab) work).
    this.undecodable();
    // A few draws now compile the sampler's loops over the vocabulary: a cold first draw (≈ 12 ms for 50k
    // ids, the next ≈ 5, ten times a warm one) would otherwise hold the host's thread at the first tokens.
    const warm = new TokenSampler(validateGenerateOptions({ topP: 0.5 }, model.config.nVocab).sampler, 0);
    const zeros = new Float32Array(model.config.nVocab);
    for (let i = 0; i < 3; i++) warm.next(zeros);
  }

  /**
   * Loads a model of any supported format — from a path, a URL (fetched; with HTTP Range requests when the
   * server honours them), a Blob or File, an ArrayBuffer, a Uint8Array or a ByteSource — with its tokenizer
   * and the fast kernels. `options.onProgress({ loaded, total })` hears the bytes read so far.
   */
  static async load(source: ByteSourceInput, options: RwkvOptions = {}): Promise<Rwkv> {
    checkLoadOptions(options);
    const int8 = options.int8 === true;
    const mode = int8 ? ', int8 weights and activations' : '';
    const owned = options.backend === undefined;
    const backend =
      options.backend ??
      (await createBackend({
        kind: options.kernels ?? 'wasm',
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(options.onFallback !== undefined ? { onFallback: options.onFallback } : {}),
        exactActivations: options.exactActivations === true,
      }));
    const close = owned ? () => backend.close() : async () => {};
    try {
      const lora = options.lora !== undefined ? await readLoraSpecs(options.lora) : undefined;
      const model = await loadModel(source, { ...readOptionsOf(options), backend, int8, ...(lora !== undefined ? { lora } : {}) });
      const file = await filePathOf(source);
      const tokenizer = await resolveTokenizer(model, options.tokenizer, file);
      return new Rwkv(model, tokenizer, options, `${backend.description}${mode}`, close);
    } catch (e) {
      await close();
      throw e;
    }
  }

  /**
   * Wraps a model already loaded (its kernels stay the caller's to close). Without `options.tokenizer` the
   * tokenizer is chosen by vocabulary size and its file looked for beside `model.file` and in the working
   * directory.
   */
  static async fromModel(model: RwkvModel, options: Omit<RwkvOptions, 'threads' | 'kernels' | 'onFallback' | 'int8' | 'exactActivations' | 'lora' | 'backend' | keyof ReadOptions> = {}): Promise<Rwkv> {
    const tokenizer = await resolveTokenizer(model, options.tokenizer, isPathName(model.file) ? model.file : undefined);
    return new Rwkv(model, tokenizer, options, 'as loaded by the caller', async () => {});
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  /** Stops the kernels' worker threads (when this object created them). */
  close(): Promise<void> {
    return this.onClose();
  }

  /** A fresh state: nothing seen yet. */
  createState(): RwkvState {
    return RwkvState.fresh(this.model);
  }

  encode(text: string): number[] {
    if (typeof text !== 'string') throw new ArgumentError(`encode takes a string, got ${describeValue(text)}`);
    return this.tokenizer.encode(text);
  }

  decode(ids: readonly number[]): string {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw new ArgumentError(`decode takes an array of token ids, got ${describeValue(ids)}`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.nVocab) {
        throw new ArgumentError(`decode: ${describeValue(id)} is not a token id (the vocabulary is 0..${this.config.nVocab - 1})`);
      }
    }
    return decodeText(this.tokenizer, ids);
  }

  /**
   * Feeds a prompt (text or token ids) into `state` in parallel mode, leaving its logits ready for
   * generation; a fresh state may resume from the prefix cache. Returns how many tokens were read/reused.
   */
  feed(state: RwkvState, prompt: string | readonly number[], options: { cache?: boolean; signal?: AbortSignal } = {}): Promise<{ processed: number; reused: number }> {
    checkOptionNames('feed', options, ['cache', 'signal']);
    checkPrompt('feed', prompt);
    this.checkState(state);
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : prompt;
    return prefill(this.model, state, ids, {
      block: this.promptBlock,
      forward: this.forward(options.signal),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      ...(options.cache !== false && this.cache !== undefined ? { cache: this.cache } : {}),
    });
  }

  /** Forward passes through the batcher (last-position logits). */
  forward(signal?: AbortSignal): (tokens: readonly number[], state: State) => Promise<Float32Array> {
    return (tokens, state) => this.batcher.forward(tokens, state, 'last', signal);
  }

  /**
   * Generates text after `prompt` (text or token ids; '' continues the state's last logits, or starts a
   * fresh state with token 0 as ChatRWKV does). Options are checked now; the work happens as the returned
   * Generation is iterated. `for await (const piece of rwkv.generate(...)) write(piece.text)`.
   */
  generate(prompt: string | readonly number[], options: RwkvGenerateOptions = {}): Generation {
    checkOptionNames('generate', options, GENERATE_OPTIONS);
    checkPrompt('generate', prompt);
    const resolved = validateGenerateOptions(options, this.config.nVocab);
    const stops = options.stop ?? [];
    if (!Array.isArray(stops)) throw new ArgumentError(`stop must be an array of strings, got ${describeValue(stops)}`);
    for (const s of stops) {
      // An empty stop string would match before the first character: nothing could ever be generated.
      if (typeof s !== 'string' || s === '') throw new ArgumentError(`stop strings must be non-empty strings, got ${describeValue(s)}`);
    }
    checkBoolean('cache', options.cache);
    let grammar: Grammar | undefined;
    if (options.grammar !== undefined) {
      if (typeof options.grammar === 'string') grammar = parseGbnf(options.grammar);
      else if (options.grammar !== null && typeof options.grammar === 'object' && Array.isArray((options.grammar as Grammar).rules)) grammar = options.grammar;
      else throw new ArgumentError(`grammar must be GBNF text or a parsed grammar, got ${describeValue(options.grammar)}`);
    }
    if (options.jsonSchema !== undefined) {
      if (grammar !== undefined) throw new ArgumentError('give either grammar or jsonSchema, not both');
      grammar = parseGbnf(jsonSchemaToGbnf(options.jsonSchema), 'jsonSchema');
    }
    const state = options.state ?? this.createState();
    this.checkState(state);
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : [...prompt];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.nVocab) {
        throw new ArgumentError(`prompt token ${id} is not a token id (the vocabulary is 0..${this.config.nVocab - 1})`);
      }
    }
    if (ids.length === 0 && state.logits === undefined) ids.push(0);
    // Continuing a generation (no new prompt) with its seed, or with none given: its sampler goes on where
    // it stopped, so the text equals one uninterrupted generation's.
    const resume = ids.length === 0 && state.sampler !== undefined && (options.seed === undefined || options.seed === state.sampler.seed) ? state.sampler : undefined;
    if (resume !== undefined) resolved.seed = resume.seed;
    // Ids the tokenizer has no text for (a padded vocabulary) are never generated.
    const undecodable = this.undecodable();
    const banned = resolved.sampler.bannedTokens;
    const sampler =
      undecodable.length === 0
        ? resolved.sampler
        : { ...resolved.sampler, bannedTokens: banned.length === 0 ? undecodable : [...new Set([...banned, ...undecodable])] };
    const constraint = grammar !== undefined ? new GrammarConstraint(grammar, this.tokenizer, this.config.nVocab, resolved.stopTokens) : undefined;
    return new Generation(this, state, ids, { ...resolved, sampler }, stops, { ...options, resume, constraint });
  }

  /**
   * The log-likelihood of each token of `text` given the ones before it (in parallel mode). From a fresh
   * state the first token is scored after token 0, as ChatRWKV's evaluation does; with `state`, after its
   * last logits (and the state advances over the text).
   */
  async score(text: string | readonly number[], options: ScoreOptions = {}): Promise<ScoreResult> {
    checkOptionNames('score', options, SCORE_OPTIONS);
    checkPrompt('score', text);
    checkInteger('topLogProbs', options.topLogProbs, 0, 20);
    const top = options.topLogProbs ?? 0;
    const ids = typeof text === 'string' ? this.tokenizer.encode(text) : [...text];
    const ctx = options.state ?? this.createState();
    this.checkState(ctx);
    if (ids.length === 0) return { ids, logProbs: [], total: 0, perplexity: NaN, ...(top > 0 ? { alternatives: [] } : {}) };
    if (ctx.logits === undefined) await this.feed(ctx, [0], options.signal !== undefined ? { signal: options.signal } : {});
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.nVocab) {
        throw new ArgumentError(`token ${id} is not a token id (the vocabulary is 0..${this.config.nVocab - 1})`);
      }
    }
    const logProbs: number[] = [];
    const alternatives: TokenLogProb[][] | undefined = top > 0 ? [] : undefined;
    let pos = 0;
    const block = this.promptBlock;
    while (pos < ids.length) {
      const end = Math.min(ids.length, pos + block - (ctx.tokenCount % block));
      const part = ids.slice(pos, end);
      if (options.signal?.aborted === true) throw new AbortError('scoring aborted');
      // The part's first token after the logits before it; each next one in the pass, from its row (a
      // row of the 20B vocabulary is ≈ 0.5 ms of exp; the pass gives the host its turns between rows).
      await pace();
      const base = logProbs.length;
      logProbs.push(logSoftmaxAt(ctx.logits!, part[0]!));
      alternatives?.push(topLogProbs(ctx.logits!, top));
      let last: Float32Array | undefined;
      await this.batcher.forward(
        part,
        ctx.state,
        (p, row) => {
          if (p + 1 < part.length) {
            logProbs[base + p + 1] = logSoftmaxAt(row, part[p + 1]!);
            if (alternatives !== undefined) alternatives[base + p + 1] = topLogProbs(row, top);
          } else last = row.slice();
        },
        options.signal,
      );
      ctx.advance(part.length, last!);
      pos = end;
    }
    const total = logProbs.reduce((a, b) => a + b, 0);
    return { ids, logProbs, total, perplexity: Math.exp(-total / ids.length), ...(alternatives !== undefined ? { alternatives } : {}) };
  }

  /**
   * One vector per text: the model's final hidden state after ln_out (the vector the head multiplies,
   * n_embd wide). Each text is read from a fresh state that first sees token 0, as `score` does (the
   * start token's row itself is not pooled; an empty text gives the row after token 0). 'last' pooling
   * (default) takes the last token's row, 'mean' the mean over the text's tokens; `normalize` (default
   * true) scales each vector to unit L2 norm. Texts run concurrently, so they share passes.
   */
  async embed(texts: string | readonly (string | readonly number[])[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    checkOptionNames('embed', options, EMBED_OPTIONS);
    const list = typeof texts === 'string' ? [texts] : texts;
    if (!Array.isArray(list)) throw new ArgumentError(`embed takes a string or an array of strings (or of token-id arrays), got ${describeValue(texts)}`);
    const encoded = list.map((t: unknown) => {
      if (typeof t === 'string') return this.tokenizer.encode(t);
      if (!Array.isArray(t)) throw new ArgumentError(`embed takes strings or arrays of token ids, got ${describeValue(t)}`);
      for (const id of t as unknown[]) {
        if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= this.config.nVocab) {
          throw new ArgumentError(`embed: ${describeValue(id)} is not a token id (the vocabulary is 0..${this.config.nVocab - 1})`);
        }
      }
      return t as number[];
    });
    const pooling = options.pooling ?? 'last';
    if (pooling !== 'last' && pooling !== 'mean') throw new ArgumentError(`pooling must be 'last' or 'mean', got ${describeValue(pooling)}`);
    checkBoolean('normalize', options.normalize);
    const normalize = options.normalize !== false;
    const signal = options.signal;
    if (signal?.aborted === true) throw new AbortError('embedding aborted');
    const c = this.config.nEmbd;
    return Promise.all(
      encoded.map(async (tokens) => {
        const ids = [0, ...tokens];
        const state = this.model.createState();
        // Position 0 is the start token: pooled only when the text is empty.
        const first = ids.length === 1 ? 0 : 1;
        const sum = new Float64Array(c);
        await this.batcher.forward(
          ids,
          state,
          'none',
          signal,
          (p, row) => {
            if (p < first) return;
            if (pooling === 'mean') for (let i = 0; i < c; i++) sum[i] += row[i]!;
            else if (p === ids.length - 1) for (let i = 0; i < c; i++) sum[i] = row[i]!;
          },
        );
        if (pooling === 'mean') for (let i = 0; i < c; i++) sum[i] = sum[i]! / (ids.length - first);
        let scale = 1;
        if (normalize) {
          let sq = 0;
          for (let i = 0; i < c; i++) sq += sum[i]! * sum[i]!;
          if (sq > 0) scale = 1 / Math.sqrt(sq);
        }
        const out = new Float32Array(c);
        for (let i = 0; i < c; i++) out[i] = sum[i]! * scale;
        return out;
      }),
    );
  }

  /** The bytes of a state file for `state` (see docs/state-files.md). */
  encodeState(state: RwkvState): Uint8Array {
    this.checkState(state);
    return encodeStateFile(this.identity, state);
  }

  /** Reads state-file bytes; refuses a state of another model. */
  decodeState(bytes: Uint8Array, source = 'state'): RwkvState {
    return decodeStateFile(bytes, this.identity, this.config, source);
  }

  /** Writes `state` (with its last logits) to `file`, replacing it atomically (Node; elsewhere use encodeState). */
  async saveState(file: string, state: RwkvState): Promise<void> {
    const bytes = this.encodeState(state);
    const fs = await import('node:fs');
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      await fs.promises.writeFile(tmp, bytes);
      await fs.promises.rename(tmp, file);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw new RwkvError('FILE_NOT_FOUND', `cannot write the state (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
    }
  }

  /** Reads a state saved by saveState (Node; elsewhere use decodeState); refuses one that belongs to another model. */
  async loadState(file: string): Promise<RwkvState> {
    const fs = await import('node:fs');
    let bytes: Uint8Array;
    try {
      if ((await fs.promises.stat(file)).isDirectory()) throw new RwkvError('NOT_A_FILE', 'is a directory, not a state file', { file });
      bytes = await fs.promises.readFile(file);
    } catch (e) {
      if (e instanceof RwkvError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new RwkvError('FILE_NOT_FOUND', code === 'ENOENT' ? 'no such state file' : `cannot read the state (${code ?? String(e)})`, { file });
    }
    return this.decodeState(bytes, file);
  }

  /** What a generated token adds to its penalty count: ChatRWKV spares whitespace and digits. */
  weightOf(id: number): number {
    let w = this.exemptWeights.get(id);
    if (w === undefined) {
      w = isWhitespaceOrDigits(decodeText(this.tokenizer, [id])) ? 0 : 1;
      this.exemptWeights.set(id, w);
    }
    return w;
  }

  /** Token ids of the model that the tokenizer cannot decode (beyond its vocabulary, or gaps in it). */
  undecodable(): readonly number[] {
    if (this.undecodableIds === undefined) {
      const ids: number[] = [];
      for (let id = 0; id < this.config.nVocab; id++) {
        if (id >= this.tokenizer.vocabSize) {
          ids.push(id);
          continue;
        }
        try {
          this.tokenizer.decodeBytes([id]);
        } catch {
          ids.push(id);
        }
      }
      this.undecodableIds = ids;
    }
    return this.undecodableIds;
  }

  private checkState(state: RwkvState): void {
    if (!(state instanceof RwkvState)) throw new ArgumentError('state must be an RwkvState (from createState() or loadState())');
    const c = state.config;
    const m = this.config;
    if (c.version !== m.version || c.nLayer !== m.nLayer || c.nEmbd !== m.nEmbd || c.nHead !== m.nHead || c.nVocab !== m.nVocab) {
      throw new ArgumentError(`the state belongs to an RWKV v${c.version} model with ${c.nLayer} layers and n_embd ${c.nEmbd}, not to this one`);
    }
  }
}

/** The options of Rwkv.load that say how to read the source. */
function readOptionsOf(options: RwkvOptions): ReadOptions {
  const { name, headers, signal, onProgress } = options;
  return {
    ...(name !== undefined ? { name } : {}),
    ...(headers !== undefined ? { headers } : {}),
    ...(signal !== undefined ? { signal } : {}),
    ...(onProgress !== undefined ? { onProgress } : {}),
  };
}

/**
 * The model's tokenizer: `spec` when given; else the one its file carries (a GGUF's); else by vocabulary
 * size, its file looked for beside `file` (the model's path) and in the working directory — or, for a model
 * that did not come from a path, nowhere.
 */
async function resolveTokenizer(model: RwkvModel, spec: TokenizerSpec | undefined, file: string | undefined): Promise<Tokenizer> {
  if (spec === undefined && model.tokenizer !== undefined) return model.tokenizer;
  if (spec !== undefined || file === undefined) {
    return tokenizerForModel(
      model.config.nVocab,
      spec,
      [],
      'the model was not loaded from a path, so there is nowhere to look for it: give it with --tokenizer FILE (options.tokenizer in the library: a Tokenizer, or the file as a path, URL, Blob or bytes)',
    );
  }
  const path = await import('node:path');
  return tokenizerForModel(model.config.nVocab, undefined, [path.dirname(file), process.cwd()], 'give it with --tokenizer FILE (options.tokenizer in the library)');
}

/** A prompt is a string or an array of token ids (the ids themselves are checked against the vocabulary later). */
function checkPrompt(call: string, prompt: unknown): void {
  if (typeof prompt !== 'string' && !Array.isArray(prompt) && !ArrayBuffer.isView(prompt)) {
    throw new ArgumentError(`${call} takes a string or an array of token ids, got ${describeValue(prompt)}`);
  }
}

/** Whether a model's `file` is a path of the file system (not a URL, nor the name of a buffer or Blob). */
function isPathName(name: string): boolean {
  return !isUrlString(name) && !name.startsWith('<');
}

/**
 * One generation: an async iterator of text pieces. After it ends, `finishReason` and `stats` say how and
 * how fast; `state` holds the state after the prompt and every generated token (ready to continue).
 */
export class Generation implements AsyncIterableIterator<GenerationPiece> {
  readonly state: RwkvState;
  /** The seed used (a random one when none was given). */
  readonly seed: number;
  finishReason: FinishReason | undefined;
  readonly stats: GenerationStats = { promptTokens: 0, reusedTokens: 0, generatedTokens: 0, promptMs: 0, generateMs: 0 };
  private readonly inner: AsyncGenerator<GenerationPiece, void, undefined>;

  /** @internal Use Rwkv.generate. */
  constructor(
    rwkv: Rwkv,
    state: RwkvState,
    ids: readonly number[],
    options: ResolvedGenerateOptions,
    stops: readonly string[],
    extra: Pick<RwkvGenerateOptions, 'signal' | 'cache'> & { resume?: SamplerSnapshot | undefined; constraint?: GrammarConstraint | undefined },
  ) {
    this.state = state;
    this.seed = options.seed;
    this.inner = this.run(rwkv, ids, options, stops, extra);
  }

  next(): Promise<IteratorResult<GenerationPiece, void>> {
    return this.inner.next();
  }

  return(): Promise<IteratorResult<GenerationPiece, void>> {
    return this.inner.return(undefined);
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

  private async *run(
    rwkv: Rwkv,
    ids: readonly number[],
    options: ResolvedGenerateOptions,
    stops: readonly string[],
    extra: Pick<RwkvGenerateOptions, 'signal' | 'cache'> & { resume?: SamplerSnapshot | undefined; constraint?: GrammarConstraint | undefined },
  ): AsyncGenerator<GenerationPiece, void, undefined> {
    const ctx = this.state;
    const stats = this.stats;
    let t = performance.now();
    const fed = await rwkv.feed(ctx, ids, { cache: extra.cache !== false, ...(extra.signal !== undefined ? { signal: extra.signal } : {}) });
    stats.promptTokens = ids.length;
    stats.reusedTokens = fed.reused;
    stats.promptMs = performance.now() - t;

    const sampler = new TokenSampler(
      options.sampler,
      options.seed,
      options.sampler.exemptWhitespaceAndDigits ? (id) => rwkv.weightOf(id) : undefined,
    );
    if (extra.resume !== undefined) sampler.restore(extra.resume);
    const decoder = new StreamDecoder(rwkv.tokenizer);
    const matcher = new StopMatcher(stops);
    let tokens: GeneratedToken[] = [];
    let unfed: number | undefined;
    const forward = rwkv.forward();
    const feedPending = async (): Promise<void> => {
      if (unfed === undefined) return;
      const t0 = performance.now();
      const id = unfed;
      unfed = undefined;
      await feedToken(forward, ctx, id);
      stats.generateMs += performance.now() - t0;
    };
    this.finishReason = 'length';
    try {
      for (let n = 0; n < options.maxTokens; n++) {
        if (extra.signal?.aborted === true) {
          this.finishReason = 'aborted';
          break;
        }
        await pace(); // sampling is O(n_vocab) on this thread
        t = performance.now();
        const constraint = extra.constraint;
        if (constraint?.done === true) {
          // The grammar is complete and nothing may follow: the text is finished.
          this.finishReason = 'stop';
          break;
        }
        const step = drawStep(ctx, sampler, options.stopTokens, options.topLogProbs, constraint);
        stats.generateMs += performance.now() - t;
        if (step == null) {
          // null: the grammar allows no token here (a dead end, or complete with only end tokens banned).
          this.finishReason = step === null ? 'stop' : 'stop_token';
          break;
        }
        unfed = step.id;
        stats.generatedTokens++;
        tokens.push(step);
        const text = matcher.push(decoder.push(step.id));
        // Text goes out before the token is fed, so streaming shows it one forward pass sooner.
        if (text !== '' || matcher.matched !== undefined) {
          const piece = { text, tokens };
          tokens = [];
          yield piece;
        }
        await feedPending();
        if (matcher.matched !== undefined) {
          this.finishReason = 'stop';
          return;
        }
      }
      const tail = matcher.matched === undefined ? matcher.push(decoder.flush()) + matcher.flush() : '';
      if (tail !== '' || tokens.length > 0) yield { text: tail, tokens };
    } finally {
      // Also when the consumer stops early: the state has seen every token it was given.
      await feedPending();
      ctx.sampler = sampler.snapshot(options.seed);
      if (this.finishReason === 'length' && stats.generatedTokens < options.maxTokens && options.maxTokens > 0) {
        this.finishReason = 'aborted';
      }
    }
  }
}
