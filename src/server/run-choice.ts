// One choice of a completion: a prompt read into a state (fresh, or a named state's copy), then tokens
// generated through the library (Rwkv.generate), so that every request's passes go through the model's
// Batcher and concurrent requests share them. With echo + logprobs, the prompt is scored first (its
// tokens' log-probabilities, OpenAI's `echo` / lm-eval's loglikelihood requests) and generation continues
// the scored state.
import { AbortError } from '../errors.js';
import type { RwkvState } from '../generation/context.js';
import type { GeneratedToken, TokenLogProb } from '../generation/generate.js';
import type { GenerationPiece, GenerationStats, Rwkv, RwkvGenerateOptions } from '../generation/rwkv.js';

export interface ChoiceSpec {
  /** Prompt token ids (may be empty: generation then starts after token 0, or after the state). */
  ids: readonly number[];
  /** Continue this state (the request's own copy; it is advanced). Undefined: a fresh state. */
  state: RwkvState | undefined;
  /** Sampling, max tokens, seed, stops, topLogProbs (no state or signal: given here). */
  options: Omit<RwkvGenerateOptions, 'state' | 'signal'>;
  /** Score the prompt's tokens too, each with this many alternatives (echo + logprobs). */
  promptLogProbs: number | undefined;
}

/** A prompt token's log-probability; null for the first token of a fresh state (nothing before it). */
export interface PromptToken {
  id: number;
  logProb: number | null;
  alternatives: TokenLogProb[] | null;
}

export interface ChoiceOutcome {
  text: string;
  tokens: GeneratedToken[];
  finishReason: 'stop' | 'length';
  stats: GenerationStats;
  /** The state after the prompt and every generated token. */
  state: RwkvState;
  /** With promptLogProbs: one entry per prompt token. */
  prompt: PromptToken[] | undefined;
}

/**
 * Runs one choice to its end, telling `hooks` of its progress. A client gone (the signal) ends it
 * with an AbortError, whether the prompt was being read or tokens generated.
 */
export interface ChoiceHooks {
  /** The prompt's scores, once read (only with promptLogProbs), before the first token is generated. */
  onPrompt?: (prompt: PromptToken[]) => void;
  /** Each piece of text as it is generated; generation waits for a returned promise (a slow reader). */
  onPiece?: (piece: GenerationPiece) => void | Promise<void>;
}

export async function runChoice(rwkv: Rwkv, spec: ChoiceSpec, signal: AbortSignal, hooks: ChoiceHooks = {}): Promise<ChoiceOutcome> {
  let state = spec.state;
  let prompt: PromptToken[] | undefined;
  let ids = spec.ids;
  let promptMs = 0;
  let reused = 0;
  if (spec.promptLogProbs !== undefined && ids.length > 0) {
    const t0 = performance.now();
    const top = spec.promptLogProbs;
    state ??= rwkv.createState();
    prompt = [];
    let rest = ids;
    if (state.logits === undefined) {
      // A fresh state: the first token has no context, hence no log-probability (OpenAI's null).
      reused = (await rwkv.feed(state, [ids[0]!], { signal })).reused;
      prompt.push({ id: ids[0]!, logProb: null, alternatives: null });
      rest = ids.slice(1);
    }
    const scored = await rwkv.score(rest, { state, signal, topLogProbs: top });
    for (let i = 0; i < rest.length; i++) {
      prompt.push({ id: rest[i]!, logProb: scored.logProbs[i]!, alternatives: scored.alternatives?.[i] ?? [] });
    }
    promptMs = performance.now() - t0;
    ids = [];
    hooks.onPrompt?.(prompt);
  }
  const generation = rwkv.generate(ids, { ...spec.options, ...(state !== undefined ? { state } : {}), signal });
  let text = '';
  const tokens: GeneratedToken[] = [];
  for await (const piece of generation) {
    text += piece.text;
    for (const t of piece.tokens) tokens.push(t);
    await hooks.onPiece?.(piece);
  }
  if (generation.finishReason === 'aborted' || signal.aborted) throw new AbortError('the client went away');
  const stats = { ...generation.stats };
  if (prompt !== undefined) {
    stats.promptTokens = prompt.length;
    stats.promptMs = promptMs;
    stats.reusedTokens = reused;
  }
  return { text, tokens, finishReason: generation.finishReason === 'length' ? 'length' : 'stop', stats, state: generation.state, prompt };
}
