// What a loaded model is: its version and sizes.

/** RWKV generations. rwkv.cpp's "5.1" is ChatRWKV's v5.0; "5.2" is Eagle; "6" Finch; "7" Goose. */
export type RwkvVersion = '4' | '5.1' | '5.2' | '6' | '7';

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
