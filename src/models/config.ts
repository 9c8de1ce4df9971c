// What a loaded model is: its version and sizes.

import type { RwkvVersion } from '../formats/version.js';

export type { RwkvVersion };

export interface ModelConfig {
  readonly version: RwkvVersion;
  readonly nLayer: number;
  /** C, the embedding width. */
  readonly nEmbd: number;
  readonly nVocab: number;
  /** H (v4: 1, the whole width is one "head" of size 1 per channel — unused). */
  readonly nHead: number;
  /** N = C / H. */
  readonly headSize: number;
  /** Hidden size of the channel mix (usually 4C, 3.5C for v6). */
  readonly ffnSize: number;
}
