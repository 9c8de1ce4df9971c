// RWKV v5: rwkv.cpp's "5.1" (ChatRWKV's v5.0) and "5.2" (Eagle).
//
// Time mix per head h (H heads of size N, C = H·N), with r, k, v the head's slices of Wr·xr, Wk·xk, Wv·xv
// (no σ on r, unlike v4; x? = x·μ? + prev·(1−μ?) as in v4) and a matrix state S (N × N, row i = key
// channel, column j = value channel):
//   y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← k_i·v_j + w_i·S_ij        (Backend.wkv5)
// then y = GroupNorm over the H heads (ln_x, eps 64e-5), 5.2 multiplies by silu(Wg·xg), and out = Wo·y.
// In memory the decay is w = exp(−exp(time_decay)) and 5.1's bonus u = exp(time_first) (5.2: time_faaaa
// as is); 5.1 has one decay and one bonus per head, repeated here over the head's channels.
// Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][key i][value j].
import type { DeviceMatrix, DeviceTensor, MatmulJob } from '../kernels/backend.js';
import { elementCount } from '../tensor/tensor.js';
import { ChannelMix, headsOutput, layerBlocks, MixBlock, mixShift, slot, type Pass } from './blocks.js';
import type { ModelConfig } from './config.js';
import { loadLayerNorm, RwkvModel, type LayerNormWeights } from './model.js';
import type { Weights } from './weights.js';

/** A per-head or per-channel parameter (H or C values, any shape) as 1 × C: a per-head value fills its head. */
function perChannel(w: Weights, name: string, config: ModelConfig): DeviceTensor {
  const { nEmbd: c, nHead: h, headSize: n } = config;
  const perHead = elementCount(w.tensor(name).shape) === h && h !== c;
  const values = w.vector(name, perHead ? h : c, perHead ? 'n_head' : 'n_embd');
  if (!perHead) return w.upload(values);
  const out = new Float32Array(c);
  for (let i = 0; i < c; i++) out[i] = values[Math.floor(i / n)]!;
  return w.upload(out);
}

class V5Block extends MixBlock {
  private readonly c: number;
  private readonly nHead: number;
  private readonly decay: DeviceTensor; // w = exp(−exp(time_decay)), 1 × C
  private readonly bonus: DeviceTensor; // u, 1 × C
  private readonly muK: DeviceTensor;
  private readonly muV: DeviceTensor;
  private readonly muR: DeviceTensor;
  private readonly muG: DeviceTensor | undefined; // 5.2 only
  private readonly key: DeviceMatrix; // C × C
  private readonly value: DeviceMatrix;
  private readonly receptance: DeviceMatrix;
  private readonly gate: DeviceMatrix | undefined; // 5.2 only
  private readonly output: DeviceMatrix;
  private readonly lnX: LayerNormWeights;
  protected readonly ffn: ChannelMix;

  constructor(w: Weights, layer: number, config: ModelConfig) {
    super();
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    const gated = config.version === '5.2';
    this.decay = perChannel(w, `${p}.time_decay`, config);
    this.bonus = perChannel(w, gated ? `${p}.time_faaaa` : `${p}.time_first`, config);
    this.muK = w.param(`${p}.time_mix_k`, c, 'n_embd');
    this.muV = w.param(`${p}.time_mix_v`, c, 'n_embd');
    this.muR = w.param(`${p}.time_mix_r`, c, 'n_embd');
    this.muG = gated ? w.param(`${p}.time_mix_g`, c, 'n_embd') : undefined;
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.gate = gated ? w.matrix(`${p}.gate.weight`, c, c, 'n_embd × n_embd') : undefined;
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnX = loadLayerNorm(w, `${p}.ln_x`, c);
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, { muK: 'time_mix_k', muR: 'time_mix_r', style: 'v4' });
  }

  async timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void> {
    const { backend, work, layout } = pass;
    const rows = layout.rows;
    const c = this.c;
    const get = (n: string): DeviceTensor => work.get(`v5.${n}`, rows, c);
    const prev = get('prev');
    backend.tokenShift(layout, slot(pass, base, c), xa, prev);
    const [xk, xv, xr, k, v, r] = ['xk', 'xv', 'xr', 'k', 'v', 'r'].map(get) as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
    mixShift(pass, 'v4', xa, prev, this.muK, xk);
    mixShift(pass, 'v4', xa, prev, this.muV, xv);
    mixShift(pass, 'v4', xa, prev, this.muR, xr);
    const jobs: MatmulJob[] = [
      { m: this.key, x: xk, y: k },
      { m: this.value, x: xv, y: v },
      { m: this.receptance, x: xr, y: r },
    ];
    const g = get('g');
    if (this.gate !== undefined) {
      const xg = get('xg');
      mixShift(pass, 'v4', xa, prev, this.muG!, xg);
      jobs.push({ m: this.gate, x: xg, y: g, then: 'silu' });
    }
    await backend.matmul(jobs);
    const y = xk; // reuse: the WKV output
    backend.wkv5(layout, slot(pass, base, 2 * c), this.nHead, r, k, v, this.decay, this.bonus, y);
    await headsOutput(pass, this.nHead, this.lnX, y, this.gate !== undefined ? g : undefined, this.output, out);
  }
}

export function buildV5(w: Weights, config: ModelConfig): RwkvModel {
  return new RwkvModel(config, w, layerBlocks(config, (l) => new V5Block(w, l, config)));
}
