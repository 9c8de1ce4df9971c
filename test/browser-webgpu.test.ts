// The browser bundle on WebGPU: a page's Rwkv.load(src, { kernels: 'webgpu' | 'auto' }) runs the model on
// its worker's navigator.gpu. Headless Chromium offers an adapter (SwiftShader, its CPU Vulkan driver, where
// there is no GPU) only with --enable-unsafe-webgpu; without that switch there is none, which is how the
// fallback of 'auto' is checked. No adapter even with the switch: the tests skip, and fail under CI.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, test, type TestContext } from 'node:test';
import type { Browser } from 'playwright-core';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/index.js';
import { launchBrowser, openPage, sendBytes, startStaticServer, type RouteHandler, type StaticServer } from './helpers/browser.js';
import { fixture, maxAbsDiff, readF32 } from './helpers/fixtures.js';
import { fp32, MODELS } from './helpers/formats.js';

const PAGE = '<!doctype html><meta charset="utf-8"><title>rwkv-ts webgpu test</title>';
const TOLERANCE = 1e-4;
const WEBGPU = ['--enable-unsafe-webgpu'];

let server: StaticServer;
/** Read at request time: a test adds its fixtures' routes once it has found them. */
const routes: Record<string, RouteHandler> = {
  '/blank.html': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  },
};

/** The f32 fixtures and their expected logits, each served at /fixtures/NAME.bin; undefined (skipped) when absent. */
function serveFixtures(t: TestContext): Map<string, string> | undefined {
  const expected = new Map<string, string>();
  for (const m of MODELS) {
    const model = fixture(t, fp32(m));
    const logits = fixture(t, `expected-logits-official-${m}.bin`);
    if (model === undefined || logits === undefined) return undefined;
    expected.set(m, logits);
    routes[`/fixtures/${m}.bin`] = (req, res) => sendBytes(req, res, fs.readFileSync(model));
  }
  return expected;
}

before(async () => {
  server = await startStaticServer({ crossOriginIsolated: true, routes });
});

after(async () => {
  await server.close();
});

/** A browser whose pages have a WebGPU adapter, or undefined (the test skipped; failed under CI) with why not. */
async function webgpuBrowser(t: TestContext): Promise<Browser | undefined> {
  const browser = await launchBrowser(t, { args: WEBGPU });
  if (browser === undefined) return undefined;
  const opened = await openPage(browser, `${server.url}blank.html`);
  const adapter = await opened.page.evaluate(async () => {
    const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
    if (gpu === undefined) return 'no navigator.gpu';
    return (await gpu.requestAdapter()) === null ? 'requestAdapter gave null' : '';
  });
  await opened.close();
  if (adapter === '') return browser;
  await browser.close();
  if (process.env.CI === 'true') throw new Error(`WebGPU is unavailable in Chromium under CI: ${adapter}`);
  t.skip(`no WebGPU adapter in Chromium: ${adapter}`);
  return undefined;
}

test("kernels 'webgpu' in the page: the fixtures of every version give the expected logits (≤ 1e-4); a seeded generation equals Node's WebAssembly text; 'auto' picks WebGPU", async (t) => {
  const files = serveFixtures(t);
  if (files === undefined) return;
  const browser = await webgpuBrowser(t);
  if (browser === undefined) return;
  const opened = await openPage(browser, `${server.url}blank.html`);
  try {
    for (const [m, expected] of files) {
      const got = await opened.page.evaluate(
        async ([base, name]: [string, string]) => {
          const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
          const rwkv = await lib.Rwkv.load(`${base}fixtures/${name}.bin`, { tokenizer: 'bytes', kernels: 'webgpu' });
          const state = rwkv.createState();
          await rwkv.feed(state, [0x22, 0x69, 0x6e]); // `"in`, the fixtures' prompt
          const out = await state.logits();
          await rwkv.close();
          return { logits: Array.from(out ?? []), kernels: rwkv.info.kernels };
        },
        [server.url, m] as [string, string],
      );
      assert.match(got.kernels, /^webgpu /, `${m}: ran on ${got.kernels}`);
      const diff = maxAbsDiff(Float32Array.from(got.logits), readF32(expected));
      assert.ok(got.logits.length === 256 && diff <= TOLERANCE, `${m}: max abs difference ${diff} (${got.logits.length} logits)`);
    }

    // SwiftShader runs the shipped model at a few tokens per second: 20 tokens.
    const node = await Rwkv.load(defaultModelPath(), { kernels: 'wasm' });
    const want = await node.generate('The President said', { seed: 42, maxTokens: 20, topP: 0.7 }).text();
    await node.close();
    const page = await opened.page.evaluate(async (base: string) => {
      const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
      const rwkv = await lib.Rwkv.load(`${base}models/default/model.safetensors`, { kernels: 'auto', cache: false });
      const text = await rwkv.generate('The President said', { seed: 42, maxTokens: 20, topP: 0.7 }).text();
      await rwkv.close();
      return { text, info: rwkv.info };
    }, server.url);
    assert.match(page.info.kernels, /^webgpu /);
    assert.equal(page.info.fallbackReason, undefined);
    assert.equal(page.text, want, "the page's WebGPU text equals Node's WebAssembly text");
    assert.deepEqual(opened.unexpectedErrors(), []);
  } finally {
    await opened.close();
    await browser.close();
  }
});

test("kernels 'auto' in a page without an adapter: WebAssembly, and info.fallbackReason says why", async (t) => {
  if (serveFixtures(t) === undefined) return;
  const browser = await launchBrowser(t); // no --enable-unsafe-webgpu: requestAdapter gives null
  if (browser === undefined) return;
  const opened = await openPage(browser, `${server.url}blank.html`);
  try {
    const info = await opened.page.evaluate(async (base: string) => {
      const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
      const rwkv = await lib.Rwkv.load(`${base}fixtures/7v0-834K.bin`, { tokenizer: 'bytes', kernels: 'auto' });
      await rwkv.close();
      return rwkv.info;
    }, server.url);
    assert.match(info.kernels, /^wasm/);
    assert.match(info.fallbackReason ?? '', /no adapter|navigator\.gpu/);
    assert.deepEqual(opened.unexpectedErrors(), []);
  } finally {
    await opened.close();
    await browser.close();
  }
});
