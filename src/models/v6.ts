// RWKV v6 (Finch).
//
// Time mix (x: the ln1-normed input, prev: the previous token's; C = H·N; D, D2: the ranks of the
// token-shift and decay LoRAs):
//   xxx = x + (prev − x)·maa_x
//   m_c = W2_c·tanh(W1_c·xxx) for c = w, k, v, r, g (W1 is stored as 5D × C: five D-row chunks, that order)
//   x_c = x + (prev − x)·(maa_c + m_c)
//   r = Wr·xr;  k = Wk·xk;  v = Wv·xv;  g = silu(Wg·xg)
//   w = exp(−exp(time_decay + Wd2·tanh(Wd1·xw)))            per channel, different for every token
//   per head (u = time_faaaa): y_j = Σ_i r_i·(u_i·k_i·v_j + S_ij);  S_ij ← w_i·S_ij + k_i·v_j  (Backend.wkv5)
//   out = Wo·((GroupNorm_H(y; eps 64e-5)·ln_x.weight + ln_x.bias) ⊙ g)
// The channel mix is v4's with the v6 lerp (x + (prev − x)·μ).
// In memory every LoRA factor is an [out, in] matrix (rwkv.cpp's layout; official checkpoints are
// transposed at load, models/load.ts), kept in its stored encoding.
// Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][key i][value j].
import { ModelError } from '../errors.js';
import type { DeviceMatrix, DeviceTensor, MatmulJob } from '../kernels/backend.js';
import { shapeString } from '../tensor/tensor.js';
import { ChannelMix, headsOutput, layerBlocks, MixBlock, slot, type Pass } from './blocks.js';
import type { ModelConfig } from './config.js';
import { loadLayerNorm, RwkvModel, type LayerNormWeights } from './model.js';
import type { Weights } from './weights.js';

/** The token-shift interpolations the mix LoRA produces, in its chunk order. */
const MIX_CHUNKS = ['w', 'k', 'v', 'r', 'g'] as const;

/** The rank of a LoRA whose first factor `name` ([multiple·rank, C]) maps C to rank·`multiple` values. */
function loraRank(w: Weights, name: string, c: number, multiple: number): number {
  const t = w.tensor(name);
  if (t.shape.length !== 2 || t.shape[1] !== c || t.shape[0]! % multiple !== 0 || t.shape[0] === 0) {
    throw new ModelError('BAD_SHAPE', `has shape ${shapeString(t.shape)}, expected [${multiple}·rank, ${c}]`, { file: w.file, tensor: name });
  }
  return t.shape[0]! / multiple;
}

class V6Block extends MixBlock {
  private readonly c: number;
  private readonly nHead: number;
  private readonly rank: number;
  private readonly decayRank: number;
  private readonly maaX: DeviceTensor; // 1 × C
  private readonly maa: DeviceTensor[]; // 5 × (1 × C): maa_w, maa_k, maa_v, maa_r, maa_g
  private readonly maaW1: DeviceMatrix[]; // 5 × (D × C)
  private readonly maaW2: DeviceMatrix[]; // 5 × (C × D)
  private readonly decay: DeviceTensor; // time_decay (raw), 1 × C
  private readonly decayW1: DeviceMatrix; // D2 × C
  private readonly decayW2: DeviceMatrix; // C × D2
  private readonly bonus: DeviceTensor; // u = time_faaaa, 1 × C
  private readonly receptance: DeviceMatrix; // C × C
  private readonly key: DeviceMatrix;
  private readonly value: DeviceMatrix;
  private readonly gate: DeviceMatrix;
  private readonly output: DeviceMatrix;
  private readonly lnX: LayerNormWeights;
  protected readonly ffn: ChannelMix;

  constructor(w: Weights, layer: number, config: ModelConfig) {
    super();
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    this.maaX = w.param(`${p}.time_maa_x`, c, 'n_embd');
    this.maa = MIX_CHUNKS.map((n) => w.param(`${p}.time_maa_${n}`, c, 'n_embd'));
    const d = loraRank(w, `${p}.time_maa_w1`, c, MIX_CHUNKS.length);
    this.rank = d;
    const k5 = MIX_CHUNKS.length;
    this.maaW1 = MIX_CHUNKS.map((_, i) => w.matrixRows(`${p}.time_maa_w1`, k5 * d, c, i * d, d, '5·rank × n_embd'));
    this.maaW2 = MIX_CHUNKS.map((_, i) => w.matrixRows(`${p}.time_maa_w2`, k5 * c, d, i * c, c, '5 × n_embd × rank'));
    const d2 = loraRank(w, `${p}.time_decay_w1`, c, 1);
    this.decayRank = d2;
    this.decay = w.param(`${p}.time_decay`, c, 'n_embd');
    this.decayW1 = w.matrix(`${p}.time_decay_w1`, d2, c, 'rank × n_embd');
    this.decayW2 = w.matrix(`${p}.time_decay_w2`, c, d2, 'n_embd × rank');
    this.bonus = w.param(`${p}.time_faaaa`, c, 'n_head × head_size');
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.gate = w.matrix(`${p}.gate.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnX = loadLayerNorm(w, `${p}.ln_x`, c);
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, { muK: 'time_maa_k', muR: 'time_maa_r', style: 'v6' });
  }

  async timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void> {
    const { backend, work, layout } = pass;
    const rows = layout.rows;
    const c = this.c;
    const get = (n: string, cols = c): DeviceTensor => work.get(`v6.${n}`, rows, cols);
    const prev = get('prev');
    backend.tokenShift(layout, slot(pass, base, c), xa, prev);
    const xxx = get('xxx');
    backend.lerp(xa, prev, this.maaX, xxx);

    // Data-dependent token shift: x_c = x + (prev − x)·(maa_c + W2_c·tanh(W1_c·xxx)).
    const low = MIX_CHUNKS.map((n) => get(`low.${n}`, this.rank));
    await backend.matmul(this.maaW1.map((m, i): MatmulJob => ({ m, x: xxx, y: low[i]!, then: 'tanh' })));
    const xs = MIX_CHUNKS.map((n) => get(`x${n}`));
    await backend.matmul(this.maaW2.map((m, i): MatmulJob => ({ m, x: low[i]!, y: xs[i]! })));
    xs.forEach((x, i) => {
      backend.add(x, this.maa[i]!, x);
      backend.lerp(xa, prev, x, x);
    });
    const [xw, xk, xv, xr, xg] = xs as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];

    // r, k, v, g and the decay LoRA's first half; then w = exp(−exp(time_decay + Wd2·tanh(Wd1·xw))).
    const [r, k, v, g] = ['r', 'k', 'v', 'g'].map((n) => get(n)) as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
    const dd = get('dd', this.decayRank);
    await backend.matmul([
      { m: this.receptance, x: xr, y: r },
      { m: this.key, x: xk, y: k },
      { m: this.value, x: xv, y: v },
      { m: this.gate, x: xg, y: g, then: 'silu' },
      { m: this.decayW1, x: xw, y: dd, then: 'tanh' },
    ]);
    const decay = xw; // reuse: xw is consumed
    await backend.matmul([{ m: this.decayW2, x: dd, y: decay }]);
    backend.add(decay, this.decay, decay);
    backend.unary(decay, 'exp', decay);
    backend.unary(decay, 'exp', decay, -1);

    const y = xk; // reuse
    backend.wkv5(layout, slot(pass, base, 2 * c), this.nHead, r, k, v, decay, this.bonus, y);
    await headsOutput(pass, this.nHead, this.lnX, y, g, this.output, out);
  }
}

export function buildV6(w: Weights, config: ModelConfig): RwkvModel {
  return new RwkvModel(config, w, layerBlocks(config, (l) => new V6Block(w, l, config)));
}
