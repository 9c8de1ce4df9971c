// `rwkv serve`'s HTTP server (fastify): OpenAI's endpoints over one model, every request's passes through
// the model's Batcher (concurrent requests share each step), served with and without the /v1 prefix.
// Usable from the library too: `const server = await createServer({ model }); await server.listen()`.
import { timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { CHAT_TEMPLATES, type ChatTemplate } from '../generation/chat-template.js';
import type { Rwkv } from '../generation/rwkv.js';
import { ApiError, badRequest, toApiError } from './api-error.js';
import { chatCompletions, completions } from './completions.js';
import { checkStateId, requestWork, ServerContext } from './context.js';
import { ServerMetrics } from './metrics.js';
import { promptIds, promptList } from './request-options.js';
import { tokenText } from './responses.js';
import {
  ChatRequest,
  CompletionRequest,
  DetokenizeRequest,
  EmbeddingRequest,
  StateCreateRequest,
  TokenizeRequest,
} from './schemas.js';
import { MemoryStateStore, type StateStore } from './state-store.js';

export interface ServerOptions {
  /** The model, or its loading (the server answers /health with 503 until it is ready). */
  model: Rwkv | Promise<Rwkv>;
  /** The id clients see in /v1/models and responses. Default "rwkv". */
  modelId?: string;
  /** Requests must carry `Authorization: Bearer KEY` (all but /health and CORS preflights). */
  apiKey?: string;
  /** Chat template (default World: User/Assistant/System). */
  template?: ChatTemplate;
  /** Where named states live (the caller closes it). Default: in memory, owned and closed by the server. */
  states?: StateStore;
  /** Answer browsers' cross-origin requests (any origin). Default true. */
  cors?: boolean;
  /** Most tokens one request may generate (also chat's default max_tokens). Default 4096. */
  maxTokens?: number;
  /** Most tokens in one prompt. Default 32768. */
  maxPromptTokens?: number;
  /** fastify's request log (pino) on stdout. Default false. */
  logger?: boolean;
}

export class RwkvServer {
  readonly app: FastifyInstance;
  readonly context: ServerContext;
  /** Resolves once the model is loaded (rejects if it fails). */
  readonly ready: Promise<Rwkv>;

  private readonly ownsStates: boolean;

  private constructor(app: FastifyInstance, context: ServerContext, ready: Promise<Rwkv>, ownsStates: boolean) {
    this.app = app;
    this.context = context;
    this.ready = ready;
    this.ownsStates = ownsStates;
  }

  static async create(options: ServerOptions): Promise<RwkvServer> {
    const ctx: ServerContext = new ServerContext({
      modelId: options.modelId ?? 'rwkv',
      states: options.states ?? new MemoryStateStore(),
      metrics: new ServerMetrics((): Rwkv | undefined => ctx.loaded),
      limits: { maxTokens: options.maxTokens ?? 4096, maxPromptTokens: options.maxPromptTokens ?? 32768 },
      template: options.template ?? CHAT_TEMPLATES['world']!,
    });
    const ready = Promise.resolve(options.model).then(
      (rwkv) => {
        ctx.setModel(rwkv);
        return rwkv;
      },
      (e: unknown) => {
        ctx.setLoadError(e);
        throw e;
      },
    );
    ready.catch(() => {}); // reported through /health and ready's own awaiters
    const app = Fastify({
      logger: options.logger === true,
      // 16 MiB of JSON: long prompts as token ids; states are uploaded as octet-stream with their own limit.
      bodyLimit: 16 * 2 ** 20,
      // State ids are up to 128 characters (fastify's default cuts path parameters at 100).
      routerOptions: { maxParamLength: 256 },
      // Idle keep-alive connections are closed at shutdown; in-flight responses are finished first.
      forceCloseConnections: 'idle',
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: true } },
    });
    await routes(app, ctx, options);
    return new RwkvServer(app, ctx, ready, options.states === undefined);
  }

  /** Starts listening; returns the base URL ("http://127.0.0.1:8000"). */
  async listen(port = 8000, host = '127.0.0.1'): Promise<string> {
    await this.app.listen({ port, host });
    const address = this.app.server.address();
    const actual = typeof address === 'object' && address !== null ? address.port : port;
    return `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
  }

  /** Stops accepting connections, lets in-flight responses finish; closes the state store if it made it. */
  async close(): Promise<void> {
    await this.app.close();
    if (this.ownsStates) await this.context.states.close();
  }
}

async function routes(app: FastifyInstance, ctx: ServerContext, options: ServerOptions): Promise<void> {
  // Metrics and the request count: a response's end, whether fastify or a stream sent it.
  app.addHook('onRequest', async (request, reply) => {
    // A scrape is not work in flight: an idle server reads 0.
    const counted = !/^(\/v1)?\/metrics$/.test(request.routeOptions.url ?? '');
    if (counted) ctx.metrics.inFlight.inc();
    reply.raw.once('close', () => {
      if (counted) ctx.metrics.inFlight.dec();
      ctx.metrics.requests.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.raw.statusCode) });
    });
  });
  if (options.cors !== false) await app.register(cors, { origin: true, methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS'], maxAge: 600 });
  if (options.apiKey !== undefined) {
    const expected = Buffer.from(`Bearer ${options.apiKey}`);
    app.addHook('onRequest', async (request) => {
      if (request.method === 'OPTIONS' || isPublic(request.url)) return;
      const given = Buffer.from(request.headers.authorization ?? '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new ApiError(401, 'missing or wrong API key (send Authorization: Bearer KEY)', { type: 'invalid_request_error', code: 'invalid_api_key' });
      }
    });
  }
  app.setErrorHandler((error, request, reply) => {
    const e = toApiError(error, request.body);
    if (e.status === 500 && !(error instanceof ApiError)) request.log.error(error);
    if (e.status === 503) void reply.header('retry-after', '1');
    return reply.code(e.status).send(e.body);
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError(404, `no such endpoint: ${request.method} ${request.url.split('?')[0]}`, { code: 'not_found' });
    return reply.code(404).send(e.body);
  });
  // `curl -d` sends JSON as a form, some clients as text/plain: read them as the JSON they are.
  app.addContentTypeParser(['text/plain', 'application/x-www-form-urlencoded'], { parseAs: 'string' }, (request, body, done) => {
    app.getDefaultJsonParser('error', 'error')(request, String(body), done);
  });
  // State uploads: the bytes of a state file, up to the model's state size with room for its header.
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: 2 ** 30 }, (_request, body, done) => done(null, body));

  for (const prefix of ['', '/v1']) {
    app.get(`${prefix}/health`, async (_request, reply) => {
      ctx.rwkv();
      return reply.send({ status: 'ok' });
    });
    app.get(`${prefix}/models`, async () => {
      ctx.rwkv();
      return { object: 'list', data: [modelEntry(ctx)] };
    });
    app.get<{ Params: { id: string } }>(`${prefix}/models/:id`, async (request) => {
      ctx.rwkv();
      if (request.params.id !== ctx.modelId) throw new ApiError(404, `no model '${request.params.id}' here (this server has '${ctx.modelId}')`, { param: 'model', code: 'model_not_found' });
      return modelEntry(ctx);
    });
    app.post<{ Body: CompletionRequest }>(`${prefix}/completions`, { schema: { body: CompletionRequest } }, (request, reply) => completions(ctx, request, reply));
    app.post<{ Body: ChatRequest }>(`${prefix}/chat/completions`, { schema: { body: ChatRequest } }, (request, reply) => chatCompletions(ctx, request, reply));
    app.post<{ Body: EmbeddingRequest }>(`${prefix}/embeddings`, { schema: { body: EmbeddingRequest } }, (request, reply) => embeddings(ctx, request, reply));
    app.post<{ Body: TokenizeRequest }>(`${prefix}/tokenize`, { schema: { body: TokenizeRequest } }, async (request) => {
      const rwkv = ctx.rwkv();
      const ids = rwkv.encode(request.body.content);
      return { tokens: request.body.with_pieces === true ? ids.map((id) => ({ id, piece: tokenText(rwkv.tokenizer, id).text })) : ids };
    });
    app.post<{ Body: DetokenizeRequest }>(`${prefix}/detokenize`, { schema: { body: DetokenizeRequest } }, async (request) => {
      const rwkv = ctx.rwkv();
      return { content: rwkv.decode(promptIds(rwkv, request.body.tokens, 'tokens', { ...ctx.limits, maxPromptTokens: Infinity })) };
    });
    app.get(`${prefix}/metrics`, async (_request, reply) => {
      const text = await ctx.metrics.registry.metrics();
      return reply.type(ctx.metrics.registry.contentType).send(text);
    });
    stateRoutes(app, ctx, prefix);
  }
}

/** Paths that need no API key: health checks (load balancers send none). */
function isPublic(url: string): boolean {
  const path = url.split('?')[0];
  return path === '/health' || path === '/v1/health';
}

function modelEntry(ctx: ServerContext): Record<string, unknown> {
  const c = ctx.rwkv().config;
  return {
    id: ctx.modelId,
    object: 'model',
    created: ctx.loadedAt,
    owned_by: 'rwkv-ts',
    // Not OpenAI's: what the model is.
    meta: { architecture: `rwkv-${c.version}`, n_layer: c.nLayer, n_embd: c.nEmbd, n_vocab: c.nVocab },
  };
}

async function embeddings(ctx: ServerContext, request: FastifyRequest<{ Body: EmbeddingRequest }>, reply: FastifyReply): Promise<unknown> {
  const rwkv = ctx.rwkv();
  const body = request.body;
  if (body.dimensions != null && body.dimensions !== rwkv.config.nEmbd) {
    throw badRequest(`dimensions: this model's embeddings have ${rwkv.config.nEmbd} dimensions, not ${body.dimensions}`, 'dimensions', 'unsupported_value');
  }
  const inputs = promptList(body.input).map((p, i, all) => promptIds(rwkv, p, all.length > 1 ? `input[${i}]` : 'input', ctx.limits));
  const signal = requestWork(reply, () => ctx.metrics.aborted.inc({ route: 'embeddings' })).signal;
  const vectors = await rwkv.embed(inputs, { signal, ...(body.pooling != null ? { pooling: body.pooling } : {}) });
  const tokens = inputs.reduce((a, ids) => a + ids.length, 0);
  ctx.metrics.promptTokens.inc(tokens);
  return {
    object: 'list',
    model: ctx.modelId,
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      // base64: the float32 values' little-endian bytes (what the openai SDK asks for by default).
      embedding: body.encoding_format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
    })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** Named states (ai00's idea): read a prompt once, keep the state, continue from it in later requests. */
function stateRoutes(app: FastifyInstance, ctx: ServerContext, prefix: string): void {
  const described = (id: string, state: { tokenCount: number }, bytes: number): Record<string, unknown> => ({ id, object: 'state', tokens: state.tokenCount, bytes });
  app.post<{ Body: StateCreateRequest }>(`${prefix}/states`, { schema: { body: StateCreateRequest } }, async (request, reply) => {
    const rwkv = ctx.rwkv();
    const ids = promptIds(rwkv, request.body.prompt, 'prompt', ctx.limits);
    const state = request.body.state != null ? await ctx.loadState(request.body.state) : rwkv.createState();
    const signal = requestWork(reply, () => ctx.metrics.aborted.inc({ route: 'states' })).signal;
    // A fresh state reads the start token before an empty prompt, as generation does.
    await rwkv.feed(state, ids.length === 0 && state.logits === undefined ? [0] : ids, { signal });
    ctx.metrics.promptTokens.inc(ids.length);
    const bytes = rwkv.encodeState(state);
    const id = await ctx.saveState(state);
    return reply.code(201).send(described(id, state, bytes.byteLength));
  });
  app.get<{ Params: { id: string } }>(`${prefix}/states/:id`, async (request, reply) => {
    ctx.rwkv();
    checkStateId(request.params.id);
    const bytes = await ctx.states.get(request.params.id);
    if (bytes === undefined) throw new ApiError(404, `no state named '${request.params.id}'`, { param: 'id', code: 'state_not_found' });
    return reply
      .type('application/octet-stream')
      .header('content-disposition', `attachment; filename="${request.params.id}.rwkvstate"`)
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  app.put<{ Params: { id: string }; Body: Buffer }>(`${prefix}/states/:id`, async (request) => {
    const rwkv = ctx.rwkv();
    checkStateId(request.params.id);
    if (!Buffer.isBuffer(request.body)) throw badRequest('send the state file as the body, with Content-Type: application/octet-stream', 'body', 'invalid_value');
    // Its header must describe this model (version, shape, weights' fingerprint): checked by decoding it.
    const state = rwkv.decodeState(new Uint8Array(request.body.buffer, request.body.byteOffset, request.body.byteLength), `uploaded state '${request.params.id}'`);
    await ctx.states.put(request.params.id, new Uint8Array(request.body));
    return described(request.params.id, state, request.body.byteLength);
  });
  app.delete<{ Params: { id: string } }>(`${prefix}/states/:id`, async (request) => {
    ctx.rwkv();
    checkStateId(request.params.id);
    if (!(await ctx.states.delete(request.params.id))) throw new ApiError(404, `no state named '${request.params.id}'`, { param: 'id', code: 'state_not_found' });
    return { id: request.params.id, object: 'state', deleted: true };
  });
}
