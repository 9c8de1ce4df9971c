// The module worker that runs a model for a page (the page's side is rwkv-client.ts): the library's Rwkv
// on the WebAssembly kernels — with threads over a shared memory when the page is cross-origin isolated,
// otherwise one thread over an unshared one — so the page's thread never computes.
import { AbortError, RwkvError, NonFiniteError } from '../errors.js';
import { RwkvState } from '../generation/context.js';
import { Rwkv, type RwkvGenerateOptions } from '../generation/rwkv.js';
import { createBackend } from '../kernels/create-backend.js';
import { openByteSource } from '../formats/byte-source.js';
import { fetchModelCached } from './model-cache.js';
import type { Envelope, LoadRequest, LoadResult, Response, SerializedError } from './protocol.js';

interface WorkerScope {
  addEventListener(type: 'message', listener: (event: { data: Envelope }) => void): void;
  postMessage(message: unknown, transfer?: Transferable[]): void;
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
  close(): void;
}
const scope = globalThis as unknown as WorkerScope;

let rwkv: Rwkv | undefined;
const states = new Map<number, RwkvState>();
const running = new Map<number, AbortController>();

function post(message: Response, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

function serialize(e: unknown): SerializedError {
  if (e instanceof Error) {
    return {
      name: e.name,
      message: e.message,
      code: e instanceof RwkvError ? e.code : undefined,
      position: e instanceof NonFiniteError ? e.position : undefined,
    };
  }
  return { name: 'Error', message: String(e), code: undefined, position: undefined };
}

function model(): Rwkv {
  if (rwkv === undefined) throw new RwkvError('BAD_ARGUMENT', 'no model loaded in this worker');
  return rwkv;
}

function state(id: number): RwkvState {
  const s = states.get(id);
  if (s === undefined) throw new RwkvError('BAD_STATE', `state ${id} does not exist (disposed?)`);
  return s;
}

/** Threads: every core when the page may share memory (cross-origin isolated), else one, and why. */
function threadPlan(asked: number | undefined): { threads: number; shared: boolean; reason: string } {
  const isolated = scope.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  const cores = Math.max(1, scope.navigator?.hardwareConcurrency ?? 1);
  if (!isolated) {
    const why = 'the page is not cross-origin isolated (COOP: same-origin and COEP: require-corp), so there is no SharedArrayBuffer: one thread over an unshared memory';
    return { threads: 1, shared: false, reason: asked !== undefined && asked > 1 ? `${asked} threads asked, but ${why}` : why };
  }
  if (asked !== undefined) return { threads: asked, shared: true, reason: `${asked} thread(s) as asked (cross-origin isolated)` };
  return { threads: cores, shared: true, reason: `one per core (${cores}; cross-origin isolated)` };
}

async function load(id: number, request: LoadRequest): Promise<LoadResult> {
  const plan = threadPlan(request.threads);
  const controller = new AbortController();
  running.set(id, controller);
  // A URL comes through the model cache (OPFS): a second visit reads the stored copy, once its ETag and size
  // still match the server's. Progress is the download's; reading the stored file then is fast.
  const input =
    typeof request.source === 'string' && request.cache
      ? await fetchModelCached(request.source, {
          signal: controller.signal,
          onProgress: (p) => post({ id, type: 'progress', loaded: p.loaded, total: p.total }),
          onWarning: (message) => post({ id, type: 'warning', message }),
        })
      : request.source;
  // The unshared memory cannot grow: size it from the file (weights, plus room for work buffers).
  const source = await openByteSource(input, {
    signal: controller.signal,
    ...(input !== request.source && typeof request.source === 'string' ? { name: request.source } : {}),
  });
  const memoryBytes = request.memoryBytes ?? Math.min(4 * 2 ** 30 - 2 ** 16, Math.ceil(source.size * 1.25) + 256 * 2 ** 20);
  let fallbackReason: string | undefined;
  const backend = await createBackend({
    kind: request.kernels ?? 'wasm',
    onFallback: (reason) => (fallbackReason = reason),
    threads: plan.threads,
    ...(request.kernels === 'reference' ? {} : { shared: plan.shared, ...(plan.shared ? {} : { memoryBytes }) }),
  });
  try {
    rwkv = await Rwkv.load(source, {
      backend,
      signal: controller.signal,
      ...(input === request.source ? { onProgress: (p: { loaded: number; total: number }) => post({ id, type: 'progress', loaded: p.loaded, total: p.total }) } : {}),
      ...(request.tokenizer !== undefined ? { tokenizer: request.tokenizer } : {}),
      ...(request.maxBatch !== undefined ? { batch: { maxBatch: request.maxBatch } } : {}),
    });
  } catch (e) {
    await backend.close();
    throw e;
  } finally {
    running.delete(id);
  }
  const owned = rwkv;
  const close = owned.close.bind(owned);
  // The worker made the backend, so closing the model must stop its threads too.
  owned.close = async () => {
    await close();
    await backend.close();
  };
  return {
    config: owned.config,
    kernels: request.kernels === 'reference' ? 'reference (plain TypeScript)' : `${backend.description ?? 'wasm'}`,
    fallbackReason,
    // On WebGPU the worker's one thread only records and submits; the plan is the WebAssembly kernels'.
    threads: backend.kind === 'webgpu' ? 1 : plan.threads,
    threadsReason: backend.kind === 'webgpu' ? 'WebGPU: the GPU computes, one thread drives it' : plan.reason,
    crossOriginIsolated: scope.crossOriginIsolated === true,
    tokenizer: owned.tokenizer.name,
  };
}

async function handle(message: Envelope): Promise<unknown> {
  const { id } = message;
  switch (message.type) {
    case 'load':
      return load(id, message);
    case 'encode':
      return model().encode(message.text);
    case 'decode':
      return model().decode(message.ids);
    case 'generate': {
      const controller = new AbortController();
      running.set(id, controller);
      try {
        const { logitBias, ...rest } = message.options;
        const options: RwkvGenerateOptions = {
          ...rest,
          ...(logitBias !== undefined ? { logitBias: new Map(logitBias) } : {}),
          ...(message.state !== undefined ? { state: state(message.state) } : {}),
          signal: controller.signal,
        };
        const generation = model().generate(message.prompt, options);
        for await (const piece of generation) post({ id, type: 'piece', piece });
        return { finishReason: generation.finishReason, stats: generation.stats, seed: generation.seed, tokenCount: generation.state.tokenCount };
      } finally {
        running.delete(id);
      }
    }
    case 'score': {
      const controller = new AbortController();
      running.set(id, controller);
      try {
        return await model().score(message.text, {
          signal: controller.signal,
          ...(message.state !== undefined ? { state: state(message.state) } : {}),
          ...(message.topLogProbs !== undefined ? { topLogProbs: message.topLogProbs } : {}),
        });
      } finally {
        running.delete(id);
      }
    }
    case 'feed': {
      const controller = new AbortController();
      running.set(id, controller);
      try {
        await model().feed(state(message.state), message.prompt, { signal: controller.signal });
        return state(message.state).tokenCount;
      } finally {
        running.delete(id);
      }
    }
    case 'embed':
      return model().embed(message.texts, {
        ...(message.pooling !== undefined ? { pooling: message.pooling } : {}),
        ...(message.normalize !== undefined ? { normalize: message.normalize } : {}),
      });
    case 'state.create':
      states.set(message.state, model().createState());
      return 0;
    case 'state.clone':
      states.set(message.state, state(message.from).clone());
      return state(message.state).tokenCount;
    case 'state.encode':
      return model().encodeState(state(message.state));
    case 'state.logits':
      return state(message.state).logits?.slice() ?? null;
    case 'state.decode': {
      const decoded = model().decodeState(message.bytes, 'the state file');
      states.set(message.state, decoded);
      return decoded.tokenCount;
    }
    case 'state.dispose':
      states.delete(message.state);
      return true;
    case 'abort':
      running.get(message.target)?.abort();
      return true;
    case 'close':
      await rwkv?.close();
      rwkv = undefined;
      states.clear();
      return true;
  }
}

scope.addEventListener('message', (event) => {
  const message = event.data;
  handle(message).then(
    (value) => {
      // Bytes go back without a copy.
      const transfer = value instanceof Uint8Array || value instanceof Float32Array ? [value.buffer as ArrayBuffer] : [];
      post({ id: message.id, type: 'result', value }, transfer);
      if (message.type === 'close') scope.close();
    },
    (e: unknown) => post({ id: message.id, type: 'error', error: serialize(e instanceof DOMException && e.name === 'AbortError' ? new AbortError(e.message) : e) }),
  );
});
