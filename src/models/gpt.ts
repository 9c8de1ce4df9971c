// A GPT-2 decoder on the same Backend as the RWKV models, the paper's Transformer baseline:
//   x = wte[token] + wpe[position]
//   per layer: x += c_proj(attention(ln_1(x)));  x += mlp_proj(gelu(c_fc(ln_2(x))))
//   logits = head · ln_f(x)   (head = wte when tied, else lm_head)
// with causal multi-head attention over a per-sequence KV cache (Backend.attention). Inference only.
// Two modes: with the cache (each token attends to the stored keys and values: O(T) per token), or
// without (each call recomputes the whole prefix: O(T²) per token), for checking one against the other.
import { ArgumentError, NonFiniteError } from '../errors.js';
import { rowLayout, type Backend, type DeviceMatrix, type DeviceTensor, type KvSlot } from '../kernels/backend.js';
import { pace } from '../util/host.js';
import { Workspace } from './blocks.js';
import { HEAD_ROWS, type LayerNormWeights } from './model.js';

/** What config.json says, in the engine's words (Hugging Face GPT-2 keys: models/gpt-config.ts). */
export interface GptConfig {
  readonly nLayer: number;
  /** C, the embedding width. */
  readonly nEmbd: number;
  /** H; the head size is C / H. */
  readonly nHead: number;
  /** The longest context (wpe's rows). */
  readonly nPositions: number;
  readonly nVocab: number;
  readonly layerNormEps: number;
}

/** One layer's weights, matrices as rows (out) × cols (in). */
export interface GptLayer {
  readonly ln1: LayerNormWeights;
  readonly q: DeviceMatrix; // C × C, and its bias 1 × C
  readonly k: DeviceMatrix;
  readonly v: DeviceMatrix;
  readonly qBias: DeviceTensor;
  readonly kBias: DeviceTensor;
  readonly vBias: DeviceTensor;
  readonly attnProj: DeviceMatrix; // C × C
  readonly attnProjBias: DeviceTensor;
  readonly ln2: LayerNormWeights;
  readonly fc: DeviceMatrix; // 4C × C
  readonly fcBias: DeviceTensor; // 1 × 4C
  readonly mlpProj: DeviceMatrix; // C × 4C
  readonly mlpProjBias: DeviceTensor;
}

export interface GptWeights {
  readonly wte: DeviceMatrix; // V × C
  readonly wpe: DeviceMatrix; // P × C
  readonly layers: readonly GptLayer[];
  readonly lnF: LayerNormWeights;
  /** V × C: wte itself when tied. */
  readonly head: DeviceMatrix;
  readonly tied: boolean;
}

/**
 * One sequence's context: the tokens seen and, in cache mode, every layer's keys and values (capacity ×
 * C each, rows 0 … length − 1 filled; the capacity doubles as the context grows). Belongs to one model
 * and its backend; dispose() gives the cache's memory back.
 */
export class GptState {
  /** Every token fed so far, in order (the no-cache mode recomputes from them). */
  readonly tokens: number[] = [];
  /** Per layer [k, v]; empty until the first token (and always in no-cache mode). */
  kv: [DeviceTensor, DeviceTensor][] = [];
  /** Rows each cache tensor holds. */
  capacity = 0;

  constructor(readonly config: GptConfig) {}

  /** Positions seen. */
  get length(): number {
    return this.tokens.length;
  }

  /** Bytes of keys and values in use: 2 (K and V) · L · T · C · 4 (f32); 0 in no-cache mode. */
  get bytes(): number {
    return this.kv.length === 0 ? 0 : 2 * this.config.nLayer * this.length * this.config.nEmbd * 4;
  }

  /** Bytes the cache tensors occupy (≥ bytes: room for the next positions). */
  get allocatedBytes(): number {
    return 2 * this.kv.length * this.capacity * this.config.nEmbd * 4;
  }
}

/** One sequence of a pass: tokens to feed after what `state` has seen, and which logits come back. */
export interface GptSequenceInput {
  readonly tokens: readonly number[];
  readonly state: GptState;
  /** Default 'last'. */
  readonly logits?: 'last' | 'all' | 'none';
}

export interface GptModelOptions {
  /** Keep a KV cache (default true); false recomputes the whole prefix on every call. */
  kvCache?: boolean;
  /** Where the weights came from, for error messages. */
  file?: string;
}

export class GptModel {
  readonly kind = 'gpt2' as const;
  readonly config: GptConfig;
  readonly backend: Backend;
  readonly file: string;
  readonly kvCache: boolean;
  /** Bytes of weights held by the backend. */
  readonly weightBytes: number;
  private readonly w: GptWeights;
  private readonly work: Workspace;
  /** Passes run one at a time (they share the work tensors). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(config: GptConfig, weights: GptWeights, backend: Backend, options: GptModelOptions = {}) {
    if (backend.kind === 'webgpu') throw new ArgumentError('GPT not supported on webgpu (no attention shader yet): use --kernels wasm');
    this.config = config;
    this.w = weights;
    this.backend = backend;
    this.file = options.file ?? '<memory>';
    this.kvCache = options.kvCache ?? true;
    this.work = new Workspace(backend);
    const c = config.nEmbd;
    const matrices = [weights.wte, weights.wpe, ...(weights.tied ? [] : [weights.head])];
    let bytes = matrices.reduce((n, m) => n + m.byteLength, 0) + 2 * c * 4;
    for (const l of weights.layers) {
      bytes += [l.q, l.k, l.v, l.attnProj, l.fc, l.mlpProj].reduce((n, m) => n + m.byteLength, 0);
      bytes += 13 * c * 4; // norms 2 × 2C, biases 3C + C + 4C + C
    }
    this.weightBytes = bytes;
  }

  /** Tied head (wte) or its own lm_head. */
  get tied(): boolean {
    return this.w.tied;
  }

  createState(): GptState {
    return new GptState(this.config);
  }

  /** Gives a state's cache memory back (the state then starts over, empty). */
  disposeState(state: GptState): void {
    for (const [k, v] of state.kv) {
      this.backend.free(k);
      this.backend.free(v);
    }
    state.kv = [];
    state.capacity = 0;
    state.tokens.length = 0;
  }

  /**
   * An independent copy of `state`: its tokens and, in cache mode, its keys and values (the rows filled so
   * far, in tensors of the same capacity). Waits for the passes already queued, so a state being fed is
   * copied as that pass leaves it.
   */
  cloneState(state: GptState): Promise<GptState> {
    if (!(state instanceof GptState) || state.config !== this.config) return Promise.reject(new ArgumentError('the state does not belong to this GPT model'));
    const copy = async (): Promise<GptState> => {
      const out = new GptState(this.config);
      out.tokens.push(...state.tokens);
      if (state.kv.length === 0) return out;
      const filled = state.length * this.config.nEmbd;
      try {
        for (const pair of state.kv) {
          const next: [DeviceTensor, DeviceTensor] = [this.backend.tensor(state.capacity, this.config.nEmbd), this.backend.tensor(state.capacity, this.config.nEmbd)];
          out.kv.push(next);
          out.capacity = state.capacity;
          for (let i = 0; i < 2; i++) if (filled > 0) this.backend.write(next[i]!, (await this.backend.read(pair[i]!)).subarray(0, filled));
        }
      } catch (e) {
        this.disposeState(out);
        throw e;
      }
      return out;
    };
    const result = this.queue.then(copy);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Feeds one token; returns its logits (nVocab). */
  async forward(token: number, state: GptState): Promise<Float32Array> {
    return (await this.run([{ tokens: [token], state }]))[0]!;
  }

  /** Feeds `tokens` in one pass; the last position's logits, or every position's (T × nVocab) with allLogits. */
  async forwardSequence(tokens: readonly number[], state: GptState, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    if (tokens.length === 0) throw new ArgumentError('parallel mode needs at least one token');
    return (await this.run([{ tokens, state, logits: options.allLogits === true ? 'all' : 'last' }]))[0]!;
  }

  /** One pass over a batch of sequences, each continuing its own state. */
  run(batch: readonly GptSequenceInput[]): Promise<Float32Array[]> {
    try {
      this.checkInputs(batch);
    } catch (e) {
      return Promise.reject(e);
    }
    const result = this.queue.then(() => this.pass(batch));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Frees the work tensors (states free theirs with disposeState). */
  dispose(): void {
    this.work.clear();
  }

  private checkInputs(batch: readonly GptSequenceInput[]): void {
    const { nVocab, nPositions } = this.config;
    if (batch.length === 0) throw new ArgumentError('a pass needs at least one sequence');
    const states = new Set<GptState>();
    for (const { tokens, state } of batch) {
      if (tokens.length === 0) throw new ArgumentError('every sequence of a pass needs at least one token');
      for (const t of tokens) {
        if (!Number.isInteger(t) || t < 0 || t >= nVocab) throw new ArgumentError(`token id ${t} is outside the vocabulary (0..${nVocab - 1})`);
      }
      if (!(state instanceof GptState) || state.config !== this.config) throw new ArgumentError('the state does not belong to this GPT model');
      if (states.has(state)) throw new ArgumentError('two sequences of one pass share a state');
      states.add(state);
      if (state.length + tokens.length > nPositions) {
        throw new ArgumentError(`the context is full: ${state.length} + ${tokens.length} tokens exceed the model's n_positions ${nPositions}`);
      }
    }
  }

  /** Makes room in `state`'s cache for `need` positions: capacity doubles, the rows so far are copied over. */
  private async reserve(state: GptState, need: number): Promise<void> {
    if (state.kv.length > 0 && state.capacity >= need) return;
    const { nLayer, nEmbd: c, nPositions } = this.config;
    const capacity = Math.min(nPositions, Math.max(need, 64, 2 * state.capacity));
    const filled = state.length * c;
    const kv: [DeviceTensor, DeviceTensor][] = [];
    for (let l = 0; l < nLayer; l++) {
      const pair: [DeviceTensor, DeviceTensor] = [this.backend.tensor(capacity, c), this.backend.tensor(capacity, c)];
      const old = state.kv[l];
      if (old !== undefined && filled > 0) {
        for (let i = 0; i < 2; i++) {
          this.backend.write(pair[i]!, (await this.backend.read(old[i]!)).subarray(0, filled));
          this.backend.free(old[i]!);
        }
      }
      kv.push(pair);
    }
    state.kv = kv;
    state.capacity = capacity;
  }

  private async pass(batch: readonly GptSequenceInput[]): Promise<Float32Array[]> {
    const { nVocab, nEmbd: c, nHead, layerNormEps: eps } = this.config;
    const { backend, work, w } = this;
    // Rows fed per sequence: the new tokens after the cache, or (no cache) the whole context again.
    const fed = batch.map((s) => (this.kvCache ? [...s.tokens] : [...s.state.tokens, ...s.tokens]));
    const past = batch.map((s) => (this.kvCache ? s.state.length : 0));
    if (this.kvCache) for (const [i, s] of batch.entries()) await this.reserve(s.state, past[i]! + fed[i]!.length);
    const layout = rowLayout(fed.map((f) => f.length));
    const rows = layout.rows;

    // x: the residual stream; xn: its normed rows; dx: a sublayer's output. rows × C each (h: rows × 4C).
    const x = work.get('gpt.x', rows, c);
    const xn = work.get('gpt.xn', rows, c);
    const dx = work.get('gpt.dx', rows, c);
    const pos = work.get('gpt.pos', rows, c);
    backend.embed(w.wte, fed.flat(), x);
    backend.embed(w.wpe, fed.flatMap((f, b) => f.map((_, i) => past[b]! + i)), pos);
    backend.add(x, pos, x);
    const [q, k, v, att] = ['q', 'k', 'v', 'att'].map((n) => work.get(`gpt.${n}`, rows, c)) as [DeviceTensor, DeviceTensor, DeviceTensor, DeviceTensor];
    const h = work.get('gpt.h', rows, 4 * c);
    // Without a cache, a scratch cache per sequence that lives for one layer's attention.
    const scratch = this.kvCache ? [] : fed.map((f, b) => [work.get(`gpt.kc.${b}`, f.length, c), work.get(`gpt.vc.${b}`, f.length, c)] as const);
    for (let l = 0; l < w.layers.length; l++) {
      const layer = w.layers[l]!;
      backend.norm(x, layer.ln1.weight, layer.ln1.bias, xn, 1, eps);
      await backend.matmul([
        { m: layer.q, x: xn, y: q },
        { m: layer.k, x: xn, y: k },
        { m: layer.v, x: xn, y: v },
      ]);
      backend.add(q, layer.qBias, q);
      backend.add(k, layer.kBias, k);
      backend.add(v, layer.vBias, v);
      const slots: KvSlot[] = batch.map((s, b) =>
        this.kvCache ? { k: s.state.kv[l]![0], v: s.state.kv[l]![1], length: past[b]! } : { k: scratch[b]![0], v: scratch[b]![1], length: 0 },
      );
      backend.attention(layout, slots, nHead, q, k, v, att);
      await backend.matmul([{ m: layer.attnProj, x: att, y: dx }]);
      backend.add(dx, layer.attnProjBias, dx);
      backend.add(x, dx, x);
      await pace();
      backend.norm(x, layer.ln2.weight, layer.ln2.bias, xn, 1, eps);
      await backend.matmul([{ m: layer.fc, x: xn, y: h }]);
      backend.add(h, layer.fcBias, h);
      backend.gelu(h, h);
      await backend.matmul([{ m: layer.mlpProj, x: h, y: dx }]);
      backend.add(dx, layer.mlpProjBias, dx);
      backend.add(x, dx, x);
      await pace();
    }
    batch.forEach((s) => s.state.tokens.push(...s.tokens));

    // ln_f and the head over the rows whose logits are wanted only, HEAD_ROWS at a time.
    const picked: number[] = [];
    batch.forEach((s, b) => {
      const start = layout.starts[b]!;
      const len = layout.lengths[b]!;
      const wanted = s.logits ?? 'last';
      const first = wanted === 'none' ? len : wanted === 'last' ? len - 1 : len - s.tokens.length;
      for (let p = first; p < len; p++) picked.push(start + p);
    });
    const values = new Float32Array(picked.length * nVocab);
    for (let g = 0; g < picked.length; g += HEAD_ROWS) {
      const n = Math.min(HEAD_ROWS, picked.length - g);
      const normed = work.get(`gpt.headIn.${n}`, n, c);
      backend.gatherRows(x, picked.slice(g, g + n), normed);
      backend.norm(normed, w.lnF.weight, w.lnF.bias, normed, 1, eps);
      const logits = work.get(`gpt.logits.${n}`, n, nVocab);
      await backend.matmul([{ m: w.head, x: normed, y: logits }]);
      const out = values.subarray(g * nVocab, (g + n) * nVocab);
      await backend.read(logits, out);
      if (!out.every(Number.isFinite)) {
        throw new NonFiniteError(`the logits of row ${picked[g]} onward are not finite; the weights are probably corrupt`, g, { file: this.file });
      }
      await pace();
    }
    let at = 0;
    return batch.map((s) => {
      const wanted = s.logits ?? 'last';
      const n = wanted === 'all' ? s.tokens.length : wanted === 'last' ? 1 : 0;
      const out = values.subarray(at * nVocab, (at + n) * nVocab);
      at += n;
      return out;
    });
  }
}
