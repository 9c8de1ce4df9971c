// The one interface every model runs on. A model is an ordered list of these calls; a backend decides
// where tensors live (JS arrays, a WebAssembly memory, a GPU buffer) and how each operation runs.
//
// Conventions:
// - Activations are f32 tensors of `rows × cols`, row-major, owned by the backend (`DeviceTensor`).
//   Rows are token positions: a batch of B sequences is laid out one sequence after another
//   (`RowLayout`), and every per-row operation treats all rows alike. Only token shift and the WKV
//   recurrences look across rows, and they never cross a sequence's boundary.
// - Recurrent state is a `DeviceTensor` of B rows (one per sequence) × the model's state size; layer
//   operations address their slice of a row by a float offset (models/state.ts gives the layout).
// - Operations are issued in order and see the results of earlier ones. Data crosses to JS only at
//   `read`, which may be asynchronous (a GPU maps its buffer); CPU backends resolve at once.
// - A broadcast operand (`Operand`) is a tensor of the same shape as the output, or of one row that
//   applies to every row (a per-channel parameter).
import type { Matrix, MatrixDType } from './matrix.js';

export type BackendKind = 'reference' | 'wasm' | 'webgpu';

/** An f32 tensor owned by a backend. Its data is reachable only through the backend. */
export interface DeviceTensor {
  readonly rows: number;
  readonly cols: number;
  /** The backend that owns it (operations refuse another's tensors). */
  readonly owner: Backend;
}

/** A weight matrix placed by a backend, kept in its stored encoding: rows (out) × cols (in). */
export interface DeviceMatrix {
  readonly name: string;
  readonly dtype: MatrixDType;
  readonly rows: number;
  readonly cols: number;
  /** Bytes it occupies. */
  readonly byteLength: number;
  readonly owner: Backend;
}

/** Which rows belong to which sequence: sequence b owns `lengths[b]` consecutive rows from `starts[b]`. */
export interface RowLayout {
  readonly lengths: readonly number[];
  readonly starts: readonly number[];
  /** Σ lengths. */
  readonly rows: number;
}

export function rowLayout(lengths: readonly number[]): RowLayout {
  const starts: number[] = [];
  let rows = 0;
  for (const n of lengths) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`a sequence in a batch needs at least one row, got ${n}`);
    starts.push(rows);
    rows += n;
  }
  return { lengths, starts, rows };
}

/** A function applied elementwise to a product's results or by `unary`. */
export type UnaryFunction = 'relu2' | 'sigmoid' | 'tanh' | 'silu' | 'exp';

/** One product of a batch: y = then(x · mᵀ), x: rows × m.cols, y: rows × m.rows. */
export interface MatmulJob {
  readonly m: DeviceMatrix;
  readonly x: DeviceTensor;
  readonly y: DeviceTensor;
  readonly then?: UnaryFunction;
}

/**
 * One sequence's attention keys and values so far (GPT's KV cache for one layer): rows 0 … length − 1 of
 * k and v (capacity × C each) hold the positions already seen.
 */
export interface KvSlot {
  readonly k: DeviceTensor;
  readonly v: DeviceTensor;
  readonly length: number;
}

/** Where a layer's recurrent values sit in each row of the state tensor (float offset into the row). */
export interface StateSlot {
  readonly state: DeviceTensor;
  readonly offset: number;
}

export interface Backend {
  readonly kind: BackendKind;
  /** e.g. "wasm relaxed-simd × 2 thread(s)". */
  readonly description: string;
  readonly threads: number;

  // ── memory ──────────────────────────────────────────────────────────────────────────────────────
  /**
   * Host bytes the backend can use as weights without a copy (a loader reads tensors straight into
   * them); `matrix` and `vector` accept bytes from anywhere.
   */
  allocateBytes(byteLength: number): Uint8Array;
  /** Places a weight matrix described on the host (its bytes in the stored encoding). */
  matrix(m: Matrix): DeviceMatrix;
  /** A tensor of `rows × cols` zeros. */
  tensor(rows: number, cols: number): DeviceTensor;
  /** A tensor holding `values` (rows × cols of them). */
  upload(values: Float32Array, rows: number, cols: number): DeviceTensor;
  /** Overwrites `values.length` floats of `t` from float `offset` on. */
  write(t: DeviceTensor, values: Float32Array, offset?: number): void;
  /** The tensor's values: in a fresh array, or in `into` (exactly rows × cols long), which is returned. */
  read(t: DeviceTensor, into?: Float32Array): Promise<Float32Array>;
  /**
   * The first `rows` rows of `t` (1 ≤ rows ≤ t.rows) as a tensor sharing its memory, for work tensors
   * sized to the largest pass and used by smaller ones. Free `t`, never the view; the view is dead after.
   */
  view(t: DeviceTensor, rows: number): DeviceTensor;
  /** Gives a tensor's memory back; the handle must not be used again. A view cannot be freed. */
  free(t: DeviceTensor): void;
  /** Stops worker threads / releases the device. Placed weights stay readable where the host holds them. */
  close(): Promise<void>;

  // ── operations ──────────────────────────────────────────────────────────────────────────────────
  /** out row i = row tokens[i] of m (the embedding lookup), decoded to f32. */
  embed(m: DeviceMatrix, tokens: readonly number[], out: DeviceTensor): void;
  /**
   * Independent products (no job reads another's y), run together. May return a promise (a CPU backend
   * hands a long product to its worker threads and gives the host its thread back meanwhile): await it
   * before the next operation.
   */
  matmul(jobs: readonly MatmulJob[]): void | Promise<void>;
  /**
   * GroupNorm of each row over `groups` equal slices (groups = 1: LayerNorm), times weight plus bias
   * (both 1 × cols); biased variance; `out` may be `x`.
   */
  norm(x: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor, out: DeviceTensor, groups: number, eps: number): void;
  /** out = a + b. */
  add(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void;
  /** out = a ⊙ b. */
  mul(a: DeviceTensor, b: DeviceTensor, out: DeviceTensor): void;
  /** out = a + (b − a) ⊙ mu: every RWKV token-shift interpolation, with the operands in its order. */
  lerp(a: DeviceTensor, b: DeviceTensor, mu: DeviceTensor, out: DeviceTensor): void;
  /** out = f(scale · x). */
  unary(x: DeviceTensor, f: UnaryFunction, out: DeviceTensor, scale?: number): void;
  /**
   * Token shift: out's row i = x's row i − 1 within each sequence, and the state slot's C values for a
   * sequence's first row; the slot then takes the sequence's last row of x. x, out: rows × C.
   */
  tokenShift(layout: RowLayout, slot: StateSlot, x: DeviceTensor, out: DeviceTensor): void;
  /** out row i = x row rows[i]. */
  gatherRows(x: DeviceTensor, rows: readonly number[], out: DeviceTensor): void;
  /** Each head's N values of each row scaled to unit L2 norm (÷ max(‖·‖, eps)). */
  l2NormHeads(x: DeviceTensor, heads: number, eps: number, out: DeviceTensor): void;

  /**
   * RWKV-4's WKV in the stable form (aa, bb, pp at slot.offset, + C, + 2C), y = σ(r) ⊙ wkv.
   * k, v, r, y: rows × C; w (= −exp(time_decay)) and u (time_first): 1 × C.
   */
  wkv4(layout: RowLayout, slot: StateSlot, k: DeviceTensor, v: DeviceTensor, r: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void;
  /**
   * The v5/v6 WKV per head (S[h][key i][value j], H·N² floats at slot.offset):
   *   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij
   * r, k, v, y: rows × C; w (the decay factor in (0, 1)): rows × C or 1 × C; u: 1 × C.
   */
  wkv5(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, k: DeviceTensor, v: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void;
  /**
   * The v7 WKV per head (S[h][value i][key j]):
   *   S ← S·diag(w) − (S·kk)(kk ⊙ a)ᵀ + v·kᵀ;  y = S·r
   * every operand rows × C.
   */
  wkv7(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, w: DeviceTensor, k: DeviceTensor, v: DeviceTensor, kk: DeviceTensor, a: DeviceTensor, y: DeviceTensor): void;
  /**
   * Causal multi-head attention over a KV cache (GPT), per sequence b of the layout: its rows of k and v
   * are first written to rows slots[b].length … of slots[b].k / .v, then its row i (position
   * length + i) attends to cache rows 0 … length + i, per head of N = C / heads:
   *   out_i = Σ_j softmax_j(q_i · k_j / √N) v_j.
   * q, k, v, out: rows × C; each slot needs capacity ≥ length + its rows.
   */
  attention(layout: RowLayout, slots: readonly KvSlot[], heads: number, q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, out: DeviceTensor): void;
  /** GPT-2's GELU in the tanh form: out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  gelu(x: DeviceTensor, out: DeviceTensor): void;
  /** v7's per-head bonus: y_i += (Σ_{j ∈ head} r_j·k_j·rk_j)·v_i. rk: 1 × C. */
  wkv7Bonus(heads: number, r: DeviceTensor, k: DeviceTensor, rk: DeviceTensor, v: DeviceTensor, y: DeviceTensor): void;
}

/** Throws unless `t` belongs to `backend` (a tensor from another backend would be read as garbage). */
export function checkOwner(backend: Backend, ...ts: readonly (DeviceTensor | DeviceMatrix)[]): void {
  for (const t of ts) {
    if (t.owner !== backend) throw new TypeError(`a tensor of the ${t.owner.kind} backend was given to the ${backend.kind} backend`);
  }
}
