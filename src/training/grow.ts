// Growing a trained RWKV model deeper without changing what it computes (`rwkv train --init M --layers N`,
// N above M's depth): the old blocks keep their weights and their order, spread evenly over the N positions
// (old block k goes to ⌊k·N/M⌋, so block 0, which holds ln0, stays first), and the new blocks get the
// architecture's fresh initialisation for their position. RWKV-LM's initialisations zero the matrices that
// write into the residual stream (RWKV-4: att.output, ffn.value; RWKV-7: att.output, ffn.value), so a fresh
// block adds nothing: the grown model's logits equal the old model's (tested), and training starts from the
// old model's loss with the new blocks' capacity to spend. Width cannot grow this way (the LayerNorms'
// statistics would change), and GPT-2's fresh blocks are not identities; both are refused by the caller.
import { ArgumentError } from '../errors.js';

/** Where old block k goes in a model grown from `from` to `to` layers. */
export function grownPosition(k: number, from: number, to: number): number {
  return Math.floor((k * to) / from);
}

/**
 * Renames a checkpoint's tensors for the grown depth: blocks.K.* → blocks.P.* with P = grownPosition(K).
 * Tensors outside the blocks (emb, ln_out, head) keep their names. The new blocks' tensors are absent: the
 * caller initialises the whole model first and then writes these over it.
 */
export function growCheckpoint(values: ReadonlyMap<string, Float32Array>, from: number, to: number, file: string): Map<string, Float32Array> {
  if (!(Number.isInteger(to) && to > from)) throw new ArgumentError(`--layers ${to}: growing ${file} needs more layers than its ${from}`);
  const grown = new Map<string, Float32Array>();
  for (const [name, data] of values) {
    const m = /^blocks\.(\d+)\.(.*)$/.exec(name);
    if (m === null) {
      grown.set(name, data);
      continue;
    }
    const k = Number(m[1]);
    if (k >= from) throw new ArgumentError(`${file}: tensor ${name} is outside its ${from} layers`);
    grown.set(`blocks.${grownPosition(k, from, to)}.${m[2]}`, data);
  }
  return grown;
}
