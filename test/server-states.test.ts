// `rwkv serve`'s named states over HTTP, with each store (memory, a directory, Redis): made from a prompt,
// downloaded, uploaded, continued, returned by a completion, deleted; refused with the right status when
// the id, the bytes or the model is wrong. Redis runs as a real redis-server child process (skipped when
// the binary is absent, except under CI=true); two servers sharing it stand for replicas.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { createClient } from 'redis';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/index.js';
import { RwkvServer } from '../src/server/app.js';
import { DirectoryStateStore, MemoryStateStore, RedisStateStore, type StateStore } from '../src/server/state-store.js';
import { fixture, IN_CI } from './helpers/fixtures.js';

const rwkv = await Rwkv.load(defaultModelPath(), { threads: 1 });
after(() => rwkv.close());

// Byte-level tokenizer: the concatenation of two texts is the concatenation of their tokens. PROMPT_A is
// longer than a prompt block (64) so that reading it crosses a block boundary.
const PROMPT_A = 'The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea, there lived';
const PROMPT_B = ' an old fisherman who';
const MAX = 20;

// ---- HTTP ----

interface StateInfo {
  id: string;
  object: string;
  tokens: number;
  bytes: number;
}
interface ApiErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}
interface CompletionJson {
  choices: { text: string; finish_reason: string; state?: string }[];
  state?: string;
}
interface Reply<T> {
  status: number;
  contentType: string;
  body: T;
}

/** Every request has a deadline: a hang is a failure, not a stuck test run. */
async function request<T>(base: string, method: string, url: string, body?: unknown, timeoutMs = 10_000): Promise<Reply<T>> {
  const init: RequestInit = { method, signal: AbortSignal.timeout(timeoutMs) };
  if (body instanceof Uint8Array) init.body = body.slice();
  else if (body !== undefined) init.body = JSON.stringify(body);
  if (body !== undefined) init.headers = { 'content-type': body instanceof Uint8Array ? 'application/octet-stream' : 'application/json' };
  const res = await fetch(base + url, init);
  const contentType = res.headers.get('content-type') ?? '';
  const parsed: unknown = contentType.startsWith('application/json') ? await res.json() : new Uint8Array(await res.arrayBuffer());
  return { status: res.status, contentType, body: parsed as T };
}

async function getState(base: string, id: string): Promise<Uint8Array> {
  const r = await request<Uint8Array>(base, 'GET', `/v1/states/${id}`);
  assert.equal(r.status, 200, `GET state ${id}`);
  assert.equal(r.contentType, 'application/octet-stream');
  return r.body;
}

async function complete(base: string, body: Record<string, unknown>): Promise<CompletionJson> {
  const r = await request<CompletionJson | ApiErrorJson>(base, 'POST', '/v1/completions', { temperature: 0, max_tokens: MAX, ...body });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as CompletionJson;
}

function assertError(r: Reply<unknown>, status: number, expect: { code?: string; param?: string; message?: RegExp }): void {
  assert.equal(r.status, status, JSON.stringify(r.body instanceof Uint8Array ? `${r.body.length} bytes` : r.body));
  const e = (r.body as ApiErrorJson).error;
  assert.ok(e !== undefined && typeof e.message === 'string', 'an OpenAI-style error body');
  if (expect.code !== undefined) assert.equal(e.code, expect.code);
  if (expect.param !== undefined) assert.equal(e.param, expect.param);
  if (expect.message !== undefined) assert.match(e.message, expect.message);
}

/** The state file the library writes after reading `prompt` into a fresh state (no prefix cache: computed anew). */
async function localStateBytes(prompt: string, model: Rwkv = rwkv): Promise<Uint8Array> {
  const s = model.createState();
  await model.feed(s, prompt, { cache: false });
  return model.encodeState(s);
}

/** What one uninterrupted greedy generation after `prompt` writes, through the library. */
async function localText(prompt: string, maxTokens: number): Promise<string> {
  const g = rwkv.generate(prompt, { temperature: 0, maxTokens });
  let text = '';
  for await (const piece of g) text += piece.text;
  return text;
}

// ---- the checks every store passes ----

/** Everything a store must do, through `base` (and, for replicas, made on one server and used on `other`). */
async function exerciseStates(base: string, other: string = base): Promise<void> {
  // POST from a prompt: its info, and its bytes are exactly the library's state after the same prompt.
  const made = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: PROMPT_A });
  assert.equal(made.status, 201);
  assert.match(made.body.id, /^state-[0-9a-f-]{36}$/);
  assert.equal(made.body.object, 'state');
  assert.equal(made.body.tokens, PROMPT_A.length);
  const bytes = await getState(other, made.body.id);
  assert.equal(made.body.bytes, bytes.length);
  assert.deepEqual(bytes, await localStateBytes(PROMPT_A));

  // Continuing it equals one completion of A + B from a fresh state (neither feeds a start token).
  const whole = await complete(other, { prompt: PROMPT_A + PROMPT_B });
  assert.equal(whole.choices[0]!.text, await localText(PROMPT_A + PROMPT_B, MAX));
  assert.ok(whole.choices[0]!.text.length > 0);
  const continued = await complete(other, { prompt: PROMPT_B, state: made.body.id });
  assert.equal(continued.choices[0]!.text, whole.choices[0]!.text);
  // …and the state is a template: using it does not change it.
  assert.deepEqual(await getState(base, made.body.id), bytes);

  // PUT the bytes back under another id: the same state.
  const copyId = `copy_${Date.now()}.v1-x`;
  const put = await request<StateInfo>(other, 'PUT', `/v1/states/${copyId}`, bytes);
  assert.equal(put.status, 200, JSON.stringify(put.body));
  assert.deepEqual(put.body, { id: copyId, object: 'state', tokens: PROMPT_A.length, bytes: bytes.length });
  assert.deepEqual(await getState(base, copyId), bytes);
  assert.equal((await complete(base, { prompt: PROMPT_B, state: copyId })).choices[0]!.text, whole.choices[0]!.text);

  // POST after a named state: A then B, as the library reads them one after the other.
  const after = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: PROMPT_B, state: copyId });
  assert.equal(after.status, 201);
  assert.equal(after.body.tokens, PROMPT_A.length + PROMPT_B.length);
  const s = rwkv.createState();
  await rwkv.feed(s, PROMPT_A, { cache: false });
  await rwkv.feed(s, PROMPT_B, { cache: false });
  assert.deepEqual(await getState(other, after.body.id), rwkv.encodeState(s));

  // return_state: the final state (after A, B and the generated text) continues as one longer generation would.
  const kept = await complete(base, { prompt: PROMPT_B, state: copyId, return_state: true });
  assert.equal(kept.choices[0]!.text, whole.choices[0]!.text);
  assert.match(kept.state ?? '', /^state-/);
  assert.equal(kept.choices[0]!.state, kept.state);
  const more = await complete(other, { prompt: '', state: kept.state });
  assert.equal(whole.choices[0]!.text + more.choices[0]!.text, await localText(PROMPT_A + PROMPT_B, 2 * MAX));
  // Streamed, the id comes in the last choice chunk.
  const streamed = await streamedState(other, { prompt: PROMPT_B, state: copyId, return_state: true, temperature: 0, max_tokens: 4, stream: true });
  assert.equal(rwkv.decodeState(await getState(base, streamed)).tokenCount, PROMPT_A.length + PROMPT_B.length + 4);

  // DELETE, then it is gone everywhere.
  const del = await request<{ id: string; deleted: boolean }>(base, 'DELETE', `/v1/states/${copyId}`);
  assert.equal(del.status, 200);
  assert.deepEqual(del.body, { id: copyId, object: 'state', deleted: true });
  assertError(await request(other, 'GET', `/v1/states/${copyId}`), 404, { code: 'state_not_found', param: 'id' });
  assertError(await request(other, 'DELETE', `/v1/states/${copyId}`), 404, { code: 'state_not_found' });
  assertError(await request(other, 'POST', '/v1/completions', { prompt: 'x', state: copyId }), 404, { code: 'state_not_found', param: 'state' });
  assertError(await request(other, 'POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], state: copyId }), 404, {
    code: 'state_not_found',
    param: 'state',
  });
  assertError(await request(other, 'POST', '/v1/states', { prompt: 'x', state: 'never-made' }), 404, { code: 'state_not_found', param: 'state' });

  // Ids that are not safe as file names or keys.
  for (const bad of ['bad%20id', 'a%3Ab', '..%2Fetc', '%C3%A9t%C3%A9']) {
    assertError(await request(base, 'GET', `/v1/states/${bad}`), 400, { code: 'invalid_value', param: 'id' });
    assertError(await request(base, 'PUT', `/v1/states/${bad}`, bytes), 400, { code: 'invalid_value', param: 'id' });
    assertError(await request(base, 'DELETE', `/v1/states/${bad}`), 400, { code: 'invalid_value', param: 'id' });
  }
  assertError(await request(base, 'POST', '/v1/completions', { prompt: 'x', state: 'no/slashes' }), 400, { code: 'invalid_value', param: 'state' });

  // Uploads that are not a state of this model: 400 naming the problem, and nothing stored.
  const garbage = new TextEncoder().encode('not a state file, just bytes to upload. '.repeat(5));
  assertError(await request(base, 'PUT', '/v1/states/junk', garbage.subarray(0, 20)), 400, { code: 'bad_state', message: /too short for a state file/ });
  assertError(await request(base, 'PUT', '/v1/states/junk', garbage), 400, { code: 'bad_state', message: /not an rwkv-ts state file/ });
  assertError(await request(base, 'PUT', '/v1/states/junk', bytes.subarray(0, bytes.length - 8)), 400, { code: 'bad_state', message: /truncated or corrupt/ });
  assertError(await request(base, 'PUT', '/v1/states/junk', new Uint8Array(0)), 400, { message: /state file/ });
  const otherWeights = bytes.slice();
  // The first fingerprint value (offset 68, f32), moved far beyond its tolerance: another model of the same shape.
  const fp0 = new DataView(bytes.buffer, bytes.byteOffset).getFloat32(68, true);
  new DataView(otherWeights.buffer).setFloat32(68, fp0 + 1 + Math.abs(fp0), true);
  assertError(await request(base, 'PUT', '/v1/states/junk', otherWeights), 400, { code: 'bad_state', message: /same shape but other weights/ });
  const otherShape = bytes.slice();
  new DataView(otherShape.buffer).setUint32(24, 5, true); // n_layer
  assertError(await request(base, 'PUT', '/v1/states/junk', otherShape), 400, { code: 'bad_state', message: /it belongs to RWKV v4, 5 layers.*this model is RWKV v4, 4 layers/ });
  assertError(await request(base, 'PUT', '/v1/states/junk', { not: 'bytes' }), 400, { param: 'body' });
  assertError(await request(other, 'GET', '/v1/states/junk'), 404, { code: 'state_not_found' });
}

/** A streamed completion's `state` (in its last choice chunk). */
async function streamedState(base: string, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200);
  const events = (await res.text())
    .split('\n\n')
    .map((e) => e.replace(/^data: /, '').trim())
    .filter((e) => e !== '' && e !== '[DONE]')
    .map((e) => JSON.parse(e) as CompletionJson);
  const last = events.filter((e) => e.choices.length > 0).pop();
  assert.ok(last !== undefined && last.choices[0]!.finish_reason !== null);
  return last.choices[0]!.state ?? '';
}

async function withServer<T>(states: StateStore, f: (base: string, server: RwkvServer) => Promise<T>, model: Rwkv = rwkv): Promise<T> {
  const server = await RwkvServer.create({ model, states });
  try {
    return await f(await server.listen(0), server);
  } finally {
    await server.close();
    // A store given to the server is the caller's to close.
    await states.close();
  }
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-states-'));
}

// ---- memory and directory ----

test('memory store: states made, downloaded, uploaded, continued, returned, deleted; bad ids and uploads refused', async () => {
  await withServer(new MemoryStateStore(), (base) => exerciseStates(base));
});

test('directory store: the same, as ID.rwkvstate files; the states survive a restart of the server', async () => {
  const dir = tmpDir();
  try {
    const made = await withServer(await DirectoryStateStore.open(dir), async (base) => {
      await exerciseStates(base);
      const r = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: PROMPT_A });
      assert.equal(r.status, 201);
      return r.body;
    });
    // Atomic writes leave no temporary files behind; each state is one file named by its id.
    for (const f of fs.readdirSync(dir)) assert.match(f, /^[A-Za-z0-9_.-]+\.rwkvstate$/);
    assert.ok(fs.existsSync(path.join(dir, `${made.id}.rwkvstate`)));
    // A new server (a new store object) on the same directory.
    await withServer(await DirectoryStateStore.open(dir), async (base) => {
      assert.deepEqual(await getState(base, made.id), await localStateBytes(PROMPT_A));
      const whole = await complete(base, { prompt: PROMPT_A + PROMPT_B });
      assert.equal((await complete(base, { prompt: PROMPT_B, state: made.id })).choices[0]!.text, whole.choices[0]!.text);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a state file of another model is refused with 400 naming both models', async (t) => {
  const otherPath = fixture(t, 'tiny-rwkv-4v0-660K-FP32.bin');
  if (otherPath === undefined) return;
  const otherModel = await Rwkv.load(otherPath, { threads: 1 });
  try {
    const foreign = await localStateBytes('Hello', otherModel);
    await withServer(new MemoryStateStore(), async (base) => {
      assertError(await request(base, 'PUT', '/v1/states/foreign', foreign), 400, {
        code: 'bad_state',
        param: 'state',
        message: /uploaded state 'foreign'.*it belongs to RWKV v4, 4 layers, n_embd 128.*tiny-rwkv-4v0-660K-FP32\.bin.*this model is RWKV v4, 4 layers, n_embd 256/,
      });
      assertError(await request(base, 'GET', '/v1/states/foreign'), 404, { code: 'state_not_found' });
    });
  } finally {
    await otherModel.close();
  }
});

test('state ids of up to 128 characters work in URLs; 129 is refused with 400', async () => {
  await withServer(new MemoryStateStore(), async (base) => {
    const bytes = await localStateBytes(PROMPT_A);
    const longest = 'L'.repeat(128);
    const put = await request<StateInfo>(base, 'PUT', `/v1/states/${longest}`, bytes);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.deepEqual(await getState(base, longest), bytes);
    assert.equal((await complete(base, { prompt: PROMPT_B, state: longest })).choices.length, 1);
    assert.equal((await request(base, 'DELETE', `/v1/states/${longest}`)).status, 200);
    const tooLong = 'L'.repeat(129);
    assertError(await request(base, 'GET', `/v1/states/${tooLong}`), 400, { code: 'invalid_value', param: 'id' });
    assertError(await request(base, 'POST', '/v1/completions', { prompt: 'x', state: tooLong }), 400, { code: 'invalid_value', param: 'state' });
  });
});

// ---- Redis ----

/** The directories of $PATH holding an executable `name`, first one. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

const REDIS_SERVER = onPath('redis-server');

/** True when redis-server can be run; otherwise the test is skipped with the reason (failed under CI=true). */
function haveRedis(t: TestContext): boolean {
  if (REDIS_SERVER !== undefined) return true;
  const reason = 'redis-server is not on PATH (apt-get install redis-server); the Redis store tests need one';
  if (IN_CI) throw new Error(`${reason}; CI=true requires it`);
  console.log(`# skip: ${reason}`);
  t.skip(reason);
  return false;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** One PING over a raw socket: true once Redis answers +PONG. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

interface RedisProcess {
  url: string;
  port: number;
  /** SIGKILL: a crash, as far as clients can tell. */
  kill(): Promise<void>;
  signal(sig: NodeJS.Signals): void;
}

/** A throwaway redis-server (no persistence, its own temp dir) on `port` (default: a free one), killed at the end of `t`. */
async function startRedis(t: TestContext, port?: number): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const p = port ?? (await freePort());
    const dir = tmpDir();
    const child: ChildProcess = spawn(REDIS_SERVER!, ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let dead = false;
    void exited.then(() => (dead = true));
    const kill = async (): Promise<void> => {
      if (!dead) child.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    };
    t.after(kill);
    const deadline = Date.now() + 10_000;
    while (!dead && Date.now() < deadline && !(await pings(p))) await new Promise((r) => setTimeout(r, 25));
    if (!dead && Date.now() < deadline) return { url: `redis://127.0.0.1:${p}`, port: p, kill, signal: (sig) => void child.kill(sig) };
    await kill();
    // Another process may have taken the free port between our look and redis-server's bind.
    if (port === undefined && attempt < 2 && /Address already in use/.test(output)) continue;
    throw new Error(`redis-server on port ${p} did not start:\n${output}`);
  }
}

test('redis store: the same checks; keys are rwkv:state:ID', async (t) => {
  if (!haveRedis(t)) return;
  const redis = await startRedis(t);
  await withServer(await RedisStateStore.open(redis.url), async (base) => {
    await exerciseStates(base);
    const made = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: 'key check' });
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      assert.equal(await client.exists(`rwkv:state:${made.body.id}`), 1);
    } finally {
      await client.close();
    }
  });
});

test('redis store: two servers (replicas, each with its own model) share states through one Redis', async (t) => {
  if (!haveRedis(t)) return;
  const redis = await startRedis(t);
  const rwkvB = await Rwkv.load(defaultModelPath(), { threads: 1 });
  try {
    await withServer(await RedisStateStore.open(redis.url), async (a) =>
      withServer(
        await RedisStateStore.open(redis.url),
        async (b) => {
          // Made on one, used on the other, both ways.
          await exerciseStates(a, b);
          await exerciseStates(b, a);
        },
        rwkvB,
      ),
    );
  } finally {
    await rwkvB.close();
  }
});

test('redis store: an unreachable Redis fails open() within seconds, naming the URL (password hidden), with no retrying', async () => {
  // Nothing listens on a just-freed port: connection refused.
  const port = await freePort();
  const t0 = Date.now();
  await assert.rejects(RedisStateStore.open(`redis://user:s3cret@127.0.0.1:${port}`), (e: Error) => {
    assert.match(e.message, new RegExp(`redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port}.*cannot connect.*ECONNREFUSED`));
    assert.doesNotMatch(e.message, /s3cret/);
    return true;
  });
  assert.ok(Date.now() - t0 < 3000, `open() took ${Date.now() - t0} ms`);

  // A peer that accepts and hangs up at once: open() fails, and no reconnecting goes on behind it.
  let connections = 0;
  const rude = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
  try {
    const url = `redis://127.0.0.1:${(rude.address() as net.AddressInfo).port}`;
    const t1 = Date.now();
    await assert.rejects(RedisStateStore.open(url), (e: Error) => e.message.includes(url));
    assert.ok(Date.now() - t1 < 3000, `open() took ${Date.now() - t1} ms`);
    const seen = connections;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(connections, seen, 'the client kept reconnecting after open() failed');
  } finally {
    await new Promise<void>((resolve) => rude.close(() => resolve()));
  }

  // A peer that accepts and never answers: open() gives up after its timeout.
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const url = `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const t2 = Date.now();
    await assert.rejects(RedisStateStore.open(url, { timeoutMs: 300 }), (e: Error) => e.message.includes(url) && /no answer in 300 ms/.test(e.message));
    assert.ok(Date.now() - t2 < 2000, `open() took ${Date.now() - t2} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

test('redis store: Redis dying mid-run gives 503 JSON errors (not a hang or a crash); the server recovers when it is back', async (t) => {
  if (!haveRedis(t)) return;
  let redis = await startRedis(t);
  await withServer(await RedisStateStore.open(redis.url), async (base) => {
    const made = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: PROMPT_A });
    assert.equal(made.status, 201);
    await redis.kill();
    const t0 = Date.now();
    const storeDown = { code: 'state_store', message: /Redis/ };
    const get = await request(base, 'GET', `/v1/states/${made.body.id}`, undefined, 8000);
    assertError(get, 503, storeDown);
    assertError(await request(base, 'POST', '/v1/completions', { prompt: 'x', state: made.body.id }, 8000), 503, storeDown);
    assertError(await request(base, 'POST', '/v1/states', { prompt: 'x' }, 8000), 503, storeDown);
    assertError(await request(base, 'DELETE', `/v1/states/${made.body.id}`, undefined, 8000), 503, storeDown);
    assert.ok(Date.now() - t0 < 8000, `the failures took ${Date.now() - t0} ms`);
    // The rest of the server still works.
    assert.equal((await request(base, 'GET', '/health')).status, 200);
    assert.equal((await complete(base, { prompt: 'x', max_tokens: 2 })).choices.length, 1);

    // Back on the same port (empty: no persistence): the store reconnects by itself.
    redis = await startRedis(t, redis.port);
    const deadline = Date.now() + 8000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await request(base, 'GET', `/v1/states/${made.body.id}`)).status;
      if (status !== 503) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 404, 'the store did not reconnect to Redis');
    assert.equal((await request(base, 'POST', '/v1/states', { prompt: 'x' })).status, 201);
  });
});

test('redis store: a Redis that stops answering gives 503 after the timeout; the server still shuts down', async (t) => {
  if (!haveRedis(t)) return;
  const redis = await startRedis(t);
  const store = await RedisStateStore.open(redis.url, { timeoutMs: 300 });
  const server = await RwkvServer.create({ model: rwkv, states: store });
  let closed = false;
  t.after(async () => {
    if (!closed) {
      await server.close();
      await store.close();
    }
  });
  const base = await server.listen(0);
  const made = await request<StateInfo>(base, 'POST', '/v1/states', { prompt: 'x' });
  assert.equal(made.status, 201);
  redis.signal('SIGSTOP');
  try {
    const t0 = Date.now();
    assertError(await request(base, 'GET', `/v1/states/${made.body.id}`, undefined, 5000), 503, { code: 'state_store', message: /no answer in 300 ms/ });
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  } finally {
    redis.signal('SIGCONT');
  }
  // Answers resume; the late reply to the timed-out command is not taken for a later command's.
  assert.deepEqual(await getState(base, made.body.id), await localStateBytes('x'));
  // Stopped again, with a command left waiting: closing the server does not wait for it.
  redis.signal('SIGSTOP');
  try {
    assert.equal((await request(base, 'GET', `/v1/states/${made.body.id}`, undefined, 5000)).status, 503);
    const t0 = Date.now();
    await server.close();
    await store.close();
    closed = true;
    assert.ok(Date.now() - t0 < 2000, `close() took ${Date.now() - t0} ms`);
  } finally {
    redis.signal('SIGCONT');
  }
});
