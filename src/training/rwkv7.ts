// The RWKV-7 training graph: forward in parallel mode over a batch of B sequences of T tokens (N = B·T
// rows), each from an empty state, keeping what the backward needs; then the backward, op by op in
// reverse. Same public surface as Rwkv4Train (model.ts); parameters carry RWKV-LM's official names and
// shapes in its state_dict order, so a checkpoint is the parameter list as it is and `loadModel` reads it.
//
//   x₀ = LN0(emb[ids])
//   per layer l (C = H·hs):
//     xa = LN1(x);  x_? = xa + (prev − xa)·μ?  for ? in r w k v a g   (prev = xa of the token before)
//     r = x_r·Wrᵀ;  k₀ = x_k·Wkᵀ;  v = x_v·Wvᵀ
//     w = exp(−e^(−0.5)·σ(w0 + tanh(x_w·W1)·W2));  a = σ(a0 + x_a·A1·A2);  g = σ(x_g·G1)·G2
//     l = 0: v_first = v;  l > 0: v ← v + (v_first − v)·σ(v0 + x_v·V1·V2)
//     kk = L2norm_head(k₀ ⊙ k_k);  k = k₀ ⊙ (1 + (a − 1) ⊙ k_a)
//     y = WKV7(r, w, k, v, −kk, kk ⊙ a);  y = GroupNorm_H(y) + (Σ_head r·k·r_k)·v;  x += (y ⊙ g)·Woᵀ
//     xf = LN2(x);  x += relu((xf + (prev − xf)·μk')·Wk'ᵀ)²·Wv'ᵀ
//   logits = LNout(x)·Headᵀ;  loss = mean cross-entropy
//
// The LoRA factors are stored as RWKV-LM stores them, [in, out] (x·W1), so their products run on the Gemm
// with its roles swapped (see `lora*` below). Layer 0 has no v0/v1/v2 (it makes v_first; rwkv.cpp's and
// the converted fixtures' layer 0 has none either). The six token-shift mixes are recomputed in the
// backward (O(N·C) each), never stored. The WKV keeps its state every 16 tokens (B·T/16·H·hs² values per
// layer) and its backward re-runs each 16-token chunk from there (ops-v7.ts).
// State tuning (state-tune.ts): `enableInitialState()` adds a trainable initial WKV state per layer that
// every sequence starts from (token shifts stay zero), and `{ frozen: true }` skips the weights' gradients.
// LNout, the head and the loss (and the parameters, buffers and batch checks) are the shared TrainGraph's
// (graph.ts).
import { ArgumentError, ModelError } from '../errors.js';
import { openCheckpoint } from '../formats/open.js';
import { toEncoding } from '../formats/transform.js';
import { decodeF32 } from '../formats/values.js';
import { detectVersion } from '../formats/version.js';
import { LN_X_EPS } from '../models/blocks.js';
import type { ModelShape } from './architecture.js';
import type { Gemm } from './gemm.js';
import { TrainGraph, type Param } from './graph.js';
import {
  addForward,
  embeddingBackward,
  embeddingForward,
  type Vec,
} from './ops.js';
import {
  accumulate,
  addRowBackward,
  addRowForward,
  bonusBackward,
  bonusForward,
  decayBackwardInPlace,
  decayForward,
  groupNormBackward,
  groupNormForward,
  keyScaleBackward,
  keyScaleForward,
  kkBackward,
  kkForward,
  multiply,
  multiplyBackward,
  sigmoidBackwardInPlace,
  sigmoidInPlace,
  tanhBackwardInPlace,
  tanhInPlace,
  valueResidualBackward,
  valueResidualInPlace,
  wkv7Backward,
  wkv7CheckpointLength,
  wkv7Forward,
} from './ops-v7.js';

export interface Rwkv7Shape extends ModelShape {
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nVocab: number;
  /** Channels per head (RWKV-LM: 64); nEmbd must be a multiple. */
  readonly headSize: number;
  /** The channel mix's hidden size (RWKV-7 releases: 4·nEmbd). */
  readonly ffnSize: number;
  /** LoRA ranks of the decay (w1/w2), the in-context rate (a1/a2), the value residual (v1/v2), the gate (g1/g2). */
  readonly wLora: number;
  readonly aLora: number;
  readonly vLora: number;
  readonly gLora: number;
}

/** RWKV-LM's suggested LoRA ranks for a width: max(32, round(f·√C / 32)·32), f = 2.5, 2.5, 1.7, 5. */
export function rwkv7LoraRanks(nEmbd: number): Pick<Rwkv7Shape, 'wLora' | 'aLora' | 'vLora' | 'gLora'> {
  const r = (f: number): number => Math.max(32, Math.round((f * Math.sqrt(nEmbd)) / 32) * 32);
  return { wLora: r(2.5), aLora: r(2.5), vLora: r(1.7), gLora: r(5) };
}

/**
 * A shape with RWKV-LM's defaults: head size 64 (or, when nEmbd is not a multiple of 64, its largest
 * divisor below 64), ffn 4·C, the suggested LoRA ranks.
 */
export function defaultRwkv7Shape(s: { nLayer: number; nEmbd: number; nVocab: number; headSize?: number; ffnSize?: number }): Rwkv7Shape {
  let headSize = s.headSize ?? Math.min(64, s.nEmbd);
  if (s.headSize === undefined) while (s.nEmbd % headSize !== 0) headSize--;
  return { nLayer: s.nLayer, nEmbd: s.nEmbd, nVocab: s.nVocab, headSize, ffnSize: s.ffnSize ?? 4 * s.nEmbd, ...rwkv7LoraRanks(s.nEmbd) };
}

/** One line, e.g. '4 layers × 256, 4 heads of 64 (ffn 1024, LoRA w/a/v/g 32/32/32/32, vocab 256)'. */
export function describeRwkv7Shape(s: Rwkv7Shape): string {
  return `${s.nLayer} layers × ${s.nEmbd}, ${s.nEmbd / s.headSize} heads of ${s.headSize} (ffn ${s.ffnSize}, LoRA w/a/v/g ${s.wLora}/${s.aLora}/${s.vLora}/${s.gLora}, vocab ${s.nVocab})`;
}

/** The official parameter list of an RWKV-7 model, in RWKV-LM's state_dict order. */
export function rwkv7ParamShapes(s: Rwkv7Shape): { name: string; shape: number[] }[] {
  const { nLayer: L, nEmbd: C, nVocab: V, ffnSize: F, headSize: N } = s;
  const H = C / N;
  const out: { name: string; shape: number[] }[] = [{ name: 'emb.weight', shape: [V, C] }];
  const vec = (name: string): void => void out.push({ name, shape: [1, 1, C] });
  for (let l = 0; l < L; l++) {
    const p = `blocks.${l}`;
    out.push({ name: `${p}.ln1.weight`, shape: [C] }, { name: `${p}.ln1.bias`, shape: [C] });
    out.push({ name: `${p}.ln2.weight`, shape: [C] }, { name: `${p}.ln2.bias`, shape: [C] });
    if (l === 0) out.push({ name: `${p}.ln0.weight`, shape: [C] }, { name: `${p}.ln0.bias`, shape: [C] });
    for (const m of ['r', 'w', 'k', 'v', 'a', 'g']) vec(`${p}.att.x_${m}`);
    const lora = (tag: string, d: number, bias: boolean): void => {
      out.push({ name: `${p}.att.${tag}1`, shape: [C, d] }, { name: `${p}.att.${tag}2`, shape: [d, C] });
      if (bias) vec(`${p}.att.${tag}0`);
    };
    lora('w', s.wLora, true);
    lora('a', s.aLora, true);
    if (l > 0) lora('v', s.vLora, true);
    lora('g', s.gLora, false);
    vec(`${p}.att.k_k`);
    vec(`${p}.att.k_a`);
    out.push({ name: `${p}.att.r_k`, shape: [H, N] });
    for (const n of ['receptance', 'key', 'value', 'output']) out.push({ name: `${p}.att.${n}.weight`, shape: [C, C] });
    out.push({ name: `${p}.att.ln_x.weight`, shape: [C] }, { name: `${p}.att.ln_x.bias`, shape: [C] });
    vec(`${p}.ffn.x_k`);
    out.push({ name: `${p}.ffn.key.weight`, shape: [F, C] });
    out.push({ name: `${p}.ffn.value.weight`, shape: [C, F] });
  }
  out.push({ name: 'ln_out.weight', shape: [C] }, { name: 'ln_out.bias', shape: [C] }, { name: 'head.weight', shape: [V, C] });
  return out;
}

/**
 * The shape of a saved RWKV-7 model from its tensors under official names and shapes (a checkpoint
 * this trainer wrote, or any official one read through formats/transform.ts `toEncoding(…, 'official')`).
 * Checks that every tensor `rwkv7ParamShapes` lists is there with its element count.
 */
export function rwkv7ShapeFromTensors(tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>, file?: string): Rwkv7Shape {
  const need = (name: string, dims: number): readonly number[] => {
    const t = tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    const s = t.shape.filter((d, i) => !(d === 1 && i < t.shape.length - dims)); // drop leading 1s
    if (s.length !== dims) throw new ModelError('BAD_SHAPE', `has shape [${t.shape.join(', ')}], expected ${dims} dimensions`, { file, tensor: name });
    return s;
  };
  const [nVocab, nEmbd] = need('emb.weight', 2) as [number, number];
  let nLayer = 0;
  while (tensors.has(`blocks.${nLayer}.ln1.weight`)) nLayer++;
  if (nLayer === 0) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: 'blocks.0.ln1.weight' });
  const ffnSize = need('blocks.0.ffn.key.weight', 2)[0]!;
  const rk = tensors.get('blocks.0.att.r_k');
  if (rk === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: 'blocks.0.att.r_k' });
  const nHead = rk.shape.length >= 2 ? rk.shape[rk.shape.length - 2]! : 1;
  const rank = (name: string): number => need(name, 2)[1]!;
  const shape: Rwkv7Shape = {
    nLayer,
    nEmbd,
    nVocab,
    headSize: nEmbd / nHead,
    ffnSize,
    wLora: rank('blocks.0.att.w1'),
    aLora: rank('blocks.0.att.a1'),
    vLora: nLayer > 1 ? rank('blocks.1.att.v1') : rwkv7LoraRanks(nEmbd).vLora,
    gLora: rank('blocks.0.att.g1'),
  };
  if (!Number.isInteger(shape.headSize)) throw new ModelError('BAD_SHAPE', `does not split n_embd ${nEmbd} into heads`, { file, tensor: 'blocks.0.att.r_k' });
  for (const { name, shape: s } of rwkv7ParamShapes(shape)) {
    const t = tensors.get(name);
    if (t === undefined) throw new ModelError('MISSING_TENSOR', 'is missing from the model', { file, tensor: name });
    const want = s.reduce((a, d) => a * d, 1);
    const got = t.shape.reduce((a, d) => a * d, 1);
    if (want !== got) throw new ModelError('BAD_SHAPE', `has shape [${t.shape.join(', ')}], expected [${s.join(', ')}]`, { file, tensor: name });
  }
  return shape;
}

/**
 * The weights of an existing RWKV-7 checkpoint of any supported format (rwkv.cpp .bin, GGUF, .pth,
 * safetensors; any dtype, dequantized to f32), under official names and encodings, with the shape they
 * imply. Tensors beyond the parameter list (e.g. an RWKV-LM checkpoint's unused layer-0 v0/v1/v2) are
 * left out.
 */
export async function readRwkv7Weights(file: string): Promise<{ shape: Rwkv7Shape; values: Map<string, Float32Array> }> {
  const source = toEncoding(await openCheckpoint(file), 'official');
  const version = detectVersion(source);
  if (version !== '7') throw new ArgumentError(`${file} is an RWKV v${version} model, not RWKV-7`);
  const shape = rwkv7ShapeFromTensors(source.tensors, file);
  const values = new Map<string, Float32Array>();
  for (const { name } of rwkv7ParamShapes(shape)) values.set(name, decodeF32(source.tensors.get(name)!));
  return { shape, values };
}

/**
 * An RWKV-7 checkpoint of any supported format loaded straight into a training graph: each tensor decoded
 * and copied into its parameter in turn (no second full copy of the weights, unlike readRwkv7Weights).
 */
export async function loadRwkv7Train(file: string, gemm: Gemm, options: Rwkv7TrainOptions = {}): Promise<Rwkv7Train> {
  const source = toEncoding(await openCheckpoint(file), 'official');
  const version = detectVersion(source);
  if (version !== '7') throw new ArgumentError(`${file} is an RWKV v${version} model, not RWKV-7`);
  const model = new Rwkv7Train(rwkv7ShapeFromTensors(source.tensors, file), gemm, options);
  for (const p of model.params) p.data.set(decodeF32(source.tensors.get(p.name)!));
  return model;
}

interface LayerParams {
  ln1w: Vec;
  ln1b: Vec;
  ln2w: Vec;
  ln2b: Vec;
  mu: Vec[]; // x_r, x_w, x_k, x_v, x_a, x_g (C each)
  w1: Vec; // C × Dw  ([in, out])
  w2: Vec; // Dw × C
  w0: Vec; // C
  a1: Vec;
  a2: Vec;
  a0: Vec;
  v1: Vec | undefined; // layers > 0
  v2: Vec | undefined;
  v0: Vec | undefined;
  g1: Vec;
  g2: Vec;
  kK: Vec;
  kA: Vec;
  rK: Vec; // H × hs
  wr: Vec; // C × C ([out, in])
  wk: Vec;
  wv: Vec;
  wo: Vec;
  lnxw: Vec;
  lnxb: Vec;
  fMuK: Vec;
  fwk: Vec; // F × C
  fwv: Vec; // C × F
}

export interface Rwkv7TrainOptions {
  /**
   * Logits of more than this many values (rows × vocab) are not kept for the backward but computed in
   * row chunks of a quarter of it, and recomputed there (default 2^24: 64 MiB in f32).
   */
  logitBudget?: number;
  /**
   * Frozen weights (state tuning): `backward` computes no weight gradient — the matrices' `grad` are
   * empty arrays, the weight-gradient products and everything below layer 0's WKV are skipped — only the
   * initial state's gradient (`enableInitialState`). Default false.
   */
  frozen?: boolean;
}

/** RWKV-PEFT's name of layer l's tuned initial WKV state, [H, N, N] = S[h][value i][key j]. */
export function timeStateName(l: number): string {
  return `blocks.${l}.att.time_state`;
}

const MIX_R = 0;
const MIX_W = 1;
const MIX_K = 2;
const MIX_V = 3;
const MIX_A = 4;
const MIX_G = 5;

export class Rwkv7Train extends TrainGraph<Rwkv7Shape> {
  private readonly w: LayerParams[] = [];
  private readonly dw: LayerParams[] = [];
  private readonly nHead: number;
  /** Per layer, the trainable initial WKV state (H × N × N), once `enableInitialState` made it. */
  private states: Param[] | undefined;

  constructor(shape: Rwkv7Shape, gemm: Gemm, options: Rwkv7TrainOptions = {}) {
    const frozen = options.frozen === true;
    for (const [k, v] of Object.entries(shape)) {
      if (!Number.isInteger(v) || (v as number) < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${String(v)}`);
    }
    if (shape.nEmbd % shape.headSize !== 0) throw new ArgumentError(`nEmbd ${shape.nEmbd} is not a multiple of headSize ${shape.headSize}`);
    super(shape, gemm, {
      params: rwkv7ParamShapes(shape),
      normWeight: 'ln_out.weight',
      normBias: 'ln_out.bias',
      head: 'head.weight',
      logitBudget: options.logitBudget,
      frozen,
      // Frozen: only the matrices' gradients come from products that are skipped; the vectors' come out
      // of the element-wise backwards with their inputs' gradients, so they keep (unused) arrays.
      gradLength: (name, size) => (frozen && isMatrix(name) ? 0 : size),
      // RWKV-LM decays the `.weight` matrices only (not the LoRA factors nor r_k).
      decay: (name, s) => name.endsWith('.weight') && s.filter((d) => d > 1).length >= 2,
    });
    this.nHead = shape.nEmbd / shape.headSize;
    for (let l = 0; l < shape.nLayer; l++) {
      this.w.push(this.layer(l, 'data'));
      this.dw.push(this.layer(l, 'grad'));
    }
  }

  /**
   * Makes (once) and returns the trainable initial WKV state of every layer: Params named
   * `blocks.{l}.att.time_state`, shape [H, N, N] (S[h][value i][key j], inference's v7 layout), zero (a
   * fresh state) until set. Every sequence of a batch starts from it; the token-shift states stay zero.
   * They are not in `params` (checkpoints of the weights are unchanged); `backward` fills their `grad`.
   */
  enableInitialState(): readonly Param[] {
    if (this.states === undefined) {
      const { nLayer: L, headSize: N } = this.shape;
      const H = this.nHead;
      this.states = [];
      for (let l = 0; l < L; l++) {
        const n = H * N * N;
        this.states.push({ name: timeStateName(l), shape: [H, N, N], data: this.vec(n), grad: this.vec(n), decay: false });
      }
    }
    return this.states;
  }

  /** The initial states, when enabled. */
  get initialState(): readonly Param[] | undefined {
    return this.states;
  }

  /** FLOPs of the matrix products per token of one training step (forward 2·, backward 4· per weight). */
  get matmulFlopsPerToken(): number {
    const { nLayer: L, nEmbd: C, nVocab: V, ffnSize: F, wLora, aLora, vLora, gLora } = this.shape;
    const lora = L * 2 * C * (wLora + aLora + gLora) + (L - 1) * 2 * C * vLora;
    return 6 * (L * (4 * C * C + 2 * C * F) + lora + V * C);
  }

  private layer(l: number, which: 'data' | 'grad'): LayerParams {
    const g = (n: string): Vec => this.param(`blocks.${l}.${n}`)[which];
    const opt = (n: string): Vec | undefined => (l > 0 ? g(n) : undefined);
    return {
      ln1w: g('ln1.weight'),
      ln1b: g('ln1.bias'),
      ln2w: g('ln2.weight'),
      ln2b: g('ln2.bias'),
      mu: ['r', 'w', 'k', 'v', 'a', 'g'].map((m) => g(`att.x_${m}`)),
      w1: g('att.w1'),
      w2: g('att.w2'),
      w0: g('att.w0'),
      a1: g('att.a1'),
      a2: g('att.a2'),
      a0: g('att.a0'),
      v1: opt('att.v1'),
      v2: opt('att.v2'),
      v0: opt('att.v0'),
      g1: g('att.g1'),
      g2: g('att.g2'),
      kK: g('att.k_k'),
      kA: g('att.k_a'),
      rK: g('att.r_k'),
      wr: g('att.receptance.weight'),
      wk: g('att.key.weight'),
      wv: g('att.value.weight'),
      wo: g('att.output.weight'),
      lnxw: g('att.ln_x.weight'),
      lnxb: g('att.ln_x.bias'),
      fMuK: g('ffn.x_k'),
      fwk: g('ffn.key.weight'),
      fwv: g('ffn.value.weight'),
    };
  }

  // --- LoRA products on the Gemm. A factor M is stored [in, out] (I × O): the Gemm's Y = X·Wᵀ with W = M
  // read as O' × I' = I × O gives X·Mᵀ, so each product takes the Gemm call whose role fits. ---

  /** y (n × O) = x (n × I) · M. */
  private loraForward(y: Vec, x: Vec, m: Vec, n: number, i: number, o: number): void {
    this.gemm.backwardInput(y, x, m, n, i, o);
  }

  /** dM += xᵀ·dy (unless frozen);  dx += dy·Mᵀ (through `tmp`, n × I). */
  private loraBackward(dx: Vec, dm: Vec, dy: Vec, x: Vec, m: Vec, n: number, i: number, o: number, tmp: Vec): void {
    if (!this.frozen) this.gemm.backwardWeight(dm, x, dy, n, i, o);
    this.gemm.forward(tmp, dy, m, n, i, o);
    accumulate(dx, tmp);
  }

  /** Embedding, LN0, the layers: returns the last residual x_L (N × C), LNout's input. */
  protected bodyForward(ids: Int32Array, b: number, t: number): Vec {
    const { nLayer: L, nEmbd: C, ffnSize: F, wLora: Dw, aLora: Da, vLora: Dv, gLora: Dg } = this.shape;
    const H = this.nHead;
    const n = b * t;
    const gemm = this.gemm;
    const emb = this.buf('emb', n * C);
    embeddingForward(emb, ids, this.param('emb.weight').data, C);
    this.ops.layerNormForward(this.buf('x0', n * C), this.buf('m0', n), this.buf('s0', n), emb, this.param('blocks.0.ln0.weight').data, this.param('blocks.0.ln0.bias').data, n, C);
    const tmp = this.buf('tmp', n * C);
    const tmpF = this.buf('tmpF', n * F);
    const mixes = ['r', 'w', 'k', 'v', 'a', 'g'].map((m) => this.buf(`mix_${m}`, n * C));
    for (let l = 0; l < L; l++) {
      const w = this.w[l]!;
      const x = this.buf(`x${l}`, n * C);
      const xa = this.buf(`xa${l}`, n * C);
      this.ops.layerNormForward(xa, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), x, w.ln1w, w.ln1b, n, C);
      for (let m = 0; m < 6; m++) this.ops.shiftMixForward(mixes[m]!, xa, w.mu[m]!, b, t, C);
      const [xr, xw, xk, xv, xA, xg] = mixes as [Vec, Vec, Vec, Vec, Vec, Vec];

      const r = this.buf(`r${l}`, n * C);
      gemm.forward(r, xr, w.wr, n, C, C);
      const k0 = this.buf(`k0_${l}`, n * C);
      gemm.forward(k0, xk, w.wk, n, C, C);
      // Layer 0's v is v_first, kept in its own buffer for every later layer.
      const v = this.buf(`v${l}`, n * C);
      if (l === 0) {
        gemm.forward(v, xv, w.wv, n, C, C);
      } else {
        const vRaw = this.buf(`vraw${l}`, n * C);
        gemm.forward(vRaw, xv, w.wv, n, C, C);
        const hv = this.buf(`hv${l}`, n * Dv);
        this.loraForward(hv, xv, w.v1!, n, C, Dv);
        const vm = this.buf(`vm${l}`, n * C);
        this.loraForward(vm, hv, w.v2!, n, Dv, C);
        addRowForward(vm, w.v0!, n, C);
        sigmoidInPlace(vm);
        v.set(vRaw);
        valueResidualInPlace(v, this.buf('v0', n * C), vm);
      }

      // Decay: hw = tanh(xw·W1) (n × Dw), z = w0 + hw·W2, ws = σ(z), wd = exp(−e^(−0.5)·ws).
      const hw = this.buf(`hw${l}`, n * Dw);
      this.loraForward(hw, xw, w.w1, n, C, Dw);
      tanhInPlace(hw);
      this.loraForward(tmp, hw, w.w2, n, Dw, C);
      addRowForward(tmp, w.w0, n, C);
      const ws = this.buf(`ws${l}`, n * C);
      const wd = this.buf(`wd${l}`, n * C);
      decayForward(wd, ws, tmp);

      // a = σ(a0 + (xa·A1)·A2); ha: n × Da.
      const ha = this.buf(`ha${l}`, n * Da);
      this.loraForward(ha, xA, w.a1, n, C, Da);
      const a = this.buf(`a${l}`, n * C);
      this.loraForward(a, ha, w.a2, n, Da, C);
      addRowForward(a, w.a0, n, C);
      sigmoidInPlace(a);

      // g = σ(xg·G1)·G2; hg: n × Dg.
      const hg = this.buf(`hg${l}`, n * Dg);
      this.loraForward(hg, xg, w.g1, n, C, Dg);
      sigmoidInPlace(hg);
      const g = this.buf(`g${l}`, n * C);
      this.loraForward(g, hg, w.g2, n, Dg, C);

      const kk = this.buf(`kk${l}`, n * C);
      kkForward(kk, k0, w.kK, n, H, C);
      const k = this.buf(`k${l}`, n * C);
      keyScaleForward(k, k0, a, w.kA, n, C);

      const y = this.buf(`y${l}`, n * C);
      const checkpoints = this.buf(`ck${l}`, wkv7CheckpointLength(b, t, H, C));
      const s0 = this.states?.[l]!.data;
      const kernels = this.gemm.kernels;
      if (kernels?.takes(C / H, y, r, wd, k, v, kk, a, checkpoints, ...(s0 === undefined ? [] : [s0])) === true) kernels.wkv7Forward(y, r, wd, k, v, kk, a, b, t, H, C, checkpoints, s0);
      else wkv7Forward(y, r, wd, k, v, kk, a, b, t, H, C, checkpoints, s0);
      const yb = this.buf(`yb${l}`, n * C);
      groupNormForward(yb, this.buf(`mx${l}`, n * H), this.buf(`sx${l}`, n * H), y, w.lnxw, w.lnxb, n, H, LN_X_EPS);
      bonusForward(yb, r, k, w.rK, v, n, H, C);
      multiply(tmp, yb, g);
      const out = this.buf('out', n * C);
      gemm.forward(out, tmp, w.wo, n, C, C);
      const xm = this.buf(`xm${l}`, n * C);
      addForward(xm, x, out);

      // Channel mix.
      const xf = this.buf(`xf${l}`, n * C);
      this.ops.layerNormForward(xf, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), xm, w.ln2w, w.ln2b, n, C);
      this.ops.shiftMixForward(tmp, xf, w.fMuK, b, t, C);
      const fk = this.buf(`fk${l}`, n * F);
      gemm.forward(fk, tmp, w.fwk, n, F, C);
      this.ops.reluSquaredForward(tmpF, fk);
      gemm.forward(out, tmpF, w.fwv, n, C, F);
      addForward(this.buf(`x${l + 1}`, n * C), xm, out);
    }
    return this.buf(`x${L}`, n * C);
  }

  /** The layers' backward from dx = ∂loss/∂x_L (N × C), down to the embedding (frozen: to layer 0's WKV). */
  protected bodyBackward(dx: Vec): void {
    const { nLayer: L, nEmbd: C, ffnSize: F, wLora: Dw, aLora: Da, vLora: Dv, gLora: Dg } = this.shape;
    const H = this.nHead;
    const { b, t } = this;
    const n = b * t;
    const gemm = this.gemm;
    const frozen = this.frozen;
    for (const p of this.states ?? []) p.grad.fill(0);
    // dW += …: skipped when the weights are frozen (their gradients are never read).
    const backwardWeight = (dw: Vec, dy: Vec, x: Vec, n: number, o: number, i: number): void => {
      if (!frozen) gemm.backwardWeight(dw, dy, x, n, o, i);
    };

    const tmp = this.buf('tmp', n * C);
    const dtmp = this.buf('dtmp', n * C);
    const tmpF = this.buf('tmpF', n * F);
    const dtmpF = this.buf('dtmpF', n * F);
    const vFirst = this.buf('v0', n * C);
    const dvFirst = this.zeroed('dvFirst', n * C); // ∂L/∂v_first from every layer > 0
    for (let l = L - 1; l >= 0; l--) {
      const w = this.w[l]!;
      const dw = this.dw[l]!;
      const x = this.buf(`x${l}`, n * C);
      const xa = this.buf(`xa${l}`, n * C);
      const r = this.buf(`r${l}`, n * C);
      const k0 = this.buf(`k0_${l}`, n * C);
      const v = this.buf(`v${l}`, n * C);
      const ws = this.buf(`ws${l}`, n * C);
      const wd = this.buf(`wd${l}`, n * C);
      const hw = this.buf(`hw${l}`, n * Dw);
      const ha = this.buf(`ha${l}`, n * Da);
      const a = this.buf(`a${l}`, n * C);
      const hg = this.buf(`hg${l}`, n * Dg);
      const g = this.buf(`g${l}`, n * C);
      const kk = this.buf(`kk${l}`, n * C);
      const k = this.buf(`k${l}`, n * C);
      const y = this.buf(`y${l}`, n * C);
      const yb = this.buf(`yb${l}`, n * C);
      const xm = this.buf(`xm${l}`, n * C);
      const xf = this.buf(`xf${l}`, n * C);
      const fk = this.buf(`fk${l}`, n * F);

      // Channel mix: x_{l+1} = xm + relu(mix(xf)·Wk'ᵀ)²·Wv'ᵀ, with dx the gradient of x_{l+1}.
      this.ops.reluSquaredForward(tmpF, fk);
      backwardWeight(dw.fwv, dx, tmpF, n, C, F);
      gemm.backwardInput(dtmpF, dx, w.fwv, n, C, F);
      const dfk = this.zeroed('dfk', n * F);
      this.ops.reluSquaredBackward(dfk, dtmpF, fk);
      this.ops.shiftMixForward(tmp, xf, w.fMuK, b, t, C);
      backwardWeight(dw.fwk, dfk, tmp, n, F, C);
      gemm.backwardInput(dtmp, dfk, w.fwk, n, F, C);
      const dxf = this.zeroed('dxf', n * C);
      this.ops.shiftMixBackward(dxf, dw.fMuK, dtmp, xf, w.fMuK, b, t, C);
      const dxm = this.buf('dxm', n * C);
      dxm.set(dx);
      this.ops.layerNormBackward(dxm, dw.ln2w, dw.ln2b, dxf, xm, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), w.ln2w, n, C);

      // Time mix output: xm = x + (yb ⊙ g)·Woᵀ.
      multiply(tmp, yb, g);
      backwardWeight(dw.wo, dxm, tmp, n, C, C);
      gemm.backwardInput(dtmp, dxm, w.wo, n, C, C);
      const dyb = this.zeroed('dyb', n * C);
      const dg = this.zeroed('dg', n * C);
      multiplyBackward(dyb, dg, dtmp, yb, g);
      // yb = GroupNorm(y) + bonus(r, k, r_k, v).
      const dr = this.zeroed('dr', n * C);
      const dk = this.zeroed('dk', n * C);
      const dv = this.zeroed('dv', n * C);
      bonusBackward(dr, dk, dw.rK, dv, dyb, r, k, w.rK, v, n, H, C);
      const dy = this.zeroed('dy', n * C);
      groupNormBackward(dy, dw.lnxw, dw.lnxb, dyb, y, this.buf(`mx${l}`, n * H), this.buf(`sx${l}`, n * H), w.lnxw, n, H);
      const dwd = this.zeroed('dwd', n * C);
      const dkk = this.zeroed('dkk', n * C);
      const da = this.zeroed('da', n * C);
      const checkpoints = this.buf(`ck${l}`, wkv7CheckpointLength(b, t, H, C));
      const ds0 = this.states?.[l]!.grad;
      const kernels = this.gemm.kernels;
      if (kernels?.takes(C / H, dr, dwd, dk, dv, dkk, da, dy, r, wd, k, v, kk, a, checkpoints, ...(ds0 === undefined ? [] : [ds0])) === true) {
        kernels.wkv7Backward(dr, dwd, dk, dv, dkk, da, dy, r, wd, k, v, kk, a, checkpoints, b, t, H, C, ds0);
      } else wkv7Backward(dr, dwd, dk, dv, dkk, da, dy, r, wd, k, v, kk, a, checkpoints, b, t, H, C, ds0);
      // Frozen: below layer 0's WKV only weight gradients remain (its inputs come from the fixed embedding).
      if (frozen && l === 0) return;
      // k = k₀ ⊙ (1 + (a − 1) ⊙ k_a);  kk = L2norm(k₀ ⊙ k_k).
      const dk0 = this.zeroed('dk0', n * C);
      keyScaleBackward(dk0, da, dw.kA, dk, k0, a, w.kA, n, C);
      kkBackward(dk0, dw.kK, dkk, k0, w.kK, n, H, C);

      // Back through each mix's consumers into d(x?), then the token shift into dxa.
      const dxa = this.zeroed('dxa', n * C);
      const mix = (m: number, consumers: () => void): void => {
        this.ops.shiftMixForward(tmp, xa, w.mu[m]!, b, t, C); // x?, read by `consumers`
        consumers(); // leaves d(x?) in dtmp
        this.ops.shiftMixBackward(dxa, dw.mu[m]!, dtmp, xa, w.mu[m]!, b, t, C);
      };
      const dmix = this.buf('dmix', n * C);
      mix(MIX_R, () => {
        backwardWeight(dw.wr, dr, tmp, n, C, C);
        gemm.backwardInput(dtmp, dr, w.wr, n, C, C);
      });
      mix(MIX_K, () => {
        backwardWeight(dw.wk, dk0, tmp, n, C, C);
        gemm.backwardInput(dtmp, dk0, w.wk, n, C, C);
      });
      mix(MIX_V, () => {
        let dvRaw = dv;
        if (l === 0) {
          accumulate(dv, dvFirst); // v is v_first
        } else {
          dvRaw = this.zeroed('dvraw', n * C);
          const dvm = this.zeroed('dvm', n * C);
          const vm = this.buf(`vm${l}`, n * C);
          valueResidualBackward(dvRaw, dvFirst, dvm, dv, this.buf(`vraw${l}`, n * C), vFirst, vm);
          sigmoidBackwardInPlace(dvm, vm);
          addRowBackward(dw.v0!, dvm, n, C);
          const hv = this.buf(`hv${l}`, n * Dv);
          const dhv = this.zeroed('dhv', n * Dv);
          this.loraBackward(dhv, dw.v2!, dvm, hv, w.v2!, n, Dv, C, this.buf('tmpD', n * Dv));
          dtmp.fill(0);
          this.loraBackward(dtmp, dw.v1!, dhv, tmp, w.v1!, n, C, Dv, dmix);
          gemm.backwardInput(dmix, dvRaw, w.wv, n, C, C);
          accumulate(dtmp, dmix);
        }
        backwardWeight(dw.wv, dvRaw, tmp, n, C, C);
        if (l === 0) gemm.backwardInput(dtmp, dvRaw, w.wv, n, C, C);
      });
      mix(MIX_W, () => {
        decayBackwardInPlace(dwd, wd, ws); // now ∂L/∂z
        addRowBackward(dw.w0, dwd, n, C);
        const dhw = this.zeroed('dhw', n * Dw);
        this.loraBackward(dhw, dw.w2, dwd, hw, w.w2, n, Dw, C, this.buf('tmpD', n * Dw));
        tanhBackwardInPlace(dhw, hw);
        dtmp.fill(0);
        this.loraBackward(dtmp, dw.w1, dhw, tmp, w.w1, n, C, Dw, dmix);
      });
      mix(MIX_A, () => {
        sigmoidBackwardInPlace(da, a); // now ∂L/∂(a0 + ·)
        addRowBackward(dw.a0, da, n, C);
        const dha = this.zeroed('dha', n * Da);
        this.loraBackward(dha, dw.a2, da, ha, w.a2, n, Da, C, this.buf('tmpD', n * Da));
        dtmp.fill(0);
        this.loraBackward(dtmp, dw.a1, dha, tmp, w.a1, n, C, Da, dmix);
      });
      mix(MIX_G, () => {
        const dhg = this.zeroed('dhg', n * Dg);
        this.loraBackward(dhg, dw.g2, dg, hg, w.g2, n, Dg, C, this.buf('tmpD', n * Dg));
        sigmoidBackwardInPlace(dhg, hg);
        dtmp.fill(0);
        this.loraBackward(dtmp, dw.g1, dhg, tmp, w.g1, n, C, Dg, dmix);
      });

      // The residual: d(x) = dxm + LN1's backward of dxa (dx has been consumed: reuse it).
      dx.set(dxm);
      this.ops.layerNormBackward(dx, dw.ln1w, dw.ln1b, dxa, x, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), w.ln1w, n, C);
    }
    const demb = this.zeroed('demb', n * C);
    this.ops.layerNormBackward(demb, this.param('blocks.0.ln0.weight').grad, this.param('blocks.0.ln0.bias').grad, dx, this.buf('emb', n * C), this.buf('m0', n), this.buf('s0', n), this.param('blocks.0.ln0.weight').data, n, C);
    embeddingBackward(this.param('emb.weight').grad, this.ids, demb, C);
  }
}

/** The parameters whose gradients only weight-gradient products (or the embedding's scatter) produce. */
function isMatrix(name: string): boolean {
  return /(^emb|^head|\.(receptance|key|value|output))\.weight$|\.att\.[wavg][12]$/.test(name);
}
