// The GPT (GPT-2 style) training graph, the Transformer baseline of the paper's comparisons, on the same
// Gemm, ops and trainer as RWKV-4: forward over B sequences of T tokens (N = B·T rows) keeping what the
// backward needs, then the backward op by op in reverse.
//
//   x₀ = wte[ids] + wpe[pos]
//   per layer:  a = LN1(x);  qkv = a·Wattnᵀ + b;  x += CausalAttention(qkv)·Wprojᵀ + b
//               f = LN2(x);  h = f·Wfcᵀ + b;  x += gelu(h)·Wmprojᵀ + b
//   logits = LNf(x)·Headᵀ (Head = wte when tied);  loss = mean cross-entropy
//
// Parameters carry Hugging Face GPT-2's names (no 'transformer.' prefix) but the trainer's [out, in]
// layout: c_attn, c_proj and c_fc, which GPT-2 stores as Conv1D [in, out], are transposed on save and load
// (gpt-checkpoint.ts). Saved per layer: x, the LN statistics, a, qkv, the attention weights P, the
// attention output, the mid-layer residual, f and h; gelu(h) is recomputed in the backward. LNf, the head
// and the loss are the shared TrainGraph's (graph.ts).
import { ArgumentError } from '../errors.js';
import type { ModelShape } from './architecture.js';
import type { Gemm } from './gemm.js';
import { TrainGraph } from './graph.js';
import {
  AttentionScratch,
  attentionBackward,
  attentionForward,
  biasBackward,
  biasForward,
  geluBackward,
  geluForward,
  positionBackward,
  positionForward,
} from './gpt-ops.js';
import { addForward, embeddingBackward, embeddingForward, type Vec } from './ops.js';

export interface GptShape extends ModelShape {
  readonly nLayer: number;
  readonly nEmbd: number;
  readonly nVocab: number;
  /** Attention heads; nEmbd is a multiple of it. */
  readonly nHead: number;
  /** Learned positions (GPT-2's n_positions): the longest context. */
  readonly nPositions: number;
  /** Whether the head is wte (GPT-2's tie_word_embeddings) or a separate lm_head.weight. */
  readonly tiedHead: boolean;
}

/** The parameter list under Hugging Face GPT-2 names, in the trainer's [out, in] layout. */
export function gptParamShapes(s: GptShape): { name: string; shape: number[] }[] {
  const { nLayer: L, nEmbd: C, nVocab: V, nPositions: P } = s;
  const out: { name: string; shape: number[] }[] = [
    { name: 'wte.weight', shape: [V, C] },
    { name: 'wpe.weight', shape: [P, C] },
  ];
  for (let l = 0; l < L; l++) {
    const p = `h.${l}`;
    out.push(
      { name: `${p}.ln_1.weight`, shape: [C] },
      { name: `${p}.ln_1.bias`, shape: [C] },
      { name: `${p}.attn.c_attn.weight`, shape: [3 * C, C] },
      { name: `${p}.attn.c_attn.bias`, shape: [3 * C] },
      { name: `${p}.attn.c_proj.weight`, shape: [C, C] },
      { name: `${p}.attn.c_proj.bias`, shape: [C] },
      { name: `${p}.ln_2.weight`, shape: [C] },
      { name: `${p}.ln_2.bias`, shape: [C] },
      { name: `${p}.mlp.c_fc.weight`, shape: [4 * C, C] },
      { name: `${p}.mlp.c_fc.bias`, shape: [4 * C] },
      { name: `${p}.mlp.c_proj.weight`, shape: [C, 4 * C] },
      { name: `${p}.mlp.c_proj.bias`, shape: [C] },
    );
  }
  out.push({ name: 'ln_f.weight', shape: [C] }, { name: 'ln_f.bias', shape: [C] });
  if (!s.tiedHead) out.push({ name: 'lm_head.weight', shape: [V, C] });
  return out;
}

/** Checks a GPT shape's integers and divisibility. */
export function checkGptShape(s: GptShape): void {
  for (const k of ['nLayer', 'nEmbd', 'nVocab', 'nHead', 'nPositions'] as const) {
    const v = s[k];
    if (!Number.isInteger(v) || v < 1) throw new ArgumentError(`${k} must be an integer ≥ 1, got ${v}`);
  }
  if (s.nEmbd % s.nHead !== 0) throw new ArgumentError(`the width ${s.nEmbd} is not a multiple of --heads ${s.nHead}`);
}

interface LayerParams {
  ln1w: Vec;
  ln1b: Vec;
  attnW: Vec;
  attnB: Vec;
  projW: Vec;
  projB: Vec;
  ln2w: Vec;
  ln2b: Vec;
  fcW: Vec;
  fcB: Vec;
  mprojW: Vec;
  mprojB: Vec;
}

export interface GptTrainOptions {
  /** As Rwkv4TrainOptions.logitBudget: logits of more values than this are computed in row chunks. */
  logitBudget?: number;
}

export class GptTrain extends TrainGraph<GptShape> {
  private readonly w: LayerParams[] = [];
  private readonly dw: LayerParams[] = [];
  private readonly scratch: AttentionScratch;

  constructor(shape: GptShape, gemm: Gemm, options: GptTrainOptions = {}) {
    checkGptShape(shape);
    // Tied: the head is wte itself, so its gradient gathers the head's and the embedding's shares.
    const head = shape.tiedHead ? 'wte.weight' : 'lm_head.weight';
    super(shape, gemm, { params: gptParamShapes(shape), normWeight: 'ln_f.weight', normBias: 'ln_f.bias', head, ...options });
    this.scratch = new AttentionScratch(gemm.precision);
    for (let l = 0; l < shape.nLayer; l++) {
      this.w.push(this.layer(l, 'data'));
      this.dw.push(this.layer(l, 'grad'));
    }
  }

  /** FLOPs of the weight products per token of a training step (6 per weight), not counting attention's T-long dot products. */
  get matmulFlopsPerToken(): number {
    const { nLayer: L, nEmbd: C, nVocab: V } = this.shape;
    return 6 * (L * 12 * C * C + V * C);
  }

  private layer(l: number, which: 'data' | 'grad'): LayerParams {
    const g = (n: string): Vec => this.param(`h.${l}.${n}`)[which];
    return {
      ln1w: g('ln_1.weight'),
      ln1b: g('ln_1.bias'),
      attnW: g('attn.c_attn.weight'),
      attnB: g('attn.c_attn.bias'),
      projW: g('attn.c_proj.weight'),
      projB: g('attn.c_proj.bias'),
      ln2w: g('ln_2.weight'),
      ln2b: g('ln_2.bias'),
      fcW: g('mlp.c_fc.weight'),
      fcB: g('mlp.c_fc.bias'),
      mprojW: g('mlp.c_proj.weight'),
      mprojB: g('mlp.c_proj.bias'),
    };
  }

  /** Learned positions: no window longer than nPositions. */
  protected override checkWindow(t: number): void {
    if (t > this.shape.nPositions) throw new ArgumentError(`a window of ${t} tokens is longer than the model's ${this.shape.nPositions} positions`);
  }

  /** Embeddings, the blocks: returns the last residual x_L (N × C), LNf's input. */
  protected bodyForward(ids: Int32Array, b: number, t: number): Vec {
    const { nLayer: L, nEmbd: C, nHead: H } = this.shape;
    const n = b * t;
    const F = 4 * C;
    const gemm = this.gemm;
    const x0 = this.buf('x0', n * C);
    embeddingForward(x0, ids, this.param('wte.weight').data, C);
    positionForward(x0, this.param('wpe.weight').data, b, t, C);
    const tmp = this.buf('tmp', n * C);
    const tmpF = this.buf('tmpF', n * F);
    for (let l = 0; l < L; l++) {
      const w = this.w[l]!;
      const x = this.buf(`x${l}`, n * C);
      const a = this.buf(`a${l}`, n * C);
      this.ops.layerNormForward(a, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), x, w.ln1w, w.ln1b, n, C);
      const qkv = this.buf(`qkv${l}`, n * 3 * C);
      gemm.forward(qkv, a, w.attnW, n, 3 * C, C);
      biasForward(qkv, w.attnB, n, 3 * C);
      const y = this.buf(`y${l}`, n * C);
      attentionForward(y, this.buf(`att${l}`, b * H * t * t), qkv, b, t, C, H, gemm, this.scratch);
      gemm.forward(tmp, y, w.projW, n, C, C);
      biasForward(tmp, w.projB, n, C);
      const xm = this.buf(`xm${l}`, n * C);
      addForward(xm, x, tmp);
      const f = this.buf(`f${l}`, n * C);
      this.ops.layerNormForward(f, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), xm, w.ln2w, w.ln2b, n, C);
      const h = this.buf(`h${l}`, n * F);
      gemm.forward(h, f, w.fcW, n, F, C);
      biasForward(h, w.fcB, n, F);
      geluForward(tmpF, h);
      gemm.forward(tmp, tmpF, w.mprojW, n, C, F);
      biasForward(tmp, w.mprojB, n, C);
      addForward(this.buf(`x${l + 1}`, n * C), xm, tmp);
    }
    return this.buf(`x${L}`, n * C);
  }

  /** The blocks' backward from dx = ∂loss/∂x_L (N × C), down to the embeddings. */
  protected bodyBackward(dx: Vec): void {
    const { nLayer: L, nEmbd: C, nHead: H } = this.shape;
    const { b, t } = this;
    const n = b * t;
    const F = 4 * C;
    const gemm = this.gemm;
    const tmp = this.buf('tmp', n * C);
    const dtmp = this.buf('dtmp', n * C);
    const tmpF = this.buf('tmpF', n * F);
    const dtmpF = this.buf('dtmpF', n * F);
    for (let l = L - 1; l >= 0; l--) {
      const w = this.w[l]!;
      const dw = this.dw[l]!;
      const x = this.buf(`x${l}`, n * C);
      const a = this.buf(`a${l}`, n * C);
      const qkv = this.buf(`qkv${l}`, n * 3 * C);
      const y = this.buf(`y${l}`, n * C);
      const xm = this.buf(`xm${l}`, n * C);
      const f = this.buf(`f${l}`, n * C);
      const h = this.buf(`h${l}`, n * F);

      // MLP: out = gelu(h)·Wmprojᵀ + b, h = f·Wfcᵀ + b, f = LN2(xm).
      biasBackward(dw.mprojB, dx, n, C);
      geluForward(tmpF, h);
      gemm.backwardWeight(dw.mprojW, dx, tmpF, n, C, F);
      gemm.backwardInput(dtmpF, dx, w.mprojW, n, C, F); // d gelu(h)
      const dh = this.zeroed('dh', n * F);
      geluBackward(dh, dtmpF, h);
      biasBackward(dw.fcB, dh, n, F);
      gemm.backwardWeight(dw.fcW, dh, f, n, F, C);
      gemm.backwardInput(dtmp, dh, w.fcW, n, F, C); // df
      // dxm = dx (residual) + LN2's backward of df.
      const dxm = this.buf('dxm', n * C);
      dxm.set(dx);
      this.ops.layerNormBackward(dxm, dw.ln2w, dw.ln2b, dtmp, xm, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), w.ln2w, n, C);

      // Attention: out = y·Wprojᵀ + b, y = Attention(qkv), qkv = a·Wattnᵀ + b, a = LN1(x).
      biasBackward(dw.projB, dxm, n, C);
      gemm.backwardWeight(dw.projW, dxm, y, n, C, C);
      gemm.backwardInput(dtmp, dxm, w.projW, n, C, C); // dy
      const dqkv = this.zeroed('dqkv', n * 3 * C);
      attentionBackward(dqkv, dtmp, qkv, this.buf(`att${l}`, b * H * t * t), b, t, C, H, gemm, this.scratch);
      biasBackward(dw.attnB, dqkv, n, 3 * C);
      gemm.backwardWeight(dw.attnW, dqkv, a, n, 3 * C, C);
      gemm.backwardInput(tmp, dqkv, w.attnW, n, 3 * C, C); // da
      dx.set(dxm);
      this.ops.layerNormBackward(dx, dw.ln1w, dw.ln1b, tmp, x, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), w.ln1w, n, C);
    }
    positionBackward(this.param('wpe.weight').grad, dx, b, t, C);
    embeddingBackward(this.param('wte.weight').grad, this.ids, dx, C);
  }
}
