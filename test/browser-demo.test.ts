// The web chat demo (examples/web-chat/) in Chromium, driven as a user drives it: the page loads the shipped model
// by itself, answers a message with a streamed reply and its tokens/s, saves the conversation's state to a file
// and goes on from it after a reset, and Stop ends a long answer at once. Served as it is from the repository
// root (any static server), cross-origin isolated or not, and by the demo's Vite config (`npm run demo`).
// Every run writes a screenshot of the demo as a test artifact, to $RWKV_ARTIFACTS (default: a folder in the
// system's temporary directory); docs/browser-demo.png is one such screenshot, copied there by hand.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { launchBrowser, openPage, repoRoot, startStaticServer } from './helpers/browser.js';

const DEMO = 'examples/web-chat/';
// The harness's server answers files only (no directory index); other servers serve the folder's index.html.
const PAGE = `${DEMO}index.html`;
const ARTIFACTS = process.env['RWKV_ARTIFACTS'] ?? path.join(os.tmpdir(), 'rwkv-ts-artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'browser-demo.png');
const LOAD_TIMEOUT = 20_000;

/** Waits until the page has a model and runs nothing (body[data-status=ready]). */
async function waitReady(page: Page): Promise<void> {
  await page.waitForFunction(() => document.body.dataset['status'] === 'ready', null, { timeout: LOAD_TIMEOUT });
}

/** The last answer in the log: its text, meta line (tokens/s) and how it finished. */
function lastAnswer(page: Page): Promise<{ text: string; meta: string; finish: string; stopped: boolean }> {
  return page.evaluate(() => {
    const answers = document.querySelectorAll('#chat-log .message.assistant');
    const a = answers[answers.length - 1];
    return {
      text: a?.querySelector('.text')?.textContent ?? '',
      meta: a?.querySelector('.meta')?.textContent ?? '',
      finish: (a as HTMLElement | undefined)?.dataset['finish'] ?? '',
      stopped: a?.classList.contains('stopped') ?? false,
    };
  });
}

/**
 * Sends a message and waits for the answer to end. Records, while it streams, the answer's length whenever
 * the log changes, so that a test can tell a streamed reply from one written at the end.
 */
async function chat(page: Page, message: string): Promise<{ text: string; meta: string; finish: string; streamedLengths: number[] }> {
  await page.evaluate(() => {
    const w = window as unknown as { streamed: number[]; observer?: MutationObserver };
    w.observer?.disconnect();
    w.streamed = [];
    w.observer = new MutationObserver(() => {
      if (document.body.dataset['status'] !== 'generating') return;
      const texts = document.querySelectorAll('#chat-log .message.assistant .text');
      w.streamed.push(texts[texts.length - 1]?.textContent?.length ?? 0);
    });
    w.observer.observe(document.getElementById('chat-log')!, { childList: true, subtree: true, characterData: true });
  });
  await page.fill('#message', message);
  await page.click('#send');
  await page.waitForFunction(() => document.body.dataset['status'] === 'generating');
  await waitReady(page);
  const streamedLengths = await page.evaluate(() => (window as unknown as { streamed: number[] }).streamed);
  return { ...(await lastAnswer(page)), streamedLengths };
}

test('the demo page, cross-origin isolated: the default model loads by itself; a streamed answer with tokens/s; the state saves to a file and loads back after Reset; Stop ends a long answer promptly; screenshot as an artifact', async (t) => {
  const server = await startStaticServer({ crossOriginIsolated: true });
  t.after(() => server.close());
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  const opened = await openPage(browser, `${server.url}${PAGE}`);
  t.after(() => opened.close());
  const { page } = opened;
  await page.setViewportSize({ width: 1000, height: 700 });

  const started = Date.now();
  await waitReady(page);
  const loadMs = Date.now() - started;
  const threads = await page.textContent('#threads-info');
  assert.match(threads ?? '', /^\d+ threads?: .*cross-origin isolated/);
  assert.doesNotMatch(threads ?? '', /not cross-origin isolated/);
  assert.match((await page.textContent('#model-status')) ?? '', /model\.safetensors: RWKV v4/);

  // One turn: the reply streams in (the log shows part of it while it is being written), then its speed.
  const first = await chat(page, 'Hello! Who are you?');
  assert.ok(first.text.trim().length > 0, 'a non-empty answer');
  assert.ok(
    first.streamedLengths.some((n) => n > 0 && n < first.text.length),
    `the answer was shown in pieces as it was generated (lengths seen: ${first.streamedLengths.slice(0, 10).join(', ')}…)`,
  );
  assert.match(first.meta, /\d+ tokens · [\d.]+ tokens\/s/);
  const firstRate = Number(/([\d.]+) tokens\/s/.exec(first.meta)![1]);

  // Save state downloads the conversation's state file; after Reset, Load state goes on from it.
  const tokensBefore = (await page.textContent('#state-info')) ?? '';
  assert.match(tokensBefore, /^[1-9]\d* tokens in the conversation$/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-state')]);
  assert.equal(download.suggestedFilename(), 'chat.state');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-demo-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const stateFile = path.join(dir, download.suggestedFilename());
  await download.saveAs(stateFile);
  assert.equal(fs.readFileSync(stateFile).subarray(0, 8).toString('latin1'), 'RWKVSTAT');
  await page.click('#reset');
  assert.equal(await page.textContent('#state-info'), '0 tokens in the conversation');
  assert.equal(await page.locator('#chat-log .message').count(), 0);
  await page.setInputFiles('#state-file', stateFile);
  await page.waitForFunction((want) => document.getElementById('state-info')?.textContent === want, tokensBefore);
  assert.match((await page.textContent('#chat-log .message.note')) ?? '', /^Loaded chat\.state: the conversation goes on from its [1-9]\d* tokens/);
  const second = await chat(page, 'Tell me about the sea.');
  assert.ok(second.text.trim().length > 0);

  // A long answer (max tokens far beyond what it writes before Stop) stopped while it streams. An answer may
  // still end on its own (a blank line) before the click lands: then try again.
  await page.fill('#max-tokens', '100000');
  let stoppedAfterMs = -1;
  let stopped = { text: '', meta: '', finish: '', stopped: false };
  let attempts = 0;
  for (; attempts < 5 && !stopped.stopped; attempts++) {
    await page.fill('#message', 'Write me a long story about a whale and a ship.');
    await page.click('#send');
    await page.waitForFunction(() => {
      const texts = document.querySelectorAll('#chat-log .message.assistant .text');
      return document.body.dataset['status'] !== 'generating' || (texts[texts.length - 1]?.textContent?.length ?? 0) >= 20;
    });
    const clicked = Date.now();
    // The button is disabled (the answer already ended) or enabled: click it whatever its state, as a user would.
    await page.click('#stop', { force: true });
    await waitReady(page);
    stoppedAfterMs = Date.now() - clicked;
    stopped = await lastAnswer(page);
  }
  assert.ok(stopped.stopped, `an answer was stopped (last: ${stopped.finish})`);
  assert.equal(stopped.finish, 'aborted');
  assert.match(stopped.meta, /^stopped · \d+ tokens · [\d.]+ tokens\/s$/);
  assert.ok(stopped.text.length >= 20);
  assert.ok(stoppedAfterMs < 2000, `the page was idle again ${stoppedAfterMs} ms after Stop`);
  assert.equal(await page.isDisabled('#stop'), true);
  assert.equal(await page.isEnabled('#send'), true);

  // The conversation goes on after a stopped answer.
  await page.fill('#max-tokens', '200');
  const after = await chat(page, 'Thank you.');
  assert.ok(after.text.trim().length > 0);

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  assert.deepEqual(opened.unexpectedErrors(), []);
  t.diagnostic(`model ready ${loadMs} ms after the page opened; ${threads}`);
  t.diagnostic(`first answer ${firstRate} tokens/s; idle ${stoppedAfterMs} ms after Stop (${attempts} long answer(s) started); screenshot ${SCREENSHOT} (${fs.statSync(SCREENSHOT).size} bytes)`);
});

test('the demo page without cross-origin isolation (a plain static server): one thread, and the page says why; it still chats, also with a model from the file picker', async (t) => {
  const server = await startStaticServer({ crossOriginIsolated: false });
  t.after(() => server.close());
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  const opened = await openPage(browser, `${server.url}${PAGE}`);
  t.after(() => opened.close());
  await waitReady(opened.page);
  assert.match((await opened.page.textContent('#threads-info')) ?? '', /^1 thread: the page is not cross-origin isolated \(COOP: same-origin and COEP: require-corp\)/);
  const answer = await chat(opened.page, 'Hello!');
  assert.ok(answer.text.trim().length > 0);
  assert.match(answer.meta, /tokens\/s/);

  // A model chosen with the file picker replaces the loaded one (and starts a new conversation).
  await opened.page.setInputFiles('#model-file', path.join(repoRoot, 'models', 'default', 'model.safetensors'));
  await opened.page.waitForFunction(() => document.body.dataset['status'] === 'loading');
  await waitReady(opened.page);
  assert.equal(await opened.page.locator('#chat-log .message').count(), 0);
  assert.equal(await opened.page.textContent('#state-info'), '0 tokens in the conversation');
  assert.ok((await chat(opened.page, 'Hi again.')).text.trim().length > 0);
  assert.deepEqual(opened.unexpectedErrors(), []);
});

test('npm run demo\'s Vite config serves the page cross-origin isolated (COOP/COEP on every file), and the page chats there on every core', async (t) => {
  const vite = await import('vite').catch(() => undefined);
  if (vite === undefined) {
    t.skip('vite is not installed (npm install)');
    return;
  }
  const server = await vite.createServer({
    configFile: path.join(repoRoot, DEMO, 'vite.config.js'),
    logLevel: 'silent',
    server: { port: 0, host: '127.0.0.1', open: false },
  });
  await server.listen();
  t.after(() => server.close());
  const base = server.resolvedUrls!.local[0]!;
  for (const file of [DEMO, `${DEMO}main.js`, 'dist/browser/rwkv.js', 'dist/browser/rwkv-host.js', 'dist/browser/kernels-simd.wasm', 'models/default/model.safetensors']) {
    const res = await fetch(`${base}${file}`, { method: 'HEAD' });
    assert.equal(res.status, 200, file);
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin', file);
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp', file);
  }
  const browser = await launchBrowser(t);
  if (browser === undefined) return;
  const opened = await openPage(browser, `${base}${DEMO}`);
  t.after(() => opened.close());
  await waitReady(opened.page);
  assert.match((await opened.page.textContent('#threads-info')) ?? '', /cross-origin isolated/);
  assert.doesNotMatch((await opened.page.textContent('#threads-info')) ?? '', /not cross-origin isolated/);
  const answer = await chat(opened.page, 'Hello!');
  assert.ok(answer.text.trim().length > 0);
  assert.deepEqual(opened.unexpectedErrors(), []);
});
