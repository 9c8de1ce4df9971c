// hf: model references: download into the cache through a local server that answers as the hub's resolve
// URLs do (a redirect to a CDN on another origin, X-Linked-Etag/X-Linked-Size, Range), resume, checks,
// errors, --offline, and the CLI's preAction hook.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  cacheDir,
  cachedPath,
  DownloadError,
  isModelReference,
  metadataPath,
  parseModelReference,
  pullModel,
  resolveModel,
  type CacheMetadata,
} from '../src/cli/model-ref.js';
import { fixture, REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const TOKEN = 'hf_secret';

interface Seen {
  url: string;
  range: string | undefined;
  auth: string | undefined;
}

/** A hub and a CDN on two ports (two origins); every request is logged. */
class FakeHub {
  readonly files = new Map<string, Buffer>();
  /** Files whose hub answer announces a wrong sha256. */
  readonly wrongHash = new Set<string>();
  /** Files whose CDN ignores Range. */
  readonly noRange = new Set<string>();
  /** Per file, an ETag to announce instead of the sha256 (a file that changed on the hub). */
  readonly etagOverride = new Map<string, string>();
  /** Per file, how many bytes the CDN sends before dropping the connection (once). */
  readonly cutAfter = new Map<string, number>();
  readonly hubSeen: Seen[] = [];
  readonly cdnSeen: Seen[] = [];
  private hub!: http.Server;
  private cdn!: http.Server;
  hubUrl = '';
  cdnUrl = '';

  async start(): Promise<void> {
    this.cdn = http.createServer((req, res) => this.serveCdn(req, res));
    this.hub = http.createServer((req, res) => this.serveHub(req, res));
    this.cdnUrl = await listen(this.cdn);
    this.hubUrl = await listen(this.hub);
  }

  async stop(): Promise<void> {
    this.hub.closeAllConnections();
    this.cdn.closeAllConnections();
    await Promise.all([new Promise((r) => this.hub.close(r)), new Promise((r) => this.cdn.close(r))]);
  }

  clear(): void {
    this.hubSeen.length = 0;
    this.cdnSeen.length = 0;
  }

  private serveHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.hubSeen.push(seen(req));
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    if (m === null) return void res.writeHead(404).end('no route');
    const [, owner, repo, revision, file] = m as unknown as [string, string, string, string, string];
    if (file === 'page.bin') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return void res.end('<!doctype html><html><body>Log in</body></html>');
    }
    if (owner === 'acme' && repo === 'private' && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json', 'x-error-code': 'RepoNotFound' });
      return void res.end('{"error":"Repository not found"}');
    }
    const key = `${revision}/${file}`;
    const data = this.files.get(key);
    if (data === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain', 'x-error-code': 'EntryNotFound' });
      return void res.end('Entry not found');
    }
    const sha = this.wrongHash.has(key) ? '0'.repeat(64) : sha256(data);
    const etag = this.etagOverride.get(key) ?? sha;
    // As the hub does for an LFS file: a redirect carrying the file's sha256 and size.
    res.writeHead(302, {
      location: `${this.cdnUrl}/cdn/${encodeURIComponent(key)}`,
      etag: `"${etag}"`,
      'x-linked-etag': `"${etag}"`,
      'x-linked-size': String(data.length),
      'content-type': 'text/plain; charset=utf-8',
    });
    res.end(`Found. Redirecting to ${this.cdnUrl}/cdn/${key}`);
  }

  private serveCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.cdnSeen.push(seen(req));
    const key = decodeURIComponent((req.url ?? '').replace(/^\/cdn\//, ''));
    const data = this.files.get(key);
    if (data === undefined) return void res.writeHead(404).end();
    const headers = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', etag: `"${sha256(data)}"` };
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range !== null && !this.noRange.has(key)) {
      const from = Number(range[1]);
      if (from >= data.length) return void res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
      res.writeHead(206, { ...headers, 'content-length': data.length - from, 'content-range': `bytes ${from}-${data.length - 1}/${data.length}` });
      return void res.end(data.subarray(from));
    }
    res.writeHead(200, { ...headers, 'content-length': data.length });
    const cut = this.cutAfter.get(key);
    if (cut !== undefined) {
      this.cutAfter.delete(key);
      // Time for the client to read what was sent before the connection drops.
      res.write(data.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 300));
      return;
    }
    res.end(data);
  }
}

function seen(req: http.IncomingMessage): Seen {
  return { url: req.url ?? '', range: req.headers.range, auth: req.headers.authorization };
}

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-model-ref-'));
}

/** The CLI as a separate process, awaited without blocking this process's servers. */
function rwkv(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

const hub = new FakeHub();
const MODEL = 'tiny-rwkv-4v0-660K-FP32.bin';
let modelBytes: Buffer | undefined;
const cleanup: string[] = [];

before(async () => {
  const p = path.join(process.env.RWKV_FIXTURES ?? path.resolve(REPO_ROOT, '..', 'shared', 'fixtures'), MODEL);
  if (fs.existsSync(p)) {
    modelBytes = fs.readFileSync(p);
    hub.files.set(`main/${MODEL}`, modelBytes);
    hub.files.set(`main/sub/dir/${MODEL}`, modelBytes);
    hub.files.set(`v1.0/${MODEL}`, modelBytes);
  }
  hub.files.set('main/small.bin', Buffer.from('0123456789abcdef'.repeat(4096)));
  hub.files.set('main/world/model.bin', Buffer.from('model bytes'));
  hub.files.set('main/world/rwkv_vocab_v20230424.txt', Buffer.from("1 '\\x00' 1\n"));
  hub.files.set('main/badhash.bin', Buffer.from('some bytes'));
  hub.files.set('main/norange.bin', Buffer.from('abcdefghij'.repeat(1000)));
  hub.files.set('main/changed.bin', Buffer.from('new contents '.repeat(500)));
  hub.noRange.add('main/norange.bin');
  hub.wrongHash.add('main/badhash.bin');
  await hub.start();
});

after(async () => {
  await hub.stop();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

function cache(): string {
  const d = tmpDir();
  cleanup.push(d);
  return d;
}

function opts(dir: string, extra: Parameters<typeof pullModel>[1] = {}): Parameters<typeof pullModel>[1] {
  return { endpoint: hub.hubUrl, cacheDir: dir, token: undefined, offline: false, ...extra };
}

test('references: hf:OWNER/REPO/FILE, @REVISION, nested file paths; paths pass through; bad ones refused', async () => {
  assert.equal(isModelReference('hf:a/b/c.pth'), true);
  assert.equal(isModelReference('models/x.pth'), false);
  assert.deepEqual(parseModelReference('hf:BlinkDL/rwkv-7-world/x.pth'), { owner: 'BlinkDL', repo: 'rwkv-7-world', revision: 'main', file: 'x.pth' });
  assert.deepEqual(parseModelReference('hf:o/r@v1.0/a/b/c.gguf'), { owner: 'o', repo: 'r', revision: 'v1.0', file: 'a/b/c.gguf' });
  for (const bad of ['hf:o/r', 'hf:o/r/', 'hf:o/r/../x', 'hf:../r/x', 'hf:o/r@/x', 'hf:o/r@../x', 'hf:o//x', 'hf:o/r/a\\b']) {
    assert.throws(() => parseModelReference(bad), /expected hf:OWNER\/REPO\/FILE/, bad);
  }
  assert.equal(await resolveModel('some/local/model.pth'), 'some/local/model.pth');
});

test('cache directory: $RWKV_CACHE, else XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%', () => {
  assert.equal(cacheDir({ RWKV_CACHE: '/x/y' }, 'linux', '/home/u'), '/x/y');
  assert.equal(cacheDir({ XDG_CACHE_HOME: '/xdg' }, 'linux', '/home/u'), '/xdg/rwkv-ts');
  assert.equal(cacheDir({ XDG_CACHE_HOME: 'relative' }, 'linux', '/home/u'), '/home/u/.cache/rwkv-ts');
  assert.equal(cacheDir({}, 'linux', '/home/u'), '/home/u/.cache/rwkv-ts');
  assert.equal(cacheDir({}, 'darwin', '/Users/u'), '/Users/u/Library/Caches/rwkv-ts');
  assert.equal(cacheDir({ LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, 'win32', 'C:\\Users\\u'), 'C:\\Users\\u\\AppData\\Local\\rwkv-ts');
});

test('pull: follows the redirect, the bytes equal the source, the sha256 is checked and kept; a second pull makes no request', async (t) => {
  if (fixture(t, MODEL) === undefined) return;
  const dir = cache();
  hub.clear();
  const progress: number[] = [];
  const first = await pullModel(`hf:acme/tiny/${MODEL}`, opts(dir, { onProgress: (p) => progress.push(p.loaded) }));
  assert.equal(first.downloaded, true);
  assert.equal(first.path, path.join(dir, 'hf', 'acme', 'tiny', 'main', MODEL));
  assert.ok(fs.readFileSync(first.path).equals(modelBytes!), 'the cached bytes differ from the source');
  const meta = JSON.parse(fs.readFileSync(metadataPath(first.path), 'utf8')) as CacheMetadata;
  assert.equal(meta.sha256, sha256(modelBytes!));
  assert.equal(meta.sha256Verified, true);
  assert.equal(meta.size, modelBytes!.length);
  assert.equal(progress.at(-1), modelBytes!.length);
  assert.ok(!fs.existsSync(`${first.path}.part`));
  assert.equal(hub.cdnSeen.length, 1);
  assert.equal(hub.cdnSeen[0]!.range, undefined);

  hub.clear();
  const second = await pullModel(`hf:acme/tiny/${MODEL}`, opts(dir));
  assert.equal(second.downloaded, false);
  assert.equal(second.path, first.path);
  assert.equal(hub.hubSeen.length + hub.cdnSeen.length, 0, 'a cached file must not be requested again');

  // Revisions and nested paths have their own places in the cache.
  const v1 = await resolveModel(`hf:acme/tiny@v1.0/${MODEL}`, opts(dir));
  assert.equal(v1, path.join(dir, 'hf', 'acme', 'tiny', 'v1.0', MODEL));
  const nested = await resolveModel(`hf:acme/tiny/sub/dir/${MODEL}`, opts(dir));
  assert.equal(nested, path.join(dir, 'hf', 'acme', 'tiny', 'main', 'sub', 'dir', MODEL));
  assert.ok(fs.readFileSync(nested).equals(modelBytes!));
});

test('withTokenizer: a fresh download also fetches the repository\'s tokenizer file beside it, absent ones skipped; force downloads again', async () => {
  const dir = cache();
  hub.clear();
  const pulled = await pullModel('hf:acme/tiny/world/model.bin', opts(dir, { withTokenizer: true }));
  const vocab = path.join(dir, 'hf', 'acme', 'tiny', 'main', 'world', 'rwkv_vocab_v20230424.txt');
  assert.deepEqual(pulled.companions, [vocab]);
  assert.equal(path.dirname(vocab), path.dirname(pulled.path));
  assert.ok(fs.readFileSync(vocab).equals(hub.files.get('main/world/rwkv_vocab_v20230424.txt')!));
  assert.ok(hub.hubSeen.some((s) => s.url.endsWith('/world/20B_tokenizer.json')), 'the 20B file was tried');
  assert.ok(!fs.existsSync(path.join(path.dirname(vocab), '20B_tokenizer.json')));

  hub.clear();
  const again = await pullModel('hf:acme/tiny/world/model.bin', opts(dir, { withTokenizer: true }));
  assert.equal(again.downloaded, false);
  assert.equal(hub.hubSeen.length, 0);
  const forced = await pullModel('hf:acme/tiny/world/model.bin', opts(dir, { force: true }));
  assert.equal(forced.downloaded, true);
  assert.equal(hub.hubSeen.length, 1);
});

test('resume: a partial .part is continued with a Range request, and the result is the whole file', async () => {
  const dir = cache();
  const data = hub.files.get('main/small.bin')!;
  const ref = 'hf:acme/tiny/small.bin';
  const dest = cachedPath(parseModelReference(ref), dir);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(`${dest}.part`, data.subarray(0, 10_000));
  fs.writeFileSync(`${dest}.part.json`, JSON.stringify({ url: `${hub.hubUrl}/acme/tiny/resolve/main/small.bin`, etag: sha256(data), size: data.length }));
  hub.clear();
  let resumedFrom = -1;
  const p = await resolveModel(ref, opts(dir, { onStart: (s) => (resumedFrom = s.resumedFrom) }));
  assert.equal(resumedFrom, 10_000);
  assert.deepEqual(hub.cdnSeen.map((s) => s.range), ['bytes=10000-']);
  assert.ok(fs.readFileSync(p).equals(data));
  assert.equal((JSON.parse(fs.readFileSync(metadataPath(p), 'utf8')) as CacheMetadata).sha256Verified, true);
  assert.ok(!fs.existsSync(`${dest}.part`) && !fs.existsSync(`${dest}.part.json`));
});

test('resume: a connection dropped mid-download keeps the .part, and the next run continues it', async () => {
  const dir = cache();
  const data = hub.files.get('main/small.bin')!;
  const ref = 'hf:acme/tiny/small.bin';
  const dest = cachedPath(parseModelReference(ref), dir);
  hub.cutAfter.set('main/small.bin', 20_000);
  await assert.rejects(resolveModel(ref, opts(dir)), (e: unknown) => {
    assert.ok(e instanceof DownloadError, String(e));
    assert.match(e.message, /small\.bin: download interrupted after \d+ bytes .*run it again to resume/);
    return true;
  });
  assert.ok(!fs.existsSync(dest));
  const kept = fs.statSync(`${dest}.part`).size;
  assert.ok(kept > 0 && kept <= 20_000, `kept ${kept}`);
  hub.clear();
  assert.ok(fs.readFileSync(await resolveModel(ref, opts(dir))).equals(data));
  assert.deepEqual(hub.cdnSeen.map((s) => s.range), [`bytes=${kept}-`]);
});

test('resume: a server that ignores Range, or a file whose ETag changed, restarts from the first byte', async () => {
  const dir = cache();
  // Ignored Range: a 200 with the whole file; the part is overwritten, not appended to.
  const data = hub.files.get('main/norange.bin')!;
  const ref = 'hf:acme/tiny/norange.bin';
  const dest = cachedPath(parseModelReference(ref), dir);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(`${dest}.part`, data.subarray(0, 3000));
  fs.writeFileSync(`${dest}.part.json`, JSON.stringify({ url: `${hub.hubUrl}/acme/tiny/resolve/main/norange.bin`, etag: sha256(data), size: data.length }));
  hub.clear();
  assert.ok(fs.readFileSync(await resolveModel(ref, opts(dir))).equals(data));
  assert.deepEqual(hub.cdnSeen.map((s) => s.range), ['bytes=3000-']);

  // Changed ETag: the part belongs to an older version of the file.
  const changed = hub.files.get('main/changed.bin')!;
  const ref2 = 'hf:acme/tiny/changed.bin';
  const dest2 = cachedPath(parseModelReference(ref2), dir);
  fs.writeFileSync(`${dest2}.part`, Buffer.from('old contents '.repeat(100)));
  fs.writeFileSync(`${dest2}.part.json`, JSON.stringify({ url: `${hub.hubUrl}/acme/tiny/resolve/main/changed.bin`, etag: 'f'.repeat(64), size: changed.length }));
  hub.clear();
  assert.ok(fs.readFileSync(await resolveModel(ref2, opts(dir))).equals(changed));
  assert.deepEqual(hub.cdnSeen.map((s) => s.range), ['bytes=1300-', undefined]);
});

test('a download whose sha256 differs from the one the hub announces is refused and not kept', async () => {
  const dir = cache();
  const ref = 'hf:acme/tiny/badhash.bin';
  await assert.rejects(resolveModel(ref, opts(dir)), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.match(e.message, /sha256 mismatch/);
    assert.match(e.message, /\/acme\/tiny\/resolve\/main\/badhash\.bin/);
    return true;
  });
  const dest = cachedPath(parseModelReference(ref), dir);
  assert.ok(!fs.existsSync(dest) && !fs.existsSync(`${dest}.part`) && !fs.existsSync(metadataPath(dest)), 'nothing may be kept');
});

test('errors name the URL and the status: 404, 401 (HF_TOKEN), an HTML page; HF_TOKEN goes to the hub only', async () => {
  const dir = cache();
  await assert.rejects(resolveModel('hf:acme/tiny/missing.bin', opts(dir)), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.equal(e.status, 404);
    assert.match(e.message, new RegExp(`^${hub.hubUrl}/acme/tiny/resolve/main/missing\\.bin: HTTP 404.*does not exist`));
    return true;
  });
  await assert.rejects(resolveModel('hf:acme/private/small.bin', opts(dir)), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.equal(e.status, 401);
    assert.match(e.message, /\/acme\/private\/resolve\/main\/small\.bin: HTTP 401.*set HF_TOKEN/);
    return true;
  });
  await assert.rejects(resolveModel('hf:acme/private/small.bin', opts(dir, { token: 'wrong' })), /HTTP 401.*HF_TOKEN was sent/);
  await assert.rejects(resolveModel('hf:acme/tiny/page.bin', opts(dir)), (e: unknown) => {
    assert.ok(e instanceof DownloadError);
    assert.match(e.message, /\/acme\/tiny\/resolve\/main\/page\.bin: HTTP 200 answered with an HTML page/);
    return true;
  });
  assert.ok(!fs.existsSync(cachedPath(parseModelReference('hf:acme/tiny/page.bin'), dir)));

  hub.clear();
  const p = await resolveModel('hf:acme/private/small.bin', opts(dir, { token: TOKEN }));
  assert.ok(fs.readFileSync(p).equals(hub.files.get('main/small.bin')!));
  assert.equal(hub.hubSeen[0]!.auth, `Bearer ${TOKEN}`);
  assert.equal(hub.cdnSeen[0]!.auth, undefined, 'the token must not follow the redirect to another origin');
});

test('offline: the cache only; a clear error when the file is absent', async () => {
  const dir = cache();
  hub.clear();
  await assert.rejects(resolveModel('hf:acme/tiny/small.bin', opts(dir, { offline: true })), /not in the download cache.*offline mode.*rwkv pull hf:acme\/tiny\/small\.bin/);
  assert.equal(hub.hubSeen.length, 0);
  await resolveModel('hf:acme/tiny/small.bin', opts(dir));
  hub.clear();
  assert.equal(await resolveModel('hf:acme/tiny/small.bin', opts(dir, { offline: true })), cachedPath(parseModelReference('hf:acme/tiny/small.bin'), dir));
  assert.equal(hub.hubSeen.length, 0);
});

test('CLI: rwkv pull prints the path; generate --model hf:… runs through the preAction hook; --offline', async (t) => {
  if (fixture(t, MODEL) === undefined) return;
  const dir = cache();
  const env = { HF_ENDPOINT: hub.hubUrl, RWKV_CACHE: dir, HF_TOKEN: '', HF_HUB_OFFLINE: '' };
  const ref = `hf:acme/tiny/${MODEL}`;
  const expected = path.join(dir, 'hf', 'acme', 'tiny', 'main', MODEL);

  const offline = await rwkv(['generate', '--offline', '--model', ref, '--max-tokens', '3'], env);
  assert.equal(offline.status, 1);
  assert.match(offline.stderr, /rwkv: hf:acme\/tiny\/tiny-rwkv-4v0-660K-FP32\.bin: not in the download cache/);
  assert.doesNotMatch(offline.stderr, /looks like a bug/);

  const gen = await rwkv(['generate', '--model', ref, 'The license', '--max-tokens', '3', '--seed', '7'], env);
  assert.equal(gen.status, 0, gen.stderr);
  assert.ok(gen.stdout.length > 0, 'generated nothing');
  assert.match(gen.stderr, /downloading .*\/acme\/tiny\/resolve\/main\/tiny-rwkv-4v0-660K-FP32\.bin/);
  assert.ok(fs.readFileSync(expected).equals(modelBytes!));
  // The same text as from the file itself.
  const local = await rwkv(['generate', '--model', expected, 'The license', '--max-tokens', '3', '--seed', '7'], env);
  assert.equal(local.stdout, gen.stdout);

  hub.clear();
  const pulled = await rwkv(['pull', ref], env);
  assert.equal(pulled.status, 0, pulled.stderr);
  assert.equal(pulled.stdout, `${expected}\n`);
  assert.equal(hub.hubSeen.length, 0, 'cached: no request');
  const again = await rwkv(['generate', '--offline', '--model', ref, '--max-tokens', '3'], env);
  assert.equal(again.status, 0, again.stderr);

  const missing = await rwkv(['pull', 'hf:acme/tiny/missing.bin'], env);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^rwkv: http:\/\/127\.0\.0\.1:\d+\/acme\/tiny\/resolve\/main\/missing\.bin: HTTP 404/);
  assert.doesNotMatch(missing.stderr, /looks like a bug/);
});
