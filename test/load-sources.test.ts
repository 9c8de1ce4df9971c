// Loading from anything: a model of every format gives bit-identical logits whether it comes from a path, a
// Uint8Array, an ArrayBuffer, a Blob, or an http:// URL (served here by node:http, with Range support and
// without it); onProgress rises to the total; errors stay typed and name the source (a truncated buffer
// names the tensor as a truncated file does; a 404 names the URL; a buffer is never printed).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { AbortError, ArgumentError, FormatError, RwkvError } from '../src/errors.js';
import { openByteSource, type ByteSource, type LoadProgress } from '../src/formats/byte-source.js';
import { writeCheckpoint } from '../src/formats/convert.js';
import { openCheckpoint } from '../src/formats/open.js';
import { Rwkv } from '../src/generation/rwkv.js';
import type { WasmBackend } from '../src/kernels/wasm-backend.js';
import { loadModel } from '../src/models/load.js';
import { randomSource } from '../src/models/random.js';
import { ByteTokenizer } from '../src/tokenizers/bytes.js';
import { WorldTokenizer } from '../src/tokenizers/world.js';
import { testBackend } from './helpers/backend.js';
import { fixture } from './helpers/fixtures.js';
import { logitsAfterIn, tempDir } from './helpers/formats.js';

/** One fixture per container format (and a quantized rwkv.cpp file, and a GGUF llama.cpp wrote). */
const FILES = [
  'tiny-rwkv-5v2-730K-FP32.bin',
  'quantized/tiny-rwkv-7v0-834K-FP32-to-Q8_0.bin',
  'converted/tiny-rwkv-6v0-1m-FP32.safetensors',
  'converted/tiny-rwkv-4v0-660K-FP32.pth',
  'gguf/rwkv7-834k-Q8_0.gguf',
] as const;

const dir = tempDir('load-sources');

// --- A local HTTP server: 'range' honours Range requests; 'whole' ignores them (200, the whole file with
// its Content-Length); 'chunked' ignores them and sends no length (chunked transfer encoding).

type Mode = 'range' | 'whole' | 'chunked';

interface Served {
  url(mode: Mode, name: string): URL;
  /** Requests per mode since the last reset: the Range header asked for and the status answered. */
  readonly log: { mode: Mode; range: string | undefined; status: number; authorization?: string }[];
  add(name: string, bytes: Uint8Array): void;
  close(): Promise<void>;
}

async function serve(): Promise<Served> {
  const files = new Map<string, Uint8Array>();
  const log: Served['log'] = [];
  const server = http.createServer((req, res) => {
    const [, mode, ...rest] = (req.url ?? '/').split('/') as [string, Mode, ...string[]];
    const name = decodeURIComponent(rest.join('/'));
    const body = files.get(name);
    const range = req.headers.range;
    const answer = (status: number, headers: Record<string, string | number>, data?: Uint8Array): void => {
      log.push({ mode, range, status, ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}) });
      res.writeHead(status, headers);
      res.end(data !== undefined ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : undefined);
    };
    if (body === undefined) return answer(404, { 'Content-Type': 'text/plain' }, new TextEncoder().encode('not found'));
    if (mode === 'range') {
      const m = range !== undefined ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
      if (m === null) return answer(200, { 'Content-Length': body.byteLength, 'Accept-Ranges': 'bytes', ETag: '"v1"' }, body);
      const start = Number(m[1]);
      const end = Math.min(m[2] === '' ? body.byteLength - 1 : Number(m[2]), body.byteLength - 1);
      if (start >= body.byteLength) return answer(416, { 'Content-Range': `bytes */${body.byteLength}` });
      if (range !== undefined && req.headers['if-range'] !== undefined && req.headers['if-range'] !== '"v1"') {
        return answer(200, { 'Content-Length': body.byteLength }, body);
      }
      return answer(
        206,
        { 'Content-Range': `bytes ${start}-${end}/${body.byteLength}`, 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes', ETag: '"v1"' },
        body.subarray(start, end + 1),
      );
    }
    if (mode === 'whole') return answer(200, { 'Content-Length': body.byteLength }, body);
    // chunked: no Content-Length, the body in pieces
    log.push({ mode, range, status: 200 });
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    for (let i = 0; i < body.byteLength; i += 100_000) res.write(Buffer.from(body.subarray(i, i + 100_000)));
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (mode, name) => new URL(`http://127.0.0.1:${port}/${mode}/${encodeURIComponent(name)}`),
    log,
    add: (name, bytes) => files.set(name, bytes),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let served: Served;
let backend: WasmBackend;
before(async () => {
  served = await serve();
  backend = await testBackend();
});
after(() => served.close());

/** The bytes of a model's logits after `"in` (for bit-for-bit comparison). */
function bits(logits: Float32Array): Buffer {
  return Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength);
}

/** Progress reports: `loaded` strictly rising, never past `total`, the last one at `total`. */
function checkProgress(reports: readonly LoadProgress[], total: number, what: string): void {
  assert.ok(reports.length >= 1, `${what}: no progress reported`);
  let last = 0;
  for (const r of reports) {
    assert.equal(r.total, total, `${what}: total`);
    assert.ok(r.loaded > last && r.loaded <= total, `${what}: loaded ${r.loaded} after ${last} (total ${total})`);
    last = r.loaded;
  }
  assert.equal(last, total, `${what}: progress ends at the total`);
}

for (const name of FILES) {
  test(`${name}: a path, a Uint8Array, an ArrayBuffer, a Blob, a File and http:// URLs (Range, whole body, chunked) give bit-identical logits, with progress to the total`, async (t) => {
    const file = fixture(t, name);
    if (file === undefined) return;
    const bytes = new Uint8Array(fs.readFileSync(file));
    served.add(name, bytes);
    const pathProgress: LoadProgress[] = [];
    const want = bits(await logitsAfterIn(await loadModel(file, { backend, onProgress: (p) => pathProgress.push(p) })));
    checkProgress(pathProgress, bytes.byteLength, 'path');

    // A Uint8Array that is a view into a larger buffer (at an odd offset), so that views are taken right.
    const padded = new Uint8Array(bytes.byteLength + 11);
    padded.set(bytes, 7);
    const sources: [string, unknown][] = [
      ['Uint8Array', bytes],
      ['Uint8Array view at offset 7', padded.subarray(7, 7 + bytes.byteLength)],
      ['Buffer', fs.readFileSync(file)],
      ['ArrayBuffer', bytes.slice().buffer],
      ['Blob', new Blob([bytes])],
      ['File', new File([bytes], path.basename(file))],
      ['URL (Range)', served.url('range', name)],
      ['URL string (Range)', served.url('range', name).href],
      ['URL (whole body)', served.url('whole', name)],
      ['URL (chunked, no length)', served.url('chunked', name)],
      ['file: URL', new URL(`file://${path.resolve(file)}`)],
    ];
    for (const [label, source] of sources) {
      served.log.length = 0;
      const progress: LoadProgress[] = [];
      const model = await loadModel(source as Uint8Array, { backend, onProgress: (p) => progress.push(p) });
      assert.ok(bits(await logitsAfterIn(model)).equals(want), `${label}: logits differ from the path's`);
      checkProgress(progress, bytes.byteLength, label);
      if (label === 'URL (Range)') {
        assert.ok(served.log.length >= 2 && served.log.every((r) => r.status === 206 && r.range !== undefined), JSON.stringify(served.log));
      }
      if (label.startsWith('URL (whole') || label.startsWith('URL (chunked')) assert.equal(served.log.length, 1, `${label}: fetched once`);
      if (label === 'File') assert.equal(model.file, path.basename(file));
    }
  });
}

test('Rwkv.load: the same logits from a path, bytes and a URL (with and without Range), onProgress to the total, and a tokenizer without a path', async (t) => {
  const file = fixture(t, 'tiny-rwkv-5v2-730K-FP32.bin');
  if (file === undefined) return;
  const bytes = new Uint8Array(fs.readFileSync(file));
  served.add('rwkv-load.bin', bytes);
  const fromPath = await Rwkv.load(file, { backend });
  const want = bits(await logitsAfterIn(fromPath.model));
  assert.ok(fromPath.tokenizer instanceof ByteTokenizer);
  const kinds: [string, Uint8Array | ArrayBuffer | Blob | URL][] = [
    ['Uint8Array', bytes],
    ['ArrayBuffer', bytes.slice().buffer],
    ['Blob', new Blob([bytes])],
    ['URL (Range)', served.url('range', 'rwkv-load.bin')],
    ['URL (whole body)', served.url('whole', 'rwkv-load.bin')],
  ];
  for (const [label, source] of kinds) {
    const progress: LoadProgress[] = [];
    const rwkv = await Rwkv.load(source, { backend, onProgress: (p) => progress.push(p) });
    assert.ok(bits(await logitsAfterIn(rwkv.model)).equals(want), label);
    checkProgress(progress, bytes.byteLength, label);
    // Vocabulary 256: the byte tokenizer needs no file, whatever the source.
    assert.ok(rwkv.tokenizer instanceof ByteTokenizer);
    assert.equal(await rwkv.generate('The', { maxTokens: 8, seed: 1 }).text(), await fromPath.generate('The', { maxTokens: 8, seed: 1 }).text());
    await rwkv.close();
  }
  await fromPath.close();
});

test('Rwkv.load: a World-vocabulary model (big tensors, read in chunks) from bytes needs options.tokenizer (a typed error otherwise), given as bytes or a URL', async (t) => {
  const vocabFile = fixture(t, 'tokenizers/rwkv_vocab_v20230424.txt');
  if (vocabFile === undefined) return;
  const modelFile = path.join(dir, 'world', 'model.safetensors');
  fs.mkdirSync(path.dirname(modelFile), { recursive: true });
  // 32 wide: the embedding and the head are 8 MiB each, read in several chunks (asynchronously from a file).
  writeCheckpoint(randomSource({ version: '4', nLayer: 1, nEmbd: 32, nVocab: 65536 }, { seed: 3 }), modelFile);
  const bytes = new Uint8Array(fs.readFileSync(modelFile));
  served.add('world.safetensors', bytes);
  const want = bits(await logitsAfterIn(await loadModel(modelFile, { backend })));
  const kinds: [string, Uint8Array | Blob | URL][] = [
    ['Uint8Array', bytes],
    ['Blob', new Blob([bytes])],
    ['URL (Range)', served.url('range', 'world.safetensors')],
    ['URL (whole body)', served.url('whole', 'world.safetensors')],
  ];
  for (const [label, source] of kinds) {
    const progress: LoadProgress[] = [];
    assert.ok(bits(await logitsAfterIn(await loadModel(source, { backend, onProgress: (p) => progress.push(p) }))).equals(want), label);
    checkProgress(progress, bytes.byteLength, label);
    assert.ok(progress.length >= 4 && progress.length <= 1001, `${label}: ${progress.length} reports`);
  }
  // From a path, the vocabulary is looked for beside the model (absent here, and not in the working directory).
  await assert.rejects(
    () => Rwkv.load(modelFile, { backend }),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes('rwkv_vocab_v20230424.txt') && e.message.includes(path.dirname(modelFile)),
  );
  // From bytes there is nowhere to look: the error says to give options.tokenizer.
  await assert.rejects(
    () => Rwkv.load(bytes, { backend }),
    (e: unknown) =>
      e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes('rwkv_vocab_v20230424.txt') && e.message.includes('options.tokenizer'),
  );
  const vocab = new Uint8Array(fs.readFileSync(vocabFile));
  served.add('vocab.txt', vocab);
  const ids: number[][] = [];
  // (A World vocabulary takes a good fraction of a second to build: two ways here, a third beside the model below.)
  for (const tokenizer of [vocab, served.url('range', 'vocab.txt')]) {
    const rwkv = await Rwkv.load(bytes, { backend, tokenizer });
    assert.ok(rwkv.tokenizer instanceof WorldTokenizer);
    ids.push(rwkv.encode('Hello, world! 你好'));
    await rwkv.close();
  }
  for (const x of ids) assert.deepEqual(x, ids[0]);
  // And beside the model, from its path.
  fs.copyFileSync(vocabFile, path.join(path.dirname(modelFile), 'rwkv_vocab_v20230424.txt'));
  const besides = await Rwkv.load(modelFile, { backend });
  assert.ok(besides.tokenizer instanceof WorldTokenizer);
  assert.deepEqual(besides.encode('Hello, world! 你好'), ids[0]);
  await besides.close();
});

test('a truncated Uint8Array gives the same TRUNCATED error as the truncated file, naming the tensor', async (t) => {
  for (const name of FILES) {
    const file = fixture(t, name);
    if (file === undefined) return;
    const whole = fs.readFileSync(file);
    // Cut inside the data of the last tensor (for a .pth, the zip's directory goes with it).
    const cut = new Uint8Array(whole.subarray(0, whole.byteLength - 200));
    const cutFile = path.join(dir, `cut-${path.basename(file)}`);
    fs.writeFileSync(cutFile, cut);
    const fromFile = await loadModel(cutFile).then(
      () => assert.fail(`${name}: the truncated file loaded`),
      (e: unknown) => e,
    );
    const fromBytes = await loadModel(cut).then(
      () => assert.fail(`${name}: the truncated bytes loaded`),
      (e: unknown) => e,
    );
    assert.ok(fromFile instanceof FormatError && fromBytes instanceof FormatError, `${name}: ${String(fromBytes)}`);
    assert.equal(fromBytes.code, 'TRUNCATED', fromBytes.message);
    assert.equal(fromBytes.code, fromFile.code);
    assert.equal(fromBytes.tensor, fromFile.tensor);
    if (!name.endsWith('.pth')) assert.ok(fromBytes.tensor !== undefined, `${name}: names the tensor: ${fromBytes.message}`);
    const label = `<Uint8Array, ${cut.byteLength} bytes>`;
    assert.equal(fromBytes.file, label);
    assert.equal(fromBytes.message, fromFile.message.replace(cutFile, label));
    // The same through a URL with Range requests: the size comes from Content-Range.
    served.add(`cut/${name}`, cut);
    const fromUrl = await loadModel(served.url('range', `cut/${name}`)).then(
      () => assert.fail(`${name}: the truncated URL loaded`),
      (e: unknown) => e,
    );
    assert.ok(fromUrl instanceof FormatError && fromUrl.code === 'TRUNCATED' && fromUrl.tensor === fromFile.tensor, String(fromUrl));
  }
});

test('a 404, a refused connection and an unsupported URL are typed errors naming the URL', async () => {
  const missing = served.url('range', 'no-such-model.bin');
  await assert.rejects(
    () => loadModel(missing),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.file === missing.href && e.message.includes(missing.href) && e.message.includes('404'),
  );
  await assert.rejects(
    () => Rwkv.load(served.url('whole', 'no-such-model.bin'), { backend }),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes('no-such-model.bin') && e.message.includes('404'),
  );
  // A port nobody listens on (one just closed).
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const refused = new URL(`http://127.0.0.1:${closedPort}/model.bin`);
  await assert.rejects(
    () => loadModel(refused),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.message.includes(refused.href),
  );
  // Credentials in a URL are sent as a Basic Authorization header, and not repeated in messages.
  const secret = new URL(missing.href);
  secret.username = 'user';
  secret.password = 'hunter2';
  served.log.length = 0;
  await assert.rejects(
    () => loadModel(secret),
    (e: unknown) => e instanceof RwkvError && e.code === 'FILE_NOT_FOUND' && e.file === missing.href && !e.message.includes('hunter2'),
  );
  assert.equal(served.log[0]?.authorization, `Basic ${Buffer.from('user:hunter2').toString('base64')}`);
  await assert.rejects(() => loadModel(new URL('ftp://example.invalid/model.bin')), (e: unknown) => e instanceof ArgumentError && e.message.includes('ftp:'));
});

test('a buffer is never printed into an error message; an unsupported input is an ArgumentError that describes it', async () => {
  const junk = new Uint8Array(100_000).fill(0x37);
  await assert.rejects(
    () => loadModel(junk),
    (e: unknown) => e instanceof FormatError && e.code === 'BAD_MAGIC' && e.message.length < 300 && !e.message.includes('55,55') && e.message.includes('<Uint8Array, 100000 bytes>'),
  );
  await assert.rejects(
    () => Rwkv.load(junk.buffer, { backend }),
    (e: unknown) => e instanceof FormatError && e.message.length < 300 && e.message.includes('<ArrayBuffer, 100000 bytes>'),
  );
  await assert.rejects(
    () => loadModel(junk, { name: 'upload.bin' }),
    (e: unknown) => e instanceof FormatError && e.message.startsWith('upload.bin: '),
  );
  await assert.rejects(
    () => loadModel(new Uint8Array(0)),
    (e: unknown) => e instanceof FormatError && e.code === 'TRUNCATED' && e.message.includes('empty'),
  );
  for (const bad of [42, null, { size: 3 }, [1, 2, 3]]) {
    await assert.rejects(
      () => loadModel(bad as unknown as Uint8Array),
      (e: unknown) => e instanceof ArgumentError && e.message.length < 300 && /give a file path, a URL/.test(e.message),
    );
  }
});

test('a ByteSource of your own is read through the same interface (and stays yours to close); an AbortSignal stops a load', async (t) => {
  const file = fixture(t, 'converted/tiny-rwkv-4v0-660K-FP32.pth');
  if (file === undefined) return;
  const bytes = new Uint8Array(fs.readFileSync(file));
  const inner = await openByteSource(bytes, { name: 'counted' });
  let reads = 0;
  let closed = false;
  const mine: ByteSource = {
    name: 'my source',
    size: inner.size,
    read: (position, length, into) => {
      reads++;
      return inner.read(position, length, into);
    },
    close: async () => {
      closed = true;
    },
  };
  const want = bits(await logitsAfterIn(await loadModel(file, { backend })));
  assert.ok(bits(await logitsAfterIn(await loadModel(mine, { backend }))).equals(want));
  assert.ok(reads > 0 && !closed);
  // The readers take the same inputs: openCheckpoint names the source.
  assert.equal((await openCheckpoint(mine)).file, 'my source');
  // Aborted before it starts, and while it runs (after the first progress report).
  await assert.rejects(() => loadModel(bytes, { signal: AbortSignal.abort() }), AbortError);
  served.add('abort.pth', bytes);
  const c2 = new AbortController();
  await assert.rejects(() => loadModel(served.url('range', 'abort.pth'), { signal: c2.signal, onProgress: () => c2.abort() }), AbortError);
});
