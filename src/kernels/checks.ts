// The argument checks of the Backend operations, in one place: every backend calls the op's check first,
// before it reads or writes any memory (a WebAssembly kernel handed a slot past the state row, or a token
// id past the table, would read and write whatever lies next to it). Each throws a RangeError naming the
// op and the shapes at fault. The cost is a few comparisons per tensor — never a loop over the values;
// only the id lists (embed, gatherRows) and a layout's sequences are walked, one comparison each.
// Ownership (a tensor of another backend: TypeError) is checked where each backend resolves a tensor.
import type { DeviceMatrix, DeviceTensor, MatmulJob, RowLayout, StateSlot } from './backend.js';

const dims = (t: DeviceTensor | DeviceMatrix): string => `${t.rows} × ${t.cols}`;

/** `t` is exactly rows × cols. */
function shape(op: string, name: string, t: DeviceTensor, rows: number, cols: number): void {
  if (t.rows !== rows || t.cols !== cols) throw new RangeError(`${op}: ${name} is ${dims(t)}, expected ${rows} × ${cols}`);
}

/** `t` is the output's shape or one row of its width (a per-channel parameter broadcast over the rows). */
export function checkBroadcast(op: string, name: string, t: DeviceTensor, out: DeviceTensor): void {
  if (t.cols !== out.cols || (t.rows !== out.rows && t.rows !== 1)) {
    throw new RangeError(`${op}: a ${dims(t)} ${name} does not broadcast to ${dims(out)}`);
  }
}

/** A count (heads, groups) that is a positive integer dividing `cols`; returns cols / count. */
function split(op: string, what: string, count: number, cols: number): number {
  if (!Number.isInteger(count) || count < 1 || cols % count !== 0) throw new RangeError(`${op}: ${cols} channels do not split into ${count} ${what}`);
  return cols / count;
}

/** An index into `n` rows: an integer in [0, n). */
function index(op: string, what: string, i: number, at: number, n: number, of: string): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`${op}: ${what} ${i} (at ${at}) is outside 0..${n - 1} of ${of}`);
}

/**
 * A layout of consecutive sequences covering exactly `rows` rows (as rowLayout makes it), and a state slot
 * of `size` floats at its offset in each of the state's rows, one row per sequence.
 */
function sequences(op: string, layout: RowLayout, rows: number, slot: StateSlot, size: number): void {
  const { lengths, starts } = layout;
  if (layout.rows !== rows) throw new RangeError(`${op}: a layout of ${layout.rows} rows for operands of ${rows} rows`);
  if (lengths.length !== starts.length || lengths.length < 1) throw new RangeError(`${op}: a layout of ${lengths.length} lengths and ${starts.length} starts`);
  let end = 0;
  for (let b = 0; b < lengths.length; b++) {
    const len = lengths[b]!;
    if (starts[b] !== end || !Number.isInteger(len) || len < 1) throw new RangeError(`${op}: sequence ${b} of the layout (start ${starts[b]}, ${len} rows) does not follow the one before`);
    end += len;
  }
  if (end !== rows) throw new RangeError(`${op}: the layout's sequences cover ${end} rows of ${rows}`);
  const { state, offset } = slot;
  if (state.rows !== lengths.length) throw new RangeError(`${op}: a state of ${state.rows} rows for ${lengths.length} sequences`);
  if (!Number.isInteger(offset) || offset < 0 || offset + size > state.cols) {
    throw new RangeError(`${op}: a slot of ${size} floats at offset ${offset} runs past a state row of ${state.cols}`);
  }
}

export function checkMatmul(job: MatmulJob): void {
  const { m, x, y } = job;
  if (x.cols !== m.cols || y.cols !== m.rows || y.rows !== x.rows) {
    throw new RangeError(`matmul ${m.name}: x ${dims(x)}, y ${dims(y)} for a ${dims(m)} matrix`);
  }
}

export function checkEmbed(m: DeviceMatrix, tokens: readonly number[], out: DeviceTensor): void {
  if (out.rows !== tokens.length || out.cols !== m.cols) throw new RangeError(`embed ${m.name}: out is ${dims(out)} for ${tokens.length} tokens of ${m.cols}`);
  for (let i = 0; i < tokens.length; i++) index(`embed ${m.name}`, 'token', tokens[i]!, i, m.rows, `a ${dims(m)} table`);
}

export function checkNorm(x: DeviceTensor, weight: DeviceTensor, bias: DeviceTensor, out: DeviceTensor, groups: number): void {
  split('norm', 'groups', groups, x.cols);
  shape('norm', 'weight', weight, 1, x.cols);
  shape('norm', 'bias', bias, 1, x.cols);
  shape('norm', 'out', out, x.rows, x.cols);
}

/** add, mul, lerp: every operand broadcasts to out. */
export function checkElementwise(op: string, out: DeviceTensor, ...operands: readonly DeviceTensor[]): void {
  for (const t of operands) checkBroadcast(op, 'operand', t, out);
}

export function checkUnary(x: DeviceTensor, out: DeviceTensor): void {
  shape('unary', 'out', out, x.rows, x.cols);
}

export function checkTokenShift(layout: RowLayout, slot: StateSlot, x: DeviceTensor, out: DeviceTensor): void {
  sequences('tokenShift', layout, x.rows, slot, x.cols);
  shape('tokenShift', 'out', out, x.rows, x.cols);
}

export function checkGatherRows(x: DeviceTensor, rows: readonly number[], out: DeviceTensor): void {
  if (out.rows !== rows.length || out.cols !== x.cols) throw new RangeError(`gatherRows: out is ${dims(out)} for ${rows.length} rows of ${x.cols}`);
  for (let i = 0; i < rows.length; i++) index('gatherRows', 'row', rows[i]!, i, x.rows, `a ${dims(x)} x`);
}

export function checkL2NormHeads(x: DeviceTensor, heads: number, out: DeviceTensor): void {
  split('l2NormHeads', 'heads', heads, x.cols);
  shape('l2NormHeads', 'out', out, x.rows, x.cols);
}

export function checkWkv4(layout: RowLayout, slot: StateSlot, k: DeviceTensor, v: DeviceTensor, r: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
  const { rows, cols: c } = k;
  shape('wkv4', 'v', v, rows, c);
  shape('wkv4', 'r', r, rows, c);
  shape('wkv4', 'y', y, rows, c);
  shape('wkv4', 'w', w, 1, c);
  shape('wkv4', 'u', u, 1, c);
  sequences('wkv4', layout, rows, slot, 3 * c);
}

export function checkWkv5(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, k: DeviceTensor, v: DeviceTensor, w: DeviceTensor, u: DeviceTensor, y: DeviceTensor): void {
  const { rows, cols: c } = r;
  const n = split('wkv5', 'heads', heads, c);
  shape('wkv5', 'k', k, rows, c);
  shape('wkv5', 'v', v, rows, c);
  shape('wkv5', 'y', y, rows, c);
  checkBroadcast('wkv5', 'w', w, r);
  shape('wkv5', 'u', u, 1, c);
  sequences('wkv5', layout, rows, slot, c * n);
}

export function checkWkv7(layout: RowLayout, slot: StateSlot, heads: number, r: DeviceTensor, w: DeviceTensor, k: DeviceTensor, v: DeviceTensor, kk: DeviceTensor, a: DeviceTensor, y: DeviceTensor): void {
  const { rows, cols: c } = r;
  const n = split('wkv7', 'heads', heads, c);
  shape('wkv7', 'w', w, rows, c);
  shape('wkv7', 'k', k, rows, c);
  shape('wkv7', 'v', v, rows, c);
  shape('wkv7', 'kk', kk, rows, c);
  shape('wkv7', 'a', a, rows, c);
  shape('wkv7', 'y', y, rows, c);
  sequences('wkv7', layout, rows, slot, c * n);
}

export function checkWkv7Bonus(heads: number, r: DeviceTensor, k: DeviceTensor, rk: DeviceTensor, v: DeviceTensor, y: DeviceTensor): void {
  const { rows, cols: c } = r;
  split('wkv7Bonus', 'heads', heads, c);
  shape('wkv7Bonus', 'k', k, rows, c);
  shape('wkv7Bonus', 'rk', rk, 1, c);
  shape('wkv7Bonus', 'v', v, rows, c);
  shape('wkv7Bonus', 'y', y, rows, c);
}
