// Where a checkpoint's bytes come from. Every format reader reads through one random-access interface,
// ByteSource, so that a model loads the same way from a file (Node), memory (an ArrayBuffer or a
// Uint8Array, read through zero-copy views), a Blob or File (blob.slice()), or a URL (fetch, with HTTP
// Range requests when the server honours them, else the whole body once). Nothing here imports a node:
// module statically: the file source imports node:fs when a path is opened.
import { AbortError, ArgumentError, FormatError, RwkvError } from '../errors.js';

/** Random-access bytes: a file, a buffer, a Blob, a URL. */
export interface ByteSource {
  /** What errors name: the path, the URL, the File's name, or e.g. `<Uint8Array, 1024 bytes>`. */
  readonly name: string;
  /** Total bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes from `position` (position + length ≤ size, or a RangeError). With `into`
   * (at least `length` bytes long) they are written to its start and a view of them is returned;
   * without it the result may be a view of the source's own memory, which must not be modified.
   */
  read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Releases the file handle (a no-op for the other sources). */
  close(): Promise<void>;
}

/** Everything a model (or a tokenizer) can be loaded from. */
export type ByteSourceInput = string | URL | Blob | ArrayBuffer | SharedArrayBuffer | ArrayBufferView | ByteSource;

/** How far loading has got: bytes of the source read so far, of `total`. */
export interface LoadProgress {
  readonly loaded: number;
  readonly total: number;
}

export interface ByteSourceOptions {
  /** What errors call an in-memory source or a Blob (default `<Uint8Array, N bytes>`, a File's name). */
  name?: string;
  /** Extra HTTP request headers for a URL (e.g. an Authorization header). */
  headers?: Readonly<Record<string, string>>;
  /** Stops a download or a load in progress (an AbortError). */
  signal?: AbortSignal;
  /** Called as a URL without Range support is downloaded (bytes so far, of the Content-Length). */
  onDownload?: (loaded: number, total: number | undefined) => void;
}

/** Whether `x` is a ByteSource (an object with size, read and close), rather than one of the other inputs. */
export function isByteSource(x: unknown): x is ByteSource {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Partial<ByteSource>;
  return typeof s.size === 'number' && typeof s.read === 'function' && typeof s.close === 'function';
}

/** A string is a file path, unless it starts with http:// or https://, which is fetched. */
export function isUrlString(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return p?.versions?.node !== undefined;
}

/**
 * The file-system path of a path string or a file: URL (undefined for every other input). Outside Node
 * there is no file system: a string is a URL there, relative to the page.
 */
export async function filePathOf(input: unknown): Promise<string | undefined> {
  if (typeof input === 'string' && !isUrlString(input)) return isNode() ? input : undefined;
  if (input instanceof URL && input.protocol === 'file:') {
    const { fileURLToPath } = await import('node:url');
    return fileURLToPath(input);
  }
  return undefined;
}

/** A short description of any value for an error message (never the contents of a buffer). */
export function describeInput(x: unknown): string {
  if (x === null) return 'null';
  if (typeof x !== 'object') return typeof x === 'string' ? `the string '${x.length > 80 ? `${x.slice(0, 80)}…` : x}'` : typeof x;
  const ctor = (x as { constructor?: { name?: unknown } }).constructor?.name;
  return `an object (${typeof ctor === 'string' && ctor !== '' ? ctor : 'no constructor'})`;
}

/**
 * Opens any input as a ByteSource. A path (a string, or a file: URL) is opened with node:fs; an http(s)
 * URL (or a string starting with http:// or https://; in a browser, any string, relative to the page) is
 * fetched; a Blob, an ArrayBuffer or a Uint8Array (any ArrayBufferView) is read in place; a ByteSource is
 * returned as it is (and stays the caller's to close). Refuses anything else with an ArgumentError that
 * describes it without printing it.
 */
export async function openByteSource(input: ByteSourceInput, options: ByteSourceOptions = {}): Promise<ByteSource> {
  if (options.signal?.aborted === true) throw new AbortError('loading aborted');
  const path = await filePathOf(input);
  if (path !== undefined) return openFileSource(path);
  if (typeof input === 'string') {
    if (isUrlString(input)) return openHttpSource(new URL(input), options);
    // Not Node: a path is a URL relative to the page, when there is one.
    const base = (globalThis as { location?: { href?: string } }).location?.href;
    if (base === undefined) throw new RwkvError('FILE_NOT_FOUND', 'a file path can only be read on Node.js; give a URL, a Blob or File, or the bytes', { file: input });
    return openHttpSource(new URL(input, base), options);
  }
  if (input instanceof URL) {
    if (input.protocol !== 'http:' && input.protocol !== 'https:') {
      throw new ArgumentError(`cannot load from the URL ${displayUrl(input)}: only http:, https: and file: URLs are supported`);
    }
    return openHttpSource(input, options);
  }
  if (typeof Blob !== 'undefined' && input instanceof Blob) return new BlobSource(input, options.name);
  if (input instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && input instanceof SharedArrayBuffer)) {
    return new MemorySource(new Uint8Array(input), options.name ?? `<${input.constructor.name}, ${input.byteLength} bytes>`);
  }
  if (ArrayBuffer.isView(input)) {
    const bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    return new MemorySource(bytes, options.name ?? `<${input.constructor.name}, ${input.byteLength} bytes>`);
  }
  if (isByteSource(input)) return input;
  throw new ArgumentError(
    `cannot load from ${describeInput(input)}: give a file path, a URL, a Blob or File, an ArrayBuffer, a Uint8Array or a ByteSource`,
  );
}

/** Checks a read against a source's size (a caller's bug, not the file's: the readers check sizes first). */
export function checkRange(source: { name: string; size: number }, position: number, length: number): void {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0 || position + length > source.size) {
    throw new RangeError(`${source.name}: cannot read ${length} bytes at ${position} of ${source.size}`);
  }
}

/** An ArrayBuffer or Uint8Array in memory: reads are views of it (no copy) unless `into` is given. */
export class MemorySource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array, name: string) {
    this.bytes = bytes;
    this.name = name;
    this.size = bytes.byteLength;
  }

  async read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, position, length);
    const view = this.bytes.subarray(position, position + length);
    if (into === undefined) return view;
    into.set(view);
    return into.subarray(0, length);
  }

  async close(): Promise<void> {}
}

/** A Blob or File: each read is one blob.slice(…).arrayBuffer(). */
export class BlobSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private readonly blob: Blob;

  constructor(blob: Blob, name?: string) {
    this.blob = blob;
    this.size = blob.size;
    const fileName = (blob as { name?: unknown }).name;
    this.name = name ?? (typeof fileName === 'string' && fileName !== '' ? fileName : `<Blob, ${blob.size} bytes>`);
  }

  async read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, position, length);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await this.blob.slice(position, position + length).arrayBuffer());
    } catch (e) {
      throw new RwkvError('FILE_NOT_FOUND', `cannot read the blob (${e instanceof Error ? e.message : String(e)})`, { file: this.name });
    }
    if (bytes.byteLength !== length) {
      throw new FormatError('TRUNCATED', `the blob gave ${bytes.byteLength} bytes at ${position}, expected ${length}`, { file: this.name });
    }
    if (into === undefined) return bytes;
    into.set(bytes);
    return into.subarray(0, length);
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------------
// HTTP. The first request asks for the first BLOCK bytes with a Range header: a 206 answer (with a
// Content-Range that gives the total size) means the server honours ranges, and every later read is a
// Range request; a 200 answer is the whole body, read once into memory. Small reads (headers) fetch a
// whole BLOCK and are served from it, so that a format's many small header reads cost few requests; a
// large read that starts inside the cached block takes those bytes from it and fetches only the rest.

const BLOCK = 1 << 16;

/** The URL as errors show it: without a user name or password. */
export function displayUrl(url: URL): string {
  if (url.username === '' && url.password === '') return url.href;
  const u = new URL(url.href);
  u.username = '';
  u.password = '';
  return u.href;
}

/** Tries of a request that fails in the network (a connection reset, a keep-alive socket closed under it). */
const FETCH_TRIES = 3;

/** fetch, tried again (at once) when the request fails in the network rather than with an HTTP status. */
async function fetchRetrying(url: URL, init: RequestInit, signal: AbortSignal | undefined): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, { ...init, ...(signal !== undefined ? { signal } : {}) });
    } catch (e) {
      if (signal?.aborted === true || attempt >= FETCH_TRIES) throw e;
    }
  }
}

function fetchFailure(e: unknown, name: string, signal: AbortSignal | undefined): RwkvError {
  if (signal?.aborted === true || (e instanceof Error && e.name === 'AbortError')) return new AbortError('loading aborted');
  const cause = e instanceof Error ? ((e.cause as { code?: unknown } | undefined)?.code ?? e.message) : String(e);
  return new RwkvError('FILE_NOT_FOUND', `cannot fetch (${String(cause)})`, { file: name });
}

function statusError(res: Response, name: string): RwkvError {
  const text = res.statusText !== '' ? ` ${res.statusText}` : '';
  const what = res.status === 404 || res.status === 410 ? 'no such file on the server' : 'the server refused the request';
  return new RwkvError('FILE_NOT_FOUND', `${what} (HTTP ${res.status}${text})`, { file: name });
}

/** Reads a response body into `target` from `offset`; returns the bytes read (fails past its end). */
async function readBodyInto(res: Response, target: Uint8Array, offset: number, name: string): Promise<number> {
  if (res.body === null) return 0;
  const reader = res.body.getReader();
  let at = offset;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (at + value.byteLength > target.byteLength) {
        await reader.cancel().catch(() => {});
        throw new FormatError('BAD_HEADER', `the server sent more bytes than the ${target.byteLength - offset} asked for`, { file: name });
      }
      target.set(value, at);
      at += value.byteLength;
    }
  } finally {
    reader.releaseLock();
  }
  return at - offset;
}

/** A whole body (Range not honoured), reporting its download; grows the buffer when there is no length. */
async function readWholeBody(res: Response, name: string, onDownload: ByteSourceOptions['onDownload']): Promise<Uint8Array> {
  const lengthHeader = res.headers.get('content-length');
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const declared = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const total = encoded ? undefined : declared;
  let buf = new Uint8Array(total ?? BLOCK);
  let size = 0;
  if (res.body !== null) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (size + value.byteLength > buf.byteLength) {
          if (total !== undefined) {
            await reader.cancel().catch(() => {});
            throw new FormatError('BAD_HEADER', `the server sent more than its Content-Length of ${total} bytes`, { file: name });
          }
          const grown = new Uint8Array(Math.max(buf.byteLength * 2, size + value.byteLength));
          grown.set(buf.subarray(0, size));
          buf = grown;
        }
        buf.set(value, size);
        size += value.byteLength;
        onDownload?.(size, total);
      }
    } finally {
      reader.releaseLock();
    }
  }
  if (total !== undefined && size !== total) {
    throw new FormatError('TRUNCATED', `the download ended after ${size} of its ${total} bytes`, { file: name });
  }
  return size === buf.byteLength ? buf : buf.subarray(0, size);
}

/** Credentials in a URL become a Basic Authorization header (fetch refuses such URLs), unless one is given. */
function withoutCredentials(url: URL, headers: Record<string, string>): URL {
  if (url.username === '' && url.password === '') return url;
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'authorization')) {
    const pair = new TextEncoder().encode(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
    headers['Authorization'] = `Basic ${btoa(String.fromCharCode(...pair))}`;
  }
  return new URL(displayUrl(url));
}

async function openHttpSource(given: URL, options: ByteSourceOptions): Promise<ByteSource> {
  const name = displayUrl(given);
  const headers = { ...(options.headers ?? {}) };
  const url = withoutCredentials(given, headers);
  let res: Response;
  try {
    res = await fetchRetrying(url, { headers: { ...headers, Range: `bytes=0-${BLOCK - 1}`, 'Accept-Encoding': 'identity' } }, options.signal);
  } catch (e) {
    throw fetchFailure(e, name, options.signal);
  }
  if (res.status === 206) {
    const range = parseContentRange(res.headers.get('content-range'));
    if (range === undefined || range.start !== 0 || range.total === undefined) {
      await res.body?.cancel();
      throw new FormatError('BAD_HEADER', `the server answered a Range request without a usable Content-Range (${res.headers.get('content-range') ?? 'none'})`, {
        file: name,
      });
    }
    const first = new Uint8Array(Math.min(BLOCK, range.total));
    let got: number;
    try {
      got = await readBodyInto(res, first, 0, name);
    } catch (e) {
      if (e instanceof RwkvError) throw e;
      throw fetchFailure(e, name, options.signal);
    }
    if (got !== first.byteLength) {
      throw new FormatError('TRUNCATED', `the server sent ${got} of the first ${first.byteLength} bytes`, { file: name });
    }
    return new HttpRangeSource(url, name, range.total, headers, validatorOf(res), first, options.signal);
  }
  if (res.status === 416) {
    // The range cannot be satisfied: an empty file (Content-Range: bytes */0).
    await res.body?.cancel();
    const range = parseContentRange(res.headers.get('content-range'));
    if (range?.total === 0) return new MemorySource(new Uint8Array(0), name);
    throw statusError(res, name);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw statusError(res, name);
  }
  try {
    return new MemorySource(await readWholeBody(res, name, options.onDownload), name);
  } catch (e) {
    if (e instanceof RwkvError) throw e;
    throw fetchFailure(e, name, options.signal);
  }
}

function parseContentRange(v: string | null): { start: number; end: number | undefined; total: number | undefined } | undefined {
  if (v === null) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(v);
  if (m === null) return undefined;
  return {
    start: m[1] !== undefined ? Number(m[1]) : 0,
    end: m[2] !== undefined ? Number(m[2]) : undefined,
    total: m[3] !== '*' ? Number(m[3]) : undefined,
  };
}

/** A strong ETag or a Last-Modified date, sent back as If-Range so that a changed file is noticed. */
function validatorOf(res: Response): string | undefined {
  const etag = res.headers.get('etag');
  if (etag !== null && !etag.startsWith('W/')) return etag;
  return res.headers.get('last-modified') ?? undefined;
}

class HttpRangeSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private cache: Uint8Array;
  private cacheStart = 0;

  constructor(
    private readonly url: URL,
    name: string,
    size: number,
    private readonly headers: Record<string, string>,
    private readonly validator: string | undefined,
    first: Uint8Array,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.name = name;
    this.size = size;
    this.cache = first;
  }

  async read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, position, length);
    const cacheEnd = this.cacheStart + this.cache.byteLength;
    if (position >= this.cacheStart && position + length <= cacheEnd) {
      const view = this.cache.subarray(position - this.cacheStart, position - this.cacheStart + length);
      if (into === undefined) return view;
      into.set(view);
      return into.subarray(0, length);
    }
    if (length < BLOCK) {
      const block = new Uint8Array(Math.min(BLOCK, this.size - position));
      await this.fetchRange(position, block);
      this.cache = block;
      this.cacheStart = position;
      return this.read(position, length, into);
    }
    const target = into !== undefined ? into.subarray(0, length) : new Uint8Array(length);
    let done = 0;
    if (position >= this.cacheStart && position < cacheEnd) {
      done = cacheEnd - position;
      target.set(this.cache.subarray(position - this.cacheStart));
    }
    await this.fetchRange(position + done, target.subarray(done));
    return target;
  }

  /** Fills `target` from `position` with one Range request. */
  private async fetchRange(position: number, target: Uint8Array): Promise<void> {
    const end = position + target.byteLength - 1;
    const headers: Record<string, string> = { ...this.headers, Range: `bytes=${position}-${end}`, 'Accept-Encoding': 'identity' };
    if (this.validator !== undefined) headers['If-Range'] = this.validator;
    let res: Response;
    try {
      res = await fetchRetrying(this.url, { headers }, this.signal);
    } catch (e) {
      throw fetchFailure(e, this.name, this.signal);
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      if (res.ok) {
        throw new FormatError('BAD_HEADER', 'the file changed on the server while it was being read (a Range request was answered with the whole file)', {
          file: this.name,
        });
      }
      throw statusError(res, this.name);
    }
    const range = parseContentRange(res.headers.get('content-range'));
    if (range === undefined || range.start !== position || (range.total !== undefined && range.total !== this.size)) {
      await res.body?.cancel();
      throw new FormatError('BAD_HEADER', `asked for bytes ${position}-${end} of ${this.size}, the server sent ${res.headers.get('content-range') ?? 'no Content-Range'}`, {
        file: this.name,
      });
    }
    let got: number;
    try {
      got = await readBodyInto(res, target, 0, this.name);
    } catch (e) {
      if (e instanceof RwkvError) throw e;
      throw fetchFailure(e, this.name, this.signal);
    }
    if (got !== target.byteLength) {
      throw new FormatError('TRUNCATED', `the server sent ${got} of the ${target.byteLength} bytes at ${position}`, { file: this.name });
    }
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------------
// A file of the local file system (Node only: node:fs is imported when a file is opened, never
// statically, so that this module also loads in a browser). The path must exist and be a regular file;
// reads are positional, straight into the caller's buffer. Opening, closing and reads under 1 MiB are
// synchronous (a thread-pool round trip costs more than they do); larger reads — the chunks of big
// tensors — are asynchronous, so that a long load leaves the event loop free between them.

/** Largest single read; Node refuses buffers over 2 GiB in one call. */
const MAX_READ = 1 << 30;
/** Reads at least this long go through the thread pool. */
const ASYNC_READ = 1 << 20;

type Fs = typeof import('node:fs');

function codeOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

export async function openFileSource(path: string): Promise<ByteSource> {
  if (!isNode()) {
    throw new RwkvError('FILE_NOT_FOUND', 'a file path can only be read on Node.js; give a URL, a Blob or File, or the bytes instead', { file: path });
  }
  const fs = await import('node:fs');
  let stat: import('node:fs').Stats;
  try {
    stat = fs.statSync(path);
  } catch (e) {
    const code = codeOf(e);
    if (code === 'ENOENT') throw new RwkvError('FILE_NOT_FOUND', 'no such file', { file: path });
    throw new RwkvError('FILE_NOT_FOUND', `cannot open (${code})`, { file: path });
  }
  if (stat.isDirectory()) throw new RwkvError('NOT_A_FILE', 'is a directory, not a model file', { file: path });
  if (!stat.isFile()) throw new RwkvError('NOT_A_FILE', 'is not a regular file', { file: path });
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new RwkvError('FILE_NOT_FOUND', `cannot open (${codeOf(e)})`, { file: path });
  }
  return new FileSource(fs, path, fd, stat.size);
}

class FileSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private fd: number | undefined;

  constructor(
    private readonly fs: Fs,
    path: string,
    fd: number,
    size: number,
  ) {
    this.name = path;
    this.fd = fd;
    this.size = size;
  }

  async read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(this, position, length);
    const fd = this.fd;
    if (fd === undefined) throw new RwkvError('FILE_NOT_FOUND', 'read after close', { file: this.name });
    const target = into !== undefined ? into.subarray(0, length) : new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const want = Math.min(MAX_READ, length - done);
      let n: number;
      try {
        n = want < ASYNC_READ ? this.fs.readSync(fd, target, done, want, position + done) : await readAsync(this.fs, fd, target, done, want, position + done);
      } catch (e) {
        throw new RwkvError('FILE_NOT_FOUND', `cannot read (${codeOf(e)})`, { file: this.name });
      }
      if (n <= 0) throw new FormatError('TRUNCATED', 'unexpected end of file', { file: this.name });
      done += n;
    }
    return target;
  }

  async close(): Promise<void> {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    this.fs.closeSync(fd);
  }
}

function readAsync(fs: Fs, fd: number, target: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, target, offset, length, position, (e, n) => (e !== null ? reject(e) : resolve(n)));
  });
}
