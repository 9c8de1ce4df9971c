// Which RWKV generation a set of tensors is, judged from layer 0's time-mix tensor names (official names,
// which every reader maps to). Used by the models to pick their blocks and by the format transforms.
import { ModelError } from '../errors.js';
import type { TensorSource } from './tensor-source.js';

/** RWKV generations. rwkv.cpp's "5.1" is ChatRWKV's v5.0; "5.2" is Eagle; "6" Finch; "7" Goose. */
export type RwkvVersion = '4' | '5.1' | '5.2' | '6' | '7';

/** Which version a set of tensors is, judged from layer 0's time-mix tensor names. */
export function detectVersion(source: Pick<TensorSource, 'tensors' | 'file'>): RwkvVersion {
  const t = source.tensors;
  const att = 'blocks.0.att.';
  const has = (n: string): boolean => t.has(att + n);
  if (!t.has('emb.weight')) {
    throw new ModelError('MISSING_TENSOR', 'is missing: not an RWKV checkpoint?', { file: source.file, tensor: 'emb.weight' });
  }
  if (has('x_rwkvag') || has('x_r') || has('w0')) return '7';
  if (has('time_maa_x')) return '6';
  if (has('ln_x.weight')) {
    if (has('gate.weight') || has('time_faaaa')) return '5.2';
    if (has('time_first')) return '5.1';
    throw new ModelError('UNKNOWN_MODEL', `has ${att}ln_x (RWKV v5) but neither a gate (v5.2) nor time_first (v5.1)`, {
      file: source.file,
    });
  }
  if (has('time_first') && has('time_decay') && has('time_mix_k')) return '4';
  const names = [...t.keys()].filter((n) => n.startsWith(att)).map((n) => n.slice(att.length));
  throw new ModelError(
    'UNKNOWN_MODEL',
    `cannot tell the RWKV version: layer 0's time mix has [${names.join(', ') || 'no tensors'}]`,
    { file: source.file },
  );
}

