// A state you can keep: the recurrent state together with the logits after the last token it has seen, so
// that generation can start from it without feeding anything (the logits decide the first new token).
import type { ModelConfig } from '../models/config.js';
import type { RwkvModel } from '../models/model.js';
import { State } from '../models/state.js';

/**
 * Where a generation's sampler stood when it ended: its seed, the generator's four words and the penalty
 * counts. Saved with the state, so that continuing it (no new prompt, the same seed) draws exactly what
 * one uninterrupted generation would have drawn next.
 */
export interface SamplerSnapshot {
  seed: number;
  rng: [number, number, number, number];
  /** [token id, decayed count] of every penalised token. */
  counts: [number, number][];
}

export class RwkvState {
  /** The recurrent state (rwkv.cpp's flat layout). Updated in place as tokens are fed. */
  readonly state: State;
  /** The logits after the last token fed, or undefined when none has been (a fresh state). */
  logits: Float32Array | undefined;
  /** How many tokens this state has seen (informative; saved with it). */
  tokenCount: number;
  /** The sampler of the generation that last advanced this state, if one did and nothing was fed since. */
  sampler: SamplerSnapshot | undefined;
  private pristine: boolean;

  private constructor(state: State, logits: Float32Array | undefined, tokenCount: number, pristine: boolean) {
    this.state = state;
    this.logits = logits;
    this.tokenCount = tokenCount;
    this.pristine = pristine;
    this.sampler = undefined;
  }

  /** A fresh state of `model`: nothing seen yet. */
  static fresh(model: Pick<RwkvModel, 'createState'>): RwkvState {
    return new RwkvState(model.createState(), undefined, 0, true);
  }

  /** Wraps an existing recurrent state (e.g. one read from rwkv.cpp) and, if known, its last logits. */
  static from(state: State, logits?: Float32Array, tokenCount = 0): RwkvState {
    return new RwkvState(state, logits, tokenCount, false);
  }

  get config(): ModelConfig {
    return this.state.config;
  }

  /**
   * True while this is a fresh state that nothing has been fed into: only such a state may take a prompt's
   * processing from the prefix cache.
   */
  get isFresh(): boolean {
    return this.pristine;
  }

  /** Records that `count` tokens were fed and `logits` came out. */
  advance(count: number, logits: Float32Array): void {
    this.sampler = undefined; // fed since: a generation that continues this state starts a sampler afresh
    this.tokenCount += count;
    this.logits = logits;
    this.pristine = false;
  }

  /** An independent copy: feeding one does not change the other. */
  clone(): RwkvState {
    const copy = new RwkvState(this.state.clone(), this.logits?.slice(), this.tokenCount, this.pristine);
    copy.sampler = copySnapshot(this.sampler);
    return copy;
  }

  /** Makes this state a copy of `other` (of the same model). */
  copyFrom(other: RwkvState): void {
    this.state.copyFrom(other.state);
    this.logits = other.logits?.slice();
    this.tokenCount = other.tokenCount;
    this.pristine = other.pristine;
    this.sampler = copySnapshot(other.sampler);
  }
}

function copySnapshot(s: SamplerSnapshot | undefined): SamplerSnapshot | undefined {
  return s === undefined ? undefined : { seed: s.seed, rng: [...s.rng], counts: s.counts.map(([id, c]) => [id, c]) };
}
