// The harness of the browser tests: a small static file server (the repo root by default, optionally
// cross-origin isolated, with Range, ETag and per-test routes) and Chromium driven by playwright-core.
// playwright-core downloads no browser: it drives the system's Chromium (Debian's `chromium`, which
// .ci/run installs). Without one a browser test is skipped, except under CI, where it fails.
//
// The server is node:http rather than a package (sirv, serve-handler): the tests need exact control of
// the headers and of the Range answers (they are what the library's URL loader and the model cache
// branch on), and the same few lines serve in-memory bytes from a test's own routes.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** The repository root (this file is dist/test/helpers/browser.js once compiled). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.bin': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.gguf': 'application/octet-stream',
  '.pth': 'application/octet-stream',
};

/** The Content-Type the server gives a file name (application/octet-stream when unknown). */
export function contentTypeOf(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** A test's own answer to one path (the path without its query string). */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

export interface StaticServerOptions {
  /** What is served (default: the repository root). */
  root?: string;
  /**
   * Every response (routes' too) carries COOP same-origin, COEP require-corp and CORP same-origin, so
   * that pages are cross-origin isolated (SharedArrayBuffer, the threaded kernels).
   */
  crossOriginIsolated?: boolean;
  /** Exact paths ('/model.bin') answered by the test instead of the file system. */
  routes?: Readonly<Record<string, RouteHandler>>;
}

export interface StaticServer {
  /** The base URL, with a trailing slash: http://127.0.0.1:PORT/ */
  readonly url: string;
  /** The origin, e.g. http://127.0.0.1:PORT */
  readonly origin: string;
  close(): Promise<void>;
}

export interface BodyOptions {
  /** Total bytes of the representation. */
  size: number;
  /** Strong ETag, quoted ('"abc"'); omitted when undefined. */
  etag?: string | undefined;
  contentType: string;
  lastModified?: Date;
  /** Writes bytes start..end (inclusive) of the representation to the response and ends it. */
  send(res: http.ServerResponse, start: number, end: number): void;
}

/**
 * Answers a GET or HEAD for one representation the way a static file server does: ETag and
 * Content-Length, 304 for a matching If-None-Match, one byte range per request (206 with Content-Range;
 * 416 when unsatisfiable; If-Range with a stale validator gets the whole body). Several ranges in one
 * request are answered with the whole body, which HTTP allows.
 */
export function sendBody(req: http.IncomingMessage, res: http.ServerResponse, body: BodyOptions): void {
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Type', body.contentType);
  // Revalidate every time: tests change files and ETags under the browser.
  res.setHeader('Cache-Control', 'no-cache');
  if (body.etag !== undefined) res.setHeader('ETag', body.etag);
  if (body.lastModified !== undefined) res.setHeader('Last-Modified', body.lastModified.toUTCString());
  const head = req.method === 'HEAD';
  if (body.etag !== undefined && req.headers['if-none-match'] !== undefined) {
    const tags = req.headers['if-none-match'].split(',').map((t) => t.trim());
    if (tags.includes(body.etag) || tags.includes('*')) {
      res.writeHead(304).end();
      return;
    }
  }
  let range = parseRange(req.headers.range, body.size);
  const ifRange = req.headers['if-range'];
  if (range !== undefined && ifRange !== undefined && ifRange !== body.etag && ifRange !== body.lastModified?.toUTCString()) range = undefined;
  if (range === 'unsatisfiable') {
    res.writeHead(416, { 'Content-Range': `bytes */${body.size}`, 'Content-Length': '0' }).end();
    return;
  }
  if (range === undefined) {
    res.writeHead(200, { 'Content-Length': String(body.size) });
    if (head || body.size === 0) res.end();
    else body.send(res, 0, body.size - 1);
    return;
  }
  res.writeHead(206, { 'Content-Length': String(range.end - range.start + 1), 'Content-Range': `bytes ${range.start}-${range.end}/${body.size}` });
  if (head) res.end();
  else body.send(res, range.start, range.end);
}

/** Serves in-memory bytes with sendBody (for routes that change a model's bytes or ETag between requests). */
export function sendBytes(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  bytes: Uint8Array,
  options: { etag?: string | undefined; contentType?: string } = {},
): void {
  sendBody(req, res, {
    size: bytes.byteLength,
    etag: options.etag,
    contentType: options.contentType ?? 'application/octet-stream',
    send: (r, start, end) => r.end(bytes.subarray(start, end + 1)),
  });
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; undefined for none (or several, or a malformed header). */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  if (end < start) return undefined;
  return { start, end };
}

function sendStatus(res: http.ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(message)) }).end(message);
}

/** Serves `root`'s files (no directory listings; `..` refused) and the test's routes on 127.0.0.1. */
export async function startStaticServer(options: StaticServerOptions = {}): Promise<StaticServer> {
  const root = path.resolve(options.root ?? repoRoot);
  const routes = options.routes ?? {};
  const server = http.createServer((req, res) => {
    if (options.crossOriginIsolated === true) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
      res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    }
    const pathname = (req.url ?? '/').split('?')[0]!;
    const route = routes[pathname];
    if (route !== undefined) {
      Promise.resolve(route(req, res)).catch((e: unknown) => {
        if (!res.headersSent) sendStatus(res, 500, `route ${pathname} failed: ${String(e)}`);
        else res.destroy();
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendStatus(res, 405, 'method not allowed');
      return;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathname);
    } catch {
      sendStatus(res, 400, 'bad path');
      return;
    }
    // Refuse any `..` segment (also backslashed or encoded ones) before touching the file system.
    if (decoded.includes('\0') || decoded.split(/[\\/]/).includes('..')) {
      sendStatus(res, 403, 'forbidden');
      return;
    }
    const file = path.join(root, decoded);
    if (file !== root && !file.startsWith(root + path.sep)) {
      sendStatus(res, 403, 'forbidden');
      return;
    }
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      // Browsers ask for a favicon by themselves; its 404 would be a console error in every page.
      if (pathname === '/favicon.ico') res.writeHead(204).end();
      else sendStatus(res, 404, `not found: ${pathname}`);
      return;
    }
    if (!stat.isFile()) {
      sendStatus(res, 404, `not a file: ${pathname}`);
      return;
    }
    sendBody(req, res, {
      size: stat.size,
      etag: `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`,
      contentType: contentTypeOf(file),
      lastModified: stat.mtime,
      send: (r, start, end) => {
        fs.createReadStream(file, { start, end })
          .on('error', () => r.destroy())
          .pipe(r);
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/`,
    origin,
    close: () =>
      new Promise<void>((resolve) => {
        // A browser's keep-alive sockets would hold close() open.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The Chromium to drive: $CHROMIUM, /usr/bin/chromium, or chromium / chromium-browser / google-chrome on PATH. */
export function findChromium(): string | undefined {
  const candidates: string[] = [];
  if (process.env['CHROMIUM'] !== undefined && process.env['CHROMIUM'] !== '') candidates.push(process.env['CHROMIUM']);
  candidates.push('/usr/bin/chromium');
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    for (const name of ['chromium', 'chromium-browser', 'google-chrome']) candidates.push(path.join(dir, name));
  }
  for (const file of candidates) {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not this one
    }
  }
  return undefined;
}

/**
 * A headless Chromium, closed when the test ends; undefined (the test marked skipped: return at once)
 * when there is none, except under CI (CI=true), where a missing Chromium fails the test. `options.args`:
 * extra Chromium switches.
 */
export async function launchBrowser(t: TestContext, options: { args?: readonly string[] } = {}): Promise<Browser | undefined> {
  const executablePath = findChromium();
  if (executablePath === undefined) {
    const reason = 'no Chromium found (set $CHROMIUM, or install Debian\'s chromium: apt-get install chromium)';
    if (process.env['CI'] === 'true') throw new Error(`${reason}; under CI the browser tests must run`);
    t.skip(reason);
    return undefined;
  }
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // --no-sandbox: Chromium's sandbox refuses to start as root (CI runs as root) and needs user
    // namespaces that containers often lack; the pages are the tests' own.
    chromiumSandbox: false,
    timeout: 30_000,
    // Extra command-line switches (e.g. --enable-unsafe-webgpu); none by default.
    ...(options.args !== undefined ? { args: [...options.args] } : {}),
  });
  t.after(() => browser.close());
  return browser;
}

export interface OpenedPage {
  readonly page: Page;
  readonly context: BrowserContext;
  /** Console errors and uncaught page errors so far, as text. */
  readonly errors: string[];
  /** The errors not matched by `expected` (e.g. the browser's own log line for a 404 a test asked for). */
  unexpectedErrors(expected?: readonly RegExp[]): string[];
  close(): Promise<void>;
}

/**
 * Opens `url` in a fresh browser context (its own storage: OPFS, Cache API) and collects the page's
 * console errors and uncaught exceptions, so that a test can assert there were none.
 */
export async function openPage(browser: Browser, url: string): Promise<OpenedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const at = msg.location().url;
    errors.push(`console.error: ${msg.text()}${at !== '' ? ` (${at})` : ''}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.stack ?? e.message}`));
  page.on('crash', () => errors.push('the page crashed'));
  await page.goto(url);
  return {
    page,
    context,
    errors,
    unexpectedErrors: (expected = []) => errors.filter((e) => !expected.some((re) => re.test(e))),
    close: () => context.close(),
  };
}
