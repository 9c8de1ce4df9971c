// RWKV-4's initialisation, as RWKV-LM sets it (RWKV-v4neo/src/model.py: RWKV_TimeMix / RWKV_ChannelMix
// __init__ and generate_init_weight), for layer l of L, channel i of C:
//   att.time_decay[i] = −5 + 8·(i/(C−1))^(0.7 + 1.3·l/(L−1))         (raw; the decay is −exp of it)
//   att.time_first[i] = ln 0.3 + 0.5·((i+1) mod 3 − 1)               ("zigzag")
//   x_i = i/C;  att.time_mix_k = x^(1 − l/L),  time_mix_v = x^(1 − l/L) + 0.3·l/(L−1),
//   att.time_mix_r = x^(0.5·(1 − l/L));  ffn.time_mix_k = ffn.time_mix_r = x^(1 − l/L)
//   LayerNorms: weight 1, bias 0
//   emb.weight: uniform(−s, s), small (the paper's "small init embedding"; s = 1e-4 by default, as the
//     paper and RWKV-LM's README give; v4neo's code uses the initial learning rate)
//   att.key, att.receptance, att.output, ffn.value, ffn.receptance: zero
//   other matrices [out, in]: orthogonal with gain √(out/in) when out > in, else 1 (att.value,
//     ffn.key); head.weight: the same × 0.5
// With L = 1, l/(L−1) is taken as 0 (RWKV-LM divides by zero there).
import { Rng } from '../util/rng.js';
import type { Rwkv4Train } from './model.js';
import type { Vec } from './ops.js';

const ZERO_INIT = /\.(att\.(key|receptance|output)|ffn\.(value|receptance))\.weight$/;

export interface InitOptions {
  /** Seed of the random matrices. */
  seed: number;
  /** Half-width of emb.weight's uniform init (default 1e-4). */
  embScale?: number;
}

export function initRwkv4(model: Rwkv4Train, options: InitOptions): void {
  const rng = new Rng(options.seed);
  const { nLayer: L, nEmbd: C } = model.shape;
  for (const p of model.params) {
    const m = /^blocks\.(\d+)\.(.*)$/.exec(p.name);
    const leaf = m?.[2] ?? p.name;
    const l = m !== null ? Number(m[1]) : 0;
    const r01 = L > 1 ? l / (L - 1) : 0;
    const r1to0 = 1 - l / L;
    const x = (i: number): number => i / C;
    const d = p.data;
    if (/(^|\.)ln(0|1|2|_out)\.weight$/.test(p.name)) d.fill(1);
    else if (/(^|\.)ln(0|1|2|_out)\.bias$/.test(p.name)) d.fill(0);
    else if (leaf === 'att.time_decay') for (let i = 0; i < C; i++) d[i] = -5 + 8 * (i / Math.max(1, C - 1)) ** (0.7 + 1.3 * r01);
    else if (leaf === 'att.time_first') for (let i = 0; i < C; i++) d[i] = Math.log(0.3) + 0.5 * (((i + 1) % 3) - 1);
    else if (leaf === 'att.time_mix_k' || leaf === 'ffn.time_mix_k' || leaf === 'ffn.time_mix_r') for (let i = 0; i < C; i++) d[i] = x(i) ** r1to0;
    else if (leaf === 'att.time_mix_v') for (let i = 0; i < C; i++) d[i] = x(i) ** r1to0 + 0.3 * r01;
    else if (leaf === 'att.time_mix_r') for (let i = 0; i < C; i++) d[i] = x(i) ** (0.5 * r1to0);
    else if (p.name === 'emb.weight') {
      const s = options.embScale ?? 1e-4;
      for (let i = 0; i < d.length; i++) d[i] = (2 * rng.next() - 1) * s;
    } else if (ZERO_INIT.test(p.name)) d.fill(0);
    else if (p.shape.length === 2) {
      const [rows, cols] = p.shape as [number, number];
      const gain = (rows > cols ? Math.sqrt(rows / cols) : 1) * (p.name === 'head.weight' ? 0.5 : 1);
      orthogonal(d, rows, cols, gain, rng);
    } else {
      throw new Error(`internal: no init rule for ${p.name}`);
    }
  }
}

/** A standard normal value (Box–Muller). */
export function normal(rng: Rng): number {
  let u = rng.next();
  while (u === 0) u = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

/**
 * torch.nn.init.orthogonal_: a Gaussian matrix made orthogonal (rows orthonormal when rows ≤ cols, else
 * columns), times `gain`. QR by modified Gram–Schmidt in float64 over the longer-side vectors; the sign
 * convention (positive diagonal of R) is Gram–Schmidt's own.
 */
export function orthogonal(out: Vec, rows: number, cols: number, gain: number, rng: Rng): void {
  // Orthonormalise the `k` shorter-side vectors of length `len`: columns if rows ≥ cols, else rows.
  const tall = rows >= cols;
  const k = tall ? cols : rows;
  const len = tall ? rows : cols;
  const q = new Float64Array(k * len);
  for (let i = 0; i < q.length; i++) q[i] = normal(rng);
  for (let j = 0; j < k; j++) {
    const qj = q.subarray(j * len, (j + 1) * len);
    for (let i = 0; i < j; i++) {
      const qi = q.subarray(i * len, (i + 1) * len);
      let dotp = 0;
      for (let e = 0; e < len; e++) dotp += qi[e]! * qj[e]!;
      for (let e = 0; e < len; e++) qj[e] = qj[e]! - dotp * qi[e]!;
    }
    let norm = 0;
    for (let e = 0; e < len; e++) norm += qj[e]! * qj[e]!;
    norm = Math.sqrt(norm);
    for (let e = 0; e < len; e++) qj[e] = qj[e]! / norm;
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = gain * (tall ? q[c * len + r]! : q[r * len + c]!);
  }
}
