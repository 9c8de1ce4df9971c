// Text ↔ token ids. Every tokenizer works on UTF-8 bytes; a token may end in the middle of a multi-byte
// character, so streaming output goes through a decoder that holds incomplete sequences back.

export interface Tokenizer {
  /** One more than the largest id (the model's n_vocab must be at least this). */
  readonly vocabSize: number;
  /** A short name for messages, e.g. 'bytes'. */
  readonly name: string;
  encode(text: string): number[];
  /** Byte-exact; a BPE tokenizer, which works on text, refuses bytes that are not valid UTF-8. */
  encodeBytes(bytes: Uint8Array): number[];
  /** The bytes of a sequence of ids (may be invalid UTF-8 at the ends). */
  decodeBytes(ids: readonly number[]): Uint8Array;
}

/** Decodes ids to text one at a time, emitting only complete UTF-8 characters. */
export class StreamDecoder {
  private readonly tokenizer: Tokenizer;
  // ignoreBOM: a leading U+FEFF is text like any other; by default TextDecoder would drop it.
  private readonly utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
  }

  /** Text completed by this id ('' while a character is still incomplete). */
  push(id: number): string {
    return this.utf8.decode(this.tokenizer.decodeBytes([id]), { stream: true });
  }

  /** Whatever is held back (an incomplete sequence at the very end becomes U+FFFD). */
  flush(): string {
    return this.utf8.decode();
  }
}

/** The text of a sequence of ids; invalid UTF-8 (a character cut at either end) becomes U+FFFD. */
export function decodeText(tokenizer: Tokenizer, ids: readonly number[]): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(tokenizer.decodeBytes(ids));
}
