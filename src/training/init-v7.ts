// RWKV-7's initialisation, as RWKV-LM sets it (RWKV-v7/train_temp/src/model.py: RWKV_Tmix_x070 and
// RWKV_CMix_x070 __init__, then generate_init_weight, which overrides every `.weight` matrix), for layer
// l of L, channel i of C, head size N; r01 = l/(L−1), r1 = 1 − l/L, ddd_i = i/C, lin_i = i/(C−1) − 0.5,
// zig_i = z·|z| with z = ((i mod N) − (N−1)/2) / ((N−1)/2):
//   att.x_r = 1 − ddd^(0.2·r1),  x_w = 1 − ddd^(0.9·r1),  x_k = x_v = 1 − ddd^(0.7·r1),
//   x_a = 1 − ddd^(0.9·r1),  x_g = 1 − ddd^(0.2·r1);  ffn.x_k = 1 − ddd^(r1⁴)
//   att.w0 = −6 + 6·(i/(C−1))^(1 + r01^0.3) + 0.5 + 2.5·zig      (σ of it sets the initial decay)
//   att.a0 = −0.19 + 0.3·zig + 0.4·lin;  att.v0 = 0.73 − 0.4·lin
//   att.k_k = 0.71 − 0.1·lin;  att.k_a = 1.02;  att.r_k = −0.04
//   LoRA down factors w1, a1, v1, g1 [C, D]: zero; up factors w2, a2, v2, g2 [D, C]: orthogonal with
//     gain 0.1 (× √(D/C) when D > C)
//   att.receptance, att.value, ffn.key: orthogonal, gain 1;  att.key: orthogonal, gain 0.1
//   att.output, ffn.value: zero
//   ln0/ln1/ln2/ln_out: weight 1, bias 0;  att.ln_x.weight = ((l+1)/L)^0.7, bias 0
//   emb.weight: uniform(−1e-4, 1e-4);  head.weight: orthogonal, gain 0.5·√(V/C) when V > C, else 0.5
// With L = 1, r01 is taken as 0 (RWKV-LM divides by zero there); with N = 1, zig = 0.
import { Rng } from '../util/rng.js';
import { orthogonal } from './init.js';
import type { Rwkv7Train } from './rwkv7.js';

export interface InitRwkv7Options {
  /** Seed of the random matrices. */
  seed: number;
  /** Half-width of emb.weight's uniform init (default 1e-4). */
  embScale?: number;
}

export function initRwkv7(model: Rwkv7Train, options: InitRwkv7Options): void {
  const rng = new Rng(options.seed);
  const { nLayer: L, nEmbd: C, nVocab: V, headSize: N } = model.shape;
  const lin = (i: number): number => i / Math.max(1, C - 1) - 0.5;
  const zig = (i: number): number => {
    if (N < 2) return 0;
    const z = ((i % N) - (N - 1) / 2) / ((N - 1) / 2);
    return z * Math.abs(z);
  };
  for (const p of model.params) {
    const m = /^blocks\.(\d+)\.(.*)$/.exec(p.name);
    const leaf = m?.[2] ?? p.name;
    const l = m !== null ? Number(m[1]) : 0;
    const r01 = L > 1 ? l / (L - 1) : 0;
    const r1 = 1 - l / L;
    const d = p.data;
    const each = (f: (i: number) => number): void => {
      for (let i = 0; i < d.length; i++) d[i] = f(i);
    };
    const mix = (power: number): void => each((i) => 1 - (i / C) ** power);
    switch (leaf) {
      case 'att.x_r':
      case 'att.x_g':
        mix(0.2 * r1);
        break;
      case 'att.x_w':
      case 'att.x_a':
        mix(0.9 * r1);
        break;
      case 'att.x_k':
      case 'att.x_v':
        mix(0.7 * r1);
        break;
      case 'ffn.x_k':
        mix(r1 ** 4);
        break;
      case 'att.w0':
        each((i) => -6 + 6 * (i / Math.max(1, C - 1)) ** (1 + r01 ** 0.3) + 0.5 + 2.5 * zig(i));
        break;
      case 'att.a0':
        each((i) => -0.19 + 0.3 * zig(i) + 0.4 * lin(i));
        break;
      case 'att.v0':
        each((i) => 0.73 - 0.4 * lin(i));
        break;
      case 'att.k_k':
        each((i) => 0.71 - 0.1 * lin(i));
        break;
      case 'att.k_a':
        d.fill(1.02);
        break;
      case 'att.r_k':
        d.fill(-0.04);
        break;
      case 'att.w1':
      case 'att.a1':
      case 'att.v1':
      case 'att.g1':
      case 'att.output.weight':
      case 'ffn.value.weight':
        d.fill(0);
        break;
      case 'att.w2':
      case 'att.a2':
      case 'att.v2':
      case 'att.g2': {
        const [rows, cols] = p.shape as [number, number];
        orthogonal(d, rows, cols, 0.1 * (rows > cols ? Math.sqrt(rows / cols) : 1), rng);
        break;
      }
      case 'att.receptance.weight':
      case 'att.value.weight':
      case 'ffn.key.weight':
        orthogonal(d, p.shape[0]!, p.shape[1]!, 1, rng);
        break;
      case 'att.key.weight':
        orthogonal(d, C, C, 0.1, rng);
        break;
      case 'att.ln_x.weight':
        d.fill(((l + 1) / L) ** 0.7);
        break;
      case 'emb.weight': {
        const s = options.embScale ?? 1e-4;
        each(() => (2 * rng.next() - 1) * s);
        break;
      }
      case 'head.weight':
        orthogonal(d, V, C, V > C ? 0.5 * Math.sqrt(V / C) : 0.5, rng);
        break;
      default:
        if (/(^|\.)ln(0|1|2|_out|_x)\.bias$/.test(p.name)) d.fill(0);
        else if (/(^|\.)ln(0|1|2|_out)\.weight$/.test(p.name)) d.fill(1);
        else throw new Error(`internal: no init rule for ${p.name}`);
    }
  }
}
