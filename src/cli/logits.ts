// `rwkv logits`: the model's logits over a file's bytes, as raw float32 little-endian.
import * as fs from 'node:fs';
import { ArgumentError, RwkvError } from '../errors.js';
import { GptModel } from '../models/gpt.js';
import { isGptCheckpoint } from '../models/gpt-load.js';
import { loadTokenizer } from '../tokenizers/load.js';
import { openGpt, openModel, type KernelArgs } from './open-model.js';

/** What writing logits needs of a model: RwkvModel and GptModel (each with its own kind of state) both fit. */
interface LogitsModel<S> {
  readonly config: { readonly nVocab: number };
  createState(): S;
  forward(token: number, state: S): Promise<Float32Array>;
  forwardSequence(tokens: readonly number[], state: S, options: { allLogits?: boolean }): Promise<Float32Array>;
}

export interface LogitsArgs extends KernelArgs {
  model: string;
  input: string;
  out: string;
  all?: boolean;
  mode?: 'parallel' | 'rnn';
  tokenizer?: string;
}

export function readInputFile(path: string): Uint8Array {
  try {
    const st = fs.statSync(path);
    if (st.isDirectory()) throw new RwkvError('NOT_A_FILE', 'is a directory, not a text file', { file: path });
    return fs.readFileSync(path);
  } catch (e) {
    if (e instanceof RwkvError) throw e;
    throw new RwkvError('FILE_NOT_FOUND', `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: path });
  }
}

export async function runLogits(args: LogitsArgs): Promise<void> {
  const bytes = readInputFile(args.input);
  const tokenizer = args.tokenizer !== undefined ? await loadTokenizer(args.tokenizer) : undefined;
  const ids = tokenizer !== undefined ? tokenizer.encodeBytes(bytes) : Array.from(bytes);
  const opened = isGptCheckpoint(args.model) ? await openGpt(args.model, args) : await openModel(args.model, args);
  try {
    // The same check and words as `generate`: a tokenizer larger than the model's vocabulary is the wrong one.
    if (tokenizer !== undefined && tokenizer.vocabSize > opened.model.config.nVocab) {
      throw new ArgumentError(`the tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${opened.model.config.nVocab}`);
    }
    const model = opened.model;
    await (model instanceof GptModel ? writeLogits(model, ids, args) : writeLogits(model, ids, args));
  } finally {
    await opened.close();
  }
}

async function writeLogits<S>(model: LogitsModel<S>, bytes: readonly number[], args: LogitsArgs): Promise<void> {
  if (bytes.length === 0) throw new RwkvError('BAD_ARGUMENT', 'is empty: there is no position to compute logits for', { file: args.input });
  const vocab = model.config.nVocab;
  const state = model.createState();
  const all = args.all === true;
  let out: Float32Array;
  if ((args.mode ?? 'parallel') === 'parallel') {
    out = await model.forwardSequence(bytes, state, { allLogits: all });
  } else {
    out = new Float32Array(all ? bytes.length * vocab : vocab);
    for (let i = 0; i < bytes.length; i++) {
      const logits = await model.forward(bytes[i]!, state);
      if (all) out.set(logits, i * vocab);
      else if (i === bytes.length - 1) out.set(logits);
    }
  }
  try {
    fs.writeFileSync(args.out, new Uint8Array(out.buffer));
  } catch (e) {
    throw new RwkvError('BAD_ARGUMENT', `cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: args.out });
  }
}
