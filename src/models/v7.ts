// RWKV v7 (Goose).
//
// Time mix, per token (x = ln1-normed input, prev = the previous token's x, C = H·N):
//   x? = x + (prev − x)·μ?                     for ? in r, w, k, v, a, g
//   r = Wr·xr;  k = Wk·xk;  v = Wv·xv
//   w = exp(−e^(−0.5)·σ(w0 + W2·tanh(W1·xw)))   decay, in (e^(−e^−0.5), 1)
//   a = σ(a0 + A2·A1·xa)                         in-context learning rate
//   g = G2·σ(G1·xg)                              output gate (no σ after G2)
//   kk = L2-normalised per head (k ⊙ k_k)        taken before k is rescaled
//   k ← k ⊙ (1 + (a − 1) ⊙ k_a)
//   layer 0: v_first = v;  later layers: v ← v + (v_first − v) ⊙ σ(v0 + V2·V1·xv)
//   per head, S (value × key):  S ← S·diag(w) − (S·kk)(kk ⊙ a)ᵀ + v·kᵀ;  y = S·r   (Backend.wkv7)
//   y = GroupNorm_H(y) (eps 64e-5) + (Σ_i r_i·k_i·r_k_i)·v per head;  out = Wo·(y ⊙ g)
// Channel mix: Wv·relu(Wk·(x + (prev − x)·x_k))², no receptance.
// In memory (models/load.ts): the six μ as rwkv.cpp concatenates them (x_rwkvag, [6, 1, C] in the order
// r, w, k, v, a, g) and every LoRA factor as an [out, in] matrix (W1 [D, C], W2 [C, D]).
// Layer state: [ffn_x (C), att_x (C), S (H × N × N)], S[h][value i][key j] — the transpose of v5/v6's.
import { ModelError } from '../errors.js';
import type { DeviceMatrix, DeviceTensor, MatmulJob } from '../kernels/backend.js';
import { shapeString } from '../tensor/tensor.js';
import { ChannelMix, headsOutput, layerBlocks, MixBlock, slot, type Pass } from './blocks.js';
import type { ModelConfig } from './config.js';
import { loadLayerNorm, RwkvModel, type LayerNormWeights } from './model.js';
import type { Weights } from './weights.js';

const L2_EPS = 1e-12;
/** w = exp(DECAY_SCALE·σ(·)): the decay's exponent lies in (−e^(−0.5), 0). */
const DECAY_SCALE = -Math.exp(-0.5);
const MIXES = ['r', 'w', 'k', 'v', 'a', 'g'] as const;

/** A LoRA pair: `down` [D, C] then `up` [C, D], both [out, in]. */
interface Lora {
  readonly down: DeviceMatrix;
  readonly up: DeviceMatrix;
}

/** `${p}.${tag}1` / `${p}.${tag}2`, the rank D inferred from the first. */
function loadLora(w: Weights, p: string, tag: string, c: number): Lora {
  const downName = `${p}.${tag}1`;
  const down = w.tensor(downName);
  if (down.shape.length !== 2 || down.shape[1] !== c) {
    throw new ModelError('BAD_SHAPE', `has shape ${shapeString(down.shape)}, expected [rank, ${c}] (LoRA factor)`, { file: w.file, tensor: downName });
  }
  const d = down.shape[0]!;
  return { down: w.matrix(downName, d, c, 'LoRA factor'), up: w.matrix(`${p}.${tag}2`, c, d, 'LoRA factor') };
}

class V7Block extends MixBlock {
  private readonly c: number;
  private readonly nHead: number;
  private readonly first: boolean;
  private readonly mu: DeviceTensor[]; // 6 × (1 × C), MIXES order
  private readonly w0: DeviceTensor; // 1 × C each
  private readonly a0: DeviceTensor;
  private readonly v0: DeviceTensor | undefined; // absent in layer 0
  private readonly kK: DeviceTensor;
  private readonly kA: DeviceTensor;
  private readonly rK: DeviceTensor;
  private readonly ones: DeviceTensor;
  private readonly wLora: Lora;
  private readonly aLora: Lora;
  private readonly vLora: Lora | undefined; // absent in layer 0
  private readonly gLora: Lora;
  private readonly receptance: DeviceMatrix; // C × C
  private readonly key: DeviceMatrix;
  private readonly value: DeviceMatrix;
  private readonly output: DeviceMatrix;
  private readonly lnX: LayerNormWeights;
  protected readonly ffn: ChannelMix;

  constructor(w: Weights, layer: number, config: ModelConfig) {
    super();
    const c = config.nEmbd;
    const p = `blocks.${layer}.att`;
    this.c = c;
    this.nHead = config.nHead;
    this.first = layer === 0;
    const mu = w.vector(`${p}.x_rwkvag`, 6 * c, '6 × n_embd: x_r, x_w, x_k, x_v, x_a, x_g');
    this.mu = MIXES.map((_, i) => w.upload(mu.slice(i * c, (i + 1) * c)));
    this.w0 = w.param(`${p}.w0`, c, 'n_embd');
    this.a0 = w.param(`${p}.a0`, c, 'n_embd');
    this.kK = w.param(`${p}.k_k`, c, 'n_embd');
    this.kA = w.param(`${p}.k_a`, c, 'n_embd');
    this.rK = w.param(`${p}.r_k`, c, 'n_head × head_size');
    this.ones = w.upload(new Float32Array(c).fill(1));
    this.wLora = loadLora(w, p, 'w', c);
    this.aLora = loadLora(w, p, 'a', c);
    this.gLora = loadLora(w, p, 'g', c);
    this.v0 = this.first ? undefined : w.param(`${p}.v0`, c, 'n_embd');
    this.vLora = this.first ? undefined : loadLora(w, p, 'v', c);
    this.receptance = w.matrix(`${p}.receptance.weight`, c, c, 'n_embd × n_embd');
    this.key = w.matrix(`${p}.key.weight`, c, c, 'n_embd × n_embd');
    this.value = w.matrix(`${p}.value.weight`, c, c, 'n_embd × n_embd');
    this.output = w.matrix(`${p}.output.weight`, c, c, 'n_embd × n_embd');
    this.lnX = loadLayerNorm(w, `${p}.ln_x`, c);
    this.ffn = new ChannelMix(w, `blocks.${layer}.ffn`, c, config.ffnSize, { muK: 'x_k', muR: undefined, style: 'v6' });
  }

  async timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void> {
    const { backend, work, layout } = pass;
    const rows = layout.rows;
    const c = this.c;
    const get = (n: string, cols = c): DeviceTensor => work.get(`v7.${n}`, rows, cols);
    const prev = get('prev');
    backend.tokenShift(layout, slot(pass, base, c), xa, prev);
    const [xr, xw, xk, xv, xA, xg] = MIXES.map((n, i) => {
      const x = get(`x${n}`);
      backend.lerp(xa, prev, this.mu[i]!, x);
      return x;
    }) as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];

    // Layer 0's v is kept for every later layer of this pass (its own tensor, not reused).
    const v = this.first ? work.get('v7.vFirst', rows, c) : get('v');
    const [r, k, upW, upA, g, upV] = ['r', 'k', 'upW', 'upA', 'g', 'upV'].map((n) => get(n)) as DeviceTensor[];
    const lowW = get('lowW', this.wLora.down.rows);
    const lowA = get('lowA', this.aLora.down.rows);
    const lowG = get('lowG', this.gLora.down.rows);
    const down: MatmulJob[] = [
      { m: this.receptance, x: xr, y: r! },
      { m: this.key, x: xk, y: k! },
      { m: this.value, x: xv, y: v },
      { m: this.wLora.down, x: xw, y: lowW, then: 'tanh' },
      { m: this.aLora.down, x: xA, y: lowA },
      { m: this.gLora.down, x: xg, y: lowG, then: 'sigmoid' },
    ];
    const up: MatmulJob[] = [
      { m: this.wLora.up, x: lowW, y: upW! },
      { m: this.aLora.up, x: lowA, y: upA! },
      { m: this.gLora.up, x: lowG, y: g! },
    ];
    if (this.vLora !== undefined) {
      const lowV = get('lowV', this.vLora.down.rows);
      down.push({ m: this.vLora.down, x: xv, y: lowV });
      up.push({ m: this.vLora.up, x: lowV, y: upV! });
    }
    await backend.matmul(down);
    await backend.matmul(up);

    // Decay w = exp(−e^(−0.5)·σ(w0 + ·)); in-context rate a = σ(a0 + ·).
    const wDecay = upW!;
    backend.add(wDecay, this.w0, wDecay);
    backend.unary(wDecay, 'sigmoid', wDecay);
    backend.unary(wDecay, 'exp', wDecay, DECAY_SCALE);
    const a = upA!;
    backend.add(a, this.a0, a);
    backend.unary(a, 'sigmoid', a);

    // Value residual.
    if (this.first) {
      pass.vFirst = v;
    } else {
      const mix = upV!;
      backend.add(mix, this.v0!, mix);
      backend.unary(mix, 'sigmoid', mix);
      backend.lerp(v, pass.vFirst!, mix, v);
    }

    // kk from the unscaled k, then k ← k ⊙ (1 + (a − 1) ⊙ k_a) = k ⊙ lerp(1, a, k_a).
    const kk = get('kk');
    backend.mul(k!, this.kK, kk);
    backend.l2NormHeads(kk, this.nHead, L2_EPS, kk);
    const scale = xk; // reuse: xk is consumed
    backend.lerp(this.ones, a, this.kA, scale);
    backend.mul(k!, scale, k!);

    const y = xr; // reuse
    backend.wkv7(layout, slot(pass, base, 2 * c), this.nHead, r!, wDecay, k!, v, kk, a, y);
    await headsOutput(pass, this.nHead, this.lnX, y, g!, this.output, out, () => backend.wkv7Bonus(this.nHead, r!, k!, this.rK, v, y));
  }
}

export function buildV7(w: Weights, config: ModelConfig): RwkvModel {
  return new RwkvModel(config, w, layerBlocks(config, (l) => new V7Block(w, l, config)));
}
