// Errors as OpenAI's API gives them: an HTTP status and { error: { message, type, param, code } }. Every
// failure of a request becomes one of these (never a stack trace); clients (the openai SDK) branch on the
// status.
import { AbortError, ArgumentError, NonFiniteError, RwkvError, StateError } from '../errors.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'server_error' | 'unavailable_error';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: ApiErrorType;
  readonly param: string | null;
  readonly code: string | null;

  constructor(status: number, message: string, options: { type?: ApiErrorType; param?: string | null; code?: string | null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = options.type ?? (status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : status >= 500 ? 'server_error' : 'invalid_request_error');
    this.param = options.param ?? null;
    this.code = options.code ?? null;
  }

  get body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 invalid_request_error about one field of the request. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, { param, code });
}

/** One entry of a JSON-schema validation failure (Ajv's shape, as fastify passes it on). */
interface ValidationEntry {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
}

interface FrameworkError {
  statusCode?: number;
  code?: string;
  message: string;
  validation?: ValidationEntry[];
  validationContext?: string;
}

/**
 * Any error thrown while serving → the ApiError to send. The library's own errors keep their one-line
 * messages: a bad argument is the caller's (400), a corrupt model's NaN logits the server's (500).
 */
export function toApiError(e: unknown, body?: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof NonFiniteError) return new ApiError(500, e.message, { code: 'non_finite_logits' });
  if (e instanceof ArgumentError) return badRequest(e.message);
  if (e instanceof StateError) return badRequest(e.message, 'state', 'bad_state');
  if (e instanceof AbortError) return new ApiError(499, e.message, { code: 'aborted' });
  if (e instanceof RwkvError) return new ApiError(500, e.message);
  const f = e as FrameworkError;
  if (f !== null && typeof f === 'object' && Array.isArray(f.validation)) return validationError(f.validation, body);
  if (f !== null && typeof f === 'object' && typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    // fastify's own: bad JSON (400), body too large (413), unsupported content type (415).
    const message = f.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || f instanceof SyntaxError ? `the body is not valid JSON: ${f.message}` : f.message;
    return new ApiError(f.statusCode, message, { code: f.code ?? null });
  }
  return new ApiError(500, 'internal error', { code: 'internal_error' });
}

/** "temperature must be <= 2 (got 5)": every complaint about the first field at fault, with its value. */
function validationError(entries: readonly ValidationEntry[], body: unknown): ApiError {
  const first = entries[0];
  if (first === undefined) return badRequest('invalid request');
  // A missing property is reported at its parent, with the name in params.
  const missing = first.keyword === 'required' ? String(first.params?.['missingProperty'] ?? '') : undefined;
  const path = missing !== undefined ? `${first.instancePath}/${missing}` : first.instancePath;
  const param = paramName(path);
  if (missing !== undefined) return badRequest(`${param} is required`, param, 'missing_required_parameter');
  let complaints = [
    ...new Set(entries.filter((x) => x.instancePath === first.instancePath && x.keyword !== 'anyOf' && x.message !== undefined).map((x) => x.message!)),
  ];
  // Optional fields may be null: that alternative is noise beside the real complaint.
  if (complaints.length > 1) complaints = complaints.filter((m) => m !== 'must be null');
  const value = valueAt(body, first.instancePath);
  const got = value === undefined ? '' : ` (got ${shortJson(value)})`;
  const what = param === '' ? 'the body' : param;
  return badRequest(`${what} ${complaints.join(' or ') || 'is invalid'}${got}`, param === '' ? null : param, 'invalid_value');
}

/** "/messages/0/content" → "messages[0].content" (OpenAI's way of naming a parameter). */
function paramName(path: string): string {
  let out = '';
  for (const part of path.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(key) ? `[${key}]` : out === '' ? key : `.${key}`;
  }
  return out;
}

function valueAt(body: unknown, path: string): unknown {
  let v = body;
  for (const part of path.split('/').slice(1)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

function shortJson(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
