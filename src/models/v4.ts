// RWKV-4, the paper's architecture.
//
// Time mix per channel, x = the ln1-normed input, prev = the previous token's:
//   xk = x·μk + prev·(1−μk)  (same for v, r);  k = Wk·xk, v = Wv·xv, r = Wr·xr
//   out = Wo·(σ(r) ⊙ wkv), wkv in the stable form (Backend.wkv4, kernels/rwkv4-wkv.ts; state aa, bb, pp):
//     ww = u + k;  q = max(pp, ww);  wkv = (e^(pp−q)·aa + e^(ww−q)·v) / (e^(pp−q)·bb + e^(ww−q))
//     ww = w + pp; q = max(ww, k);   aa ← e^(ww−q)·aa + e^(k−q)·v;  bb ← e^(ww−q)·bb + e^(k−q);  pp ← q
// with the decay w = −exp(time_decay) (stored so in memory) and the bonus u = time_first.
// Layer state: [ffn_x, att_x, aa, bb, pp], C each.
import type { DeviceMatrix, DeviceTensor } from '../kernels/backend.js';
import { ChannelMix, layerBlocks, MixBlock, mixShift, slot, type Pass } from './blocks.js';
import type { ModelConfig } from './config.js';
import { RwkvModel } from './model.js';
import type { Weights } from './weights.js';

class V4Block extends MixBlock {
  private readonly c: number;
  private readonly decay: DeviceTensor; // w = −exp(time_decay), 1 × C
  private readonly bonus: DeviceTensor; // u = time_first
  private readonly muK: DeviceTensor;
  private readonly muV: DeviceTensor;
  private readonly muR: DeviceTensor;
  private readonly key: DeviceMatrix;
  private readonly value: DeviceMatrix;
  private readonly receptance: DeviceMatrix;
  private readonly output: DeviceMatrix;
  protected readonly ffn: ChannelMix;

  constructor(w: Weights, layer: number, config: ModelConfig) {
    super();
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.decay = w.param(`${p}.time_decay`, c, 'n_embd');
    this.bonus = w.param(`${p}.time_first`, c, 'n_embd');
    this.muK = w.param(`${p}.time_mix_k`, c, 'n_embd');
    this.muV = w.param(`${p}.time_mix_v`, c, 'n_embd');
    this.muR = w.param(`${p}.time_mix_r`, c, 'n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, { muK: 'time_mix_k', muR: 'time_mix_r', style: 'v4' });
  }

  async timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void> {
    const { backend, work, layout } = pass;
    const rows = layout.rows;
    const c = this.c;
    const prev = work.get('v4.prev', rows, c);
    backend.tokenShift(layout, slot(pass, base, c), xa, prev);
    const [xk, xv, xr, k, v, r] = ['xk', 'xv', 'xr', 'k', 'v', 'r'].map((n) => work.get(`v4.${n}`, rows, c)) as DeviceTensor[] as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
    mixShift(pass, 'v4', xa, prev, this.muK, xk);
    mixShift(pass, 'v4', xa, prev, this.muV, xv);
    mixShift(pass, 'v4', xa, prev, this.muR, xr);
    await backend.matmul([
      { m: this.key, x: xk, y: k },
      { m: this.value, x: xv, y: v },
      { m: this.receptance, x: xr, y: r },
    ]);
    const rwkv = xk; // reuse: σ(r) ⊙ wkv
    backend.wkv4(layout, slot(pass, base, 2 * c), k, v, r, this.decay, this.bonus, rwkv);
    await backend.matmul([{ m: this.output, x: rwkv, y: out }]);
  }
}

export function buildV4(w: Weights, config: ModelConfig): RwkvModel {
  return new RwkvModel(config, w, layerBlocks(config, (l) => new V4Block(w, l, config)));
}
