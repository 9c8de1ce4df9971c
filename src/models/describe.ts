// A human-readable summary of a loaded model: what `rwkv info` prints.
import { elementCount, type Tensor } from '../tensor/tensor.js';
import type { RwkvModel } from './model.js';

const GROUPS: readonly { name: string; test: (n: string, t: Tensor) => boolean }[] = [
  { name: 'embedding', test: (n) => n === 'emb.weight' },
  { name: 'head', test: (n) => n === 'head.weight' },
  { name: 'time-mix matrices', test: (n, t) => /\.att\.(key|value|receptance|output|gate)\.weight$/.test(n) && t.shape.length === 2 },
  { name: 'channel-mix matrices', test: (n, t) => /\.ffn\.(key|value|receptance)\.weight$/.test(n) && t.shape.length === 2 },
  { name: 'low-rank (LoRA) matrices', test: (n, t) => elementCount(t.shape) > 0 && t.shape.filter((d) => d > 1).length >= 2 },
  { name: 'vectors (norms, mixes, decays)', test: () => true },
];

export interface ModelSummary {
  groups: { name: string; dtypes: string[]; tensors: number; bytes: number }[];
  weightBytes: number;
  /** Bytes read per generated token in RNN mode: every weight once, but only one row of the embedding. */
  bytesPerToken: number;
}

export function summarize(model: RwkvModel): ModelSummary {
  const groups = GROUPS.map((g) => ({ name: g.name, dtypes: new Set<string>(), tensors: 0, bytes: 0 }));
  let weightBytes = 0;
  let bytesPerToken = 0;
  for (const [name, t] of model.tensors) {
    const i = GROUPS.findIndex((g) => g.test(name, t));
    const g = groups[i]!;
    const held = model.reencoded.get(name) ?? { dtype: t.dtype, bytes: t.data.byteLength };
    g.dtypes.add(held.dtype);
    g.tensors++;
    g.bytes += held.bytes;
    weightBytes += held.bytes;
    bytesPerToken += name === 'emb.weight' ? held.bytes / t.shape[0]! : held.bytes;
  }
  return {
    groups: groups.filter((g) => g.tensors > 0).map((g) => ({ ...g, dtypes: [...g.dtypes].sort() })),
    weightBytes,
    bytesPerToken,
  };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB (${bytes} bytes)`;
}

export function describeModel(model: RwkvModel): string {
  const c = model.config;
  const s = summarize(model);
  const lines = [
    `file:              ${model.file}`,
    `version:           RWKV v${c.version}`,
    `layers:            ${c.nLayer}`,
    `n_embd:            ${c.nEmbd}`,
    c.version === '4' ? `heads:             none (v4 mixes per channel)` : `heads:             ${c.nHead} × head size ${c.headSize}`,
    `ffn size:          ${c.ffnSize}`,
    `vocabulary:        ${c.nVocab}`,
    `parameters:        ${[...model.tensors.values()].reduce((a, t) => a + elementCount(t.shape), 0)}`,
    'tensor types:',
    ...s.groups.map((g) => `  ${g.name.padEnd(30)} ${g.dtypes.join(', ').toUpperCase().padEnd(10)} ${String(g.tensors).padStart(4)} tensors  ${mib(g.bytes)}`),
    `weights in memory: ${mib(s.weightBytes)}`,
    `read per token:    ${mib(s.bytesPerToken)}`,
    `state:             ${model.createState().data.byteLength} bytes`,
  ];
  return lines.join('\n') + '\n';
}
