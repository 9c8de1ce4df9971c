/// <reference types="@webgpu/types" />
// The WebGPU backend: every Backend operation as a WGSL compute shader (shaders/*.ts, one per operation).
// In a browser it uses navigator.gpu; on Node the optional `webgpu` package (Dawn), imported dynamically
// when a backend is created, so that the library loads without it.
//
// Memory. Activations and states live in one storage buffer, the arena, each tensor a range of it (views
// are the same range with fewer rows); weights get a buffer each. One arena means an operation whose
// output is one of its inputs (or a view of one) binds nothing twice — WebGPU forbids binding one buffer
// as writable storage twice in a dispatch — and freeing is bookkeeping: a later tensor in the same range
// is cleared by a command queued after every command that used the old one. The arena grows by copying
// into a larger buffer (tensors keep their offsets).
//
// Order. Operations record compute passes into one command encoder, submitted when data must cross to or
// from the host (write, read) or the queue is long; each dispatch gets its own small parameter buffer. So
// every operation returns at once, and `read` waits for the GPU (it maps a staging buffer).
//
// Weights: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 and q5_1 stay in their encoding (u32 words, decoded
// in the kernels; f16 by hand, as shader-f16 is optional). The K-quants and int8 are still decoded to f32
// on the host when placed: exact values, four bytes a weight on the device.
import { DeviceError } from '../../errors.js';
import { checkAttention, checkGelu } from '../attention.js';
import type { Backend, DeviceMatrix, DeviceTensor, KvSlot, MatmulJob, RowLayout, StateSlot, UnaryFunction } from '../backend.js';
import { checkOwner } from '../backend.js';
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
} from '../checks.js';
import { readRow, type Matrix, type MatrixDType } from '../matrix.js';
import { WORKGROUP } from './shaders/common.js';
import { EMBED, GATHER_ROWS, TOKEN_SHIFT } from './shaders/copies.js';
import { ELEMENTWISE } from './shaders/elementwise.js';
import { L2_NORM_HEADS, WKV7_BONUS } from './shaders/heads.js';
import { MATMUL, MATMUL_TILED, TILE_R, TILE_T } from './shaders/matmul.js';
import { NORM } from './shaders/norm.js';
import { UNARY } from './shaders/unary.js';
import { WKV4, WKV5, WKV7 } from './shaders/wkv.js';

const SHADERS = {
  elementwise: ELEMENTWISE,
  unary: UNARY,
  norm: NORM,
  embed: EMBED,
  gatherRows: GATHER_ROWS,
  tokenShift: TOKEN_SHIFT,
  matmul: MATMUL,
  matmulTiled: MATMUL_TILED,
  l2NormHeads: L2_NORM_HEADS,
  wkv7Bonus: WKV7_BONUS,
  wkv4: WKV4,
  wkv5: WKV5,
  wkv7: WKV7,
} as const;
type ShaderName = keyof typeof SHADERS;

/** Function codes of shaders/common.ts FUNCTIONS. */
const FUNCTION_CODES: Readonly<Record<UnaryFunction, number>> = { relu2: 1, sigmoid: 2, tanh: 3, silu: 4, exp: 5 };

/** Encodings the kernels decode (shaders/common.ts WEIGHTS), by their code there. */
const KERNEL_CODES: Partial<Record<MatrixDType, number>> = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_1: 5, q5_0: 6, q5_1: 7 };

/** Float granularity of arena ranges (16 bytes). */
const ALIGN = 4;
/** The arena's first size in floats (4 MiB). */
const INITIAL_ARENA = 1 << 20;
/** Dispatches recorded before the encoder is submitted regardless (bounds the parameter buffers held). */
const MAX_PENDING = 512;

export interface WebGpuBackendOptions {
  /** Passed to requestAdapter. */
  powerPreference?: 'low-power' | 'high-performance';
}

/** The GPU entry point: navigator.gpu in a browser (or Deno), else Dawn from the `webgpu` package on Node. */
let nodeGpu: GPU | undefined; // kept for the process's life: Dawn frees its instance (and crashes) otherwise

// Exported for bench/webgpu.ts, which opens its own device to measure the adapter's copy bandwidth.
export async function gpuEntry(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu !== undefined) return nav.gpu;
  if (nodeGpu !== undefined) return nodeGpu;
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (proc?.versions?.node === undefined) throw new DeviceError('WebGPU is not available here (no navigator.gpu)');
  // A specifier in a variable: bundlers leave it alone (the browser build must not pull in Dawn).
  const pkg = 'webgpu';
  let mod: { create: (flags: string[]) => GPU; globals: object };
  try {
    mod = (await import(pkg)) as typeof mod;
  } catch (e) {
    throw new DeviceError(`WebGPU on Node needs the optional package 'webgpu' (npm install webgpu): ${e instanceof Error ? e.message : String(e)}`);
  }
  Object.assign(globalThis, mod.globals); // GPUBufferUsage, GPUMapMode, … as a browser has them
  nodeGpu = mod.create([]);
  return nodeGpu;
}

/** A tensor: `rows × cols` floats from float `offset` of the arena. */
class GpuTensor implements DeviceTensor {
  constructor(
    readonly owner: Backend,
    readonly rows: number,
    readonly cols: number,
    readonly offset: number,
    readonly isView: boolean,
  ) {}
}

class GpuMatrix implements DeviceMatrix {
  readonly name: string;
  readonly dtype: MatrixDType;
  readonly rows: number;
  readonly cols: number;
  readonly byteLength: number;
  constructor(
    readonly owner: Backend,
    m: Matrix,
    /** Its words on the device. */
    readonly buffer: GPUBuffer,
    /** How the kernels decode it (KERNEL_CODES). */
    readonly code: number,
  ) {
    this.name = m.name;
    this.dtype = m.dtype;
    this.rows = m.rows;
    this.cols = m.cols;
    this.byteLength = buffer.size;
  }
}

/** Free ranges of the arena (floats), sorted by offset, merged when adjacent. */
class RangeAllocator {
  private readonly free: { at: number; size: number }[] = [];
  constructor(public capacity: number) {
    this.free.push({ at: 0, size: capacity });
  }

  /** A range of `size` floats, or undefined when none is free. */
  take(size: number): number | undefined {
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i]!;
      if (f.size < size) continue;
      const at = f.at;
      if (f.size === size) this.free.splice(i, 1);
      else this.free[i] = { at: at + size, size: f.size - size };
      return at;
    }
    return undefined;
  }

  give(at: number, size: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i]!.at < at) i++;
    this.free.splice(i, 0, { at, size });
    // Merge with the next, then with the previous.
    const next = this.free[i + 1];
    if (next !== undefined && at + size === next.at) {
      this.free[i] = { at, size: size + next.size };
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    const cur = this.free[i]!;
    if (prev !== undefined && prev.at + prev.size === cur.at) {
      this.free[i - 1] = { at: prev.at, size: prev.size + cur.size };
      this.free.splice(i, 1);
    }
  }

  /** Adds floats capacity … newCapacity − 1 as free. */
  grow(newCapacity: number): void {
    this.give(this.capacity, newCapacity - this.capacity);
    this.capacity = newCapacity;
  }
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 0)} MiB`;

export class WebGpuBackend implements Backend {
  readonly kind = 'webgpu' as const;
  readonly description: string;
  readonly threads = 1;

  private readonly device: GPUDevice;
  private arena: GPUBuffer;
  private readonly ranges: RangeAllocator;
  private readonly maxArena: number;
  /** By shader name, and weight code for the shaders that read a matrix (`name:code`). */
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | undefined;
  /** The compute pass dispatches go to, open until a copy or clear needs the encoder (WebGPU orders and
   * makes visible storage writes between the dispatches of a pass). */
  private pass: GPUComputePassEncoder | undefined;
  private pending = 0;
  /** Buffers to destroy once the commands recorded so far are submitted (parameters, an outgrown arena). */
  private retired: GPUBuffer[] = [];
  /** The first error the device reported (lost, validation, out of memory), naming the operation: every
   * later call fails with it at once, so a broken device never yields zeros or NaN as output. */
  private failure: DeviceError | undefined;
  /** The operation being recorded, for the messages (errors arrive asynchronously, after their call). */
  private op = 'opening the device';
  private closed = false;

  private constructor(device: GPUDevice, description: string) {
    this.device = device;
    this.description = description;
    this.maxArena = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) / 4);
    const initial = Math.min(INITIAL_ARENA, this.maxArena - (this.maxArena % ALIGN));
    this.arena = this.makeArena(initial);
    this.ranges = new RangeAllocator(initial);
    device.onuncapturederror = (e: GPUUncapturedErrorEvent): void => {
      const kind = e.error.constructor.name === 'GPUOutOfMemoryError' ? 'out of memory' : 'error'; // (the class is not global everywhere)
      this.fail(`${kind} during ${this.op}: ${e.error.message}`);
    };
    // Destroyed, or a driver reset: every later call fails with this (close() destroys it on purpose).
    void device.lost.then((info) => {
      if (this.closed) return;
      const why = info.message !== '' ? `${info.reason ?? 'unknown'}: ${info.message}` : String(info.reason ?? 'unknown');
      this.fail(`the device was lost (${why}) during ${this.op}`);
    });
  }

  /** Keeps the first failure: the later ones are usually its consequences. */
  private fail(message: string): void {
    this.failure ??= new DeviceError(`WebGPU: ${message}`);
  }

  /** Throws the device's failure, if any, or if the backend is closed; then names the operation. */
  private begin(op: string): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new Error('webgpu: the backend is closed');
    this.op = op;
  }

  /** Runs `make` (a buffer's creation) in out-of-memory and validation scopes, failing with `what` named. */
  private scoped<T>(what: string, make: () => T): T {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let out: T;
    try {
      out = make();
    } catch (e) {
      // mappedAtCreation throws RangeError when the mapping cannot be allocated.
      void this.device.popErrorScope();
      void this.device.popErrorScope();
      throw new DeviceError(`WebGPU: out of memory ${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
    void this.device.popErrorScope().then((e) => e !== null && this.fail(`validation error ${what}: ${e.message}`));
    void this.device.popErrorScope().then((e) => e !== null && this.fail(`out of memory ${what}: ${e.message}`));
    return out;
  }

  /** Opens an adapter and a device (the adapter's largest buffer limits); throws where there is none. */
  static async create(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    const gpu = await gpuEntry();
    const adapter = await gpu.requestAdapter(options.powerPreference !== undefined ? { powerPreference: options.powerPreference } : {});
    if (adapter === null) throw new DeviceError('WebGPU: no adapter (no GPU, or no driver for it; use --kernels wasm)');
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
      },
    });
    const info = adapter.info;
    const name = info.description || [info.vendor, info.architecture, info.device].filter((s) => s !== '').join(' ') || 'unknown adapter';
    return new WebGpuBackend(device, `webgpu ${name}`);
  }

  // ── memory ──────────────────────────────────────────────────────────────────────────────────────

  allocateBytes(byteLength: number): Uint8Array {
    return new Uint8Array(byteLength);
  }

  matrix(m: Matrix): DeviceMatrix {
    this.begin(`placing matrix ${m.name}`);
    let bytes: Uint8Array;
    let code: number;
    const kernelCode = KERNEL_CODES[m.dtype];
    // Checked before decoding: a matrix decoded to f32 may be far larger than its file bytes.
    const placed = Math.max(4, roundUp(kernelCode !== undefined ? m.bytes.byteLength : m.rows * m.cols * 4, 4));
    if (placed > this.maxArena * 4) {
      throw new DeviceError(`WebGPU: matrix ${m.name} (${mib(placed)}) exceeds the device's ${mib(this.maxArena * 4)} storage buffer limit`);
    }
    if (kernelCode !== undefined) {
      bytes = m.bytes;
      code = kernelCode;
    } else {
      // K-quants and int8 (not yet decoded in the kernels): decoded to f32 here (the reference's decoder).
      const values = new Float32Array(m.rows * m.cols);
      for (let r = 0; r < m.rows; r++) readRow(m, r, values.subarray(r * m.cols, (r + 1) * m.cols));
      bytes = new Uint8Array(values.buffer);
      code = 0;
    }
    const size = Math.max(4, roundUp(bytes.byteLength, 4));
    const buffer = this.scoped(`placing matrix ${m.name} (${mib(size)})`, () =>
      this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE, mappedAtCreation: true, label: m.name }),
    );
    new Uint8Array(buffer.getMappedRange()).set(bytes);
    buffer.unmap();
    return new GpuMatrix(this, m, buffer, code);
  }

  tensor(rows: number, cols: number): DeviceTensor {
    if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) throw new RangeError(`a tensor of ${rows} × ${cols}`);
    this.begin(`allocating a tensor of ${rows} × ${cols}`);
    const size = roundUp(rows * cols, ALIGN);
    let at = this.ranges.take(size);
    while (at === undefined) {
      this.grow(size);
      at = this.ranges.take(size);
    }
    this.enc().clearBuffer(this.arena, at * 4, size * 4); // after every earlier use of the range
    return new GpuTensor(this, rows, cols, at, false);
  }

  upload(values: Float32Array, rows: number, cols: number): DeviceTensor {
    if (values.length !== rows * cols) throw new RangeError(`upload: ${values.length} values for ${rows} × ${cols}`);
    const t = this.tensor(rows, cols);
    this.write(t, values);
    return t;
  }

  write(t: DeviceTensor, values: Float32Array, offset = 0): void {
    const g = this.own(t);
    if (!Number.isInteger(offset) || offset < 0 || offset + values.length > t.rows * t.cols) {
      throw new RangeError(`write: ${values.length} values at ${offset} into a tensor of ${t.rows} × ${t.cols}`);
    }
    if (values.length === 0) return;
    this.begin('write');
    this.flush(); // queue.writeBuffer runs before commands not yet submitted
    this.device.queue.writeBuffer(this.arena, (g.offset + offset) * 4, values.buffer, values.byteOffset, values.byteLength);
  }

  async read(t: DeviceTensor, into?: Float32Array): Promise<Float32Array> {
    const g = this.own(t);
    const n = t.rows * t.cols;
    if (into !== undefined && into.length !== n) throw new RangeError(`read: ${n} values into an array of ${into.length}`);
    // The GPU runs what was recorded before the read: name that (a read's own failure is rarely the cause).
    this.begin(this.op.startsWith('read after ') ? this.op : `read after ${this.op}`);
    const staging = this.device.createBuffer({ size: roundUp(n, ALIGN) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.enc().copyBufferToBuffer(this.arena, g.offset * 4, staging, 0, roundUp(n, ALIGN) * 4);
    this.flush();
    try {
      // Raced with the loss: a lost device may never settle the map (no hang), or settle it with zeros.
      let lost = false;
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.device.lost.then(() => (lost = true))]).catch(async (e: unknown) => {
        // A map rejected for a loss may come before the loss itself: give its message a moment to arrive.
        await Promise.race([this.device.lost, new Promise((resolve) => setTimeout(resolve, 100))]);
        this.fail(`${this.op} failed: ${e instanceof Error ? e.message : String(e)}`);
      });
      if (lost) await Promise.resolve(); // lets the lost handler (registered first) record the message
      if (this.failure !== undefined) throw this.failure;
      const out = into ?? new Float32Array(n);
      out.set(new Float32Array(staging.getMappedRange(), 0, n));
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
    }
  }

  view(t: DeviceTensor, rows: number): DeviceTensor {
    const g = this.own(t);
    if (!Number.isInteger(rows) || rows < 1 || rows > t.rows) throw new RangeError(`view: ${rows} rows of a tensor of ${t.rows} × ${t.cols}`);
    return new GpuTensor(this, rows, t.cols, g.offset, true);
  }

  free(t: DeviceTensor): void {
    const g = this.own(t);
    if (g.isView) throw new RangeError('free: a view cannot be freed (free the tensor it views)');
    this.ranges.give(g.offset, roundUp(t.rows * t.cols, ALIGN));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.failure === undefined) {
      this.flush();
      await this.device.queue.onSubmittedWorkDone();
    }
    this.arena.destroy();
    this.device.destroy();
  }

  // ── operations ──────────────────────────────────────────────────────────────────────────────────

  embed(m: DeviceMatrix, tokens: readonly number[], out: DeviceTensor): void {
    checkEmbed(m, tokens, out);
    const w = this.ownMatrix(m);
    const o = this.own(out);
    const n = out.rows * out.cols;
    this.dispatch('embed', [n, m.cols, w.code, o.offset, ...tokens], n, w);
  }

  matmul(jobs: readonly MatmulJob[]): void {
    for (const job of jobs) checkMatmul(job);
    for (const { m, x, y } of jobs) {
      this.ownMatrix(m);
      this.own(x);
      this.own(y);
    }
    for (const { m, x, y, then } of jobs) {
      const w = m as GpuMatrix;
      const params = [x.rows, m.rows, m.cols, w.code, (x as GpuTensor).offset, (y as GpuTensor).offset, then === undefined ? 0 : FUNCTION_CODES[then]];
      // Generation (one row): an invocation per output, each weight read once. Prompts: workgroup tiles
      // that stage weights in workgroup memory and use each for 16 rows (one workgroup per tile).
      if (x.rows === 1) this.dispatch('matmul', params, m.rows, w);
      else this.dispatch('matmulTiled', params, Math.ceil(x.rows / TILE_T) * Math.ceil(m.rows / TILE_R) * WORKGROUP, w);
    }
  }

  norm(x: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor, out: DeviceTensor, groups: number, eps: number): void {
    checkNorm(x, weight, bias, out, groups);
    const [gx, gw, gb, go] = [x, weight, bias, out].map((t) => this.own(t)) as [GpuTensor, GpuTensor, GpuTensor, GpuTensor];
    const count = x.rows * groups;
    this.dispatch('norm', [count, x.cols / groups, x.cols, gx.offset, gw.offset, gb.offset, go.offset, f32Bits(eps)], count);
  }

  add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    checkElementwise('add', out, a, b);
    this.elementwise(0, out, a, b, a);
  }

  mul(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void {
    checkElementwise('mul', out, a, b);
    this.elementwise(1, out, a, b, a);
  }

  lerp(a: DeviceTensor, b: DeviceTensor, mu: DeviceTensor, out: DeviceTensor): void {
    checkElementwise('lerp', out, a, b, mu);
    this.elementwise(2, out, a, b, mu);
  }

  private elementwise(op: number, out: DeviceTensor, a: DeviceTensor, b: DeviceTensor, mu: DeviceTensor): void {
    const [go, ga, gb, gm] = [out, a, b, mu].map((t) => this.own(t)) as [GpuTensor, GpuTensor, GpuTensor, GpuTensor];
    const full = (t: DeviceTensor): number => (t.rows === out.rows ? 1 : 0);
    const n = out.rows * out.cols;
    this.dispatch('elementwise', [n, out.cols, op, go.offset, ga.offset, full(a), gb.offset, full(b), gm.offset, full(mu)], n);
  }

  unary(x: DeviceTensor, f: UnaryFunction, out: DeviceTensor, scale = 1): void {
    checkUnary(x, out);
    const [gx, go] = [this.own(x), this.own(out)];
    const n = x.rows * x.cols;
    this.dispatch('unary', [n, FUNCTION_CODES[f], gx.offset, go.offset, f32Bits(scale)], n);
  }

  tokenShift(layout: RowLayout, slot: StateSlot, x: DeviceTensor, out: DeviceTensor): void {
    checkTokenShift(layout, slot, x, out);
    const [gx, go, gs] = [this.own(x), this.own(out), this.own(slot.state)];
    const c = x.cols;
    this.dispatch('tokenShift', [c, gx.offset, go.offset, gs.offset, slot.state.cols, slot.offset, layout.lengths.length, ...pairs(layout)], layout.lengths.length * c);
  }

  gatherRows(x: DeviceTensor, rows: readonly number[], out: DeviceTensor): void {
    checkGatherRows(x, rows, out);
    const [gx, go] = [this.own(x), this.own(out)];
    const n = out.rows * out.cols;
    this.dispatch('gatherRows', [n, x.cols, gx.offset, go.offset, ...rows], n);
  }

  l2NormHeads(x: DeviceTensor, heads: number, eps: number, out: DeviceTensor): void {
    checkL2NormHeads(x, heads, out);
    const [gx, go] = [this.own(x), this.own(out)];
    const count = x.rows * heads;
    this.dispatch('l2NormHeads', [count, x.cols / heads, gx.offset, go.offset, f32Bits(eps)], count);
  }

  wkv4(layout: RowLayout, slot: StateSlot, k: DeviceTensor, v: DeviceTensor, r: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv4(layout, slot, k, v, r, w, u, y);
    const o = [k, v, r, w, u, y, slot.state].map((t) => this.own(t).offset);
    const c = k.cols;
    const b = layout.lengths.length;
    this.dispatch('wkv4', [c, ...o, slot.state.cols, slot.offset, b, ...pairs(layout)], b * c);
  }

  wkv5(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, k: DeviceTensor, v: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
    checkWkv5(layout, slot, heads, r, k, v, w, u, y);
    const [or, ok, ov, ow, ou, oy, os] = [r, k, v, w, u, y, slot.state].map((t) => this.own(t).offset) as [number, number, number, number, number, number, number];
    const c = r.cols;
    const b = layout.lengths.length;
    const wFull = w.rows === 1 ? 0 : 1;
    this.dispatch('wkv5', [heads, c / heads, c, or, ok, ov, ow, wFull, ou, oy, os, slot.state.cols, slot.offset, b, ...pairs(layout)], b * c);
  }

  wkv7(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, w: DeviceTensor, k: DeviceTensor, v: DeviceTensor, kk: DeviceTensor, a: DeviceTensor, y: DeviceTensor): void {
    checkWkv7(layout, slot, heads, r, w, k, v, kk, a, y);
    const o = [r, w, k, v, kk, a, y, slot.state].map((t) => this.own(t).offset);
    const c = r.cols;
    const b = layout.lengths.length;
    this.dispatch('wkv7', [heads, c / heads, c, ...o, slot.state.cols, slot.offset, b, ...pairs(layout)], b * c);
  }

  wkv7Bonus(heads: number, r: DeviceTensor, k: DeviceTensor, rk: DeviceTensor, v: DeviceTensor, y: DeviceTensor): void {
    checkWkv7Bonus(heads, r, k, rk, v, y);
    const o = [r, k, rk, v, y].map((t) => this.own(t).offset);
    const count = r.rows * heads;
    this.dispatch('wkv7Bonus', [count, r.cols / heads, heads, ...o], count);
  }

  // GPT's two operations have no shaders yet: a clear refusal (after the same argument checks) rather
  // than a wrong result.
  attention(layout: RowLayout, slots: readonly KvSlot[], heads: number, q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor): void {
    checkAttention(layout, slots, heads, q, k, v, out);
    throw new DeviceError('GPT not supported on webgpu (no attention shader yet): use --kernels wasm');
  }

  gelu(x: DeviceTensor, out: DeviceTensor): void {
    checkGelu(x, out);
    throw new DeviceError('GPT not supported on webgpu (no GELU shader yet): use --kernels wasm');
  }

  // ── machinery ───────────────────────────────────────────────────────────────────────────────────

  /** The tensor as this backend's own (refuses another backend's: TypeError). */
  private own(t: DeviceTensor): GpuTensor {
    checkOwner(this, t);
    return t as GpuTensor;
  }

  private ownMatrix(m: DeviceMatrix): GpuMatrix {
    checkOwner(this, m);
    return m as GpuMatrix;
  }

  private makeArena(floats: number): GPUBuffer {
    return this.device.createBuffer({
      size: floats * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: 'arena',
    });
  }

  /** Grows the arena to fit `size` more floats: a larger buffer, the old contents copied in order. */
  private grow(size: number): void {
    const old = this.ranges.capacity;
    let next = Math.max(2 * old, old + size);
    next = Math.min(roundUp(next, ALIGN), this.maxArena - (this.maxArena % ALIGN));
    if (next < old + size) throw new DeviceError(`WebGPU: ${mib(size * 4)} more of tensors (${this.op}) do not fit the device's ${mib(this.maxArena * 4)} storage buffer limit`);
    const arena = this.scoped(`growing the tensors' buffer to ${mib(next * 4)} (${this.op})`, () => this.makeArena(next));
    this.enc().copyBufferToBuffer(this.arena, 0, arena, 0, old * 4);
    this.retired.push(this.arena);
    this.arena = arena;
    this.ranges.grow(next);
  }

  /** The command encoder, for a copy or a clear (the open compute pass ended first). */
  private enc(): GPUCommandEncoder {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new Error('webgpu: the backend is closed');
    this.pass?.end();
    this.pass = undefined;
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.enc().beginComputePass();
    return this.pass;
  }

  /** Submits what was recorded; then frees the buffers only those commands used. */
  private flush(): void {
    if (this.encoder === undefined) return;
    this.pass?.end();
    this.pass = undefined;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = undefined;
    this.pending = 0;
    for (const b of this.retired) b.destroy(); // destroyed once the submitted work is done
    this.retired = [];
  }

  // A shader that reads a matrix gets a pipeline per weight code, given as its WCODE override constant:
  // the decoder's switch then folds to one encoding (with every encoding's decoder inlined in the product
  // loops, SwiftShader ran generation's products about 3.5× slower).
  private pipeline(name: ShaderName, code?: number): GPUComputePipeline {
    const key = code === undefined ? name : `${name}:${code}`;
    let p = this.pipelines.get(key);
    if (p === undefined) {
      const module = this.device.createShaderModule({ code: SHADERS[name], label: name });
      const compute: GPUProgrammableStage = { module, entryPoint: 'main', ...(code === undefined ? {} : { constants: { WCODE: code } }) };
      p = this.device.createComputePipeline({ layout: 'auto', compute, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Records one dispatch of `name` over `items` invocations, its params as u32 words. */
  private dispatch(name: ShaderName, params: readonly number[], items: number, weights?: GpuMatrix): void {
    this.begin(weights === undefined ? name : `${name} of ${weights.name}`);
    if (items === 0) return;
    const pipeline = this.pipeline(name, weights?.code);
    const buf = this.device.createBuffer({ size: roundUp(Math.max(params.length, 1), 4) * 4, usage: GPUBufferUsage.STORAGE, mappedAtCreation: true });
    new Uint32Array(buf.getMappedRange()).set(params);
    buf.unmap();
    this.retired.push(buf);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: this.arena } },
      { binding: 1, resource: { buffer: buf } },
    ];
    if (weights !== undefined) entries.push({ binding: 2, resource: { buffer: weights.buffer } });
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const workgroups = Math.ceil(items / WORKGROUP);
    const gx = Math.min(workgroups, 65535);
    const gy = Math.ceil(workgroups / gx);
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(gx, gy);
    if (++this.pending >= MAX_PENDING) this.flush();
  }
}

/** A number's f32 bits as a u32 (for the params). */
const bitsView = new DataView(new ArrayBuffer(4));
function f32Bits(x: number): number {
  bitsView.setFloat32(0, x, true);
  return bitsView.getUint32(0, true);
}

/** A layout as (start, length) pairs. */
function pairs(layout: RowLayout): number[] {
  const out: number[] = [];
  layout.lengths.forEach((len, b) => out.push(layout.starts[b]!, len));
  return out;
}
