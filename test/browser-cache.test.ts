// The browser model cache (src/browser/model-cache.ts) in Chromium: a download is stored in OPFS (or the
// Cache API where a page has no OPFS) and reused while the server's ETag and size are unchanged; an error
// status, an HTML page and a truncated body are refused with the URL named and leave nothing behind; an
// exhausted quota keeps the model in memory with a warning. The page imports the compiled module as is
// (dist/src/browser/model-cache.js) from a server on the repo root; the test's routes count the requests.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type * as http from 'node:http';
import { test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchBrowser, openPage, sendBytes, startStaticServer, type OpenedPage, type StaticServer } from './helpers/browser.js';

type ModelCache = typeof import('../src/browser/model-cache.js');

/** A model file the test can change under the page, counting the requests for it. */
class ServedModel {
  bytes: Uint8Array;
  etag: string | undefined;
  /** GETs answered with the whole body (200). */
  downloads = 0;
  heads = 0;
  /** 304s (conditional GETs for an unchanged file). */
  notModified = 0;
  /** Requests dropped without an answer (the server "offline"). */
  offline = false;
  /** HEAD answered 405 (a server that allows only GET). */
  headAllowed = true;
  /** Chunked, without Content-Length. */
  chunked = false;
  /** A GET sends this many bytes and then stalls (until the page gives up). */
  stallAfter: number | undefined;

  constructor(size: number, etag: string | undefined) {
    this.bytes = randomBytes(size);
    this.etag = etag;
  }

  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (this.offline) {
      req.socket.destroy();
      return;
    }
    if (req.method === 'HEAD') {
      this.heads++;
      if (!this.headAllowed) {
        res.writeHead(405, { Allow: 'GET' }).end();
        return;
      }
    }
    if (this.stallAfter !== undefined && req.method === 'GET') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(this.bytes.byteLength), ETag: this.etag ?? '' });
      res.write(this.bytes.subarray(0, this.stallAfter));
      return;
    }
    if (this.chunked && req.method === 'GET') {
      this.downloads++;
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      for (let at = 0; at < this.bytes.byteLength; at += 16384) res.write(this.bytes.subarray(at, at + 16384));
      res.end();
      return;
    }
    sendBytes(req, res, this.bytes, { etag: this.etag });
    if (req.method === 'GET' && res.statusCode === 200) this.downloads++;
    if (res.statusCode === 304) this.notModified++;
  };

  digest(): string {
    return createHash('sha256').update(this.bytes).digest('hex');
  }
}

/** What one fetchModelCached call in the page gave. */
type FetchResult =
  | { ok: true; size: number; digest: string; progress: { loaded: number; total: number | undefined }[]; warnings: string[] }
  | { ok: false; name: string; code: string | undefined; message: string };

/** fetchModelCached(url) in the page; with `abortAt`, aborted (its AbortSignal) once that many bytes have arrived. */
async function fetchInPage(page: Page, url: string, abortAt?: number): Promise<FetchResult> {
  return page.evaluate(async ([url, abortAt]): Promise<FetchResult> => {
    const cache = (globalThis as unknown as { modelCache: ModelCache }).modelCache;
    const progress: { loaded: number; total: number | undefined }[] = [];
    const warnings: string[] = [];
    const controller = new AbortController();
    const onProgress = (p: { loaded: number; total: number | undefined }): void => {
      progress.push(p);
      if (abortAt !== undefined && p.loaded >= abortAt) controller.abort();
    };
    try {
      const blob = await cache.fetchModelCached(url, { onProgress, onWarning: (m) => warnings.push(m), signal: controller.signal });
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
      const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
      return { ok: true, size: blob.size, digest: hex, progress, warnings };
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string };
      return { ok: false, name: String(err.name), code: err.code, message: String(err.message) };
    }
  }, [url, abortAt] as const);
}

function listInPage(page: Page): ReturnType<ModelCache['listCachedModels']> {
  return page.evaluate(() => (globalThis as unknown as { modelCache: ModelCache }).modelCache.listCachedModels());
}

/** The names in OPFS's rwkv-models directory (none when it does not exist). */
function opfsNames(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    const root = await navigator.storage.getDirectory();
    let dir: FileSystemDirectoryHandle;
    try {
      dir = await root.getDirectoryHandle('rwkv-models');
    } catch {
      return [];
    }
    const names: string[] = [];
    for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) names.push(name);
    return names.sort();
  });
}

function ok(r: FetchResult): Extract<FetchResult, { ok: true }> {
  if (!r.ok) assert.fail(`expected a download, got ${r.name} ${r.code ?? ''}: ${r.message}`);
  return r;
}

function refused(r: FetchResult, url: string, code: string, pattern: RegExp): void {
  if (r.ok) assert.fail(`${url}: expected an error, got ${r.size} bytes`);
  assert.equal(r.code, code, r.message);
  assert.ok(r.message.includes(url), `the message names the URL: ${r.message}`);
  assert.match(r.message, pattern);
}

const PAGE = (withOpfs: boolean): string =>
  '<!doctype html><meta charset="utf-8"><title>model cache</title>' +
  // A page without OPFS (as in a browser that lacks it): the cache must fall back to the Cache API.
  (withOpfs ? '' : '<script>delete StorageManager.prototype.getDirectory;</script>') +
  '<script type="module">import * as m from "/dist/src/browser/model-cache.js"; globalThis.modelCache = m;</script>';

/** The browser's own console lines for the errors the test provokes on purpose. */
const EXPECTED_CONSOLE = [/Failed to load resource/, /net::ERR_/];

async function openCachePage(browser: Browser, server: StaticServer, withOpfs: boolean): Promise<OpenedPage> {
  const opened = await openPage(browser, `${server.url}${withOpfs ? 'cache.html' : 'cache-no-opfs.html'}`);
  try {
    await opened.page.waitForFunction(() => 'modelCache' in globalThis, undefined, { timeout: 10_000 });
  } catch (e) {
    throw new Error(`the page did not load dist/src/browser/model-cache.js: ${opened.errors.join('; ') || String(e)}`);
  }
  return opened;
}

test('the browser model cache (Chromium): OPFS, the Cache API fallback, refusals, quota', async (t) => {
  const browser = await launchBrowser(t);
  if (browser === undefined) return;

  const good = new ServedModel(300_000, '"v1"');
  const getOnly = new ServedModel(50_000, '"g1"');
  const chunked = new ServedModel(200_000, undefined);
  chunked.chunked = true;
  const full = new ServedModel(120_000, '"q1"');
  const stalling = new ServedModel(100_000, '"s1"');
  const server = await startStaticServer({
    crossOriginIsolated: true,
    routes: {
      '/cache.html': (_req, res) => void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE(true)),
      '/cache-no-opfs.html': (_req, res) => void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE(false)),
      '/models/good.bin': good.handle,
      '/models/get-only.bin': getOnly.handle,
      '/models/chunked.bin': chunked.handle,
      '/models/full.bin': full.handle,
      '/models/stalling.bin': stalling.handle,
      '/models/missing.bin': (_req, res) => void res.writeHead(404, { 'Content-Type': 'text/plain' }).end('no such model'),
      // A single-page app's server: index.html, status 200, for any path.
      '/models/spa.bin': (_req, res) => void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<!doctype html><title>app</title><div id=root></div>'),
      // Promises 100000 bytes, sends 30000, and hangs up.
      '/models/truncated.bin': (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': '100000' });
        res.write(new Uint8Array(30_000), () => res.destroy());
      },
    },
  });
  t.after(() => server.close());
  const url = (p: string): string => `${server.url}models/${p}`;

  await t.test('OPFS: downloaded once, then reused while the ETag and size are the same; a changed ETag downloads again', async () => {
    const opened = await openCachePage(browser, server, true);
    const { page } = opened;
    const first = ok(await fetchInPage(page, url('good.bin')));
    assert.equal(first.size, good.bytes.byteLength);
    assert.equal(first.digest, good.digest());
    assert.deepEqual(first.progress[0], { loaded: 0, total: good.bytes.byteLength });
    assert.deepEqual(first.progress.at(-1), { loaded: good.bytes.byteLength, total: good.bytes.byteLength });
    assert.ok(first.progress.every((p, i) => i === 0 || p.loaded >= first.progress[i - 1]!.loaded), 'progress only grows');
    assert.equal(good.downloads, 1);
    const listed = await listInPage(page);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.url, url('good.bin'));
    assert.equal(listed[0]!.bytes, good.bytes.byteLength);
    assert.equal(listed[0]!.etag, '"v1"');
    assert.equal(listed[0]!.storage, 'opfs');
    assert.equal((await opfsNames(page)).length, 2, 'the bytes and their metadata');

    // Again: one HEAD, no download; the same bytes.
    const second = ok(await fetchInPage(page, url('good.bin')));
    assert.equal(second.digest, good.digest());
    assert.equal(good.downloads, 1, 'served from the cache');
    assert.equal(good.heads, 1, 'revalidated with one HEAD');
    assert.deepEqual(second.progress, [{ loaded: good.bytes.byteLength, total: good.bytes.byteLength }]);
    assert.deepEqual(second.warnings, []);

    // The server cannot be reached: the cached copy, with a warning.
    good.offline = true;
    const offline = ok(await fetchInPage(page, url('good.bin')));
    good.offline = false;
    assert.equal(offline.digest, good.digest());
    assert.equal(offline.warnings.length, 1);
    assert.match(offline.warnings[0]!, /cannot be reached; using the cached copy/);

    // A new file on the server (new ETag, same size): downloaded again, the cache replaced.
    good.bytes = randomBytes(good.bytes.byteLength);
    good.etag = '"v2"';
    const third = ok(await fetchInPage(page, url('good.bin')));
    assert.equal(third.digest, good.digest());
    assert.equal(good.downloads, 2);
    const relisted = await listInPage(page);
    assert.deepEqual(relisted.map((m) => [m.url, m.etag]), [[url('good.bin'), '"v2"']]);
    assert.equal((await opfsNames(page)).length, 2, 'the old copy replaced, not kept beside');
    ok(await fetchInPage(page, url('good.bin')));
    assert.equal(good.downloads, 2);

    // A server that refuses HEAD: the download is a conditional GET, answered 304 while unchanged.
    ok(await fetchInPage(page, url('get-only.bin')));
    getOnly.headAllowed = false;
    const again = ok(await fetchInPage(page, url('get-only.bin')));
    assert.equal(again.digest, getOnly.digest());
    assert.equal(getOnly.downloads, 1);
    assert.equal(getOnly.notModified, 1);

    assert.equal(await page.evaluate((u) => (globalThis as unknown as { modelCache: ModelCache }).modelCache.deleteCachedModel(u), url('good.bin')), true);
    assert.equal(await page.evaluate((u) => (globalThis as unknown as { modelCache: ModelCache }).modelCache.deleteCachedModel(u), url('good.bin')), false);
    assert.deepEqual((await listInPage(page)).map((m) => m.url), [url('get-only.bin')]);
    assert.equal((await opfsNames(page)).length, 2);
    // Deleted: the next call downloads.
    ok(await fetchInPage(page, url('good.bin')));
    assert.equal(good.downloads, 3);
    assert.deepEqual(opened.unexpectedErrors(EXPECTED_CONSOLE), []);
    await opened.close();
  });

  await t.test('an error status, an HTML page and a truncated body are refused, naming the URL, and nothing is stored', async () => {
    const opened = await openCachePage(browser, server, true);
    const { page } = opened;
    refused(await fetchInPage(page, url('missing.bin')), url('missing.bin'), 'FILE_NOT_FOUND', /HTTP 404/);
    refused(await fetchInPage(page, url('spa.bin')), url('spa.bin'), 'FILE_NOT_FOUND', /HTML page/);
    refused(await fetchInPage(page, url('truncated.bin')), url('truncated.bin'), 'TRUNCATED', /of its 100000 bytes/);
    assert.deepEqual(await listInPage(page), []);
    assert.deepEqual(await opfsNames(page), [], 'no file left in OPFS');
    assert.deepEqual(opened.unexpectedErrors(EXPECTED_CONSOLE), []);
    await opened.close();
  });

  await t.test('a download aborted part-way leaves nothing, not even the older copy it was replacing', async () => {
    const opened = await openCachePage(browser, server, true);
    const { page } = opened;
    ok(await fetchInPage(page, url('stalling.bin')));
    assert.equal((await listInPage(page)).length, 1);
    // A new version on the server, whose download stalls half-way and is aborted.
    stalling.bytes = randomBytes(stalling.bytes.byteLength);
    stalling.etag = '"s2"';
    stalling.stallAfter = 40_000;
    const aborted = await fetchInPage(page, url('stalling.bin'), 40_000);
    assert.ok(!aborted.ok && aborted.code === 'ABORTED', JSON.stringify(aborted));
    assert.deepEqual(await listInPage(page), []);
    assert.deepEqual(await opfsNames(page), []);
    stalling.stallAfter = undefined;
    const fresh = ok(await fetchInPage(page, url('stalling.bin')));
    assert.equal(fresh.digest, stalling.digest());
    assert.deepEqual((await listInPage(page)).map((m) => m.etag), ['"s2"']);
    assert.deepEqual(opened.unexpectedErrors(EXPECTED_CONSOLE), []);
    await opened.close();
  });

  await t.test('without OPFS: the Cache API, with the same reuse and refusals', async () => {
    const opened = await openCachePage(browser, server, false);
    const { page } = opened;
    assert.equal(await page.evaluate(() => typeof navigator.storage.getDirectory), 'undefined');
    const downloads = good.downloads;
    const first = ok(await fetchInPage(page, url('good.bin')));
    assert.equal(first.digest, good.digest());
    assert.deepEqual(first.progress.at(-1), { loaded: good.bytes.byteLength, total: good.bytes.byteLength });
    const second = ok(await fetchInPage(page, url('good.bin')));
    assert.equal(second.digest, good.digest());
    assert.equal(good.downloads, downloads + 1, 'the second from the cache');
    refused(await fetchInPage(page, url('truncated.bin')), url('truncated.bin'), 'TRUNCATED', /of its 100000 bytes/);
    refused(await fetchInPage(page, url('spa.bin')), url('spa.bin'), 'FILE_NOT_FOUND', /HTML page/);
    const listed = await listInPage(page);
    assert.deepEqual(
      listed.map((m) => [m.url, m.bytes, m.etag, m.storage]),
      [[url('good.bin'), good.bytes.byteLength, good.etag, 'cache']],
    );
    assert.equal(await page.evaluate((u) => (globalThis as unknown as { modelCache: ModelCache }).modelCache.deleteCachedModel(u), url('good.bin')), true);
    assert.deepEqual(await listInPage(page), []);
    assert.deepEqual(opened.unexpectedErrors(EXPECTED_CONSOLE), []);
    await opened.close();
  });

  await t.test('an exhausted storage quota: the model is kept in memory, with a warning, and not listed', async () => {
    const opened = await openCachePage(browser, server, true);
    const { page, context } = opened;
    // Chromium's own quota, shrunk for this origin through the DevTools protocol.
    const cdp = await context.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 50_000 });
    // With a Content-Length: too big for what is left, so not even tried.
    const sized = ok(await fetchInPage(page, url('full.bin')));
    assert.equal(sized.digest, full.digest());
    assert.equal(sized.warnings.length, 1);
    assert.match(sized.warnings[0]!, /quota/);
    // Without one: the write runs out of quota part-way, and the model is downloaded again into memory.
    const unsized = ok(await fetchInPage(page, url('chunked.bin')));
    assert.equal(unsized.digest, chunked.digest());
    assert.equal(unsized.warnings.length, 1);
    assert.match(unsized.warnings[0]!, /quota ran out/);
    assert.equal(chunked.downloads, 2);
    assert.deepEqual(await listInPage(page), []);
    assert.deepEqual(await opfsNames(page), []);
    assert.deepEqual(opened.unexpectedErrors(EXPECTED_CONSOLE), []);
    await opened.close();
  });
});
