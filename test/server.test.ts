// `rwkv serve` driven by the real `openai` client (and plain fetch where the SDK cannot send what is tested:
// bad JSON, unknown paths): the endpoints, streaming, log-probabilities, aborts, errors, and the CLI's start
// and graceful stop. The model is the shipped byte-level RWKV-4 (token id = byte), so the tests need no
// fixtures.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError } from 'openai';
import { GrammarMatcher } from '../src/grammar/matcher.js';
import { parseGbnf } from '../src/grammar/gbnf.js';
import { JSON_OBJECT_GBNF } from '../src/grammar/json.js';
import { defaultModelPath } from '../src/default-model.js';
import { Rwkv } from '../src/index.js';
import { RwkvServer } from '../src/server/app.js';
import { REPO_ROOT } from './helpers/fixtures.js';

const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

let rwkv: Rwkv;
let server: RwkvServer;
let base: string;
let client: OpenAI;

before(async () => {
  rwkv = await Rwkv.load(defaultModelPath());
  server = await RwkvServer.create({ model: rwkv, modelId: 'tiny' });
  base = await server.listen(0);
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server.close();
  await rwkv.close();
});

/** One metric's value from GET /metrics (summed over its labels). */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m !== null && m[1] === name) sum += Number(m[3]);
  }
  return sum;
}

/** log-softmax of `row` at `id`, in float64. */
function logSoftmax(row: Float32Array, id: number): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return row[id]! - max - Math.log(sum);
}

test('GET /v1/models lists the one model; paths work with and without /v1; /health is ok', async () => {
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((m) => [m.id, m.object, m.owned_by]),
    [['tiny', 'model', 'rwkv-ts']],
  );
  assert.ok(models.data[0]!.created > 1.7e9, 'created is a Unix time in seconds');
  for (const p of ['/health', '/v1/health']) assert.deepEqual(await (await fetch(base + p)).json(), { status: 'ok' });
  const plain = (await (await fetch(`${base}/models`)).json()) as { data: { id: string }[] };
  assert.equal(plain.data[0]!.id, 'tiny');
});

test('a temperature-0 completion equals `rwkv generate` with the same settings', async () => {
  const prompt = 'The President said';
  const cli = spawnSync(
    process.execPath,
    [CLI, 'generate', prompt, '--temperature', '0', '--max-tokens', '40', '--presence-penalty', '0', '--frequency-penalty', '0'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(cli.status, 0, cli.stderr);
  const completion = await client.completions.create({ model: 'tiny', prompt, max_tokens: 40, temperature: 0 });
  assert.equal(completion.object, 'text_completion');
  assert.equal(completion.choices[0]!.text, cli.stdout);
  assert.equal(completion.choices[0]!.finish_reason, 'length');
  assert.deepEqual(completion.usage, { prompt_tokens: Buffer.byteLength(prompt), completion_tokens: 40, total_tokens: Buffer.byteLength(prompt) + 40 });
  const timings = (completion as unknown as { timings: Record<string, number> }).timings;
  assert.equal(timings['predicted_n'], 40);
  assert.ok(timings['predicted_per_second']! > 0);
});

test('completions: a list of prompts gives one choice each, in order; token-id prompts; stop strings; seeds repeat', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: ['The ', 'In the year'], max_tokens: 12, temperature: 0 });
  assert.deepEqual(
    r.choices.map((c) => c.index),
    [0, 1],
  );
  const one = await client.completions.create({ model: 'tiny', prompt: 'In the year', max_tokens: 12, temperature: 0 });
  assert.equal(r.choices[1]!.text, one.choices[0]!.text, 'a choice of a batch is the same text as the prompt alone');
  const ids = [...Buffer.from('In the year')];
  const byIds = await client.completions.create({ model: 'tiny', prompt: ids, max_tokens: 12, temperature: 0 });
  assert.equal(byIds.choices[0]!.text, one.choices[0]!.text);
  const full = one.choices[0]!.text;
  const stopped = await client.completions.create({ model: 'tiny', prompt: 'In the year', max_tokens: 12, temperature: 0, stop: [' '] });
  // The text ends before the first space (the stop string is not part of it), unless there is none.
  const space = full.indexOf(' ');
  assert.equal(stopped.choices[0]!.text, space >= 0 ? full.slice(0, space) : full);
  assert.equal(stopped.choices[0]!.finish_reason, space >= 0 ? 'stop' : 'length');
  const a = await client.completions.create({ model: 'tiny', prompt: 'The', max_tokens: 30, seed: 7, temperature: 1 });
  const b = await client.completions.create({ model: 'tiny', prompt: 'The', max_tokens: 30, seed: 7, temperature: 1 });
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
});

test('echo + logprobs with max_tokens 0 (lm-eval): the prompt tokens\' log-probabilities equal log-softmax of `rwkv logits --all` (≤ 1e-4), the first null', async () => {
  const text = 'The nation is strong.';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-serve-'));
  const input = path.join(dir, 'in.txt');
  const out = path.join(dir, 'logits.bin');
  fs.writeFileSync(input, text);
  const cli = spawnSync(process.execPath, [CLI, 'logits', '--input', input, '--out', out, '--all'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(cli.status, 0, cli.stderr);
  const raw = fs.readFileSync(out);
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  fs.rmSync(dir, { recursive: true });
  const r = await client.completions.create({ model: 'tiny', prompt: text, max_tokens: 0, echo: true, logprobs: 1 });
  const c = r.choices[0]!;
  assert.equal(c.text, text);
  const lp = c.logprobs!;
  const ids = [...Buffer.from(text)];
  assert.equal(lp.tokens!.length, ids.length);
  assert.equal(lp.token_logprobs![0], null);
  assert.equal(lp.top_logprobs![0], null);
  for (let i = 1; i < ids.length; i++) {
    const expected = logSoftmax(all.subarray((i - 1) * 256, i * 256), ids[i]!);
    assert.ok(Math.abs(lp.token_logprobs![i]! - expected) <= 1e-4, `position ${i}: ${lp.token_logprobs![i]} vs ${expected}`);
    const top = lp.top_logprobs![i]!;
    assert.equal(Object.keys(top).length, 1);
    assert.ok(Object.values(top)[0]! >= lp.token_logprobs![i]! - 1e-6, 'the top alternative is at least as likely as the token');
  }
  assert.deepEqual(lp.text_offset, ids.map((_, i) => i));
  assert.equal(lp.tokens!.join(''), text);
});

test('the log-probabilities of generated tokens agree with scoring the same text by echo (≤ 1e-4)', async () => {
  const prompt = 'Congress shall';
  const gen = await client.completions.create({ model: 'tiny', prompt, max_tokens: 10, temperature: 0, logprobs: 3 });
  const g = gen.choices[0]!.logprobs!;
  assert.equal(g.tokens!.length, 10);
  const echoed = await client.completions.create({ model: 'tiny', prompt: prompt + gen.choices[0]!.text, max_tokens: 0, echo: true, logprobs: 3 });
  const e = echoed.choices[0]!.logprobs!;
  const n = Buffer.byteLength(prompt);
  for (let i = 0; i < 10; i++) {
    assert.ok(Math.abs(g.token_logprobs![i]! - e.token_logprobs![n + i]!) <= 1e-4, `token ${i}`);
    // Greedy: each generated token is the most likely one.
    assert.equal(Math.max(...Object.values(g.top_logprobs![i]!)), g.token_logprobs![i]);
  }
});

test('chat: stream: true and the SDK\'s .stream() helper both complete; the answer equals the non-streamed one', async () => {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You answer briefly.' },
    { role: 'user', content: [{ type: 'text', text: 'What did the President say?' }] },
  ];
  const whole = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 60, temperature: 0 });
  assert.equal(whole.object, 'chat.completion');
  const answer = whole.choices[0]!.message.content!;
  assert.equal(whole.choices[0]!.message.role, 'assistant');
  assert.ok(!/^\s/.test(answer), 'the space after "Assistant:" is not part of the answer');
  assert.ok(!answer.includes('\n\n'), 'an answer ends at a blank line');

  const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 60, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let role: string | undefined;
  const finishes: (string | null)[] = [];
  let usage: OpenAI.CompletionUsage | undefined | null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.id, whole.id.replace(/.*/, chunk.id), 'one id');
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    role ??= chunk.choices[0]!.delta.role;
    text += chunk.choices[0]!.delta.content ?? '';
    if (chunk.choices[0]!.finish_reason !== null) finishes.push(chunk.choices[0]!.finish_reason);
  }
  assert.ok(chunks > 3);
  assert.equal(role, 'assistant', 'the first delta carries the role');
  assert.equal(text.trimEnd(), answer);
  assert.deepEqual(finishes, [whole.choices[0]!.finish_reason], 'exactly one finish_reason');
  assert.deepEqual(usage, whole.usage);

  const helper = client.chat.completions.stream({ model: 'tiny', messages, max_tokens: 60, temperature: 0 });
  const deltas: string[] = [];
  helper.on('content', (delta) => deltas.push(delta));
  const final = await helper.finalChatCompletion();
  assert.equal(final.choices[0]!.message.content!.trimEnd(), answer);
  assert.equal(deltas.join('').trimEnd(), answer);
});

test('the prefix-state cache serves a conversation\'s earlier turns: the next request reads only its new tokens', async () => {
  // Long enough to cross prompt blocks (64 tokens): the cache keeps states at block boundaries.
  const first: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: 'system', content: 'You are a clerk of the House of Representatives, and you answer every question about the Union.' },
    { role: 'user', content: 'Which states were admitted to the Union in the year of the second census, and why?' },
  ];
  const a = await client.chat.completions.create({ model: 'tiny', messages: first, max_tokens: 20, temperature: 0 });
  const next = [...first, { role: 'assistant' as const, content: a.choices[0]!.message.content! }, { role: 'user' as const, content: 'And after that?' }];
  const b = await client.chat.completions.create({ model: 'tiny', messages: next, max_tokens: 5, temperature: 0 });
  const timings = (b as unknown as { timings: { prompt_n: number; prompt_cached_n: number } }).timings;
  assert.ok(timings.prompt_cached_n >= 128, `cached ${timings.prompt_cached_n} of ${timings.prompt_n}`);
  assert.equal(timings.prompt_n, b.usage!.prompt_tokens);
});

test('chat logprobs: OpenAI\'s shape, bytes of each token, top_logprobs most likely first', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content: 'Hello' }],
    max_tokens: 8,
    temperature: 0,
    logprobs: true,
    top_logprobs: 2,
  });
  const content = r.choices[0]!.logprobs!.content!;
  assert.ok(content.length > 0 && content.length <= 8);
  for (const t of content) {
    assert.equal(t.bytes!.length, 1, 'a byte-level model: one byte per token');
    assert.equal(Buffer.from(t.bytes!).toString('latin1').length, 1);
    assert.equal(t.top_logprobs.length, 2);
    assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob);
    assert.equal(t.logprob, t.top_logprobs[0]!.logprob, 'greedy: the token is the most likely');
    assert.ok(t.logprob <= 0);
  }
});

test('embeddings through the SDK (base64 by default) and as floats equal Rwkv.embed', async () => {
  const input = ['The nation', 'Whale ho!'];
  const expected = await rwkv.embed(input);
  const viaSdk = await client.embeddings.create({ model: 'tiny', input });
  const floats = (await (
    await fetch(`${base}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input, encoding_format: 'float' }) })
  ).json()) as { data: { embedding: number[] }[]; usage: { prompt_tokens: number } };
  assert.equal(viaSdk.data.length, 2);
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(Array.from(viaSdk.data[i]!.embedding), Array.from(expected[i]!));
    assert.deepEqual(floats.data[i]!.embedding, Array.from(expected[i]!));
  }
  assert.equal(floats.usage.prompt_tokens, Buffer.byteLength(input.join('')));
});

test('tokenize and detokenize round-trip', async () => {
  const post = async (p: string, body: unknown): Promise<Record<string, unknown>> =>
    (await (await fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as Record<string, unknown>;
  const t = await post('/tokenize', { content: 'Hé!' });
  assert.deepEqual(t['tokens'], [...Buffer.from('Hé!')]);
  assert.deepEqual(await post('/detokenize', { tokens: t['tokens'] }), { content: 'Hé!' });
  const pieces = await post('/v1/tokenize', { content: 'ab', with_pieces: true });
  assert.deepEqual(pieces['tokens'], [
    { id: 97, piece: 'a' },
    { id: 98, piece: 'b' },
  ]);
});

test('an aborted stream stops the server\'s work at once; the metrics show it', async () => {
  const aborted = await metric('rwkv_requests_aborted_total');
  const controller = new AbortController();
  const stream = await client.completions.create({ model: 'tiny', prompt: 'The', max_tokens: 4000, stream: true }, { signal: controller.signal });
  let seen = 0;
  try {
    for await (const _chunk of stream) {
      if (++seen === 5) controller.abort();
    }
  } catch (e) {
    // The SDK either ends the iteration quietly or throws its APIUserAbortError.
    assert.ok(e instanceof Error && /abort/i.test(`${e.name} ${e.message}`), String(e));
  }
  assert.equal(seen, 5, 'no chunk after the abort');
  // The server hears the closed connection within a pass or two.
  let inFlight = 1;
  for (let i = 0; i < 100 && (inFlight > 0 || (await metric('rwkv_requests_aborted_total')) === aborted); i++) {
    await new Promise((r) => setTimeout(r, 20));
    inFlight = await metric('rwkv_requests_in_flight');
  }
  assert.equal(await metric('rwkv_requests_aborted_total'), aborted + 1);
  const generated = await metric('rwkv_generated_tokens_total');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await metric('rwkv_generated_tokens_total'), generated, 'no tokens generated after the abort');
  assert.equal(await metric('rwkv_requests_in_flight'), 0, 'nothing in flight (a scrape does not count itself)');
});

test('bad requests: the documented statuses through the SDK\'s typed errors, OpenAI\'s error body', async () => {
  const expectBad = async (f: () => Promise<unknown>, param: string | null, pattern: RegExp): Promise<void> => {
    await assert.rejects(f, (e: unknown) => {
      assert.ok(e instanceof BadRequestError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      assert.equal(e.param, param);
      assert.match(e.message, pattern);
      return true;
    });
  };
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', temperature: 5 }), 'temperature', /temperature must be <= 2 \(got 5\)/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', n: 2 }), 'n', /n > 1 is not supported/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 'ten' as unknown as number }), 'max_tokens', /max_tokens must be integer/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: [300] }), 'prompt', /300 is not a token id/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 1e6 }), 'max_tokens', /more than this server allows/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', seed: -1 }), 'seed', /seed must be/);
  await expectBad(() => client.completions.create({ model: 'tiny', prompt: 'x', logit_bias: { abc: 1 } }), 'logit_bias', /not a token id/);
  await expectBad(
    () =>
      client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'xml' } as unknown as OpenAI.ResponseFormatText,
      }),
    'response_format.type',
    /not supported/,
  );
  await expectBad(() => client.chat.completions.create({ model: 'tiny', messages: [] }), 'messages', /must not be empty/);
  await expectBad(() => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user' } as OpenAI.Chat.ChatCompletionMessageParam] }), 'messages[0].content', /required/);
  await expectBad(() => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }), 'top_logprobs', /needs logprobs/);
  await expectBad(
    () => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }),
    'messages[0].content[0]',
    /only text parts/,
  );
  // What the SDK cannot send: malformed JSON, a body that is not an object, an unknown path.
  const raw = async (p: string, body: string): Promise<[number, { error: Record<string, unknown> }]> => {
    const r = await fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return [r.status, (await r.json()) as { error: Record<string, unknown> }];
  };
  const [s1, b1] = await raw('/v1/completions', '{"prompt": "x",');
  assert.equal(s1, 400);
  assert.equal(b1.error['type'], 'invalid_request_error');
  assert.match(String(b1.error['message']), /not valid JSON/);
  const [s2, b2] = await raw('/v1/chat/completions', '[1, 2]');
  assert.equal(s2, 400);
  assert.match(String(b2.error['message']), /must be object/);
  await assert.rejects(() => client.get('/nothing-here'), (e: unknown) => e instanceof NotFoundError && /no such endpoint/.test(e.message));
  const unknownModel = await fetch(`${base}/v1/models/other`);
  assert.equal(unknownModel.status, 404);
  // `curl -d '{…}'` without a Content-Type sends a form: read as the JSON it is (a bad one is still a 400).
  const form = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '{"prompt":"x","max_tokens":3}' });
  assert.equal(form.status, 200);
  assert.equal(((await form.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
  const [s3] = await raw('/v1/completions', 'prompt=x');
  assert.equal(s3, 400);
  // The server is still up, and an unknown field is ignored.
  const ok = await client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 2, some_future_field: 1 } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(ok.choices.length, 1);
});

test('--api-key: a wrong or missing key is 401 (AuthenticationError); /health needs none; CORS preflights pass', async () => {
  const keyed = await RwkvServer.create({ model: rwkv, apiKey: 's3cret' });
  const url = await keyed.listen(0);
  try {
    const wrong = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(() => wrong.models.list(), (e: unknown) => e instanceof AuthenticationError && e.status === 401);
    const right = new OpenAI({ baseURL: `${url}/v1`, apiKey: 's3cret', maxRetries: 0 });
    assert.equal((await right.models.list()).data.length, 1);
    assert.equal((await fetch(`${url}/health`)).status, 200);
    const preflight = await fetch(`${url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    assert.ok(preflight.status === 204 || preflight.status === 200, String(preflight.status));
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://example.com');
  } finally {
    await keyed.close();
  }
});

test('while the model loads, /health is 503 with Retry-After and an error body; then 200', async () => {
  let release!: (r: Rwkv) => void;
  const loading = new Promise<Rwkv>((resolve) => (release = resolve));
  const early = await RwkvServer.create({ model: loading });
  const url = await early.listen(0);
  try {
    const r = await fetch(`${url}/health`);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    const body = (await r.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'model_loading');
    assert.equal((await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":"x"}' })).status, 503);
    release(rwkv);
    await early.ready;
    assert.equal((await fetch(`${url}/health`)).status, 200);
  } finally {
    await early.close();
  }
});

test('rwkv serve (the CLI): prints its URL and a curl line; SIGTERM lets a stream in flight finish, then exits 0', async () => {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: string) => {
      stderr += d;
      const m = /try: curl (http:\/\/127\.0\.0\.1:\d+)\//.exec(stderr);
      if (m !== null) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`exited early: ${stderr}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const url = await ready;
    assert.match(stderr, /rwkv-ts-default \(RWKV v4, 4 layers × 256/);
    const cli = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await cli.completions.create({ model: 'x', prompt: 'The', max_tokens: 300, stream: true, temperature: 0 });
    let text = '';
    let finish: string | null = null;
    let signalled = false;
    for await (const chunk of stream) {
      if (!signalled) {
        child.kill('SIGTERM');
        signalled = true;
      }
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, 'length', 'the stream in flight ran to its end');
    assert.equal(Buffer.byteLength(text), 300);
    assert.equal(await exited, 0);
    assert.match(stderr, /SIGTERM: finishing 1 request\(s\) in flight/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('constrained output: grammar on completions; response_format json_schema and json_object on chat give JSON that parses and validates; bad ones are 400s', async () => {
  const yesNo = await client.completions.create({ model: 'tiny', prompt: 'Is it so?', max_tokens: 10, grammar: 'root ::= " " ("yes" | "no")' } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.ok([' yes', ' no'].includes(yesNo.choices[0]!.text), yesNo.choices[0]!.text);
  assert.equal(yesNo.choices[0]!.finish_reason, 'stop', 'the grammar is complete: nothing may follow');

  const schema = {
    type: 'object',
    properties: { answer: { enum: ['yes', 'no'] }, count: { type: 'integer', minimum: 0, maximum: 99 }, name: { type: 'string', maxLength: 12 } },
    required: ['answer', 'count', 'name'],
    additionalProperties: false,
  };
  const validate = new Ajv().compile(schema);
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Describe the ship as a record.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'record', schema } },
      max_tokens: 200,
      seed,
    });
    const content = r.choices[0]!.message.content!;
    assert.equal(r.choices[0]!.finish_reason, 'stop', content);
    const value: unknown = JSON.parse(content);
    assert.ok(validate(value), `seed ${seed}: ${content} ${JSON.stringify(validate.errors)}`);
  }
  // Any JSON object: a finished answer parses; one cut by max_tokens is still a prefix of one.
  const matcher = new GrammarMatcher(parseGbnf(JSON_OBJECT_GBNF));
  for (const seed of [1, 2]) {
    const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'JSON please' }], response_format: { type: 'json_object' }, max_tokens: 120, seed });
    const content = r.choices[0]!.message.content!;
    if (r.choices[0]!.finish_reason === 'stop') assert.equal(typeof JSON.parse(content), 'object');
    else assert.ok(matcher.acceptText(matcher.initial(), content) !== undefined, content);
  }
  await assert.rejects(
    () => client.completions.create({ model: 'tiny', prompt: 'x', grammar: 'root ::= ("a"' } as OpenAI.CompletionCreateParamsNonStreaming),
    (e: unknown) => e instanceof BadRequestError && e.param === 'grammar' && /grammar:1:\d+: expected '\)'/.test(e.message),
  );
  await assert.rejects(
    () =>
      client.chat.completions.create({
        model: 'tiny',
        messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'string', pattern: '^a+$' } } },
      }),
    (e: unknown) => e instanceof BadRequestError && e.param === 'response_format.json_schema.schema' && /pattern/.test(e.message),
  );
});

test('a streaming client that stops reading holds its own generation back: flushed() waits for the socket to drain', async () => {
  const { SseStream } = await import('../src/server/sse.js');
  const { EventEmitter } = await import('node:events');
  // A reply whose socket buffer is full: write() queues, writableNeedDrain stays true until 'drain'.
  const raw = Object.assign(new EventEmitter(), {
    destroyed: false,
    writableNeedDrain: false,
    written: [] as string[],
    writeHead() {
      return raw;
    },
    write(chunk: string) {
      raw.written.push(chunk);
      raw.writableNeedDrain = true;
      return false;
    },
    end() {},
  });
  const reply = { raw, hijack() {}, getHeaders: () => ({}) } as unknown as import('fastify').FastifyReply;
  const sse = new SseStream(reply);
  sse.send({ n: 1 });
  let drained = false;
  const waiting = sse.flushed().then(() => (drained = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(drained, false, 'still waiting while the buffer is full');
  raw.writableNeedDrain = false;
  raw.emit('drain');
  await waiting;
  assert.equal(drained, true);
  assert.equal(raw.written.length, 1);
  // A client that went away does not keep a generation waiting.
  sse.send({ n: 2 });
  const gone = sse.flushed();
  raw.emit('close');
  await gone;
});
