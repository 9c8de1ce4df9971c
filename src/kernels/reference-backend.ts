// The checking oracle: every Backend operation in plain TypeScript over JS arrays, sums and recurrences in
// float64 (JS numbers), results rounded to f32 when stored. Slow and obvious on purpose; the conformance
// suite (test/backend-conformance.test.ts) holds every other backend to it.
import { activationGridFor } from './activation-quant.js';
import { attentionRows, checkAttention, checkGelu, geluRows } from './attention.js';
import { lerp } from './mix.js';
import { normRows } from './norm.js';
import { wkv4Rows } from './rwkv4-wkv.js';
import { reluSquared, sigmoid, silu } from './activations.js';
import {
  checkOwner,
  type Backend,
  type DeviceMatrix,
  type DeviceTensor,
  type KvSlot,
  type MatmulJob,
  type RowLayout,
  type StateSlot,
  type UnaryFunction,
} from './backend.js';
import {
  checkElementwise,
  checkEmbed,
  checkGatherRows,
  checkL2NormHeads,
  checkMatmul,
  checkNorm,
  checkTokenShift,
  checkUnary,
  checkWkv4,
  checkWkv5,
  checkWkv7,
  checkWkv7Bonus,
} from './checks.js';
import { readRow, referenceMatmul, type Matrix } from './matrix.js';

/** A tensor whose values a JS array can see (plain memory, or a view of a WebAssembly memory at `ptr`). */
export class HostTensor implements DeviceTensor {
  constructor(
    readonly owner: Backend,
    readonly rows: number,
    readonly cols: number,
    readonly data: Float32Array,
    /** Byte address in the backend's WebAssembly memory (WasmBackend); 0 for plain memory. */
    readonly ptr = 0,
    /** Whether this is a view of another tensor's rows (see Backend.view): not to be freed. */
    readonly isView = false,
  ) {}
}

export class HostMatrix implements DeviceMatrix {
  readonly name: string;
  readonly dtype: Matrix['dtype'];
  readonly rows: number;
  readonly cols: number;
  readonly byteLength: number;
  constructor(
    readonly owner: Backend,
    readonly m: Matrix,
  ) {
    this.name = m.name;
    this.dtype = m.dtype;
    this.rows = m.rows;
    this.cols = m.cols;
    this.byteLength = m.bytes.byteLength;
  }
}

export const UNARY: Readonly<Record<UnaryFunction, (x: number) => number>> = {
  relu2: reluSquared,
  sigmoid,
  tanh: Math.tanh,
  silu,
  exp: Math.exp,
};

/**
 * Also the base of the WebAssembly backend, whose tensors are views of its memory: it overrides the
 * operations it has kernels for and inherits the rest (the cheap elementwise ones) as they are here.
 * Every operation first runs its argument check from checks.ts (an override runs the same one).
 */
export class ReferenceBackend implements Backend {
  readonly kind: Backend['kind'] = 'reference';
  readonly description: string = 'reference (TypeScript, 1 thread)';
  readonly threads: number = 1;
  readonly exactActivations: boolean;

  /**
   * exactActivations: multiply quantized weights by the exact f32 activations, instead of quantizing the
   * activations first as ggml does (activation-quant.ts; the default, which matches rwkv.cpp and llama.cpp).
   */
  constructor(options: { exactActivations?: boolean } = {}) {
    this.exactActivations = options.exactActivations ?? false;
  }

  /** `m` with the activation grid this backend multiplies it on (see Matrix.activations). */
  protected withGrid(m: Matrix): Matrix {
    const grid = this.exactActivations ? undefined : activationGridFor(m.dtype);
    return grid === m.activations ? m : { ...m, activations: grid };
  }

  allocateBytes(byteLength: number): Uint8Array {
    return new Uint8Array(byteLength);
  }

  matrix(m: Matrix): DeviceMatrix {
    return new HostMatrix(this, this.withGrid(m));
  }

  tensor(rows: number, cols: number): DeviceTensor {
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) throw new RangeError(`a tensor of ${rows} × ${cols}`);
    return new HostTensor(this, rows, cols, new Float32Array(rows * cols));
  }

  upload(values: Float32Array, rows: number, cols: number): DeviceTensor {
    if (values.length !== rows * cols) throw new RangeError(`upload: ${values.length} values for ${rows} × ${cols}`);
    const t = this.tensor(rows, cols);
    this.data(t).set(values);
    return t;
  }

  write(t: DeviceTensor, values: Float32Array, offset = 0): void {
    this.data(t).set(values, offset);
  }

  read(t: DeviceTensor, into?: Float32Array): Promise<Float32Array> {
    const data = this.data(t);
    if (into === undefined) return Promise.resolve(data.slice());
    if (into.length !== data.length) return Promise.reject(new RangeError(`read: ${data.length} values into an array of ${into.length}`));
    into.set(data);
    return Promise.resolve(into);
  }

  view(t: DeviceTensor, rows: number): DeviceTensor {
    const h = this.hostTensor(t);
    if (!Number.isInteger(rows) || rows < 1 || rows > t.rows) throw new RangeError(`view: ${rows} rows of a tensor of ${t.rows} × ${t.cols}`);
    return new HostTensor(this, rows, t.cols, h.data.subarray(0, rows * t.cols), h.ptr, true);
  }

  free(t: DeviceTensor): void {
    if (this.hostTensor(t).isView) throw new RangeError('free: a view cannot be freed (free the tensor it views)');
  }

  /** The tensor as this backend's own (refuses another backend's). */
  protected hostTensor(t: DeviceTensor): HostTensor {
    checkOwner(this, t);
    return t as HostTensor;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  protected data(t: DeviceTensor): Float32Array {
    return this.hostTensor(t).data;
  }

  protected host(m: DeviceMatrix): Matrix {
    checkOwner(this, m);
    return (m as HostMatrix).m;
  }

  embed(m: DeviceMatrix, tokens: readonly number[], out: DeviceTensor): void {
    checkEmbed(m, tokens, out);
    const w = this.host(m);
    const o = this.data(out);
    for (let i = 0; i < tokens.length; i++) readRow(w, tokens[i]!, o.subarray(i * w.cols, (i + 1) * w.cols));
  }

  matmul(jobs: readonly MatmulJob[]): void {
    for (const job of jobs) checkMatmul(job);
    for (const { m, x, y, then } of jobs) {
      const out = this.data(y);
      referenceMatmul(this.host(m), this.data(x), x.rows, out);
      if (then !== undefined) {
        const f = UNARY[then];
        for (let i = 0; i < out.length; i++) out[i] = f(out[i]!);
      }
    }
  }

  norm(x: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor, out: DeviceTensor, groups: number, eps: number): void {
    checkNorm(x, weight, bias, out, groups);
    normRows(this.data(x), this.data(weight), this.data(bias), this.data(out), x.rows, groups, eps);
  }

  /** out = a + b (op 0) or a ⊙ b (op 1), b broadcast by rows; loops written out (they run over T × C). */
  private binary(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor, op: 0 | 1, what: string): void {
    checkElementwise(what, out, a, b);
    const av = this.data(a);
    const bv = this.data(b);
    const o = this.data(out);
    const c = out.cols;
    const aStep = a.rows === 1 ? 0 : c;
    const bStep = b.rows === 1 ? 0 : c;
    for (let r = 0; r < out.rows; r++) {
      const ao = r * aStep;
      const bo = r * bStep;
      const oo = r * c;
      if (op === 0) for (let i = 0; i < c; i++) o[oo + i] = av[ao + i]! + bv[bo + i]!;
      else for (let i = 0; i < c; i++) o[oo + i] = av[ao + i]! * bv[bo + i]!;
    }
  }

  add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    this.binary(a, b, out, 0, 'add');
  }

  mul(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    this.binary(a, b, out, 1, 'mul');
  }

  lerp(a: DeviceTensor, b: DeviceTensor, mu: DeviceTensor, out: DeviceTensor): void {
    checkElementwise('lerp', out, a, b, mu);
    const [av, bv, mv, o] = [this.data(a), this.data(b), this.data(mu), this.data(out)];
    const c = out.cols;
    const [as, bs, ms] = [a, b, mu].map((t) => (t.rows === 1 ? 0 : c)) as [number, number, number];
    for (let r = 0; r < out.rows; r++) {
      const ao = r * as;
      const bo = r * bs;
      const mo = r * ms;
      const oo = r * c;
      for (let i = 0; i < c; i++) o[oo + i] = lerp(av[ao + i]!, bv[bo + i]!, mv[mo + i]!);
    }
  }

  unary(x: DeviceTensor, f: UnaryFunction, out: DeviceTensor, scale = 1): void {
    checkUnary(x, out);
    const xs = this.data(x);
    const o = this.data(out);
    const fn = UNARY[f];
    for (let i = 0; i < o.length; i++) o[i] = fn(scale * xs[i]!);
  }

  tokenShift(layout: RowLayout, slot: StateSlot, x: DeviceTensor, out: DeviceTensor): void {
    checkTokenShift(layout, slot, x, out);
    const c = x.cols;
    const xs = this.data(x);
    const o = this.data(out);
    const s = this.data(slot.state);
    const width = slot.state.cols;
    layout.lengths.forEach((len, b) => {
      const start = layout.starts[b]!;
      const at = b * width + slot.offset;
      const last = xs.slice((start + len - 1) * c, (start + len) * c);
      // Row by row from the end, so that out may be x.
      for (let i = len - 1; i >= 1; i--) o.set(xs.subarray((start + i - 1) * c, (start + i) * c), (start + i) * c);
      o.set(s.subarray(at, at + c), start * c);
      s.set(last, at);
    });
  }

  gatherRows(x: DeviceTensor, rows: readonly number[], out: DeviceTensor): void {
    checkGatherRows(x, rows, out);
    const xs = this.data(x);
    const o = this.data(out);
    const c = x.cols;
    rows.forEach((r, i) => o.set(xs.subarray(r * c, (r + 1) * c), i * c));
  }

  l2NormHeads(x: DeviceTensor, heads: number, eps: number, out: DeviceTensor): void {
    checkL2NormHeads(x, heads, out);
    const xs = this.data(x);
    const o = this.data(out);
    const n = x.cols / heads;
    for (let h = 0; h < x.rows * heads; h++) {
      let sq = 0;
      for (let i = 0; i < n; i++) sq += xs[h * n + i]! * xs[h * n + i]!;
      const inv = 1 / Math.max(Math.sqrt(sq), eps);
      for (let i = 0; i < n; i++) o[h * n + i] = xs[h * n + i]! * inv;
    }
  }

  wkv4(layout: RowLayout, slot: StateSlot, k: DeviceTensor, v: DeviceTensor, r: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv4(layout, slot, k, v, r, w, u, y);
    const [ks, vs, rs, ws, us, ys, s] = [k, v, r, w, u, y, slot.state].map((t) => this.data(t)) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    layout.lengths.forEach((len, b) => wkv4Rows(ys, ks, vs, rs, ws, us, s, b * slot.state.cols + slot.offset, layout.starts[b]!, len, k.cols));
  }

  wkv5(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, k: DeviceTensor, v: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv5(layout, slot, heads, r, k, v, w, u, y);
    const c = r.cols;
    const n = c / heads;
    const [rs, ks, vs, ws, us, ys, s] = [r, k, v, w, u, y, slot.state].map((t) => this.data(t)) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    const wStep = w.rows === 1 ? 0 : c;
    const acc = new Float64Array(n);
    layout.lengths.forEach((len, b) => {
      const base = b * slot.state.cols + slot.offset;
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        for (let h = 0; h < heads; h++) {
          const o = p * c + h * n;
          acc.fill(0);
          for (let i = 0; i < n; i++) {
            const ki = ks[o + i]!;
            const ri = rs[o + i]!;
            const ui = us[h * n + i]!;
            const wi = ws[p * wStep + h * n + i]!;
            const row = base + (h * n + i) * n;
            for (let j = 0; j < n; j++) {
              const kv = ki * vs[o + j]!;
              const sij = s[row + j]!;
              acc[j] = acc[j]! + ri * (ui * kv + sij);
              s[row + j] = kv + wi * sij;
            }
          }
          for (let j = 0; j < n; j++) ys[o + j] = acc[j]!;
        }
      }
    });
  }

  wkv7(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, w: DeviceTensor, k: DeviceTensor, v: DeviceTensor, kk: DeviceTensor, a: DeviceTensor, y: DeviceTensor): void {
    checkWkv7(layout, slot, heads, r, w, k, v, kk, a, y);
    const c = r.cols;
    const n = c / heads;
    const [rs, ws, ks, vs, kks, as, ys, s] = [r, w, k, v, kk, a, y, slot.state].map((t) => this.data(t)) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    layout.lengths.forEach((len, b) => {
      const base = b * slot.state.cols + slot.offset;
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        for (let h = 0; h < heads; h++) {
          const o = p * c + h * n;
          const sh = base + h * n * n;
          for (let i = 0; i < n; i++) {
            const row = sh + i * n;
            let sa = 0;
            for (let j = 0; j < n; j++) sa += s[row + j]! * kks[o + j]!;
            const vi = vs[o + i]!;
            let acc = 0;
            for (let j = 0; j < n; j++) {
              const q = o + j;
              const sij = Math.fround(s[row + j]! * ws[q]! - sa * kks[q]! * as[q]! + vi * ks[q]!);
              s[row + j] = sij;
              acc += sij * rs[q]!;
            }
            ys[o + i] = acc;
          }
        }
      }
    });
  }

  attention(layout: RowLayout, slots: readonly KvSlot[], heads: number, q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor): void {
    checkAttention(layout, slots, heads, q, k, v, out);
    attentionRows(layout, slots, heads, q, k, v, out, (t) => this.data(t));
  }

  gelu(x: DeviceTensor, out: DeviceTensor): void {
    checkGelu(x, out);
    geluRows(this.data(x), this.data(out));
  }

  wkv7Bonus(heads: number, r: DeviceTensor, k: DeviceTensor, rk: DeviceTensor, v: DeviceTensor, y: DeviceTensor): void {
    checkWkv7Bonus(heads, r, k, rk, v, y);
    const c = r.cols;
    const n = c / heads;
    const [rs, ks, rks, vs, ys] = [r, k, rk, v, y].map((t) => this.data(t)) as [Float32Array, Float32Array, Float32Array, Float32Array, Float32Array];
    for (let p = 0; p < r.rows; p++) {
      for (let h = 0; h < heads; h++) {
        const o = p * c + h * n;
        let dot = 0;
        for (let i = 0; i < n; i++) dot += rs[o + i]! * ks[o + i]! * rks[h * n + i]!;
        for (let i = 0; i < n; i++) ys[o + i] = ys[o + i]! + dot * vs[o + i]!;
      }
    }
  }
}
