// The fast CPU backend: WebAssembly SIMD kernels (asm/kernels.ts) over one shared WebAssembly.Memory that
// holds the weights once, run by the calling thread plus a pool of workers that split each product by rows.
//
// Memory map (bytes): [0, 64 KiB) reserved for the module's own data; [CTRL, CTRL + 256) the control block
// the threads synchronise on; weights and scratch after HEAP_START, handed out by a bump allocator.
// wasm32 addresses end at 4 GiB: a model whose weights exceed ~3.5 GiB needs several memories (one per
// group of layers, each with its own kernel instances), which this backend does not do yet — see
// docs/performance.md.
import { ArgumentError } from '../errors.js';
import { hostHadTurn, yieldToHost } from '../util/host.js';
import { currentPlatform, type KernelPlatform, type PoolWorker } from './wasm-platform.js';
import { chunkBounds, Ctrl, laneGroupBytes, matmulRowsThreadBytes, matmulThreadBytes, Op, runChunks, UNCLAIMABLE, type KernelExports } from './wasm-pool.js';

/** Products over at most this many input rows use the unpacked kernel (matmulRows). */
const MATMUL_ROWS_MAX = 16;

import type { KQuantDType } from '../tensor/dtype.js';
import { isKQuant } from './kquants.js';
import { f32Matrix, type Matrix, type MatrixDType, type MatvecJob, type ResultFunction } from './matrix.js';
import {
  DTYPE_BF16,
  DTYPE_F16,
  DTYPE_F16_SPECIAL,
  DTYPE_F32,
  DTYPE_INT8,
  DTYPE_Q4_0,
  DTYPE_Q4_1,
  DTYPE_Q5_0,
  DTYPE_Q5_1,
  DTYPE_Q8_0,
  FN_NONE,
  GRID_Q8_0,
  GRID_Q8_K,
  Q8_ACTIVATIONS,
  FN_RELU2,
  FN_SIGMOID,
  FN_TANH,
  JOB_BYTES,
  JOB_COLS,
  JOB_DTYPE,
  JOB_FN,
  JOB_ROWS,
  JOB_START,
  JOB_WEIGHTS,
  JOB_X,
  JOB_X_SCALE,
  JOB_Y,
} from './wasm-abi.js';

/**
 * Encodings the kernels read. K-quant matrices are not among them: WasmBackend.matrix decodes them to f32
 * once when it places them (correct now; native K-quant kernels next).
 */
export const DTYPE_CODES: Readonly<Record<Exclude<MatrixDType, KQuantDType>, number>> = {
  f32: DTYPE_F32,
  f16: DTYPE_F16,
  bf16: DTYPE_BF16,
  q4_0: DTYPE_Q4_0,
  q4_1: DTYPE_Q4_1,
  q5_0: DTYPE_Q5_0,
  q5_1: DTYPE_Q5_1,
  q8_0: DTYPE_Q8_0,
  int8: DTYPE_INT8,
};

function dtypeCode(d: MatrixDType): number {
  if (isKQuant(d)) throw new TypeError(`the WebAssembly kernels do not read ${d} (WasmBackend.matrix decodes it to f32 when placing it)`);
  return DTYPE_CODES[d];
}

/**
 * The kernel code of products with `m`: its dtype's, or for the legacy quantized types on ggml's activation
 * grid (Matrix.activations) the integer kernels against Q8 activations.
 */
function matvecCode(m: Matrix): number {
  const code = dtypeCode(m.dtype);
  const q8 = m.activations === 'q8_0' || m.activations === 'q8_1';
  return q8 && code >= DTYPE_Q4_0 && code <= DTYPE_Q8_0 ? code + Q8_ACTIVATIONS : code;
}

/** Bytes of `quantizeQ8`'s output for n values (asm/kernels.ts q8Bytes). */
function q8Bytes(n: number): number {
  return n + (n / 32) * 12;
}

/** Functions a batched product may apply to its results (asm/kernels.ts `applyFunction`). */
export const FUNCTION_CODES: Readonly<Record<ResultFunction, number>> = { relu2: FN_RELU2, sigmoid: FN_SIGMOID, tanh: FN_TANH };

/** `bytes` rounded up to a whole number of 64-byte cache lines (every scratch array starts on one). */
function align64(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}

const PAGE = 65536;
const CTRL = 4096; // control block: 64 i32
const HEAP_START = PAGE;
const MAX_PAGES = 65536; // 4 GiB

/** The SIMD recurrences need N a multiple of 4 and every vector of H·N values. */
function checkWkv(state: Float32Array, vectors: Float32Array[], y: Float32Array, heads: number, n: number): void {
  const c = heads * n;
  if (n % 4 !== 0 || state.length !== c * n || y.length !== c || vectors.some((v) => v.length < c)) {
    throw new ArgumentError(`wkv: ${heads} heads of ${n} need N % 4 = 0, a state of ${c * n} and vectors of ${c} values`);
  }
}

/** Atomics.waitAsync (ES2024; Node ≥ 16, Chromium): a promise that settles when a word changes. */
type WaitAsync = (array: Int32Array, index: number, value: number, timeoutMs: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync?.bind(Atomics);

/** A job handed to the threads: its generation, its number of chunks, and whether the caller saw it end. */
interface PoolJob {
  readonly generation: number;
  readonly chunks: number;
  done: boolean;
}

export interface WasmKernelsOptions {
  /** Threads working on each product, the calling thread included. Default: number of cores. */
  threads?: number;
  /** Use the relaxed-SIMD (fused multiply-add) build when available. Default true. */
  relaxedSimd?: boolean;
  /**
   * false: one thread over an unshared memory, no worker at all — where SharedArrayBuffer does not exist
   * (a page that is not cross-origin isolated). Default: true where the platform can share memory.
   */
  shared?: boolean;
  /**
   * The unshared memory's fixed size in bytes (it cannot grow: views of its old buffer would be detached).
   * Default 1 GiB; what does not fit is refused with an error saying so.
   */
  memoryBytes?: number;
}

export class WasmKernels {
  readonly memory: WebAssembly.Memory;
  readonly threads: number;
  /** 'relaxed-simd' or 'simd'. */
  readonly flavour: string;
  private readonly kernels: KernelExports;
  private readonly workers: PoolWorker[];
  /** Whether this thread may block in Atomics.wait (a browser's main thread may not). */
  private readonly canBlock: boolean;
  private top = HEAP_START;
  private ctrl: Int32Array;
  private f32: Float32Array;
  private u32: Uint32Array;
  private scratch = 0;
  private scratchBytes = 0;
  private closed = false;

  private constructor(memory: WebAssembly.Memory, module: WebAssembly.Module, flavour: string, workers: PoolWorker[], threads: number, platform: KernelPlatform) {
    this.memory = memory;
    this.canBlock = platform.canBlock;
    this.flavour = flavour;
    this.workers = workers;
    this.threads = threads;
    this.kernels = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
    this.ctrl = new Int32Array(memory.buffer, CTRL, 64);
    this.f32 = new Float32Array(memory.buffer);
    this.u32 = new Uint32Array(this.f32.buffer);
    this.buffers.add(memory.buffer);
  }

  /**
   * Starts the worker pool and waits until every worker has its instance. Runs in Node (worker_threads)
   * and in browsers (module Web Workers; the page must be cross-origin isolated for SharedArrayBuffer).
   */
  static async create(options: WasmKernelsOptions = {}): Promise<WasmKernels> {
    const platform = await currentPlatform();
    const threads = options.threads ?? Math.max(1, platform.cores());
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
      throw new ArgumentError(`threads must be an integer from 1 to 64, got ${threads}`);
    }
    const shared = options.shared ?? platform.canShareMemory;
    if (!shared && threads !== 1) {
      throw new ArgumentError(`${threads} threads need a shared memory (SharedArrayBuffer${platform.name === 'browser' ? ': serve the page cross-origin isolated' : ''}); without one, use 1 thread`);
    }
    const modules = await platform.kernelModules(shared);
    const useRelaxed = options.relaxedSimd !== false && modules.relaxed !== undefined;
    const module = useRelaxed ? modules.relaxed! : modules.simd;
    if (!shared) {
      const bytes = options.memoryBytes ?? 2 ** 30;
      if (!Number.isInteger(bytes) || bytes < 2 * PAGE || bytes > MAX_PAGES * PAGE) throw new ArgumentError(`memoryBytes must be an integer from ${2 * PAGE} to ${MAX_PAGES * PAGE}, got ${bytes}`);
      // Fixed size: growing an unshared memory detaches its buffer, and the weights' views with it.
      const pages = Math.ceil(bytes / PAGE);
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
      return new WasmKernels(memory, module, `${useRelaxed ? 'relaxed-simd' : 'simd'}, unshared memory`, [], 1, platform);
    }
    const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    const workers: PoolWorker[] = [];
    for (let i = 1; i < threads; i++) workers.push(platform.startWorker({ module, memory, index: i, ctrlOffset: CTRL, helper: false }));
    // Index `threads`: the helper that takes the calling thread's place in asynchronous jobs.
    workers.push(platform.startWorker({ module, memory, index: threads, ctrlOffset: CTRL, helper: true }));
    try {
      await Promise.all(workers.map((w) => w.ready));
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    return new WasmKernels(memory, module, useRelaxed ? 'relaxed-simd' : 'simd', workers, threads, platform);
  }

  /** Allocates `byteLength` bytes of the shared memory, 64-byte aligned (a TensorAllocator). */
  allocate = (byteLength: number): Uint8Array => {
    const start = this.reserve(byteLength);
    return new Uint8Array(this.memory.buffer, start, byteLength);
  };

  /** Whether `bytes` lives in this backend's memory. */
  owns(bytes: Uint8Array): boolean {
    // After memory.grow the memory hands out a new SharedArrayBuffer object over the same memory, and
    // views made earlier keep the old object: compare against every object seen.
    return this.buffers.has(bytes.buffer);
  }

  /** f16 matrices scanned for inf or NaN, which the fast f16 product leaves finite (wasm-abi.ts DTYPE_F16_SPECIAL). */
  private readonly f16Specials = new WeakMap<Uint8Array, boolean>();

  /** Whether f16 matrix `m` holds inf or NaN: scanned once, on its first product (weights are not rewritten in place). */
  private hasF16Specials(m: Matrix): boolean {
    let found = this.f16Specials.get(m.bytes);
    if (found === undefined) {
      found = this.kernels.hasF16Specials(m.bytes.byteOffset, m.bytes.byteLength >>> 1) !== 0;
      this.f16Specials.set(m.bytes, found);
    }
    return found;
  }

  private readonly buffers = new Set<ArrayBufferLike>();

  /** Freed regions [start, bytes], sorted by start, adjacent ones merged (see `malloc`). */
  private readonly freeList: [number, number][] = [];

  /**
   * Reserves `byteLength` bytes (64-byte aligned) that `release` gives back: work tensors, whose sizes
   * change with the batch. First fit from the freed regions, else new memory at the top.
   */
  malloc(byteLength: number): number {
    const bytes = align64(Math.max(byteLength, 1));
    for (let i = 0; i < this.freeList.length; i++) {
      const [start, size] = this.freeList[i]!;
      if (size < bytes) continue;
      if (size === bytes) this.freeList.splice(i, 1);
      else this.freeList[i] = [start + bytes, size - bytes];
      return start;
    }
    return this.reserve(bytes);
  }

  /** Gives back a region from `malloc` (the same byteLength). */
  release(start: number, byteLength: number): void {
    const bytes = align64(Math.max(byteLength, 1));
    const list = this.freeList;
    let i = 0;
    while (i < list.length && list[i]![0] < start) i++;
    list.splice(i, 0, [start, bytes]);
    // Merge with the next and the previous region when they touch.
    if (i + 1 < list.length && start + bytes === list[i + 1]![0]) {
      list[i]![1] += list[i + 1]![1];
      list.splice(i + 1, 1);
    }
    if (i > 0 && list[i - 1]![0] + list[i - 1]![1] === start) {
      list[i - 1]![1] += list[i]![1];
      list.splice(i, 1);
    }
  }

  /** The memory as f32 (a fresh view after the memory grew). */
  get heap(): Float32Array {
    return this.f32;
  }

  /** The kernels of this thread's instance, for single-threaded calls on addresses in the memory. */
  get exports(): KernelExports {
    return this.kernels;
  }

  /**
   * Independent products y = m·x with x and y already in the memory (addresses in bytes): one job for
   * the threads. Activations are prepared for each matrix's kernel into the scratch region first.
   */
  matvecAt(jobs: readonly { m: Matrix; x: number; y: number; then?: ResultFunction | undefined }[]): void {
    const prepared = jobs.map(({ m }) => this.preparedBytes(m));
    let bytes = align64(jobs.length * JOB_BYTES);
    jobs.forEach((_, i) => (bytes += align64(prepared[i]!)));
    const base = this.scratchRegion(bytes);
    const words = this.u32;
    const f32 = this.f32;
    let p = base + align64(jobs.length * JOB_BYTES);
    let totalRows = 0;
    for (let i = 0; i < jobs.length; i++) {
      const { m, x, y, then } = jobs[i]!;
      let xArg = x;
      let xScale = 0;
      if (prepared[i]! > 0) {
        xArg = p;
        if (m.dtype === 'int8') xScale = this.kernels.quantizeActivations(x, p, m.cols);
        else if (m.activations === 'q8_k') this.kernels.roundActivations(GRID_Q8_K, x, p, 1, m.cols, 0);
        else this.kernels.prepareActivations(matvecCode(m), x, p, m.cols);
        p += align64(prepared[i]!);
      }
      // One table entry (wasm-abi.ts JOB_*; offsets in bytes, the views index 4-byte words).
      const e = (base + i * JOB_BYTES) / 4;
      words[e + JOB_DTYPE / 4] = m.dtype === 'f16' && this.hasF16Specials(m) ? DTYPE_F16_SPECIAL : matvecCode(m);
      words[e + JOB_WEIGHTS / 4] = m.bytes.byteOffset;
      words[e + JOB_X / 4] = xArg;
      words[e + JOB_Y / 4] = y;
      words[e + JOB_COLS / 4] = m.cols;
      words[e + JOB_ROWS / 4] = m.rows;
      words[e + JOB_START / 4] = totalRows;
      f32[e + JOB_X_SCALE / 4] = xScale;
      words[e + JOB_FN / 4] = then === undefined ? FN_NONE : FUNCTION_CODES[then];
      totalRows += m.rows;
    }
    this.dispatch(Op.MatvecBatch, [base, jobs.length, totalRows], totalRows, 16);
  }

  /**
   * Y = X·Mᵀ over `t` rows, X and Y already in the memory (addresses in bytes). A few rows (a batch of
   * sequences generating together) read each weight row once and dot it with every input row; more
   * rows go to the packed-panel kernel, whose packing pays off over longer blocks.
   */
  matmulAt(m: Matrix, x: number, t: number, y: number): void {
    const rounded = this.roundedRows(m, x, t);
    try {
      const [op, args] = this.matmulJob(m, rounded?.ptr ?? x, t, y);
      this.dispatch(op, args, m.rows, 16);
    } finally {
      if (rounded !== undefined) this.release(rounded.ptr, rounded.bytes);
    }
  }

  /** `matmulAt` run by the workers alone while this thread awaits it (see dispatchAsync). */
  async matmulAtAsync(m: Matrix, x: number, t: number, y: number): Promise<void> {
    const rounded = this.roundedRows(m, x, t);
    try {
      const [op, args] = this.matmulJob(m, rounded?.ptr ?? x, t, y);
      await this.dispatchAsync(op, args, m.rows, 16);
    } finally {
      if (rounded !== undefined) this.release(rounded.ptr, rounded.bytes);
    }
  }

  /**
   * For a matrix on ggml's activation grid, a copy of the t input rows at x with each row replaced by its
   * ggml-quantized values (the packed products decode weights to f32, so quantized-then-decoded activations
   * give ggml's products up to f32 rounding); undefined for exact activations.
   */
  private roundedRows(m: Matrix, x: number, t: number): { ptr: number; bytes: number } | undefined {
    if (m.activations === undefined) return undefined;
    const bytes = t * m.cols * 4 + align64(q8Bytes(m.cols));
    const ptr = this.malloc(bytes);
    const grid = m.activations === 'q8_k' ? GRID_Q8_K : GRID_Q8_0;
    this.kernels.roundActivations(grid, x, ptr, t, m.cols, ptr + t * m.cols * 4);
    return { ptr, bytes };
  }

  /** The kernel and arguments of Y = X·Mᵀ over `t` rows; scratch laid out for every thread that may take part. */
  private matmulJob(m: Matrix, x: number, t: number, y: number): [Op, number[]] {
    // Thread indexes run from 0 (the calling thread) to `threads` (the helper of asynchronous jobs).
    const slots = this.threads + 1;
    if (t <= MATMUL_ROWS_MAX && m.dtype !== 'int8') {
      // One scratch region: the input rows transposed into lane groups (t ≥ 5), then each thread's buffer.
      const lanes = t >= 5 ? laneGroupBytes(t, m.cols) : 0;
      const xt = this.scratchRegion(lanes + slots * matmulRowsThreadBytes(m.cols));
      if (lanes > 0) this.kernels.transposeLanes(x, xt, t, m.cols);
      // Chunks of multiples of 16 weight rows (the kernel works four at a time).
      return [Op.MatmulRows, [dtypeCode(m.dtype), m.bytes.byteOffset, x, y, t, m.rows, m.cols, xt + lanes, xt]];
    }
    const packPtr = this.scratchRegion(slots * matmulThreadBytes(m.cols));
    return [Op.Matmul, [dtypeCode(m.dtype), m.bytes.byteOffset, x, y, t, m.rows, m.cols, packPtr]];
  }

  private reserve(byteLength: number): number {
    const start = align64(this.top);
    const end = start + byteLength;
    if (end > MAX_PAGES * PAGE) {
      throw new ArgumentError(
        `the weights and work buffers do not fit in wasm32's 4 GiB memory (need ${end} bytes); use a smaller or quantized model, or shorter inputs`,
      );
    }
    const pages = Math.ceil(end / PAGE);
    const have = this.memory.buffer.byteLength / PAGE;
    if (pages > have && this.workers.length === 0) {
      throw new ArgumentError(
        `the weights and work buffers need ${Math.ceil(end / 2 ** 20)} MiB, more than the fixed ${have * PAGE / 2 ** 20} MiB memory of the one-thread mode without shared memory; give a larger memoryBytes, or serve the page cross-origin isolated (COOP/COEP) for a growable shared memory and threads`,
      );
    }
    if (pages > have) this.memory.grow(pages - have);
    this.top = end;
    this.refreshViews();
    return start;
  }

  private refreshViews(): void {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    if (this.f32.buffer !== buffer) {
      this.ctrl = new Int32Array(buffer, CTRL, 64);
      this.f32 = new Float32Array(buffer);
      this.u32 = new Uint32Array(buffer);
    }
  }

  /** A scratch region of at least `bytes` bytes (reused between calls; grows by reallocation). */
  private scratchRegion(bytes: number): number {
    if (bytes > this.scratchBytes) {
      this.scratchBytes = Math.max(bytes, this.scratchBytes * 2);
      this.scratch = this.reserve(this.scratchBytes);
    }
    return this.scratch;
  }

  /**
   * Runs a job of `units` units (rows or bytes), cut into chunks of multiples of `align` units (see
   * chunkBounds): the calling thread works with the pool and returns when the job is done.
   */
  private dispatch(op: Op, args: number[], units: number, align: number): void {
    const job = this.start(op, args, units, align, false);
    runChunks(this.kernels, this.ctrl, 0, job.generation);
    this.finish(job);
  }

  /**
   * The same job without the calling thread: the pool and the helper worker run it while this thread
   * goes back to its host (timers, I/O, a page's input); resolves when it is done.
   */
  private async dispatchAsync(op: Op, args: number[], units: number, align: number): Promise<void> {
    if (this.workers.length === 0) {
      // One thread, no pool (unshared memory): the calling thread does the work, then lets its host run.
      this.dispatch(op, args, units, align);
      await yieldToHost();
      return;
    }
    const job = this.start(op, args, units, align, true);
    this.inFlight = job;
    // A pending waitAsync does not keep Node's event loop alive (and the workers are unref'd): a timer does.
    const keepAlive = setInterval(() => undefined, 1_000);
    try {
      const ctrl = this.ctrl;
      for (;;) {
        if (job.done) break;
        const done = Atomics.load(ctrl, Ctrl.Completed);
        if (done >= job.chunks) break;
        if (waitAsync !== undefined) {
          const wait = waitAsync(ctrl, Ctrl.Completed, done, 100);
          if (wait.async) {
            await wait.value;
            hostHadTurn(); // this thread sat idle while the workers ran
          }
        } else {
          await yieldToHost(); // runtimes without waitAsync: poll between the host's callbacks
        }
      }
      if (!job.done) this.finish(job);
    } finally {
      clearInterval(keepAlive);
      if (this.inFlight === job) this.inFlight = undefined;
    }
  }

  /** The job in the workers' hands while the calling thread awaits it (one at a time). */
  private inFlight: PoolJob | undefined;

  private start(op: Op, args: number[], units: number, align: number, helper: boolean): PoolJob {
    if (this.closed) throw new ArgumentError('the WebAssembly backend has been closed');
    // A job issued while an asynchronous one runs (another model sharing these kernels) waits for it.
    if (this.inFlight !== undefined && !this.inFlight.done) this.finish(this.inFlight);
    const ctrl = this.ctrl;
    const chunks = chunkBounds(units, this.threads, align).length - 1;
    if (chunks >= UNCLAIMABLE) throw new ArgumentError(`a job of ${units} units is too large to split`);
    // Close the previous job's counter before touching the parameters, so that a worker still holding
    // an old claim word cannot win it against the new job's chunk count.
    Atomics.store(ctrl, Ctrl.Claim, (this.generation << 16) | UNCLAIMABLE);
    Atomics.store(ctrl, Ctrl.Failed, 0);
    ctrl[Ctrl.Op] = op;
    for (let i = 0; i < args.length; i++) ctrl[Ctrl.Args + i] = args[i]! | 0;
    ctrl[Ctrl.Chunks] = chunks;
    ctrl[Ctrl.Units] = units;
    ctrl[Ctrl.Align] = align;
    ctrl[Ctrl.Threads] = this.threads;
    this.generation = (this.generation + 1) & 0x7fff;
    const g = this.generation;
    Atomics.store(ctrl, Ctrl.Completed, 0);
    Atomics.store(ctrl, Ctrl.Claim, g << 16);
    Atomics.store(ctrl, Ctrl.Generation, g);
    if (this.threads > 1) Atomics.notify(ctrl, Ctrl.Generation);
    if (helper) {
      Atomics.add(ctrl, Ctrl.HelperWake, 1);
      Atomics.notify(ctrl, Ctrl.HelperWake);
    }
    return { generation: g, chunks, done: false };
  }

  /** Waits (spinning, then sleeping where allowed) until every chunk of `job` is done; reports a kernel failure. */
  private finish(job: PoolJob): void {
    const ctrl = this.ctrl;
    let spins = 0;
    for (;;) {
      const done = Atomics.load(ctrl, Ctrl.Completed);
      if (done >= job.chunks) break;
      if (++spins > 20_000 && this.canBlock) Atomics.wait(ctrl, Ctrl.Completed, done, 1);
    }
    job.done = true;
    if (Atomics.load(ctrl, Ctrl.Failed) !== 0) throw new Error('a WebAssembly kernel failed (out-of-bounds memory access?)');
  }

  private generation = 0;

  matvec(m: Matrix, x: Float32Array, y: Float32Array): void {
    this.matvecMany([{ m, x, y }]);
  }

  /**
   * Several independent products y = m·x as one job, so that the threads meet once for all of them. Each x
   * is copied into the shared memory and prepared for its matrix's kernel (bf16: permuted; quantized
   * types: split into integer blocks; int8 rows: rounded to i16) on this thread, then the threads split
   * the rows of all the products.
   */
  matvecMany(jobs: readonly MatvecJob[]): void {
    // Staged through the memory, then one matvecAt job.
    const staged = jobs.map(({ m, x, y, then }) => {
      const xPtr = this.malloc(m.cols * 4);
      const yPtr = this.malloc(m.rows * 4);
      this.f32.set(x.subarray(0, m.cols), xPtr / 4);
      return { m, x: xPtr, y: yPtr, then, out: y };
    });
    try {
      this.matvecAt(staged);
      for (const { m, y, out } of staged) out.set(this.f32.subarray(y / 4, y / 4 + m.rows));
    } finally {
      for (const { m, x, y } of staged) {
        this.release(x, m.cols * 4);
        this.release(y, m.rows * 4);
      }
    }
  }

  /** Bytes of the prepared activations for one product with `m` (0 when the kernel reads x as it is). */
  private preparedBytes(m: Matrix): number {
    if (m.dtype === 'int8') return m.cols * 2 + 32; // i16 values padded to a multiple of 16
    if (m.activations === 'q8_k') return m.cols * 4; // rounded f32 activations for the decoded K-quant rows
    return this.kernels.preparedBytes(matvecCode(m), m.cols);
  }

  /**
   * Copies the first `n` values of each [array, n] into the scratch region, each on its own cache line,
   * followed by room for `outFloats` floats: returns their addresses and the room's.
   */
  private stage(arrays: [Float32Array, number][], outFloats: number): { ptrs: number[]; out: number } {
    let bytes = align64(outFloats * 4);
    for (const [, n] of arrays) bytes += align64(n * 4);
    let p = this.scratchRegion(bytes);
    const ptrs: number[] = [];
    for (const [a, n] of arrays) {
      this.f32.set(a.subarray(0, n), p / 4);
      ptrs.push(p);
      p += align64(n * 4);
    }
    return { ptrs, out: p };
  }

  /** Copies `n` floats at `ptr` of the shared memory into `dst`. */
  private fetch(ptr: number, n: number, dst: Float32Array): void {
    dst.set(this.f32.subarray(ptr / 4, ptr / 4 + n));
  }

  /** LayerNorm (groups = 1) or GroupNorm of `rows` rows of weight.length values (see asm/kernels.ts). */
  groupNorm(x: Float32Array, weight: Float32Array, bias: Float32Array, out: Float32Array, rows: number, groups: number, eps: number): void {
    const c = weight.length;
    if (bias.length !== c || c % groups !== 0 || x.length < rows * c || out.length < rows * c) {
      throw new ArgumentError(`groupNorm: ${rows} rows of ${c} values in ${groups} groups do not fit the given arrays`);
    }
    const {
      ptrs: [wPtr, bPtr, xPtr],
    } = this.stage([[weight, c], [bias, c], [x, rows * c]], 0);
    this.kernels.groupNorm(xPtr!, wPtr!, bPtr!, xPtr!, rows, c, groups, eps);
    this.fetch(xPtr!, rows * c, out);
  }

  /**
   * RWKV-4's WKV over `t` tokens with σ(r) applied (see asm/kernels.ts `wkv4`): `state` holds aa, bb, pp
   * (C each) and is updated in place; k, v, r and y are t × C; w and u are C. C must be a multiple of 4.
   */
  wkv4(state: Float32Array, k: Float32Array, v: Float32Array, r: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, c: number, t: number): void {
    const tc = t * c;
    if (c % 4 !== 0 || state.length !== 3 * c || w.length < c || u.length < c || [k, v, r, y].some((a) => a.length < tc)) {
      throw new ArgumentError(`wkv4: C = ${c} must be a multiple of 4, the state 3·C and k, v, r, y t·C = ${tc} values`);
    }
    const {
      ptrs: [sPtr, wPtr, uPtr, kPtr, vPtr, rPtr],
      out: yPtr,
    } = this.stage([[state, 3 * c], [w, c], [u, c], [k, tc], [v, tc], [r, tc]], tc);
    this.kernels.wkv4(sPtr!, kPtr!, vPtr!, rPtr!, wPtr!, uPtr!, yPtr, c, t);
    this.fetch(sPtr!, 3 * c, state);
    this.fetch(yPtr, tc, y);
  }

  /**
   * Copies the state and every vector into the scratch region, calls `step(s, ptrs, y)` for each of the
   * `t` tokens with the addresses of that token's rows (a vector of t·C values advances by C per token,
   * one of C values stays), and copies the state and the t × C output back. With t = 1 it is RNN mode's
   * WKV; with more, parallel mode's, the one-token kernel stepped along the sequence (exact like RNN mode).
   */
  private wkvSequence(
    state: Float32Array,
    vectors: Float32Array[],
    y: Float32Array,
    c: number,
    t: number,
    step: (s: number, v: number[], y: number) => void,
  ): void {
    const lengths = vectors.map((vec) => (vec.length >= t * c ? t * c : c));
    const {
      ptrs: [sPtr, ...ptrs],
      out: yPtr,
    } = this.stage([[state, state.length], ...vectors.map((vec, i): [Float32Array, number] => [vec, lengths[i]!])], t * c);
    // Bytes each vector's address moves per token.
    const strides = lengths.map((n) => (n === t * c ? c * 4 : 0));
    const at = ptrs.slice();
    for (let tok = 0; tok < t; tok++) {
      for (let i = 0; i < at.length; i++) at[i] = ptrs[i]! + tok * strides[i]!;
      step(sPtr!, at, yPtr + tok * c * 4);
    }
    this.fetch(sPtr!, state.length, state);
    this.fetch(yPtr, t * c, y);
  }

  /**
   * The v5/v6 WKV over t tokens: r, k, v and y are t × C; w (the decay) is t × C (v6) or C (v5); u is C.
   * `state` (H·N² floats) is updated in place.
   */
  wkv5Sequence(state: Float32Array, r: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, heads: number, n: number, t: number): void {
    const c = heads * n;
    if (n % 4 !== 0 || state.length !== c * n || [r, k, v, y].some((a) => a.length < t * c) || (w.length !== c && w.length < t * c) || u.length < c) {
      throw new ArgumentError(`wkv5Sequence: ${t} tokens of ${heads} heads of ${n} need N % 4 = 0, a state of ${c * n} and t × C vectors`);
    }
    this.wkvSequence(state, [r, k, v, w, u.subarray(0, c)], y, c, t, (s, [pr, pk, pv, pw, pu], py) => this.kernels.wkv5(s, pr!, pk!, pv!, pw!, pu!, py, heads, n));
  }

  /** The v7 WKV over t tokens: every vector and y are t × C; `state` (H·N² floats) is updated in place. */
  wkv7Sequence(state: Float32Array, r: Float32Array, w: Float32Array, k: Float32Array, v: Float32Array, kk: Float32Array, a: Float32Array, y: Float32Array, heads: number, n: number, t: number): void {
    const c = heads * n;
    if (n % 4 !== 0 || state.length !== c * n || [r, w, k, v, kk, a, y].some((x) => x.length < t * c)) {
      throw new ArgumentError(`wkv7Sequence: ${t} tokens of ${heads} heads of ${n} need N % 4 = 0, a state of ${c * n} and t × C vectors`);
    }
    this.wkvSequence(state, [r, w, k, v, kk, a], y, c, t, (s, [pr, pw, pk, pv, pkk, pa], py) => this.kernels.wkv7(s, pr!, pw!, pk!, pv!, pkk!, pa!, py, heads, n));
  }

  /** v5/v6 WKV of one token (see asm/kernels.ts `wkv5`); `state` is updated in place, `y` written. */
  wkv5(state: Float32Array, r: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, y: Float32Array, heads: number, n: number): void {
    checkWkv(state, [r, k, v, w, u], y, heads, n);
    this.wkvSequence(state, [r, k, v, w, u], y, heads * n, 1, (s, [pr, pk, pv, pw, pu], py) => this.kernels.wkv5(s, pr!, pk!, pv!, pw!, pu!, py, heads, n));
  }

  /** v7 WKV of one token (see asm/kernels.ts `wkv7`); `state` is updated in place, `y` written. */
  wkv7(state: Float32Array, r: Float32Array, w: Float32Array, k: Float32Array, v: Float32Array, kk: Float32Array, a: Float32Array, y: Float32Array, heads: number, n: number): void {
    checkWkv(state, [r, w, k, v, kk, a], y, heads, n);
    this.wkvSequence(state, [r, w, k, v, kk, a], y, heads * n, 1, (s, [pr, pw, pk, pv, pkk, pa], py) =>
      this.kernels.wkv7(s, pr!, pw!, pk!, pv!, pkk!, pa!, py, heads, n),
    );
  }

  /** Runs `work` on a region of `bytes` bytes from `malloc` (the training kernels' staging), then gives it back. */
  private staged(bytes: number, work: (base: number) => void): void {
    const base = this.malloc(bytes);
    try {
      work(base);
    } finally {
      this.release(base, bytes);
    }
  }

  /**
   * Training's RWKV-4 WKV (asm/kernels.ts wkv4TrainForward): y = WKV(k, v) of b sequences of t tokens,
   * each from a fresh state, no σ(r) gate. k, v, y: (b·t) × c host arrays; w (the decay, −exp(time_decay))
   * and u (time_first): c. c must be a multiple of 4. The channels are split over the pool.
   */
  wkv4TrainForward(y: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, b: number, t: number, c: number): void {
    const n = b * t * c;
    checkScan(c, n, [k, v, y], [w, u]);
    const bytes = 3 * n * 4 + 2 * c * 4;
    this.staged(bytes, (base) => {
      const at = base / 4;
      this.f32.set(k.subarray(0, n), at);
      this.f32.set(v.subarray(0, n), at + n);
      this.f32.set(w.subarray(0, c), at + 3 * n);
      this.f32.set(u.subarray(0, c), at + 3 * n + c);
      this.dispatch(Op.Wkv4TrainForward, [base, base + 12 * n, base + 12 * n + 4 * c, b, t, c], c, 4);
      y.set(this.f32.subarray(at + 2 * n, at + 3 * n));
    });
  }

  /**
   * Its backward (asm/kernels.ts wkv4TrainBackward): writes dk, dv ((b·t) × c) and gw, gu (c: Σ ∂L/∂w and
   * Σ ∂L/∂u over every position) given dy; re-runs the forward per sequence and channel group.
   */
  wkv4TrainBackward(dk: Float32Array, dv: Float32Array, gw: Float32Array, gu: Float32Array, dy: Float32Array, k: Float32Array, v: Float32Array, w: Float32Array, u: Float32Array, b: number, t: number, c: number): void {
    const n = b * t * c;
    checkScan(c, n, [k, v, dy, dk, dv], [w, u, gw, gu]);
    const scratch = (this.threads + 1) * this.kernels.wkv4TrainScratchBytes(t);
    const bytes = 5 * n * 4 + 4 * c * 4 + scratch;
    this.staged(bytes, (base) => {
      const at = base / 4;
      this.f32.set(k.subarray(0, n), at);
      this.f32.set(v.subarray(0, n), at + n);
      this.f32.set(dy.subarray(0, n), at + 2 * n);
      const p = at + 5 * n; // w, u, gw, gu
      this.f32.set(w.subarray(0, c), p);
      this.f32.set(u.subarray(0, c), p + c);
      this.f32.fill(0, p + 2 * c, p + 4 * c);
      const ptr = (i: number): number => base + 20 * n + 4 * i * c;
      this.dispatch(Op.Wkv4TrainBackward, [base, ptr(0), ptr(1), b, t, c, ptr(2), ptr(3), ptr(4)], c, 4);
      dk.set(this.f32.subarray(at + 3 * n, at + 4 * n));
      dv.set(this.f32.subarray(at + 4 * n, at + 5 * n));
      gw.set(this.f32.subarray(p + 2 * c, p + 3 * c));
      gu.set(this.f32.subarray(p + 3 * c, p + 4 * c));
    });
  }

  /**
   * Training's RWKV-7 WKV (asm/kernels.ts wkv7TrainForward): y of b sequences of t tokens from a zero state,
   * and the state before every `chunk`-th token of each (sequence, head) in `checkpoints` (b·⌈t/chunk⌉·H·n²,
   * [sequence][chunk][head][n × n]). r, w (the decay factor), k, v, kk, a, y: (b·t) × C, C = heads·n, n a
   * multiple of 4; with `s0` (heads × n × n), every sequence starts from that state. The (sequence, head)
   * pairs are split over the pool.
   */
  wkv7TrainForward(y: Float32Array, checkpoints: Float32Array, inputs: readonly Float32Array[], b: number, t: number, heads: number, n: number, chunk: number, s0?: Float32Array): void {
    const size = b * t * heads * n;
    const ck = b * Math.ceil(t / chunk) * heads * n * n;
    checkScan(n, size, [...inputs, y], []);
    if (inputs.length !== 6 || checkpoints.length < ck) throw new ArgumentError(`wkv7TrainForward: r, w, k, v, kk, a and ${ck} checkpoint values`);
    const scratch = (this.threads + 1) * this.kernels.wkv7TrainScratchBytes(n, chunk);
    const state = s0 === undefined ? 0 : heads * n * n;
    if (s0 !== undefined && s0.length !== state) throw new ArgumentError(`wkv7TrainForward: an initial state of ${s0.length} values, expected ${state}`);
    const bytes = 7 * size * 4 + ck * 4 + scratch + state * 4;
    this.staged(bytes, (base) => {
      const at = base / 4;
      inputs.forEach((x, i) => this.f32.set(x.subarray(0, size), at + i * size));
      const ps0 = base + 4 * (7 * size + ck) + scratch;
      if (s0 !== undefined) this.f32.set(s0, ps0 / 4);
      this.dispatch(Op.Wkv7TrainForward, [base, b, t, heads, n, chunk, base + 4 * (7 * size + ck), s0 === undefined ? 0 : ps0], b * heads, 1);
      y.set(this.f32.subarray(at + 6 * size, at + 7 * size));
      checkpoints.set(this.f32.subarray(at + 7 * size, at + 7 * size + ck));
    });
  }

  /**
   * Its backward (asm/kernels.ts wkv7TrainBackward): writes ∂L/∂(r, w, k, v, kk, a) into `grads` (six
   * (b·t) × C arrays) given dy and the forward's checkpoints, re-running each chunk from its checkpoint.
   * With `ds0` (heads × n × n), adds ∂L/∂(the initial state every sequence started from) there.
   */
  wkv7TrainBackward(grads: readonly Float32Array[], dy: Float32Array, checkpoints: Float32Array, inputs: readonly Float32Array[], b: number, t: number, heads: number, n: number, chunk: number, ds0?: Float32Array): void {
    const size = b * t * heads * n;
    const ck = b * Math.ceil(t / chunk) * heads * n * n;
    checkScan(n, size, [...inputs, dy, ...grads], []);
    if (inputs.length !== 6 || grads.length !== 6 || checkpoints.length < ck) throw new ArgumentError(`wkv7TrainBackward: r, w, k, v, kk, a, their six gradients and ${ck} checkpoint values`);
    const scratch = (this.threads + 1) * this.kernels.wkv7TrainScratchBytes(n, chunk);
    const nn = n * n;
    if (ds0 !== undefined && ds0.length !== heads * nn) throw new ArgumentError(`wkv7TrainBackward: an initial state's gradient of ${ds0.length} values, expected ${heads * nn}`);
    const perPair = ds0 === undefined ? 0 : b * heads * nn; // each (sequence, head)'s G_{−1}, summed here
    const bytes = 13 * size * 4 + ck * 4 + scratch + perPair * 4;
    this.staged(bytes, (base) => {
      const at = base / 4;
      inputs.forEach((x, i) => this.f32.set(x.subarray(0, size), at + i * size));
      this.f32.set(dy.subarray(0, size), at + 6 * size);
      this.f32.set(checkpoints.subarray(0, ck), at + 7 * size);
      const pds0 = base + 4 * (13 * size + ck) + scratch;
      this.dispatch(Op.Wkv7TrainBackward, [base, b, t, heads, n, chunk, base + 4 * (13 * size + ck), ds0 === undefined ? 0 : pds0], b * heads, 1);
      const out = at + 7 * size + ck;
      grads.forEach((g, i) => g.set(this.f32.subarray(out + i * size, out + (i + 1) * size)));
      if (ds0 !== undefined) {
        const g = this.f32.subarray(pds0 / 4, pds0 / 4 + perPair);
        for (let seq = 0; seq < b; seq++) for (let e = 0; e < heads * nn; e++) ds0[e]! += g[seq * heads * nn + e]!;
      }
    });
  }

  /**
   * Training's weight gradient dW (o × i) += dYᵀ·X for host arrays dy (n × o) and x (n × i): both staged,
   * transposed in the memory (asm/kernels.ts transposeF32), then the matrix kernel's (dYᵀ)·(Xᵀ)ᵀ.
   */
  gradWeight(dw: Float32Array, dy: Float32Array, x: Float32Array, n: number, o: number, i: number): void {
    // Arrays already in this memory (the trainer's buffers) are transposed from where they lie.
    const xIn = this.ownsArray(x), dyIn = this.ownsArray(dy);
    const [px, pdy, pxt, pdyt, pout] = [xIn ? 0 : n * i, dyIn ? 0 : n * o, n * i, n * o, o * i].map((len) => this.malloc(len * 4));
    try {
      if (!xIn) this.f32.set(x.subarray(0, n * i), px! / 4);
      if (!dyIn) this.f32.set(dy.subarray(0, n * o), pdy! / 4);
      this.kernels.transposeF32(xIn ? x.byteOffset : px!, pxt!, n, i);
      this.kernels.transposeF32(dyIn ? dy.byteOffset : pdy!, pdyt!, n, o);
      this.matmulAt(f32Matrix('xT', this.f32.subarray(pxt! / 4, pxt! / 4 + i * n), i, n), pdyt!, o, pout!);
      const out = this.f32.subarray(pout! / 4, pout! / 4 + o * i);
      for (let k = 0; k < o * i; k++) dw[k] += out[k]!;
    } finally {
      [xIn ? 0 : n * i, dyIn ? 0 : n * o, n * i, n * o, o * i].forEach((len, j) => this.release([px, pdy, pxt, pdyt, pout][j]!, len * 4));
    }
  }

  /** Whether a host array is a view of this memory. */
  ownsArray(a: Float32Array): boolean {
    return this.owns(new Uint8Array(a.buffer, a.byteOffset, 0));
  }

  /**
   * Training's input gradient dX (n × i) = dY·W for a host array dy (n × o) and W (o × i) in this memory:
   * W transposed in the memory, then the matrix kernel's dY·(Wᵀ)ᵀ.
   */
  gradInput(dx: Float32Array, dy: Float32Array, w: Float32Array, n: number, o: number, i: number): void {
    if (!this.owns(new Uint8Array(w.buffer, w.byteOffset, 0))) throw new ArgumentError('gradInput: the weights must be in the kernels\' memory');
    const dyIn = this.ownsArray(dy), dxIn = this.ownsArray(dx);
    const sizes = [o * i, dyIn ? 0 : n * o, dxIn ? 0 : n * i];
    const [pwt, pdy, pdx] = sizes.map((len) => this.malloc(len * 4));
    try {
      this.kernels.transposeF32(w.byteOffset, pwt!, o, i);
      if (!dyIn) this.f32.set(dy.subarray(0, n * o), pdy! / 4);
      this.matmulAt(f32Matrix('wT', this.f32.subarray(pwt! / 4, pwt! / 4 + i * o), i, o), dyIn ? dy.byteOffset : pdy!, n, dxIn ? dx.byteOffset : pdx!);
      if (!dxIn) dx.set(this.f32.subarray(pdx! / 4, pdx! / 4 + n * i));
    } finally {
      sizes.forEach((len, j) => this.release([pwt, pdy, pdx][j]!, len * 4));
    }
  }

  /** Y = X·Mᵀ over `t` rows of host arrays: staged through the memory, then `matmulAt`. */
  matmul(m: Matrix, x: Float32Array, t: number, y: Float32Array): void {
    const xBytes = t * m.cols * 4;
    const yBytes = t * m.rows * 4;
    const xPtr = this.malloc(xBytes);
    const yPtr = this.malloc(yBytes);
    try {
      this.f32.set(x.subarray(0, t * m.cols), xPtr / 4);
      this.matmulAt(m, xPtr, t, yPtr);
      y.set(this.f32.subarray(yPtr / 4, yPtr / 4 + t * m.rows));
    } finally {
      this.release(xPtr, xBytes);
      this.release(yPtr, yBytes);
    }
  }

  /**
   * The machine's read bandwidth as these threads see it: bytes/s of a SIMD read loop over `bytes` bytes
   * (far beyond the caches), best of `repeats` passes.
   */
  measureReadBandwidth(bytes = 512 * 2 ** 20, repeats = 5): number {
    const buf = this.allocate(bytes);
    for (let i = 0; i < bytes; i += 4096) buf[i] = 1; // touch every page
    let best = 0;
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      this.dispatch(Op.ReadSum, [buf.byteOffset, bytes], bytes, 1 << 16);
      const seconds = (performance.now() - t0) / 1000;
      best = Math.max(best, bytes / seconds);
    }
    return best;
  }

  /** Stops the workers. The memory (and the weights in it) stays valid for reading. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.workers.length > 0) {
      this.ctrl[Ctrl.Op] = Op.Exit;
      this.generation = (this.generation + 1) & 0x7fff;
      Atomics.store(this.ctrl, Ctrl.Generation, this.generation);
      Atomics.notify(this.ctrl, Ctrl.Generation);
      Atomics.add(this.ctrl, Ctrl.HelperWake, 1);
      Atomics.notify(this.ctrl, Ctrl.HelperWake);
      await Promise.all(this.workers.map((w) => w.terminate()));
    }
  }
}

/** The training scans' shapes: C a multiple of 4, every (B·T) × C array and every per-channel one long enough. */
function checkScan(c: number, n: number, planes: readonly Float32Array[], channels: readonly Float32Array[]): void {
  if (c % 4 !== 0 || planes.some((x) => x.length < n) || channels.some((x) => x.length < c)) {
    throw new ArgumentError(`WKV training scan: ${c} channels need C % 4 = 0, (B·T) × C arrays of ${n} and per-channel arrays of ${c}`);
  }
}
