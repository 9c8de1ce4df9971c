// A load driver for `rwkv serve` (src/server): N concurrent streaming clients over loopback with plain
// fetch, some leaving mid-stream, some sending malformed bodies. It checks every stream (well-formed SSE,
// one id per stream, exactly one finish_reason chunk, ends with [DONE]), that each client got only its
// own tokens, that each malformed request got the right 4xx with OpenAI's error body, and times each
// stream (time to first token, tokens/s). Used by test/server-load.test.ts (small) and bench/serve.ts (full).
//
// Knowing every client's text in advance. A batched pass is not bit-identical to a one-sequence pass
// (other kernels, other summation order: equal to ~1e-5), so a sampled continuation computed alone may
// legitimately differ from the same request run in a batch when two tokens are near a tie. So the strict
// check forces the text: each 'forced' client biases one token (one character, distinct per client) by
// +100, and every token it draws is that one whatever the batch; its prompt and seed are its own too.
// 'seeded' clients draw freely with their own seed; their text is computed in advance by running the same
// request alone, and a difference is reported (nearTieDivergences), not counted as a violation.
import { Rng } from '../src/util/rng.js';

export type ClientKind = 'complete' | 'disconnect' | 'malformed';
export type Endpoint = 'completions' | 'chat';
export type MalformedKind = 'invalid-json' | 'wrong-type' | 'out-of-range' | 'unknown-path' | 'missing-field';

const MALFORMED_KINDS: readonly MalformedKind[] = ['invalid-json', 'wrong-type', 'out-of-range', 'unknown-path', 'missing-field'];
/** Characters that may force a client's text (each must be one token of the model's tokenizer). */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

export interface ServeLoadOptions {
  /** Clients, all started at once. */
  clients: number;
  /** Of them, this fraction leave mid-stream (after a random number of chunks). Default 0.2. */
  disconnectFraction?: number;
  /** This fraction send a malformed request instead. Default 0.2. */
  malformedFraction?: number;
  /** Tokens each completing client asks for. */
  maxTokens: number;
  /**
   * Tokens a leaving client asks for: more than it will read, so that the server is still generating when
   * it leaves (its work must stop). Default 8 × maxTokens.
   */
  disconnectMaxTokens?: number;
  /** Of the completing clients, this fraction draw freely (text checked against a solo run). Default 0. */
  seededFraction?: number;
  /** Of all clients, this fraction use /v1/chat/completions, the rest /v1/completions. Default 0.5. */
  chatFraction?: number;
  /** Drives who does what, where clients leave, and the requests' seeds. Default 1. */
  seed?: number;
  /** A client not done after this long is cut off and counted as a violation. Default 120 s. */
  timeoutMs?: number;
}

export interface ClientPlan {
  index: number;
  kind: ClientKind;
  endpoint: Endpoint;
  /** forced: one biased token; seeded: free sampling with its seed. */
  mode: 'forced' | 'seeded' | undefined;
  malformed: MalformedKind | undefined;
  body: Record<string, unknown>;
  /** The text it must receive (for a leaving client, what it receives must be a prefix of it). */
  expected: string | undefined;
  maxTokens: number;
  /** A leaving client leaves once it has read this many content chunks (0: right after the headers). */
  leaveAfter: number | undefined;
}

export interface ClientResult {
  index: number;
  kind: ClientKind;
  endpoint: Endpoint;
  mode: 'forced' | 'seeded' | undefined;
  malformed: MalformedKind | undefined;
  status: number | undefined;
  text: string;
  expected: string | undefined;
  /** usage.completion_tokens (completing clients), else the content chunks read. */
  tokens: number;
  finishReason: string | undefined;
  /** From sending the request to the first chunk with text. */
  ttftMs: number | undefined;
  /** From sending the request to [DONE] (or to leaving). */
  durationMs: number;
  /** (tokens − 1) / (last token − first token): the stream's rate once it has started. */
  tokensPerSecond: number | undefined;
  startedAt: number;
  endedAt: number;
  /** A leaving client: whether it really left before the end ([DONE] not yet read). */
  leftMidStream: boolean | undefined;
  /** Broken stream or error shape. */
  violations: string[];
  /** Text that is not its own. */
  crossTalk: string | undefined;
  /** A seeded client whose text differs from its solo run: where (a batched near-tie; reported only). */
  divergence: { at: number; expected: string; got: string } | undefined;
}

export interface ServeLoadResult {
  clients: ClientResult[];
  completed: number;
  disconnected: number;
  malformed: number;
  /** "client 7: …" for every broken stream, wrong error answer, timeout or mid-stream error. */
  wellFormedViolations: string[];
  /** "client 7: …" for every client whose text was not its own. */
  crossTalkViolations: string[];
  /** Seeded clients whose text differed from their solo run (not violations: see the file's head). */
  nearTieDivergences: string[];
  /** Forced texts were all distinct (false beyond ALPHABET's 62 forced clients: cross-talk between two
   *  clients forced to the same character could not be seen). */
  distinctTexts: boolean;
  /** Completing clients only. */
  ttftMs: number[];
  streamTokensPerSecond: number[];
  ttft: { p50: number; p99: number } | undefined;
  streamRate: { p50: number; min: number; max: number } | undefined;
  /** Tokens of the completing streams ÷ the time from the first request to the last [DONE]. */
  aggregateTokensPerSecond: number;
  completedTokens: number;
  /** Content chunks the leaving clients read before leaving. */
  disconnectedTokens: number;
  wallMs: number;
}

/** Nearest-rank percentile (p in 0..100) of xs; with few values p99 is the largest. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function postJson(baseUrl: string, path: string, body: unknown): Promise<unknown> {
  const r = await fetch(`${baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json: unknown = await r.json();
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${JSON.stringify(json)}`);
  return json;
}

/** Per server: repeated plans (a benchmark's runs) ask the server once. */
const charsByServer = new Map<string, Promise<{ char: string; id: number }[]>>();

/** The characters of ALPHABET that are one token each in the server's tokenizer, with their ids. */
function singleTokenChars(baseUrl: string): Promise<{ char: string; id: number }[]> {
  let found = charsByServer.get(baseUrl);
  if (found === undefined) {
    found = askSingleTokenChars(baseUrl);
    found.catch(() => charsByServer.delete(baseUrl));
    charsByServer.set(baseUrl, found);
  }
  return found;
}

async function askSingleTokenChars(baseUrl: string): Promise<{ char: string; id: number }[]> {
  const out: { char: string; id: number }[] = [];
  for (const char of ALPHABET) {
    const r = (await postJson(baseUrl, '/v1/tokenize', { content: char })) as { tokens: number[] };
    if (r.tokens.length !== 1) continue;
    // The id must decode back to the character alone, so that n of them decode to n characters.
    const d = (await postJson(baseUrl, '/v1/detokenize', { tokens: [r.tokens[0], r.tokens[0]] })) as { content: string };
    if (d.content === char + char) out.push({ char, id: r.tokens[0]! });
  }
  if (out.length === 0) throw new Error('no character of [a-zA-Z0-9] is a single token of this server\'s tokenizer');
  return out;
}

function requestBody(endpoint: Endpoint, index: number, seed: number, maxTokens: number, bias: number | undefined): Record<string, unknown> {
  const common = {
    max_tokens: maxTokens,
    stream: true,
    stream_options: { include_usage: true },
    seed,
    temperature: 1,
    ...(bias !== undefined ? { logit_bias: { [String(bias)]: 100 } } : {}),
  };
  // Each client's prompt is its own too, so that even its unforced logits differ from its neighbours'.
  if (endpoint === 'completions') return { ...common, prompt: `Client ${index} (seed ${seed}) says:` };
  return { ...common, messages: [{ role: 'user', content: `I am client ${index} (seed ${seed}). Tell me something.` }] };
}

function malformedRequest(kind: MalformedKind, index: number): { path: string; body: string; status: number; param: string | null; type: string } {
  switch (kind) {
    case 'invalid-json':
      return { path: '/v1/completions', body: `{"prompt": "client ${index}", "max_tokens": `, status: 400, param: null, type: 'invalid_request_error' };
    case 'wrong-type':
      return { path: '/v1/completions', body: JSON.stringify({ prompt: `client ${index}`, max_tokens: 'ten', stream: true }), status: 400, param: 'max_tokens', type: 'invalid_request_error' };
    case 'out-of-range':
      return {
        path: '/v1/chat/completions',
        body: JSON.stringify({ messages: [{ role: 'user', content: `client ${index}` }], temperature: 5, stream: true }),
        status: 400,
        param: 'temperature',
        type: 'invalid_request_error',
      };
    case 'unknown-path':
      return { path: '/v1/complete', body: JSON.stringify({ prompt: `client ${index}`, stream: true }), status: 404, param: null, type: 'not_found_error' };
    case 'missing-field':
      return { path: '/v1/chat/completions', body: JSON.stringify({ max_tokens: 4, stream: true }), status: 400, param: 'messages', type: 'invalid_request_error' };
  }
}

/**
 * Who does what: a seeded shuffle picks the leaving and malformed clients; the forced ones get distinct
 * characters; the seeded ones' texts are computed now, one request at a time (no batching partner).
 */
export async function planServeLoad(baseUrl: string, options: ServeLoadOptions): Promise<ClientPlan[]> {
  const n = options.clients;
  const seed = options.seed ?? 1;
  const rng = new Rng(seed);
  const leaving = Math.round(n * (options.disconnectFraction ?? 0.2));
  const malformed = Math.min(n - leaving, Math.round(n * (options.malformedFraction ?? 0.2)));
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const kinds: ClientKind[] = new Array<ClientKind>(n).fill('complete');
  order.slice(0, leaving).forEach((i) => (kinds[i] = 'disconnect'));
  order.slice(leaving, leaving + malformed).forEach((i) => (kinds[i] = 'malformed'));
  const completing = kinds.map((k, i) => (k === 'complete' ? i : -1)).filter((i) => i >= 0);
  const seeded = new Set(completing.filter((_, j) => j < Math.round(completing.length * (options.seededFraction ?? 0))));
  const chatEvery = options.chatFraction ?? 0.5;
  const chars = await singleTokenChars(baseUrl);
  const disconnectMax = options.disconnectMaxTokens ?? 8 * options.maxTokens;

  const plans: ClientPlan[] = [];
  let forcedCount = 0;
  let malformedCount = 0;
  for (let i = 0; i < n; i++) {
    // Chat for the clients whose position in [0, 1) falls below chatFraction, spread evenly.
    const endpoint: Endpoint = Math.floor((i + 1) * chatEvery) > Math.floor(i * chatEvery) ? 'chat' : 'completions';
    const requestSeed = (seed * 1000 + i) >>> 0;
    const kind = kinds[i]!;
    if (kind === 'malformed') {
      const m = MALFORMED_KINDS[malformedCount++ % MALFORMED_KINDS.length]!;
      plans.push({ index: i, kind, endpoint, mode: undefined, malformed: m, body: {}, expected: undefined, maxTokens: 0, leaveAfter: undefined });
      continue;
    }
    const maxTokens = kind === 'disconnect' ? disconnectMax : options.maxTokens;
    if (seeded.has(i)) {
      plans.push({ index: i, kind, endpoint, mode: 'seeded', malformed: undefined, body: requestBody(endpoint, i, requestSeed, maxTokens, undefined), expected: undefined, maxTokens, leaveAfter: undefined });
      continue;
    }
    const c = chars[forcedCount++ % chars.length]!;
    plans.push({
      index: i,
      kind,
      endpoint,
      mode: 'forced',
      malformed: undefined,
      body: requestBody(endpoint, i, requestSeed, maxTokens, c.id),
      expected: c.char.repeat(maxTokens),
      maxTokens,
      // Anywhere from right after the headers to one chunk before the completing clients' length.
      leaveAfter: kind === 'disconnect' ? Math.floor(rng.next() * options.maxTokens) : undefined,
    });
  }
  // The seeded clients' texts, each run alone.
  for (const p of plans) {
    if (p.mode !== 'seeded') continue;
    const solo = await runClient(baseUrl, p, options.timeoutMs ?? 120_000);
    if (solo.violations.length > 0) throw new Error(`client ${p.index}'s solo run: ${solo.violations.join('; ')}`);
    p.expected = solo.text;
  }
  return plans;
}

/** Splits a byte stream into SSE events ("data: …" blocks ended by a blank line). */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = body.getReader();
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        yield buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
      }
    }
  } finally {
    // A consumer that stops early lets go of the body (a leaving client has already aborted the fetch).
    if (!ended) reader.cancel().catch(() => {});
  }
  buffer += decoder.decode();
  // Anything left is an event without its blank line: returned so that the checker can complain.
  if (buffer !== '') yield buffer;
}

interface ChunkJson {
  id?: unknown;
  object?: unknown;
  created?: unknown;
  model?: unknown;
  choices?: unknown;
  usage?: unknown;
  error?: unknown;
}

/** Runs one client's request to its end (or until it leaves); checks what it got. */
async function runClient(baseUrl: string, plan: ClientPlan, timeoutMs: number): Promise<ClientResult> {
  const result: ClientResult = {
    index: plan.index,
    kind: plan.kind,
    endpoint: plan.endpoint,
    mode: plan.mode,
    malformed: plan.malformed,
    status: undefined,
    text: '',
    expected: plan.expected,
    tokens: 0,
    finishReason: undefined,
    ttftMs: undefined,
    durationMs: 0,
    tokensPerSecond: undefined,
    startedAt: performance.now(),
    endedAt: 0,
    leftMidStream: undefined,
    violations: [],
    crossTalk: undefined,
    divergence: undefined,
  };
  const bad = (m: string): void => void result.violations.push(m);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  try {
    if (plan.kind === 'malformed') await runMalformed(baseUrl, plan, result, controller.signal);
    else await runStream(baseUrl, plan, result, controller);
  } catch (e) {
    if (timedOut) bad(`no answer within ${timeoutMs} ms`);
    else if (!(plan.kind === 'disconnect' && controller.signal.aborted)) bad(`request failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearTimeout(timer);
    result.endedAt = performance.now();
    result.durationMs = result.endedAt - result.startedAt;
  }
  return result;
}

async function runMalformed(baseUrl: string, plan: ClientPlan, result: ClientResult, signal: AbortSignal): Promise<void> {
  const m = malformedRequest(plan.malformed!, plan.index);
  const r = await fetch(`${baseUrl}${m.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: m.body, signal });
  result.status = r.status;
  const text = await r.text();
  if (r.status !== m.status) result.violations.push(`${plan.malformed}: HTTP ${r.status}, expected ${m.status}`);
  if (!(r.headers.get('content-type') ?? '').startsWith('application/json')) result.violations.push(`${plan.malformed}: content-type ${r.headers.get('content-type')}`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    result.violations.push(`${plan.malformed}: the error body is not JSON: ${text.slice(0, 80)}`);
    return;
  }
  const e = (body as { error?: Record<string, unknown> }).error;
  const shapeOk =
    e !== null &&
    typeof e === 'object' &&
    typeof e['message'] === 'string' &&
    e['message'] !== '' &&
    typeof e['type'] === 'string' &&
    (e['param'] === null || typeof e['param'] === 'string') &&
    (e['code'] === null || typeof e['code'] === 'string') &&
    Object.keys(body as object).length === 1;
  if (!shapeOk) {
    result.violations.push(`${plan.malformed}: not {error:{message,type,param,code}}: ${text.slice(0, 120)}`);
    return;
  }
  if (e['type'] !== m.type) result.violations.push(`${plan.malformed}: error type ${String(e['type'])}, expected ${m.type}`);
  if (e['param'] !== m.param) result.violations.push(`${plan.malformed}: param ${String(e['param'])}, expected ${String(m.param)}`);
}

async function runStream(baseUrl: string, plan: ClientPlan, result: ClientResult, controller: AbortController): Promise<void> {
  const bad = (m: string): void => void result.violations.push(m);
  const path = plan.endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
  const object = plan.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const r = await fetch(`${baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(plan.body), signal: controller.signal });
  result.status = r.status;
  if (r.status !== 200 || r.body === null) {
    bad(`HTTP ${r.status}: ${(await r.text()).slice(0, 200)}`);
    return;
  }
  if (!(r.headers.get('content-type') ?? '').startsWith('text/event-stream')) bad(`content-type ${r.headers.get('content-type')}`);
  let id: unknown;
  let created: unknown;
  let model: unknown;
  let chunks = 0;
  let contentChunks = 0;
  let finishes = 0;
  let usageTokens: number | undefined;
  let done = false;
  let firstAt: number | undefined;
  let lastAt: number | undefined;
  const leave = (): boolean => {
    if (plan.leaveAfter === undefined || contentChunks < plan.leaveAfter) return false;
    result.leftMidStream = !done;
    controller.abort();
    return true;
  };
  if (leave()) return;
  try {
    for await (const event of sseEvents(r.body)) {
      if (done) {
        bad(`an event after [DONE]: ${event.slice(0, 80)}`);
        break;
      }
      if (!event.startsWith('data: ') || event.includes('\n')) {
        bad(`not one "data: " line: ${JSON.stringify(event.slice(0, 80))}`);
        continue;
      }
      const data = event.slice(6);
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      let c: ChunkJson;
      try {
        c = JSON.parse(data) as ChunkJson;
      } catch {
        bad(`not JSON: ${data.slice(0, 80)}`);
        continue;
      }
      if (c.error !== undefined) {
        bad(`error mid-stream: ${JSON.stringify(c.error).slice(0, 200)}`);
        continue;
      }
      chunks++;
      if (chunks === 1) {
        ({ id, created, model } = c);
        if (typeof id !== 'string' || id === '') bad(`id ${JSON.stringify(id)}`);
        if (typeof created !== 'number') bad(`created ${JSON.stringify(created)}`);
        if (typeof model !== 'string') bad(`model ${JSON.stringify(model)}`);
      } else if (c.id !== id || c.created !== created || c.model !== model) {
        bad(`chunk ${chunks}: id/created/model ${JSON.stringify([c.id, c.created, c.model])} after ${JSON.stringify([id, created, model])}`);
      }
      if (c.object !== object) bad(`chunk ${chunks}: object ${JSON.stringify(c.object)}, expected ${object}`);
      if (!Array.isArray(c.choices)) {
        bad(`chunk ${chunks}: no choices`);
        continue;
      }
      if (c.choices.length === 0) {
        // The usage chunk (stream_options.include_usage): once, after the finish_reason chunk.
        const u = c.usage as { completion_tokens?: unknown } | undefined;
        if (finishes !== 1 || usageTokens !== undefined) bad(`chunk ${chunks}: a usage chunk out of place`);
        if (u === undefined || typeof u.completion_tokens !== 'number') bad(`chunk ${chunks}: choices [] without usage`);
        else usageTokens = u.completion_tokens;
        continue;
      }
      if (c.choices.length !== 1) bad(`chunk ${chunks}: ${c.choices.length} choices`);
      const choice = c.choices[0] as { index?: unknown; text?: unknown; delta?: { role?: unknown; content?: unknown }; finish_reason?: unknown };
      if (choice.index !== 0) bad(`chunk ${chunks}: choice index ${JSON.stringify(choice.index)}`);
      let piece: unknown;
      if (plan.endpoint === 'chat') {
        if (typeof choice.delta !== 'object' || choice.delta === null) {
          bad(`chunk ${chunks}: no delta`);
          continue;
        }
        if (chunks === 1 && choice.delta.role !== 'assistant') bad(`the first chunk's delta.role is ${JSON.stringify(choice.delta.role)}`);
        if (chunks > 1 && choice.delta.role !== undefined) bad(`chunk ${chunks}: a role again`);
        piece = choice.delta.content ?? '';
      } else piece = choice.text;
      if (typeof piece !== 'string') {
        bad(`chunk ${chunks}: text ${JSON.stringify(piece)}`);
        continue;
      }
      if (choice.finish_reason !== null) {
        finishes++;
        if (finishes > 1) bad(`chunk ${chunks}: a second finish_reason`);
        if (choice.finish_reason !== 'length' && choice.finish_reason !== 'stop') bad(`finish_reason ${JSON.stringify(choice.finish_reason)}`);
        result.finishReason = String(choice.finish_reason);
        if (piece !== '') bad(`the finish_reason chunk carries text ${JSON.stringify(piece)}`);
        continue;
      }
      if (finishes > 0) bad(`chunk ${chunks}: text after the finish_reason chunk`);
      if (piece === '') continue;
      const now = performance.now();
      firstAt ??= now;
      lastAt = now;
      result.text += piece;
      contentChunks++;
      if (leave()) return;
    }
  } catch (e) {
    // The stream broke (a leaving client's own abort is not a failure).
    if (!(plan.kind === 'disconnect' && controller.signal.aborted)) throw e;
  } finally {
    result.tokens = usageTokens ?? contentChunks;
    if (firstAt !== undefined) result.ttftMs = firstAt - result.startedAt;
    if (firstAt !== undefined && lastAt !== undefined && result.tokens > 1 && lastAt > firstAt) result.tokensPerSecond = ((result.tokens - 1) * 1000) / (lastAt - firstAt);
    checkText(plan, result);
  }
  if (plan.kind === 'disconnect') {
    // It asked for more than it meant to read, so it should always leave before the end.
    if (result.leftMidStream === undefined) result.leftMidStream = false;
    return;
  }
  if (!done) bad('no [DONE] at the end');
  if (finishes !== 1) bad(`${finishes} finish_reason chunks`);
  if (usageTokens === undefined) bad('no usage chunk');
  if (plan.mode === 'forced') {
    if (result.finishReason !== 'length') bad(`finish_reason ${result.finishReason}, expected length (a forced text never stops)`);
    if (usageTokens !== undefined && usageTokens !== plan.maxTokens) bad(`usage.completion_tokens ${usageTokens}, expected ${plan.maxTokens}`);
  } else if (usageTokens !== undefined && usageTokens > plan.maxTokens) bad(`usage.completion_tokens ${usageTokens} > max_tokens ${plan.maxTokens}`);
}

/** Its own text: equal to the expected one (a prefix of it for a client that left). */
function checkText(plan: ClientPlan, result: ClientResult): void {
  const expected = plan.expected;
  if (expected === undefined) return;
  const got = result.text;
  const ok = plan.kind === 'disconnect' ? expected.startsWith(got) : got === expected;
  if (ok) return;
  let at = 0;
  while (at < got.length && got[at] === expected[at]) at++;
  const where = { at, expected: expected.slice(at, at + 20), got: got.slice(at, at + 20) };
  if (plan.mode === 'seeded') result.divergence = where;
  else result.crossTalk = `at character ${at}: expected ${JSON.stringify(where.expected)}…, got ${JSON.stringify(where.got)}… (${got.length} of ${expected.length} characters)`;
}

/** Runs a planned load: every client at once. */
export async function runPlannedLoad(baseUrl: string, plans: readonly ClientPlan[], options: Pick<ServeLoadOptions, 'timeoutMs'> = {}): Promise<ServeLoadResult> {
  const t0 = performance.now();
  const clients = await Promise.all(plans.map((p) => runClient(baseUrl, p, options.timeoutMs ?? 120_000)));
  const wallMs = performance.now() - t0;
  const completing = clients.filter((c) => c.kind === 'complete');
  const ttftMs = completing.map((c) => c.ttftMs).filter((x): x is number => x !== undefined);
  const rates = completing.map((c) => c.tokensPerSecond).filter((x): x is number => x !== undefined);
  const completedTokens = completing.reduce((a, c) => a + c.tokens, 0);
  const span = completing.length === 0 ? 0 : Math.max(...completing.map((c) => c.endedAt)) - Math.min(...completing.map((c) => c.startedAt));
  const forced = plans.filter((p) => p.mode === 'forced');
  return {
    clients,
    completed: completing.length,
    disconnected: clients.filter((c) => c.kind === 'disconnect').length,
    malformed: clients.filter((c) => c.kind === 'malformed').length,
    wellFormedViolations: clients.flatMap((c) => c.violations.map((v) => `client ${c.index} (${c.kind}, ${c.endpoint}): ${v}`)),
    crossTalkViolations: clients.filter((c) => c.crossTalk !== undefined).map((c) => `client ${c.index} (${c.kind}, ${c.endpoint}): ${c.crossTalk}`),
    nearTieDivergences: clients
      .filter((c) => c.divergence !== undefined)
      .map((c) => `client ${c.index} (${c.endpoint}): at character ${c.divergence!.at}: solo ${JSON.stringify(c.divergence!.expected)}, batched ${JSON.stringify(c.divergence!.got)}`),
    distinctTexts: new Set(forced.map((p) => p.expected!.charAt(0))).size === forced.length,
    ttftMs,
    streamTokensPerSecond: rates,
    ttft: ttftMs.length > 0 ? { p50: percentile(ttftMs, 50), p99: percentile(ttftMs, 99) } : undefined,
    streamRate: rates.length > 0 ? { p50: percentile(rates, 50), min: Math.min(...rates), max: Math.max(...rates) } : undefined,
    aggregateTokensPerSecond: span > 0 ? (completedTokens * 1000) / span : 0,
    completedTokens,
    disconnectedTokens: clients.filter((c) => c.kind === 'disconnect').reduce((a, c) => a + c.tokens, 0),
    wallMs,
  };
}

/** Plans and runs a load in one call. */
export async function runServeLoad(baseUrl: string, options: ServeLoadOptions): Promise<ServeLoadResult> {
  const plans = await planServeLoad(baseUrl, options);
  return runPlannedLoad(baseUrl, plans, options);
}

/** GET /metrics → each sample's value by its name with labels ("rwkv_requests_total{route=…}") and the sum by bare name. */
export async function scrapeMetrics(baseUrl: string): Promise<Map<string, number>> {
  const r = await fetch(`${baseUrl}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics: HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (m === null) continue;
    const value = Number(m[3]);
    if (m[2] !== undefined) out.set(m[1]! + m[2], value);
    out.set(m[1]!, (m[2] !== undefined ? (out.get(m[1]!) ?? 0) : 0) + value);
  }
  return out;
}

/**
 * Waits until the server is idle: nothing queued for a pass and no request in flight (a scrape is not
 * counted in rwkv_requests_in_flight). Returns the last scrape.
 */
export async function waitIdle(baseUrl: string, timeoutMs = 10_000): Promise<Map<string, number>> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const m = await scrapeMetrics(baseUrl);
    if ((m.get('rwkv_requests_in_flight') ?? 0) === 0 && (m.get('rwkv_queue_length') ?? 0) === 0) return m;
    if (performance.now() > until) return m;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
