// POST /v1/completions and /v1/chat/completions: each choice runs through runChoice (so concurrent requests
// share the model's batched passes); answers are one JSON body, or a stream of server-sent events.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { renderChat, type ChatMessage } from '../generation/chat-template.js';
import type { RwkvState } from '../generation/context.js';
import type { GenerationPiece } from '../generation/rwkv.js';
import { badRequest, toApiError } from './api-error.js';
import { requestWork, responseId, type ServerContext } from './context.js';
import { generateOptionsOf, promptIds, promptList, responseFormatGrammar } from './request-options.js';
import { chatLogProbs, CompletionLogProbsBuilder, timingsOf, usageOf } from './responses.js';
import { runChoice, type ChoiceOutcome, type ChoiceSpec } from './run-choice.js';
import type { ChatRequest, CompletionRequest } from './schemas.js';
import { SseStream } from './sse.js';

/** OpenAI's default max_tokens of /v1/completions. */
const COMPLETION_MAX_TOKENS = 16;

export async function completions(ctx: ServerContext, request: FastifyRequest<{ Body: CompletionRequest }>, reply: FastifyReply): Promise<unknown> {
  const rwkv = ctx.rwkv();
  const body = request.body;
  if (body.best_of != null && body.best_of > 1) throw badRequest('best_of > 1 is not supported', 'best_of', 'unsupported_value');
  if (body.suffix != null && body.suffix !== '') throw badRequest('suffix (insertion) is not supported by RWKV', 'suffix', 'unsupported_value');
  const options = generateOptionsOf(rwkv, body, body.max_tokens ?? COMPLETION_MAX_TOKENS, ctx.limits);
  const logprobs = body.logprobs ?? undefined;
  if (logprobs !== undefined) options.topLogProbs = logprobs;
  const echo = body.echo === true;
  const prompts = promptList(body.prompt).map((p, i, all) => ({
    text: typeof p === 'string' ? p : undefined,
    ids: promptIds(rwkv, p, all.length > 1 ? `prompt[${i}]` : 'prompt', ctx.limits),
  }));
  const states = await startStates(ctx, body.state ?? undefined, prompts.length);
  const work = requestWork(reply, () => ctx.metrics.aborted.inc({ route: 'completions' }));
  const signal = work.signal;
  const id = responseId('cmpl');
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: 'text_completion', created, model: ctx.modelId };
  const specs: ChoiceSpec[] = prompts.map((p, i) => ({ ids: p.ids, state: states[i], options, promptLogProbs: echo && logprobs !== undefined ? logprobs : undefined }));
  const echoText = (i: number): string => (echo ? (prompts[i]!.text ?? rwkv.decode(prompts[i]!.ids)) : '');

  if (body.stream === true) {
    const sse = new SseStream(reply);
    try {
      const outcomes = await Promise.all(
        specs.map(async (spec, index) => {
          const builder = new CompletionLogProbsBuilder(rwkv.tokenizer);
          let echoed = !echo;
          const sendEcho = (scores?: ChoiceOutcome['prompt']): void => {
            if (echoed) return;
            echoed = true;
            const lp = scores !== undefined ? builder.build(scores) : null;
            sse.send({ ...head, choices: [{ index, text: echoText(index), logprobs: lp, finish_reason: null }] });
          };
          // Without prompt scores the echo goes out at once; with them, once they are known.
          if (spec.promptLogProbs === undefined) sendEcho();
          const outcome = await runChoice(rwkv, spec, signal, {
            onPrompt: (scores) => sendEcho(scores),
            onPiece: (piece) => {
              ctx.metrics.generated(piece.tokens.length);
              if (piece.text === '' && logprobs === undefined) return;
              sse.send({ ...head, choices: [{ index, text: piece.text, logprobs: logprobs !== undefined ? builder.build(piece.tokens) : null, finish_reason: null }] });
              return sse.flushed();
            },
          });
          sendEcho(outcome.prompt);
          const state = body.return_state === true ? await ctx.saveState(outcome.state) : undefined;
          sse.send({ ...head, choices: [{ index, text: '', logprobs: null, finish_reason: outcome.finishReason, ...(state !== undefined ? { state } : {}) }] });
          return outcome;
        }),
      );
      countPrompt(ctx, outcomes);
      if (body.stream_options?.include_usage === true) sse.send({ ...head, choices: [], usage: usageOf(outcomes.map((o) => o.stats)), timings: timingsOf(outcomes.map((o) => o.stats)) });
      sse.done();
    } catch (e) {
      work.abort(); // the other choices of this request stop too
      sse.fail(toApiError(e));
    }
    return reply;
  }

  const outcomes = await Promise.all(specs.map((spec) => runChoice(rwkv, spec, signal, { onPiece: (piece) => ctx.metrics.generated(piece.tokens.length) }))).catch(
    (e: unknown) => {
      work.abort(); // one choice failed: the others stop too
      throw e;
    },
  );
  countPrompt(ctx, outcomes);
  const choices = await Promise.all(
    outcomes.map(async (o, index) => {
      let lp = null;
      if (logprobs !== undefined) {
        const builder = new CompletionLogProbsBuilder(rwkv.tokenizer);
        // Echoed prompt tokens first (when scored), then the generated ones, offsets running on.
        lp = builder.build([...(o.prompt ?? []), ...o.tokens]);
      }
      const state = body.return_state === true ? await ctx.saveState(o.state) : undefined;
      return { index, text: echoText(index) + o.text, logprobs: lp, finish_reason: o.finishReason, ...(state !== undefined ? { state } : {}) };
    }),
  );
  const stats = outcomes.map((o) => o.stats);
  return { ...head, choices, usage: usageOf(stats), timings: timingsOf(stats), ...(choices.length === 1 && choices[0]!.state !== undefined ? { state: choices[0]!.state } : {}) };
}

export async function chatCompletions(ctx: ServerContext, request: FastifyRequest<{ Body: ChatRequest }>, reply: FastifyReply): Promise<unknown> {
  const rwkv = ctx.rwkv();
  const body = request.body;
  if (body.tools != null && body.tools.length > 0) throw badRequest('tools (function calling) are not supported', 'tools', 'unsupported_value');
  const messages = chatMessages(body);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? ctx.limits.maxTokens;
  const options = generateOptionsOf(rwkv, body, maxTokens, ctx.limits);
  const format = responseFormatGrammar(body.response_format);
  if (format !== undefined && options.grammar !== undefined) throw badRequest('give either grammar or a JSON response_format, not both', 'grammar', 'invalid_value');
  if (format !== undefined) options.grammar = format;
  // An answer ends at a blank line (the template's turn separator) — unless a grammar says where it ends (JSON
  // may hold blank lines); the end-of-text token is never drawn.
  if (options.grammar === undefined) options.stop = ['\n\n', ...(options.stop ?? [])];
  options.bannedTokens = [0];
  const top = body.top_logprobs ?? undefined;
  if (top !== undefined && top > 0 && body.logprobs !== true) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs', 'invalid_value');
  const logprobs = body.logprobs === true;
  if (logprobs) options.topLogProbs = top ?? 0;
  const ids = promptIds(rwkv, renderChat(ctx.template, messages), 'messages', ctx.limits);
  const [state] = await startStates(ctx, body.state ?? undefined, 1);
  const work = requestWork(reply, () => ctx.metrics.aborted.inc({ route: 'chat' }));
  const signal = work.signal;
  const spec: ChoiceSpec = { ids, state, options, promptLogProbs: undefined };
  const id = responseId('chatcmpl');
  const created = Math.floor(Date.now() / 1000);
  const head = { id, created, model: ctx.modelId };
  // The answer follows "Assistant:": the space (or newline) the model writes first is not part of it.
  const trim = new LeadingSpaceTrim();

  if (body.stream === true) {
    const sse = new SseStream(reply);
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}): unknown => ({
      ...head,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
    });
    try {
      sse.send(chunk({ role: 'assistant', content: '' }, null));
      const outcome = await runChoice(rwkv, spec, signal, {
        onPiece: (piece: GenerationPiece) => {
          ctx.metrics.generated(piece.tokens.length);
          const text = trim.push(piece.text);
          if (text === '' && !logprobs) return;
          sse.send(chunk({ content: text }, null, logprobs ? { logprobs: { content: chatLogProbs(rwkv.tokenizer, piece.tokens) } } : {}));
          return sse.flushed();
        },
      });
      countPrompt(ctx, [outcome]);
      const kept = body.return_state === true ? await keepChatState(ctx, outcome, options.grammar !== undefined) : undefined;
      sse.send(chunk({}, outcome.finishReason, kept !== undefined ? { state: kept } : {}));
      if (body.stream_options?.include_usage === true) {
        sse.send({ ...head, object: 'chat.completion.chunk', choices: [], usage: usageOf([outcome.stats]), timings: timingsOf([outcome.stats]) });
      }
      sse.done();
    } catch (e) {
      work.abort(); // the other choices of this request stop too
      sse.fail(toApiError(e));
    }
    return reply;
  }

  const outcome = await runChoice(rwkv, spec, signal, { onPiece: (piece) => ctx.metrics.generated(piece.tokens.length) });
  countPrompt(ctx, [outcome]);
  const kept = body.return_state === true ? await keepChatState(ctx, outcome, options.grammar !== undefined) : undefined;
  return {
    ...head,
    object: 'chat.completion',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: trim.push(outcome.text).trimEnd(), refusal: null },
        logprobs: logprobs ? { content: chatLogProbs(rwkv.tokenizer, outcome.tokens), refusal: null } : null,
        finish_reason: outcome.finishReason,
      },
    ],
    usage: usageOf([outcome.stats]),
    timings: timingsOf([outcome.stats]),
    ...(kept !== undefined ? { state: kept } : {}),
  };
}

/** The request's messages in the template's three roles ("developer" is OpenAI's newer name for system). */
function chatMessages(body: ChatRequest): ChatMessage[] {
  if (body.messages.length === 0) throw badRequest('messages must not be empty', 'messages', 'invalid_value');
  return body.messages.map((m, i) => {
    if (m.role === 'tool') throw badRequest('tool messages are not supported (no function calling)', `messages[${i}].role`, 'unsupported_value');
    let content: string;
    if (m.content === null) content = '';
    else if (typeof m.content === 'string') content = m.content;
    else {
      content = m.content
        .map((part, j) => {
          if (part.type !== 'text' || typeof part.text !== 'string') {
            throw badRequest(`only text parts are supported, not ${JSON.stringify(part.type)}`, `messages[${i}].content[${j}]`, 'unsupported_value');
          }
          return part.text;
        })
        .join('\n');
    }
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

/** Each choice's starting state: fresh (undefined), or its own copy of a named state. */
async function startStates(ctx: ServerContext, name: string | undefined, count: number): Promise<(RwkvState | undefined)[]> {
  if (name === undefined) return new Array<undefined>(count).fill(undefined);
  const first = await ctx.loadState(name);
  return [first, ...Array.from({ length: count - 1 }, () => first.clone())];
}

/**
 * Keeps a chat's final state, ending its turn with the blank line when the answer did not (max tokens, or a
 * grammar that ended it).
 */
async function keepChatState(ctx: ServerContext, outcome: ChoiceOutcome, grammar: boolean): Promise<string> {
  if (outcome.finishReason !== 'stop' || grammar) await ctx.rwkv().feed(outcome.state, '\n\n');
  return ctx.saveState(outcome.state);
}

function countPrompt(ctx: ServerContext, outcomes: readonly ChoiceOutcome[]): void {
  for (const o of outcomes) ctx.metrics.promptTokens.inc(o.stats.promptTokens);
}

/** Drops whitespace at the start of a streamed text, however the pieces split it. */
class LeadingSpaceTrim {
  private started = false;

  push(text: string): string {
    if (this.started) return text;
    const rest = text.replace(/^\s+/, '');
    if (rest !== '') this.started = true;
    return rest;
  }
}

