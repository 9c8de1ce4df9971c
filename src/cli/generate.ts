// `rwkv generate`: streams generated text to stdout, speed to stderr; states in and out of files.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ArgumentError } from '../errors.js';
import { validateGenerateOptions } from '../generation/generate.js';
import { Rwkv, type RwkvGenerateOptions } from '../generation/rwkv.js';
import type { SamplerOptions } from '../generation/sampler.js';
import type { KernelArgs } from './open-model.js';

/** Sampler and stopping options shared by `generate` and `chat`, as commander parses them. */
export interface SamplingArgs {
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  penaltyDecay: number;
  penalizeWhitespace?: boolean;
  logitBias: string[];
  ban: string[];
  stop: string[];
  stopToken: string[];
  seed?: number;
}

export interface GenerateArgs extends KernelArgs, SamplingArgs {
  model: string;
  positional: string | undefined;
  prompt?: string;
  tokenizer?: string;
  stateIn?: string;
  stateOut?: string;
}

/** Turns the CLI's strings into library options; every value is checked (token ids later, against the vocabulary). */
export function samplingOptions(args: SamplingArgs): RwkvGenerateOptions & Required<Pick<SamplerOptions, 'bannedTokens'>> {
  const logitBias = new Map<number, number>();
  for (const item of splitList(args.logitBias)) {
    const m = /^(\d+)=([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)$/i.exec(item);
    if (m === null) throw new ArgumentError(`--logit-bias takes ID=BIAS pairs (e.g. 10=-2.5), got '${item}'`);
    logitBias.set(Number(m[1]), Number(m[2]));
  }
  const options: RwkvGenerateOptions & Required<Pick<SamplerOptions, 'bannedTokens'>> = {
    maxTokens: args.maxTokens,
    temperature: args.temperature,
    topP: args.topP,
    topK: args.topK,
    minP: args.minP,
    presencePenalty: args.presencePenalty,
    frequencyPenalty: args.frequencyPenalty,
    penaltyDecay: args.penaltyDecay,
    exemptWhitespaceAndDigits: args.penalizeWhitespace !== true,
    logitBias,
    bannedTokens: splitList(args.ban).map((s) => tokenId(s, '--ban')),
    stop: args.stop.map(unescape),
    stopTokens: splitList(args.stopToken).map((s) => tokenId(s, '--stop-token')),
  };
  if (args.seed !== undefined) options.seed = args.seed;
  return options;
}

/** Defaults that differ between `generate` (plain sampling) and `chat` (ChatRWKV's chat settings). */
export interface SamplingDefaults {
  maxTokens: number;
  temperature: number;
  topP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  penaltyDecay: number;
}

/** `rwkv generate`: plain sampling, no penalties. */
export const GENERATE_DEFAULTS: SamplingDefaults = {
  maxTokens: 100,
  temperature: 1,
  topP: 0.85,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyDecay: 0.996,
};

const int = (name: string) => (v: string): number => {
  if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${name} must be an integer`);
  return Number.parseInt(v, 10);
};
const num = (name: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};
const collect = (v: string, previous: string[]): string[] => [...previous, v];

/** Adds every sampler and stopping option to a command. */
export function addSamplingOptions(cmd: Command, d: SamplingDefaults): Command {
  return cmd
    .option('--max-tokens <n>', 'tokens to generate (0 is allowed)', int('--max-tokens'), d.maxTokens)
    .option('--temperature <t>', 'sampling temperature, applied as probs^(1/t) after the cuts (0 = always the most likely token)', num('--temperature'), d.temperature)
    .option('--top-p <p>', 'nucleus sampling on the untempered probabilities: keep the most likely tokens up to this probability, in (0, 1]', num('--top-p'), d.topP)
    .option('--top-k <k>', 'keep only the k most likely tokens (0 = off)', int('--top-k'), 0)
    .option('--min-p <p>', 'drop tokens less likely than this fraction of the most likely one, in [0, 1) (0 = off)', num('--min-p'), 0)
    .option('--presence-penalty <x>', 'subtracted from the logit of every token already generated', num('--presence-penalty'), d.presencePenalty)
    .option('--frequency-penalty <x>', 'subtracted from a token\'s logit per (decayed) occurrence', num('--frequency-penalty'), d.frequencyPenalty)
    .option('--penalty-decay <x>', 'occurrence counts are multiplied by this after each token, in (0, 1]', num('--penalty-decay'), d.penaltyDecay)
    .option('--penalize-whitespace', 'count spaces, tabs and digits for the frequency penalty too (ChatRWKV spares them)')
    .option('--logit-bias <id=bias>', 'add bias to a token\'s logit (repeatable, or comma-separated)', collect, [])
    .option('--ban <ids>', 'token ids never to generate (repeatable, or comma-separated)', collect, [])
    .option('--stop <text>', 'stop when the text contains this (repeatable; \\n \\t \\r \\\\ are escapes); it is not printed', collect, [])
    .option('--stop-token <ids>', 'stop when one of these token ids is drawn (repeatable, or comma-separated)', collect, [])
    .addOption(new Option('--seed <s>', 'random seed; the same seed and options give the same text').argParser(int('--seed')));
}

function splitList(values: readonly string[]): string[] {
  return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

function tokenId(s: string, option: string): number {
  if (!/^\d+$/.test(s)) throw new ArgumentError(`${option} takes token ids (integers ≥ 0, comma-separated), got '${s}'`);
  return Number(s);
}

/** Backslash escapes in --stop, so that a shell can pass a newline: \n \r \t \\. */
export function unescape(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c] ?? `\\${c}`);
}

export async function runGenerate(args: GenerateArgs): Promise<void> {
  if (args.prompt !== undefined && args.positional !== undefined) {
    throw new ArgumentError('give the prompt either as an argument or with --prompt, not both');
  }
  const prompt = args.prompt ?? args.positional ?? '';
  const options = samplingOptions(args);
  validateGenerateOptions(options); // before loading anything: a bad option fails fast
  const rwkv = await Rwkv.load(args.model, {
    ...(args.threads !== undefined ? { threads: args.threads } : {}),
    ...(args.kernels !== undefined ? { kernels: args.kernels } : {}),
    int8: args.int8 === true,
    ...(args.tokenizer !== undefined ? { tokenizer: args.tokenizer } : {}),
    prefixCache: false, // one prompt per process: nothing to reuse
  });
  try {
    if (args.stateIn !== undefined) options.state = await rwkv.loadState(args.stateIn);
    const generation = rwkv.generate(prompt, options);
    for await (const piece of generation) if (piece.text !== '') await write(piece.text);
    if (args.stateOut !== undefined) await rwkv.saveState(args.stateOut, generation.state);
    const s = generation.stats;
    const rate = (n: number, ms: number): string => (ms > 0 ? (n / (ms / 1000)).toFixed(1) : '∞');
    process.stderr.write(
      `\n[prompt: ${s.promptTokens} tokens, ${rate(s.promptTokens, s.promptMs)} tokens/s; ` +
        `generated: ${s.generatedTokens} tokens, ${rate(s.generatedTokens, s.generateMs)} tokens/s; ` +
        `finished: ${generation.finishReason}; seed ${generation.seed}]\n`,
    );
  } finally {
    await rwkv.close();
  }
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
  });
}
