// The response shapes of OpenAI's API built from what the library returns: token log-probabilities in the
// legacy completions shape and in the chat shape, usage, and llama.cpp's `timings`.
import type { GeneratedToken, TokenLogProb } from '../generation/generate.js';
import type { GenerationStats } from '../generation/rwkv.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import type { PromptToken } from './run-choice.js';

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** A token's own text (a token that is part of a UTF-8 character shows U+FFFD) and bytes. */
export function tokenText(tokenizer: Tokenizer, id: number): { text: string; bytes: number[] } {
  const bytes = tokenizer.decodeBytes([id]);
  return { text: utf8.decode(bytes), bytes: [...bytes] };
}

/** /v1/completions `logprobs`: parallel lists; `top_logprobs` maps a token's text to its log-probability. */
export interface CompletionLogProbs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** Builds CompletionLogProbs piece by piece; `offset` runs on through the choice's text. */
export class CompletionLogProbsBuilder {
  private offset: number;
  private readonly tokenizer: Tokenizer;

  constructor(tokenizer: Tokenizer, offset = 0) {
    this.tokenizer = tokenizer;
    this.offset = offset;
  }

  build(tokens: readonly (PromptToken | GeneratedToken)[]): CompletionLogProbs {
    const out: CompletionLogProbs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const t of tokens) {
      const text = tokenText(this.tokenizer, t.id).text;
      out.tokens.push(text);
      out.token_logprobs.push(t.logProb);
      const alternatives = 'alternatives' in t ? t.alternatives : undefined;
      out.top_logprobs.push(alternatives == null ? null : this.topMap(alternatives));
      out.text_offset.push(this.offset);
      this.offset += text.length;
    }
    return out;
  }

  private topMap(alternatives: readonly TokenLogProb[]): Record<string, number> {
    const map: Record<string, number> = {};
    // Two ids with the same text: the more likely one (listed first) keeps the entry.
    for (const a of alternatives) map[tokenText(this.tokenizer, a.id).text] ??= a.logProb;
    return map;
  }
}

export interface ChatTokenLogProb {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** /v1/chat/completions `logprobs.content`. */
export function chatLogProbs(tokenizer: Tokenizer, tokens: readonly GeneratedToken[]): ChatTokenLogProb[] {
  return tokens.map((t) => {
    const own = tokenText(tokenizer, t.id);
    return {
      token: own.text,
      logprob: t.logProb,
      bytes: own.bytes,
      top_logprobs: (t.alternatives ?? []).map((a) => {
        const alt = tokenText(tokenizer, a.id);
        return { token: alt.text, logprob: a.logProb, bytes: alt.bytes };
      }),
    };
  });
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(stats: readonly GenerationStats[]): Usage {
  const prompt = stats.reduce((a, s) => a + s.promptTokens, 0);
  const completion = stats.reduce((a, s) => a + s.generatedTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** llama.cpp's `timings` (what its clients read): prompt and generation counts, milliseconds, rates. */
export interface Timings {
  prompt_n: number;
  prompt_cached_n: number;
  prompt_ms: number;
  prompt_per_second: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
}

export function timingsOf(stats: readonly GenerationStats[]): Timings {
  const sum = (f: (s: GenerationStats) => number): number => stats.reduce((a, s) => a + f(s), 0);
  // Choices run side by side: their wall time is the longest one's.
  const max = (f: (s: GenerationStats) => number): number => stats.reduce((a, s) => Math.max(a, f(s)), 0);
  const promptN = sum((s) => s.promptTokens);
  const promptMs = max((s) => s.promptMs);
  const predictedN = sum((s) => s.generatedTokens);
  const predictedMs = max((s) => s.generateMs);
  const rate = (n: number, ms: number): number => (ms > 0 ? (n * 1000) / ms : 0);
  return {
    prompt_n: promptN,
    prompt_cached_n: sum((s) => s.reusedTokens),
    prompt_ms: round(promptMs),
    prompt_per_second: round(rate(promptN, promptMs)),
    predicted_n: predictedN,
    predicted_ms: round(predictedMs),
    predicted_per_second: round(rate(predictedN, predictedMs)),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
