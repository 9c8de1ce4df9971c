// The oracle checked: ReferenceBackend against the plain float64 definitions of conformance-f64.ts, which
// share no code with src/ (weights decoded per element from the format definitions, RWKV-4's WKV in its
// direct form rather than the stable one). The conformance suite then holds every other backend to
// ReferenceBackend.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rowLayout } from '../../src/kernels/backend.js';
import { ReferenceBackend } from '../../src/kernels/reference-backend.js';
import {
  activations,
  assertClose,
  derivative,
  FUNCTIONS,
  matrixShapes,
  NORM_CASES,
  TOL,
  WKV4_CASES,
  WKV_MATRIX_CASES,
  wkv4Inputs,
  wkv5Inputs,
  wkv7Inputs,
} from './conformance.js';
import {
  bonusF64,
  decodeMatrix,
  ENCODINGS,
  l2NormF64,
  matmulF64,
  normF64,
  randomMatrix,
  SeededRandom,
  seedOf,
  unaryF64,
  wkv4F64,
  wkv5F64,
  wkv7F64,
} from './conformance-f64.js';

/**
 * ReferenceBackend sums in float64 and rounds each result to f32 once: against float64 it may differ by
 * half an ulp of the result, 2^-24 ≈ 6e-8 of |want| (plus float64 noise, ~1e-16 of the terms).
 */
const ROUNDED = 1e-7;

export function referenceOracleSuite(): void {
  describe('ReferenceBackend against plain float64 (the oracle checked)', () => {
    const rb = new ReferenceBackend({ exactActivations: true });
    const up = (v: Float32Array, rows: number, cols: number) => rb.upload(v, rows, cols);

    test('embed decodes every encoding as its format definition says (every row)', async () => {
      const rnd = new SeededRandom(seedOf('oracle embed'));
      for (const dtype of ENCODINGS) {
        for (const [rows, cols] of matrixShapes(dtype)) {
          const m = randomMatrix('e', dtype, rows, cols, rnd);
          const out = rb.tensor(rows, cols);
          rb.embed(rb.matrix(m), Array.from({ length: rows }, (_, i) => i), out);
          assertClose(`oracle embed ${dtype}`, await rb.read(out), decodeMatrix(m), 0);
        }
      }
    });

    test('matmul, every encoding and shape, T = 1, 5, 17, with each fused function', async () => {
      const rnd = new SeededRandom(seedOf('oracle matmul'));
      for (const dtype of ENCODINGS) {
        for (const [rows, cols] of matrixShapes(dtype)) {
          const m = randomMatrix('w', dtype, rows, cols, rnd);
          const dm = rb.matrix(m);
          const w = decodeMatrix(m);
          for (const t of [1, 5, 17]) {
            const xh = activations(rnd, t * cols, 1 / Math.sqrt(cols));
            const x = up(xh, t, cols);
            const { y } = matmulF64(w, rows, cols, xh, t);
            const out = rb.tensor(t, rows);
            await rb.matmul([{ m: dm, x, y: out }]);
            assertClose(`oracle matmul ${dtype}`, await rb.read(out), y, ROUNDED);
            for (const f of FUNCTIONS) {
              await rb.matmul([{ m: dm, x, y: out, then: f }]);
              // f of the f32-rounded product: off by |f′(y)|·2^-24·|y|, then rounded itself.
              const want = y.map((v) => unaryF64(f, v));
              const mag = y.map((v, i) => Math.abs(want[i]!) + Math.abs(derivative(f, v) * v));
              assertClose(`oracle matmul+${f}`, await rb.read(out), want, ROUNDED, mag);
            }
          }
        }
      }
    });

    test('norm (LayerNorm and GroupNorm), l2NormHeads, tokenShift', async () => {
      const rnd = new SeededRandom(seedOf('oracle norm'));
      for (const [rows, c, groups] of NORM_CASES) {
        const eps = groups === 1 ? 1e-5 : 64e-5;
        const [xh, wh, bh] = [rnd.values(rows * c, -3, 3), rnd.values(c, -1.5, 1.5), rnd.values(c)];
        for (let i = 0; i < xh.length; i++) if (i % 3 === 0) xh[i] = 5 + xh[i]! / 30;
        const out = rb.tensor(rows, c);
        rb.norm(up(xh, rows, c), up(wh, 1, c), up(bh, 1, c), out, groups, eps);
        assertClose('oracle norm', await rb.read(out), normF64(xh, wh, bh, rows, c, groups, eps).y, ROUNDED);
      }
      for (const [rows, heads, n] of [
        [3, 3, 5],
        [2, 2, 64],
        [1, 1, 130],
      ] as const) {
        const xh = rnd.values(rows * heads * n);
        xh.fill(0, 0, n);
        const out = rb.tensor(rows, heads * n);
        rb.l2NormHeads(up(xh, rows, heads * n), heads, 1e-6, out);
        assertClose('oracle l2NormHeads', await rb.read(out), l2NormF64(xh, rows, heads, 1e-6), ROUNDED);
      }
      // tokenShift written out: a sequence's first row takes the slot, the others the row before; the slot takes the last.
      const layout = rowLayout([3, 1, 7]);
      const [c, offset, width] = [5, 2, 9];
      const sh = rnd.values(3 * width);
      const xh = rnd.values(layout.rows * c);
      const state = up(sh, 3, width);
      const out = rb.tensor(layout.rows, c);
      rb.tokenShift(layout, { state, offset }, up(xh, layout.rows, c), out);
      const wantOut = new Float32Array(layout.rows * c);
      const wantState = sh.slice();
      layout.lengths.forEach((len, b) => {
        const s0 = layout.starts[b]!;
        for (let i = 0; i < c; i++) {
          wantOut[s0 * c + i] = sh[b * width + offset + i]!;
          for (let p = 1; p < len; p++) wantOut[(s0 + p) * c + i] = xh[(s0 + p - 1) * c + i]!;
          wantState[b * width + offset + i] = xh[(s0 + len - 1) * c + i]!;
        }
      });
      assertClose('oracle tokenShift', await rb.read(out), wantOut, 0);
      assertClose('oracle tokenShift state', await rb.read(state), wantState, 0);
    });

    test('wkv4 (stable form) against the direct form, normal and extreme values', async () => {
      for (const [ci, [lengths, c, offset, regime]] of WKV4_CASES.entries()) {
        const rnd = new SeededRandom(seedOf(`oracle wkv4 ${ci}`));
        const layout = rowLayout(lengths);
        const width = offset + 3 * c + 2;
        const { sh, kh, vh, rh, wh, uh } = wkv4Inputs(rnd, layout, c, width, offset, regime, ci % 2 === 0 ? -1e30 : undefined);
        const rows = layout.rows;
        const state = up(sh, lengths.length, width);
        const y = rb.tensor(rows, c);
        rb.wkv4(layout, { state, offset }, up(kh, rows, c), up(vh, rows, c), up(rh, rows, c), up(wh, 1, c), up(uh, 1, c), y);
        const f = wkv4F64(layout, sh, width, offset, kh, vh, rh, wh, uh);
        assertClose('oracle wkv4 y', await rb.read(y), f.y, TOL.wkv, f.mag);
        // The stable state (aa, bb, pp) means num = aa·e^pp, den = bb·e^pp.
        const s = await rb.read(state);
        const ratio = new Float64Array(f.ratio.length);
        const logDen = new Float64Array(f.ratio.length);
        for (let b = 0; b < lengths.length; b++) {
          for (let i = 0; i < c; i++) {
            const at = b * width + offset + i;
            assert.ok(s[at + c]! > 0, `bb = ${s[at + c]} after a token`);
            ratio[b * c + i] = s[at]! / s[at + c]!;
            logDen[b * c + i] = Math.log(s[at + c]!) + s[at + 2 * c]!;
          }
        }
        assertClose('oracle wkv4 state aa/bb', ratio, f.ratio, TOL.wkv, f.maxV);
        assertClose('oracle wkv4 state ln(bb)+pp', logDen, f.logDen, TOL.wkv);
      }
    });

    test('wkv5 (v5 and v6 decays), wkv7 (a in [0, 1]) and wkv7Bonus', async () => {
      for (const [ci, [lengths, heads, n, offset]] of WKV_MATRIX_CASES.entries()) {
        const rnd = new SeededRandom(seedOf(`oracle wkv ${ci}`));
        const layout = rowLayout(lengths);
        const rows = layout.rows;
        const c = heads * n;
        const width = offset + c * n + 3;
        const perRow = ci % 2 === 0;
        {
          const { sh, rh, kh, vh, wh, uh } = wkv5Inputs(rnd, rows, c, lengths.length * width, perRow);
          const state = up(sh, lengths.length, width);
          const y = rb.tensor(rows, c);
          rb.wkv5(layout, { state, offset }, heads, up(rh, rows, c), up(kh, rows, c), up(vh, rows, c), up(wh, perRow ? rows : 1, c), up(uh, 1, c), y);
          const f = wkv5F64(layout, sh, width, offset, heads, rh, kh, vh, wh, uh);
          assertClose('oracle wkv5 y', await rb.read(y), f.y, TOL.wkv, f.mag);
          assertClose('oracle wkv5 state', await rb.read(state), f.state, TOL.wkv, f.stateMag);
        }
        {
          const { sh, rh, wh, kh, vh, kkh, ah } = wkv7Inputs(rnd, rows, heads, n, lengths.length * width);
          const state = up(sh, lengths.length, width);
          const y = rb.tensor(rows, c);
          const [r, w, k, v, kk, a] = [rh, wh, kh, vh, kkh, ah].map((t) => up(t, rows, c));
          rb.wkv7(layout, { state, offset }, heads, r!, w!, k!, v!, kk!, a!, y);
          const f = wkv7F64(layout, sh, width, offset, heads, rh, wh, kh, vh, kkh, ah);
          assertClose('oracle wkv7 y', await rb.read(y), f.y, TOL.wkv, f.mag);
          assertClose('oracle wkv7 state', await rb.read(state), f.state, TOL.wkv, f.stateMag);
          const rkh = rnd.values(c);
          const y0 = await rb.read(y);
          rb.wkv7Bonus(heads, r!, k!, up(rkh, 1, c), v!, y);
          const g = bonusF64(heads, rh, kh, rkh, vh, y0);
          assertClose('oracle wkv7Bonus', await rb.read(y), g.y, ROUNDED, g.mag);
        }
      }
    });
  });
}
