// `rwkv convert --in X --out Y [--dtype f32|f16|bf16]`: rewrites a checkpoint in the format named by Y's
// extension (.safetensors, .pth/.pt, .gguf, .bin), translating names and parameter encodings as needed.
import { ArgumentError } from '../errors.js';
import * as path from 'node:path';
import { outputFormatOf, writeCheckpoint, type FloatType, type WriteSummary } from '../formats/convert.js';
import { openCheckpoint } from '../formats/open.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { tokenizerForModel } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { basename } from './open-model.js';
import { readProgress } from './progress.js';

export interface ConvertArgs {
  in: string;
  out: string;
  dtype?: string;
}

const FLOAT_TYPES: readonly FloatType[] = ['f32', 'f16', 'bf16'];

export function summaryLine(out: string, s: WriteSummary): string {
  const types = [...s.types].map(([d, n]) => `${d} ×${n}`).join(', ');
  return `wrote ${out}: ${s.format}, ${s.tensors} tensors (${types})\n`;
}

/**
 * For a GGUF output, which must carry the tokenizer: the one generate would use with `input` when the
 * source carries none and the writer cannot tell it (vocabularies other than 256), found beside the model.
 */
export async function ggufTokenizerFor(source: TensorSource, input: string, out: string): Promise<Tokenizer | undefined> {
  const nVocab = source.tensors.get('emb.weight')?.shape[0];
  if (outputFormatOf(out) !== 'gguf' || source.tokenizer !== undefined || nVocab === undefined || nVocab === 256) return undefined;
  return tokenizerForModel(nVocab, undefined, [path.dirname(input), process.cwd()], 'a GGUF file carries it: put it beside the model');
}

export async function runConvert(args: ConvertArgs): Promise<WriteSummary> {
  let dtype: FloatType | undefined;
  if (args.dtype !== undefined) {
    const d = args.dtype.toLowerCase();
    if (!(FLOAT_TYPES as readonly string[]).includes(d)) throw new ArgumentError(`--dtype must be one of ${FLOAT_TYPES.join(', ')}, got '${args.dtype}'`);
    dtype = d as FloatType;
  }
  const progress = readProgress(`reading ${basename(args.in)}`);
  const source = await openCheckpoint(args.in, undefined, { onProgress: progress.onProgress }).finally(() => progress.done());
  const tokenizer = await ggufTokenizerFor(source, args.in, args.out);
  const summary = writeCheckpoint(source, args.out, { ...(dtype !== undefined ? { dtype } : {}), ...(tokenizer !== undefined ? { tokenizer } : {}) });
  process.stderr.write(summaryLine(args.out, summary));
  return summary;
}
