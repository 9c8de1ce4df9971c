// A request's fields → the library's generation options, with OpenAI's defaults and semantics (checked
// here, beyond what the JSON schema can say, so that every refusal is a 400 naming its parameter).
import type { Rwkv, RwkvGenerateOptions } from '../generation/rwkv.js';
import { RwkvError } from '../errors.js';
import { GrammarError, parseGbnf, type Grammar } from '../grammar/gbnf.js';
import { JSON_OBJECT_GBNF } from '../grammar/json.js';
import { jsonSchemaToGbnf } from '../grammar/json-schema.js';
import { badRequest } from './api-error.js';
import type { ChatRequest, CompletionRequest } from './schemas.js';

export interface ServerLimits {
  /** Most tokens one request may ask to generate. */
  maxTokens: number;
  /** Most tokens in one prompt. */
  maxPromptTokens: number;
}

type SamplingRequest = Pick<
  CompletionRequest & ChatRequest,
  'temperature' | 'top_p' | 'top_k' | 'min_p' | 'presence_penalty' | 'frequency_penalty' | 'penalty_decay' | 'logit_bias' | 'stop' | 'seed' | 'n' | 'grammar'
>;

/**
 * Sampling as OpenAI defines it: temperature 1 and top-p 1 by default; penalties count every generated
 * token (no decay unless `penalty_decay` is given, no exemption of spaces and digits as ChatRWKV has).
 */
export function generateOptionsOf(rwkv: Rwkv, body: SamplingRequest, maxTokens: number, limits: ServerLimits): Omit<RwkvGenerateOptions, 'state' | 'signal'> {
  if (body.n != null && body.n > 1) throw badRequest('n > 1 is not supported: ask for one choice per request (several requests run batched)', 'n', 'unsupported_value');
  if (maxTokens > limits.maxTokens) {
    throw badRequest(`max_tokens is ${maxTokens}, more than this server allows (${limits.maxTokens}; rwkv serve --max-tokens)`, 'max_tokens', 'invalid_value');
  }
  if (body.seed != null && (body.seed < 0 || body.seed > 2 ** 32 - 1)) {
    throw badRequest(`seed must be an integer in 0..4294967295 (the generator is seeded with 32 bits), got ${body.seed}`, 'seed', 'invalid_value');
  }
  const logitBias = new Map<number, number>();
  for (const [key, bias] of Object.entries(body.logit_bias ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= rwkv.config.nVocab) {
      throw badRequest(`logit_bias: ${JSON.stringify(key)} is not a token id (the vocabulary is 0..${rwkv.config.nVocab - 1})`, 'logit_bias', 'invalid_value');
    }
    logitBias.set(id, bias);
  }
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  let grammar: Grammar | undefined;
  if (body.grammar != null && body.grammar !== '') grammar = parseGrammarField(body.grammar, 'grammar');
  // top_p 0 keeps only the most likely token: greedy.
  const greedy = body.temperature === 0 || body.top_p === 0;
  return {
    maxTokens,
    temperature: greedy ? 0 : (body.temperature ?? 1),
    topP: greedy ? 1 : (body.top_p ?? 1),
    topK: body.top_k ?? 0,
    minP: body.min_p ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    penaltyDecay: body.penalty_decay ?? 1,
    exemptWhitespaceAndDigits: false,
    logitBias,
    // OpenAI ignores empty stop strings; the library refuses them (they would match at once).
    stop: stop.filter((s) => s !== ''),
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...(grammar !== undefined ? { grammar } : {}),
  };
}

/** GBNF text from a request → a grammar, or 400 naming the field and the line and column at fault. */
export function parseGrammarField(text: string, param: string): Grammar {
  try {
    return parseGbnf(text, param);
  } catch (e) {
    if (e instanceof GrammarError) throw badRequest(e.message, param, 'invalid_grammar');
    throw e;
  }
}

/**
 * Chat's response_format: text (nothing), json_object (any JSON object), json_schema (JSON valid against
 * its schema) — as a grammar, or 400 naming what is wrong.
 */
export function responseFormatGrammar(format: ChatRequest['response_format']): Grammar | undefined {
  if (format == null || format.type === 'text') return undefined;
  if (format.type === 'json_object') return parseGbnf(JSON_OBJECT_GBNF, 'json_object');
  if (format.type === 'json_schema') {
    const schema = format.json_schema?.schema;
    if (schema === undefined) throw badRequest('response_format.json_schema.schema is required', 'response_format.json_schema.schema', 'missing_required_parameter');
    try {
      return parseGbnf(jsonSchemaToGbnf(schema), 'response_format.json_schema');
    } catch (e) {
      if (e instanceof RwkvError) throw badRequest(e.message, 'response_format.json_schema.schema', 'unsupported_schema');
      throw e;
    }
  }
  throw badRequest(`response_format type ${JSON.stringify(format.type)} is not supported (text, json_object, json_schema)`, 'response_format.type', 'unsupported_value');
}

/** A prompt given as text or token ids → checked token ids. */
export function promptIds(rwkv: Rwkv, prompt: string | readonly number[], param: string, limits: ServerLimits): number[] {
  const ids = typeof prompt === 'string' ? rwkv.encode(prompt) : [...prompt];
  for (const id of ids) {
    if (id >= rwkv.config.nVocab) throw badRequest(`${param}: ${id} is not a token id (the vocabulary is 0..${rwkv.config.nVocab - 1})`, param, 'invalid_value');
  }
  if (ids.length > limits.maxPromptTokens) {
    throw badRequest(
      `${param} is ${ids.length} tokens, more than this server allows (${limits.maxPromptTokens}; rwkv serve --max-prompt-tokens)`,
      param,
      'context_length_exceeded',
    );
  }
  return ids;
}

/** `prompt` or `input`: a string, strings, token ids, or lists of token ids → one entry per choice. */
export function promptList(value: string | string[] | number[] | number[][]): (string | number[])[] {
  if (typeof value === 'string') return [value];
  if (value.length === 0) return [[]];
  if (typeof value[0] === 'number') return [value as number[]];
  return value as (string | number[])[];
}
