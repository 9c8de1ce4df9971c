// Loading a GPT-2 checkpoint from the file system (Node): model.safetensors with a Hugging Face
// config.json beside it. The model path may be the directory or the .safetensors file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArgumentError, ModelError, RwkvError } from '../errors.js';
import { openCheckpoint } from '../formats/open.js';
import type { ReadOptions } from '../formats/source-reader.js';
import type { Backend } from '../kernels/backend.js';
import { ReferenceBackend } from '../kernels/reference-backend.js';
import { BpeTokenizer } from '../tokenizers/bpe.js';
import { ByteTokenizer } from '../tokenizers/bytes.js';
import { loadTokenizer } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { isGpt2Config, parseGptConfig } from './gpt-config.js';
import { gptFromSource } from './gpt-weights.js';
import type { GptModel } from './gpt.js';

/** Where a GPT checkpoint's files are. */
export interface GptPaths {
  readonly weights: string;
  readonly config: string;
}

/** The weights file and config.json for a model path (a directory, or the .safetensors file). */
export function gptPaths(model: string): GptPaths {
  const isDir = fs.existsSync(model) && fs.statSync(model).isDirectory();
  const dir = isDir ? model : path.dirname(model);
  return { weights: isDir ? path.join(model, 'model.safetensors') : model, config: path.join(dir, 'config.json') };
}

/**
 * Whether `model` is a GPT-2 checkpoint: a directory or a file with a config.json beside it whose
 * model_type is "gpt2" (or a directory with model.safetensors and no config.json: RWKV checkpoints are
 * single files).
 */
export function isGptCheckpoint(model: string): boolean {
  if (/^[a-z]+:\/\//i.test(model) || !fs.existsSync(model)) return false;
  const isDir = fs.statSync(model).isDirectory();
  const { config } = gptPaths(model);
  // A directory holding model.safetensors but no config.json is a GPT checkpoint missing it (loadGpt
  // names the file); any other directory is not a checkpoint at all (the RWKV loader says so).
  if (!fs.existsSync(config)) return isDir && fs.existsSync(gptPaths(model).weights);
  try {
    return isGpt2Config(JSON.parse(fs.readFileSync(config, 'utf8')));
  } catch {
    return false;
  }
}

export interface GptLoadOptions extends ReadOptions {
  /** Default: a ReferenceBackend. */
  backend?: Backend;
  /** Keep a KV cache (default true). */
  kvCache?: boolean;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RwkvError('FILE_NOT_FOUND', code === 'ENOENT' ? `is missing (${what})` : `cannot read (${code ?? String(e)})`, { file });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelError('BAD_HEADER', `is not valid JSON (${(e as Error).message})`, { file });
  }
}

/** Loads a GPT-2 checkpoint (directory or .safetensors path). */
export async function loadGpt(model: string, options: GptLoadOptions = {}): Promise<GptModel> {
  const { backend: given, kvCache, ...read } = options;
  const paths = gptPaths(model);
  const config = parseGptConfig(readJson(paths.config, 'a GPT-2 checkpoint needs its config.json beside the weights'), paths.config);
  if (!fs.existsSync(paths.weights)) throw new RwkvError('FILE_NOT_FOUND', 'no such file (a GPT-2 checkpoint directory holds model.safetensors)', { file: paths.weights });
  // Plain memory: the Conv1D matrices are transposed into the backend's memory, the rest copied there.
  const source = await openCheckpoint(paths.weights, undefined, read);
  if (source.format !== 'safetensors') throw new ModelError('UNKNOWN_MODEL', `is ${source.format}; a GPT-2 checkpoint is safetensors`, { file: paths.weights });
  return gptFromSource(source, config, given ?? new ReferenceBackend(), kvCache === undefined ? {} : { kvCache });
}

/**
 * The tokenizer of a GPT checkpoint: `spec` when given; vocabulary 256 → bytes; else tokenizer.json, or
 * vocab.json + merges.txt (GPT-2's original files), beside the weights.
 */
export async function gptTokenizer(model: string, nVocab: number, spec?: string): Promise<Tokenizer> {
  const tokenizer = spec !== undefined ? await loadTokenizer(spec) : await found(model, nVocab);
  if (tokenizer.vocabSize > nVocab) {
    throw new ArgumentError(`the tokenizer ${tokenizer.name} has ${tokenizer.vocabSize} ids, more than the model's vocabulary of ${nVocab}`);
  }
  return tokenizer;
}

async function found(model: string, nVocab: number): Promise<Tokenizer> {
  if (nVocab === 256) return new ByteTokenizer();
  const dir = path.dirname(gptPaths(model).config);
  const json = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(json)) return loadTokenizer(json);
  const vocab = path.join(dir, 'vocab.json');
  const merges = path.join(dir, 'merges.txt');
  if (fs.existsSync(vocab) && fs.existsSync(merges)) {
    // GPT-2's own files are the parts of a tokenizer.json: a byte-level BPE with ByteLevel pre-tokenizer.
    const lines = fs.readFileSync(merges, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#version'));
    const vocabMap = readJson(vocab, 'vocab.json') as Record<string, number>;
    const eos = vocabMap['<|endoftext|>'];
    return BpeTokenizer.fromJson(
      {
        model: { type: 'BPE', vocab: vocabMap, merges: lines },
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
        decoder: { type: 'ByteLevel' },
        added_tokens: eos === undefined ? [] : [{ id: eos, content: '<|endoftext|>', special: true, normalized: false }],
      },
      vocab,
    );
  }
  throw new RwkvError('FILE_NOT_FOUND', `the GPT model has a vocabulary of ${nVocab} and no tokenizer beside it (tokenizer.json, or vocab.json + merges.txt, in ${dir}); give one with --tokenizer FILE`);
}
