// The byte-level tokenizer (vocab 256): id = byte value. The fixture models use it.
import { ArgumentError } from '../errors.js';
import type { Tokenizer } from './tokenizer.js';

export class ByteTokenizer implements Tokenizer {
  readonly vocabSize = 256;
  readonly name = 'bytes';

  encode(text: string): number[] {
    return this.encodeBytes(new TextEncoder().encode(text));
  }

  encodeBytes(bytes: Uint8Array): number[] {
    return Array.from(bytes);
  }

  decodeBytes(ids: readonly number[]): Uint8Array {
    const out = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id > 255) throw new ArgumentError(`token id ${id} is not a byte (0..255)`);
      out[i] = id;
    }
    return out;
  }
}
