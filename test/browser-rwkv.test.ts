// The browser bundle (dist/browser/rwkv.js) in a real Chromium: a page imports it by URL and runs a model in
// its worker — with threads when the page is cross-origin isolated, one thread over an unshared memory when
// not — and gets what Node gets: the fixtures' expected logits (every version, within the Node tolerance),
// and a seeded generation equal to Node's, text for text.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/index.js';
import { launchBrowser, openPage, sendBytes, startStaticServer, type RouteHandler, type StaticServer } from './helpers/browser.js';
import { fixture, maxAbsDiff, readF32 } from './helpers/fixtures.js';
import { fp32, MODELS } from './helpers/formats.js';

const PAGE = '<!doctype html><meta charset="utf-8"><title>rwkv-ts test</title>';
const TOLERANCE = 1e-4;

/** A page that does nothing but exist (the test drives it with page.evaluate). */
const blank: Record<string, RouteHandler> = {
  '/blank.html': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  },
};

let isolated: StaticServer;
let plain: StaticServer;

before(async () => {
  isolated = await startStaticServer({ crossOriginIsolated: true, routes: blank });
  plain = await startStaticServer({ crossOriginIsolated: false, routes: blank });
});

after(async () => {
  await isolated.close();
  await plain.close();
});

interface PageRun {
  text: string;
  finishReason: string;
  info: { threads: number; threadsReason: string; crossOriginIsolated: boolean; kernels: string };
  score: number;
}

/** In the page: load the shipped model from the server, generate seeded, score a text. */
async function generateInPage(browser: Browser, server: StaticServer): Promise<{ run: PageRun; errors: string[] }> {
  const opened = await openPage(browser, `${server.url}blank.html`);
  try {
    const run = await opened.page.evaluate(async (base: string): Promise<PageRun> => {
      const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
      let progressed = 0;
      const rwkv = await lib.Rwkv.load(`${base}models/default/model.safetensors`, { onProgress: (p) => (progressed = p.loaded) });
      if (progressed === 0) throw new Error('no progress reported');
      const generation = rwkv.generate('The President said', { seed: 42, maxTokens: 60, topP: 0.7 });
      const text = await generation.text();
      const scored = await rwkv.score('The nation is strong.');
      await rwkv.close();
      return { text, finishReason: generation.finishReason ?? '', info: rwkv.info, score: scored.total };
    }, server.url);
    return { run, errors: opened.unexpectedErrors() };
  } finally {
    await opened.close();
  }
}

test('the bundle in a page: with cross-origin isolation every core works; without it, one thread over an unshared memory, and info says why; both generate what Node generates', async (t) => {
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  try {
    const node = await Rwkv.load(defaultModelPath());
    const want = await node.generate('The President said', { seed: 42, maxTokens: 60, topP: 0.7 }).text();
    const wantScore = (await node.score('The nation is strong.')).total;
    await node.close();

    const threaded = await generateInPage(browser, isolated);
    assert.deepEqual(threaded.errors, []);
    assert.equal(threaded.run.info.crossOriginIsolated, true);
    assert.ok(threaded.run.info.threads >= 1);
    assert.match(threaded.run.info.threadsReason, /cross-origin isolated/);
    assert.doesNotMatch(threaded.run.info.kernels, /unshared/);
    assert.equal(threaded.run.text, want, 'a seeded generation in the page equals Node\'s');
    assert.equal(threaded.run.finishReason, 'length');
    assert.ok(Math.abs(threaded.run.score - wantScore) <= 1e-4, `score ${threaded.run.score} vs ${wantScore}`);

    const single = await generateInPage(browser, plain);
    assert.deepEqual(single.errors, []);
    assert.equal(single.run.info.crossOriginIsolated, false);
    assert.equal(single.run.info.threads, 1);
    assert.match(single.run.info.threadsReason, /not cross-origin isolated/);
    assert.match(single.run.info.kernels, /unshared/);
    assert.equal(single.run.text, want, 'the one-thread mode generates the same text');
  } finally {
    await browser.close();
  }
});

test('fixture models of every version give the fixture\'s expected logits in the page (≤ 1e-4), from .bin files served by URL', async (t) => {
  const files = new Map<string, { model: string; expected: string }>();
  for (const m of MODELS) {
    const model = fixture(t, fp32(m));
    const expected = fixture(t, `expected-logits-official-${m}.bin`);
    if (model === undefined || expected === undefined) return;
    files.set(m, { model, expected });
  }
  const routes: Record<string, RouteHandler> = { ...blank };
  for (const [m, f] of files) routes[`/fixtures/${m}.bin`] = (req, res) => sendBytes(req, res, fs.readFileSync(f.model));
  const server = await startStaticServer({ crossOriginIsolated: true, routes });
  const browser = await launchBrowser(t);
  if (browser === undefined) {
    await server.close();
    return;
  }
  const opened = await openPage(browser, `${server.url}blank.html`);
  try {
    for (const [m, f] of files) {
      const logits = await opened.page.evaluate(
        async ([base, name]: [string, string]) => {
          const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
          const rwkv = await lib.Rwkv.load(`${base}fixtures/${name}.bin`, { tokenizer: 'bytes' });
          const state = rwkv.createState();
          await rwkv.feed(state, [0x22, 0x69, 0x6e]); // `"in`, the fixtures' prompt
          const out = await state.logits();
          await rwkv.close();
          return Array.from(out ?? []);
        },
        [server.url, m] as [string, string],
      );
      const diff = maxAbsDiff(Float32Array.from(logits), readF32(f.expected));
      assert.ok(logits.length === 256 && diff <= TOLERANCE, `${m}: max abs difference ${diff} (${logits.length} logits)`);
    }
    assert.deepEqual(opened.unexpectedErrors(), []);
  } finally {
    await opened.close();
    await browser.close();
    await server.close();
  }
});

test('in the page: states clone, save to bytes and load back; a stop signal ends a generation; bad input is a typed error', async (t) => {
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  const opened = await openPage(browser, `${isolated.url}blank.html`);
  try {
    const result = await opened.page.evaluate(async (base: string) => {
      const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
      const rwkv = await lib.Rwkv.load(`${base}models/default/model.safetensors`);
      const state = rwkv.createState();
      await rwkv.feed(state, 'In the year of our Lord');
      const copy = state.clone();
      const a = await rwkv.generate('', { state, seed: 1, maxTokens: 20 }).text();
      const b = await rwkv.generate('', { state: copy, seed: 1, maxTokens: 20 }).text();
      const saved = await rwkv.saveState(copy);
      const loaded = await rwkv.loadState(saved);
      const c = await rwkv.generate(' and', { state: loaded, seed: 3, maxTokens: 10 }).text();
      const d = await rwkv.generate(' and', { state: copy, seed: 3, maxTokens: 10 }).text();
      const controller = new AbortController();
      const long = rwkv.generate('The', { maxTokens: 100_000, signal: controller.signal });
      let pieces = 0;
      for await (const _piece of long) if (++pieces === 5) controller.abort();
      let badName = '';
      try {
        await rwkv.loadState(new Uint8Array([1, 2, 3]));
      } catch (e) {
        badName = (e as Error).name + (e instanceof lib.StateError ? ' (instanceof StateError)' : '');
      }
      let missing = '';
      try {
        await lib.Rwkv.load(`${base}no-such-model.bin`);
      } catch (e) {
        missing = (e as Error).message;
      }
      await rwkv.close();
      return { a, b, c, d, tokens: loaded.tokenCount, finish: long.finishReason, generated: long.stats?.generatedTokens ?? -1, badName, missing, bytes: saved.byteLength };
    }, isolated.url);
    assert.equal(result.a, result.b, 'a clone continues like its original');
    assert.equal(result.c, result.d, 'a state saved to bytes and loaded back continues like the one it was saved from');
    assert.ok(result.tokens > 20 && result.bytes > 1000);
    assert.equal(result.finish, 'aborted');
    assert.ok(result.generated < 1000, `stopped after ${result.generated} tokens`);
    assert.equal(result.badName, 'StateError (instanceof StateError)');
    assert.match(result.missing, /no-such-model\.bin/);
    assert.deepEqual(opened.unexpectedErrors([/404/]), []);
  } finally {
    await opened.close();
    await browser.close();
  }
});

test('a model loaded by URL is kept in the origin\'s private file system: the second load downloads nothing; listCachedModels sees it', async (t) => {
  const bytes = fs.readFileSync(defaultModelPath());
  const seen: string[] = [];
  const routes: Record<string, RouteHandler> = {
    ...blank,
    '/counted/model.safetensors': (req, res) => {
      seen.push(`${req.method} ${req.headers.range ?? 'whole'}`);
      sendBytes(req, res, bytes, { etag: '"v1"' });
    },
  };
  const server = await startStaticServer({ crossOriginIsolated: true, routes });
  const browser = await launchBrowser(t);
  if (browser === undefined) {
    await server.close();
    return;
  }
  const opened = await openPage(browser, `${server.url}blank.html`);
  try {
    const result = await opened.page.evaluate(async (base: string) => {
      const lib = (await import(`${base}dist/browser/rwkv.js`)) as typeof import('../src/browser/index.js');
      const url = `${base}counted/model.safetensors`;
      const first = await lib.Rwkv.load(url);
      const a = await first.generate('The', { seed: 5, maxTokens: 20 }).text();
      await first.close();
      const second = await lib.Rwkv.load(url);
      const b = await second.generate('The', { seed: 5, maxTokens: 20 }).text();
      await second.close();
      const listed = await lib.listCachedModels();
      const deleted = await lib.deleteCachedModel(url);
      return { a, b, listed: listed.map((m) => [m.url === url, m.bytes, m.etag, m.storage]), deleted };
    }, server.url);
    assert.equal(result.a, result.b);
    assert.deepEqual(result.listed, [[true, bytes.length, '"v1"', 'opfs']]);
    assert.equal(result.deleted, true);
    const downloads = seen.filter((s) => s.startsWith('GET'));
    assert.equal(downloads.length, 1, `requests: ${seen.join(', ')}`);
    assert.ok(seen.includes('HEAD whole'), 'the second load checked the ETag');
    assert.deepEqual(opened.unexpectedErrors(), []);
  } finally {
    await opened.close();
    await browser.close();
    await server.close();
  }
});
