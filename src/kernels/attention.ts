// GPT's two operations on host memory: causal multi-head attention over a KV cache, and GELU (tanh form).
// Plain TypeScript over Float32Arrays — JS arrays for the reference backend, views of the WebAssembly
// memory for the wasm backend (which inherits these) — with sums in float64.
import type { DeviceTensor, KvSlot, RowLayout } from './backend.js';

/** √(2/π), GELU's tanh-form constant. */
const GELU_K = Math.sqrt(2 / Math.PI);

/** GPT-2's GELU ("gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_K * (x + 0.044715 * x * x * x)));
}

/** out[i] = gelu(x[i]); out may be x. */
export function geluRows(x: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = geluTanh(x[i]!);
}

/** Throws a RangeError unless out has x's shape (Backend.gelu). */
export function checkGelu(x: DeviceTensor, out: DeviceTensor): void {
  if (out.rows !== x.rows || out.cols !== x.cols) throw new RangeError(`gelu: out is ${out.rows} × ${out.cols}, x is ${x.rows} × ${x.cols}`);
}

/** Throws a RangeError naming the operand whose shape does not fit Backend.attention. */
export function checkAttention(layout: RowLayout, slots: readonly KvSlot[], heads: number, q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor): void {
  const c = q.cols;
  if (!Number.isInteger(heads) || heads < 1 || c % heads !== 0) throw new RangeError(`attention: ${heads} heads do not split ${c} columns`);
  for (const [name, t] of [['k', k], ['v', v], ['out', out]] as const) {
    if (t.rows !== q.rows || t.cols !== c) throw new RangeError(`attention: ${name} is ${t.rows} × ${t.cols}, q is ${q.rows} × ${c}`);
  }
  if (layout.rows !== q.rows) throw new RangeError(`attention: the layout has ${layout.rows} rows, q has ${q.rows}`);
  if (slots.length !== layout.lengths.length) throw new RangeError(`attention: ${slots.length} KV slots for ${layout.lengths.length} sequences`);
  slots.forEach((s, b) => {
    const need = s.length + layout.lengths[b]!;
    if (!Number.isInteger(s.length) || s.length < 0) throw new RangeError(`attention: a KV slot's length is ${s.length}`);
    for (const t of [s.k, s.v]) {
      if (t.cols !== c || t.rows < need) throw new RangeError(`attention: a KV cache of ${t.rows} × ${t.cols} cannot hold ${need} rows of ${c}`);
    }
  });
}

/**
 * Backend.attention on host arrays: `data` maps a tensor to its values. q's row i of sequence b sits at
 * position slots[b].length + i and sees cache rows 0 … that position (k, v rows appended first).
 */
export function attentionRows(
  layout: RowLayout,
  slots: readonly KvSlot[],
  heads: number,
  q: DeviceTensor,
  k: DeviceTensor,
  v: DeviceTensor,
  out: DeviceTensor,
  data: (t: DeviceTensor) => Float32Array,
): void {
  const c = q.cols;
  const n = c / heads;
  const scale = 1 / Math.sqrt(n);
  const [qs, ks, vs, os] = [data(q), data(k), data(v), data(out)] as [Float32Array, Float32Array, Float32Array, Float32Array];
  const acc = new Float64Array(n);
  layout.lengths.forEach((len, b) => {
    const slot = slots[b]!;
    const kc = data(slot.k); // capacity × C
    const vc = data(slot.v);
    const start = layout.starts[b]!;
    const past = slot.length;
    kc.set(ks.subarray(start * c, (start + len) * c), past * c);
    vc.set(vs.subarray(start * c, (start + len) * c), past * c);
    const scores = new Float64Array(past + len); // one head's scores over the visible positions
    for (let i = 0; i < len; i++) {
      const row = (start + i) * c;
      const visible = past + i + 1;
      for (let h = 0; h < heads; h++) {
        const qo = row + h * n;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          const ko = j * c + h * n;
          // Four independent sums (the adds of one would wait on each other): the long-context cost.
          let d0 = 0;
          let d1 = 0;
          let d2 = 0;
          let d3 = 0;
          let d = 0;
          for (; d + 4 <= n; d += 4) {
            d0 += qs[qo + d]! * kc[ko + d]!;
            d1 += qs[qo + d + 1]! * kc[ko + d + 1]!;
            d2 += qs[qo + d + 2]! * kc[ko + d + 2]!;
            d3 += qs[qo + d + 3]! * kc[ko + d + 3]!;
          }
          for (; d < n; d++) d0 += qs[qo + d]! * kc[ko + d]!;
          const dot = (d0 + d1 + d2 + d3) * scale;
          scores[j] = dot;
          if (dot > max) max = dot;
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) {
          const e = Math.exp(scores[j]! - max);
          scores[j] = e;
          sum += e;
        }
        acc.fill(0);
        for (let j = 0; j < visible; j++) {
          const w = scores[j]! / sum;
          const vo = j * c + h * n;
          for (let d = 0; d < n; d++) acc[d] = acc[d]! + w * vc[vo + d]!;
        }
        for (let d = 0; d < n; d++) os[qo + d] = acc[d]!;
      }
    }
  });
}
