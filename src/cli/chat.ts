// `rwkv chat`: an interactive conversation in ChatRWKV's template ("User: …\n\nAssistant:", or --template), answers
// streamed as they are generated. Commands: /save FILE, /load FILE, /reset, /stats, /help, /exit.
// Ctrl-C stops the answer being generated and keeps the session; at the prompt, twice in a row leaves.
// Works on a terminal and on piped stdin (the transcript then echoes each input line).
import * as readline from 'node:readline';
import { ArgumentError } from '../errors.js';
import { validateGenerateOptions } from '../generation/generate.js';
import { chatTurn, type ChatTemplate } from '../generation/chat-template.js';
import { resolveTemplate } from '../generation/chat-template-file.js';
import type { RwkvState } from '../generation/context.js';
import { Rwkv, type Generation } from '../generation/rwkv.js';
import { grammarOf, samplingOptions, type SamplingArgs, type SamplingDefaults } from './generate.js';
import { loadRwkv, type KernelArgs } from './open-model.js';

/** `rwkv chat`: ChatRWKV's chat demo (API_DEMO_CHAT.py) settings; max tokens is per answer. */
export const CHAT_DEFAULTS: SamplingDefaults = {
  maxTokens: 1000,
  temperature: 1,
  topP: 0.3,
  presencePenalty: 0.5,
  frequencyPenalty: 0.5,
  penaltyDecay: 0.996,
};

export interface ChatArgs extends KernelArgs, SamplingArgs {
  model: string;
  tokenizer?: string;
  stateIn?: string;
  /** Text that sets up the conversation, fed (in the template's system turn) before the first message and after /reset. */
  system?: string;
  /** 'world' (default), 'raven', or a JSON file: { "user": …, "assistant": …, "system"?: … }. */
  template?: string;
  /** Every answer must match this GBNF grammar / validate against this JSON Schema / be one JSON value. */
  grammar?: string;
  jsonSchema?: string;
  json?: boolean;
}

export { resolveTemplate };

const HELP = [
  'commands:',
  '  /save FILE   save the conversation state (with its last logits) to FILE',
  '  /load FILE   continue from a state saved earlier (by /save or rwkv generate --state-out)',
  '  /reset       forget the conversation: a fresh state',
  '  /stats       tokens in the conversation, speed of the last answer and of the session',
  '  /exit        leave (or Ctrl-D; Ctrl-C twice at the prompt)',
  'Ctrl-C while an answer is being written stops that answer.',
].join('\n');

export async function runChat(args: ChatArgs): Promise<void> {
  const template = await resolveTemplate(args.template); // a bad template fails before the model loads
  const options = samplingOptions(args);
  const grammar = await grammarOf(args);
  if (grammar !== undefined) options.grammar = grammar;
  // ChatRWKV's chat: an answer ends at a blank line (or where its grammar is complete: JSON may hold blank
  // lines), and the end-of-text token (0) is never drawn.
  if (grammar === undefined) options.stop = ['\n\n', ...(options.stop ?? [])];
  options.bannedTokens = [...new Set([0, ...options.bannedTokens])];
  validateGenerateOptions(options);
  const rwkv = await loadRwkv(args.model, args);
  try {
    const state = args.stateIn !== undefined ? await rwkv.loadState(args.stateIn) : rwkv.createState();
    const session = new ChatSession(rwkv, state, options, args.seed, template, args.system);
    await session.setUp();
    await session.run();
  } finally {
    await rwkv.close();
  }
}

class ChatSession {
  private readonly rwkv: Rwkv;
  private state: RwkvState;
  private readonly options: ReturnType<typeof samplingOptions>;
  private readonly seed: number | undefined;
  private readonly tty: boolean;
  private rl!: readline.Interface;
  private readonly lines: string[] = [];
  private waiting: ((line: string | undefined) => void) | undefined;
  private closed = false;
  private current: AbortController | undefined;
  private exitArmed = false;
  private last: Generation | undefined;
  private readonly totals = { tokens: 0, ms: 0, answers: 0 };

  private readonly template: ChatTemplate;
  private readonly system: string | undefined;

  constructor(
    rwkv: Rwkv,
    state: RwkvState,
    options: ReturnType<typeof samplingOptions>,
    seed: number | undefined,
    template: ChatTemplate,
    system: string | undefined,
  ) {
    this.rwkv = rwkv;
    this.template = template;
    this.system = system;
    this.state = state;
    this.options = options;
    this.seed = seed;
    this.tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  }

  async run(): Promise<void> {
    this.rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: this.tty, prompt: `${this.template.user}: ` });
    this.rl.on('line', (line) => this.pushLine(line));
    this.rl.on('close', () => {
      this.closed = true;
      this.pushLine(undefined);
    });
    const interrupt = (): void => this.interrupt();
    this.rl.on('SIGINT', interrupt); // a terminal's Ctrl-C, read by readline in raw mode
    process.on('SIGINT', interrupt); // a real signal (piped stdin, kill -INT)
    process.stderr.write(
      `[rwkv chat: ${this.rwkv.identity.name}, RWKV v${this.rwkv.config.version}, ${this.rwkv.kernels}; ` +
        `${this.state.tokenCount} tokens in the state. /help lists commands]\n`,
    );
    try {
      for (;;) {
        this.rl.prompt();
        const line = await this.nextLine();
        if (line === undefined) break;
        if (!this.tty) await write(`${line}\n`); // piped input is not echoed: keep the transcript readable
        this.exitArmed = false;
        if (!(await this.handle(line.trim()))) break;
      }
    } finally {
      process.off('SIGINT', interrupt);
      this.rl.close();
      await write('\n');
    }
  }

  private pushLine(line: string | undefined): void {
    if (this.waiting !== undefined) {
      const w = this.waiting;
      this.waiting = undefined;
      w(line);
    } else if (line !== undefined) {
      this.lines.push(line);
    }
  }

  /** Feeds the system text (in the template's system turn) into the state, as the conversation's start. */
  async setUp(): Promise<void> {
    if (this.system === undefined || this.system === '') return;
    await this.rwkv.feed(this.state, chatTurn(this.template, 'system', this.system));
  }

  private nextLine(): Promise<string | undefined> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  private interrupt(): void {
    if (this.current !== undefined) {
      this.current.abort();
      return;
    }
    if (this.rl.line !== '') {
      // Like a shell: Ctrl-C drops what was typed.
      this.rl.write(null, { ctrl: true, name: 'u' });
      return;
    }
    if (this.exitArmed) {
      this.rl.close();
      return;
    }
    this.exitArmed = true;
    process.stdout.write('\n(press Ctrl-C again, or Ctrl-D, or type /exit to leave)\n');
    this.rl.prompt();
  }

  /** Returns false to end the session. */
  private async handle(line: string): Promise<boolean> {
    if (line === '') return true;
    if (!line.startsWith('/')) {
      await this.answer(line);
      return true;
    }
    const [command, ...rest] = line.split(/\s+/);
    const arg = rest.join(' ');
    try {
      switch (command) {
        case '/exit':
        case '/quit':
          return false;
        case '/help':
          await write(`${HELP}\n`);
          break;
        case '/reset':
          this.state = this.rwkv.createState();
          await this.setUp();
          await write(`[reset: a fresh state${this.system !== undefined ? ' (with the system text)' : ''}]\n`);
          break;
        case '/save':
          if (arg === '') throw new ArgumentError('/save needs a file name');
          await this.rwkv.saveState(arg, this.state);
          await write(`[saved the state (${this.state.tokenCount} tokens) to ${arg}]\n`);
          break;
        case '/load':
          if (arg === '') throw new ArgumentError('/load needs a file name');
          this.state = await this.rwkv.loadState(arg);
          await write(`[loaded ${arg}: ${this.state.tokenCount} tokens]\n`);
          break;
        case '/stats':
          await write(`${this.statsText()}\n`);
          break;
        default:
          await write(`[unknown command ${command}; /help lists them]\n`);
      }
    } catch (e) {
      // A bad file or name is reported and the session goes on.
      process.stderr.write(`rwkv: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
    }
    return true;
  }

  private async answer(message: string): Promise<void> {
    const controller = new AbortController();
    // Varies from turn to turn, yet the same question asked of the same (e.g. reloaded) state gets the same answer.
    const seed = this.seed !== undefined ? (this.seed + this.state.tokenCount) >>> 0 : undefined;
    // Blank lines would end the turn early (the template's turns are separated by one), so they are folded.
    const text = message.replace(/\n{2,}/g, '\n');
    const { user, assistant } = this.template;
    const generation = this.rwkv.generate(`${user}: ${text}\n\n${assistant}:`, {
      ...this.options,
      ...(seed !== undefined ? { seed } : {}),
      state: this.state,
      signal: controller.signal,
    });
    this.current = controller;
    await write(`${assistant}:`);
    try {
      for await (const piece of generation) if (piece.text !== '') await write(piece.text);
    } finally {
      this.current = undefined;
    }
    // Keep the template intact for the next turn when the answer did not end with its blank line.
    if (generation.finishReason !== 'stop' || this.options.grammar !== undefined) await this.rwkv.feed(this.state, '\n\n');
    await write('\n\n');
    const s = generation.stats;
    this.last = generation;
    this.totals.tokens += s.generatedTokens;
    this.totals.ms += s.generateMs;
    this.totals.answers++;
    const why = generation.finishReason === 'aborted' ? 'interrupted, ' : generation.finishReason === 'length' ? 'max tokens, ' : '';
    process.stderr.write(`[${why}${s.generatedTokens} tokens, ${rate(s.generatedTokens, s.generateMs)} tokens/s]\n`);
  }

  private statsText(): string {
    const parts = [`[state: ${this.state.tokenCount} tokens`];
    if (this.last !== undefined) {
      const s = this.last.stats;
      parts.push(
        `last answer: ${s.generatedTokens} tokens, ${rate(s.generatedTokens, s.generateMs)} tokens/s ` +
          `(prompt ${s.promptTokens} tokens, ${rate(s.promptTokens, s.promptMs)} tokens/s; ${this.last.finishReason})`,
      );
    }
    parts.push(`session: ${this.totals.answers} answers, ${this.totals.tokens} tokens, ${rate(this.totals.tokens, this.totals.ms)} tokens/s`);
    parts.push(`${this.rwkv.kernels}]`);
    return parts.join('; ');
  }
}

function rate(n: number, ms: number): string {
  return ms > 0 ? (n / (ms / 1000)).toFixed(1) : '–';
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
  });
}
