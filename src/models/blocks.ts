// What every version's blocks share: the pass they run in, named work tensors, token-shift interpolation,
// and the channel mix (the FFN). Every tensor below is rows × C unless noted, rows = the batch's tokens.
import type { Backend, DeviceMatrix, DeviceTensor, RowLayout, StateSlot } from '../kernels/backend.js';
import type { ModelConfig } from './config.js';
import type { LayerNormWeights } from './model.js';
import type { Weights } from './weights.js';

/** LayerNorm eps of ln0, ln1, ln2 and ln_out (and of the training code). */
export const LN_EPS = 1e-5;

/**
 * ln_x's eps for v5, v6 and v7. The training code normalises x / head_size_divisor (8) with eps 1e-5, the
 * same as normalising x with eps 1e-5·8² — ChatRWKV's 64e-5. (rwkv.cpp uses 1e-5, hence its logits.)
 */
export const LN_X_EPS = 64e-5;

/**
 * Work tensors by name, reused from pass to pass. Each is allocated for the most rows a pass has asked of
 * it, and a pass with fewer rows gets a view of its first rows: passes of changing shape (sequences
 * joining and leaving, prompt slices) allocate nothing — a fresh tensor costs zeroing and page faults
 * on the host's thread. Names must be distinct among tensors in use at once; contents are garbage.
 */
export class Workspace {
  private readonly tensors = new Map<string, { base: DeviceTensor; views: Map<number, DeviceTensor> }>();

  constructor(private readonly backend: Backend) {}

  get(name: string, rows: number, cols: number): DeviceTensor {
    let entry = this.tensors.get(name);
    if (entry === undefined || entry.base.cols !== cols || entry.base.rows < rows) {
      if (entry !== undefined) this.backend.free(entry.base);
      entry = { base: this.backend.tensor(rows, cols), views: new Map() };
      this.tensors.set(name, entry);
    }
    if (rows === entry.base.rows) return entry.base;
    let view = entry.views.get(rows);
    if (view === undefined) {
      view = this.backend.view(entry.base, rows);
      entry.views.set(rows, view);
    }
    return view;
  }

  /** Frees every tensor. */
  clear(): void {
    for (const { base } of this.tensors.values()) this.backend.free(base);
    this.tensors.clear();
  }
}

/** One forward pass over a batch: what every block of every layer needs. */
export interface Pass {
  readonly backend: Backend;
  readonly layout: RowLayout;
  /** B × (the model's state size): one row per sequence. */
  readonly state: DeviceTensor;
  readonly work: Workspace;
  /** v7: layer 0's value vectors, which every later layer mixes in. */
  vFirst?: DeviceTensor;
}

/** A layer: both halves read ln-normed rows and write their output (added to the residual by the model). */
export interface Block {
  /** `base`: the layer's first float in a state row (models/state.ts: ffn_x at base, att_x at base + C). */
  timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void>;
  channelMix(pass: Pass, base: number, xf: DeviceTensor, out: DeviceTensor): Promise<void>;
}

/** A version's layer: its own time mix, and the channel mix (`ChannelMix`) all versions share. */
export abstract class MixBlock implements Block {
  protected abstract readonly ffn: ChannelMix;

  abstract timeMix(pass: Pass, base: number, xa: DeviceTensor, out: DeviceTensor): Promise<void>;

  channelMix(pass: Pass, base: number, xf: DeviceTensor, out: DeviceTensor): Promise<void> {
    return this.ffn.run(pass, base, xf, out);
  }
}

/** One block per layer, `make(layer)` each. */
export function layerBlocks(config: ModelConfig, make: (layer: number) => Block): Block[] {
  return Array.from({ length: config.nLayer }, (_, layer) => make(layer));
}

/** The slot of a layer's state row that starts `offset` floats after the layer's base. */
export function slot(pass: Pass, base: number, offset: number): StateSlot {
  return { state: pass.state, offset: base + offset };
}

/**
 * Token-shift interpolation in the convention of each version, on the backend's one lerp
 * (kernels/mix.ts: out = a + (b − a)·μ): v4/v5 `x·μ + prev·(1−μ)` is lerp(prev, x, μ) (mixV4, as the
 * trainer mixes); v6/v7 `x + (prev − x)·μ` is lerp(x, prev, μ).
 */
export type ShiftStyle = 'v4' | 'v6';

export function mixShift(pass: Pass, style: ShiftStyle, x: DeviceTensor, prev: DeviceTensor, mu: DeviceTensor, out: DeviceTensor): void {
  if (style === 'v4') pass.backend.lerp(prev, x, mu, out);
  else pass.backend.lerp(x, prev, mu, out);
}

/**
 * The end of v5/v6/v7's time mix: y ← GroupNorm over `heads` (ln_x, eps LN_X_EPS), then `afterNorm` (v7's
 * bonus), y ← y ⊙ g (no gate: v5.1), out = Wo·y. y, g, out: rows × C; y is overwritten.
 */
export async function headsOutput(
  pass: Pass,
  heads: number,
  lnX: LayerNormWeights,
  y: DeviceTensor,
  g: DeviceTensor | undefined,
  output: DeviceMatrix,
  out: DeviceTensor,
  afterNorm?: () => void,
): Promise<void> {
  const { backend } = pass;
  backend.norm(y, lnX.weight, lnX.bias, y, heads, LN_X_EPS);
  afterNorm?.();
  if (g !== undefined) backend.mul(y, g, y);
  await backend.matmul([{ m: output, x: y, y: out }]);
}

/**
 * Channel mix of v4, v5 and v6: σ(Wr·xr) ⊙ Wv·relu(Wk·xk)². v7 drops the receptance (`muR` undefined).
 * Layer state: ffn_x at the layer's base.
 */
export class ChannelMix {
  private readonly key: DeviceMatrix; // F × C
  private readonly value: DeviceMatrix; // C × F
  private readonly receptance: DeviceMatrix | undefined; // C × C
  private readonly muK: DeviceTensor; // 1 × C
  private readonly muR: DeviceTensor | undefined;
  private readonly c: number;
  private readonly f: number;

  constructor(
    w: Weights,
    prefix: string,
    c: number,
    f: number,
    private readonly names: { muK: string; muR: string | undefined; style: ShiftStyle },
  ) {
    this.c = c;
    this.f = f;
    this.key = w.matrix(`${prefix}.key.weight`, f, c, 'ffn size × n_embd');
    this.value = w.matrix(`${prefix}.value.weight`, c, f, 'n_embd × ffn size');
    this.muK = w.param(`${prefix}.${names.muK}`, c, 'n_embd');
    this.receptance = names.muR !== undefined ? w.matrix(`${prefix}.receptance.weight`, c, c, 'n_embd × n_embd') : undefined;
    this.muR = names.muR !== undefined ? w.param(`${prefix}.${names.muR}`, c, 'n_embd') : undefined;
  }

  async run(pass: Pass, base: number, xf: DeviceTensor, out: DeviceTensor): Promise<void> {
    const { backend, work, layout } = pass;
    const rows = layout.rows;
    const prev = work.get('ffn.prev', rows, this.c);
    backend.tokenShift(layout, slot(pass, base, 0), xf, prev);
    const xk = work.get('ffn.xk', rows, this.c);
    mixShift(pass, this.names.style, xf, prev, this.muK, xk);
    const k = work.get('ffn.k', rows, this.f);
    if (this.receptance === undefined) {
      await backend.matmul([{ m: this.key, x: xk, y: k, then: 'relu2' }]);
      await backend.matmul([{ m: this.value, x: k, y: out }]);
      return;
    }
    const xr = work.get('ffn.xr', rows, this.c);
    mixShift(pass, this.names.style, xf, prev, this.muR!, xr);
    const r = work.get('ffn.r', rows, this.c);
    await backend.matmul([
      { m: this.key, x: xk, y: k, then: 'relu2' },
      { m: this.receptance, x: xr, y: r, then: 'sigmoid' },
    ]);
    await backend.matmul([{ m: this.value, x: k, y: out }]);
    backend.mul(out, r, out);
  }
}
