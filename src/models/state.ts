// The recurrent state, stored in rwkv.cpp's flat layout so that states can be exchanged with it:
// layer after layer, each layer
//   v4:   [ffn_x (C), att_x (C), aa (C), bb (C), pp (C)]          — 5C floats
//   v5+:  [ffn_x (C), att_x (C), S (H × N × N)]                  — 2C + H·N² floats
// ffn_x / att_x are the previous token's normed inputs (token shift). v4's aa, bb, pp are the numerator,
// denominator and running maximum exponent of the stable WKV; a fresh state has pp = −1e30 (all-zero
// would make the first step divide 0 by 0). S is the per-head matrix state: S[h][key i][value j] for v5
// and v6, S[h][value i][key j] for v7 (the transpose, as in the official code).
// All values are f32, little-endian in `toBytes()`.
import { StateError } from '../errors.js';
import { WKV4_FRESH_PP } from '../kernels/rwkv4-wkv.js';
import type { ModelConfig } from './config.js';

export class State {
  readonly config: ModelConfig;
  /** All layers, one after another. */
  readonly data: Float32Array;

  constructor(config: ModelConfig, data?: Float32Array) {
    this.config = config;
    const size = stateSize(config);
    if (data !== undefined && data.length !== size) {
      throw new StateError('BAD_STATE', `state has ${data.length} floats, this model needs ${size}`);
    }
    this.data = data ?? new Float32Array(size);
    if (data === undefined) resetState(this);
  }

  /** Floats per layer. */
  get layerSize(): number {
    return layerStateSize(this.config);
  }

  /** Layer `i`'s slice of the state (a view: writes go to the state). */
  layer(i: number): Float32Array {
    const n = this.layerSize;
    return this.data.subarray(i * n, (i + 1) * n);
  }

  clone(): State {
    return new State(this.config, this.data.slice());
  }

  /** Copies another state of the same model into this one. */
  copyFrom(other: State): void {
    if (other.data.length !== this.data.length) {
      throw new StateError('BAD_STATE', `state has ${other.data.length} floats, this model needs ${this.data.length}`);
    }
    this.data.set(other.data);
  }

  /** rwkv.cpp's flat layout, f32 little-endian. */
  toBytes(): Uint8Array {
    return new Uint8Array(this.data.buffer.slice(this.data.byteOffset, this.data.byteOffset + this.data.byteLength));
  }

  /** Reads a state written by `toBytes()` (or by rwkv.cpp) for a model of this configuration. */
  static fromBytes(config: ModelConfig, bytes: Uint8Array, source = 'state'): State {
    const size = stateSize(config);
    if (bytes.byteLength !== size * 4) {
      throw new StateError(
        'BAD_STATE',
        `${source} has ${bytes.byteLength} bytes; a state of this v${config.version} model ` +
          `(${config.nLayer} layers, n_embd ${config.nEmbd}) has ${size * 4}`,
      );
    }
    const data = new Float32Array(size);
    new Uint8Array(data.buffer).set(bytes);
    for (let i = 0; i < size; i++) {
      if (!Number.isFinite(data[i]!) && !(config.version === '4' && data[i] === -Infinity)) {
        throw new StateError('BAD_STATE', `${source} holds a non-finite value at float ${i}`);
      }
    }
    return new State(config, data);
  }
}

export function layerStateSize(c: ModelConfig): number {
  return c.version === '4' ? 5 * c.nEmbd : 2 * c.nEmbd + c.nHead * c.headSize * c.headSize;
}

export function stateSize(c: ModelConfig): number {
  return c.nLayer * layerStateSize(c);
}

/** Makes `s` a fresh state: zeros, and v4's pp = −1e30. */
export function resetState(s: State): void {
  s.data.fill(0);
  if (s.config.version === '4') {
    const c = s.config.nEmbd;
    for (let l = 0; l < s.config.nLayer; l++) s.layer(l).fill(WKV4_FRESH_PP, 4 * c, 5 * c);
  }
}
