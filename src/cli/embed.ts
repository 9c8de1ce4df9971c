// `rwkv embed`: one embedding (the final hidden state after ln_out, see Rwkv.embed) per text, printed as
// one JSON array per line on stdout. Texts come from the arguments, or else one per line of stdin.
import { createInterface } from 'node:readline';
import { loadRwkv } from './open-model.js';

export interface EmbedArgs {
  model: string;
  tokenizer?: string;
  pooling?: 'last' | 'mean';
  /** Commander's --no-normalize: false when given. */
  normalize?: boolean;
  threads?: number;
  kernels?: 'wasm' | 'reference' | 'webgpu' | 'auto';
  int8?: boolean;
}

/** Where the command reads and writes; process.stdin/stdout unless a test gives others. */
export interface EmbedIo {
  input: NodeJS.ReadableStream;
  write: (text: string) => Promise<void>;
}

export async function runEmbed(texts: readonly string[], args: EmbedArgs, io: EmbedIo = processIo()): Promise<void> {
  const rwkv = await loadRwkv(args.model, args, {
    prefixCache: false,
  });
  try {
    const options = { pooling: args.pooling ?? 'last', normalize: args.normalize !== false } as const;
    const print = async (vectors: Float32Array[]): Promise<void> => {
      for (const v of vectors) await io.write(`${JSON.stringify(Array.from(v))}\n`);
    };
    if (texts.length > 0) {
      await print(await rwkv.embed(texts, options));
      return;
    }
    // One text per line of stdin, each printed as soon as it is read (in order).
    for await (const line of createInterface({ input: io.input, crlfDelay: Infinity })) {
      await print(await rwkv.embed(line, options));
    }
  } finally {
    await rwkv.close();
  }
}

function processIo(): EmbedIo {
  return {
    input: process.stdin,
    write: (text) =>
      new Promise((resolve, reject) => {
        process.stdout.write(text, (e) => (e ? reject(e) : resolve()));
      }),
  };
}
