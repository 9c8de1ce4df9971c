// The request bodies the server accepts, as JSON schemas (checked by fastify before a handler runs) and
// the TypeScript types they guarantee. Fields OpenAI's API has keep its names and ranges; optional fields
// may also be null (clients send that); unknown fields are ignored.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** An optional field that may also be null. */
const opt = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

const TokenIds = Type.Array(Type.Integer({ minimum: 0 }));
const Stop = Type.Union([Type.String(), Type.Array(Type.String())]);
const LogitBias = Type.Record(Type.String(), Type.Number({ minimum: -100, maximum: 100 }));

/** Sampling fields shared by /v1/completions and /v1/chat/completions. */
const samplingFields = {
  model: opt(Type.String()),
  temperature: opt(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: opt(Type.Number({ minimum: 0, maximum: 1 })),
  // Not OpenAI's; llama.cpp's names.
  top_k: opt(Type.Integer({ minimum: 0 })),
  min_p: opt(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
  presence_penalty: opt(Type.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: opt(Type.Number({ minimum: -2, maximum: 2 })),
  // ai00's name: penalty counts are multiplied by this after each token (default 1: OpenAI's plain counts).
  penalty_decay: opt(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  logit_bias: opt(LogitBias),
  stop: opt(Stop),
  seed: opt(Type.Integer()),
  stream: opt(Type.Boolean()),
  stream_options: opt(Type.Object({ include_usage: opt(Type.Boolean()) })),
  n: opt(Type.Integer({ minimum: 1 })),
  user: opt(Type.String()),
  // llama-server's name: the output must match this GBNF grammar.
  grammar: opt(Type.String()),
  // RWKV: continue a named state; keep the final one.
  state: opt(Type.String({ minLength: 1 })),
  return_state: opt(Type.Boolean()),
};

export const CompletionRequest = Type.Object({
  ...samplingFields,
  prompt: Type.Union([Type.String(), Type.Array(Type.String()), TokenIds, Type.Array(TokenIds)]),
  max_tokens: opt(Type.Integer({ minimum: 0 })),
  logprobs: opt(Type.Integer({ minimum: 0, maximum: 20 })),
  echo: opt(Type.Boolean()),
  best_of: opt(Type.Integer({ minimum: 1 })),
  suffix: opt(Type.String()),
});
export type CompletionRequest = Static<typeof CompletionRequest>;

const TextPart = Type.Object({ type: Type.String(), text: Type.Optional(Type.String()) });

export const ChatMessageSchema = Type.Object({
  role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
  content: Type.Union([Type.String(), Type.Array(TextPart), Type.Null()]),
  name: opt(Type.String()),
});

export const ChatRequest = Type.Object({
  ...samplingFields,
  messages: Type.Array(ChatMessageSchema),
  max_tokens: opt(Type.Integer({ minimum: 0 })),
  max_completion_tokens: opt(Type.Integer({ minimum: 0 })),
  logprobs: opt(Type.Boolean()),
  top_logprobs: opt(Type.Integer({ minimum: 0, maximum: 20 })),
  response_format: opt(
    Type.Object({
      type: Type.String(),
      json_schema: opt(Type.Object({ name: opt(Type.String()), schema: opt(Type.Unknown()), strict: opt(Type.Boolean()) })),
    }),
  ),
  tools: opt(Type.Array(Type.Unknown())),
});
export type ChatRequest = Static<typeof ChatRequest>;

export const EmbeddingRequest = Type.Object({
  model: opt(Type.String()),
  input: Type.Union([Type.String(), Type.Array(Type.String()), TokenIds, Type.Array(TokenIds)]),
  encoding_format: opt(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
  dimensions: opt(Type.Integer({ minimum: 1 })),
  user: opt(Type.String()),
  // Not OpenAI's: how token rows become one vector (Rwkv.embed).
  pooling: opt(Type.Union([Type.Literal('last'), Type.Literal('mean')])),
});
export type EmbeddingRequest = Static<typeof EmbeddingRequest>;

export const TokenizeRequest = Type.Object({
  content: Type.String(),
  with_pieces: opt(Type.Boolean()),
});
export type TokenizeRequest = Static<typeof TokenizeRequest>;

export const DetokenizeRequest = Type.Object({ tokens: TokenIds });
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;

export const StateCreateRequest = Type.Object({
  prompt: Type.Union([Type.String(), TokenIds]),
  // Read the prompt after this named state instead of a fresh one.
  state: opt(Type.String({ minLength: 1 })),
});
export type StateCreateRequest = Static<typeof StateCreateRequest>;

/** Names of stored states: safe as file names and Redis keys. */
export const STATE_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
