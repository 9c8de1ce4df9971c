// `rwkv logits`: the model's logits over a file's bytes, as raw float32 little-endian.
import * as fs from 'node:fs';
import { ArgumentError, RwkvError } from '../errors.js';
import { loadModel } from '../models/load.js';

export interface LogitsArgs {
  model: string;
  input: string;
  out: string;
  all?: boolean;
  mode?: 'parallel' | 'rnn';
  chunk?: number;
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

export function runLogits(args: LogitsArgs): void {
  const model = loadModel(args.model);
  const bytes = readInputFile(args.input);
  if (bytes.length === 0) throw new RwkvError('BAD_ARGUMENT', 'is empty: there is no position to compute logits for', { file: args.input });
  const vocab = model.config.nVocab;
  const state = model.createState();
  const all = args.all === true;
  let out: Float32Array;
  if ((args.mode ?? 'parallel') === 'parallel') {
    const chunk = args.chunk ?? 64;
    if (chunk < 1) throw new ArgumentError(`--chunk must be ≥ 1, got ${chunk}`);
    out = model.forwardSequence(Array.from(bytes), state, { allLogits: all, chunk });
  } else {
    out = new Float32Array(all ? bytes.length * vocab : vocab);
    for (let i = 0; i < bytes.length; i++) {
      const logits = model.forward(bytes[i]!, state);
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
