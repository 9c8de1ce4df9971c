// `rwkv generate` on a GPT-2 checkpoint: the prompt in one pass, then token by token over the KV cache,
// with the same sampler, stop strings and stats line as the RWKV path. Features built on RWKV's
// fixed-size state (state files, the prefix cache) and grammars are refused by name.
import { ArgumentError } from '../errors.js';
import { TokenSampler, validateGenerateOptions } from '../generation/generate.js';
import type { GenerationStats, RwkvGenerateOptions } from '../generation/rwkv.js';
import { StopMatcher } from '../generation/stop.js';
import { gptTokenizer } from '../models/gpt-load.js';
import { StreamDecoder } from '../tokenizers/tokenizer.js';
import type { GenerateArgs } from './generate.js';
import { openGpt } from './open-model.js';

/** Runs one generation; `write` sends text to stdout, `stats` the bracketed line to stderr. */
export async function runGenerateGpt(
  args: GenerateArgs,
  prompt: string,
  options: RwkvGenerateOptions,
  io: { write(text: string): Promise<void>; stats(s: GenerationStats, finishReason: string, seed: number): void },
): Promise<void> {
  for (const [given, flag] of [
    [args.stateIn, '--state-in'],
    [args.stateOut, '--state-out'],
    [args.grammar, '--grammar'],
    [args.jsonSchema, '--json-schema'],
    [args.json === true ? 'yes' : undefined, '--json'],
  ] as const) {
    if (given !== undefined) throw new ArgumentError(`${flag} is not supported for GPT models (it needs RWKV's fixed-size state or a grammar)`);
  }
  const opened = await openGpt(args.model, args);
  try {
    const model = opened.model;
    const tokenizer = await gptTokenizer(args.model, model.config.nVocab, args.tokenizer);
    const resolved = validateGenerateOptions(options, model.config.nVocab);
    const stats: GenerationStats = { promptTokens: 0, reusedTokens: 0, generatedTokens: 0, promptMs: 0, generateMs: 0 };
    const ids = tokenizer.encode(prompt);
    if (ids.length === 0) ids.push(0); // as the RWKV path: an empty prompt starts from token 0
    const state = model.createState();
    let t = performance.now();
    let logits = await model.forwardSequence(ids, state);
    stats.promptTokens = ids.length;
    stats.promptMs = performance.now() - t;
    const sampler = new TokenSampler(resolved.sampler, resolved.seed);
    const decoder = new StreamDecoder(tokenizer);
    const matcher = new StopMatcher(options.stop ?? []);
    let finish = 'length';
    for (let n = 0; n < resolved.maxTokens; n++) {
      t = performance.now();
      const step = sampler.next(logits);
      if (resolved.stopTokens.has(step.id)) {
        finish = 'stop_token';
        break;
      }
      sampler.accept(step.id);
      stats.generatedTokens++;
      const text = matcher.push(decoder.push(step.id));
      if (text !== '') await io.write(text);
      if (matcher.matched !== undefined) {
        finish = 'stop';
        break;
      }
      if (state.length >= model.config.nPositions) {
        finish = 'length'; // the context is full
        break;
      }
      logits = await model.forward(step.id, state);
      stats.generateMs += performance.now() - t;
    }
    if (matcher.matched === undefined) {
      const tail = matcher.push(decoder.flush()) + matcher.flush();
      if (tail !== '') await io.write(tail);
    }
    io.stats(stats, finish, resolved.seed);
    model.disposeState(state);
  } finally {
    await opened.close();
  }
}
