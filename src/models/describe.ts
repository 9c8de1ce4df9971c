// A human-readable summary of a loaded model: what `rwkv info` prints.
import { dequantize, QK } from '../kernels/quant.js';
import { elementCount, type Tensor } from '../tensor/tensor.js';
import { DTYPES } from '../tensor/dtype.js';
import type { RwkvModel } from './model.js';

// Low-rank factors by name: v6's mix and decay LoRAs, v7's decay (w), in-context rate (a), value residual
// (v) and gate (g) pairs. Not by shape: v5.2/v6 per-head time_decay/time_faaaa are [H, N] or [H, N, 1]
// depending on the file, and v7's x_rwkvag [6, 1, C] is six vectors.
const LORA = /\.att\.(time_maa_w[12]|time_decay_w[12]|[wavg][12])$/;

const GROUPS: readonly { name: string; test: (n: string, t: Tensor) => boolean }[] = [
  { name: 'embedding', test: (n) => n === 'emb.weight' },
  { name: 'head', test: (n) => n === 'head.weight' },
  { name: 'time-mix matrices', test: (n, t) => /\.att\.(key|value|receptance|output|gate)\.weight$/.test(n) && t.shape.length === 2 },
  { name: 'channel-mix matrices', test: (n, t) => /\.ffn\.(key|value|receptance)\.weight$/.test(n) && t.shape.length === 2 },
  { name: 'low-rank (LoRA) matrices', test: (n) => LORA.test(n) },
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

/** A tensor holding NaN or ±inf values: how many, and the first one's index (row-major, flat). */
export interface NonFiniteTensor {
  name: string;
  count: number;
  first: number;
}

/** Every tensor with a NaN or an infinity among its values, in the map's order. */
export function nonFiniteTensors(tensors: ReadonlyMap<string, Tensor>): NonFiniteTensor[] {
  const bad: NonFiniteTensor[] = [];
  for (const [name, t] of tensors) {
    const { count, first } = scanNonFinite(t);
    if (count > 0) bad.push({ name, count, first });
  }
  return bad;
}

/** Values decoded per step of a quantized tensor (a small scratch rather than a copy of the tensor). */
const SCAN_CHUNK = 256 * QK; // a whole number of blocks of every type (a K-quant block is 256)

function scanNonFinite(t: Tensor): { count: number; first: number } {
  const n = elementCount(t.shape);
  const b = t.data;
  let count = 0;
  let first = -1;
  // Floats are tested by their exponent bits (all ones: inf or NaN), without decoding.
  const byBits = (bytes: 2 | 4, mask: number): void => {
    const aligned = b.byteOffset % bytes === 0 ? b : b.slice(0, n * bytes);
    const view = bytes === 4 ? new Uint32Array(aligned.buffer, aligned.byteOffset, n) : new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    for (let i = 0; i < n; i++) {
      if ((view[i]! & mask) === mask) {
        if (count++ === 0) first = i;
      }
    }
  };
  switch (t.dtype) {
    case 'f32':
      byBits(4, 0x7f800000);
      break;
    case 'f16':
      byBits(2, 0x7c00);
      break;
    case 'bf16':
      byBits(2, 0x7f80);
      break;
    default: {
      // ggml blocks: a NaN/inf scale (or min) makes values non-finite; decode a chunk at a time.
      const out = new Float32Array(SCAN_CHUNK);
      for (let at = 0; at < n; at += SCAN_CHUNK) {
        const len = Math.min(SCAN_CHUNK, n - at);
        dequantize(t.dtype, b, at / DTYPES[t.dtype].blockSize, len, out);
        for (let i = 0; i < len; i++) {
          const v = out[i]!;
          if (v - v !== 0) {
            if (count++ === 0) first = at + i;
          }
        }
      }
    }
  }
  return { count, first };
}
