// `rwkv tokenize`: stdin → token ids as a JSON array on stdout; with --decode, a JSON array of ids on
// stdin → exactly the bytes they stand for. Byte-exact both ways: nothing is trimmed or normalised here.
import { ArgumentError } from '../errors.js';
import * as path from 'node:path';
import { openCheckpoint } from '../formats/open.js';
import { loadTokenizer, tokenizerForModel } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export interface TokenizeArgs {
  /** A tokenizer file (World vocabulary or tokenizer.json) or 'bytes'; default: the model's. */
  tokenizer?: string;
  /** Without --tokenizer: the model whose tokenizer to use (its vocabulary size picks it). */
  model?: string;
  decode?: boolean;
}

/** Where the command reads and writes; process.stdin/stdout unless a test gives others. */
export interface TokenizeIo {
  input: AsyncIterable<Uint8Array | string>;
  write: (bytes: Uint8Array) => Promise<void>;
}

export async function runTokenize(args: TokenizeArgs, io: TokenizeIo = processIo()): Promise<void> {
  const tokenizer = args.tokenizer !== undefined ? await loadTokenizer(args.tokenizer) : await modelTokenizer(args.model);
  const input = await readAll(io.input);
  await io.write(args.decode === true ? decodeIds(tokenizer, input) : encodeToJson(tokenizer, input));
}

/** The tokenizer `generate` would use with this model: its file's own, else by vocabulary size, the file looked for beside it. */
async function modelTokenizer(model: string | undefined): Promise<Tokenizer> {
  if (model === undefined) throw new ArgumentError('give --tokenizer FILE, or --model FILE to use its tokenizer');
  const source = await openCheckpoint(model);
  // The model file's own tokenizer (a GGUF's) wins over guessing by vocabulary size.
  if (source.tokenizer !== undefined) return source.tokenizer;
  const nVocab = source.tensors.get('emb.weight')?.shape[0];
  if (nVocab === undefined) throw new ArgumentError(`${model}: no emb.weight tensor to tell the vocabulary size; give --tokenizer FILE`);
  return tokenizerForModel(nVocab, undefined, [path.dirname(model), process.cwd()]);
}

/** The ids of `input` as one line of JSON: `[1,2,3]\n`. */
export function encodeToJson(tokenizer: Tokenizer, input: Uint8Array): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(tokenizer.encodeBytes(input))}\n`);
}

/** The bytes of the ids in `input`, a JSON array of integers. */
export function decodeIds(tokenizer: Tokenizer, input: Uint8Array): Uint8Array {
  let ids: unknown;
  try {
    ids = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(input));
  } catch {
    throw new ArgumentError('--decode reads a JSON array of token ids from stdin, and this is not JSON');
  }
  if (!Array.isArray(ids) || !ids.every((id): id is number => typeof id === 'number' && Number.isInteger(id))) {
    throw new ArgumentError('--decode reads a JSON array of token ids (integers) from stdin');
  }
  return tokenizer.decodeBytes(ids);
}

async function readAll(input: AsyncIterable<Uint8Array | string>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
  return Buffer.concat(chunks);
}

function processIo(): TokenizeIo {
  return {
    input: process.stdin,
    write: (bytes) =>
      new Promise((resolve, reject) => {
        process.stdout.write(bytes, (e) => (e ? reject(e) : resolve()));
      }),
  };
}
