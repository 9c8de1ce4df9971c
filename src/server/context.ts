// What every route of the server shares: the model (once loaded), the state store, metrics and limits.
import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { ChatTemplate } from '../generation/chat-template.js';
import type { RwkvState } from '../generation/context.js';
import type { Rwkv } from '../generation/rwkv.js';
import { ApiError } from './api-error.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerLimits } from './request-options.js';
import { STATE_ID_PATTERN } from './schemas.js';
import type { StateStore } from './state-store.js';

export class ServerContext {
  readonly modelId: string;
  readonly states: StateStore;
  readonly metrics: ServerMetrics;
  readonly limits: ServerLimits;
  readonly template: ChatTemplate;
  /** Seconds since the epoch when the model finished loading (`created` of /v1/models). */
  loadedAt = 0;
  private model: Rwkv | undefined;
  private loadError: unknown;

  constructor(init: { modelId: string; states: StateStore; metrics: ServerMetrics; limits: ServerLimits; template: ChatTemplate }) {
    this.modelId = init.modelId;
    this.states = init.states;
    this.metrics = init.metrics;
    this.limits = init.limits;
    this.template = init.template;
  }

  setModel(rwkv: Rwkv): void {
    this.model = rwkv;
    this.loadedAt = Math.floor(Date.now() / 1000);
  }

  setLoadError(e: unknown): void {
    this.loadError = e;
  }

  get loaded(): Rwkv | undefined {
    return this.model;
  }

  /** The model, or 503 (with Retry-After) while it loads. */
  rwkv(): Rwkv {
    if (this.model !== undefined) return this.model;
    if (this.loadError !== undefined) {
      throw new ApiError(503, `the model failed to load: ${this.loadError instanceof Error ? this.loadError.message : String(this.loadError)}`, { code: 'model_load_failed' });
    }
    throw new ApiError(503, 'the model is loading; try again shortly', { type: 'unavailable_error', code: 'model_loading' });
  }

  /** A named state's own copy (decoded from its stored bytes), or 404 naming it. */
  async loadState(id: string, param = 'state'): Promise<RwkvState> {
    const rwkv = this.rwkv();
    checkStateId(id, param);
    const bytes = await this.states.get(id);
    if (bytes === undefined) throw new ApiError(404, `no state named '${id}' (POST /v1/states makes one; return_state: true keeps a request's)`, { param, code: 'state_not_found' });
    return rwkv.decodeState(bytes, `state '${id}'`);
  }

  /** Stores `state` under a new id (or `id`) and returns the id. */
  async saveState(state: RwkvState, id: string = `state-${randomUUID()}`): Promise<string> {
    await this.states.put(id, this.rwkv().encodeState(state));
    return id;
  }
}

export function checkStateId(id: string, param = 'id'): void {
  if (!STATE_ID_PATTERN.test(id)) {
    throw new ApiError(400, `'${id.slice(0, 40)}' is not a state id (1–128 of A–Z a–z 0–9 _ . -)`, { param, code: 'invalid_value' });
  }
}

/**
 * The request's work: aborted when the client goes away before its response has been sent (the connection
 * closed) — its prompt reading or generation stops at the next pass and its slot in the batch is freed —
 * and by the handler itself when one part of the request fails (the other choices stop too).
 */
export function requestWork(reply: FastifyReply, onClientGone: () => void): AbortController {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished && !controller.signal.aborted) {
      controller.abort();
      onClientGone();
    }
  });
  return controller;
}

/** A response id: "cmpl-…", "chatcmpl-…". */
export function responseId(prefix: string): string {
  return `${prefix}-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
}
