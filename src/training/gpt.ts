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
// attention output, the mid-layer residual, f and h; gelu(h) is recomputed in the backward.
import { ArgumentError } from '../errors.js';
import type { ModelShape, TrainModel } from './architecture.js';
import type { Gemm } from './gemm.js';
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
import type { Param } from './model.js';
import { addForward, crossEntropy, embeddingBackward, embeddingForward, layerNormBackward, layerNormForward, type Vec } from './ops.js';

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

export class GptTrain implements TrainModel {
  readonly shape: GptShape;
  readonly gemm: Gemm;
  readonly params: readonly Param[];
  private readonly byName = new Map<string, Param>();
  private readonly w: LayerParams[] = [];
  private readonly dw: LayerParams[] = [];
  private readonly buffers = new Map<string, Vec>();
  private ids: Int32Array = new Int32Array(0);
  private targets: Int32Array = new Int32Array(0);
  private b = 0;
  private t = 0;
  private logitsKept = false;
  private readonly logitBudget: number;
  private readonly scratch: AttentionScratch;

  constructor(shape: GptShape, gemm: Gemm, options: GptTrainOptions = {}) {
    checkGptShape(shape);
    this.logitBudget = options.logitBudget ?? 1 << 24;
    this.shape = shape;
    this.gemm = gemm;
    this.scratch = new AttentionScratch(gemm.precision);
    const params: Param[] = [];
    for (const { name, shape: s } of gptParamShapes(shape)) {
      const n = s.reduce((a, d) => a * d, 1);
      const p: Param = {
        name,
        shape: s,
        data: gemm.allocate(n),
        grad: gemm.precision === 'f64' ? new Float64Array(n) : new Float32Array(n),
        decay: s.filter((d) => d > 1).length >= 2,
      };
      params.push(p);
      this.byName.set(name, p);
    }
    this.params = params;
    for (let l = 0; l < shape.nLayer; l++) {
      this.w.push(this.layer(l, 'data'));
      this.dw.push(this.layer(l, 'grad'));
    }
  }

  param(name: string): Param {
    const p = this.byName.get(name);
    if (p === undefined) throw new ArgumentError(`no parameter named '${name}'`);
    return p;
  }

  get size(): number {
    return this.params.reduce((a, p) => a + p.data.length, 0);
  }

  /** FLOPs of the weight products per token of a training step (6 per weight), not counting attention's T-long dot products. */
  get matmulFlopsPerToken(): number {
    const { nLayer: L, nEmbd: C, nVocab: V } = this.shape;
    return 6 * (L * 12 * C * C + V * C);
  }

  private headWeight(): Param {
    return this.param(this.shape.tiedHead ? 'wte.weight' : 'lm_head.weight');
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

  private buf(name: string, length: number): Vec {
    let a = this.buffers.get(name);
    if (a === undefined || a.length < length) {
      a = this.gemm.precision === 'f64' ? new Float64Array(length) : new Float32Array(length);
      this.buffers.set(name, a);
    }
    return a.subarray(0, length);
  }

  private zeroed(name: string, length: number): Vec {
    const a = this.buf(name, length);
    a.fill(0);
    return a;
  }

  private checkBatch(ids: Int32Array, b: number, t: number): void {
    if (!Number.isInteger(b) || !Number.isInteger(t) || b < 1 || t < 1 || ids.length !== b * t) {
      throw new ArgumentError(`a batch of ${b} × ${t} tokens needs ${b * t} ids, got ${ids.length}`);
    }
    if (t > this.shape.nPositions) throw new ArgumentError(`a window of ${t} tokens is longer than the model's ${this.shape.nPositions} positions`);
    const v = this.shape.nVocab;
    for (const id of ids) if (!(id >= 0 && id < v)) throw new ArgumentError(`token id ${id} is outside the vocabulary (0..${v - 1})`);
  }

  forward(ids: Int32Array, targets: Int32Array, b: number, t: number): number {
    this.checkBatch(ids, b, t);
    this.checkBatch(targets, b, t);
    this.ids = ids;
    this.targets = targets;
    this.b = b;
    this.t = t;
    this.body(ids, b, t);
    return this.head(targets, true);
  }

  logits(ids: Int32Array, b: number, t: number): Vec {
    this.checkBatch(ids, b, t);
    this.body(ids, b, t);
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = b * t;
    const out = this.gemm.precision === 'f64' ? new Float64Array(n * V) : new Float32Array(n * V);
    this.gemm.forward(out, this.buf('xo', n * C), this.headWeight().data, n, V, C);
    this.b = 0;
    return out;
  }

  /** Embeddings, the blocks, LNf: leaves the normed output in 'xo'. */
  private body(ids: Int32Array, b: number, t: number): void {
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
      layerNormForward(a, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), x, w.ln1w, w.ln1b, n, C);
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
      layerNormForward(f, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), xm, w.ln2w, w.ln2b, n, C);
      const h = this.buf(`h${l}`, n * F);
      gemm.forward(h, f, w.fcW, n, F, C);
      biasForward(h, w.fcB, n, F);
      geluForward(tmpF, h);
      gemm.forward(tmp, tmpF, w.mprojW, n, C, F);
      biasForward(tmp, w.mprojB, n, C);
      addForward(this.buf(`x${l + 1}`, n * C), xm, tmp);
    }
    layerNormForward(this.buf('xo', n * C), this.buf('mo', n), this.buf('so', n), this.buf(`x${L}`, n * C), this.param('ln_f.weight').data, this.param('ln_f.bias').data, n, C);
  }

  private headChunks(n: number): number {
    const V = this.shape.nVocab;
    return n * V <= this.logitBudget ? n : Math.max(1, Math.floor(this.logitBudget / 4 / V));
  }

  private head(targets: Int32Array, training: boolean): number {
    const { nEmbd: C, nVocab: V } = this.shape;
    const n = this.b * this.t;
    const xo = this.buf('xo', n * C);
    const head = this.headWeight().data;
    const rows = this.headChunks(n);
    this.logitsKept = training && rows === n;
    let loss = 0;
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const lg = logits.subarray(0, (r1 - r0) * V);
      this.gemm.forward(lg, xo.subarray(r0 * C, r1 * C), head, r1 - r0, V, C);
      loss += crossEntropy(lg, targets.subarray(r0, r1), r1 - r0, V, n);
    }
    return loss;
  }

  backward(): void {
    if (this.b === 0) throw new ArgumentError('backward needs a forward with targets first');
    const { nLayer: L, nEmbd: C, nVocab: V, nHead: H } = this.shape;
    const { b, t } = this;
    const n = b * t;
    const F = 4 * C;
    const gemm = this.gemm;
    for (const p of this.params) p.grad.fill(0);

    // Head and cross-entropy (into wte's gradient when tied; the embedding's share is added at the end).
    const xo = this.buf('xo', n * C);
    const head = this.headWeight();
    const dxo = this.buf('dxo', n * C);
    const rows = this.headChunks(n);
    const logits = this.buf('logits', rows * V);
    for (let r0 = 0; r0 < n; r0 += rows) {
      const r1 = Math.min(n, r0 + rows);
      const m = r1 - r0;
      const lg = logits.subarray(0, m * V);
      const xc = xo.subarray(r0 * C, r1 * C);
      if (!this.logitsKept) gemm.forward(lg, xc, head.data, m, V, C);
      crossEntropy(lg, this.targets.subarray(r0, r1), m, V, n, lg);
      gemm.backwardInput(dxo.subarray(r0 * C, r1 * C), lg, head.data, m, V, C);
      gemm.backwardWeight(head.grad, lg, xc, m, V, C);
    }
    this.logitsKept = false;
    // dx: the gradient of the residual stream, carried down through the layers.
    const dx = this.zeroed('dx', n * C);
    layerNormBackward(dx, this.param('ln_f.weight').grad, this.param('ln_f.bias').grad, dxo, this.buf(`x${L}`, n * C), this.buf('mo', n), this.buf('so', n), this.param('ln_f.weight').data, n, C);

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
      layerNormBackward(dxm, dw.ln2w, dw.ln2b, dtmp, xm, this.buf(`m2_${l}`, n), this.buf(`s2_${l}`, n), w.ln2w, n, C);

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
      layerNormBackward(dx, dw.ln1w, dw.ln1b, tmp, x, this.buf(`m1_${l}`, n), this.buf(`s1_${l}`, n), w.ln1w, n, C);
    }
    positionBackward(this.param('wpe.weight').grad, dx, b, t, C);
    embeddingBackward(this.param('wte.weight').grad, this.ids, dx, C);
  }
}
