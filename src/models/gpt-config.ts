// GPT-2's config.json (Hugging Face keys) read into the engine's GptConfig, every field checked: a bad
// or missing value is a ModelError naming the file and the key.
import { ModelError } from '../errors.js';
import type { GptConfig } from './gpt.js';

/** config.json as read: the model's sizes, and whether its head is tied to wte. */
export interface GptFileConfig extends GptConfig {
  /** tie_word_embeddings (default true): the head is wte unless lm_head.weight is stored. */
  readonly tieWordEmbeddings: boolean;
}

/** Whether a parsed config.json describes a GPT-2 model (model_type "gpt2"). */
export function isGpt2Config(json: unknown): boolean {
  return typeof json === 'object' && json !== null && (json as Record<string, unknown>)['model_type'] === 'gpt2';
}

/** Reads config.json's fields; `file` names it in errors. */
export function parseGptConfig(json: unknown, file: string): GptFileConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelError('BAD_HEADER', 'is not a JSON object', { file });
  }
  const o = json as Record<string, unknown>;
  if (o['model_type'] !== undefined && o['model_type'] !== 'gpt2') {
    throw new ModelError('UNKNOWN_MODEL', `has model_type ${JSON.stringify(o['model_type'])}; only "gpt2" is supported`, { file });
  }
  const int = (key: string, fallback?: number): number => {
    const v = o[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new ModelError('BAD_HEADER', `${key} must be an integer ≥ 1, got ${JSON.stringify(v)}`, { file });
    }
    return v;
  };
  const nLayer = int('n_layer');
  const nEmbd = int('n_embd');
  const nHead = int('n_head');
  // n_ctx is the older name of n_positions.
  const nPositions = int('n_positions', typeof o['n_ctx'] === 'number' ? o['n_ctx'] : undefined);
  const nVocab = int('vocab_size');
  if (nEmbd % nHead !== 0) throw new ModelError('BAD_HEADER', `n_embd ${nEmbd} is not a multiple of n_head ${nHead}`, { file });
  const eps = o['layer_norm_epsilon'] ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new ModelError('BAD_HEADER', `layer_norm_epsilon must be a number > 0, got ${JSON.stringify(eps)}`, { file });
  const act = o['activation_function'] ?? 'gelu_new';
  // GPT-2's "gelu_new" and the same tanh form under other names; the erf GELU would give other logits.
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh' && act !== 'gelu_fast') {
    throw new ModelError('BAD_HEADER', `activation_function ${JSON.stringify(act)} is not supported (only GPT-2's tanh GELU, "gelu_new")`, { file });
  }
  const tie = o['tie_word_embeddings'] ?? true;
  if (typeof tie !== 'boolean') throw new ModelError('BAD_HEADER', `tie_word_embeddings must be true or false, got ${JSON.stringify(tie)}`, { file });
  return { nLayer, nEmbd, nHead, nPositions, nVocab, layerNormEps: eps, tieWordEmbeddings: tie };
}

/** config.json for a GptFileConfig (what a checkpoint writer puts beside model.safetensors). */
export function gptConfigJson(c: GptFileConfig): Record<string, unknown> {
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    n_layer: c.nLayer,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    vocab_size: c.nVocab,
    layer_norm_epsilon: c.layerNormEps,
    activation_function: 'gelu_new',
    tie_word_embeddings: c.tieWordEmbeddings,
  };
}
