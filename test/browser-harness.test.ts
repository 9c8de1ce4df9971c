// The browser tests' harness itself: the static server answers as the library's loaders expect (content
// types, Range, ETag, HEAD, no escape from its root), and a page served cross-origin isolated is isolated
// (SharedArrayBuffer exists) while the same page without the headers is not.
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import { launchBrowser, openPage, startStaticServer } from './helpers/browser.js';

/** A raw GET (fetch would normalise `..` away before sending it). */
function rawGet(origin: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${origin}${path}`, { method: 'GET', path }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('the static server: content types, Range requests, ETag revalidation, HEAD, and nothing outside its root', async (t) => {
  const server = await startStaticServer({
    crossOriginIsolated: true,
    routes: { '/teapot': (_req, res) => void res.writeHead(418, { 'Content-Type': 'text/plain' }).end('short and stout') },
  });
  t.after(() => server.close());
  const whole = await fetch(`${server.url}package.json`);
  const text = await whole.text();
  assert.equal(whole.status, 200);
  assert.match(whole.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(whole.headers.get('content-length'), String(Buffer.byteLength(text)));
  assert.equal(whole.headers.get('accept-ranges'), 'bytes');
  assert.equal(whole.headers.get('cross-origin-opener-policy'), 'same-origin');
  assert.equal(whole.headers.get('cross-origin-embedder-policy'), 'require-corp');
  assert.equal(whole.headers.get('cross-origin-resource-policy'), 'same-origin');
  const etag = whole.headers.get('etag');
  assert.ok(etag !== null && etag.startsWith('"'), `a strong ETag: ${etag}`);

  assert.equal((await fetch(`${server.url}package.json`, { headers: { 'If-None-Match': etag } })).status, 304);
  const part = await fetch(`${server.url}package.json`, { headers: { Range: 'bytes=2-9' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 2-9/${Buffer.byteLength(text)}`);
  assert.equal(await part.text(), Buffer.from(text).subarray(2, 10).toString());
  const tail = await fetch(`${server.url}package.json`, { headers: { Range: 'bytes=-3' } });
  assert.equal(await tail.text(), Buffer.from(text).subarray(-3).toString());
  const past = await fetch(`${server.url}package.json`, { headers: { Range: `bytes=${Buffer.byteLength(text)}-` } });
  assert.equal(past.status, 416);
  assert.equal(past.headers.get('content-range'), `bytes */${Buffer.byteLength(text)}`);
  // If-Range with a validator the file no longer has: the whole (new) file, not a piece of it.
  assert.equal((await fetch(`${server.url}package.json`, { headers: { Range: 'bytes=0-0', 'If-Range': '"stale"' } })).status, 200);
  const head = await fetch(`${server.url}package.json`, { method: 'HEAD' });
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(text)));
  assert.equal(await head.text(), '');

  assert.equal((await fetch(`${server.url}dist/wasm/kernels-simd.wasm`, { method: 'HEAD' })).headers.get('content-type'), 'application/wasm');
  assert.match((await fetch(`${server.url}dist/src/index.js`, { method: 'HEAD' })).headers.get('content-type') ?? '', /^text\/javascript/);
  assert.equal((await fetch(`${server.url}models/default/model.safetensors`, { method: 'HEAD' })).headers.get('content-type'), 'application/octet-stream');

  const teapot = await fetch(`${server.url}teapot?x=1`);
  assert.equal(teapot.status, 418);
  assert.equal(teapot.headers.get('cross-origin-embedder-policy'), 'require-corp', 'routes are isolated too');
  assert.equal((await fetch(`${server.url}no-such-file.bin`)).status, 404);
  assert.equal((await fetch(`${server.url}dist`)).status, 404, 'no directory listing');
  assert.equal((await fetch(`${server.url}package.json`, { method: 'POST' })).status, 405);
  for (const p of ['/../package.json', '/dist/../../etc/passwd', '/%2e%2e/package.json', '/dist/..%2f..%2fetc%2fpasswd', '/dist\\..\\package.json']) {
    assert.equal(await rawGet(server.origin, p), 403, p);
  }
});

test('a page served with COOP/COEP is cross-origin isolated (SharedArrayBuffer, streamed WebAssembly); without them it is not', async (t) => {
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  const page = '<!doctype html><meta charset="utf-8"><title>isolation</title>';
  for (const isolated of [true, false]) {
    const server = await startStaticServer({
      crossOriginIsolated: isolated,
      routes: { '/blank.html': (_req, res) => void res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page) },
    });
    t.after(() => server.close());
    const opened = await openPage(browser, `${server.url}blank.html`);
    const seen = await opened.page.evaluate(async () => {
      // The kernels need application/wasm for compileStreaming, and Range answers for the URL loader.
      const module = await WebAssembly.compileStreaming(fetch('/dist/wasm/kernels-simd.wasm'));
      const range = await fetch('/package.json', { headers: { Range: 'bytes=0-0' } });
      return {
        isolated: self.crossOriginIsolated,
        sab: typeof SharedArrayBuffer,
        wasmExports: WebAssembly.Module.exports(module).length,
        rangeStatus: range.status,
        rangeBody: await range.text(),
      };
    });
    assert.equal(seen.isolated, isolated, `crossOriginIsolated with${isolated ? '' : 'out'} the headers`);
    assert.equal(seen.sab, isolated ? 'function' : 'undefined', 'SharedArrayBuffer only when isolated');
    assert.ok(seen.wasmExports > 0);
    assert.equal(seen.rangeStatus, 206);
    assert.equal(seen.rangeBody, '{');
    assert.deepEqual(opened.unexpectedErrors(), []);
    await opened.close();
  }
});
