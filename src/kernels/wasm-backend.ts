// The fast CPU backend: tensors and weights live in the WebAssembly memory of a `WasmKernels` (the SIMD
// kernels and their worker pool), so products, norms and recurrences run on them in place — no copy in
// or out per operation. Operations without a kernel (the elementwise ones, O(rows·C)) and shapes the SIMD
// kernels do not take (a head size or width not a multiple of 4) run the reference code on views of the
// same memory: one definition of the math, inherited. Every operation first runs its argument check
// from checks.ts (the same one as ReferenceBackend's), before a kernel gets a pointer.
import { checkAttention } from './attention.js';
import type { DeviceMatrix, DeviceTensor, KvSlot, MatmulJob, RowLayout, StateSlot, UnaryFunction } from './backend.js';
import { attentionKernel } from './wasm-attention.js';
import { checkElementwise, checkMatmul, checkNorm, checkUnary, checkWkv4, checkWkv5, checkWkv7 } from './checks.js';
import { EW_ADD, EW_LERP, EW_MUL } from './wasm-abi.js';
import { isKQuant } from './kquants.js';
import { readRow, type Matrix, type ResultFunction } from './matrix.js';
import { HostMatrix, HostTensor, ReferenceBackend } from './reference-backend.js';
import { FUNCTION_CODES, WasmKernels, type WasmKernelsOptions } from './wasm-kernels.js';

/**
 * Products of at least this many multiply-adds (≈ 1 ms on two threads) run asynchronously: a 64-row
 * prompt slice through a 768 × 3072 matrix is 151 M, the head over 8 rows of the 169M shape 309 M.
 */
export const ASYNC_MIN_MACS = 32 * 2 ** 20;

/** Functions with a SIMD kernel (asm/kernels.ts `applyFunction`); the batched matrix-vector kernel applies them itself. */
function kernelFunction(f: string): f is ResultFunction {
  return Object.hasOwn(FUNCTION_CODES, f);
}

export class WasmBackend extends ReferenceBackend {
  override readonly kind = 'wasm' as const;
  override readonly description: string;
  override readonly threads: number;
  readonly kernels: WasmKernels;
  private readonly ownsKernels: boolean;

  private constructor(kernels: WasmKernels, owns: boolean, exactActivations: boolean) {
    super({ exactActivations });
    this.kernels = kernels;
    this.ownsKernels = owns;
    this.threads = kernels.threads;
    this.description = `wasm ${kernels.flavour} × ${kernels.threads} thread(s)`;
  }

  /** Starts the kernels' worker pool (threads: the calling thread included; default every core). */
  static async create(options: WasmKernelsOptions & { exactActivations?: boolean } = {}): Promise<WasmBackend> {
    return new WasmBackend(await WasmKernels.create(options), true, options.exactActivations ?? false);
  }

  /** A backend over kernels someone else owns (close() leaves them running). */
  static over(kernels: WasmKernels, options: { exactActivations?: boolean } = {}): WasmBackend {
    return new WasmBackend(kernels, false, options.exactActivations ?? false);
  }

  override allocateBytes(byteLength: number): Uint8Array {
    return this.kernels.allocate(byteLength);
  }

  override matrix(m: Matrix): DeviceMatrix {
    if (isKQuant(m.dtype)) {
      // No K-quant kernel yet: decoded once, exactly (ggml's dequantization), into f32 rows in the memory —
      // correct now, native K-quant kernels next. The file's bytes stay (the loaded tensor still names them).
      const bytes = this.kernels.allocate(m.rows * m.cols * 4);
      const f32 = new Float32Array(bytes.buffer, bytes.byteOffset, m.rows * m.cols);
      for (let r = 0; r < m.rows; r++) readRow(m, r, f32.subarray(r * m.cols, (r + 1) * m.cols));
      // Still multiplied on the K-quants' activation grid (Q8_K), as ggml multiplies the file's blocks.
      const activations = this.exactActivations ? undefined : ('q8_k' as const);
      return new HostMatrix(this, { name: m.name, dtype: 'f32', rows: m.rows, cols: m.cols, bytes, f32, u16: undefined, activations });
    }
    if (this.kernels.owns(m.bytes)) return new HostMatrix(this, this.withGrid(m));
    // Bytes from elsewhere (a transformed LoRA factor, an int8 copy): copied into the memory once.
    const bytes = this.kernels.allocate(m.bytes.byteLength);
    bytes.set(m.bytes);
    const f32 = m.dtype === 'f32' ? new Float32Array(bytes.buffer, bytes.byteOffset, m.rows * m.cols) : undefined;
    const u16 = m.dtype === 'f16' || m.dtype === 'bf16' ? new Uint16Array(bytes.buffer, bytes.byteOffset, m.rows * m.cols) : undefined;
    return new HostMatrix(this, this.withGrid({ ...m, bytes, f32, u16 }));
  }

  override tensor(rows: number, cols: number): DeviceTensor {
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) throw new RangeError(`a tensor of ${rows} × ${cols}`);
    const n = rows * cols;
    const ptr = this.kernels.malloc(n * 4);
    // A view made now stays valid: a shared memory grows in place.
    const data = new Float32Array(this.kernels.memory.buffer, ptr, n);
    data.fill(0);
    return new HostTensor(this, rows, cols, data, ptr);
  }

  override free(t: DeviceTensor): void {
    super.free(t); // refuses views and other backends' tensors
    const h = t as HostTensor;
    this.kernels.release(h.ptr, h.data.byteLength);
  }

  override async close(): Promise<void> {
    if (this.ownsKernels) await this.kernels.close();
  }

  private ptr(t: DeviceTensor): number {
    return this.hostTensor(t).ptr;
  }

  override matmul(jobs: readonly MatmulJob[]): void | Promise<void> {
    // One-row products go to the batched matrix-vector kernel as one job; longer ones to the few-rows or
    // packed matrix-matrix kernels, one job each — the large ones (a prompt slice, the head over several
    // rows) run by the workers alone while this thread goes back to its host.
    const vectors: { m: Matrix; x: number; y: number; then?: ResultFunction | undefined }[] = [];
    const large: { m: Matrix; x: number; t: number; y: number }[] = [];
    const after: MatmulJob[] = [];
    for (const job of jobs) checkMatmul(job);
    for (const job of jobs) {
      const { m, x, y, then } = job;
      const host = this.host(m);
      const inKernel = then !== undefined && kernelFunction(then) && x.rows === 1;
      if (x.rows === 1) vectors.push({ m: host, x: this.ptr(x), y: this.ptr(y), then: inKernel ? (then as ResultFunction) : undefined });
      else if (x.rows * m.rows * m.cols >= ASYNC_MIN_MACS) large.push({ m: host, x: this.ptr(x), t: x.rows, y: this.ptr(y) });
      else this.kernels.matmulAt(host, this.ptr(x), x.rows, this.ptr(y));
      if (then !== undefined && !inKernel) after.push(job);
    }
    if (vectors.length > 0) this.kernels.matvecAt(vectors);
    const finish = (): void => {
      for (const { y, then } of after) this.unary(y, then!, y);
    };
    if (large.length === 0) return finish();
    return (async () => {
      for (const { m, x, t, y } of large) await this.kernels.matmulAtAsync(m, x, t, y);
      finish();
    })();
  }

  override add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    this.elementwise(EW_ADD, 'add', out, a, b);
  }

  override mul(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    this.elementwise(EW_MUL, 'mul', out, a, b);
  }

  override lerp(a: DeviceTensor, b: DeviceTensor, mu: DeviceTensor, out: DeviceTensor): void {
    this.elementwise(EW_LERP, 'lerp', out, a, b, mu);
  }

  /** The SIMD elementwise kernel over out's rows; an operand of one row is broadcast (row step 0). */
  private elementwise(op: number, what: string, out: DeviceTensor, a: DeviceTensor, b: DeviceTensor, mu?: DeviceTensor): void {
    checkElementwise(what, out, a, b, ...(mu === undefined ? [] : [mu]));
    const c = out.cols;
    const step = (t: DeviceTensor): number => (t.rows === 1 ? 0 : c);
    const [pa, pb, po] = [this.ptr(a), this.ptr(b), this.ptr(out)];
    const pm = mu === undefined ? 0 : this.ptr(mu);
    this.kernels.exports.elementwise(op, pa, pb, pm, po, out.rows, c, step(a), step(b), mu === undefined ? 0 : step(mu));
  }

  override unary(x: DeviceTensor, f: UnaryFunction, out: DeviceTensor, scale = 1): void {
    if (scale !== 1 || !kernelFunction(f)) return super.unary(x, f, out, scale);
    checkUnary(x, out);
    const xs = this.data(x); // refuses another backend's tensor
    if (out !== x) this.write(out, xs);
    this.applyFunction(f, out);
  }

  /** t ← f(t) in place, by the SIMD kernel (a 64 × 3072 block of σ: ≈ 0.1 ms, against ≈ 2 ms of Math.exp). */
  private applyFunction(f: ResultFunction, t: DeviceTensor): void {
    this.kernels.exports.applyFunction(FUNCTION_CODES[f], this.ptr(t), 0, t.rows * t.cols);
  }

  override norm(x: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor, out: DeviceTensor, groups: number, eps: number): void {
    checkNorm(x, weight, bias, out, groups);
    this.kernels.exports.groupNorm(this.ptr(x), this.ptr(weight), this.ptr(bias), this.ptr(out), x.rows, x.cols, groups, eps);
  }

  /** Scratch for attention scores (one head's, over the visible positions): grown as contexts grow. */
  private scores: { ptr: number; bytes: number } | undefined;

  override attention(layout: RowLayout, slots: readonly KvSlot[], heads: number, q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor): void {
    checkAttention(layout, slots, heads, q, k, v, out);
    const c = q.cols;
    const kernel = (c / heads) % 4 === 0 ? attentionKernel(this.kernels.memory) : undefined;
    if (kernel === undefined) return super.attention(layout, slots, heads, q, k, v, out);
    const longest = Math.max(...slots.map((s, b) => s.length + layout.lengths[b]!));
    const need = (longest + 4) * 4;
    if (this.scores === undefined || this.scores.bytes < need) {
      if (this.scores !== undefined) this.kernels.release(this.scores.ptr, this.scores.bytes);
      const bytes = Math.max(need, 2 * (this.scores?.bytes ?? 0), 4096);
      this.scores = { ptr: this.kernels.malloc(bytes), bytes };
    }
    const [ks, vs] = [this.data(k), this.data(v)];
    const [pq, po] = [this.ptr(q), this.ptr(out)];
    const scale = 1 / Math.sqrt(c / heads);
    layout.lengths.forEach((len, b) => {
      const slot = slots[b]!;
      const start = layout.starts[b]!;
      // This pass's keys and values join the cache (rows length …), then each row attends to rows ≤ its own.
      this.data(slot.k).set(ks.subarray(start * c, (start + len) * c), slot.length * c);
      this.data(slot.v).set(vs.subarray(start * c, (start + len) * c), slot.length * c);
      const [pk, pv] = [this.ptr(slot.k), this.ptr(slot.v)];
      for (let i = 0; i < len; i++) {
        const row = (start + i) * c * 4;
        kernel.attendRow(pq + row, pk, pv, po + row, this.scores!.ptr, slot.length + i + 1, c, heads, scale);
      }
    });
  }

  override wkv4(layout: RowLayout, slot: StateSlot, k: DeviceTensor, v: DeviceTensor, r: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv4(layout, slot, k, v, r, w, u, y);
    const c = k.cols;
    if (c % 4 !== 0) return super.wkv4(layout, slot, k, v, r, w, u, y);
    const row = c * 4;
    const [pk, pv, pr, pw, pu, py] = [k, v, r, w, u, y].map((t) => this.ptr(t)) as [number, number, number, number, number, number];
    const s = this.ptr(slot.state);
    layout.lengths.forEach((len, b) => {
      const o = layout.starts[b]! * row;
      const ps = s + (b * slot.state.cols + slot.offset) * 4;
      this.kernels.exports.wkv4(ps, pk + o, pv + o, pr + o, pw, pu, py + o, c, len);
    });
  }

  override wkv5(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, k: DeviceTensor, v: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv5(layout, slot, heads, r, k, v, w, u, y);
    const c = r.cols;
    const n = c / heads;
    if (n % 4 !== 0) return super.wkv5(layout, slot, heads, r, k, v, w, u, y);
    const row = c * 4;
    const wStep = w.rows === 1 ? 0 : row;
    const [pr, pk, pv, pw, pu, py] = [r, k, v, w, u, y].map((t) => this.ptr(t)) as [number, number, number, number, number, number];
    const s = this.ptr(slot.state);
    const wkv5 = this.kernels.exports.wkv5;
    layout.lengths.forEach((len, b) => {
      const ps = s + (b * slot.state.cols + slot.offset) * 4;
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        const o = p * row;
        wkv5(ps, pr + o, pk + o, pv + o, pw + p * wStep, pu, py + o, heads, n);
      }
    });
  }

  override wkv7(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, w: DeviceTensor, k: DeviceTensor, v: DeviceTensor, kk: DeviceTensor, a: DeviceTensor, y: DeviceTensor): void {
    checkWkv7(layout, slot, heads, r, w, k, v, kk, a, y);
    const c = r.cols;
    const n = c / heads;
    if (n % 4 !== 0) return super.wkv7(layout, slot, heads, r, w, k, v, kk, a, y);
    const row = c * 4;
    const [pr, pw, pk, pv, pkk, pa, py] = [r, w, k, v, kk, a, y].map((t) => this.ptr(t)) as [number, number, number, number, number, number, number];
    const s = this.ptr(slot.state);
    const wkv7 = this.kernels.exports.wkv7;
    layout.lengths.forEach((len, b) => {
      const ps = s + (b * slot.state.cols + slot.offset) * 4;
      for (let p = layout.starts[b]!; p < layout.starts[b]! + len; p++) {
        const o = p * row;
        wkv7(ps, pr + o, pw + o, pk + o, pv + o, pkk + o, pa + o, py + o, heads, n);
      }
    });
  }
}
