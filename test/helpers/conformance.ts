// The backend conformance suite: every operation of the `Backend` interface, run on the backend under test
// and on ReferenceBackend (the float64 oracle, itself checked by conformance-oracle.ts) with the same
// seeded inputs of awkward sizes, results and updated states compared within stated tolerances; and the
// interface's contracts (ownership, read/write/free, and the argument checks: every malformed call of
// every operation — ARGUMENT_CHECKS, typed to cover the whole interface — throws a RangeError or
// ArgumentError naming the op before it touches memory; src/kernels/checks.ts has the shared checks). A
// new backend (WebGPU) runs it unchanged:
//   conformanceSuite('webgpu', () => createBackend({ kind: 'webgpu' }))
// before any model test.
//
// Tolerances. Each comparison allows |got − want| ≤ tol·(1 + m) (+ a stated allowance for the lossy int8
// mode and for wkv4's f32 exponents), where m is the magnitude the value's rounding error scales with, worked out in float64 by
// conformance-f64.ts: Σ|terms| for a sum (cancellation makes |want| the wrong scale), |want| otherwise.
// Every tensor a case does not name as an output must come back bit for bit (no stray writes).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { rowLayout, type Backend, type RowLayout, type DeviceMatrix, type DeviceTensor, type MatmulJob, type UnaryFunction } from '../../src/kernels/backend.js';
import type { Matrix, MatrixDType } from '../../src/kernels/matrix.js';
import { ReferenceBackend } from '../../src/kernels/reference-backend.js';
import {
  bonusF64,
  copyMatrix,
  decodeMatrix,
  ENCODINGS,
  isBlockEncoding,
  matmulF64,
  normF64,
  randomMatrix,
  SeededRandom,
  seedOf,
  unaryF64,
  wkv4F64,
  wkv5F64,
  wkv7F64,
  type Fn,
} from './conformance-f64.js';

export const TOL = {
  /** Copies and decodes (embed, tokenShift, gatherRows): every stored encoding decodes to an f32 exactly. */
  exact: 0,
  /** add, mul, lerp: at most three f32 roundings (≤ 3·2^-24 ≈ 1.8e-7) of the terms' magnitude. */
  elementwise: 1e-6,
  /**
   * unary: an f32 transcendental is good to a few ulps of its value (WGSL allows exp 3 + 2|x| ulps,
   * ≈ 1.6e-6 at the |x| ≤ 12 used here); m = |f(x)| + |f′(x)·x| also covers rounding the argument.
   */
  unary: 2e-6,
  /**
   * Products and other f32 sums (matmul, l2NormHeads, wkv7Bonus): an f32 sum of n terms errs by at most
   * n·2^-24 of Σ|terms| (≈ 1e-5 at n = 160, the widest row here); blocked and FMA sums do better. The
   * quantized kernels' split activations lose at most 2^-30 of each block's largest value.
   */
  product: 1e-5,
  /** GroupNorm: f32 mean and variance over ≤ 130 values, error relative to |w|·(|x − μ| + |μ|)/σ + |b|. */
  norm: 1e-5,
  /**
   * The WKV recurrences: every token rounds the state to f32 and adds a few f32 operations (wkv4's
   * exponentials, an N-term sum for v5/v7); over up to 40 tokens of contracting recurrences the error
   * stays within ~T·2^-24 of the largest state magnitude (measured ≤ 1e-7 for v5/v7). wkv4 also gets the
   * allowance for its exponents described at its test.
   */
  wkv: 1e-5,
};

// ── comparison and the record of the largest errors ───────────────────────────────────────────────────

const worst = new Map<string, { err: number; tol: number; used: number; extra: boolean }>();

/**
 * The largest error seen per comparison key: |got − want| / (1 + m), against tol; where an extra
 * allowance applies (int8 activations, wkv4's exponents), also the largest share of the whole bound used.
 */
export function conformanceReport(): string[] {
  return [...worst.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, { err, tol, used, extra }]) => `${k.padEnd(40)} max ${err.toExponential(2)}  tol ${tol}${extra ? `  (${(100 * used).toFixed(1)}% of tol·(1 + m) + allowance)` : ''}`);
}

/**
 * Asserts |got_i − want_i| ≤ tol·(1 + mag_i) + extra_i for every i (mag defaults to |want_i|); NaN only
 * where want is NaN. Records the largest |got − want| / (1 + mag) under `key`.
 */
export function assertClose(key: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, mag?: ArrayLike<number>, extra?: ArrayLike<number>): void {
  assert.equal(got.length, want.length, `${key}: ${got.length} values, expected ${want.length}`);
  let err = 0;
  let used = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!;
    const b = want[i]!;
    if (Number.isNaN(b) && Number.isNaN(a)) continue;
    if (a === b) continue;
    const m = 1 + (mag !== undefined ? mag[i]! : Math.abs(b));
    const d = Math.abs(a - b);
    const bound = tol * m + (extra !== undefined ? extra[i]! : 0);
    if (!(d <= bound)) {
      throw new assert.AssertionError({
        message: `${key}: value ${i} is ${a}, expected ${b} (|diff| ${d.toExponential(3)} > allowed ${bound.toExponential(3)} = ${tol}·(1 + ${(m - 1).toExponential(3)})${extra !== undefined ? ` + ${extra[i]!.toExponential(3)}` : ''})`,
        actual: a,
        expected: b,
        operator: 'close',
      });
    }
    err = Math.max(err, d / m);
    used = Math.max(used, d / bound);
  }
  const w = worst.get(key) ?? { err: 0, tol, used: 0, extra: false };
  worst.set(key, { err: Math.max(w.err, err), tol, used: Math.max(w.used, used), extra: w.extra || extra !== undefined });
}

/** Asserts that `f` throws a RangeError or an ArgumentError (a shape or argument the op cannot take). */
export function throwsShapeError(f: () => unknown, what: string): void {
  assert.throws(f, (e: unknown) => e instanceof RangeError || e instanceof ArgumentError, `${what} should throw a RangeError or ArgumentError`);
}

// ── a pair of backends run side by side ───────────────────────────────────────────────────────────────

/** One tensor on both backends, with the values it was created with. */
export interface TensorPair {
  readonly b: DeviceTensor;
  readonly r: DeviceTensor;
  readonly rows: number;
  readonly cols: number;
  readonly host: Float32Array;
  checked: boolean;
}

export interface MatrixPair {
  readonly b: DeviceMatrix;
  readonly r: DeviceMatrix;
  readonly host: Matrix;
  /** Every value, decoded independently (conformance-f64.ts). */
  readonly values: Float64Array;
}

/** Picks a pair's handle on the backend being driven. */
export type Sel = <X>(p: { readonly b: X; readonly r: X }) => X;

/** Drives the backend under test (b) and the reference (r) through the same calls. */
export class Twin {
  private readonly tensors: TensorPair[] = [];
  constructor(
    readonly b: Backend,
    readonly r: Backend,
  ) {}

  up(host: Float32Array, rows: number, cols: number): TensorPair {
    const t: TensorPair = { b: this.b.upload(host, rows, cols), r: this.r.upload(host, rows, cols), rows, cols, host: host.slice(), checked: false };
    this.tensors.push(t);
    return t;
  }

  zeros(rows: number, cols: number): TensorPair {
    const t: TensorPair = { b: this.b.tensor(rows, cols), r: this.r.tensor(rows, cols), rows, cols, host: new Float32Array(rows * cols), checked: false };
    this.tensors.push(t);
    return t;
  }

  /** Places `m` on both; on the backend under test from its own bytes (allocateBytes, no copy) when `zeroCopy`. */
  matrix(m: Matrix, zeroCopy: boolean): MatrixPair {
    // Otherwise from host bytes at a byte offset into a larger buffer, as a file loader leaves them.
    const placed = copyMatrix(m, zeroCopy ? (n) => this.b.allocateBytes(n) : (n) => new Uint8Array(new ArrayBuffer(n + 12), 12, n));
    return { b: this.b.matrix(placed), r: this.r.matrix(m), host: m, values: decodeMatrix(m) };
  }

  /** Runs `f` on the backend under test, then on the reference. */
  async run(f: (be: Backend, s: Sel) => void | Promise<void>): Promise<void> {
    await f(this.b, (p) => p.b);
    await f(this.r, (p) => p.r);
  }

  /** Compares an output of both (see assertClose); returns the reference's values. */
  async expect(p: TensorPair, key: string, tol: number, mag?: ArrayLike<number>, extra?: ArrayLike<number>): Promise<Float32Array> {
    const [got, want] = await Promise.all([this.b.read(p.b), this.r.read(p.r)]);
    assertClose(key, got, want, tol, mag, extra);
    p.checked = true;
    return want;
  }

  /** Every tensor not compared as an output still holds its initial values on both; then frees all. */
  async finish(): Promise<void> {
    for (const p of this.tensors) {
      if (p.checked) continue;
      for (const [be, t] of [[this.b, p.b], [this.r, p.r]] as const) {
        const v = await be.read(t);
        for (let i = 0; i < v.length; i++) {
          if (!Object.is(v[i], p.host[i])) assert.fail(`${be.kind}: an input of ${p.rows} × ${p.cols} changed at ${i}: ${v[i]} (was ${p.host[i]})`);
        }
      }
    }
    for (const p of this.tensors) {
      this.b.free(p.b);
      this.r.free(p.r);
    }
  }
}

// ── inputs ────────────────────────────────────────────────────────────────────────────────────────────

/** Activations: uniform in [−1, 1], one in ten ×30 (outlier channels), a few tiny ones. */
export function activations(rnd: SeededRandom, n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rnd.next();
    x[i] = rnd.uniform(-scale, scale) * (u < 0.1 ? 30 : u < 0.13 ? 1e-4 : 1);
  }
  return x;
}

export const FUNCTIONS: readonly UnaryFunction[] = ['relu2', 'sigmoid', 'tanh', 'silu', 'exp'];

/** f′(x), for the magnitude of a function of a rounded value. */
export function derivative(f: Fn, x: number): number {
  const s = 1 / (1 + Math.exp(-x));
  switch (f) {
    case 'relu2':
      return x > 0 ? 2 * x : 0;
    case 'sigmoid':
      return s * (1 - s);
    case 'tanh':
      return 1 - Math.tanh(x) ** 2;
    case 'silu':
      return s * (1 + x * (1 - s));
    case 'exp':
      return Math.exp(x);
  }
}

/**
 * The int8 mode's documented loss (matrix.ts toInt8Rows, asm matvecInt8): a kernel may round the
 * activations to i16 with one scale max|x|/32767 per input row, so each product term errs by up to
 * |w|·max|x|/65534: allowed on top of the f32 tolerance.
 */
function int8Slack(w: Float64Array, rows: number, cols: number, x: Float32Array, t: number): Float64Array {
  const extra = new Float64Array(t * rows);
  for (let i = 0; i < t; i++) {
    let mx = 0;
    for (let j = 0; j < cols; j++) mx = Math.max(mx, Math.abs(x[i * cols + j]!));
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += Math.abs(w[r * cols + j]!);
      extra[i * rows + r] = (s * mx) / 65534;
    }
  }
  return extra;
}

/** Matrix shapes (rows × cols) per encoding: block types need cols a multiple of 32; rows cross 16-row panels. */
export function matrixShapes(dtype: MatrixDType): [number, number][] {
  return isBlockEncoding(dtype)
    ? [
        [1, 32],
        [3, 96],
        [37, 160],
        [17, 32],
        [45, 64],
      ]
    : [
        [1, 1],
        [3, 5],
        [37, 37],
        [17, 100],
        [45, 130],
      ];
}

/** Input rows of the products: 1 (the matrix-vector case), a few (≤ 12), many; not multiples of 4 or 16. */
const T_VALUES = [1, 2, 3, 4, 5, 12, 13, 16, 17, 40];
const tClass = (t: number): string => (t === 1 ? 'T=1' : t <= 12 ? 'T=2..12' : 'T>12');
const nClass = (n: number): string => (n % 4 === 0 ? 'N%4=0' : 'N%4≠0');

/** The whole state's magnitudes: `slot` values per sequence at `offset` from `perSeq`, 0 elsewhere. */
export function slotMagnitudes(rowsB: number, width: number, offset: number, size: number, perSeq: (b: number, i: number) => number): Float64Array {
  const m = new Float64Array(rowsB * width);
  for (let b = 0; b < rowsB; b++) for (let i = 0; i < size; i++) m[b * width + offset + i] = perSeq(b, i);
  return m;
}

/**
 * RWKV-4 WKV inputs. The state: with `freshPp`, sequence 0 starts fresh (aa = bb = 0, pp = freshPp), the
 * others from a random state (bb > 0, |aa| ≤ bb — aa/bb is a weighted mean of values in [−1, 1] — pp in
 * [−5, 5]). 'normal': k in [−1, 1], w = −e^[−3, 2]. 'extreme': k = ±60 or anywhere between (e^60 overflows
 * f32 unless kept in the exponent), decays from −e^7 ≈ −1097 (forgets at once) to −e^−9 ≈ −1.2e-4
 * (remembers for thousands of tokens).
 */
export function wkv4Inputs(rnd: SeededRandom, layout: RowLayout, c: number, width: number, offset: number, regime: 'normal' | 'extreme', freshPp?: number) {
  const rows = layout.rows;
  const bSeq = layout.lengths.length;
  const sh = rnd.values(bSeq * width);
  for (let b = 0; b < bSeq; b++) {
    const at = b * width + offset;
    const fresh = b === 0 && freshPp !== undefined;
    for (let i = 0; i < c; i++) {
      const bb = rnd.uniform(0.5, 3);
      sh[at + i] = fresh ? 0 : bb * rnd.uniform(-1, 1);
      sh[at + c + i] = fresh ? 0 : bb;
      sh[at + 2 * c + i] = fresh ? freshPp : rnd.uniform(-5, 5);
    }
  }
  const extreme = regime === 'extreme';
  const kh = extreme ? Float32Array.from({ length: rows * c }, () => [60, -60, rnd.uniform(-60, 60)][rnd.int(3)]!) : rnd.values(rows * c);
  const wh = Float32Array.from({ length: c }, () => -Math.exp(extreme ? [7, -9, rnd.uniform(-9, 7)][rnd.int(3)]! : rnd.uniform(-3, 2)));
  const uh = extreme ? rnd.values(c, -3, 3) : rnd.values(c);
  const vh = rnd.values(rows * c);
  const rh = rnd.values(rows * c, -6, 6);
  return { sh, kh, vh, rh, wh, uh };
}

/** v5/v6 WKV inputs: state in [−0.5, 0.5], decay e^−e^[−9, 1.5] in (0.011, 0.99988), per row or 1 × C. */
export function wkv5Inputs(rnd: SeededRandom, rows: number, c: number, stateSize: number, perRow: boolean) {
  const sh = rnd.values(stateSize, -0.5, 0.5);
  const [rh, kh, vh] = [rnd.values(rows * c), rnd.values(rows * c), rnd.values(rows * c)];
  const wh = Float32Array.from({ length: perRow ? rows * c : c }, () => Math.exp(-Math.exp(rnd.uniform(-9, 1.5))));
  const uh = rnd.values(c);
  return { sh, rh, kh, vh, wh, uh };
}

/**
 * v7 WKV inputs: v7's decay exp(−e^−0.5·σ(x)) in [0.545, 1); a (the in-context learning rate) in [0, 1],
 * a fifth of it exactly 0 or 1; kk of unit length per head, as l2NormHeads leaves it.
 */
export function wkv7Inputs(rnd: SeededRandom, rows: number, heads: number, n: number, stateSize: number) {
  const c = heads * n;
  const sh = rnd.values(stateSize, -0.5, 0.5);
  const [rh, kh, vh] = [rnd.values(rows * c), rnd.values(rows * c), rnd.values(rows * c)];
  const wh = Float32Array.from({ length: rows * c }, () => Math.exp(-0.606531 / (1 + Math.exp(-rnd.uniform(-8, 8)))));
  const ah = Float32Array.from({ length: rows * c }, () => {
    const u = rnd.next();
    return u < 0.1 ? 0 : u < 0.2 ? 1 : rnd.next();
  });
  const kkh = rnd.values(rows * c);
  for (let h = 0; h < rows * heads; h++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += kkh[h * n + i]! ** 2;
    for (let i = 0; i < n; i++) kkh[h * n + i] = kkh[h * n + i]! / Math.sqrt(s);
  }
  return { sh, rh, wh, kh, vh, kkh, ah };
}

/** Rows, C, groups. */
export const NORM_CASES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 1],
  [2, 37, 1],
  [17, 100, 1],
  [3, 130, 1],
  [5, 100, 4],
  [3, 64, 4],
  [2, 130, 5],
  [4, 96, 2],
  [1, 128, 2],
  [13, 8, 2],
  [2, 5, 5],
];

/** Sequence lengths, C, slot offset, regime. */
export const WKV4_CASES: [number[], number, number, 'normal' | 'extreme'][] = [
  [[1], 4, 0, 'normal'],
  [[5], 37, 2, 'normal'],
  [[17], 64, 0, 'normal'],
  [[3, 1, 7], 8, 5, 'normal'],
  [[1, 1, 1, 1], 130, 0, 'normal'],
  [[40], 12, 1, 'normal'],
  [[1], 4, 0, 'extreme'],
  [[13], 16, 0, 'extreme'],
  [[3, 1, 7], 37, 3, 'extreme'],
  [[2, 21], 100, 0, 'extreme'],
];

/** Sequence lengths, heads, N, slot offset (v5 and v7). */
export const WKV_MATRIX_CASES: [number[], number, number, number][] = [
  [[1], 1, 1, 0],
  [[5], 2, 3, 2],
  [[3, 1, 7], 3, 5, 1],
  [[1, 1, 1, 1], 2, 8, 0],
  [[17], 2, 8, 4],
  [[4], 1, 64, 0],
  [[2, 3], 2, 64, 3],
  [[13], 4, 4, 0],
  [[40], 1, 12, 0],
];

// ── argument checks ───────────────────────────────────────────────────────────────────────────────────

/** What a case of ARGUMENT_CHECKS gets: the backend, a maker of tensors of known values, a 6 × 8 f32 matrix. */
export interface CheckHarness {
  readonly b: Backend;
  readonly t: (rows: number, cols: number) => DeviceTensor;
  readonly m: DeviceMatrix;
}

/** Every operation of the Backend interface (the memory functions have their own tests). */
export type BackendOp = Exclude<keyof Backend, 'kind' | 'description' | 'threads' | 'allocateBytes' | 'matrix' | 'tensor' | 'upload' | 'write' | 'read' | 'view' | 'free' | 'close'>;

const L3 = rowLayout([3]);

/**
 * Malformed calls of every operation (typed by BackendOp: an operation added to the interface does not
 * compile until it has its cases), on C = 8, 2 heads of 4, a sequence of 3 rows. Each must throw before
 * it touches memory (see the suite's 'argument checks').
 */
export const ARGUMENT_CHECKS: Readonly<Record<BackendOp, (h: CheckHarness) => [string, () => unknown][]>> = {
  matmul: ({ b, t, m }) => [
    ['x.cols ≠ m.cols', () => b.matmul([{ m, x: t(3, 7), y: t(3, 6) }])],
    ['y.cols ≠ m.rows', () => b.matmul([{ m, x: t(3, 8), y: t(3, 5) }])],
    ['y.rows ≠ x.rows', () => b.matmul([{ m, x: t(3, 8), y: t(2, 6) }])],
    ['a bad job after a good one', () => b.matmul([{ m, x: t(3, 8), y: t(3, 6) }, { m, x: t(3, 8), y: t(3, 5) }])],
  ],
  add: ({ b, t }) => [
    ['2 rows onto 3', () => b.add(t(3, 8), t(2, 8), t(3, 8))],
    ['7 cols onto 8', () => b.add(t(3, 8), t(1, 7), t(3, 8))],
  ],
  mul: ({ b, t }) => [['out of 2 rows', () => b.mul(t(3, 8), t(3, 8), t(2, 8))]],
  lerp: ({ b, t }) => [['mu of 7 cols', () => b.lerp(t(3, 8), t(3, 8), t(1, 7), t(3, 8))]],
  unary: ({ b, t }) => [['out of another shape', () => b.unary(t(3, 8), 'exp', t(3, 7))]],
  norm: ({ b, t }) => [
    ['weight of 7', () => b.norm(t(3, 8), t(1, 7), t(1, 8), t(3, 8), 1, 1e-5)],
    ['bias of 2 rows', () => b.norm(t(3, 8), t(1, 8), t(2, 8), t(3, 8), 1, 1e-5)],
    ['8 values in 3 groups', () => b.norm(t(3, 8), t(1, 8), t(1, 8), t(3, 8), 3, 1e-5)],
    ['0 groups', () => b.norm(t(3, 8), t(1, 8), t(1, 8), t(3, 8), 0, 1e-5)],
    ['out of 2 rows', () => b.norm(t(3, 8), t(1, 8), t(1, 8), t(2, 8), 1, 1e-5)],
  ],
  embed: ({ b, t, m }) => [
    ['token = rows', () => b.embed(m, [0, 6], t(2, 8))],
    ['token −1', () => b.embed(m, [-1], t(1, 8))],
    ['token 1.5', () => b.embed(m, [1.5], t(1, 8))],
    ['token NaN', () => b.embed(m, [NaN], t(1, 8))],
    ['out rows ≠ tokens', () => b.embed(m, [0, 1], t(3, 8))],
    ['out cols ≠ m.cols', () => b.embed(m, [0], t(1, 7))],
  ],
  tokenShift: ({ b, t }) => [
    ['x rows ≠ layout rows', () => b.tokenShift(L3, { state: t(1, 8), offset: 0 }, t(4, 8), t(4, 8))],
    ['slot past the state row', () => b.tokenShift(L3, { state: t(1, 10), offset: 3 }, t(3, 8), t(3, 8))],
    ['slot at offset −1', () => b.tokenShift(L3, { state: t(1, 10), offset: -1 }, t(3, 8), t(3, 8))],
    ['fewer state rows than sequences', () => b.tokenShift(rowLayout([1, 2]), { state: t(1, 8), offset: 0 }, t(3, 8), t(3, 8))],
    ['a layout whose sequence starts past its rows', () => b.tokenShift({ lengths: [3], starts: [1], rows: 3 }, { state: t(1, 8), offset: 0 }, t(3, 8), t(3, 8))],
    ['out of another shape', () => b.tokenShift(L3, { state: t(1, 8), offset: 0 }, t(3, 8), t(3, 7))],
  ],
  gatherRows: ({ b, t }) => [
    ['row index = x.rows', () => b.gatherRows(t(3, 8), [0, 3], t(2, 8))],
    ['row index −1', () => b.gatherRows(t(3, 8), [-1], t(1, 8))],
    ['row index 0.5', () => b.gatherRows(t(3, 8), [0.5], t(1, 8))],
    ['out rows ≠ indices', () => b.gatherRows(t(3, 8), [0, 1], t(1, 8))],
    ['out cols ≠ x.cols', () => b.gatherRows(t(3, 8), [0], t(1, 7))],
  ],
  l2NormHeads: ({ b, t }) => [
    ['8 values in 3 heads', () => b.l2NormHeads(t(3, 8), 3, 1e-6, t(3, 8))],
    ['0 heads', () => b.l2NormHeads(t(3, 8), 0, 1e-6, t(3, 8))],
    ['out of another shape', () => b.l2NormHeads(t(3, 8), 2, 1e-6, t(2, 8))],
  ],
  wkv4: ({ b, t }) => [
    ['k rows ≠ layout rows', () => b.wkv4(L3, { state: t(1, 24), offset: 0 }, t(4, 8), t(4, 8), t(4, 8), t(1, 8), t(1, 8), t(4, 8))],
    ['v of 2 rows for 3', () => b.wkv4(L3, { state: t(1, 24), offset: 0 }, t(3, 8), t(2, 8), t(3, 8), t(1, 8), t(1, 8), t(3, 8))],
    ['w of 7', () => b.wkv4(L3, { state: t(1, 24), offset: 0 }, t(3, 8), t(3, 8), t(3, 8), t(1, 7), t(1, 8), t(3, 8))],
    ['u of 3 rows', () => b.wkv4(L3, { state: t(1, 24), offset: 0 }, t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(3, 8), t(3, 8))],
    ['slot past the state row', () => b.wkv4(L3, { state: t(1, 24), offset: 1 }, t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(1, 8), t(3, 8))],
    ['2 state rows for 1 sequence', () => b.wkv4(L3, { state: t(2, 24), offset: 0 }, t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(1, 8), t(3, 8))],
  ],
  wkv5: ({ b, t }) => [
    ['r rows ≠ layout rows', () => b.wkv5(L3, { state: t(1, 32), offset: 0 }, 2, t(4, 8), t(4, 8), t(4, 8), t(4, 8), t(1, 8), t(4, 8))],
    ['8 channels in 3 heads', () => b.wkv5(L3, { state: t(1, 64), offset: 0 }, 3, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(3, 8))],
    ['slot past the state row', () => b.wkv5(L3, { state: t(1, 32), offset: 1 }, 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(3, 8))],
    ['w of 2 rows for 3', () => b.wkv5(L3, { state: t(1, 32), offset: 0 }, 2, t(3, 8), t(3, 8), t(3, 8), t(2, 8), t(1, 8), t(3, 8))],
    ['u of 7', () => b.wkv5(L3, { state: t(1, 32), offset: 0 }, 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(1, 7), t(3, 8))],
    ['y of 7 cols', () => b.wkv5(L3, { state: t(1, 32), offset: 0 }, 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(1, 8), t(3, 7))],
  ],
  wkv7: ({ b, t }) => [
    ['r rows ≠ layout rows', () => b.wkv7(L3, { state: t(1, 32), offset: 0 }, 2, t(4, 8), t(4, 8), t(4, 8), t(4, 8), t(4, 8), t(4, 8), t(4, 8))],
    ['8 channels in 3 heads', () => b.wkv7(L3, { state: t(1, 64), offset: 0 }, 3, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['slot past the state row', () => b.wkv7(L3, { state: t(1, 31), offset: 0 }, 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['w of 1 row for 3', () => b.wkv7(L3, { state: t(1, 32), offset: 0 }, 2, t(3, 8), t(1, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['a of 2 rows for 3', () => b.wkv7(L3, { state: t(1, 32), offset: 0 }, 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(3, 8), t(2, 8), t(3, 8))],
  ],
  wkv7Bonus: ({ b, t }) => [
    ['8 channels in 3 heads', () => b.wkv7Bonus(3, t(3, 8), t(3, 8), t(1, 8), t(3, 8), t(3, 8))],
    ['rk of 7', () => b.wkv7Bonus(2, t(3, 8), t(3, 8), t(1, 7), t(3, 8), t(3, 8))],
    ['v of 2 rows for 3', () => b.wkv7Bonus(2, t(3, 8), t(3, 8), t(1, 8), t(2, 8), t(3, 8))],
    ['y of 7 cols', () => b.wkv7Bonus(2, t(3, 8), t(3, 8), t(1, 8), t(3, 8), t(3, 7))],
  ],
  attention: ({ b, t }) => [
    ['8 channels in 3 heads', () => b.attention(L3, [{ k: t(4, 8), v: t(4, 8), length: 0 }], 3, t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['a cache too short for its rows', () => b.attention(L3, [{ k: t(4, 8), v: t(4, 8), length: 2 }], 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['v of 2 rows for 3', () => b.attention(L3, [{ k: t(4, 8), v: t(4, 8), length: 0 }], 2, t(3, 8), t(3, 8), t(2, 8), t(3, 8))],
    ['a cache of 7 cols', () => b.attention(L3, [{ k: t(4, 8), v: t(4, 7), length: 0 }], 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
    ['2 slots for 1 sequence', () => b.attention(L3, [{ k: t(4, 8), v: t(4, 8), length: 0 }, { k: t(4, 8), v: t(4, 8), length: 0 }], 2, t(3, 8), t(3, 8), t(3, 8), t(3, 8))],
  ],
  gelu: ({ b, t }) => [['out of another shape', () => b.gelu(t(3, 8), t(3, 7))]],
};

// ── the suite ─────────────────────────────────────────────────────────────────────────────────────────

export type BackendFactory = () => Backend | Promise<Backend>;

/** Registers the conformance tests of the backend `makeBackend` makes (one instance for the suite, closed after). */
export function conformanceSuite(name: string, makeBackend: BackendFactory): void {
  describe(`backend conformance: ${name}`, () => {
    let backend: Backend | undefined;
    const ref = new ReferenceBackend({ exactActivations: true });
    before(async () => {
      backend = await makeBackend();
    });
    after(async () => {
      await backend?.close();
    });
    const be = (): Backend => {
      if (backend === undefined) throw new Error('the backend did not start');
      return backend;
    };
    /** A test on a fresh Twin with inputs seeded by its title; the Twin's tensors are checked and freed after. */
    const it = (title: string, body: (tw: Twin, rnd: SeededRandom) => Promise<void>, options: { todo?: string } = {}): void => {
      test(title, options, async () => {
        const tw = new Twin(be(), ref);
        await body(tw, new SeededRandom(seedOf(title)));
        await tw.finish();
      });
    };

    describe('memory', () => {
      test('tensor() is zeros, upload/read round-trips bit for bit, read returns a fresh copy', async () => {
        const b = be();
        const z = b.tensor(3, 37);
        assert.equal(z.rows, 3);
        assert.equal(z.cols, 37);
        assert.equal(z.owner, b);
        assert.deepEqual([...(await b.read(z))], new Array<number>(111).fill(0));
        const rnd = new SeededRandom(1);
        const vals = rnd.values(111, -1e3, 1e3);
        vals.set([-0, 1e-40, 3.4e38, -Infinity, NaN, 2 ** -126], 0);
        const original = vals.slice();
        const u = b.upload(vals, 3, 37);
        vals[6] = 12345; // upload copied: changing the source afterwards does nothing
        const r1 = await b.read(u);
        assert.ok(r1 instanceof Float32Array && r1.length === 111);
        for (let i = 0; i < 111; i++) assert.ok(Object.is(r1[i], original[i]), `value ${i}: ${r1[i]} vs ${original[i]}`);
        r1[0] = 7;
        const r2 = await b.read(u);
        assert.notEqual(r1, r2);
        assert.ok(Object.is(r2[0], -0), 'changing a read array changed the tensor');
        b.add(u, u, u);
        assert.ok(Object.is(r2[7], original[7]), 'a read array follows the tensor');
        assert.equal((await b.read(u))[7], Math.fround(2 * original[7]!));
        b.free(z);
        b.free(u);
      });

      test('write with and without an offset, from a subarray; past the end throws', async () => {
        const b = be();
        const t = b.tensor(4, 5);
        const want = new Float32Array(20);
        b.write(t, Float32Array.of(1, 2, 3), 7);
        want.set([1, 2, 3], 7);
        assert.deepEqual(await b.read(t), want);
        b.write(t, Float32Array.of(4, 5));
        want.set([4, 5], 0);
        assert.deepEqual(await b.read(t), want);
        b.write(t, Float32Array.of(6, 7, 8), 17);
        want.set([6, 7, 8], 17);
        assert.deepEqual(await b.read(t), want);
        const big = new SeededRandom(2).values(30);
        b.write(t, big.subarray(11, 14), 2);
        want.set(big.subarray(11, 14), 2);
        assert.deepEqual(await b.read(t), want);
        throwsShapeError(() => b.write(t, Float32Array.of(1, 2), 19), 'write past the end');
        throwsShapeError(() => b.write(t, new Float32Array(21)), 'write of more values than the tensor holds');
        assert.deepEqual(await b.read(t), want, 'a refused write changed the tensor');
        b.free(t);
      });

      test('free: neighbours keep their values, a new tensor in freed memory is zeros', async () => {
        const b = be();
        const rnd = new SeededRandom(3);
        const [va, vb, vc] = [rnd.values(65), rnd.values(65), rnd.values(65)];
        const a = b.upload(va, 5, 13);
        const mid = b.upload(vb, 5, 13);
        const c = b.upload(vc, 5, 13);
        b.free(mid);
        const d = b.tensor(5, 13);
        assert.deepEqual([...(await b.read(d))], new Array<number>(65).fill(0));
        b.write(d, rnd.values(65));
        assert.deepEqual(await b.read(a), va);
        assert.deepEqual(await b.read(c), vc);
        for (let i = 0; i < 24; i++) {
          const rows = 1 + (i % 7);
          const cols = 1 + ((i * 13) % 37);
          const t = b.tensor(rows, cols);
          assert.ok((await b.read(t)).every((v) => v === 0), `tensor ${i} (${rows} × ${cols}) is not zeros`);
          b.write(t, rnd.values(rows * cols));
          b.free(t);
        }
        assert.deepEqual(await b.read(a), va);
        for (const t of [a, c, d]) b.free(t);
      });

      test('view: the first rows, sharing memory both ways; operations take it; bad rows and freeing it throw', async () => {
        const b = be();
        const rnd = new SeededRandom(4);
        const vals = rnd.values(6 * 7);
        const base = b.upload(vals, 6, 7);
        const v = b.view(base, 4);
        assert.equal(v.rows, 4);
        assert.equal(v.cols, 7);
        assert.deepEqual(await b.read(v), vals.subarray(0, 28));
        b.add(v, v, v); // through the view: the base's first 4 rows double, the rest stay
        const after = await b.read(base);
        for (let i = 0; i < 42; i++) assert.equal(after[i], i < 28 ? Math.fround(2 * vals[i]!) : vals[i], `value ${i}`);
        b.write(base, Float32Array.of(9), 3);
        assert.equal((await b.read(v))[3], 9, 'a write to the base shows in the view');
        assert.deepEqual(await b.read(b.view(v, 1)), (await b.read(base)).subarray(0, 7), 'a view of a view');
        for (const rows of [0, 7, 2.5, -1]) throwsShapeError(() => b.view(base, rows), `view of ${rows} rows`);
        assert.throws(() => b.free(v), RangeError, 'freeing a view');
        b.free(base);
      });

      test('bad tensor shapes and upload sizes throw RangeError', () => {
        const b = be();
        for (const [r, c] of [
          [0, 3],
          [3, 0],
          [-1, 2],
          [1.5, 2],
          [2, NaN],
        ] as const) {
          assert.throws(() => b.tensor(r, c), RangeError, `tensor(${r}, ${c})`);
        }
        assert.throws(() => b.upload(new Float32Array(5), 2, 3), RangeError, 'upload of 5 values as 2 × 3');
        assert.throws(() => b.upload(new Float32Array(7), 2, 3), RangeError, 'upload of 7 values as 2 × 3');
      });

      test('allocateBytes gives writable bytes of the size asked; kind, threads and description are set', () => {
        const b = be();
        const bytes = b.allocateBytes(100);
        assert.ok(bytes instanceof Uint8Array);
        assert.equal(bytes.length, 100);
        bytes.fill(7);
        assert.ok(bytes.every((x) => x === 7));
        assert.ok(typeof b.kind === 'string' && typeof b.description === 'string' && b.description.length > 0);
        assert.ok(Number.isInteger(b.threads) && b.threads >= 1);
      });

      test("another backend's tensors and matrices are refused, both ways", async () => {
        const b = be();
        const foreign = new ReferenceBackend({ exactActivations: true });
        const same = await makeBackend(); // a second instance of the same kind: its own memory
        try {
          const rnd = new SeededRandom(4);
          const own = b.upload(rnd.values(6), 2, 3);
          const ownOut = b.tensor(2, 3);
          for (const other of [foreign, same]) {
            const ft = other.upload(rnd.values(6), 2, 3);
            const fRow = other.upload(rnd.values(3), 1, 3);
            const fm = other.matrix(randomMatrix('m', 'f32', 3, 3, rnd));
            const om = b.matrix(randomMatrix('m', 'f32', 3, 3, rnd));
            const cases: [string, () => unknown][] = [
              ['read', () => b.read(ft)],
              ['write', () => b.write(ft, Float32Array.of(1))],
              ['free', () => b.free(ft)],
              ['add (operand)', () => b.add(ft, own, ownOut)],
              ['add (output)', () => b.add(own, own, ft)],
              ['matmul (matrix)', () => b.matmul([{ m: fm, x: own, y: ownOut }])],
              ['matmul (x)', () => b.matmul([{ m: om, x: ft, y: ownOut }])],
              ['norm (weight)', () => b.norm(own, fRow, fRow, ownOut, 1, 1e-5)],
              ['unary', () => b.unary(ft, 'tanh', ownOut)],
              ['embed', () => b.embed(fm, [0, 1], ownOut)],
              ['tokenShift (state)', () => b.tokenShift(rowLayout([2]), { state: fRow, offset: 0 }, own, ownOut)],
              ['wkv5 (u)', () => b.wkv5(rowLayout([2]), { state: b.tensor(1, 9), offset: 0 }, 1, own, own, own, own, fRow, ownOut)],
              ['the other backend reads ours', () => other.read(own)],
              ['the other backend adds ours', () => other.add(own, ft, ft)],
            ];
            for (const [what, f] of cases) {
              await assert.rejects(async () => f(), TypeError, `${what}: ${other.description}`);
            }
          }
          b.free(own);
          b.free(ownOut);
        } finally {
          await same.close();
        }
      });
    });

    describe('embed', () => {
      for (const dtype of ENCODINGS) {
        const shapes: [number, number][] = isBlockEncoding(dtype)
          ? [
              [1, 32],
              [50, 96],
              [7, 160],
            ]
          : [
              [1, 1],
              [50, 37],
              [7, 130],
            ];
        shapes.forEach(([vocab, cols], i) => {
          it(`embed ${dtype}, ${vocab} × ${cols}: first, last and repeated tokens`, async (tw, rnd) => {
            const m = tw.matrix(randomMatrix('emb', dtype, vocab, cols, rnd), i % 2 === 0);
            const lists = [[vocab - 1], [0, vocab - 1, rnd.int(vocab), rnd.int(vocab), 0, rnd.int(vocab), vocab - 1]];
            for (const tokens of lists) {
              const out = tw.zeros(tokens.length, cols);
              await tw.run((b, s) => b.embed(s(m), tokens, s(out)));
              await tw.expect(out, `embed ${dtype}`, TOL.exact);
            }
          });
        });
      }
    });

    describe('matmul', () => {
      for (const dtype of ENCODINGS) {
        matrixShapes(dtype).forEach(([rows, cols], i) => {
          it(`matmul ${dtype} ${rows} × ${cols}, T = ${T_VALUES.join(', ')}`, async (tw, rnd) => {
            const m = tw.matrix(randomMatrix('w', dtype, rows, cols, rnd), i % 2 === 0);
            for (const t of T_VALUES) {
              const xh = activations(rnd, t * cols);
              const x = tw.up(xh, t, cols);
              const y = tw.zeros(t, rows);
              await tw.run((b, s) => b.matmul([{ m: s(m), x: s(x), y: s(y) }]));
              const { mag } = matmulF64(m.values, rows, cols, xh, t);
              await tw.expect(y, `matmul ${dtype} ${tClass(t)}`, TOL.product, mag, dtype === 'int8' ? int8Slack(m.values, rows, cols, xh, t) : undefined);
            }
          });
        });
      }

      // Products large enough for a CPU backend to hand to its workers and return a promise (wasm-backend.ts
      // ASYNC_MIN_MACS: 32 Mi multiply-adds): the few-rows and the packed kernels, with a fused function,
      // beside a small job in the same call.
      for (const [dtype, t] of [['f32', 9], ['q8_0', 24]] as const) {
        it(`matmul ${dtype} 4096 × 1024, T = ${t}: a long product awaited`, async (tw, rnd) => {
          const rows = 4096;
          const cols = 1024;
          const m = tw.matrix(randomMatrix('w', dtype, rows, cols, rnd), true);
          const small = tw.matrix(randomMatrix('s', 'f32', 7, cols, rnd), true);
          const xh = activations(rnd, t * cols, 1 / Math.sqrt(cols));
          const x = tw.up(xh, t, cols);
          const y = tw.zeros(t, rows);
          const ys = tw.zeros(t, 7);
          await tw.run((b, s) => b.matmul([{ m: s(m), x: s(x), y: s(y), then: 'tanh' }, { m: s(small), x: s(x), y: s(ys) }]));
          const { mag } = matmulF64(m.values, rows, cols, xh, t);
          await tw.expect(y, `matmul ${dtype} long`, TOL.product, mag);
          await tw.expect(ys, 'matmul beside a long one', TOL.product, matmulF64(small.values, 7, cols, xh, t).mag);
        });
      }

      // Several jobs of every kind in one call, each with a fused function (or none): one-row jobs go to a
      // batched matrix-vector kernel whose threads split the rows of all jobs, longer ones to the products.
      const JOBS: { dtype: MatrixDType; rows: number; cols: number; t: number; fused: boolean }[] = [
        { dtype: 'f32', rows: 37, cols: 37, t: 1, fused: true },
        { dtype: 'q4_1', rows: 17, cols: 64, t: 1, fused: true },
        { dtype: 'bf16', rows: 5, cols: 37, t: 3, fused: true },
        { dtype: 'q8_0', rows: 13, cols: 96, t: 17, fused: true },
        { dtype: 'int8', rows: 20, cols: 33, t: 1, fused: true },
        { dtype: 'f16', rows: 3, cols: 5, t: 1, fused: false },
        { dtype: 'q5_0', rows: 40, cols: 32, t: 13, fused: true },
        { dtype: 'q4_0', rows: 1, cols: 32, t: 1, fused: true },
        { dtype: 'q5_1', rows: 19, cols: 64, t: 2, fused: false },
      ];
      for (const f of FUNCTIONS) {
        it(`matmul: ${JOBS.length} jobs of every encoding in one call, then = ${f}`, async (tw, rnd) => {
          const parts = JOBS.map((j, i) => {
            const m = tw.matrix(randomMatrix(`w${i}`, j.dtype, j.rows, j.cols, rnd), i % 2 === 1);
            // Inputs scaled so that |x·w| is about 1: exp and relu² stay in range.
            const xh = activations(rnd, j.t * j.cols, 1 / Math.sqrt(j.cols));
            return { j, m, xh, x: tw.up(xh, j.t, j.cols), y: tw.zeros(j.t, j.rows) };
          });
          await tw.run((b, s) => b.matmul(parts.map((p): MatmulJob => ({ m: s(p.m), x: s(p.x), y: s(p.y), ...(p.j.fused ? { then: f } : {}) }))));
          for (const p of parts) {
            const { y, mag } = matmulF64(p.m.values, p.j.rows, p.j.cols, p.xh, p.j.t);
            const slack = p.j.dtype === 'int8' ? int8Slack(p.m.values, p.j.rows, p.j.cols, p.xh, p.j.t) : new Float64Array(y.length);
            // A function of a value known to ±δ is known to ±|f′|·δ (plus its own rounding, within the 1 +).
            const scale = p.j.fused ? mag.map((m, i) => (1 + m) * (1 + Math.abs(derivative(f, y[i]!))) - 1) : mag;
            const extra = p.j.dtype !== 'int8' ? undefined : p.j.fused ? slack.map((e, i) => e * (1 + Math.abs(derivative(f, y[i]!)))) : slack;
            await tw.expect(p.y, `matmul+${p.j.fused ? f : 'none'}${p.j.dtype === 'int8' ? ' int8' : ''} ${tClass(p.j.t)}`, TOL.product, scale, extra);
          }
        });
      }

      it('matmul: fused functions of large products (|x·w| in the hundreds: saturation, exp overflowing to Inf, no NaN)', async (tw, rnd) => {
        const m = tw.matrix(randomMatrix('big', 'f32', 21, 37, rnd), false);
        for (const t of [1, 3, 13]) {
          const xh = rnd.values(t * 37, -120, 120);
          const { y, mag } = matmulF64(m.values, 21, 37, xh, t);
          for (const f of FUNCTIONS) {
            const x = tw.up(xh, t, 37);
            const out = tw.zeros(t, 21);
            await tw.run((b, s) => b.matmul([{ m: s(m), x: s(x), y: s(out), then: f }]));
            await tw.expect(out, `matmul+${f} large ${tClass(t)}`, TOL.product, mag.map((v, i) => (1 + v) * (1 + Math.abs(derivative(f, y[i]!))) - 1));
          }
        }
        await tw.run((b) => b.matmul([]));
      });

      it('matmul: one-row jobs sharing one x (a token’s projections), then the same at T = 7', async (tw, rnd) => {
        const specs: [MatrixDType, number][] = [
          ['f32', 37],
          ['q4_0', 5],
          ['bf16', 64],
          ['int8', 1],
          ['q5_1', 100],
          ['f16', 16],
          ['q8_0', 17],
        ];
        const ms = specs.map(([d, rows], i) => tw.matrix(randomMatrix(`p${i}`, d, rows, 64, rnd), i % 2 === 0));
        for (const t of [1, 7]) {
          const xh = activations(rnd, t * 64);
          const x = tw.up(xh, t, 64);
          const ys = specs.map(([, rows]) => tw.zeros(t, rows));
          await tw.run((b, s) => b.matmul(ms.map((m, i) => ({ m: s(m), x: s(x), y: s(ys[i]!) }))));
          for (let i = 0; i < ms.length; i++) {
            const [d, rows] = specs[i]!;
            const { mag } = matmulF64(ms[i]!.values, rows, 64, xh, t);
            await tw.expect(ys[i]!, `matmul ${d} ${tClass(t)}`, TOL.product, mag, d === 'int8' ? int8Slack(ms[i]!.values, rows, 64, xh, t) : undefined);
          }
        }
      });
    });

    describe('norm', () => {
      for (const [rows, c, groups] of NORM_CASES) {
        it(`norm ${rows} × ${c} in ${groups} group(s): spread, offset and constant rows, in place`, async (tw, rnd) => {
          const eps = groups === 1 ? 1e-5 : 64e-5;
          const wh = rnd.values(c, -1.5, 1.5);
          const bh = rnd.values(c);
          const w = tw.up(wh, 1, c);
          const bias = tw.up(bh, 1, c);
          for (const kind of ['spread', 'offset', 'constant'] as const) {
            const xh = rnd.values(rows * c, -3, 3);
            if (kind === 'offset') for (let i = 0; i < xh.length; i++) xh[i] = 5 + xh[i]! / 30;
            if (kind === 'constant') xh.fill(xh[0]!, 0, c);
            const { mag } = normF64(xh, wh, bh, rows, c, groups, eps);
            const x = tw.up(xh, rows, c);
            const out = tw.zeros(rows, c);
            await tw.run((b, s) => b.norm(s(x), s(w), s(bias), s(out), groups, eps));
            await tw.expect(out, `norm groups${groups === 1 ? '=1' : '>1'}`, TOL.norm, mag);
            const x2 = tw.up(xh, rows, c);
            await tw.run((b, s) => b.norm(s(x2), s(w), s(bias), s(x2), groups, eps));
            await tw.expect(x2, `norm groups${groups === 1 ? '=1' : '>1'}`, TOL.norm, mag);
          }
        });
      }
    });

    describe('add, mul, lerp', () => {
      for (const [rows, c] of [
        [1, 1],
        [1, 37],
        [3, 5],
        [3, 130],
        [17, 1],
        [17, 37],
        [5, 100],
      ] as const) {
        it(`add, mul, lerp ${rows} × ${c}: full and 1 × C operands, in place`, async (tw, rnd) => {
          const full = (): TensorPair => tw.up(rnd.values(rows * c, -4, 4), rows, c);
          const row = (): TensorPair => tw.up(rnd.values(c, -4, 4), 1, c);
          const at = (p: TensorPair, i: number): number => (p.rows === 1 ? p.host[i % c]! : p.host[i]!);
          const n = rows * c;
          for (const op of ['add', 'mul'] as const) {
            const combos: [TensorPair, TensorPair][] = [
              [full(), full()],
              [full(), row()],
              [row(), full()],
            ];
            for (const [a, b2] of combos) {
              const mag = Float64Array.from({ length: n }, (_, i) => (op === 'add' ? Math.abs(at(a, i)) + Math.abs(at(b2, i)) : Math.abs(at(a, i) * at(b2, i))));
              const out = tw.zeros(rows, c);
              await tw.run((b, s) => b[op](s(a), s(b2), s(out)));
              await tw.expect(out, op, TOL.elementwise, mag);
            }
            const a = full();
            const b2 = row();
            const mag = Float64Array.from({ length: n }, (_, i) => Math.abs(at(a, i)) + Math.abs(at(b2, i)) + Math.abs(at(a, i) * at(b2, i)));
            await tw.run((b, s) => b[op](s(a), s(b2), s(a)));
            await tw.expect(a, op, TOL.elementwise, mag);
          }
          const mus = (): TensorPair => tw.up(rnd.values(c, 0, 1), 1, c);
          const muf = (): TensorPair => tw.up(rnd.values(n, 0, 1), rows, c);
          const lerps: [TensorPair, TensorPair, TensorPair][] = [
            [full(), full(), mus()],
            [full(), full(), muf()],
            [row(), full(), muf()],
            [full(), row(), mus()],
          ];
          for (const [inPlace, [a, b2, mu]] of lerps.map((l, i) => [i === 0, l] as const)) {
            const mag = Float64Array.from({ length: n }, (_, i) => Math.abs(at(a, i)) + (Math.abs(at(a, i)) + Math.abs(at(b2, i))) * Math.abs(at(mu, i)));
            const out = inPlace ? b2 : tw.zeros(rows, c);
            await tw.run((b, s) => b.lerp(s(a), s(b2), s(mu), s(out)));
            await tw.expect(out, 'lerp', TOL.elementwise, mag);
          }
        });
      }
    });

    describe('unary', () => {
      for (const f of FUNCTIONS) {
        for (const [rows, c] of [
          [1, 1],
          [3, 37],
          [17, 5],
        ] as const) {
          it(`unary ${f} ${rows} × ${c}, scale 1, −2.5, 0.5, in place`, async (tw, rnd) => {
            for (const scale of [undefined, -2.5, 0.5]) {
              const xh = rnd.values(rows * c, -4.8, 4.8);
              const k = scale ?? 1;
              const mag = Float64Array.from(xh, (v) => Math.abs(unaryF64(f, k * v)) + Math.abs(derivative(f, k * v) * k * v));
              const x = tw.up(xh, rows, c);
              const out = tw.zeros(rows, c);
              await tw.run((b, s) => (scale === undefined ? b.unary(s(x), f, s(out)) : b.unary(s(x), f, s(out), scale)));
              await tw.expect(out, `unary ${f}`, TOL.unary, mag);
              if (scale === undefined) {
                await tw.run((b, s) => b.unary(s(x), f, s(x)));
                await tw.expect(x, `unary ${f}`, TOL.unary, mag);
              }
            }
          });
        }
      }
    });

    describe('tokenShift, gatherRows, l2NormHeads', () => {
      const SHIFTS: [number[], number, number][] = [
        [[1], 1, 0],
        [[5], 37, 0],
        [[17], 5, 3],
        [[3, 1, 7], 37, 7],
        [[1, 1, 1, 1], 130, 0],
        [[13, 4], 5, 1],
        [[2, 16, 1], 3, 5],
      ];
      for (const [lengths, c, offset] of SHIFTS) {
        it(`tokenShift, sequences of ${lengths.join('+')} rows × ${c}, slot at ${offset}, and in place`, async (tw, rnd) => {
          const layout = rowLayout(lengths);
          const width = offset + c + 3;
          const sh = rnd.values(lengths.length * width);
          const xh = rnd.values(layout.rows * c);
          const state = tw.up(sh, lengths.length, width);
          const x = tw.up(xh, layout.rows, c);
          const out = tw.zeros(layout.rows, c);
          await tw.run((b, s) => b.tokenShift(layout, { state: s(state), offset }, s(x), s(out)));
          await tw.expect(out, 'tokenShift', TOL.exact);
          await tw.expect(state, 'tokenShift state', TOL.exact);
          const state2 = tw.up(sh, lengths.length, width);
          const x2 = tw.up(xh, layout.rows, c);
          await tw.run((b, s) => b.tokenShift(layout, { state: s(state2), offset }, s(x2), s(x2)));
          await tw.expect(x2, 'tokenShift', TOL.exact);
          await tw.expect(state2, 'tokenShift state', TOL.exact);
        });
      }

      it('gatherRows: one row, repeats, every row reversed, a 1-row source', async (tw, rnd) => {
        const x = tw.up(rnd.values(17 * 37), 17, 37);
        for (const rows of [[16], [0, 16, 3, 3, 8], Array.from({ length: 17 }, (_, i) => 16 - i)]) {
          const out = tw.zeros(rows.length, 37);
          await tw.run((b, s) => b.gatherRows(s(x), rows, s(out)));
          await tw.expect(out, 'gatherRows', TOL.exact);
        }
        const one = tw.up(rnd.values(5), 1, 5);
        const out = tw.zeros(3, 5);
        await tw.run((b, s) => b.gatherRows(s(one), [0, 0, 0], s(out)));
        await tw.expect(out, 'gatherRows', TOL.exact);
      });

      for (const [rows, heads, n] of [
        [1, 1, 1],
        [3, 3, 5],
        [2, 2, 64],
        [5, 4, 37],
        [1, 1, 130],
        [4, 2, 8],
      ] as const) {
        it(`l2NormHeads ${rows} rows × ${heads} heads × ${n}: a zero head, a head below eps, in place`, async (tw, rnd) => {
          const c = heads * n;
          const xh = rnd.values(rows * c);
          xh.fill(0, 0, n);
          if (rows * heads > 1) for (let i = rows * c - n; i < rows * c; i++) xh[i] = xh[i]! * 1e-8;
          const eps = 1e-6;
          const x = tw.up(xh, rows, c);
          const out = tw.zeros(rows, c);
          await tw.run((b, s) => b.l2NormHeads(s(x), heads, eps, s(out)));
          await tw.expect(out, 'l2NormHeads', TOL.product);
          const x2 = tw.up(xh, rows, c);
          await tw.run((b, s) => b.l2NormHeads(s(x2), heads, eps, s(x2)));
          await tw.expect(x2, 'l2NormHeads', TOL.product);
        });
      }
    });

    describe('wkv4', () => {
      WKV4_CASES.forEach(([lengths, c, offset, regime], ci) => {
        it(`wkv4 ${regime}, sequences of ${lengths.join('+')} tokens × C = ${c}, slot at ${offset}`, async (tw, rnd) => {
          const layout = rowLayout(lengths);
          const rows = layout.rows;
          const bSeq = lengths.length;
          const width = offset + 3 * c + 2;
          const { sh, kh, vh, rh, wh, uh } = wkv4Inputs(rnd, layout, c, width, offset, regime, ci % 2 === 0 ? (ci % 4 === 0 ? -1e38 : -1e30) : undefined);
          const [k, v, r, w, u] = [tw.up(kh, rows, c), tw.up(vh, rows, c), tw.up(rh, rows, c), tw.up(wh, 1, c), tw.up(uh, 1, c)];
          const state = tw.up(sh, bSeq, width);
          const y = tw.zeros(rows, c);
          await tw.run((b, s) => b.wkv4(layout, { state: s(state), offset }, s(k), s(v), s(r), s(w), s(u), s(y)));
          const f = wkv4F64(layout, sh, width, offset, kh, vh, rh, wh, uh);
          const cls = c % 4 === 0 ? 'C%4=0' : 'C%4≠0';
          // The stable form keeps the exponent pp in the state and works out w + pp and u + k: in f32 each
          // rounds at 2^-24 of |pp| or |k|, a relative error of that size in e^(w + pp − q) — at |pp| = 60,
          // 3.6e-6 per token, more than any other rounding (ReferenceBackend adds them in float64). Allowed
          // on top of tol, accumulated over the sequence: 2^-24·T·(max(|pp₀|, max|k|) + |u|) of the magnitude.
          const drift = new Float64Array(bSeq * c);
          layout.lengths.forEach((len, b) => {
            for (let i = 0; i < c; i++) {
              const pp0 = sh[b * width + offset + 2 * c + i]!;
              let p = pp0 < -1e29 ? 0 : Math.abs(pp0);
              for (let t = layout.starts[b]!; t < layout.starts[b]! + len; t++) p = Math.max(p, Math.abs(kh[t * c + i]!));
              drift[b * c + i] = 2 ** -24 * len * (p + Math.abs(uh[i]!));
            }
          });
          const seqOf = (row: number): number => {
            let b = 0;
            while (b + 1 < bSeq && layout.starts[b + 1]! <= row) b++;
            return b;
          };
          await tw.expect(y, `wkv4 ${cls} y`, TOL.wkv, f.mag, f.mag.map((m, o) => m * drift[seqOf(Math.floor(o / c)) * c + (o % c)]!));
          // aa against bb·max|v| (aa/bb is a weighted mean of v), bb and pp against themselves.
          const [got, want] = await Promise.all([tw.b.read(state.b), tw.r.read(state.r)]);
          const mag = slotMagnitudes(bSeq, width, offset, 3 * c, (b, i) => {
            const base = b * width + offset;
            return i < c ? Math.abs(want[base + c + i]!) * f.maxV[b * c + i]! : Math.abs(want[base + i]!);
          });
          const extra = slotMagnitudes(bSeq, width, offset, 3 * c, (b, i) => (i < 2 * c ? mag[b * width + offset + i]! * drift[b * c + (i % c)]! : 0));
          assertClose(`wkv4 ${cls} state`, got, want, TOL.wkv, mag, extra);
          state.checked = true;
        });
      });
    });


    describe('wkv5', () => {
      WKV_MATRIX_CASES.forEach(([lengths, heads, n, offset], ci) => {
        for (const perRow of ci % 3 === 0 ? [false, true] : [ci % 2 === 0]) {
          it(`wkv5 ${heads} heads × ${n}, sequences of ${lengths.join('+')}, slot at ${offset}, w ${perRow ? 'per row (v6)' : '1 × C (v5)'}`, async (tw, rnd) => {
            const layout = rowLayout(lengths);
            const rows = layout.rows;
            const c = heads * n;
            const bSeq = lengths.length;
            const width = offset + c * n + 3;
            const { sh, rh, kh, vh, wh, uh } = wkv5Inputs(rnd, rows, c, bSeq * width, perRow);
            const [r, k, v, w, u] = [tw.up(rh, rows, c), tw.up(kh, rows, c), tw.up(vh, rows, c), tw.up(wh, perRow ? rows : 1, c), tw.up(uh, 1, c)];
            const state = tw.up(sh, bSeq, width);
            const y = tw.zeros(rows, c);
            await tw.run((b, s) => b.wkv5(layout, { state: s(state), offset }, heads, s(r), s(k), s(v), s(w), s(u), s(y)));
            const f = wkv5F64(layout, sh, width, offset, heads, rh, kh, vh, wh, uh);
            await tw.expect(y, `wkv5 ${nClass(n)} y`, TOL.wkv, f.mag);
            await tw.expect(state, `wkv5 ${nClass(n)} state`, TOL.wkv, f.stateMag);
          });
        }
      });
    });

    describe('wkv7, wkv7Bonus', () => {
      WKV_MATRIX_CASES.forEach(([lengths, heads, n, offset]) => {
        it(`wkv7 ${heads} heads × ${n}, sequences of ${lengths.join('+')}, slot at ${offset}, a in [0, 1]`, async (tw, rnd) => {
          const layout = rowLayout(lengths);
          const rows = layout.rows;
          const c = heads * n;
          const bSeq = lengths.length;
          const width = offset + c * n + 3;
          const { sh, rh, wh, kh, vh, kkh, ah } = wkv7Inputs(rnd, rows, heads, n, bSeq * width);
          const [r, w, k, v, kk, a] = [rh, wh, kh, vh, kkh, ah].map((t) => tw.up(t, rows, c)) as [TensorPair, TensorPair, TensorPair, TensorPair, TensorPair, TensorPair];
          const state = tw.up(sh, bSeq, width);
          const y = tw.zeros(rows, c);
          await tw.run((b, s) => b.wkv7(layout, { state: s(state), offset }, heads, s(r), s(w), s(k), s(v), s(kk), s(a), s(y)));
          const f = wkv7F64(layout, sh, width, offset, heads, rh, wh, kh, vh, kkh, ah);
          await tw.expect(y, `wkv7 ${nClass(n)} y`, TOL.wkv, f.mag);
          await tw.expect(state, `wkv7 ${nClass(n)} state`, TOL.wkv, f.stateMag);
        });
      });

      for (const [rows, heads, n] of [
        [1, 1, 1],
        [3, 2, 3],
        [17, 3, 5],
        [2, 2, 64],
        [5, 1, 37],
        [4, 4, 8],
      ] as const) {
        it(`wkv7Bonus ${rows} rows × ${heads} heads × ${n}`, async (tw, rnd) => {
          const c = heads * n;
          const [rh, kh, vh, yh] = [rnd.values(rows * c), rnd.values(rows * c), rnd.values(rows * c), rnd.values(rows * c)];
          const rkh = rnd.values(c);
          const [r, k, v] = [tw.up(rh, rows, c), tw.up(kh, rows, c), tw.up(vh, rows, c)];
          const rk = tw.up(rkh, 1, c);
          const y = tw.up(yh, rows, c);
          await tw.run((b, s) => b.wkv7Bonus(heads, s(r), s(k), s(rk), s(v), s(y)));
          await tw.expect(y, 'wkv7Bonus', TOL.product, bonusF64(heads, rh, kh, rkh, vh, yh).mag);
        });
      }
    });

    describe('argument checks: every malformed call throws, naming the op, before it touches memory', () => {
      // Each op's refusals, on small tensors (C = 8, 2 heads of 4, a sequence of 3 rows) filled with known
      // values. Every refused call must throw a RangeError or ArgumentError whose message names the op,
      // and leave every tensor as it was (no read or write past an operand: a slot past the state row, a
      // token past the table). The suite fails if any op's check is dropped, on any backend it runs on.
      for (const [op, cases] of Object.entries(ARGUMENT_CHECKS)) {
        test(op, async () => {
          const b = be();
          const rnd = new SeededRandom(5);
          const made: [DeviceTensor, Float32Array][] = [];
          const t = (rows: number, cols: number): DeviceTensor => {
            const v = rnd.values(rows * cols, 0.1, 1);
            const x = b.upload(v, rows, cols);
            made.push([x, v]);
            return x;
          };
          const m = b.matrix(randomMatrix('m', 'f32', 6, 8, rnd));
          const failures: string[] = [];
          const opName = new RegExp(`\\b${op}\\b`);
          for (const [what, f] of cases({ b, t, m })) {
            let error: unknown;
            try {
              await f(); // a sync throw or (matmul may return a promise) a rejection
            } catch (e) {
              error = e;
            }
            if (!(error instanceof RangeError || error instanceof ArgumentError)) failures.push(`${what}: ${error === undefined ? 'no error' : String(error)}`);
            else if (!opName.test(error.message)) failures.push(`${what}: the message does not name ${op}: ${error.message}`);
            for (const [x, v] of made.splice(0)) {
              const now = await b.read(x);
              const at = now.findIndex((y, i) => !Object.is(y, v[i]));
              if (at >= 0) failures.push(`${what}: a ${x.rows} × ${x.cols} tensor changed at ${at}`);
              b.free(x);
            }
          }
          assert.deepEqual(failures, [], `${op} took malformed arguments: ${failures.join('; ')}`);
        });
      }
    });
  });
}
