// The two parameter encodings (TensorSource.encoding) and the transforms between them. Both use the
// official tensor names; they differ in a few parameters, per version (shapes in PyTorch order):
//
//           official (RWKV-LM / ChatRWKV)        rwkvcpp (rwkv.cpp's converter)
//   v4      time_decay [C] raw w                 −exp(w) [C];  time_first, time_mix_* squeezed to [C]
//   v5.1    time_decay [H], time_first [H]       exp(−exp(w)) [H, 1, 1], exp(u) [H, 1, 1]
//   v5.2    time_decay [H, N], time_faaaa [H, N] exp(−exp(w)) [H, N, 1], time_faaaa [H, N, 1]
//   v5      time_mix_* [1, 1, C]                 [C]
//   v6      time_maa_* [1, 1, C]                 [C]
//           time_maa_w1 [C, 5D]                  [5D, C]   (transposed)
//           time_maa_w2 [5, D, C]                [5, C, D] (each chunk transposed)
//           time_decay [1, 1, C]                 [H, N, 1] (same values)
//           time_decay_w1 [C, D2], _w2 [D2, C]   [D2, C], [C, D2]
//           time_faaaa [H, N]                    [H, N, 1]
//   v7      x_r x_w x_k x_v x_a x_g [1, 1, C]    x_rwkvag [6, 1, C] (concatenated in that order)
//           w1 a1 v1 g1 [C, D], w2 a2 v2 g2 [D, C]   transposed: [D, C], [C, D]
// Untouched tensors pass through by reference (no copy); transformed ones are small (vectors and LoRA
// factors) and come out as f32, computed in float64 from the stored values and rounded once.
import { ModelError } from '../errors.js';
import { elementCount, shapeString, type Tensor } from '../tensor/tensor.js';
import type { ParameterEncoding, TensorSource } from './tensor-source.js';
import { detectVersion, type RwkvVersion } from './version.js';
import { decodeF32, f32Tensor } from './values.js';

const V7_PARTS = ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g'] as const;
const V7_DOWN = new Set(['w1', 'a1', 'v1', 'g1']);
const V7_UP = new Set(['w2', 'a2', 'v2', 'g2']);

function squeeze(shape: readonly number[]): number[] {
  const s = shape.filter((d) => d !== 1);
  return s.length > 0 ? s : [1];
}

function reshaped(t: Tensor, shape: readonly number[]): Tensor {
  return { ...t, shape };
}

function mapValues(t: Tensor, shape: readonly number[], f: (x: number) => number): Tensor {
  const v = decodeF32(t);
  for (let i = 0; i < v.length; i++) v[i] = f(v[i]!);
  return f32Tensor(t.name, shape, v);
}

/** [rows, cols] → [cols, rows] as f32 (batched over leading dimensions). */
function transposed(t: Tensor, outShape: readonly number[]): Tensor {
  const s = t.shape;
  const rows = s[s.length - 2]!;
  const cols = s[s.length - 1]!;
  const v = decodeF32(t);
  const out = new Float32Array(v.length);
  const plane = rows * cols;
  for (let b = 0; b < v.length / plane; b++) {
    const o = b * plane;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[o + c * rows + r] = v[o + r * cols + c]!;
  }
  return f32Tensor(t.name, outShape, out);
}

function swapLast(shape: readonly number[]): number[] {
  const s = shape.slice();
  const n = s.length;
  [s[n - 2], s[n - 1]] = [s[n - 1]!, s[n - 2]!];
  return s;
}

function expectDims(t: Tensor, dims: number, file: string, what: string): void {
  if (t.shape.length !== dims) {
    throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected ${what}`, { file, tensor: t.name });
  }
}

/** The same model with its parameters in `target` encoding (a new source; the input is not changed). */
export function toEncoding(source: TensorSource, target: ParameterEncoding): TensorSource {
  if (source.encoding === target) return source;
  const version: RwkvVersion = detectVersion(source);
  const toCpp = target === 'rwkvcpp';
  const file = source.file;
  const out = new Map<string, Tensor>();
  const put = (t: Tensor): void => void out.set(t.name, t);
  const headsOf = (layerPrefix: string): number => {
    const u = source.tensors.get(`${layerPrefix}.att.time_faaaa`);
    if (u === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: `${layerPrefix}.att.time_faaaa` });
    return u.shape[0]!;
  };
  for (const [name, t] of source.tensors) {
    const m = /^(blocks\.\d+)\.(att|ffn)\.(.+)$/.exec(name);
    if (m === null) {
      put(t);
      continue;
    }
    const [, prefix, part, leaf] = m as unknown as [string, string, string, string];
    const n = elementCount(t.shape);
    if (version === '4' || version === '5.1' || version === '5.2') {
      if (leaf.startsWith('time_mix_')) put(reshaped(t, toCpp ? squeeze(t.shape) : [1, 1, n]));
      else if (part === 'att' && leaf === 'time_decay') {
        if (version === '4') put(toCpp ? mapValues(t, [n], (w) => -Math.exp(w)) : mapValues(t, [n], (w) => Math.log(-w)));
        else {
          const shape = toCpp ? (version === '5.1' ? [n, 1, 1] : [...squeeze(t.shape), 1]) : version === '5.1' ? [n] : squeeze(t.shape);
          put(toCpp ? mapValues(t, shape, (w) => Math.exp(-Math.exp(w))) : mapValues(t, shape, (w) => Math.log(-Math.log(w))));
        }
      } else if (part === 'att' && leaf === 'time_first') {
        if (version === '4') put(reshaped(t, toCpp ? squeeze(t.shape) : [n]));
        else put(toCpp ? mapValues(t, [n, 1, 1], Math.exp) : mapValues(t, [n], Math.log));
      } else if (part === 'att' && leaf === 'time_faaaa') {
        put(reshaped(t, toCpp ? [...squeeze(t.shape), 1] : squeeze(t.shape)));
      } else put(t);
      continue;
    }
    if (version === '6') {
      if (/^time_maa_[xwkvrg]$/.test(leaf)) put(reshaped(t, toCpp ? [n] : [1, 1, n]));
      else if (leaf === 'time_maa_w1' || leaf === 'time_decay_w1' || leaf === 'time_decay_w2') {
        expectDims(t, 2, file, '2 dimensions (LoRA factor)');
        put(transposed(t, swapLast(t.shape)));
      } else if (leaf === 'time_maa_w2') {
        expectDims(t, 3, file, '[5, rank, C] or [5, C, rank]');
        put(transposed(t, swapLast(t.shape)));
      } else if (leaf === 'time_decay') {
        const h = headsOf(prefix);
        put(reshaped(t, toCpp ? [h, n / h, 1] : [1, 1, n]));
      } else if (leaf === 'time_faaaa') put(reshaped(t, toCpp ? [...squeeze(t.shape), 1] : squeeze(t.shape)));
      else put(t);
      continue;
    }
    // v7
    if (part === 'att' && (V7_DOWN.has(leaf) || V7_UP.has(leaf))) {
      expectDims(t, 2, file, '2 dimensions (LoRA factor)');
      put(transposed(t, swapLast(t.shape)));
    } else if (part === 'att' && toCpp && (V7_PARTS as readonly string[]).includes(leaf)) {
      if (leaf !== 'x_r') continue; // joined when x_r is met, so x_rwkvag takes x_r's place in the order
      const parts = V7_PARTS.map((p) => {
        const x = source.tensors.get(`${prefix}.att.${p}`);
        if (x === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: `${prefix}.att.${p}` });
        return decodeF32(x);
      });
      const c = parts[0]!.length;
      const joined = new Float32Array(6 * c);
      parts.forEach((p, i) => {
        if (p.length !== c) throw new ModelError('BAD_SHAPE', `has ${p.length} values, x_r has ${c}`, { file, tensor: `${prefix}.att.${V7_PARTS[i]}` });
        joined.set(p, i * c);
      });
      put(f32Tensor(`${prefix}.att.x_rwkvag`, [6, 1, c], joined));
    } else if (part === 'att' && !toCpp && leaf === 'x_rwkvag') {
      if (n % 6 !== 0) throw new ModelError('BAD_SHAPE', `has ${n} values, not 6 × C`, { file, tensor: name });
      const v = decodeF32(t);
      const c = n / 6;
      V7_PARTS.forEach((p, i) => put(f32Tensor(`${prefix}.att.${p}`, [1, 1, c], v.slice(i * c, (i + 1) * c))));
    } else put(t);
  }
  return { ...source, encoding: target, tensors: out };
}
