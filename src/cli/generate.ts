// `rwkv generate`: streams generated text to stdout, speed to stderr; states in and out of files.
import { InvalidArgumentError, Option, type Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AbortError, ArgumentError, RwkvError } from '../errors.js';
import { parseGbnf, type Grammar } from '../grammar/gbnf.js';
import { JSON_VALUE_GBNF } from '../grammar/json.js';
import { jsonSchemaToGbnf } from '../grammar/json-schema.js';
import { validateGenerateOptions } from '../generation/generate.js';
import type { GenerationStats, RwkvGenerateOptions } from '../generation/rwkv.js';
import type { SamplerOptions } from '../generation/sampler.js';
import { isGptCheckpoint } from '../models/gpt-load.js';
import { runGenerateGpt } from './generate-gpt.js';
import { loadRwkv, type KernelArgs } from './open-model.js';

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
  promptFile?: string;
  tokenizer?: string;
  stateIn?: string;
  stateOut?: string;
  /** A GBNF grammar file the output must match. */
  grammar?: string;
  /** A JSON Schema file the output must validate against. */
  jsonSchema?: string;
  /** The output is one JSON value. */
  json?: boolean;
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

/** The generator takes 32 bits of seed: checked exactly (as BigInt) so a long seed is not rounded or wrapped. */
function seedArg(v: string): number {
  const t = v.trim();
  if (!/^\d+$/.test(t) || BigInt(t) > 0xffffffffn) throw new InvalidArgumentError('--seed must be an integer from 0 to 4294967295');
  return Number(t);
}

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
    .addOption(new Option('--seed <s>', 'random seed, 0 to 4294967295; the same seed and options give the same text').argParser(seedArg));
}

function splitList(values: readonly string[]): string[] {
  return values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

function tokenId(s: string, option: string): number {
  if (!/^\d+$/.test(s)) throw new ArgumentError(`${option} takes token ids (integers ≥ 0, comma-separated), got '${s}'`);
  return Number(s);
}

/**
 * --grammar FILE, --json-schema FILE or --json as a parsed grammar (at most one of them), read and checked
 * before the model loads, so that a bad grammar fails at once with its line and column.
 */
export async function grammarOf(args: Pick<GenerateArgs, 'grammar' | 'jsonSchema' | 'json'>): Promise<Grammar | undefined> {
  const given = [args.grammar !== undefined, args.jsonSchema !== undefined, args.json === true].filter(Boolean).length;
  if (given > 1) throw new ArgumentError('give one of --grammar, --json-schema and --json');
  if (args.json === true) return parseGbnf(JSON_VALUE_GBNF, '--json');
  const read = async (file: string, flag: string): Promise<string> => {
    try {
      return await fs.promises.readFile(file, 'utf8');
    } catch (e) {
      throw new RwkvError('FILE_NOT_FOUND', `cannot read ${flag} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file });
    }
  };
  if (args.grammar !== undefined) return parseGbnf(await read(args.grammar, '--grammar'), args.grammar);
  if (args.jsonSchema !== undefined) {
    const text = await read(args.jsonSchema, '--json-schema');
    let schema: unknown;
    try {
      schema = JSON.parse(text);
    } catch (e) {
      throw new ArgumentError(`${args.jsonSchema}: not JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    return parseGbnf(jsonSchemaToGbnf(schema, { source: args.jsonSchema }), args.jsonSchema);
  }
  return undefined;
}

/** Backslash escapes in --stop, so that a shell can pass a newline: \n \r \t \\. */
export function unescape(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c] ?? `\\${c}`);
}

export async function runGenerate(args: GenerateArgs): Promise<void> {
  const prompt = await readPrompt(args);
  const options = samplingOptions(args);
  validateGenerateOptions(options); // before loading anything: a bad option fails fast
  if (isGptCheckpoint(args.model)) {
    return runGenerateGpt(args, prompt, options, {
      write,
      stats: (s, finish, seed) => void process.stderr.write(`\n${statsLine(s, finish, seed)}\n`),
    });
  }
  const grammar = await grammarOf(args);
  if (grammar !== undefined) options.grammar = grammar;
  if (args.stateOut !== undefined) await checkWritable(args.stateOut, '--state-out');
  const rwkv = await loadRwkv(args.model, args, {
    prefixCache: false, // one prompt per process: nothing to reuse
  });
  // Ctrl-C ends the generation at the next token: the text so far, the stats and --state-out are kept,
  // and the exit status is 130 as for any interrupted command. A second Ctrl-C exits at once.
  const interrupt = new AbortController();
  const onSigint = (): void => {
    if (interrupt.signal.aborted) process.exit(130);
    interrupt.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    if (args.stateIn !== undefined) options.state = await rwkv.loadState(args.stateIn);
    const generation = rwkv.generate(prompt, { ...options, signal: interrupt.signal });
    try {
      for await (const piece of generation) if (piece.text !== '') await write(piece.text);
    } catch (e) {
      if (e instanceof AbortError) {
        process.stderr.write('\n[interrupted while reading the prompt; nothing generated, no state written]\n');
        process.exitCode = 130;
        return;
      }
      throw e;
    }
    if (args.stateOut !== undefined) await rwkv.saveState(args.stateOut, generation.state);
    process.stderr.write(`\n${statsLine(generation.stats, generation.finishReason, generation.seed)}\n`);
    if (generation.finishReason === 'aborted' && interrupt.signal.aborted) process.exitCode = 130;
  } finally {
    process.off('SIGINT', onSigint);
    await rwkv.close();
  }
}

/**
 * The prompt from exactly one place: the argument, --prompt, --prompt-file, or stdin ('-', or nothing given
 * while stdin is a pipe or a file — `echo hi | rwkv generate`; a terminal or an inherited socket is not read).
 */
export async function readPrompt(args: Pick<GenerateArgs, 'positional' | 'prompt' | 'promptFile'>, stdin: NodeJS.ReadableStream & { fd?: number } = process.stdin): Promise<string> {
  const given = [
    args.positional !== undefined && args.positional !== '-' ? 'an argument' : undefined,
    args.prompt !== undefined ? '--prompt' : undefined,
    args.promptFile !== undefined ? '--prompt-file' : undefined,
    args.positional === '-' ? "'-' (stdin)" : undefined,
  ].filter((g) => g !== undefined);
  if (given.length > 1) throw new ArgumentError(`give the prompt one way, not several (${given.join(', ')})`);
  if (args.promptFile !== undefined) {
    try {
      return await fs.promises.readFile(args.promptFile, 'utf8');
    } catch (e) {
      throw new ArgumentError(`--prompt-file ${args.promptFile}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }
  if (args.prompt !== undefined) return args.prompt;
  if (args.positional !== undefined && args.positional !== '-') return args.positional;
  if (args.positional === '-' || stdinIsPipedData()) {
    let text = '';
    stdin.setEncoding('utf8');
    for await (const chunk of stdin) text += String(chunk);
    return text;
  }
  return '';
}

/** Whether stdin is a pipe (`echo hi |`) or a file (`< prompt.txt`): then a prompt is waiting there. */
function stdinIsPipedData(): boolean {
  try {
    const st = fs.fstatSync(0);
    return st.isFIFO() || st.isFile();
  } catch {
    return false;
  }
}

/** The bracketed summary on stderr: token counts and rates (no rate for zero tokens), how it ended, the seed. */
export function statsLine(s: GenerationStats, finishReason: string | undefined, seed: number): string {
  const rate = (n: number, ms: number): string => (n === 0 ? '' : ms > 0 ? `, ${(n / (ms / 1000)).toFixed(1)} tokens/s` : '');
  const finished = finishReason === 'aborted' ? 'interrupted' : finishReason;
  return (
    `[prompt: ${s.promptTokens} tokens${rate(s.promptTokens, s.promptMs)}; ` +
    `generated: ${s.generatedTokens} tokens${rate(s.generatedTokens, s.generateMs)}; ` +
    `finished: ${finished}; seed ${seed}]`
  );
}

/** Fails now, not after a long run, when `file` cannot be written (a missing directory, a directory, no permission). */
export async function checkWritable(file: string, option: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  let info: fs.Stats;
  try {
    info = await fs.promises.stat(dir);
  } catch {
    throw new ArgumentError(`${option} ${file}: the directory ${dir} does not exist`);
  }
  if (!info.isDirectory()) throw new ArgumentError(`${option} ${file}: ${dir} is not a directory`);
  try {
    await fs.promises.access(dir, fs.constants.W_OK);
  } catch {
    throw new ArgumentError(`${option} ${file}: the directory ${dir} is not writable`);
  }
  const existing = await fs.promises.stat(file).catch(() => undefined);
  if (existing?.isDirectory() === true) throw new ArgumentError(`${option} ${file} is a directory; give a file name`);
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
  });
}
