// The browser's model cache: a model downloaded once is kept in the Origin Private File System (or, where
// a page has no OPFS, the Cache API) and handed back as a Blob that the library's loaders read from.
//
// An entry is keyed by its URL and remembers the server's ETag and the byte count; a later call asks the
// server with one HEAD request whether the file is still the same, and uses the cached copy when the ETag
// and the size match (or when the server cannot be reached). Nothing that is not a whole, good download
// is ever stored: an error status, an HTML page (a single-page app's index.html for a missing file) or a
// body shorter than its Content-Length is refused with an error naming the URL. In OPFS the bytes are
// written first and the entry's metadata last, so a download broken off at any point leaves no entry
// that looks complete. When the origin's storage quota is exhausted, the model is kept in memory instead,
// with a warning.
//
// Browser-only: no node: module, no package; works in a page and in a worker (secure contexts only, as
// OPFS and the Cache API are; elsewhere it downloads into memory).
import { AbortError, ArgumentError, FormatError, RwkvError } from '../errors.js';
import { displayUrl } from '../formats/byte-source.js';

/** One cached model, as listCachedModels() reports it. */
export interface CachedModelInfo {
  /** The absolute URL it was downloaded from (the key). */
  url: string;
  bytes: number;
  /** The server's ETag when it was downloaded (undefined when the server sent none). */
  etag: string | undefined;
  /** When it was stored (ms since the epoch). */
  storedAt: number;
  storage: 'opfs' | 'cache';
}

/** How far a download has got: bytes so far, of the Content-Length (undefined when the server sent none). */
export interface ModelDownloadProgress {
  loaded: number;
  total: number | undefined;
}

export interface FetchModelCachedOptions {
  /** Stops the download (an AbortError); nothing is stored. */
  signal?: AbortSignal;
  /** Extra request headers (e.g. an Authorization header for a gated model). */
  headers?: Readonly<Record<string, string>>;
  /** Called as bytes arrive; once with loaded = total when the cached copy is used. */
  onProgress?: (progress: ModelDownloadProgress) => void;
  /** Called instead of console.warn: quota exhausted (kept in memory), server unreachable (cached copy used). */
  onWarning?: (message: string) => void;
  /** false: neither read nor write the cache, download into memory (default true). */
  cache?: boolean;
}

/** The OPFS directory and the Cache API cache that hold the models. */
const STORE_NAME = 'rwkv-models';

/**
 * The model at `url` (absolute, or relative to the page) as a Blob: the cached copy when the server still
 * has the same file, else a fresh download, stored for next time. The Blob is an OPFS File (named by a
 * hash, not the URL: pass `{ name: url }` to the loader for its error messages), a Cache API body, or
 * in memory. Errors are RwkvErrors naming the URL: FILE_NOT_FOUND for an error status, an HTML page or a
 * network failure; TRUNCATED for a body shorter than its Content-Length; ABORTED.
 */
export async function fetchModelCached(url: string | URL, options: FetchModelCachedOptions = {}): Promise<Blob> {
  const target = resolveUrl(url);
  const name = displayUrl(target);
  throwIfAborted(options.signal);
  if (options.cache === false) return downloadToMemory(target, name, options);
  return withLock(name, options.signal, () => fetchThroughCache(target, name, options));
}

/** Every cached model, in OPFS and in the Cache API. */
export async function listCachedModels(): Promise<CachedModelInfo[]> {
  const found: CachedModelInfo[] = [];
  for (const store of await openStores()) found.push(...(await store.list()));
  return found.sort((a, b) => (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
}

/** Removes the cached copy of `url` (absolute, or relative to the page); false when there was none. */
export async function deleteCachedModel(url: string | URL): Promise<boolean> {
  const name = displayUrl(resolveUrl(url));
  return withLock(name, undefined, async () => {
    let deleted = false;
    for (const store of await openStores()) if (await store.delete(name)) deleted = true;
    return deleted;
  });
}

// ---------------------------------------------------------------------------------------------------

async function fetchThroughCache(url: URL, name: string, options: FetchModelCachedOptions): Promise<Blob> {
  const warn = options.onWarning ?? ((m: string) => console.warn(m));
  const store = (await openOpfs(true)) ?? (await openCacheApi(true));
  if (store === undefined) return downloadToMemory(url, name, options);
  const cached = await store.get(name).catch(() => undefined);
  let ifNoneMatch: string | undefined;
  if (cached !== undefined) {
    const verdict = await revalidate(url, name, cached.info, options);
    if (verdict === 'fresh' || verdict === 'unreachable') {
      if (verdict === 'unreachable') warn(`${name}: the server cannot be reached; using the cached copy from ${new Date(cached.info.storedAt).toISOString()}`);
      options.onProgress?.({ loaded: cached.blob.size, total: cached.blob.size });
      return cached.blob;
    }
    // HEAD not allowed: let the download itself ask whether the file changed.
    if (verdict === 'ask') ifNoneMatch = cached.info.etag;
  }
  const res = await get(url, name, options, ifNoneMatch);
  if (res.status === 304 && cached !== undefined) {
    options.onProgress?.({ loaded: cached.blob.size, total: cached.blob.size });
    return cached.blob;
  }
  // The server's file changed (or was never cached): the old copy goes before the new one is written.
  if (cached !== undefined) await store.delete(name);
  const total = contentLength(res);
  const etag = res.headers.get('etag') ?? undefined;
  if (total !== undefined && !(await hasRoomFor(total))) {
    warn(`${name}: not enough storage quota for ${total} bytes; the model is kept in memory and will be downloaded again next time`);
    return readAll(countedBody(res, name, options).stream);
  }
  const body = countedBody(res, name, options);
  try {
    return (await store.put(name, etag, body.stream)).blob;
  } catch (e) {
    // The download's own failure (status, truncation, abort) is the error; a storage failure is not:
    // the model is still usable from memory.
    const failure = body.failure();
    if (failure !== undefined) throw failure;
    if (isAbort(e, options.signal)) throw new AbortError('loading aborted');
    await store.delete(name).catch(() => false);
    const why = isQuotaError(e) ? 'the storage quota ran out while the model was being stored' : `the model cannot be stored (${describe(e)})`;
    warn(`${name}: ${why}; downloading it again into memory (it will be downloaded again next time)`);
    return downloadToMemory(url, name, options);
  }
}

/**
 * Whether the cached copy is still the server's file: 'fresh' when the server's ETag and size match,
 * 'stale' when they do not, 'unreachable' (use the copy, with a warning) when the network fails or the
 * server has a 5xx error, 'ask' when the server does not allow HEAD. A 4xx status or an HTML page means
 * the file is gone: that is an error, not a reason to use an old copy silently.
 */
async function revalidate(url: URL, name: string, info: CachedModelInfo, options: FetchModelCachedOptions): Promise<'fresh' | 'stale' | 'unreachable' | 'ask'> {
  let res: Response;
  try {
    res = await fetch(url, requestInit('HEAD', options));
  } catch (e) {
    if (isAbort(e, options.signal)) throw new AbortError('loading aborted');
    return 'unreachable';
  }
  if (res.status === 405 || res.status === 501) return 'ask';
  if (res.status >= 500) return 'unreachable';
  checkResponse(res, name);
  const etag = res.headers.get('etag') ?? undefined;
  const size = contentLength(res);
  if (etag === undefined && size === undefined) return 'stale';
  return etag === info.etag && (size === undefined || size === info.bytes) ? 'fresh' : 'stale';
}

/** A GET whose status and content type have been checked (a 304 only when `ifNoneMatch` was sent). */
async function get(url: URL, name: string, options: FetchModelCachedOptions, ifNoneMatch?: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, requestInit('GET', options, ifNoneMatch !== undefined ? { 'If-None-Match': ifNoneMatch } : {}));
  } catch (e) {
    if (isAbort(e, options.signal)) throw new AbortError('loading aborted');
    throw new RwkvError('FILE_NOT_FOUND', `cannot fetch (${describe(e)})`, { file: name });
  }
  if (res.status === 304 && ifNoneMatch !== undefined) return res;
  try {
    checkResponse(res, name);
  } catch (e) {
    await res.body?.cancel().catch(() => {});
    throw e;
  }
  return res;
}

function requestInit(method: 'GET' | 'HEAD', options: FetchModelCachedOptions, extra: Record<string, string> = {}): RequestInit {
  // no-store: the model is cached here, not a second time in the browser's HTTP cache, and every
  // revalidation reaches the server.
  const init: RequestInit = { method, cache: 'no-store', headers: { ...(options.headers ?? {}), ...extra } };
  if (options.signal !== undefined) init.signal = options.signal;
  return init;
}

/** Refuses an error status and an HTML page (what a single-page app's server sends for a missing file). */
function checkResponse(res: Response, name: string): void {
  if (!res.ok) {
    const text = res.statusText !== '' ? ` ${res.statusText}` : '';
    const what = res.status === 404 || res.status === 410 ? 'no such file on the server' : 'the server refused the request';
    throw new RwkvError('FILE_NOT_FOUND', `${what} (HTTP ${res.status}${text})`, { file: name });
  }
  const type = res.headers.get('content-type') ?? '';
  if (/^\s*(?:text\/html|application\/xhtml\+xml)\s*(?:;|$)/i.test(type)) {
    throw new RwkvError('FILE_NOT_FOUND', `the server sent an HTML page (Content-Type ${type}), not a model file: is the URL right?`, { file: name });
  }
}

/** The body's length, when the server declared it and the body is not compressed (then it is the compressed length). */
function contentLength(res: Response): number | undefined {
  const encoding = res.headers.get('content-encoding');
  if (encoding !== null && encoding.toLowerCase() !== 'identity') return undefined;
  const v = res.headers.get('content-length');
  return v !== null && /^\d+$/.test(v.trim()) ? Number(v) : undefined;
}

/**
 * The response's body, passed through with progress reports, ending in an error (a RwkvError naming the
 * URL, also kept for failure()) when it breaks off before its Content-Length or runs past it. failure()
 * lets a caller whose sink reports only its own error (Cache.put) throw the real one.
 */
function countedBody(res: Response, name: string, options: FetchModelCachedOptions): { stream: ReadableStream<Uint8Array>; failure: () => RwkvError | undefined } {
  const total = contentLength(res);
  let loaded = 0;
  let failure: RwkvError | undefined;
  const fail = (controller: ReadableStreamDefaultController<Uint8Array>, e: RwkvError): void => {
    failure = e;
    controller.error(e);
  };
  const reader = res.body?.getReader();
  const stream = new ReadableStream<Uint8Array>({
    start() {
      options.onProgress?.({ loaded: 0, total });
    },
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array> = { done: true, value: undefined };
      try {
        if (reader !== undefined) chunk = await reader.read();
      } catch (e) {
        if (isAbort(e, options.signal)) fail(controller, new AbortError('loading aborted'));
        else fail(controller, new FormatError('TRUNCATED', `the download broke off after ${loaded}${total !== undefined ? ` of its ${total}` : ''} bytes (${describe(e)})`, { file: name }));
        return;
      }
      if (chunk.done) {
        if (total !== undefined && loaded !== total) fail(controller, new FormatError('TRUNCATED', `the download ended after ${loaded} of its ${total} bytes`, { file: name }));
        else controller.close();
        return;
      }
      loaded += chunk.value.byteLength;
      if (total !== undefined && loaded > total) {
        await reader?.cancel().catch(() => {});
        fail(controller, new FormatError('BAD_HEADER', `the server sent more than its Content-Length of ${total} bytes`, { file: name }));
        return;
      }
      controller.enqueue(chunk.value);
      options.onProgress?.({ loaded, total });
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
  return { stream, failure: () => failure };
}

async function downloadToMemory(url: URL, name: string, options: FetchModelCachedOptions): Promise<Blob> {
  return readAll(countedBody(await get(url, name, options), name, options).stream);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Blob> {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    // A copy when the chunk's buffer is shared (Blob parts must be plain ArrayBuffers).
    chunks.push(value.buffer instanceof ArrayBuffer ? (value as Uint8Array<ArrayBuffer>) : new Uint8Array(value));
  }
  return new Blob(chunks);
}

// ---------------------------------------------------------------------------------------------------
// The two stores. Each put() streams a body in and stores nothing unless the body completes.

interface Entry {
  info: CachedModelInfo;
  blob: Blob;
}

interface Store {
  get(url: string): Promise<Entry | undefined>;
  put(url: string, etag: string | undefined, body: ReadableStream<Uint8Array>): Promise<Entry>;
  delete(url: string): Promise<boolean>;
  list(): Promise<CachedModelInfo[]>;
}

/** The stores that already hold something (for listing and deleting: creates nothing). */
async function openStores(): Promise<Store[]> {
  const stores: Store[] = [];
  const opfs = await openOpfs(false);
  if (opfs !== undefined) stores.push(opfs);
  const cache = await openCacheApi(false);
  if (cache !== undefined) stores.push(cache);
  return stores;
}

/** What an OPFS entry's `<key>.json` holds; written after the bytes, it is what makes the entry count. */
interface OpfsMeta {
  url: string;
  bytes: number;
  etag: string | null;
  storedAt: number;
}

async function openOpfs(create: boolean): Promise<Store | undefined> {
  const storage = globalThis.navigator?.storage;
  if (typeof storage?.getDirectory !== 'function') return undefined;
  // A page's main thread writes OPFS files with createWritable (older Safari has it only in workers' sync handles).
  if (typeof FileSystemFileHandle === 'undefined' || typeof FileSystemFileHandle.prototype.createWritable !== 'function') return undefined;
  let dir: FileSystemDirectoryHandle;
  try {
    dir = await (await storage.getDirectory()).getDirectoryHandle(STORE_NAME, { create });
  } catch {
    // Not there yet (create false), or a private window that refuses OPFS.
    return undefined;
  }
  const readMeta = async (key: string): Promise<OpfsMeta | undefined> => {
    try {
      const parsed: unknown = JSON.parse(await (await (await dir.getFileHandle(`${key}.json`)).getFile()).text());
      const m = parsed as Partial<OpfsMeta>;
      if (typeof m.url !== 'string' || typeof m.bytes !== 'number' || typeof m.storedAt !== 'number') return undefined;
      return { url: m.url, bytes: m.bytes, etag: typeof m.etag === 'string' ? m.etag : null, storedAt: m.storedAt };
    } catch {
      return undefined;
    }
  };
  const entryOf = async (key: string, url: string | undefined): Promise<Entry | undefined> => {
    const meta = await readMeta(key);
    if (meta === undefined || (url !== undefined && meta.url !== url)) return undefined;
    let file: File;
    try {
      file = await (await dir.getFileHandle(`${key}.bin`)).getFile();
    } catch {
      return undefined;
    }
    if (file.size !== meta.bytes) return undefined;
    return { info: { url: meta.url, bytes: meta.bytes, etag: meta.etag ?? undefined, storedAt: meta.storedAt, storage: 'opfs' }, blob: file };
  };
  const remove = async (name: string): Promise<boolean> => {
    try {
      await dir.removeEntry(name);
      return true;
    } catch {
      return false;
    }
  };
  return {
    get: async (url) => entryOf(await keyOf(url), url),
    async put(url, etag, body) {
      const key = await keyOf(url);
      // The old entry stops counting before its bytes are overwritten.
      await remove(`${key}.json`);
      const handle = await dir.getFileHandle(`${key}.bin`, { create: true });
      try {
        // pipeTo aborts the writable (its data is discarded) when the body fails, and cancels the body when a write fails.
        await body.pipeTo(await handle.createWritable());
        const file = await handle.getFile();
        const meta: OpfsMeta = { url, bytes: file.size, etag: etag ?? null, storedAt: Date.now() };
        const writable = await (await dir.getFileHandle(`${key}.json`, { create: true })).createWritable();
        await writable.write(JSON.stringify(meta));
        await writable.close();
        return { info: { url, bytes: meta.bytes, etag, storedAt: meta.storedAt, storage: 'opfs' }, blob: file };
      } catch (e) {
        await remove(`${key}.json`);
        await remove(`${key}.bin`);
        throw e;
      }
    },
    async delete(url) {
      const key = await keyOf(url);
      const hadMeta = await remove(`${key}.json`);
      const hadBytes = await remove(`${key}.bin`);
      return hadMeta || hadBytes;
    },
    async list() {
      const infos: CachedModelInfo[] = [];
      for await (const name of directoryNames(dir)) {
        if (!name.endsWith('.json')) continue;
        const entry = await entryOf(name.slice(0, -'.json'.length), undefined);
        if (entry !== undefined) infos.push(entry.info);
      }
      return infos;
    },
  };
}

/** A directory's entry names. (Its async iterator is typed in lib DOM.AsyncIterable, which this build leaves out.) */
function directoryNames(dir: FileSystemDirectoryHandle): AsyncIterable<string> {
  return (dir as unknown as { keys(): AsyncIterable<string> }).keys();
}

const ETAG_HEADER = 'x-rwkv-etag';
const STORED_AT_HEADER = 'x-rwkv-stored-at';

async function openCacheApi(create: boolean): Promise<Store | undefined> {
  if (typeof caches === 'undefined') return undefined;
  let cache: Cache;
  try {
    if (!create && !(await caches.has(STORE_NAME))) return undefined;
    cache = await caches.open(STORE_NAME);
  } catch {
    return undefined;
  }
  const entryOf = async (res: Response, url: string): Promise<Entry> => {
    const blob = await res.blob();
    const storedAt = Number(res.headers.get(STORED_AT_HEADER) ?? '0');
    return { info: { url, bytes: blob.size, etag: res.headers.get(ETAG_HEADER) ?? undefined, storedAt, storage: 'cache' }, blob };
  };
  return {
    async get(url) {
      const res = await cache.match(url);
      return res === undefined ? undefined : entryOf(res, url);
    },
    async put(url, etag, body) {
      await cache.delete(url);
      const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', [STORED_AT_HEADER]: String(Date.now()) };
      if (etag !== undefined) headers[ETAG_HEADER] = etag;
      // put() stores nothing when the body fails.
      await cache.put(url, new Response(body, { headers }));
      const res = await cache.match(url);
      if (res === undefined) throw new RwkvError('FILE_NOT_FOUND', 'the Cache API lost the download it had just stored', { file: url });
      return entryOf(res, url);
    },
    delete: (url) => cache.delete(url),
    async list() {
      const infos: CachedModelInfo[] = [];
      for (const req of await cache.keys()) {
        const res = await cache.match(req);
        if (res !== undefined) infos.push((await entryOf(res, req.url)).info);
      }
      return infos;
    },
  };
}

// ---------------------------------------------------------------------------------------------------

/** One download or deletion of a URL at a time, across the origin's tabs and workers (Web Locks, where there are). */
async function withLock<T>(name: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  const locks = globalThis.navigator?.locks;
  if (locks === undefined) return fn();
  try {
    return await locks.request(`rwkv-model-cache ${name}`, signal !== undefined ? { signal } : {}, fn);
  } catch (e) {
    if (isAbort(e, signal) && !(e instanceof RwkvError)) throw new AbortError('loading aborted');
    throw e;
  }
}

/** The file names of a URL: the hex of its SHA-256 (URLs can be long and hold any character). */
async function keyOf(url: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url)));
  return Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function hasRoomFor(bytes: number): Promise<boolean> {
  try {
    const { quota, usage } = await navigator.storage.estimate();
    return quota === undefined || usage === undefined || quota - usage >= bytes;
  } catch {
    return true;
  }
}

function resolveUrl(url: string | URL): URL {
  if (url instanceof URL) return url;
  try {
    return new URL(url, globalThis.location?.href);
  } catch {
    throw new ArgumentError(`cannot download the model from '${url}': not a URL (and no page to resolve it against)`);
  }
}

function isQuotaError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'QuotaExceededError';
}

function isAbort(e: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError');
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortError('loading aborted');
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
