// `rwkv generate`: streams generated text to stdout, speed to stderr.
import { ArgumentError } from '../errors.js';
import { feed, generateTokens, validateGenerateOptions } from '../generation/generate.js';
import type { RwkvModel } from '../models/model.js';
import { openModel, type KernelArgs } from './open-model.js';
import * as path from 'node:path';
import { tokenizerForModel } from '../tokenizers/load.js';
import { StreamDecoder } from '../tokenizers/tokenizer.js';

export interface GenerateArgs extends KernelArgs {
  model: string;
  positional: string | undefined;
  prompt?: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed?: number;
  tokenizer?: string;
}

export async function runGenerate(args: GenerateArgs): Promise<void> {
  if (args.prompt !== undefined && args.positional !== undefined) {
    throw new ArgumentError('give the prompt either as an argument or with --prompt, not both');
  }
  const prompt = args.prompt ?? args.positional ?? '';
  validateGenerateOptions(args);
  const opened = await openModel(args.model, args);
  try {
    await generate(opened.model, prompt, args);
  } finally {
    await opened.close();
  }
}

async function generate(model: RwkvModel, prompt: string, args: GenerateArgs): Promise<void> {
  const tokenizer = tokenizerForModel(model.config.nVocab, args.tokenizer, [path.dirname(args.model), process.cwd()]);
  // An empty prompt starts from token 0, as ChatRWKV does.
  const ids = prompt === '' ? [0] : tokenizer.encode(prompt);
  const state = model.createState();
  const t0 = performance.now();
  const logits = feed(model, state, ids)!;
  const t1 = performance.now();
  const decoder = new StreamDecoder(tokenizer);
  let count = 0;
  for (const token of generateTokens(model, state, logits, args)) {
    const text = decoder.push(token.id);
    if (text !== '') await write(text);
    count++;
  }
  const tail = decoder.flush();
  if (tail !== '') await write(tail);
  const t2 = performance.now();
  const rate = (n: number, ms: number): string => (ms > 0 ? (n / (ms / 1000)).toFixed(1) : '∞');
  process.stderr.write(
    `\n[prompt: ${ids.length} tokens, ${rate(ids.length, t1 - t0)} tokens/s; generated: ${count} tokens, ${rate(count, t2 - t1)} tokens/s]\n`,
  );
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
  });
}
