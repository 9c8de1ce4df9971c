// What the WebAssembly backend's threads share: the control block's layout, the kernels' exports, and
// the loop that claims and runs chunks of a job. Imported by the backend and by its workers, so it uses
// nothing platform-specific (no node: modules).

/** Operations in the control block. */
export const enum Op {
  MatvecBatch = 1,
  Matmul = 2,
  ReadSum = 3,
  MatmulRows = 4,
  /** The training scans of RWKV-4's WKV (asm/kernels.ts wkv4Train*), split by channels. */
  Wkv4TrainForward = 5,
  Wkv4TrainBackward = 6,
  /** The training scans of RWKV-7's WKV (asm/kernels.ts wkv7Train*), split by (sequence, head) pairs. */
  Wkv7TrainForward = 7,
  Wkv7TrainBackward = 8,
  Exit = 99,
}

/**
 * Control block slots (i32 indices). A job is cut into chunks that the threads claim one at a time
 * (compare-and-swap on `Claim`, which holds the job's generation in its high 16 bits and the next chunk
 * in its low 16), so a thread the OS has descheduled simply claims fewer chunks: the caller never waits
 * for an idle worker, only for chunks in progress.
 */
export const enum Ctrl {
  Generation = 0,
  Completed = 1,
  Op = 2,
  Args = 3, // up to 12 u32 args
  Chunks = 16,
  /** The job's units (rows or bytes), their alignment and the threads: with them every thread computes the same chunk bounds. */
  Units = 17,
  Claim = 18,
  /** Set to 1 by a thread whose kernel threw; the caller reports it after the job. */
  Failed = 19,
  Align = 20,
  Threads = 21,
  /**
   * Bumped (and notified) to wake the helper worker for an asynchronous job: one the calling thread hands
   * to the workers entirely, so that its own thread stays free for the host while the job runs.
   */
  HelperWake = 22,
}

/** Low 16 bits of `Claim` that no job reaches (jobs have at most 0xfffe chunks). */
export const UNCLAIMABLE = 0xffff;

/** Bytes of one thread's matmul buffers: the cols × 16 pack panel and a decode row of at least 8 floats. */
export function matmulThreadBytes(cols: number): number {
  return cols * 64 + Math.max(cols, 8) * 4;
}

/** Bytes of one thread's matmulRows buffer: four decoded rows of f32, then a 4 × 8 block of results. */
export function matmulRowsThreadBytes(cols: number): number {
  return Math.ceil((cols * 16 + 128) / 64) * 64;
}

/** Bytes of the input rows transposed into groups of 8 lanes (asm/kernels.ts `transposeLanes`). */
export function laneGroupBytes(t: number, cols: number): number {
  return Math.ceil(t / 8) * cols * 32;
}

export interface KernelExports {
  matvec(dtype: number, w: number, x: number, y: number, cols: number, r0: number, r1: number): void;
  matvecBatch(table: number, count: number, g0: number, g1: number): void;
  preparedBytes(dtype: number, n: number): number;
  prepareActivations(dtype: number, x: number, out: number, n: number): void;
  matmul(
    dtype: number,
    w: number,
    x: number,
    y: number,
    t: number,
    rows: number,
    cols: number,
    r0: number,
    r1: number,
    pack: number,
    tmp: number,
  ): void;
  matmulRows(dtype: number, w: number, x: number, y: number, t: number, rows: number, cols: number, r0: number, r1: number, tmp: number, xt: number): void;
  transposeLanes(x: number, xt: number, t: number, cols: number): void;
  transposeF32(src: number, dst: number, rows: number, cols: number): void;
  addInto(dst: number, src: number, n: number): void;
  readSum(ptr: number, bytes: number): number;
  widenHalves(src: number, dst: number, n: number): void;
  hasF16Specials(src: number, n: number): number;
  applyFunction(fn: number, y: number, i0: number, i1: number): void;
  elementwise(op: number, a: number, b: number, mu: number, out: number, rows: number, c: number, aStep: number, bStep: number, muStep: number): void;
  groupNorm(x: number, w: number, b: number, y: number, rows: number, c: number, groups: number, eps: number): void;
  wkv4(s: number, k: number, v: number, r: number, w: number, u: number, y: number, c: number, t: number): void;
  trainShiftMixForward(out: number, x: number, mu: number, b: number, t: number, c: number): void;
  trainShiftMixBackward(dx: number, dmu: number, dout: number, x: number, mu: number, b: number, t: number, c: number): void;
  trainLayerNormForward(out: number, mean: number, rstd: number, x: number, w: number, bias: number, n: number, c: number, eps: number): void;
  trainLayerNormBackward(dx: number, dw: number, db: number, dout: number, x: number, mean: number, rstd: number, w: number, n: number, c: number): void;
  trainReluSquared(backward: boolean, out: number, x: number, dout: number, n: number): void;
  trainSigmoidGateForward(out: number, s: number, r: number, y: number, n: number): void;
  trainSigmoidGateBackward(dr: number, dy: number, dout: number, s: number, y: number, n: number): void;
  wkv4TrainForward(base: number, w: number, u: number, b: number, t: number, c: number, c0: number, c1: number): void;
  wkv4TrainBackward(base: number, w: number, u: number, gw: number, gu: number, scratch: number, b: number, t: number, c: number, c0: number, c1: number): void;
  wkv4TrainScratchBytes(t: number): number;
  wkv7TrainForward(base: number, b: number, t: number, heads: number, n: number, chunk: number, scratch: number, s0: number, p0: number, p1: number): void;
  wkv7TrainBackward(base: number, b: number, t: number, heads: number, n: number, chunk: number, scratch: number, ds0: number, p0: number, p1: number): void;
  wkv7TrainScratchBytes(n: number, chunk: number): number;
  wkv5(s: number, r: number, k: number, v: number, w: number, u: number, y: number, heads: number, n: number): void;
  wkv7(s: number, r: number, w: number, k: number, v: number, kk: number, a: number, y: number, heads: number, n: number): void;
  quantizeActivations(x: number, xq: number, n: number): number;
  quantizeQ8(x: number, xq: number, n: number): void;
  roundActivations(grid: number, x: number, out: number, rows: number, n: number, tmp: number): void;
  matvecInt8(w: number, xq: number, xScale: number, y: number, cols: number, r0: number, r1: number): void;
}

/** Runs units [u0, u1) of the job in the control block; `index` picks the thread's own pack buffer. */
function runChunk(k: KernelExports, ctrl: Int32Array, index: number, u0: number, u1: number): void {
  const op = ctrl[Ctrl.Op]!;
  const a = (i: number): number => ctrl[Ctrl.Args + i]! >>> 0;
  if (op === Op.MatvecBatch) {
    k.matvecBatch(a(0), a(1), u0, u1);
  } else if (op === Op.Matmul) {
    const cols = a(6);
    // Per-thread pack and decode buffers, laid out one after another from a(7).
    const pack = a(7) + index * matmulThreadBytes(cols);
    k.matmul(a(0), a(1), a(2), a(3), a(4), a(5), cols, u0, u1, pack, pack + cols * 64);
  } else if (op === Op.MatmulRows) {
    const cols = a(6);
    k.matmulRows(a(0), a(1), a(2), a(3), a(4), a(5), cols, u0, u1, a(7) + index * matmulRowsThreadBytes(cols), a(8));
  } else if (op === Op.Wkv4TrainForward) {
    k.wkv4TrainForward(a(0), a(1), a(2), a(3), a(4), a(5), u0, u1);
  } else if (op === Op.Wkv4TrainBackward) {
    const t = a(4);
    k.wkv4TrainBackward(a(0), a(1), a(2), a(6), a(7), a(8) + index * k.wkv4TrainScratchBytes(t), a(3), t, a(5), u0, u1);
  } else if (op === Op.Wkv7TrainForward || op === Op.Wkv7TrainBackward) {
    const scratch = a(6) + index * k.wkv7TrainScratchBytes(a(4), a(5));
    const run = op === Op.Wkv7TrainForward ? k.wkv7TrainForward : k.wkv7TrainBackward;
    run(a(0), a(1), a(2), a(3), a(4), a(5), scratch, a(7), u0, u1);
  } else if (op === Op.ReadSum) {
    k.readSum(a(0) + u0, u1 - u0);
  }
}

/** Claims and runs chunks of job `generation` until none is left (or the job is no longer current). */
export function runChunks(k: KernelExports, ctrl: Int32Array, index: number, generation: number): void {
  let bounds: number[] | undefined;
  for (;;) {
    const v = Atomics.load(ctrl, Ctrl.Claim);
    if (v >>> 16 !== generation) return;
    const c = v & 0xffff;
    if (c >= ctrl[Ctrl.Chunks]!) return;
    if (Atomics.compareExchange(ctrl, Ctrl.Claim, v, v + 1) !== v) continue;
    // The job's parameters are read only now: a successful claim proves they are this job's.
    bounds ??= chunkBounds(ctrl[Ctrl.Units]!, ctrl[Ctrl.Threads]!, ctrl[Ctrl.Align]!);
    try {
      runChunk(k, ctrl, index, bounds[c]!, bounds[c + 1]!);
    } catch {
      Atomics.store(ctrl, Ctrl.Failed, 1); // still counted below, so the caller does not wait forever
    }
    // Only the last chunk can end the caller's wait.
    if (Atomics.add(ctrl, Ctrl.Completed, 1) + 1 === ctrl[Ctrl.Chunks]) Atomics.notify(ctrl, Ctrl.Completed);
  }
}

/**
 * Chunk bounds of a job of `units` units among `threads` threads (chunk c is [b[c], b[c+1])): guided
 * self-scheduling — each chunk takes 1/(2·threads) of what is left, a multiple of `align` and at least
 * `align` — so chunks shrink towards the end of the job and the threads finish it together, instead of
 * one waiting for the other's last big chunk.
 */
export function chunkBounds(units: number, threads: number, align: number): number[] {
  if (threads <= 1 || units <= align) return [0, units];
  const bounds = [0];
  let start = 0;
  while (start < units) {
    const size = Math.max(align, Math.ceil((units - start) / (2 * threads) / align) * align);
    start = Math.min(units, start + size);
    bounds.push(start);
  }
  return bounds;
}

