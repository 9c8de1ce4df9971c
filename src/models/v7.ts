// RWKV v7 in RNN mode — not implemented yet.
import { ModelError } from '../errors.js';
import type { ModelConfig } from './config.js';
import type { RnnModel } from './model.js';
import type { Weights } from './weights.js';

/** `rwkvcpp`: parameters stored pre-transformed as rwkv.cpp does; `official`: as RWKV-LM / ChatRWKV store them. */
export function buildV7(w: Weights, config: ModelConfig, encoding: 'rwkvcpp' | 'official'): RnnModel {
  void encoding;
  throw new ModelError('UNKNOWN_MODEL', `RWKV v${config.version} is not implemented yet`, { file: w.file });
}
